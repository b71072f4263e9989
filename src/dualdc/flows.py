"""Expand declared flows into concrete connections between network endpoints.

A flow names its ends by reference (``segment:``, ``service:``, ``host:``,
``institution:`` or ``internet``). Every consumer — the policy pack's graph rules, the
hosts' nftables, the lab routers' firewall, the Kubernetes NetworkPolicies — needs the same
answer to "which networks may open which connections to which networks", so it is
computed here, once, and cached on the topology.

Ends resolve to exact addresses wherever the model knows them: a host to its address in
the segment the connection uses; a service to its declared hosts' addresses and its
clusters' workers' addresses in the service's segment at that site (its pods leave and are
reached through those nodes). Only a ``segment:`` end stands for a whole network, and every
layer then allows the whole segment (the policy pack warns, LP-01). Each end also carries
the tenant it belongs to: a host's own tenant (a bank's host stays that bank's endpoint in
a ``group`` segment), a service's tenant, a segment's tenant.

Pairing: an end that resolves at several sites (a service running at both) is paired per
site, so a flow never silently crosses the inter-site link; ``cross_site: true`` flows
pair every source with every destination. Outside ends (internet, institutions) have no
site and pair with everything.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from dualdc.model import (
    WORKER_ROLES,
    Flow,
    Host,
    Segment,
    Service,
    TenantKind,
    Topology,
    Zone,
    zone_traits,
    zones_where,
)

INTERNET = "internet"
ANY_NETWORK = ipaddress.IPv4Network("0.0.0.0/0")


@dataclass(frozen=True)
class Endpoint:
    """One resolved end of a flow at one place."""

    ref: str
    """The reference as written in the flow, e.g. ``service:kj-core-banking``."""
    node: str
    """Graph node: ``segment:NAME``, ``institution:NAME`` or ``internet``."""
    site: str | None
    zone: Zone | None
    tenant: str | None
    segment: str | None
    networks: tuple[ipaddress.IPv4Network, ...]
    host: str | None = None
    hosts: tuple[str, ...] = ()
    """The hosts this end stands for: the named host, or a service's declared hosts at the site."""
    exact: bool = False
    """True when ``networks`` are the end's own addresses, not a whole segment standing for it."""

    @property
    def outside(self) -> bool:
        """True for the internet and outside institutions."""
        return self.segment is None


@dataclass(frozen=True)
class Connection:
    """A flow between two resolved endpoints."""

    flow: Flow
    source: Endpoint
    destination: Endpoint

    @property
    def ports(self) -> tuple[int, ...]:
        """The destination ports; empty means any port."""
        return () if self.flow.ports == "any" else tuple(self.flow.ports)


class _Index:
    """Lookups the expansion needs again and again, computed once per topology."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.segment_by_place: dict[tuple[str, str, Zone], str] = {}
        for seg in topology.segments:
            self.segment_by_place.setdefault((seg.site, seg.tenant, seg.zone), seg.name)
        self.resolved: dict[str, list[Endpoint]] = {}
        self.facts: dict[str, list[_Facts]] = {}
        self._nodes: dict[str, list[Host]] | None = None
        self._host_segments: dict[str, frozenset[str]] = {}
        self._replication: dict[str, frozenset[str]] = {}
        self._primary: dict[str, str] = {}

    def host_segments(self, name: str) -> frozenset[str]:
        found = self._host_segments.get(name)
        if found is None:
            host = self.topology.host(name)
            found = self._host_segments[name] = frozenset(i.segment for i in host.interfaces)
        return found

    def replication(self, name: str) -> frozenset[str]:
        """The host's segments of the replication zone."""
        found = self._replication.get(name)
        if found is None:
            host = self.topology.host(name)
            seg = self.topology.segment
            found = self._replication[name] = frozenset(
                i.segment for i in host.interfaces if zone_traits(seg(i.segment).zone).replication)
        return found

    def nodes(self, cluster: str) -> list[Host]:
        """The cluster's workers (all its hosts if it has none), indexed once."""
        if self._nodes is None:
            every: dict[str, list[Host]] = {}
            workers: dict[str, list[Host]] = {}
            for host in self.topology.hosts:
                if host.cluster is not None:
                    every.setdefault(host.cluster, []).append(host)
                    if host.role in WORKER_ROLES:
                        workers.setdefault(host.cluster, []).append(host)
            self._nodes = {c: workers.get(c) or hosts for c, hosts in every.items()}
        return self._nodes.get(cluster, [])

    def primary(self, name: str) -> str:
        found = self._primary.get(name)
        if found is None:
            found = self._primary[name] = _primary_interface(self.topology, self.topology.host(name))
        return found


