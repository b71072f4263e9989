"""Bring the kernel's network objects in line with a :class:`LabPlan`, idempotently.

Each ``ensure_*`` reads what exists (``ip -j``), then issues only the missing or wrong
pieces in one ``ip -batch`` per namespace, and returns how many changes it made, so a
second ``lab.up`` reports zero. Removal is by name, and only of the names in the plan.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dualdc.lab import system
from dualdc.lab.errors import LabError
from dualdc.lab.plan import (
    FABRIC_NS,
    HOST_RULE_PREF_BASE,
    ROUTER_CONTROLLER_DEV,
    UPLINK_DEV,
    EdgePlan,
    HostPlan,
    LabPlan,
    RouterPlan,
)

ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.conf.all.ignore_routes_with_linkdown": "1",
    "net.ipv4.conf.default.ignore_routes_with_linkdown": "1",
    "net.ipv4.fib_multipath_hash_policy": "1",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
HOST_SYSCTLS = {
    "net.ipv4.ip_forward": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}


@dataclass
class Snapshot:
    """What exists in one namespace: links (with addresses), routes, rules."""

    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read(cls, ns: str | None, routes: bool = True, rules: bool = False) -> Snapshot:
        snap = cls()
        for link in system.ip_json(ns, "addr", "show"):
            snap.links[link["ifname"]] = link
        if routes:
            snap.routes = system.ip_json(ns, "route", "show", "table", "all")
        if rules:
            snap.rules = system.ip_json(ns, "rule", "show")
        return snap

    def up(self, dev: str) -> bool:
        return "UP" in self.links.get(dev, {}).get("flags", [])

    def has_addr(self, dev: str, cidr: str) -> bool:
        addr, _, plen = cidr.partition("/")
        return any(a.get("family") == "inet" and a.get("local") == addr and str(a.get("prefixlen")) == plen
                   for a in self.links.get(dev, {}).get("addr_info", []))

    def master(self, dev: str) -> str | None:
        value = self.links.get(dev, {}).get("master")
        return str(value) if value else None

    def route(self, dst: str, table: str = "main") -> dict[str, Any] | None:
        for r in self.routes:
            if r.get("dst") == dst and str(r.get("table", "main")) == table:
                return r
        return None


def _route_gateways(route: dict[str, Any]) -> set[str]:
    if "gateway" in route:
        return {str(route["gateway"])}
    return {str(n.get("gateway")) for n in route.get("nexthops", []) if n.get("gateway")}


def _ensure_route(snap: Snapshot, cmds: list[str], dst: str, spec: str, *, gateways: set[str],
                  table: str = "main") -> None:
    existing = snap.route(dst, table)
    if existing is None or _route_gateways(existing) != gateways:
        suffix = "" if table == "main" else f" table {table}"
        cmds.append(f"route replace {dst} {spec}{suffix}")


def _addr_up(snap: Snapshot, cmds: list[str], dev: str, cidr: str | None, up: bool = True) -> None:
    if cidr and not snap.has_addr(dev, cidr):
        cmds.append(f"addr add {cidr} dev {dev}")
    if up and not snap.up(dev):
        cmds.append(f"link set {dev} up")


# --------------------------------------------------------------------------- namespaces


def ensure_netns(names: Iterable[str]) -> int:
    changes = 0
    for name in names:
        if not system.netns_exists(name):
            system.ip(None, "netns", "add", name)
            changes += 1
    return changes


def delete_netns(name: str) -> bool:
    if not system.netns_exists(name):
        return False
    system.ip(None, "netns", "delete", name, check=False)
    return True


# --------------------------------------------------------------------------- fabric


def ensure_fabric(plan: LabPlan, hosts: Iterable[HostPlan], routers: Iterable[RouterPlan]) -> int:
    """Bridges, and the veth pairs from each bridge to the hosts' and routers' interfaces."""
    snap = Snapshot.read(FABRIC_NS, routes=False)
    cmds: list[str] = []
    for bridge in sorted(set(plan.bridges.values())):
        if bridge not in snap.links:
            cmds.append(f"link add {bridge} type bridge stp_state 0 forward_delay 0 mcast_snooping 0")
        if not snap.up(bridge):
            cmds.append(f"link set {bridge} up")
    changes = system.ip_batch(FABRIC_NS, cmds)
    cmds = []
    for host in hosts:
        peer = Snapshot.read(host.netns, routes=False)
        for nic in host.nics:
            if nic.port not in snap.links:
                if nic.name in peer.links:  # a leftover end without its pair
                    system.ip(host.netns, "link", "del", nic.name, check=False)
                cmds.append(f"link add {nic.port} type veth peer name {nic.name} netns {host.netns}")
            if snap.master(nic.port) != nic.bridge:
                cmds.append(f"link set {nic.port} master {nic.bridge}")
            if not snap.up(nic.port):
                cmds.append(f"link set {nic.port} up")
    for router in routers:
        for leg in router.legs:
            if leg.port not in snap.links:
                cmds.append(f"link add {leg.port} type veth peer name {leg.dev} netns {router.netns}")
            if snap.master(leg.port) != leg.bridge:
                cmds.append(f"link set {leg.port} master {leg.bridge}")
            if not snap.up(leg.port):
                cmds.append(f"link set {leg.port} up")
    return changes + system.ip_batch(FABRIC_NS, cmds)


# --------------------------------------------------------------------------- hosts


def ensure_host_network(host: HostPlan, admin_up: bool = True) -> int:
    """Addresses, links, source routing and routes inside a host's namespace."""
    snap = Snapshot.read(host.netns, rules=True)
    cmds: list[str] = []
    _addr_up(snap, cmds, "lo", None)
    for nic in host.nics:
        _addr_up(snap, cmds, nic.name, nic.cidr, up=admin_up)
    primary = host.nic(host.primary)
    gateway = primary.gateway
    _ensure_route(snap, cmds, "default", f"via {gateway} dev {primary.name}", gateways={str(gateway)})
    if host.mgmt:
        mgmt = host.nic(host.mgmt)
        for net in host.mgmt_routes:
            spec = f"via {mgmt.gateway} dev {mgmt.name}"
            _ensure_route(snap, cmds, str(net), spec, gateways={str(mgmt.gateway)})
    for name, net in host.replication_routes:
        nic = host.nic(name)
        _ensure_route(snap, cmds, str(net), f"via {nic.gateway} dev {nic.name}", gateways={str(nic.gateway)})
    # Source routing: a packet from an interface's address leaves through that interface's
    # gateway, so a probe bound to an address crosses the router the way the model says.
    rules = {(r.get("priority"), r.get("src"), str(r.get("table"))) for r in snap.rules}
    for i, nic in enumerate(host.nics):
        table = str(nic.table)
        _ensure_route(snap, cmds, str(nic.network), f"dev {nic.name} src {nic.address} scope link",
                      gateways=set(), table=table)
        _ensure_route(snap, cmds, "default", f"via {nic.gateway} dev {nic.name}", gateways={str(nic.gateway)},
                      table=table)
        if (HOST_RULE_PREF_BASE + i, str(nic.address), table) not in rules:
            cmds.append(f"rule add pref {HOST_RULE_PREF_BASE + i} from {nic.address} lookup {table}")
    if not admin_up:
        cmds = [c for c in cmds if not c.startswith("route") and not c.startswith("rule")]
    return system.ip_batch(host.netns, cmds)


