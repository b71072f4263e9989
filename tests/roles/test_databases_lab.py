"""The host databases on the deployed lab twin: replication, backups, separation, drift, secrets.

They take the session's deployed lab (tests/conftest.py ``deployed``) and put back what they
change.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from dualdc.ansible import PlaybookRun, run_playbook
from dualdc.databases import flow_address
from dualdc.lab.pki import pki_directory
from dualdc.loader import load_environment
from dualdc.model import Layer
from dualdc.ops.ack import Ledger
from dualdc.ops.drift import DriftRun, run_drift, task_label

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
PRIMARY_STANDBY = {
    "kj-core-banking": ("gj-db-kj-01", "jj-db-kj-01"),
    "jb-core-banking": ("jj-db-jb-01", "gj-db-jb-01"),
}
DB_HOSTS = "gj-db-kj-01,jj-db-kj-01,gj-db-jb-01,jj-db-jb-01,gj-backup-01,jj-backup-01"


def psql(lab: Any, host: str, sql: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = lab.exec_in_host(
        host,
        ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=check,
    )
    return result


def sh(lab: Any, host: str, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = lab.exec_in_host(host, ["sh", "-c", script], check=check)
    return result


def dr_status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "dr.status", "--env", "lab", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def wait_streaming(lab: Any, primary: str, standby: str, seconds: float = 60) -> None:
    slot = "standby_" + standby.replace("-", "_")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = psql(
            lab,
            primary,
            f"SELECT state FROM pg_stat_replication WHERE application_name = '{slot}'",
            check=False,
        ).stdout.strip()
        if state == "streaming":
            return
        time.sleep(1)
    raise AssertionError(f"{standby} is not streaming from {primary} after {seconds} s")


@pytest.fixture(scope="module")
def databases(lab: Any, deployed: dict[str, Any]) -> Any:
    assert deployed["done"].returncode == 0, deployed["done"].stdout[-3000:] + deployed["done"].stderr[-3000:]
    steps = {s["action"]: s["status"] for s in deployed["report"]["steps"] if s["site"] is None}
    assert steps.get("converge databases") == "applied" and steps.get("verify databases") == "verified", steps
    for primary, standby in PRIMARY_STANDBY.values():
        wait_streaming(lab, primary, standby)
    return lab


def test_a_row_committed_at_each_primary_is_read_at_its_standby_within_the_rpo(databases: Any) -> None:
    lab = databases
    for service, (primary, standby) in PRIMARY_STANDBY.items():
        token = uuid.uuid4().hex
        psql(
            lab,
            primary,
            "CREATE TABLE IF NOT EXISTS dualdc_probe (token text PRIMARY KEY, at timestamptz "
            f"DEFAULT clock_timestamp()); INSERT INTO dualdc_probe (token) VALUES ('{token}')",
        )
        started = time.monotonic()
        rpo = load_environment("lab").service(service).rpo_minutes * 60
        while time.monotonic() - started < rpo:
            seen = psql(
                lab, standby, f"SELECT count(*) FROM dualdc_probe WHERE token = '{token}'", check=False
            )
            if seen.stdout.strip() == "1":
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"{service}: the row committed at {primary} never reached {standby}")
        assert psql(lab, standby, "SELECT pg_is_in_recovery()").stdout.strip() == "t"
        assert psql(lab, primary, "SHOW data_checksums").stdout.strip() == "on"


def test_dr_status_is_healthy_with_real_figures(databases: Any) -> None:
    done = dr_status("--format", "json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert {d["service"] for d in report["databases"]} == set(PRIMARY_STANDBY)
    for d in report["databases"]:
        (standby,) = d["standbys"]
        assert standby["state"] == "streaming" and standby["lag_bytes"] is not None
        assert standby["slot_retained_bytes"] is not None
        assert d["backups"]["count"] >= 1 and d["backups"]["last_full_age_hours"] is not None


def test_backups_land_at_the_other_site_and_pgbackrest_check_passes(databases: Any) -> None:
    lab = databases
    topology = load_environment("lab")
    for service, (primary, _) in PRIMARY_STANDBY.items():
        repo = topology.repository_host(topology.service(service))
        assert repo is not None and repo.site != topology.host(primary).site
        check = sh(lab, repo.name, f"runuser -u postgres -- pgbackrest --stanza={service} check", check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        info = json.loads(
            sh(
                lab, repo.name, f"runuser -u postgres -- pgbackrest --stanza={service} --output=json info"
            ).stdout
        )
        assert [b["type"] for b in info[0]["backup"]][:1] == ["full"]


def test_replication_never_crosses_banks(databases: Any) -> None:
    lab = databases
    inventory = load_environment("lab")
    # the firewall: a kjbank database host cannot even open a connection to a jbbank one on
    # any of its addresses, while the same probe to its own primary, on the address the
    # replication flow names, connects
    kj_primary = flow_address(inventory, "jj-db-kj-01", "gj-db-kj-01", 5432)
    assert kj_primary is not None
    jb_addresses = [str(i.address) for name in ("gj-db-jb-01", "jj-db-jb-01")
                    for i in inventory.host(name).interfaces]

    def connect(address: str) -> str:
        return sh(lab, "jj-db-kj-01", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/5432' 2>&1; echo rc=$?",
                  check=False).stdout

    assert "rc=0" in connect(kj_primary)
    for address in jb_addresses:
        blocked = connect(address)
        assert "rc=124" in blocked or "refused" in blocked, (address, blocked)
    # pg_hba: where the firewall lets the peer in, the other bank's replication user is refused
    conninfo = (
        f"host={kj_primary} port=5432 user=repl_jb_core_banking dbname=replication replication=true "
        "sslmode=verify-full sslrootcert=/etc/postgresql/15/main/tls/ca.crt connect_timeout=5"
    )
    refused = sh(
        lab, "jj-db-kj-01", f"runuser -u postgres -- psql '{conninfo}' -c 'IDENTIFY_SYSTEM' 2>&1", check=False
    )
    assert refused.returncode != 0
    assert re.search(r"no pg_hba\.conf entry .* user \"repl_jb_core_banking\"", refused.stdout), (
        refused.stdout
    )


def test_tampering_is_data_drift_naming_host_and_difference(databases: Any) -> None:
    lab = databases
    topology = load_environment("lab")

    def data_items() -> set[str]:
        report = run_drift(DriftRun(topology=topology, ledger=Ledger([], [], ""), layers={Layer.DATA}))
        return {i.id for i in report.items()}

    assert data_items() == set()
    sh(lab, "jj-db-kj-01", "pg_ctlcluster 15 main stop --mode fast")
    psql(lab, "gj-db-kj-01", "SELECT pg_drop_replication_slot('standby_jj_db_kj_01')")
    sh(lab, "gj-db-jb-01", "echo 'hostssl all all 10.0.0.0/8 trust' >> /etc/postgresql/15/main/pg_hba.conf")
    try:
        assert {
            "data:kj-core-banking/standby-down/jj-db-kj-01",
            "data:kj-core-banking/slot-missing/jj-db-kj-01",
        } <= data_items()
        check = run_playbook(PlaybookRun(env="lab", limit="jj-db-kj-01,gj-db-jb-01", check=True))
        changed = {(t.host, task_label(t)) for t in check.changed_tasks}
        assert ("gj-db-jb-01", "postgresql : Client authentication from the model's flows") in changed, (
            changed
        )
        assert ("jj-db-kj-01", "postgresql : Keep PostgreSQL running") in changed, changed
    finally:
        fixed = run_playbook(PlaybookRun(env="lab", limit=DB_HOSTS))
        assert not fixed.failed_tasks, [t.msg for t in fixed.failed_tasks]
    wait_streaming(lab, "gj-db-kj-01", "jj-db-kj-01", seconds=120)
    assert data_items() == set()


def test_a_second_converge_of_the_database_hosts_changes_nothing(databases: Any) -> None:
    again = run_playbook(PlaybookRun(env="lab", limit=DB_HOSTS))
    assert not again.failed_tasks and not again.changed_tasks, [(t.host, t.task) for t in again.changed_tasks]
    check = run_playbook(PlaybookRun(env="lab", limit=DB_HOSTS, check=True))
    assert not check.changed_tasks, [(t.host, t.task) for t in check.changed_tasks]


def test_replication_secrets_and_the_ca_key_appear_in_no_log_or_artifact(
    databases: Any, deployed: dict[str, Any]
) -> None:
    folder = pki_directory(load_environment("lab"))
    assert folder is not None
    secrets = [p.read_text(encoding="utf-8").strip() for p in sorted(folder.glob("replication-*.secret"))]
    ca_key = (folder / "ca.key").read_text(encoding="utf-8")
    key_body = "".join(line for line in ca_key.splitlines() if "PRIVATE KEY" not in line)
    assert len(secrets) == 2 and all(len(s) >= 24 for s in secrets)
    places = [
        ROOT / ".state" / "lab" / "artifacts",
        deployed["artifacts"],
        ROOT / ".state" / "lab" / "audit.jsonl",
    ]
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for file in files:
            text = file.read_bytes().decode("utf-8", "replace")
            for secret in [*secrets, key_body[:40]]:
                assert secret not in text, f"a secret is in {file}"
    text = deployed["done"].stdout + deployed["done"].stderr + dr_status().stdout
    assert not any(s in text for s in secrets)
    # on the hosts: only the standby's passfile holds it, readable by postgres alone
    mode = sh(databases, "jj-db-kj-01", "stat -c '%a %U' /var/lib/postgresql/.pgpass").stdout.strip()
    assert mode == "600 postgres"
