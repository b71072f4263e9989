"""The roles on the lab twin: converge, idempotence, check mode, tampering, and what really runs.

Most tests work on a sample of hosts, one per kind of host the roles treat differently (an
NTP server at each site, a log host, a Kubernetes worker, a bastion). The full 24-host
converge (the session's `invoke deploy` from a fresh lab), its idempotence, the clean check
run and the host firewalls against ``lab.verify`` with the routers opened by hand are one
``slow`` test (CI runs it); check mode right after those converges is the deploy's verification.

Every test holds the machine-wide lab lock through the ``lab`` fixture; a test that
tampers with a host converges it back before it ends.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from dualdc.ansible import PlaybookRun, RunResult, run_playbook, text_report
from dualdc.cli import ExitCode

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ["gj-ntp-01", "jj-ntp-01", "gj-log-01", "gj-core-wk-01", "gj-bastion-01"]


def converge(**kwargs: Any) -> RunResult:
    return run_playbook(PlaybookRun(env="lab", **kwargs))


def sh(lab: Any, host: str, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = lab.exec_in_host(host, ["sh", "-c", script], check=check)
    return result


def assert_clean(result: RunResult) -> None:
    assert result.exit_code() == ExitCode.CLEAN, text_report(result)
    assert not result.changed_tasks, text_report(result)


@pytest.fixture(scope="module")
def sample(lab: Any) -> str:
    """The sample hosts, converged."""
    limit = ",".join(SAMPLE)
    first = converge(limit=limit)
    assert first.exit_code() == ExitCode.CLEAN, text_report(first)
    assert sorted(first.hosts) == sorted(SAMPLE)
    return limit


def test_second_converge_and_check_change_nothing(sample: str) -> None:
    again = converge(limit=sample)
    assert_clean(again)
    assert all(s.changed == 0 and s.failed == 0 for s in again.hosts.values())
    check = converge(limit=sample, check=True)
    assert_clean(check)
    # What check mode cannot evaluate on a converged host: nothing but handlers.
    assert all(t.handler for t in check.check_mode_skipped), text_report(check)


#: host → what is done there by hand: a line added to sshd_config, an nft rule, chronyd stopped.
TAMPERED = {
    "gj-bastion-01": "echo 'PermitUserEnvironment yes' >> /etc/ssh/sshd_config",
    "gj-log-01": "nft add rule inet dualdc input tcp dport 4444 accept",
    "gj-ntp-01": "/etc/init.d/chrony stop >/dev/null",
}


def test_tampering_is_caught_by_check_mode_with_a_diff(lab: Any, sample: str) -> None:
    hosts = ",".join(TAMPERED)
    for host, command in TAMPERED.items():
        sh(lab, host, command)
    try:
        check = converge(limit=hosts, check=True)
        assert check.exit_code() == ExitCode.FINDINGS
        found = {t.host: t for t in check.changed_tasks}
        assert sorted(found) == sorted(TAMPERED), text_report(check)  # one finding per host, nothing else
        assert len(check.changed_tasks) == len(TAMPERED), text_report(check)

        sshd = found["gj-bastion-01"]
        assert sshd.role == "base" and sshd.target == "/etc/ssh/sshd_config"
        assert "-PermitUserEnvironment yes" in sshd.diff[0].unified

        nft = found["gj-log-01"]
        assert nft.role == "firewall" and nft.action.endswith("dualdc_nft_table")
        assert nft.diff[0].before_header == "nft table inet dualdc (live)"
        assert "-\t\ttcp dport 4444 accept" in nft.diff[0].unified

        chrony = found["gj-ntp-01"]
        assert chrony.role == "time_sync" and chrony.target == "chrony"
        assert "-service chrony: stopped" in chrony.diff[0].unified

        # Check mode changed nothing.
        assert "PermitUserEnvironment yes" in sh(lab, "gj-bastion-01", "cat /etc/ssh/sshd_config").stdout
        assert "4444" in sh(lab, "gj-log-01", "nft list table inet dualdc").stdout
        assert sh(lab, "gj-ntp-01", "/etc/init.d/chrony status", check=False).returncode != 0
    finally:
        fixed = converge(limit=hosts)
    assert fixed.exit_code() == ExitCode.CLEAN, text_report(fixed)
    assert "PermitUserEnvironment yes" not in sh(lab, "gj-bastion-01", "cat /etc/ssh/sshd_config").stdout
    assert "4444" not in sh(lab, "gj-log-01", "nft list table inet dualdc").stdout
    assert sh(lab, "gj-ntp-01", "/etc/init.d/chrony status", check=False).returncode == 0
    assert_clean(converge(limit=hosts, check=True))


def test_hosts_sync_to_both_sites_time_sources(lab: Any, sample: str) -> None:
    # chronyd on the worker polls the two sources; each must answer through the host firewalls
    # (the servers' own and the routers') within a few polls.
    deadline = time.monotonic() + 90
    reached: set[str] = set()
    while time.monotonic() < deadline and reached != {"10.10.10.12", "10.20.10.12"}:
        out = sh(lab, "gj-core-wk-01", "chronyc -n -c sources").stdout
        reached = {line.split(",")[2] for line in out.splitlines() if line and line.split(",")[5] != "0"}
        time.sleep(3)
    assert reached == {"10.10.10.12", "10.20.10.12"}


def test_logs_reach_the_sites_log_host(lab: Any, sample: str) -> None:
    token = f"dualdc-test-{uuid.uuid4().hex}"
    sh(lab, "gj-ntp-01", f"logger -t dualdc-roles-test {token}")
    deadline = time.monotonic() + 60
    found = ""
    while time.monotonic() < deadline and token not in found:
        found = sh(lab, "gj-log-01", "cat /var/log/remote/gj-ntp-01/access.log", check=False).stdout
        time.sleep(2)
    assert token in found


def test_the_ssh_guard_refuses_a_ruleset_that_locks_ansible_out(lab: Any, sample: str) -> None:
    host = "gj-log-01"
    before = sh(lab, host, "cat /etc/nftables.conf").stdout
    refused = converge(limit=host, extravars={"firewall_ssh_sources": ["192.0.2.0/24"]})
    (failed,) = refused.failed_tasks
    assert failed.role == "firewall" and "lock this connection out" in failed.msg
    assert sh(lab, host, "cat /etc/nftables.conf").stdout == before  # nothing half applied
    assert_clean(converge(limit=host, check=True))  # still reachable, still the model's


def test_stock_ansible_playbook_runs_from_the_repository_root(sample: str) -> None:
    playbook = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventories/lab",
                "playbooks/site.yml", "--check", "--diff", "--limit", "gj-ntp-01"]
    out = subprocess.run(playbook, cwd=ROOT, capture_output=True, text=True, check=False, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    recap = out.stdout[out.stdout.index("PLAY RECAP"):]
    assert "gj-ntp-01" in recap and "changed=0" in recap and "failed=0" in recap


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_full_converge_idempotent_check_clean_and_host_firewalls_hold(
    lab: Any, deployed: dict[str, Any]
) -> None:
    from dualdc.lab import verify

    # The full converge from a fresh lab is the session's `invoke deploy` (tests/conftest.py):
    # both sites' converges, which together must cover every host with nothing failed.
    assert deployed["done"].returncode == 0, deployed["done"].stderr[-4000:]
    recaps = deployed["converge_recaps"]
    assert len(recaps) == 2
    every = len(lab.topology.hosts)
    assert sum(len(r["processed"]) for r in recaps) == every
    assert all(not r["failures"] and not r["dark"] for r in recaps), recaps
    # Check mode right after each site's converge: the deploy's verification, per host.
    checked = [
        target
        for verification in deployed["report"]["verification"]
        for layer in verification["layers"]
        if layer["layer"] == "hosts"
        for target in layer["checked"]
    ]
    assert len({t["name"] for t in checked}) == every
    assert all(t["status"] == "clean" and t["counts"]["changed"] == 0 for t in checked), checked
    assert all(t["counts"]["failed"] == 0 and t["counts"]["ok"] > 0 for t in checked), checked
    # Idempotence: converging every host again changes nothing.
    second = converge()
    print(f"\nsecond converge: {second.seconds:.0f} s")
    assert len(second.hosts) == every
    assert_clean(second)
    assert all(s.changed == 0 and s.failed == 0 for s in second.hosts.values())

    # Open both routers' firewalls by hand: the hosts' own tables must still stop every
    # forbidden flow that lets a packet reach a host, and let every declared one through.
    routers = sorted(lab.plan.routers.values(), key=lambda r: r.site)
    try:
        for router in routers:
            subprocess.run(["ip", "netns", "exec", router.netns, "nft", "delete", "table", "inet",
                            "dualdc_lab"], check=True)
        report = verify.run(lab)
    finally:
        lab.up()
    to_hosts = [r for r in report.results if r.probe.destination[0] == "host" and r.result != "not run"]
    forbidden = [r for r in to_hosts if not r.probe.expect_open]
    declared = [r for r in to_hosts if r.probe.expect_open]
    assert forbidden and declared
    leaks = [r.to_json() for r in forbidden if r.result == "open"]
    assert not leaks, leaks[:10]
    closed = [r.to_json() for r in declared if r.result != "open"]
    assert not closed, closed[:10]
    assert all(s.firewall for s in lab.status(probe=False).routers)
