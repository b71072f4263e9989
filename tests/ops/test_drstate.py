"""The primary state file: who is primary after a switchover or failover, and what follows from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dualdc import inventory
from dualdc.databases import postgresql_vars
from dualdc.loader import load_environment
from dualdc.model import Topology
from dualdc.ops import drstate, drstatus


@pytest.fixture
def lab() -> Topology:
    return load_environment("lab")


def _svc(topology: Topology, name: str = "kj-core-banking") -> Any:
    return next(s for s in topology.host_databases() if s.name == name)


def _switched(topology: Topology, root: Path, fenced: list[str] | None = None) -> drstate.PrimaryState:
    state = drstate.load("lab", root)
    drstate.record_primary(state, _svc(topology), topology, "jj-db-kj-01", by="switchover",
                           fenced=fenced or [])
    drstate.save(state, root)
    return state


def test_missing_file_means_the_model(lab: Topology, tmp_path: Path) -> None:
    state = drstate.load_and_apply(lab, tmp_path)
    assert state.services == {}
    assert drstate.summary(lab)["kj-core-banking"] == "gj-db-kj-01"
    assert postgresql_vars(lab, lab.host("gj-db-kj-01"))["role"] == "primary"  # type: ignore[index]


def test_a_switchover_is_recorded_and_survives_a_reload(lab: Topology, tmp_path: Path) -> None:
    _switched(lab, tmp_path)
    path = drstate.state_path("lab", tmp_path)
    assert path.is_file()
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["services"]["kj-core-banking"]["primary"] == "jj-db-kj-01"
    assert raw["services"]["kj-core-banking"]["site"] == "jeonju"
    again = drstate.load("lab", tmp_path)
    assert again.services["kj-core-banking"].by == "switchover"
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically, nothing left behind


def test_the_inventory_follows_the_new_primary(lab: Topology, tmp_path: Path) -> None:
    """A converge after a switchover configures the new primary as primary: it never demotes it."""
    _switched(lab, tmp_path)
    drstate.load_and_apply(lab, tmp_path)
    hostvars = inventory.build(lab)["hostvars"]
    new, old = hostvars["jj-db-kj-01"]["dualdc_postgresql"], hostvars["gj-db-kj-01"]["dualdc_postgresql"]
    assert new["role"] == "primary" and new["slot"] is None
    assert [s["name"] for s in new["standbys"]] == ["gj-db-kj-01"]
    assert old["role"] == "standby"
    assert old["primary"]["name"] == "jj-db-kj-01"
    assert old["primary"]["address"]  # reached over a declared flow, as the firewall allows
    assert old["slot"] == "standby_gj_db_kj_01"
    assert new["peer_standbys"] == ["gj-db-kj-01"]
    # the other bank's database is untouched
    assert hostvars["jj-db-jb-01"]["dualdc_postgresql"]["role"] == "primary"
    # the backup host's stanza names the roles as they run now
    backup = hostvars[lab.repository_host(_svc(lab)).name]["dualdc_pgbackrest"]  # type: ignore[union-attr]
    roles = {h["name"]: h["role"] for s in backup["stanzas"] if s["name"] == "kj-core-banking"
             for h in s["pg_hosts"]}
    assert roles == {"jj-db-kj-01": "primary", "gj-db-kj-01": "standby"}


def test_a_fenced_host_is_marked_for_the_role(lab: Topology, tmp_path: Path) -> None:
    _switched(lab, tmp_path, fenced=["gj-db-kj-01"])
    drstate.load_and_apply(lab, tmp_path)
    assert postgresql_vars(lab, lab.host("gj-db-kj-01"))["fenced"] is True  # type: ignore[index]
    assert postgresql_vars(lab, lab.host("jj-db-kj-01"))["fenced"] is False  # type: ignore[index]


def test_back_where_the_model_says_removes_the_entry(lab: Topology, tmp_path: Path) -> None:
    state = _switched(lab, tmp_path)
    drstate.record_primary(state, _svc(lab), lab, "gj-db-kj-01", by="switchover", fenced=[])
    assert state.services == {}


def test_drift_names_the_model_change(lab: Topology, tmp_path: Path) -> None:
    state = _switched(lab, tmp_path, fenced=["gj-db-kj-01"])
    items = {(i["check"], i["host"]): i for i in drstate.drift(lab, state)}
    moved = items[("primary-moved", "jj-db-kj-01")]
    assert "the model says gj-db-kj-01" in moved["message"]
    assert "primary_site: jeonju" in moved["change"]
    assert "database.hosts.jeonju.primary: jj-db-kj-01" in moved["change"]
    assert "\n" not in moved["change"]  # one line
    assert "dr.failback" in items[("fenced", "gj-db-kj-01")]["change"]


def test_data_layer_reports_the_moved_primary(lab: Topology, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _switched(lab, tmp_path)
    monkeypatch.setenv("DUALDC_OPS_STATE_DIR", str(tmp_path))

    def down(host: str, command: str) -> tuple[int, str, str]:
        return 255, "", "unreachable"

    layer = drstatus.data_layer(lab, [s.name for s in lab.sites], runner=down)
    ids = [i.id for i in layer.items]
    assert "data:kj-core-banking/primary-moved/jj-db-kj-01" in ids
    item = next(i for i in layer.items if i.id.endswith("primary-moved/jj-db-kj-01"))
    assert "database.hosts.jeonju.primary: jj-db-kj-01" in item.summary


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "primaries.json"),
    ('{"environment": "lab", "services": {"kj-core-banking": {"primary": 3}}}', "services.kj-core-banking"),
    ('{"environment": "production", "services": {}}', "not 'lab'"),
])
def test_a_bad_file_is_a_clear_error(tmp_path: Path, content: str, expected: str) -> None:
    path = drstate.state_path("lab", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    with pytest.raises(drstate.StateError, match=expected.replace(".", r"\.")):
        drstate.load("lab", tmp_path)


def test_a_file_naming_a_foreign_host_is_refused(lab: Topology, tmp_path: Path) -> None:
    state = drstate.PrimaryState(environment="lab", services={"kj-core-banking": drstate.ServiceState(
        primary="jj-db-jb-01", site="jeonju", since="2026-01-01T00:00:00Z", by="failover")})
    with pytest.raises(drstate.StateError, match="jj-db-jb-01 is not one of the database's hosts"):
        drstate.apply(lab, state)
