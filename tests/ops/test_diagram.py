"""Diagrams: DOT/SVG through graphviz and Mermaid, with drift marks, and `invoke diagram`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dualdc.loader import load_environment
from dualdc.reports import diagram

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def lab():
    return load_environment("lab")


def test_svg_has_every_segment_grouped_by_site_and_zone(lab) -> None:
    svg = ET.fromstring(diagram.to_svg(diagram.to_dot(lab)))
    titles = [t.text for t in svg.iter(f"{SVG}title")]
    for seg in lab.segments:
        assert f"segment:{seg.name}" in titles
    assert "cluster_site_gwangju" in titles and "cluster_site_jeonju" in titles
    # one cluster per (site, zone) that has segments
    zones = {(s.site, s.zone.value) for s in lab.segments}
    assert {t for t in titles if t and t.startswith("cluster_") and not t.startswith("cluster_site_")} == {
        f"cluster_{site}_{zone}" for site, zone in zones
    }


def test_flows_become_edges_between_the_right_segments(lab) -> None:
    by_pair = {(e.source, e.destination): e for e in diagram.edges(lab)}
    # internet-to-kj-ib: the internet reaches kjbank's DMZ segment at both sites (a service at both sites).
    for seg in ("gj-kjbank-dmz", "jj-kjbank-dmz"):
        assert "internet-to-kj-ib tcp/443" in by_pair[("internet", f"segment:{seg}")].flows
    # pg-to-kftc leaves the external segment for the institution.
    assert any("pg-to-kftc" in f for f in by_pair[("segment:gj-group-external", "institution:kftc")].flows)
    # Never an edge between the two banks' internal segments (TEN-01).
    assert ("segment:gj-kjbank-internal", "segment:gj-jbbank-internal") not in by_pair


def test_drift_marks_in_dot_and_mermaid(lab) -> None:
    marks = diagram.marks_for(lab, {"gj-log-01", "no-such-host"})
    assert marks.hosts == {"gj-log-01"}
    host = lab.host("gj-log-01")
    primary = next(i.segment for i in host.interfaces if lab.segment(i.segment).zone.value != "mgmt")
    assert marks.segments == {primary}
    dot = diagram.to_dot(lab, marks)
    assert re.search(rf'"segment:{primary}" \[label="DRIFT · {primary}[^\]]*penwidth=3', dot)
    assert '"host:gj-log-01" [label="DRIFT · host gj-log-01"' in dot
    mermaid = diagram.to_mermaid(lab, marks)
    drift_class = [
        line for line in mermaid.splitlines() if line.strip().startswith("class ") and line.endswith(" drift")
    ]
    assert drift_class == [f"  class seg_{primary.replace('-', '_')},host_gj_log_01 drift"]


def _check_mermaid_structure(text: str) -> None:
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    depth = 0
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("subgraph "):
            depth += 1
        elif stripped == "end":
            depth -= 1
            assert depth >= 0
    assert depth == 0
    ids = set(re.findall(r"^\s*([A-Za-z0-9_]+)[\[(]", text, re.MULTILINE))
    for source, target in re.findall(
        r"^\s*([A-Za-z0-9_]+) -->\|\"[^\"]*\"\| ([A-Za-z0-9_]+)$", text, re.MULTILINE
    ):
        assert source in ids and target in ids, (source, target)


def test_mermaid_is_well_formed_full_and_focused(lab) -> None:
    marks = diagram.marks_for(lab, {"jj-db-kj-01"})
    full = diagram.to_mermaid(lab, marks)
    _check_mermaid_structure(full)
    assert full.count("-->|") == len(diagram.edges(lab))
    focused = diagram.to_mermaid(lab, marks, only_marked=True)
    _check_mermaid_structure(focused)
    shown = set(re.findall(r"seg_([a-z0-9_]+)\[", focused))
    assert shown == {s.replace("-", "_") for s in marks.segments}
    assert diagram.mermaid_for_report(lab, diagram.Marks()) is None
    assert diagram.mermaid_for_report(lab, marks, budget=len(focused)) == focused


def _invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_invoke_diagram_writes_svg_and_mermaid(tmp_path: Path) -> None:
    done = _invoke("diagram", "--env", "lab", "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.dot", "lab.md", "lab.mmd", "lab.svg"]
    ET.fromstring((tmp_path / "lab.svg").read_text(encoding="utf-8"))
    assert (tmp_path / "lab.md").read_text(encoding="utf-8").count("```") == 2


def test_invoke_diagram_errors_exit_1_and_write_nothing(tmp_path: Path) -> None:
    done = _invoke("diagram", "--env", "nowhere", "--output-dir", str(tmp_path / "a"))
    assert done.returncode == 1 and "no such environment" in done.stderr and "Traceback" not in done.stderr
    no_dot = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # graphviz's dot is in /usr/bin
    done = _invoke("diagram", "--env", "lab", "--output-dir", str(tmp_path / "b"), env=no_dot)
    assert done.returncode == 1 and "install the Debian package graphviz" in done.stderr
    assert not (tmp_path / "b").exists()
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "something else"}', encoding="utf-8")
    done = _invoke("diagram", "--env", "lab", "--output-dir", str(tmp_path / "c"), "--drift-report", str(bad))
    assert done.returncode == 1 and "is not a dualdc drift report" in done.stderr


def test_every_zone_has_its_own_colour_and_the_ai_zone_is_drawn() -> None:
    from dualdc.model import ZONE_TRAITS, Zone, zone_traits

    assert set(ZONE_TRAITS) == {z.value for z in Zone}
    fills = [t.colour[0] for t in ZONE_TRAITS.values()]
    assert len(set(fills)) == len(fills)
    lab = load_environment("lab")
    dot = diagram.to_dot(lab)
    ai_fill = zone_traits(Zone.AI).colour[0]
    assert "cluster_gwangju_ai" in dot and ai_fill in dot
    assert "cluster_jeonju_ai" not in dot  # no AI segment in Jeonju, so no empty box
