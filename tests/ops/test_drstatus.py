"""dr.status against a fake fleet: figures compared with the model, and the exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dualdc.loader import load_environment
from dualdc.ops import drstatus

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


def _primary(standbys: dict[str, dict[str, Any]], *, archived: float = NOW - 30, failed: float | None = None,
             slots: list[str] | None = None) -> dict[str, Any]:
    return {
        "in_recovery": False, "now": NOW,
        "replication": [{"name": name, **fields} for name, fields in standbys.items()],
        "slots": [{"name": s, "active": True, "retained_bytes": 4096} for s in (slots or list(standbys))],
        "receiver": None,
        "archiver": {"archived_count": 10, "failed_count": 0 if failed is None else 1,
                     "last_archived": archived, "last_failed": failed},
    }


STANDBY = {"in_recovery": True, "now": NOW, "replication": [], "slots": [],
           "receiver": {"status": "streaming", "sender": "10.10.110.19"}, "archiver": {}}


def _info(full_age_h: float | None, last_age_h: float | None) -> str:
    backups = []
    if full_age_h is not None:
        backups.append({"type": "full", "timestamp": {"stop": NOW - full_age_h * 3600},
                        "info": {"size": 3 << 20}})
    if last_age_h is not None:
        backups.append({"type": "incr", "timestamp": {"stop": NOW - last_age_h * 3600},
                        "info": {"size": 1 << 20}})
    return json.dumps([{"name": "x", "status": {"code": 0}, "backup": backups}])


class Fleet:
    """Answers dr.status's SSH commands per host; a host without an answer is unreachable."""

    def __init__(self, psql: dict[str, dict[str, Any] | None], info: dict[str, str]) -> None:
        self.psql, self.info = psql, info

    def __call__(self, host: str, command: str) -> tuple[int, str, str]:
        if "pgbackrest" in command:
            return (0, self.info[host], "") if host in self.info else (255, "", "Connection timed out")
        if host not in self.psql:
            return 255, "", "Connection timed out"
        answer = self.psql[host]
        if answer is None:
            banner = "JB Financial Group - authorised use only.\n"  # sshd's banner comes first
            return 2, "", banner + "psql: error: connection to server on socket failed"
        return 0, json.dumps(answer) + "\n", ""


def _healthy() -> Fleet:
    return Fleet(
        {
            "gj-db-kj-01": _primary({"standby_jj_db_kj_01": {"state": "streaming", "sync_state": "async",
                                                              "lag_bytes": 0, "replay_lag_s": 0.004}}),
            "jj-db-kj-01": STANDBY,
            "jj-db-jb-01": _primary({"standby_gj_db_jb_01": {"state": "streaming", "sync_state": "async",
                                                              "lag_bytes": 128, "replay_lag_s": 0.01}}),
            "gj-db-jb-01": STANDBY,
        },
        {"jj-backup-01": _info(30, 0.5), "gj-backup-01": _info(2, 0.2)},
    )


@pytest.fixture(scope="module")
def lab() -> Any:
    return load_environment("lab")


def test_a_healthy_fleet_exits_0_with_its_figures(lab):
    report = drstatus.dr_status(lab, runner=_healthy())
    assert report.exit_code == 0, [d.problems + d.unreachable for d in report.databases]
    kj = next(d for d in report.databases if d.service == "kj-core-banking")
    assert (kj.primary_host, kj.primary_site, kj.primary_state) == ("gj-db-kj-01", "gwangju", "up")
    (standby,) = kj.standbys
    assert (standby.host, standby.site, standby.state) == ("jj-db-kj-01", "jeonju", "streaming")
    assert (standby.lag_bytes, standby.lag_seconds, standby.slot_retained_bytes) == (0, 0.004, 4096)
    assert kj.archive_lag_seconds == 30 and kj.archive_failing is False
    assert kj.backups is not None and (kj.backups.host, kj.backups.site) == ("jj-backup-01", "jeonju")
    assert (kj.backups.last_full_age_hours, kj.backups.last_any_age_hours) == (30, 0.5)
    text = drstatus.render_text(report)
    assert "standby jj-db-kj-01 at jeonju: streaming" in text and text.endswith("healthy\n")
    assert json.loads(drstatus.render_json(report))["exit_code"] == 0
    row = "| kj-core-banking | gj-db-kj-01 (up) | jj-db-kj-01 (jeonju) | streaming |"
    assert row in drstatus.render_markdown(report)


def test_lag_beyond_the_rpo_is_a_missed_target(lab):
    fleet = _healthy()
    fleet.psql["gj-db-kj-01"]["replication"][0].update(lag_bytes=50 << 20, replay_lag_s=301.0)
    report = drstatus.dr_status(lab, "kj-core-banking", runner=fleet)
    assert report.exit_code == 2
    (kj,) = report.databases
    assert kj.problems == ["jj-db-kj-01 replays 301 s behind; the RPO is 5 min"]


