"""The lab's layout, derived from the topology alone: namespaces, bridges, links, addresses, routes.

This is pure data (no system calls), so it is unit-tested without root and printed by
``lab.status --format json``. Kernel interface names are at most 15 characters: every
name the lab invents is a short deterministic hash of what it stands for, with a prefix
telling its kind; the host interfaces keep the model's names (``eth0`` …).

Namespaces (files under ``/run/netns``)::

    ddc-fabric        one bridge per segment of every site (the switches)
    ddc-r-<site>      the site's router/firewall: a leg in each segment, the inter-site
                      links, the controller link and the uplink to the edge
    ddc-x-<site>      the site's edge: "the internet" and the outside institutions
    ddc-h-<host>      one per host (plus its own mount, UTS, PID and IPC namespaces)

The only objects in the root namespace are one veth per site (``ddc<hash>``, the
controller's link to the router, on a /30 of the infra network) and the routes to the
management segments through them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from dualdc.flows import primary_interface
from dualdc.lab.errors import LabError
from dualdc.model import Topology, Zone, zone_traits

IFNAMSIZ = 15
FABRIC_NS = "ddc-fabric"
ROUTER_CONTROLLER_DEV = "controller"
UPLINK_DEV = "uplink"
#: Policy-routing tables of the hosts: one per interface, from this number on.
HOST_TABLE_BASE = 100
HOST_RULE_PREF_BASE = 1000


def short_name(prefix: str, *parts: str) -> str:
    """A kernel-safe (≤ 15 characters) deterministic name for a lab object."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    name = prefix + digest[: IFNAMSIZ - len(prefix)]
    return name[:IFNAMSIZ]


def host_ns(host: str) -> str:
    return f"ddc-h-{host}"


def router_ns(site: str) -> str:
    return f"ddc-r-{site}"


def edge_ns(site: str) -> str:
    return f"ddc-x-{site}"


@dataclass(frozen=True)
class Nic:
    """One interface of a host: a veth whose other end is a port of the segment's bridge."""

    name: str
    segment: str
    zone: Zone
    address: ipaddress.IPv4Address
    network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    bridge: str
    port: str
    table: int

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.network.prefixlen}"


@dataclass(frozen=True)
class HostPlan:
    name: str
    site: str
    netns: str
    nics: tuple[Nic, ...]
    primary: str
    """Name of the interface carrying the default route."""
    mgmt: str | None
    """Name of the management interface (SSH from the controller), if any."""
    mgmt_address: ipaddress.IPv4Address
    mgmt_routes: tuple[ipaddress.IPv4Network, ...]
    """Networks routed via the management gateway (other mgmt segments, the controller)."""
    replication_routes: tuple[tuple[str, ipaddress.IPv4Network], ...] = ()
    """(interface, network): a replication interface reaches its tenant's replication segments
    at the other sites through its own gateway, so a standby's connection to its primary leaves
    from the address the model's replication flows (and so the firewalls) name."""

    def nic(self, name: str) -> Nic:
        return next(n for n in self.nics if n.name == name)


@dataclass(frozen=True)
class Leg:
    """A router's interface in one segment; its address is the segment's gateway."""

    segment: str
    zone: Zone
    bridge: str
    port: str
    dev: str
    address: ipaddress.IPv4Address
    network: ipaddress.IPv4Network


@dataclass(frozen=True)
class LinkEndPlan:
    """One router's end of an inter-site link."""

    link: str
    dev: str
    address: ipaddress.IPv4Address
    network: ipaddress.IPv4Network
    peer_site: str
    peer_address: ipaddress.IPv4Address


@dataclass(frozen=True)
class RouterPlan:
    site: str
    netns: str
    legs: tuple[Leg, ...]
    links: tuple[LinkEndPlan, ...]
    controller_net: ipaddress.IPv4Network
    controller_dev: str
    """Root-namespace end of the controller link."""
    controller_address: ipaddress.IPv4Address
    """The router's address on the controller link."""
    controller_peer: ipaddress.IPv4Address
    """The controller's (root namespace) address on the controller link."""
    uplink_net: ipaddress.IPv4Network
    uplink_address: ipaddress.IPv4Address
    edge_address: ipaddress.IPv4Address
    peer_networks: tuple[ipaddress.IPv4Network, ...]
    """Every segment of the other site(s), routed over the inter-site links."""
    mgmt_networks: tuple[ipaddress.IPv4Network, ...]
    """This site's management segments (the controller's routes and SSH rule)."""
    site_networks: tuple[ipaddress.IPv4Network, ...]