def _index(topology: Topology) -> _Index:
    index: _Index | None = topology.cache.get("flows.index")
    if index is None:
        index = topology.cache["flows.index"] = _Index(topology)
    return index


def service_segment(topology: Topology, service_name: str, site: str) -> str | None:
    """The segment a service sits in at a site: (site, tenant, zone)."""
    svc = topology.service(service_name)
    return _index(topology).segment_by_place.get((site, svc.tenant, svc.zone))


def _segment_endpoint(topology: Topology, ref: str, name: str) -> Endpoint:
    seg = topology.segment(name)
    return Endpoint(ref, f"segment:{seg.name}", seg.site, seg.zone, seg.tenant, seg.name, (seg.cidr,))


def _host_endpoints(topology: Topology, ref: str, host: Host) -> list[Endpoint]:
    found = []
    for iface in host.interfaces:
        seg = topology.segment(iface.segment)
        net = ipaddress.IPv4Network(int(iface.address))
        found.append(Endpoint(ref, f"segment:{seg.name}", seg.site, seg.zone, host.tenant, seg.name, (net,),
                              host.name, (host.name,), True))
    return found


def _service_endpoint(topology: Topology, ref: str, service: Service, site: str, segment: str) -> Endpoint:
    """A service at one site: its hosts' and its clusters' workers' addresses in its segment.

    A declared host without an interface in that segment is reached on its primary interface.
    A cluster none of whose workers has an interface in the segment leaves the whole segment
    standing for the service (the model does not know where its pods are reached).
    """
    seg = topology.segment(segment)
    nets: set[ipaddress.IPv4Network] = set()
    exact = True
    hosts = tuple(sorted(h for h in service.hosts if topology.host(h).site == site))
    for name in hosts:
        host = topology.host(name)
        in_segment = [i.address for i in host.interfaces if i.segment == segment]
        if not in_segment:
            primary = _primary_interface(topology, host)
            in_segment = [i.address for i in host.interfaces if i.segment == primary]
        nets.update(ipaddress.IPv4Network(int(a)) for a in in_segment)
    for cluster in service.clusters:
        if topology.cluster(cluster).site != site:
            continue
        nodes = _index(topology).nodes(cluster)
        found = {ipaddress.IPv4Network(int(i.address))
                 for h in nodes for i in h.interfaces if i.segment == segment}
        if found:
            nets |= found
        else:
            nets.add(seg.cidr)
            exact = False
    return Endpoint(ref, f"segment:{seg.name}", site, seg.zone, service.tenant, seg.name,
                    tuple(sorted(nets)), None, hosts, exact)


def resolve(topology: Topology, ref: str) -> list[Endpoint]:
    """Every place a flow end stands (computed once per reference and topology)."""
    resolved = _index(topology).resolved
    found = resolved.get(ref)
    if found is None:
        found = resolved[ref] = _resolve(topology, ref)
    return list(found)


def _resolve(topology: Topology, ref: str) -> list[Endpoint]:
    if ref == INTERNET:
        return [Endpoint(ref, INTERNET, None, None, None, None, (ANY_NETWORK,))]
    kind, _, name = ref.partition(":")
    if kind == "segment":
        return [_segment_endpoint(topology, ref, name)]
    if kind == "host":
        return _host_endpoints(topology, ref, topology.host(name))
    if kind == "institution":
        inst = topology.institution(name)
        return [Endpoint(ref, f"institution:{inst.name}", None, None, None, None, tuple(inst.cidrs),
                         exact=True)]
    if kind == "service":
        svc = topology.service(name)
        found = []
        for site in topology.service_sites(svc):
            seg = service_segment(topology, name, site)
            if seg is not None:
                found.append(_service_endpoint(topology, ref, svc, site, seg))
        return found
    raise ValueError(f"unknown endpoint reference {ref!r}")


