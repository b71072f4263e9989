"""Diagrams of an environment: sites, segments grouped by site and zone, and the declared flows.

Two renderings of the same graph:

- Graphviz DOT, turned into SVG by ``dot`` (Debian package ``graphviz``), for people;
- Mermaid, for Markdown (GitHub and GitLab render it inline, e.g. in the drift report comment).

Segments are grouped by site, then zone, and coloured by zone; the internet and outside
institutions stand outside every site. Edges come from :func:`dualdc.flows.connections`, so a
diagram shows exactly what the firewalls and NetworkPolicies are built from; the flows between
the same two nodes are merged into one edge. :class:`Marks` highlights what drifted: marked
segments are drawn in red, and marked hosts appear inside the segment of their primary
interface.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dualdc.base.files import write_atomic
from dualdc.flows import Connection, connections, primary_interface
from dualdc.model import Topology, Zone, zone_traits

DOT_TIMEOUT = 120
#: Edge labels name at most this many flows, then "+N more".
LABEL_FLOWS = 3

# A zone's colours are its ``ZoneTraits.colour`` (dualdc.model.ZONE_TRAITS).
OUTSIDE_COLORS = ("#ffffff", "#333333")
DRIFT_COLORS = ("#ffd6d6", "#d00000")


class DiagramError(Exception):
    """The diagram could not be drawn (a tool is missing or failed)."""


@dataclass
class Marks:
    """What to highlight: hosts and segments that drifted."""

    hosts: set[str] = field(default_factory=set)
    segments: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.hosts or self.segments)


@dataclass
class Edge:
    source: str
    destination: str
    flows: list[str]

    def label(self) -> str:
        shown = self.flows[:LABEL_FLOWS]
        more = len(self.flows) - len(shown)
        return ", ".join(shown) + (f" +{more} more" if more else "")


def _flow_label(conn: Connection) -> str:
    ports = ",".join(str(p) for p in conn.ports) if conn.ports else "any"
    return f"{conn.flow.name} {conn.flow.protocol.value}/{ports}"


def edges(topology: Topology) -> list[Edge]:
    """The flows between graph nodes, merged per (source, destination), sorted."""
    merged: dict[tuple[str, str], list[str]] = {}
    for conn in connections(topology):
        labels = merged.setdefault((conn.source.node, conn.destination.node), [])
        label = _flow_label(conn)
        if label not in labels:
            labels.append(label)
    return [Edge(s, d, sorted(labels)) for (s, d), labels in sorted(merged.items())]


def outside_nodes(topology: Topology) -> list[tuple[str, str]]:
    """(node, label) of the internet and the institutions that appear in flows."""
    used = {e.source for e in edges(topology)} | {e.destination for e in edges(topology)}
    found = []
    if "internet" in used:
        found.append(("internet", "internet"))
    for inst in sorted(topology.institutions, key=lambda i: i.name):
        node = f"institution:{inst.name}"
        if node in used:
            found.append((node, f"{inst.name} · {inst.display_name}"))
    return found


def marks_for(topology: Topology, hosts: set[str], segments: set[str] | None = None) -> Marks:
    """Marks for drifted hosts: each host's primary segment is marked too."""
    marked = set(segments or ())
    known = {h.name for h in topology.hosts}
    for name in hosts:
        if name in known:
            marked.add(primary_interface(topology, topology.host(name)))
    return Marks(hosts={h for h in hosts if h in known}, segments=marked)