def test_a_standby_that_stopped_streaming_and_a_dropped_slot(lab):
    fleet = _healthy()
    fleet.psql["gj-db-kj-01"] = _primary({}, slots=[])
    fleet.psql["jj-db-kj-01"] = None  # PostgreSQL stopped on a reachable host
    report = drstatus.dr_status(lab, "kj-core-banking", runner=fleet)
    assert report.exit_code == 2
    (kj,) = report.databases
    assert kj.standbys[0].state == "down"
    assert "gj-db-kj-01 has no replication slot for jj-db-kj-01" in kj.problems
    assert "jj-db-kj-01: PostgreSQL does not answer (psql: error: connection to server on socket failed)" in (
        kj.problems)


def test_failing_archive_and_stale_backups(lab):
    fleet = _healthy()
    fleet.psql["jj-db-jb-01"]["archiver"].update(last_failed=NOW - 5)
    fleet.info["gj-backup-01"] = _info(200, 3)
    (jb,) = drstatus.dr_status(lab, "jb-core-banking", runner=fleet).databases
    assert jb.problems == [
        "jj-db-jb-01: WAL archiving into pgBackRest fails",
        "the last full backup on gj-backup-01 is 200.0 h old; one is due every 168 h",
        "the last backup on gj-backup-01 is 3.0 h old; one is due every 1 h",
    ]
    fleet.info["gj-backup-01"] = _info(None, None)
    (jb,) = drstatus.dr_status(lab, "jb-core-banking", runner=fleet).databases
    assert "no full backup of jb-core-banking on gj-backup-01" in jb.problems


def test_an_unreachable_host_exits_3(lab):
    fleet = _healthy()
    del fleet.psql["jj-db-kj-01"]
    report = drstatus.dr_status(lab, runner=fleet)
    assert report.exit_code == 3
    kj = next(d for d in report.databases if d.service == "kj-core-banking")
    assert kj.unreachable == ["jj-db-kj-01: unreachable over SSH (Connection timed out)"]


def test_two_writable_primaries_are_reported(lab):
    fleet = _healthy()
    fleet.psql["jj-db-kj-01"] = {**STANDBY, "in_recovery": False}
    (kj,) = drstatus.dr_status(lab, "kj-core-banking", runner=fleet).databases
    assert "jj-db-kj-01 is writable: two writable primaries for kj-core-banking" in kj.problems


def _invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", "dr.status", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False, env=env)


def test_the_task_says_a_lab_that_is_down_and_exits_3(tmp_path):
    import os

    env = {**os.environ, "DUALDC_LAB_STATE_DIR": str(tmp_path / "no-lab")}
    done = _invoke("--env", "lab", env=env)
    assert done.returncode == 3, done.stderr
    assert "the lab twin of 'lab' is not up" in done.stderr and "invoke lab.up" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_task_refuses_bad_input_with_exit_1():
    done = _invoke("--env", "lab", "--service", "kj-batch")
    assert done.returncode == 1 and "service 'kj-batch' has no host database in lab" in done.stderr
    done = _invoke("--env", "lab", "--format", "yaml")
    assert done.returncode == 1 and "--format must be one of text, json, markdown" in done.stderr


def test_the_data_layer_names_host_and_what_differs_with_stable_ids(lab):
    fleet = _healthy()
    fleet.psql["gj-db-kj-01"] = _primary({}, slots=[])
    layer = drstatus.data_layer(lab, ["gwangju", "jeonju"], runner=fleet)
    assert layer.status.value == "drift"
    assert {i.id for i in layer.items} == {
        "data:kj-core-banking/slot-missing/jj-db-kj-01",
        "data:kj-core-banking/standby-not-streaming/jj-db-kj-01",
    }
    assert all(i.host == "jj-db-kj-01" and i.site == "jeonju" for i in layer.items)
    statuses = {t.name: t.status.value for t in layer.checked}
    assert statuses == {"kj-core-banking": "drift", "jb-core-banking": "clean"}
    # one site: only the databases whose primary is there
    only = drstatus.data_layer(lab, ["jeonju"], runner=_healthy())
    assert [t.name for t in only.checked] == ["jb-core-banking"] and only.status.value == "clean"


def test_the_data_layer_of_a_lab_that_is_down_is_unverified(lab, monkeypatch, tmp_path):
    monkeypatch.setenv("DUALDC_LAB_STATE_DIR", str(tmp_path / "no-lab"))
    layer = drstatus.data_layer(lab, ["gwangju", "jeonju"])
    assert layer.status.value == "unverified" and "is not up" in layer.note
    assert {t.status.value for t in layer.checked} == {"unreachable"}


def test_data_drift_can_be_acknowledged_by_its_id():
    from dualdc.ops.ack import DriftAck

    ack = DriftAck(target="data:kj-core-banking/lag-over-rpo/*", reason="link maintenance tonight",
                   owner="dba-team", expires="2030-01-01")
    assert ack.target.startswith("data:")
