"""Deploy refusals that happen before anything runs, and the deploy report's renderings.

The full deploy (plan, converge, stacks, verification) runs on the lab twin in test_lab_ops.py.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dualdc.loader import load_environment, load_topology
from dualdc.ops.ack import Ledger
from dualdc.ops.deploy import DeployError, DeploySpec, deploy, new_report
from dualdc.reports.deploy import (
    DeployReport,
    Step,
    StepStatus,
    render_deploy_markdown,
    render_deploy_text,
)
from dualdc.reports.drift import DriftReport
from dualdc.reports.header import GitInfo, Outcome

EMPTY = Ledger([], [], "")


def test_no_terminal_and_no_yes_refuses_before_running_anything() -> None:
    lab = load_environment("lab")
    report = new_report(lab, None, plan_only=False)
    with pytest.raises(DeployError, match="pass --yes"):
        deploy(DeploySpec(topology=lab, ledger=EMPTY, yes=False, confirm=None), report)
    assert report.plan is None and report.steps == []


@pytest.mark.skipif(shutil.which("pulumi") is not None, reason="the pulumi CLI is installed here")
def test_missing_pulumi_where_stacks_must_be_applied_is_an_error(tmp_path: Path) -> None:
    env = tmp_path / "dc"
    env.mkdir()
    for source in Path("inventories/lab").glob("*.yaml"):
        text = source.read_text(encoding="utf-8").replace("  lab: true\n", "  lab: false\n")
        (env / source.name).write_text(text, encoding="utf-8")
    topology = load_topology(env)
    report = new_report(topology, None, plan_only=False)
    with pytest.raises(DeployError) as raised:
        deploy(DeploySpec(topology=topology, ledger=EMPTY, yes=True), report)
    message = str(raised.value)
    assert "must be applied with Pulumi" in message and "pulumi CLI is not installed" in message
    assert report.plan is None and report.applied == []


def test_invoke_deploy_without_terminal_exits_1_and_audits(tmp_path: Path) -> None:
    # the lock and the audit log in a folder of the test's own (a real run may hold .state/lab/lock)
    env = {**os.environ, "DUALDC_OPS_STATE_DIR": str(tmp_path)}
    before = tmp_path / "lab" / "audit.jsonl"
    lines_before = 0
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "deploy", "--env", "lab"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 1
    assert "no terminal to ask for confirmation on: pass --yes" in done.stderr
    assert "Traceback" not in done.stderr
    lines = before.read_text(encoding="utf-8").splitlines()
    assert (
        len(lines) == lines_before + 1
        and '"result":"error"' in lines[-1]
        and '"command":"deploy"' in lines[-1]
    )


def test_bad_input_exits_1_with_one_readable_line() -> None:
    for args, expected in (
        (["--env", "lab", "--site", "busan"], "--site 'busan' is not a site of 'lab'"),
        (["--env", "lab", "--format", "xml"], "--format must be one of"),
        (["--env", "nowhere"], "no such environment"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "invoke", "deploy", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1 and expected in done.stderr and "Traceback" not in done.stderr


def _report(result: Outcome) -> DeployReport:
    report = DeployReport(
        environment="lab",
        sites=["gwangju", "jeonju"],
        generated_at=dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
        git=GitInfo(commit="a" * 40, dirty=False),
    )
    report.plan = DriftReport(
        environment="lab", sites=["gwangju", "jeonju"], generated_at=report.generated_at, git=report.git
    ).finalize()
    report.steps = [
        Step(
            site="gwangju", layer="hosts", action="converge", status=StepStatus.APPLIED, detail="12 host(s)"
        ),
        Step(
            site="gwangju",
            layer="stacks",
            action="render dualdc-site.gwangju",
            status=StepStatus.RENDERED,
            detail="the lab twin has no Kubernetes API",
        ),
        Step(
            site="gwangju",
            layer="hosts",
            action="verify",
            status=StepStatus.FAILED,
            detail="drift after applying: gj-log-01: base : Harden | sshd",
        ),
        Step(
            site="jeonju",
            layer="hosts",
            action="not touched",
            status=StepStatus.NOT_RUN,
            detail="an earlier site failed",
        ),
    ]
    report.applied = ["gwangju:hosts", "gwangju:stacks"]
    report.not_applied = ["jeonju:hosts", "jeonju:stacks"]
    return report.finish(result, 2, "gwangju: verify failed; stopped there")


def test_report_says_what_was_and_was_not_applied() -> None:
    report = _report(Outcome.FAILED)
    text = render_deploy_text(report)
    assert (
        "applied: gwangju:hosts, gwangju:stacks" in text
        and "not applied: jeonju:hosts, jeonju:stacks" in text
    )
    assert "[not-run] jeonju: not touched" in text
    md = render_deploy_markdown(report)
    assert md.startswith("## ❌ Deploy failed: `lab` (gwangju, jeonju)")
    assert "**Not applied:** jeonju:hosts, jeonju:stacks" in md
    assert "base : Harden \\| sshd" in md  # table cells escaped
    assert DeployReport.model_validate_json(report.model_dump_json()) == report