@dataclass(frozen=True)
class EdgePlan:
    site: str
    netns: str
    internet_address: ipaddress.IPv4Address
    """The address standing for "a client on the internet"."""
    institution_addresses: tuple[tuple[str, ipaddress.IPv4Address, ipaddress.IPv4Network], ...]
    """(institution, address, its network) for every outside institution."""


@dataclass(frozen=True)
class LabPlan:
    env: str
    bridges: dict[str, str]
    """segment → bridge name (in :data:`FABRIC_NS`)."""
    hosts: dict[str, HostPlan]
    routers: dict[str, RouterPlan]
    edges: dict[str, EdgePlan]
    infra: ipaddress.IPv4Network
    sites: tuple[str, ...] = field(default=())

    def host_sites(self, site: str) -> list[HostPlan]:
        return [h for h in self.hosts.values() if h.site == site]

    def namespaces(self) -> list[str]:
        """Every network namespace the lab creates."""
        return [FABRIC_NS, *(r.netns for r in self.routers.values()),
                *(e.netns for e in self.edges.values()), *(h.netns for h in self.hosts.values())]

    def root_devices(self) -> list[str]:
        """Every device the lab creates in the root namespace."""
        return [r.controller_dev for r in self.routers.values()]

    def names(self) -> dict[str, str]:
        """Every invented device name → what it stands for (for status and debugging)."""
        found: dict[str, str] = {}
        for seg, br in self.bridges.items():
            found[br] = f"bridge of segment {seg} ({FABRIC_NS})"
        for h in self.hosts.values():
            for n in h.nics:
                found[n.port] = f"bridge port of {h.name} {n.name} ({FABRIC_NS})"
        for r in self.routers.values():
            for leg in r.legs:
                found[leg.port] = f"bridge port of router {r.site} in {leg.segment} ({FABRIC_NS})"
                found[leg.dev] = f"router {r.site} leg in {leg.segment} ({r.netns})"
            for end in r.links:
                found[end.dev] = f"inter-site link {end.link} ({r.netns})"
            found[r.controller_dev] = f"controller link to router {r.site} (root namespace)"
        return found


def _check_unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise LabError(f"two lab {kind}s hash to the same name {name!r}; rename one of them")
        seen.add(name)


def topology_networks(topology: Topology) -> list[tuple[str, ipaddress.IPv4Network]]:
    """Every network the topology declares, with what it is."""
    nets = [(f"segment {s.name}", s.cidr) for s in topology.segments]
    nets += [(f"link {link.name}", link.network) for link in topology.links]
    nets += [(f"institution {i.name}", c) for i in topology.institutions for c in i.cidrs]
    for c in topology.clusters:
        nets += [(f"cluster {c.name} pods", c.pod_cidr), (f"cluster {c.name} services", c.service_cidr)]
    return nets


DEFAULT_INTERNET = ipaddress.IPv4Network("198.18.0.0/24")


