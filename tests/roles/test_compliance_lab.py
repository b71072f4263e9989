"""The host baseline on the lab twin: compliance on every host, broken controls by name, AIDE in drift.

Runs on the session's deployed lab (the ``deployed`` fixture: one ``invoke deploy`` for the
whole session). The host count comes from the topology. The test that breaks controls puts
the host back (the account removed by hand, then a converge of that host, which also takes
its state as AIDE's new baseline).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dualdc.ansible import PlaybookRun, run_playbook, text_report
from dualdc.cli import ExitCode
from dualdc.loader import load_environment

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = Path(__file__).resolve().parents[2]
INVOKE = [sys.executable, "-m", "invoke"]
HOST = "jj-core-wk-01"


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INVOKE, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )


def sh(lab: Any, host: str, script: str) -> None:
    lab.exec_in_host(host, ["sh", "-c", script])


def test_compliance_passes_on_every_lab_host(deployed: dict[str, Any], tmp_path: Path) -> None:
    assert deployed["done"].returncode == 0, deployed["done"].stdout[-3000:]
    print(f"deploy (fresh lab): {deployed['report']['duration_seconds']:.1f} s")
    out = tmp_path / "compliance.json"
    started = time.monotonic()
    done = invoke("compliance", "--env", "lab", "--format", "json", "--output", str(out))
    seconds = time.monotonic() - started
    report = json.loads(out.read_text(encoding="utf-8"))
    failed = [
        (h["host"], c["control"], c["evidence"])
        for h in report["hosts"]
        for c in h["controls"]
        if c["outcome"] in ("fail", "error")
    ]
    assert done.returncode == 0, (failed[:20], done.stderr[-2000:])
    assert len(report["hosts"]) == len(load_environment("lab").hosts)
    assert all(h["reachable"] for h in report["hosts"])
    print(f"compliance over {len(report['hosts'])} hosts: {seconds:.1f} s")


#: one break per category: a world-writable file, a loosened /etc/shadow, a new UID-0 account,
#: a module no longer blacklisted, a changed binary under AIDE's watch
BREAKS = {
    "HB-28": "touch /usr/local/bin/open-to-all && chmod 0777 /usr/local/bin/open-to-all",
    "HB-21": "chmod 0644 /etc/shadow",
    "HB-05": "echo 'toor:x:0:0::/root:/usr/sbin/nologin' >> /etc/passwd",
    "HB-60": "sed -i '/dccp/d' /etc/modprobe.d/dualdc-blacklist.conf",
    "HB-90": "echo '# tampered' >> /usr/bin/rgrep",
}
ITEMS = {"HB-28": "U-15", "HB-21": "U-08", "HB-05": "U-44", "HB-60": "CIS 3.2.1", "HB-90": "CIS 6.1.1"}


def test_broken_controls_fail_by_name_and_drift_sees_aide(
    deployed: dict[str, Any], lab: Any, tmp_path: Path
) -> None:
    site = load_environment("lab").host(HOST).site
    for script in BREAKS.values():
        sh(lab, HOST, script)
    try:
        done = invoke("compliance", "--env", "lab", "--host", HOST)
        assert done.returncode == ExitCode.FINDINGS, done.stdout[-4000:] + done.stderr[-2000:]
        for control, item in ITEMS.items():
            line = next((line for line in done.stdout.splitlines() if f" {control} " in line), "")
            assert "FAIL" in line and item in line, (control, done.stdout[-4000:])
        assert HOST in done.stdout
        drift_out = tmp_path / "drift.json"
        drift = invoke(
            "drift", "--env", "lab", "--site", site, "--format", "json", "--output", str(drift_out)
        )
        assert drift.returncode == ExitCode.FINDINGS, drift.stderr[-2000:]
        ids = {item["id"] for layer in json.loads(drift_out.read_text())["layers"] for item in layer["items"]}
        assert f"host:{HOST}/aide:/usr/bin/rgrep" in ids, sorted(ids)
    finally:
        sh(
            lab,
            HOST,
            "sed -i '/^toor:/d' /etc/passwd; rm -f /usr/local/bin/open-to-all; "
            "sed -i '/^# tampered$/d' /usr/bin/rgrep",
        )
        back = run_playbook(PlaybookRun(env="lab", limit=HOST))
        assert back.exit_code() == ExitCode.CLEAN, text_report(back)
    after = invoke("compliance", "--env", "lab", "--host", HOST)
    assert after.returncode == 0, after.stdout[-4000:]
