"""DR commands on the deployed lab twin: one service's site-down drill, SIGINT safety, a restore test.

The lightest proof that runs in the suite (every service and the figures are in
benchmarks/bench_dr.py). They take the session's deployed lab and leave it as they found it:
every fault healed, the primaries back where the model says, every pair streaming.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dualdc.loader import load_environment
from dualdc.ops import drstate
from dualdc.ops.drdrill import Poller

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SVC = "kj-core-banking"
PRIMARY, STANDBY = "gj-db-kj-01", "jj-db-kj-01"


def invoke(*args: str, timeout: float = 900,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)


def _put_back(lab: Any) -> None:
    """Heal faults, rebuild fenced hosts, move every primary back where the model says."""
    lab.up()
    state = drstate.load("lab")
    for name, entry in state.services.items():
        svc = load_environment("lab").service(name)
        if entry.fenced:
            invoke("dr.failback", "--env", "lab", "--service", name)
        invoke("dr.switchover", "--env", "lab", "--service", name, "--to", svc.primary_site)


def _streaming(lab: Any, primary: str, standby: str, seconds: float = 60) -> bool:
    slot = "standby_" + standby.replace("-", "_")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sql = f"SELECT state FROM pg_stat_replication WHERE application_name = '{slot}'"
        out = lab.exec_in_host(primary, ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-c", sql],
                               check=False).stdout.strip()
        if out == "streaming":
            return True
        time.sleep(1)
    return False


@pytest.fixture(scope="module")
def databases(lab: Any, deployed: dict[str, Any]) -> Any:
    """The session's deployed lab, with both banks' pairs streaming."""
    assert deployed["done"].returncode == 0, deployed["done"].stdout[-3000:] + deployed["done"].stderr[-3000:]
    for primary, standby in (("gj-db-kj-01", "jj-db-kj-01"), ("jj-db-jb-01", "gj-db-jb-01")):
        assert _streaming(lab, primary, standby)
    yield lab
    # The DR commands leave their interim settings (conf.d/20-dualdc-dr.conf) for the converge
    # that follows them (docs/dr.md); run it, so the lab is back to the deploy's state.
    done = invoke("converge", "--env", "lab", "--limit", f"{PRIMARY},{STANDBY}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture
def dr_lab(databases: Any, tmp_path: Path) -> Any:
    assert drstate.load("lab").services == {}, "a previous test left a primary moved"
    try:
        yield databases
    finally:
        _put_back(databases)
    assert drstate.load("lab").services == {}
    assert _streaming(databases, PRIMARY, STANDBY)


def test_site_down_drill_of_one_service_meets_its_targets(dr_lab: Any, tmp_path: Path) -> None:
    env = {**os.environ, "DUALDC_EVIDENCE_DIR": str(tmp_path)}
    done = invoke("dr.drill", "--env", "lab", "--scenario", "site-down", "--service", SVC, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = tmp_path / "lab" / "dr"
    records = sorted(folder.glob("*-drill-site-down.json"))
    assert len(records) == 1
    for suffix in (".en.md", ".ko.md"):
        assert Path(str(records[0])[: -len(".json")] + suffix).exists()
    record = json.loads(records[0].read_text(encoding="utf-8"))
    assert record["passed"] is True and record["services"] == [SVC]
    measure = record["measures"][0]
    assert 0 < measure["rto_seconds"] <= measure["rto_target_seconds"]
    checks = {c["name"]: c["passed"] for c in record["checks"]}
    assert checks == {"balances-sum": True, "no-half-transfer": True, "pair-protected": True,
                      "never-two-writable": True}
    # the poller ran through the site's return and the failback
    names = [p["name"] for p in record["phases"]]
    assert any(n.startswith("restore gwangju") for n in names)
    assert any(n.startswith("failback") for n in names)
    assert drstate.load("lab").services == {}


def test_no_two_writable_primaries_through_sigint_and_a_rerun(dr_lab: Any) -> None:
    topology = load_environment("lab")
    poller = Poller(topology, [topology.service(SVC)], interval=0.2)
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    try:
        cmd = [sys.executable, "-m", "invoke", "dr.switchover", "--env", "lab", "--service", SVC,
               "--to", "jeonju"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # interrupt it in the middle: once the primary is being fenced
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            state = drstate.load("lab").services.get(SVC)
            if state is not None and state.pending is not None:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode in (0, 130), err[-2000:]
        again = invoke("dr.switchover", "--env", "lab", "--service", SVC, "--to", "jeonju")
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
        assert drstate.load("lab").services[SVC].primary == STANDBY
        assert _streaming(dr_lab, STANDBY, PRIMARY)
        back = invoke("dr.switchover", "--env", "lab", "--service", SVC, "--to", "gwangju")
        assert back.returncode == 0, back.stdout[-2000:] + back.stderr[-2000:]
    finally:
        poller.stop.set()
        thread.join(timeout=30)
    assert poller.samples > 10
    assert poller.violations == []


def test_restore_test_of_one_service_matches_its_source(dr_lab: Any, tmp_path: Path) -> None:
    env = {**os.environ, "DUALDC_EVIDENCE_DIR": str(tmp_path)}
    topology = load_environment("lab")
    repo = topology.repository_host(topology.service(SVC))
    assert repo is not None
    # the drill's tables, then a backup that holds them (as the scheduler's next one would)
    from dualdc.ops.drdrill import SETUP_SQL, run_sql

    run_sql(topology, PRIMARY, SETUP_SQL)
    dr_lab.exec_in_host(repo.name, ["runuser", "-u", "postgres", "--", "pgbackrest", f"--stanza={SVC}",
                                    "--type=incr", "backup"], timeout=600)
    # the backups (the archive keeps receiving the primaries' WAL meanwhile)
    listing = ["sh", "-c",
               f"find /var/lib/pgbackrest/backup/{SVC} -type f -exec md5sum {{}} + | sort | md5sum"]
    before = dr_lab.exec_in_host(repo.name, listing).stdout
    done = invoke("dr.restore-test", "--env", "lab", "--service", SVC, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    path = next((tmp_path / "lab" / "dr").glob("*-restore-test.json"))
    record = json.loads(path.read_text(encoding="utf-8"))
    checks = {c["name"]: c["passed"] for c in record["checks"]}
    assert checks == {"pgbackrest-verify": True, "transfers-match-source": True, "balances-sum": True}
    # the repository was only read, and the scratch instance is gone
    after = dr_lab.exec_in_host(repo.name, listing).stdout
    assert before == after
    assert dr_lab.exec_in_host(repo.name, ["test", "-e", "/var/lib/postgresql/dualdc-restore-test/" + SVC],
                               check=False).returncode != 0


def test_one_link_cut_keeps_streaming_and_both_cut_is_a_missed_target(databases: Any) -> None:
    """Issue 16's link faults: one inter-site link cut, replication streams over the other;
    both cut, the standbys stop streaming and dr.status exits 2."""
    links = [link.name for link in load_environment("lab").links]
    assert len(links) >= 2
    try:
        assert invoke("lab.fault", "--env", "lab", "--link", links[0], "--cut").returncode == 0
        token = f"t{time.time_ns()}"
        sql = ("CREATE TABLE IF NOT EXISTS dualdc_probe (token text PRIMARY KEY, at timestamptz "
               f"DEFAULT clock_timestamp()); INSERT INTO dualdc_probe (token) VALUES ('{token}')")
        databases.exec_in_host(PRIMARY, ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-c", sql])
        deadline = time.monotonic() + 30
        seen = ""
        while time.monotonic() < deadline and seen != "1":
            query = f"SELECT count(*) FROM dualdc_probe WHERE token = '{token}'"
            seen = databases.exec_in_host(STANDBY, ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-c",
                                                    query], check=False).stdout.strip()
            time.sleep(0.3)
        assert seen == "1", f"with {links[0]} cut the row never reached {STANDBY}"
        for link in links[1:]:
            assert invoke("lab.fault", "--env", "lab", "--link", link, "--cut").returncode == 0
        deadline = time.monotonic() + 180
        code = 0
        while time.monotonic() < deadline and code != 2:
            code = invoke("dr.status", "--env", "lab", "--service", SVC, timeout=120).returncode
            time.sleep(2)
        assert code == 2, "dr.status did not report the standby that stopped streaming"
    finally:
        for link in links:
            invoke("lab.fault", "--env", "lab", "--link", link, "--restore")
    assert _streaming(databases, PRIMARY, STANDBY, seconds=120)