def build(topology: Topology, infra: ipaddress.IPv4Network,
          internet: ipaddress.IPv4Network = DEFAULT_INTERNET) -> LabPlan:
    """The lab layout of a topology. Raises :class:`LabError` when it cannot be built."""
    sites = tuple(s.name for s in topology.sites)
    for what, net in topology_networks(topology):
        for mine, label in ((infra, "infra network (DUALDC_LAB_INFRA_CIDR)"),
                            (internet, "internet stand-in")):
            if mine.overlaps(net):
                raise LabError(f"the lab's {label} {mine} overlaps {what} ({net}); "
                               "choose another with DUALDC_LAB_INFRA_CIDR")
    slots = list(infra.subnets(new_prefix=30))
    if len(slots) < 2 * len(sites):
        raise LabError(f"the infra network {infra} is too small: it needs {2 * len(sites)} /30 links")

    bridges = {s.name: short_name("br", topology.environment.name, s.name) for s in topology.segments}
    hosts: dict[str, HostPlan] = {}
    mgmt_nets = [s.cidr for s in topology.segments if zone_traits(s.zone).admin]
    for host in topology.hosts:
        nics = []
        for i, iface in enumerate(host.interfaces):
            if iface.members or iface.parent:
                raise LabError(f"host {host.name}: interface {iface.name} is a bond or VLAN sub-interface; "
                               "the lab builds plain interfaces only")
            seg = topology.segment(iface.segment)
            nics.append(Nic(iface.name, seg.name, seg.zone, iface.address, seg.cidr, seg.gateway,
                            bridges[seg.name], short_name("h", host.name, iface.name), HOST_TABLE_BASE + i))
        primary_seg = primary_interface(topology, host)
        primary = next(n.name for n in nics if n.segment == primary_seg)
        mgmt = next((n for n in nics if zone_traits(n.zone).admin), None)
        connected = {n.network for n in nics}
        routes: tuple[ipaddress.IPv4Network, ...] = ()
        if mgmt is not None and mgmt.name != primary:
            routes = (*(n for n in mgmt_nets if n not in connected), infra)
        replication = tuple(
            (nic.name, other.cidr)
            for nic in nics if zone_traits(nic.zone).replication
            for other in topology.segments
            if zone_traits(other.zone).replication and other.site != host.site
            and other.tenant == topology.segment(nic.segment).tenant)
        hosts[host.name] = HostPlan(host.name, host.site, host_ns(host.name), tuple(nics), primary,
                                    mgmt.name if mgmt else None, topology.management_address(host), routes,
                                    replication)

    routers: dict[str, RouterPlan] = {}
    edges: dict[str, EdgePlan] = {}
    for idx, site in enumerate(sites):
        legs = tuple(
            Leg(s.name, s.zone, bridges[s.name], short_name("r", s.site, s.name), short_name("s", s.name),
                s.gateway, s.cidr)
            for s in topology.segments_at(site))
        ends = []
        for link in topology.links:
            local = [e for e in link.ends if e.site == site]
            other = [e for e in link.ends if e.site != site]
            if local and other:
                ends.append(LinkEndPlan(link.name, short_name("l", link.name), local[0].address, link.network,
                                        other[0].site, other[0].address))
        ctl, up = slots[2 * idx], slots[2 * idx + 1]
        ctl_hosts, up_hosts = list(ctl.hosts()), list(up.hosts())
        peer_nets = tuple(s.cidr for s in topology.segments if s.site != site)
        routers[site] = RouterPlan(
            site=site, netns=router_ns(site), legs=legs, links=tuple(ends),
            controller_net=ctl, controller_dev=short_name("ddc", topology.environment.name, site),
            controller_address=ctl_hosts[1], controller_peer=ctl_hosts[0],
            uplink_net=up, uplink_address=up_hosts[0], edge_address=up_hosts[1],
            peer_networks=peer_nets,
            mgmt_networks=tuple(s.cidr for s in topology.segments_at(site) if zone_traits(s.zone).admin),
            site_networks=tuple(s.cidr for s in topology.segments_at(site)),
        )
        internet_hosts = list(internet.hosts())
        edges[site] = EdgePlan(
            site=site, netns=edge_ns(site), internet_address=internet_hosts[10 + idx],
            institution_addresses=tuple((i.name, next(iter(c.hosts())), c)
                                        for i in topology.institutions for c in i.cidrs))
    plan = LabPlan(topology.environment.name, bridges, hosts, routers, edges, infra, sites)
    _check_unique("bridge", list(bridges.values()))
    _check_unique("bridge port", [n.port for h in hosts.values() for n in h.nics]
                  + [leg.port for r in routers.values() for leg in r.legs])
    _check_unique("namespace", plan.namespaces())
    for r in routers.values():
        _check_unique("router device", [leg.dev for leg in r.legs] + [e.dev for e in r.links]
                      + [ROUTER_CONTROLLER_DEV, UPLINK_DEV])
    return plan