# --------------------------------------------------------------------------- DOT / SVG


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(topology: Topology, marks: Marks | None = None) -> str:
    """The environment as a Graphviz digraph (deterministic)."""
    marks = marks or Marks()
    env = topology.environment.name
    out = [
        f"digraph {_dot_quote('dualdc ' + env)} {{",
        '  graph [rankdir=LR, compound=true, fontname="sans-serif", fontsize=12, nodesep=0.3, ranksep=1.2,',
        f"         label={_dot_quote(f'dualdc · {env}: sites, segments by zone, declared flows')},",
        "         labelloc=t];",
        '  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=10];',
        '  edge [fontname="sans-serif", fontsize=8, color="#555555"];',
    ]
    hosts_by_segment: dict[str, list[str]] = {}
    for name in sorted(marks.hosts):
        hosts_by_segment.setdefault(primary_interface(topology, topology.host(name)), []).append(name)
    for site in sorted(topology.sites, key=lambda s: s.name):
        out.append(f"  subgraph {_dot_quote('cluster_site_' + site.name)} {{")
        out.append(f'    label={_dot_quote(f"{site.name} · {site.city}")}; style=rounded; color="#222222";')
        for zone in Zone:
            segments = sorted(
                (s for s in topology.segments_at(site.name) if s.zone is zone), key=lambda s: s.name
            )
            if not segments:
                continue
            fill, stroke = zone_traits(zone).colour
            out.append(f"    subgraph {_dot_quote(f'cluster_{site.name}_{zone.value}')} {{")
            out.append(
                f'      label={_dot_quote(zone.value)}; style="rounded,filled"; fillcolor="{fill}55"; '
                f'color="{stroke}";'
            )
            for seg in segments:
                label = f"{seg.name}\nVLAN {seg.vlan} · {seg.cidr}\n{seg.tenant}"
                attrs = f'fillcolor="{fill}", color="{stroke}"'
                if seg.name in marks.segments:
                    label = "DRIFT · " + label
                    attrs = f'fillcolor="{DRIFT_COLORS[0]}", color="{DRIFT_COLORS[1]}", penwidth=3'
                out.append(f"      {_dot_quote('segment:' + seg.name)} [label={_dot_quote(label)}, {attrs}];")
                for host in hosts_by_segment.get(seg.name, []):
                    out.append(
                        f"      {_dot_quote('host:' + host)} [label={_dot_quote('DRIFT · host ' + host)}, "
                        f'shape=note, fillcolor="{DRIFT_COLORS[0]}", color="{DRIFT_COLORS[1]}", '
                        "penwidth=2];"
                    )
                    out.append(
                        f"      {_dot_quote('host:' + host)} -> {_dot_quote('segment:' + seg.name)} "
                        '[style=dashed, arrowhead=none, color="#d00000"];'
                    )
            out.append("    }")
        out.append("  }")
    for node, label in outside_nodes(topology):
        shape = "ellipse" if node == "internet" else "component"
        out.append(
            f"  {_dot_quote(node)} [label={_dot_quote(label)}, shape={shape}, "
            f'fillcolor="{OUTSIDE_COLORS[0]}", color="{OUTSIDE_COLORS[1]}"];'
        )
    for edge in edges(topology):
        out.append(
            f"  {_dot_quote(edge.source)} -> {_dot_quote(edge.destination)} "
            f"[label={_dot_quote(edge.label())}, tooltip={_dot_quote(chr(10).join(edge.flows))}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"


def dot_executable() -> str:
    found = shutil.which("dot")
    if found is None:
        raise DiagramError(
            "graphviz's 'dot' is not installed: install the Debian package graphviz "
            "(apt-get install graphviz; scripts/bootstrap.sh does it)"
        )
    return found


def to_svg(dot_text: str) -> str:
    """SVG from DOT through graphviz's ``dot`` (raises :class:`DiagramError`)."""
    try:
        done = subprocess.run(
            [dot_executable(), "-Tsvg"],
            input=dot_text,
            capture_output=True,
            text=True,
            timeout=DOT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DiagramError(f"graphviz 'dot' took longer than {DOT_TIMEOUT} s") from None
    except OSError as exc:
        raise DiagramError(f"cannot run graphviz 'dot': {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise DiagramError(f"graphviz 'dot' failed: {done.stderr.strip()[:500]}")
    return done.stdout


# --------------------------------------------------------------------------- Mermaid

_MERMAID_ID = re.compile(r"[^A-Za-z0-9_]")


def _mid(node: str) -> str:
    kind, _, name = node.partition(":")
    prefix = {"segment": "seg", "institution": "inst", "host": "host", "internet": "internet"}[kind]
    return prefix + ("_" + _MERMAID_ID.sub("_", name) if name else "")


def _mlabel(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("\n", "<br/>") + '"'


def to_mermaid(topology: Topology, marks: Marks | None = None, *, only_marked: bool = False) -> str:
    """The environment as a Mermaid flowchart; ``only_marked`` keeps just the marked segments."""
    marks = marks or Marks()
    shown_segments = {s.name for s in topology.segments if not only_marked or s.name in marks.segments}
    out = ["flowchart LR"]
    hosts_by_segment: dict[str, list[str]] = {}
    for name in sorted(marks.hosts):
        hosts_by_segment.setdefault(primary_interface(topology, topology.host(name)), []).append(name)
    zone_members: dict[Zone, list[str]] = {}
    for site in sorted(topology.sites, key=lambda s: s.name):
        site_segments = [s for s in topology.segments_at(site.name) if s.name in shown_segments]
        if not site_segments:
            continue
        out.append(
            f"  subgraph site_{_MERMAID_ID.sub('_', site.name)}[{_mlabel(f'{site.name} · {site.city}')}]"
        )
        for zone in Zone:
            segments = sorted((s for s in site_segments if s.zone is zone), key=lambda s: s.name)
            if not segments:
                continue
            out.append(f"    subgraph {_MERMAID_ID.sub('_', site.name)}_{zone.value}[{_mlabel(zone.value)}]")
            for seg in segments:
                node = _mid("segment:" + seg.name)
                drift = "DRIFT · " if seg.name in marks.segments else ""
                out.append(f"      {node}[{_mlabel(f'{drift}{seg.name}<br/>VLAN {seg.vlan} · {seg.cidr}')}]")
                zone_members.setdefault(zone, []).append(node)
                for host in hosts_by_segment.get(seg.name, []):
                    out.append(f"      {_mid('host:' + host)}[/{_mlabel('DRIFT · host ' + host)}/]")
            out.append("    end")
        out.append("  end")
    for seg_name, hosts in sorted(hosts_by_segment.items()):
        if seg_name in shown_segments:
            for host in hosts:
                out.append(f"  {_mid('host:' + host)} -.- {_mid('segment:' + seg_name)}")
    visible = {"segment:" + s for s in shown_segments}
    if not only_marked:
        for node, label in outside_nodes(topology):
            shape = f"(({_mlabel(label)}))" if node == "internet" else f"[[{_mlabel(label)}]]"
            out.append(f"  {_mid(node)}{shape}")
            visible.add(node)
    for edge in edges(topology):
        if edge.source in visible and edge.destination in visible:
            out.append(f"  {_mid(edge.source)} -->|{_mlabel(edge.label())}| {_mid(edge.destination)}")
    for zone, nodes in sorted(zone_members.items()):
        fill, stroke = zone_traits(zone).colour
        out.append(f"  classDef zone_{zone.value} fill:{fill},stroke:{stroke},color:#000")
        out.append(f"  class {','.join(nodes)} zone_{zone.value}")
    drifted = [_mid("segment:" + s) for s in sorted(marks.segments) if s in shown_segments]
    for seg_name, hosts in sorted(hosts_by_segment.items()):
        if seg_name in shown_segments:
            drifted.extend(_mid("host:" + host) for host in hosts)
    if drifted:
        out.append(
            f"  classDef drift fill:{DRIFT_COLORS[0]},stroke:{DRIFT_COLORS[1]},stroke-width:3px,color:#000"
        )
        out.append(f"  class {','.join(drifted)} drift")
    return "\n".join(out) + "\n"


def mermaid_for_report(topology: Topology, marks: Marks, budget: int = 25_000) -> str | None:
    """Mermaid for the drift report: the whole environment if it fits ``budget``, else only what drifted."""
    if not marks:
        return None
    full = to_mermaid(topology, marks)
    if len(full) <= budget:
        return full
    focused = to_mermaid(topology, marks, only_marked=True)
    return focused if len(focused) <= budget else None


# --------------------------------------------------------------------------- files


def write_diagrams(topology: Topology, output_dir: Path, marks: Marks | None = None) -> list[Path]:
    """Write ``<env>.dot``, ``<env>.svg``, ``<env>.mmd`` and ``<env>.md`` (Mermaid in Markdown)."""
    dot_executable()  # fail before writing anything
    env = topology.environment.name
    dot_text = to_dot(topology, marks)
    svg = to_svg(dot_text)
    mermaid = to_mermaid(topology, marks)
    files = {
        f"{env}.dot": dot_text,
        f"{env}.svg": svg,
        f"{env}.mmd": mermaid,
        f"{env}.md": f"# dualdc · {env}\n\nSites, segments by zone, and the declared flows.\n\n```mermaid\n"
        f"{mermaid}```\n",
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = output_dir / name
        written.append(write_atomic(path, text))
    return written
