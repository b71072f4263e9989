"""The graph of declared flows, for the rules that reason over several hops (NS-01, TEN-01).

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import networkx as nx

from dualdc.flows import Connection, connections
from dualdc.model import Topology

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