def primary_interface(topology: Topology, host: Host) -> str:
    """The segment of a host's primary interface: its first one outside mgmt, else its first."""
    return _primary_interface(topology, host)


def _primary_interface(topology: Topology, host: Host) -> str:
    for iface in host.interfaces:
        if not zone_traits(topology.segment(iface.segment).zone).admin:
            return iface.segment
    return host.interfaces[0].segment


_Facts = tuple[Endpoint, frozenset[str] | None, str, frozenset[str]]


def _facts(topology: Topology, index: _Index, ref: str) -> list[_Facts]:
    """Each resolved end of ``ref`` with, for a host's end, the host's segments, primary segment
    and replication-zone segments (None, '' and empty otherwise), computed once per reference."""
    found = index.facts.get(ref)
    if found is None:
        found = index.facts[ref] = [
            (e, None, "", frozenset()) if e.host is None
            else (e, index.host_segments(e.host), index.primary(e.host), index.replication(e.host))
            for e in resolve(topology, ref)]
    return found


@functools.cache
def _replication_zones() -> frozenset[Zone]:
    return frozenset(zones_where("replication"))


def expand(topology: Topology, flow: Flow) -> list[Connection]:
    """The connections one flow allows.

    Every (source, destination) pair of resolved ends, in that order, that is at the same
    site (unless ``cross_site`` or an end is outside) and whose host ends use the right
    interface. A host end uses its interface in the other end's segment, if it has one;
    else, for a ``cross_site`` flow whose other end offers a replication-zone place (a
    replication segment, or a host with an interface there), its replication-zone interface
    if it has one (the inter-site DR link carries replication); else its primary interface.
    (Inlined for both ends: this loop runs for every flow.)
    """
    index = _index(topology)
    cross = flow.cross_site
    replication = _replication_zones()
    found = []
    destinations = _facts(topology, index, flow.destination)
    for s, s_segs, s_primary, s_repl in _facts(topology, index, flow.source):
        s_offers = bool(s_repl) if s_segs is not None else s.zone in replication
        for d, d_segs, d_primary, d_repl in destinations:
            if not (cross or s.site is None or d.site is None or s.site == d.site):
                continue
            if s_segs is not None:
                if d.segment is not None and d.segment in s_segs:
                    if s.segment != d.segment:
                        continue
                elif cross and s_repl and (bool(d_repl) if d_segs is not None else d.zone in replication):
                    if s.segment not in s_repl:
                        continue
                elif s.segment != s_primary:
                    continue
            if d_segs is not None:
                if s.segment is not None and s.segment in d_segs:
                    if d.segment != s.segment:
                        continue
                elif cross and d_repl and s_offers:
                    if d.segment not in d_repl:
                        continue
                elif d.segment != d_primary:
                    continue
            found.append(Connection(flow, s, d))
    return found


def connections(topology: Topology) -> list[Connection]:
    """Every connection every flow allows, cached on the topology."""
    cache = topology.cache
    if "connections" not in cache:
        cache["connections"] = [c for flow in topology.flows for c in expand(topology, flow)]
    result: list[Connection] = cache["connections"]
    return result


def _by_destination(topology: Topology) -> dict[str, list[tuple[int, Connection]]]:
    """Every connection with its position in :func:`connections`, by destination reference."""
    cache = topology.cache
    found: dict[str, list[tuple[int, Connection]]] | None = cache.get("flows.by_destination")
    if found is None:
        found = {}
        for i, conn in enumerate(connections(topology)):
            found.setdefault(conn.destination.ref, []).append((i, conn))
        cache["flows.by_destination"] = found
    return found