def set_host_links(host: HostPlan, up: bool) -> None:
    state = "up" if up else "down"
    system.ip_batch(host.netns, [f"link set {nic.name} {state}" for nic in host.nics])


# --------------------------------------------------------------------------- routers


def ensure_wiring(plan: LabPlan) -> int:
    """The veths that are not bridge ports: inter-site links, controller links, uplinks."""
    changes = 0
    root = Snapshot.read(None, routes=False)
    done_links: set[str] = set()
    for router in plan.routers.values():
        snap = Snapshot.read(router.netns, routes=False)
        cmds: list[str] = []
        for end in router.links:
            if end.link in done_links:
                continue
            done_links.add(end.link)
            peer_router = plan.routers[end.peer_site]
            peer_end = next(e for e in peer_router.links if e.link == end.link)
            if end.dev not in snap.links:
                peer_snap = Snapshot.read(peer_router.netns, routes=False)
                if peer_end.dev in peer_snap.links:
                    system.ip(peer_router.netns, "link", "del", peer_end.dev, check=False)
                cmds.append(f"link add {end.dev} type veth peer name {peer_end.dev} "
                            f"netns {peer_router.netns}")
        if UPLINK_DEV not in snap.links:
            edge = plan.edges[router.site]
            system.ip(edge.netns, "link", "del", UPLINK_DEV, check=False)
            cmds.append(f"link add {UPLINK_DEV} type veth peer name {UPLINK_DEV} netns {edge.netns}")
        changes += system.ip_batch(router.netns, cmds)
        if router.controller_dev not in root.links:
            system.ip(router.netns, "link", "del", ROUTER_CONTROLLER_DEV, check=False)
            changes += system.ip_batch(None, [
                f"link add {router.controller_dev} type veth peer name {ROUTER_CONTROLLER_DEV} "
                f"netns {router.netns}"])
    return changes


