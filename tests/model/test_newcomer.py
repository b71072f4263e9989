"""A newcomer's changes touch only where their concept lives: a new zone kind, a third site.

A copy of the lab topology gets segments of a zone kind it did not use (``dev``: every layer
reads what a zone means from ``dualdc.model.ZONE_TRAITS``, one row per kind) and a third site.
Nothing pairs DR peers by position: a third site without a declared ``dr_peer`` is refused
with a message naming it; declared (and mutual), the topology validates and every layer that
reads the model renders it: the policy, the inventory, the diagrams, the lab's plan. (The
policy still asks the empty new sites for their substance: hosts and links.)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from dualdc import inventory
from dualdc.lab.config import LabConfig
from dualdc.lab.plan import build as lab_plan
from dualdc.loader import TopologyError, load_topology
from dualdc.model import ZONE_TRAITS, Severity, Zone, zone_traits
from dualdc.policy import run_policy
from dualdc.reports import diagram

LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"


def _site(name: str, city: str, peer: str | None) -> dict[str, Any]:
    site: dict[str, Any] = {"name": name, "description": f"{city} data center", "city": city,
                            "latitude": 37.5665, "longitude": 126.978, "racks": 2, "power_feeds": 2,
                            "uplinks": 2}
    if peer is not None:
        site["dr_peer"] = peer
    return site


def _dev_segment(name: str, site: str, vlan: int, third_octet: int) -> dict[str, Any]:
    return {"name": name, "site": site, "tenant": "group", "zone": "dev", "vlan": vlan,
            "cidr": f"10.{third_octet}.250.0/24", "gateway": f"10.{third_octet}.250.1"}


def _copy(tmp_path: Path, sites: list[dict[str, Any]]) -> Path:
    """The lab topology plus ``sites``, each with a ``dev`` segment (a zone kind the lab does not use)."""
    folder = tmp_path / "lab"
    shutil.copytree(LAB, folder)
    env_file = folder / "environment.yaml"
    env = yaml.safe_load(env_file.read_text(encoding="utf-8"))
    env["sites"] += sites
    env["environment"]["deploy_order"] += [s["name"] for s in sites]
    env_file.write_text(yaml.safe_dump(env, allow_unicode=True, sort_keys=False), encoding="utf-8")
    net_file = folder / "network.yaml"
    net = yaml.safe_load(net_file.read_text(encoding="utf-8"))
    used = {s["zone"] for s in net["segments"]}
    assert "dev" not in used  # a zone kind new to this topology
    net["segments"] += [_dev_segment(f"{s['name'][:2]}-group-dev", s["name"], 250, 60 + i)
                        for i, s in enumerate(sites)]
    net["segments"].append(_dev_segment("gj-group-dev", "gwangju", 250, 10))
    net_file.write_text(yaml.safe_dump(net, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def test_every_zone_kind_has_one_row_of_traits() -> None:
    assert set(ZONE_TRAITS) == {z.value for z in Zone}
    colours = [zone_traits(z).colour for z in Zone]
    assert len(set(colours)) == len(colours)  # the diagrams tell every zone apart


def test_a_third_site_without_a_dr_peer_is_refused_by_name(tmp_path: Path) -> None:
    folder = _copy(tmp_path, [_site("seoul", "Seoul", None)])
    with pytest.raises(TopologyError) as raised:
        load_topology(folder)
    text = str(raised.value)
    assert "site 'seoul' names no dr_peer" in text and "by position" in text
    assert "gwangju" not in text.split("seoul", 1)[1].split("\n", 1)[0]  # nothing was paired for it


def test_a_third_site_naming_a_taken_peer_is_refused_as_not_mutual(tmp_path: Path) -> None:
    folder = _copy(tmp_path, [_site("seoul", "Seoul", "gwangju")])
    with pytest.raises(TopologyError, match="names 'gwangju' as its dr_peer but 'gwangju' names 'jeonju'"):
        load_topology(folder)


def test_a_third_site_with_its_dr_peer_validates_and_renders(tmp_path: Path) -> None:
    # DR peers are mutual, so the third site comes with the site that backs it up
    folder = _copy(tmp_path, [_site("seoul", "Seoul", "busan"), _site("busan", "Busan", "seoul")])
    topology = load_topology(folder)
    assert topology.dr_peer("seoul") == "busan" and topology.dr_peer("gwangju") == "jeonju"
    assert topology.deploy_order()[-2:] == ["seoul", "busan"]
    # the policy runs over it; what it still wants of the empty new sites is their substance
    # (hosts enough to carry the other sites' tier-1 services, two links to every other site),
    # not anything about the pairing or the new zone kind
    errors = [f for f in run_policy(topology).failing() if f.severity is Severity.ERROR]
    shown = [f"{f.rule} {f.target}: {f.message}" for f in errors]
    assert {f.rule for f in errors} <= {"CAP-01", "DR-03"}, shown
    assert all("seoul" in f.message or "busan" in f.message for f in errors)
    built = inventory.build(topology)
    assert "zone_dev" not in built["groups"]  # a zone (or site) without hosts makes no group
    assert inventory.group_vars(topology)["site_seoul"]["dualdc_peer_site"] == "busan"
    dot = diagram.to_dot(topology)
    fill, _ = zone_traits(Zone.DEV).colour
    assert "se-group-dev" in dot and "bu-group-dev" in dot and fill in dot
    assert "se-group-dev" in diagram.to_mermaid(topology)
    plan = lab_plan(topology, LabConfig.load("lab").infra)
    assert set(plan.routers) == {s.name for s in topology.sites}