def _placements(topology: Topology) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The services placed on each host (by ``hosts``) and on each cluster, computed once."""
    cache = topology.cache
    found: tuple[dict[str, list[str]], dict[str, list[str]]] | None = cache.get("flows.placements")
    if found is None:
        by_host: dict[str, list[str]] = {}
        by_cluster: dict[str, list[str]] = {}
        for svc in topology.services:
            for name in svc.hosts:
                by_host.setdefault(name, []).append(svc.name)
            for name in svc.clusters:
                by_cluster.setdefault(name, []).append(svc.name)
        found = cache["flows.placements"] = (by_host, by_cluster)
    return found


def host_networks(topology: Topology, host: Host) -> list[tuple[str, ipaddress.IPv4Network]]:
    """(segment name, segment network) of each interface of a host."""
    return [(i.segment, topology.segment(i.segment).cidr) for i in host.interfaces]


def inbound_groups(topology: Topology, host: Host) -> list[tuple[str, list[tuple[int, Connection]]]]:
    """The connections landing on a host (see :func:`inbound_to_host`), by destination.

    Each group holds the connections of one destination reference, with their positions in
    :func:`connections`; all of one flow's connections are in one group. A group's key
    names what it depends on: hosts with the same key get the same group (every host of a
    segment shares ``segment:NAME``), so per-host consumers can compute a group once.
    """
    segments = {i.segment for i in host.interfaces}
    addresses = {i.address for i in host.interfaces}
    by_host, by_cluster = _placements(topology)
    placed = set(by_host.get(host.name, ()))
    if host.cluster is not None:
        placed.update(by_cluster.get(host.cluster, ()))
    by_destination = _by_destination(topology)
    groups: list[tuple[str, list[tuple[int, Connection]]]] = []
    ref = f"host:{host.name}"
    if ref in by_destination:
        groups.append((ref, by_destination[ref]))
    for name in sorted(placed):
        ref = f"service:{name}"
        # Only the service's connections whose exact addresses include one of the host's (a
        # cluster's control plane is not where its services' pods are reached); the key names
        # exactly those connections, so hosts they land on alike share the group.
        entries = [c for c in by_destination.get(ref, [])
                   if c[1].destination.segment in segments
                   and any(a in n for n in c[1].destination.networks for a in addresses)]
        if entries:
            groups.append((f"{ref}@{','.join(str(i) for i, _ in entries)}", entries))
    for seg in sorted(segments):
        ref = f"segment:{seg}"
        if ref in by_destination:
            groups.append((ref, by_destination[ref]))
    return groups


def inbound_to_host(topology: Topology, host: Host) -> list[Connection]:
    """Connections whose destination lands on this host.

    A destination lands on a host when it is the host itself, a segment the host has an
    interface in and the host is not a router of it, or a service placed on the host (by
    ``hosts``, or as a node of one of the service's clusters) whose exact addresses include
    one of the host's (a cluster's control plane is not where its services' pods are reached).
    """
    found = [entry for _key, entries in inbound_groups(topology, host) for entry in entries]
    found.sort(key=lambda c: c[0])
    return [conn for _, conn in found]


def is_group_service(topology: Topology, service: Service) -> bool:
    """A group service: one whose tenant is of kind ``shared``. Only these may stand between
    two banks on a path (TEN-01); their hosts and pods are the relays."""
    return topology.tenant(service.tenant).kind is TenantKind.SHARED


def replication_segments(topology: Topology, site: str, tenant: str) -> list[str]:
    """Replication segments at a site a tenant's databases use: its own, else shared ones.

    The replication segments are indexed by site once per topology: the stacks ask for every
    database of every cluster, the policy graph for every replicated service."""
    by_site: dict[str, list[Segment]] | None = topology.cache.get("flows.replication_segments")
    if by_site is None:
        by_site = {}
        for seg in topology.segments:
            if zone_traits(seg.zone).replication:
                by_site.setdefault(seg.site, []).append(seg)
        topology.cache["flows.replication_segments"] = by_site
    segs = by_site.get(site, [])
    own = sorted(s.name for s in segs if s.tenant == tenant)
    if own:
        return own
    return sorted(s.name for s in segs if topology.tenant(s.tenant).kind is TenantKind.SHARED)