def ensure_router_network(plan: LabPlan, router: RouterPlan, links_up: dict[str, bool] | None = None,
                          site_up: bool = True) -> int:
    snap = Snapshot.read(router.netns)
    cmds: list[str] = []
    _addr_up(snap, cmds, "lo", None)
    for leg in router.legs:
        _addr_up(snap, cmds, leg.dev, f"{leg.address}/{leg.network.prefixlen}", up=site_up)
    for end in router.links:
        up = site_up and (links_up or {}).get(end.link, True)
        _addr_up(snap, cmds, end.dev, f"{end.address}/{end.network.prefixlen}", up=up)
    _addr_up(snap, cmds, ROUTER_CONTROLLER_DEV,
             f"{router.controller_address}/{router.controller_net.prefixlen}", up=site_up)
    _addr_up(snap, cmds, UPLINK_DEV, f"{router.uplink_address}/{router.uplink_net.prefixlen}", up=site_up)
    if site_up:
        _ensure_route(snap, cmds, "default", f"via {router.edge_address} dev {UPLINK_DEV}",
                      gateways={str(router.edge_address)})
        # ECMP over the links that are not cut. A nexthop over a link that is down stays in
        # an existing route (marked dead, revived when the link comes back); a route that
        # lacks a live link's nexthop is replaced (a route cannot name a down device).
        live = [e for e in router.links if (links_up or {}).get(e.link, True)]
        hops = " ".join(f"nexthop via {e.peer_address} dev {e.dev} weight 1" for e in live)
        wanted = {str(e.peer_address) for e in live}
        for net in router.peer_networks:
            existing = snap.route(str(net))
            if live and (existing is None or not wanted <= _route_gateways(existing)):
                cmds.append(f"route replace {net} {hops}")
    return system.ip_batch(router.netns, cmds)


def set_router_links(router: RouterPlan, up: bool, which: Iterable[str] | None = None) -> None:
    """Set a router's devices up or down: all of them, or the inter-site links named."""
    state = "up" if up else "down"
    if which is None:
        devs = [*(leg.dev for leg in router.legs), *(e.dev for e in router.links), ROUTER_CONTROLLER_DEV,
                UPLINK_DEV]
    else:
        names = set(which)
        devs = [e.dev for e in router.links if e.link in names]
    system.ip_batch(router.netns, [f"link set {d} {state}" for d in devs])


def ensure_edge_network(edge: EdgePlan, router: RouterPlan) -> int:
    snap = Snapshot.read(edge.netns)
    cmds: list[str] = []
    _addr_up(snap, cmds, "lo", None)
    _addr_up(snap, cmds, UPLINK_DEV, f"{router.edge_address}/{router.uplink_net.prefixlen}")
    # The outside addresses sit on the loopback (no dummy driver needed).
    _addr_up(snap, cmds, "lo", f"{edge.internet_address}/32")
    for _name, addr, _net in edge.institution_addresses:
        _addr_up(snap, cmds, "lo", f"{addr}/32", up=False)
    _ensure_route(snap, cmds, "default", f"via {router.uplink_address} dev {UPLINK_DEV}",
                  gateways={str(router.uplink_address)})
    return system.ip_batch(edge.netns, cmds)


def ensure_controller(plan: LabPlan, sites_up: dict[str, bool] | None = None) -> int:
    """The root namespace's end of each controller link and the routes to the mgmt segments."""
    snap = Snapshot.read(None)
    cmds: list[str] = []
    for router in plan.routers.values():
        up = (sites_up or {}).get(router.site, True)
        _addr_up(snap, cmds, router.controller_dev,
                 f"{router.controller_peer}/{router.controller_net.prefixlen}", up=up)
        for net in router.mgmt_networks:
            via = router.controller_address
            _ensure_route(snap, cmds, str(net), f"via {via} dev {router.controller_dev}", gateways={str(via)})
    return system.ip_batch(None, cmds)


def check_root_routes(plan: LabPlan) -> None:
    """Refuse to shadow a route of this machine that is not the lab's own."""
    ours = set(plan.root_devices())
    for route in system.ip_json(None, "route", "show", "table", "main"):
        dst, dev = route.get("dst", ""), route.get("dev", "")
        if dst == "default" or dev in ours:
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        for router in plan.routers.values():
            for mine in (*router.mgmt_networks, router.controller_net):
                if mine.overlaps(net):
                    raise LabError(f"this machine already routes {net} via {dev}, which overlaps the lab's "
                                   f"{mine}; the controller could not reach the lab hosts")


def delete_root_devices(plan: LabPlan) -> int:
    snap = Snapshot.read(None, routes=False)
    cmds = [f"link del {d}" for d in plan.root_devices() if d in snap.links]
    return system.ip_batch(None, cmds)
