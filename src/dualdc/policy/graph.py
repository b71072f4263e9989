"""The graphs of declared flows, for the rules that reason over several hops (NS-01, TEN-01).

NS-01 uses the segment graph below; TEN-01 the endpoint graph (:func:`endpoint_graph`) at
the end of this module.

Nodes are the :attr:`~dualdc.flows.Endpoint.node` of resolved flow ends: a segment
(``segment:NAME``), an outside institution (``institution:NAME``) or ``internet``. There
is a directed edge ``u → v`` when some declared flow lets ``u`` open a connection to
``v``; the edge keeps those connections. Reachability along these edges is what an
attacker who owns one node can reach next, so a rule asks for a path, not a single flow.

Outside nodes are never transit: a flow *to* the internet or to an institution does not
let anything continue from there, so such edges are left out.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import networkx as nx

from dualdc.flows import (
    Connection,
    Endpoint,
    connections,
    is_group_service,
    replication_segments,
    service_segment,
)
from dualdc.model import ReplicationKind, Service, Topology, Zone

SUPER_SOURCE = "\0sources"
SUPER_SINK = "\0protected"


def _edges(topology: Topology) -> dict[tuple[str, str], list[Connection]]:
    """Connections grouped by (source node, destination node), outside destinations left out."""
    cache = topology.cache
    found: dict[tuple[str, str], list[Connection]] | None = cache.get("policy.graph.edges")
    if found is None:
        found = {}
        for conn in connections(topology):
            u, v = conn.source.node, conn.destination.node
            if u != v and not conn.destination.outside:
                found.setdefault((u, v), []).append(conn)
        cache["policy.graph.edges"] = found
    return found


def build(
    topology: Topology,
    keep: Callable[[Connection], bool] | None = None,
    nodes: Callable[[str], bool] | None = None,
) -> nx.DiGraph:
    """The flow graph over the connections ``keep`` accepts, between nodes ``nodes`` accepts."""
    graph = nx.DiGraph()
    for (u, v), conns in _edges(topology).items():
        if nodes is not None and not (nodes(u) and nodes(v)):
            continue
        kept = conns if keep is None else [c for c in conns if keep(c)]
        if kept:
            graph.add_edge(u, v, conns=kept)
    return graph


@dataclass(frozen=True)
class Breach:
    """A path from a source into a protected node, and the flow it blames."""

    path: list[str]
    """Nodes from a source to a protected node, inclusive."""
    hops: list[Connection]
    """One connection per hop of ``path``."""
    blamed: int
    """Index in ``hops`` of the connection that leaves the region the sources belong to."""

    @property
    def connection(self) -> Connection:
        return self.hops[self.blamed]


def breaches(graph: nx.DiGraph, sources: Iterable[str], inside: Callable[[str], bool],
             protected: Callable[[str], bool]) -> list[Breach]:
    """Every way out of a region that leads, over any number of hops, into a protected node.

    The region is the nodes ``inside`` says belong to it (for NS-01 the internet and the
    DMZ; for TEN-01 one bank's segments). A breach is an edge ``u → v`` with ``u`` inside
    the region and reachable from ``sources``, ``v`` outside it, and some protected node
    reachable from ``v`` (or ``v`` protected itself). That edge is what opens the path, so
    its flows are the ones blamed: one :class:`Breach` per connection on it, with a
    shortest path from the sources through it to the nearest protected node.
    """
    starts = [s for s in sources if s in graph]
    targets = [n for n in graph if protected(n)]
    if not starts or not targets:
        return []
    graph.add_node(SUPER_SOURCE)
    graph.add_node(SUPER_SINK)
    try:
        graph.add_edges_from(((SUPER_SOURCE, s) for s in starts), conns=[])
        graph.add_edges_from(((t, SUPER_SINK) for t in targets), conns=[])
        paths_in: dict[str, list[str]] = nx.single_source_shortest_path(graph, SUPER_SOURCE)
        leads_on = nx.ancestors(graph, SUPER_SINK)
        found: list[Breach] = []
        for u, path in paths_in.items():
            if u == SUPER_SOURCE or not inside(u):
                continue
            for v, data in graph.adj[u].items():
                if v == SUPER_SINK or inside(v) or v not in leads_on:
                    continue
                onward = nx.shortest_path(graph, v, SUPER_SINK)[:-1]
                trail = [*path[1:], *onward]
                hops = [graph.edges[a, b]["conns"][0] for a, b in itertools.pairwise(trail)]
                blamed = len(path) - 2
                for conn in data["conns"]:
                    hops[blamed] = conn
                    found.append(Breach(trail, list(hops), blamed))
        return found
    finally:
        graph.remove_node(SUPER_SOURCE)
        graph.remove_node(SUPER_SINK)


def describe(breach: Breach) -> str:
    """``internet -[flow a]-> segment:x =[flow b]=> segment:y``; the blamed hop is ``=[…]=>``."""
    parts = [breach.path[0]]
    for i, (node, conn) in enumerate(zip(breach.path[1:], breach.hops, strict=True)):
        arrow = f"=[{conn.flow.name}]=>" if i == breach.blamed else f"-[{conn.flow.name}]->"
        parts.append(f"{arrow} {node}")
    return " ".join(parts)


# --------------------------------------------------------------------------- endpoints (TEN-01)


Hop = tuple[str, Connection | None]
"""One edge of the endpoint graph: its target node, and the declared flow's connection, or
``None`` for a placement (a segment reaching what sits in it; a host or a database's pods
opening what their segment may open)."""


@dataclass
class EndpointGraph:
    """The flow graph over endpoints, with segments as the places they sit in.

    Nodes:

    - ``host:NAME``: a bare-metal host, of its own tenant;
    - ``service:NAME@SITE``: a service's pods on its clusters at a site, of the service's tenant
      (a service on hosts is its hosts);
    - ``segment:NAME``: a segment as a destination: what reaches it reaches every host in it
      and the pods of every service placed in it;
    - ``from:NAME``: a segment as a source: what any host sitting in it may open;
    - ``internet`` and ``institution:NAME`` as sources only (never transit).

    Placement edges join ``segment:S → host:H`` and ``host:H → from:S`` for every interface,
    so a host with interfaces in several segments is an edge between them; a service's pods
    are reached through their segment and, for a CloudNativePG database, stand in the
    tenant's replication segment both ways. Flow edges join the ends of every connection.
    Two hosts that merely share a segment are not joined: the hosts' own firewalls deny what
    no flow declares.
    """

    adj: dict[str, list[Hop]]
    tenant: dict[str, str]
    zones: dict[str, frozenset[Zone]]
    relays: frozenset[str]
    """Endpoints of group services (tenant of kind ``shared``): paths end there."""


def _service_nodes(topology: Topology, service: Service, site: str) -> list[str]:
    found = [f"host:{h}" for h in service.hosts if topology.host(h).site == site]
    if any(topology.cluster(c).site == site for c in service.clusters):
        found.append(f"service:{service.name}@{site}")
    return found


def _end_nodes(topology: Topology, end: Endpoint, source: bool) -> list[str]:
    kind, _, name = end.ref.partition(":")
    if end.outside:
        return [end.node] if source else []
    if kind == "host":
        return [f"host:{name}"]
    if kind == "segment":
        return [f"from:{name}" if source else f"segment:{name}"]
    assert end.site is not None
    return _service_nodes(topology, topology.service(name), end.site)


def endpoint_graph(topology: Topology) -> EndpointGraph:
    """The endpoint graph of a topology (cached on it)."""
    cached: EndpointGraph | None = topology.cache.get("policy.graph.endpoints")
    if cached is not None:
        return cached
    adj: dict[str, list[Hop]] = {}
    tenant: dict[str, str] = {}
    zones: dict[str, frozenset[Zone]] = {}
    relays: set[str] = set()

    def edge(u: str, v: str, conn: Connection | None) -> None:
        adj.setdefault(u, []).append((v, conn))
        adj.setdefault(v, [])

    zone_of: dict[str, Zone] = {}
    for seg in topology.segments:
        zone_of[seg.name] = seg.zone
        for node in (f"segment:{seg.name}", f"from:{seg.name}"):
            tenant[node], zones[node] = seg.tenant, frozenset({seg.zone})
            adj[node] = []
    for host in topology.hosts:
        node = f"host:{host.name}"
        tenant[node] = host.tenant
        zones[node] = frozenset(zone_of[i.segment] for i in host.interfaces)
        out = adj[node] = []
        for iface in host.interfaces:
            adj[f"segment:{iface.segment}"].append((node, None))
            out.append((f"from:{iface.segment}", None))
    for svc in topology.services:
        group = is_group_service(topology, svc)
        if group:
            relays.update(f"host:{h}" for h in svc.hosts)
        for site in topology.service_sites(svc):
            if not any(topology.cluster(c).site == site for c in svc.clusters):
                continue
            node = f"service:{svc.name}@{site}"
            tenant[node], zones[node] = svc.tenant, frozenset({svc.zone})
            if group:
                relays.add(node)
            place = service_segment(topology, svc.name, site)
            if place is not None:
                edge(f"segment:{place}", node, None)
            if svc.database is not None and ReplicationKind.CNPG in svc.replication:
                for rep in replication_segments(topology, site, svc.tenant):
                    edge(f"segment:{rep}", node, None)
                    edge(node, f"from:{rep}", None)
    # Edges out of relays and outside nodes are never followed (paths end at a group service;
    # nothing reaches the internet or an institution), so they are not built.
    # Resolved ends are shared objects (flows.resolve caches them), so they key by identity.
    from_nodes: dict[int, list[str]] = {}
    to_nodes: dict[int, list[str]] = {}
    for conn in connections(topology):
        src, dst = conn.source, conn.destination
        sources = from_nodes.get(id(src))
        if sources is None:
            sources = from_nodes[id(src)] = [] if src.outside else [
                n for n in _end_nodes(topology, src, True) if n not in relays]
        if not sources:
            continue
        targets = to_nodes.get(id(dst))
        if targets is None:
            targets = to_nodes[id(dst)] = _end_nodes(topology, dst, False)
        for u in sources:
            adj[u].extend((v, conn) for v in targets if v != u)
    found = EndpointGraph(adj, tenant, zones, frozenset(relays))
    topology.cache["policy.graph.endpoints"] = found
    return found


@dataclass(frozen=True)
class EndpointBreach:
    """A path from one tenant's endpoint to another's, and the flow it blames."""

    path: list[str]
    hops: list[Connection | None]
    """One per edge of ``path``: the connection, or ``None`` for a placement edge."""
    blamed: int

    @property
    def connection(self) -> Connection:
        conn = self.hops[self.blamed]
        assert conn is not None
        return conn


def _bfs(graph: EndpointGraph, starts: Iterable[str],
         blocked: frozenset[str] | set[str] = frozenset()) -> dict[str, tuple[str, Connection | None] | None]:
    """Shortest-path parents from ``starts``, never continuing from a relay, never entering ``blocked``."""
    parent: dict[str, tuple[str, Connection | None] | None] = {}
    queue: deque[str] = deque()
    for s in starts:
        if s not in parent:
            parent[s] = None
            queue.append(s)
    while queue:
        u = queue.popleft()
        if u in graph.relays and parent[u] is not None:
            continue
        for target, conn in graph.adj.get(u, ()):
            if target not in parent and target not in blocked:
                parent[target] = (u, conn)
                queue.append(target)
    return parent


def _trail(parent: dict[str, tuple[str, Connection | None] | None], node: str) -> tuple[list[str], list[
        Connection | None]]:
    nodes, hops = [node], []
    step = parent[node]
    while step is not None:
        prev, conn = step
        nodes.append(prev)
        hops.append(conn)
        step = parent[prev]
    return nodes[::-1], hops[::-1]


def tenant_breaches(graph: EndpointGraph, tenant: str, starts: list[str],
                    targets: Callable[[str], bool]) -> list[EndpointBreach]:
    """Every flow that lets ``tenant``'s endpoints ``starts`` reach a node ``targets`` accepts.

    A flow is blamed where the path leaves the tenant's side: a connection from a node of
    the tenant, or from a node reached from one through placements only (a multi-homed
    host, a shared segment the tenant's host sits in), to a node of another tenant, from
    which a target is reachable without passing a group service and without coming back to
    the tenant's side (else a later flow is the one that leaves). One breach per blamed
    connection, with a shortest path from a start through it to the nearest target.
    """
    reached = _bfs(graph, starts)
    side: set[str] = set()
    stack = [n for n in reached if graph.tenant.get(n) == tenant]
    while stack:
        u = stack.pop()
        if u in side:
            continue
        side.add(u)
        if u in graph.relays:
            continue
        stack.extend(v for v, conn in graph.adj.get(u, ()) if conn is None and v in reached)
    found: list[EndpointBreach] = []
    onward_cache: dict[str, tuple[list[str], list[Connection | None]] | None] = {}
    for u in sorted(side):
        if u in graph.relays and reached[u] is not None:
            continue
        for v, conn in graph.adj.get(u, ()):
            if conn is None or graph.tenant.get(v) == tenant:
                continue
            if v in graph.relays and not targets(v):
                continue
            if v not in onward_cache:
                onward_cache[v] = _nearest(graph, v, targets, side)
            onward = onward_cache[v]
            if onward is None:
                continue
            before, before_hops = _trail(reached, u)
            after, after_hops = onward
            found.append(EndpointBreach([*before, *after], [*before_hops, conn, *after_hops],
                                        len(before_hops)))
    return found


def _nearest(graph: EndpointGraph, start: str, targets: Callable[[str], bool],
             blocked: set[str]) -> tuple[list[str], list[Connection | None]] | None:
    parent: dict[str, tuple[str, Connection | None] | None] = (
        {start: None} if targets(start) else _bfs(graph, [start], blocked))
    best = next((n for n in parent if targets(n)), None)
    if best is None:
        return None
    return _trail(parent, best)


def endpoint_name(node: str) -> str:
    """How a node is named in a message: ``from:X`` is the segment X."""
    return f"segment:{node[5:]}" if node.startswith("from:") else node


def describe_endpoints(breach: EndpointBreach) -> str:
    """``host:a ~ segment:x =[flow]=> segment:y ~ host:b``: ``~`` a placement, ``=[…]=>`` the blamed flow."""
    parts = [endpoint_name(breach.path[0])]
    for i, (node, conn) in enumerate(zip(breach.path[1:], breach.hops, strict=True)):
        if conn is None:
            arrow = "~"
        elif i == breach.blamed:
            arrow = f"=[{conn.flow.name}]=>"
        else:
            arrow = f"-[{conn.flow.name}]->"
        name = endpoint_name(node)
        if conn is None and name == endpoint_name(parts[-1].split(" ")[-1]):
            continue
        parts.append(f"{arrow} {name}")
    return " ".join(parts)
