"""deploy and drift on the lab twin, for real (marker ``lab``: root, namespaces, sshd).

The session fixture ``lab`` (dualdc.lab.testing) holds the machine-wide lab lock and brings the
lab up; the commands run as subprocesses exactly as an engineer types them. Tests that tamper
with a host or take it down put it back before they end.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dualdc.lab import Lab
from dualdc.loader import load_environment
from dualdc.model import Layer
from dualdc.ops import audit
from dualdc.ops.ack import Ledger
from dualdc.ops.deploy import DeploySpec, deploy, new_report
from dualdc.ops.drift import DriftRun, run_drift
from dualdc.ops.lock import lock_holder
from dualdc.ops.outputs import FORMATS, render_drift
from dualdc.ops.run import guarded_run
from dualdc.reports.deploy import render_deploy_json, render_deploy_markdown, render_deploy_text
from dualdc.reports.header import Outcome

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".state" / "lab"
INVOKE = [sys.executable, "-m", "invoke"]


def invoke(*args: str, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INVOKE, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def host_items(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for layer in report["layers"] if layer["layer"] == "hosts" for i in layer["items"]]


def host_status(report: dict[str, Any]) -> dict[str, str]:
    return {
        t["name"]: t["status"]
        for layer in report["layers"]
        if layer["layer"] == "hosts"
        for t in layer["checked"]
    }


# ``deployed`` (tests/conftest.py): a fresh lab deployed once per session with `invoke deploy`.


def test_deploy_from_a_fresh_lab_then_drift_is_clean(deployed: dict[str, Any], tmp_path: Path) -> None:
    done, report = deployed["done"], deployed["report"]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert report["result"] == "success"
    assert report["applied"] == [
        "gwangju:hosts",
        "gwangju:stacks",
        "jeonju:hosts",
        "jeonju:stacks",
        "replication:stacks",
    ]
    assert report["not_applied"] == []
    actions = [(s["site"], s["action"], s["status"]) for s in report["steps"]]
    assert [a for a in actions if a[1] in ("converge", "verify")] == [
        ("gwangju", "converge", "applied"),
        ("gwangju", "verify", "verified"),
        ("jeonju", "converge", "applied"),
        ("jeonju", "verify", "verified"),
    ]
    assert actions[-1] == (None, "lab probe", "verified")
    rendered = [s for s in report["steps"] if s["layer"] == "stacks"]
    assert rendered and all(
        s["status"] == "rendered" and "no Kubernetes API" in s["detail"] for s in rendered
    )
    # the plan found the fresh hosts unconfigured, on both sites
    assert {i["site"] for i in host_items(report["plan"])} == {"gwangju", "jeonju"}

    output = tmp_path / "drift.json"
    drift = invoke("drift", "--env", "lab", "--format", "json", "--output", str(output))
    assert drift.returncode == 0, drift.stderr[-4000:]
    clean = read_json(output)
    hosts = len(load_environment("lab").hosts)
    assert clean["status"] == "clean" and clean["summary"]["targets_checked"] > hosts
    assert set(host_status(clean).values()) == {"clean"} and len(host_status(clean)) == hosts
    stacks = next(layer for layer in clean["layers"] if layer["layer"] == "stacks")
    assert stacks["status"] == "not-compared" and "no Kubernetes API" in stacks["note"]
    probe = next(layer for layer in clean["layers"] if layer["layer"] == "lab")
    assert probe["status"] == "clean" and probe["checked"]
    record = audit.read("lab")[-1]
    assert (record.command, record.result, record.exit_code) == ("drift", Outcome.SUCCESS, 0)


def test_tampered_host_is_drift_that_names_host_task_and_file(
    deployed: dict[str, Any], lab: Lab, tmp_path: Path
) -> None:
    assert deployed["done"].returncode == 0
    lab.exec_in_host("gj-log-01", ["sh", "-c", "echo 'PermitUserEnvironment yes' >> /etc/ssh/sshd_config"])
    try:
        drift = invoke("drift", "--env", "lab", "--site", "gwangju", "--artifacts", str(tmp_path))
        assert drift.returncode == 2, drift.stderr[-4000:]
        report = read_json(tmp_path / "drift.json")
        items = host_items(report)
        assert {i["host"] for i in items} == {"gj-log-01"}
        sshd = [i for i in items if i["file"] == "/etc/ssh/sshd_config"]
        assert len(sshd) == 1, items
        item = sshd[0]
        assert item["task"].startswith("base : ") and item["site"] == "gwangju"
        assert "-PermitUserEnvironment yes" in item["diff"]
        assert item["id"] == f"host:gj-log-01/{item['task']}"
        assert report["summary"]["drifted_hosts"] == ["gj-log-01"]
        statuses = host_status(report)
        gwangju = [h.name for h in load_environment("lab").hosts if h.site == "gwangju"]
        assert statuses["gj-log-01"] == "drift" and sorted(statuses) == sorted(gwangju)
        assert all(s == "clean" for h, s in statuses.items() if h != "gj-log-01")
        markdown = (tmp_path / "drift.md").read_text(encoding="utf-8")
        assert "gj-log-01" in markdown and item["task"] in markdown and "/etc/ssh/sshd_config" in markdown
        assert "class " in markdown and "host_gj_log_01" in markdown  # the Mermaid diagram marks it
        junit = (tmp_path / "drift.xml").read_text(encoding="utf-8")
        assert 'name="gj-log-01"' in junit and "/etc/ssh/sshd_config" in junit
        svg = ET.parse(tmp_path / "diagram" / "lab.svg").getroot()  # graphviz writes "-" as &#45;
        assert "DRIFT · host gj-log-01" in {t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")}
        assert "/etc/ssh/sshd_config" in drift.stdout  # the text report on stdout
    finally:
        fixed = invoke("converge", "--env", "lab", "--limit", "gj-log-01")
        assert fixed.returncode == 0, fixed.stdout[-3000:]


def test_one_host_down_is_unverified_and_every_other_host_is_checked(
    deployed: dict[str, Any], lab: Lab, tmp_path: Path
) -> None:
    assert deployed["done"].returncode == 0
    lab.host_down("jj-db-kj-01")
    try:
        output = tmp_path / "drift.json"
        drift = invoke(
            "drift", "--env", "lab", "--site", "jeonju", "--format", "json", "--output", str(output)
        )
        assert drift.returncode == 3, drift.stderr[-4000:]
        report = read_json(output)
        assert report["status"] == "unverified"
        statuses = host_status(report)
        assert statuses.pop("jj-db-kj-01") == "unreachable"
        jeonju = [h.name for h in load_environment("lab").hosts if h.site == "jeonju"]
        assert sorted(statuses) == sorted(set(jeonju) - {"jj-db-kj-01"})
        assert set(statuses.values()) == {"clean"}
        assert "hosts:jj-db-kj-01" in report["summary"]["unverified_targets"]
        checked = next(layer for layer in report["layers"] if layer["layer"] == "hosts")["checked"]
        assert all(t["counts"].get("ok", 0) > 0 for t in checked if t["name"] != "jj-db-kj-01")
    finally:
        lab.host_up("jj-db-kj-01")
        # It boots with sshd only (no init system in the lab): converge starts its services again.
        fixed = invoke("converge", "--env", "lab", "--limit", "jj-db-kj-01")
        assert fixed.returncode == 0, fixed.stdout[-3000:]


def _wait_for(path: Path, text: str, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(encoding="utf-8", errors="replace"):
            return
        if proc.poll() is not None:
            pytest.fail(
                f"the deploy ended (rc {proc.returncode}) before {text!r}:\n"
                + path.read_text(encoding="utf-8", errors="replace")[-3000:]
            )
        time.sleep(0.5)
    pytest.fail(f"{text!r} did not appear within {timeout} s")


def _run_processes() -> list[str]:
    """Processes a playbook run of this checkout leaves: its ansible-playbook (and Mitogen's
    multiplexer and workers, which share its command line) and Mitogen's interpreters on hosts."""
    playbook = str(ROOT / ".venv" / "bin" / "ansible-playbook")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if playbook in cmdline or "(mitogen:" in cmdline:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def _no_run_processes_left(timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    left = _run_processes()
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = _run_processes()
    return left


def test_sigint_during_a_deploy_and_a_concurrent_deploy_is_refused(
    deployed: dict[str, Any], tmp_path: Path
) -> None:
    assert deployed["done"].returncode == 0
    log = tmp_path / "deploy.err"
    with log.open("w", encoding="utf-8") as err:
        first = subprocess.Popen(
            [*INVOKE, "deploy", "--env", "lab", "--site", "gwangju", "--yes"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    try:
        _wait_for(log, "plan: validating", first, 120)
        second = invoke("deploy", "--env", "lab", "--yes", timeout=300)
        assert second.returncode == 1
        assert "is locked by" in second.stderr and f"pid {first.pid}" in second.stderr
        assert "invoke deploy --env lab --site gwangju --yes" in second.stderr
        _wait_for(log, "gwangju: converging its hosts", first, 1200)
        time.sleep(5)
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        assert first.wait(timeout=300) == 130
        # Nothing of the interrupted run goes on: no ansible-playbook, no Mitogen interpreter.
        assert _no_run_processes_left(60) == []
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=60)
    assert "interrupted by SIGINT" in log.read_text(encoding="utf-8")
    records = [r for r in audit.read("lab") if r.pid == first.pid]
    assert [r.result for r in records] == [Outcome.INTERRUPTED]
    assert records[0].exit_code == 130 and "gwangju:hosts" in records[0].not_applied
    assert lock_holder("lab") is None
    refused = [r for r in audit.read("lab") if r.result is Outcome.REFUSED]
    assert refused and str(first.pid) in refused[-1].message
    runs = sorted((STATE / "artifacts").glob("*-apply-*"))
    assert (runs[-1] / "status").read_text(encoding="utf-8").strip() == "canceled"
    again = invoke("deploy", "--env", "lab", "--site", "gwangju", "--yes")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    assert audit.read("lab")[-1].result is Outcome.SUCCESS


CANARY_PLAY = """\
- name: Canary secret (test of dualdc's secret handling)
  hosts: all
  gather_facts: false
  vars_files:
    - canary-vault.yml
  tasks:
    - name: Keep the canary secret in a root-only file
      when: inventory_hostname == "gj-log-01"
      ansible.builtin.copy:
        content: "{{ canary_secret }}\\n"
        dest: /etc/dualdc-canary
        owner: root
        group: root
        mode: "0600"
      no_log: true
"""


@pytest.fixture
def canary(deployed: dict[str, Any], lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A vault-encrypted variable used by a no_log task, in a playbook under .state/ (never committed)."""
    folder = STATE / f"canary-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    secret = "canary-" + secrets.token_hex(16)
    password = "vault-" + secrets.token_hex(16)
    password_file = folder / "vault-password"
    password_file.write_text(password + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    vars_file = folder / "canary-vault.yml"
    vars_file.write_text(f"canary_secret: {secret}\n", encoding="utf-8")
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(password_file),
            str(vars_file),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert secret not in vars_file.read_text(encoding="utf-8")
    (folder / "canary.yml").write_text(CANARY_PLAY, encoding="utf-8")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(password_file))
    existing = {p.name for p in (STATE / "artifacts").glob("*")}
    yield {
        "secret": secret,
        "password": password,
        "playbook": str((folder / "canary.yml").relative_to(ROOT)),
        "folder": folder,
        "artifacts_before": existing,
    }
    lab.exec_in_host("gj-log-01", ["rm", "-f", "/etc/dualdc-canary"], check=False)
    for path in sorted(folder.iterdir()):
        path.unlink()
    folder.rmdir()


def test_a_vault_secret_appears_in_no_log_report_or_artifact(
    canary: dict[str, Any], lab: Lab, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    topology = load_environment("lab")
    options = {"playbook": canary["playbook"]}
    outputs: list[str] = []
    with guarded_run("lab", "deploy", "test canary deploy", ["gwangju"]) as run:
        report = new_report(topology, "gwangju", plan_only=False)
        deploy(
            DeploySpec(
                topology=topology,
                ledger=Ledger([], [], ""),
                site="gwangju",
                yes=True,
                run=run,
                progress=print,
                run_options=options,
            ),
            report,
        )
        run.finish(
            Outcome.SUCCESS if report.exit_code == 0 else Outcome.FAILED, report.exit_code, report.message
        )
    assert report.exit_code == 0, render_deploy_text(report)
    outputs += [render_deploy_text(report), render_deploy_json(report), render_deploy_markdown(report)]
    # the secret really reached the host, so its absence below means something
    on_host = lab.exec_in_host("gj-log-01", ["cat", "/etc/dualdc-canary"]).stdout
    assert on_host.strip() == canary["secret"]
    # drift of the secret file is found, and still not shown
    lab.exec_in_host("gj-log-01", ["sh", "-c", "echo tampered > /etc/dualdc-canary"])
    with guarded_run("lab", "drift", "test canary drift", ["gwangju"]) as run:
        drift = run_drift(
            DriftRun(
                topology=topology,
                ledger=Ledger([], [], ""),
                site="gwangju",
                layers={Layer.HOSTS},
                run_options=options,
            )
        )
        run.finish(Outcome.DRIFT, drift.exit_code, drift.headline())
    assert drift.exit_code == 2
    items = drift.items()
    assert [(i.host, i.task) for i in items] == [("gj-log-01", "Keep the canary secret in a root-only file")]
    outputs += [render_drift(drift, fmt, topology) for fmt in FORMATS]
    captured = capfd.readouterr()
    outputs += [captured.out, captured.err]
    outputs.append((STATE / "audit.jsonl").read_text(encoding="utf-8"))
    new_runs = [p for p in (STATE / "artifacts").glob("*") if p.name not in canary["artifacts_before"]]
    assert len(new_runs) >= 3  # plan, converge, verification, drift
    for run_dir in new_runs:
        for file in run_dir.rglob("*"):
            if file.is_file():
                outputs.append(file.read_text(encoding="utf-8", errors="replace"))
    for text in outputs:
        assert canary["secret"] not in text
        assert canary["password"] not in text
