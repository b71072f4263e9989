"""Drift orchestration without the lab: the hosts layer from a run's results, the model layer, acks.

The hosts layer is built from :class:`dualdc.ansible.RunResult` objects as the wrapper returns them; the
lab tests (tests/ops/test_lab_ops.py) run the real thing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from xml.etree import ElementTree as ET

from dualdc.ansible import Diff, HostSummary, RunOptions, RunResult, Status, TaskResult
from dualdc.loader import load_environment, load_topology
from dualdc.model import Layer
from dualdc.ops.ack import load_ledger
from dualdc.ops.drift import apply_acknowledgements, host_layer_from_run, model_layer, sites_of
from dualdc.reports.drift import DriftReport, ItemStatus, LayerStatus, TargetStatus, render_junit
from dualdc.reports.header import GitInfo

SSHD = Diff(
    "/etc/ssh/sshd_config",
    "/root/.ansible/tmp/ansible-local-1/tmpab/sshd_config.j2",
    "--- /etc/ssh/sshd_config\n+++ /root/.ansible/tmp/x/sshd_config.j2\n@@ -1 +1 @@\n-PermitRootLogin yes\n"
    "+PermitRootLogin prohibit-password\n",
)


def task(host: str, name: str, status: Status = Status.OK, **extra: object) -> TaskResult:
    return TaskResult(
        host=host,
        task=name,
        role="base",
        action="ansible.builtin.template",
        status=status,
        changed=status is Status.CHANGED,
        **extra,
    )  # type: ignore[arg-type]


def run_result(tasks: list[TaskResult], hosts: dict[str, HostSummary]) -> RunResult:
    return RunResult(
        env="lab",
        ident="20250101T000000Z-check-abc",
        rc=2,
        status="failed",
        artifacts_dir=Path(".state/lab/artifacts/x"),
        options=RunOptions(
            forks=50, strategy="free", pipelining=True, check=True, diff=True, limit="site_gwangju"
        ),
        started="2025-01-01T00:00:00",
        seconds=12.5,
        hosts=hosts,
        tasks=tasks,
        site="gwangju",
    )


def test_hosts_layer_per_host_per_task_with_file_and_diff() -> None:
    lab = load_environment("lab")
    gwangju = [h.name for h in lab.hosts if h.site == "gwangju"]
    hosts = {name: HostSummary(ok=40) for name in gwangju}
    hosts["gj-log-01"] = HostSummary(ok=39, changed=1)
    hosts["gj-db-kj-01"] = HostSummary(unreachable=1)
    hosts["gj-ntp-01"] = HostSummary(ok=20, failed=1)
    del hosts["gj-backup-01"]  # never reached the recap
    tasks = [
        task(
            "gj-log-01",
            "Harden the SSH daemon configuration",
            Status.CHANGED,
            target="/root/.ansible/tmp/ansible-local-1/tmpab/sshd_config.j2",
            diff=[SSHD],
        ),
        task("gj-log-01", "Restart sshd", Status.CHANGED, handler=True),
        task(
            "gj-log-01",
            "Load the audit rules",
            Status.SKIPPED,
            check_mode_skipped=True,
            skip_reason="augenrules cannot run in check mode",
        ),
        task(
            "gj-db-kj-01",
            "Gathering",
            Status.UNREACHABLE,
            msg="ssh: connect to host 10.10.10.21 port 22: No route to host",
        ),
        task("gj-ntp-01", "Validate sudoers", Status.FAILED, msg="visudo: parse error"),
        task("gj-core-wk-01", "Ignored probe", Status.FAILED, ignored=True),
    ]
    result = host_layer_from_run(lab, ["gwangju"], run_result(tasks, hosts))
    layer = result.layer
    assert layer.status is LayerStatus.DRIFT
    assert [i.id for i in layer.items] == ["host:gj-log-01/base : Harden the SSH daemon configuration"]
    item = layer.items[0]
    assert (item.host, item.task, item.file) == (
        "gj-log-01",
        "base : Harden the SSH daemon configuration",
        "/etc/ssh/sshd_config",
    )
    assert "-PermitRootLogin yes" in item.diff and item.site == "gwangju"
    assert item.segments == ["gj-group-internal"]  # gj-log-01's primary segment
    status = {t.name: t.status for t in layer.checked}
    assert len(status) == len(gwangju)  # every gwangju host, none of jeonju
    assert status["gj-log-01"] is TargetStatus.DRIFT
    assert status["gj-db-kj-01"] is TargetStatus.UNREACHABLE
    assert status["gj-ntp-01"] is TargetStatus.FAILED
    assert status["gj-backup-01"] is TargetStatus.NOT_CHECKED
    assert status["gj-core-wk-01"] is TargetStatus.CLEAN  # an ignored failure is not a failure
    detail = {t.name: t.detail for t in layer.checked}
    assert "No route to host" in detail["gj-db-kj-01"] and "visudo: parse error" in detail["gj-ntp-01"]
    assert [(g.host, g.task) for g in result.coverage] == [("gj-log-01", "base : Load the audit rules")]
    assert result.coverage[0].reason == "augenrules cannot run in check mode"


def test_unreachable_only_is_unverified_and_acks_clear_drift(tmp_path: Path) -> None:
    lab = load_environment("lab")
    hosts = {h.name: HostSummary(ok=40) for h in lab.hosts if h.site == "jeonju"}
    hosts["jj-log-01"] = HostSummary(ok=39, changed=1)
    tasks = [task("jj-log-01", "Harden the SSH daemon configuration", Status.CHANGED, diff=[SSHD])]
    layer = host_layer_from_run(lab, ["jeonju"], run_result(tasks, hosts)).layer
    report = DriftReport(
        environment="lab",
        sites=["jeonju"],
        generated_at=dt.datetime.now(dt.UTC),
        git=GitInfo(commit=None, dirty=None),
        layers=[layer],
    )
    ledger_file = tmp_path / "drift-ack.yaml"
    ledger_file.write_text(
        "acknowledgements:\n- target: 'host:jj-log-01/base : Harden*'\n"
        "  reason: vendor hardening agent, replaced by CHG-77\n  owner: ops-kim\n"
        "  expires: 2099-12-31\n",
        encoding="utf-8",
    )
    apply_acknowledgements(report, load_ledger(ledger_file, lab), dt.date(2025, 1, 1))
    report.finalize()
    assert report.exit_code == 0 and layer.status is LayerStatus.CLEAN
    assert layer.items[0].status is ItemStatus.ACKNOWLEDGED
    assert {t.name: t.status for t in layer.checked}["jj-log-01"] is TargetStatus.ACKNOWLEDGED


def test_model_layer_reports_policy_errors_as_drift(tmp_path: Path) -> None:
    env = tmp_path / "lab"
    env.mkdir()
    for source in Path("inventories/lab").glob("*.yaml"):
        text = source.read_text(encoding="utf-8")
        if source.name == "network.yaml":  # overlap two segments' networks (IP-01)
            text = text.replace("cidr: 10.10.120.0/24", "cidr: 10.10.110.0/24", 1)
        (env / source.name).write_text(text, encoding="utf-8")
    layer = model_layer(load_topology(env))
    assert layer.status is LayerStatus.DRIFT
    rules = {i.rule for i in layer.items}
    assert "IP-01" in rules
    item = next(i for i in layer.items if i.rule == "IP-01")
    assert item.id.startswith("model:IP-01/") and "network.yaml:" in item.summary
    assert {t.name for t in layer.checked} >= {"STR-02", "NS-01", "DR-01"}
    assert load_environment("lab") and model_layer(load_environment("lab")).status is LayerStatus.CLEAN


def test_sites_in_deploy_order() -> None:
    lab = load_environment("lab")
    assert sites_of(lab, None) == lab.environment.deploy_order
    assert sites_of(lab, "jeonju") == ["jeonju"]
    assert Layer.HOSTS in lab.environment.layers


def test_sites_are_checked_by_parallel_runs_started_one_after_the_other(monkeypatch) -> None:
    """One ansible-playbook per site, concurrently; each starts once the previous one has started.

    run_playbook is replaced by a stand-in (the lab tests run the real one): it records when each
    run starts and emits its first event, and returns a result for its site's hosts.
    """
    import time

    from dualdc.ops import drift

    lab = load_environment("lab")
    timeline: list[str] = []

    def fake_run(run, on_event=None):  # type: ignore[no-untyped-def]
        timeline.append(f"start {run.site}")
        time.sleep(0.3)  # stands for ansible-runner pruning old artifact folders
        on_event({"event": "playbook_on_start"}, None)
        timeline.append(f"first event {run.site}")
        hosts = {h.name: HostSummary(ok=10) for h in lab.hosts if h.site == run.site}
        return run_result([], hosts)

    monkeypatch.setattr(drift, "run_playbook", fake_run)
    events: list[dict[str, object]] = []
    layer = drift.host_layer(lab, ["gwangju", "jeonju"], None, on_event=lambda e, r: events.append(e))
    assert timeline[:2] == ["start gwangju", "first event gwangju"]
    assert timeline.index("start jeonju") > timeline.index("first event gwangju")
    assert len(events) == 2
    assert len(layer.layer.checked) == len(lab.hosts) and layer.layer.status is LayerStatus.CLEAN
    assert [t.site for t in layer.layer.checked] == (
        ["gwangju"] * len(lab.hosts_at("gwangju")) + ["jeonju"] * len(lab.hosts_at("jeonju")))


def _junit_cases(report: DriftReport) -> dict[str, ET.Element]:
    root = ET.fromstring(render_junit(report))
    return {c.get("name", ""): c for c in root.iter("testcase")}


def test_junit_cases_point_at_the_topology_lines_of_hosts_and_findings(tmp_path: Path) -> None:
    """GitLab and GitHub annotate a JUnit case's file and line: a host's entry, a rule's finding."""
    lab = load_environment("lab")
    hosts = {h.name: HostSummary(ok=40) for h in lab.hosts if h.site == "gwangju"}
    hosts["gj-log-01"] = HostSummary(ok=39, changed=1)
    tasks = [task("gj-log-01", "Harden the SSH daemon configuration", Status.CHANGED, diff=[SSHD])]
    hosts_layer = host_layer_from_run(lab, ["gwangju"], run_result(tasks, hosts)).layer

    env = tmp_path / "lab"
    env.mkdir()
    for source in Path("inventories/lab").glob("*.yaml"):
        text = source.read_text(encoding="utf-8")
        if source.name == "network.yaml":  # overlap two segments' networks (IP-01)
            text = text.replace("cidr: 10.10.120.0/24", "cidr: 10.10.110.0/24", 1)
        (env / source.name).write_text(text, encoding="utf-8")
    model = model_layer(load_topology(env))

    report = DriftReport(environment="lab", sites=["gwangju"], generated_at=dt.datetime.now(dt.UTC),
                         git=GitInfo(commit=None, dirty=None), layers=[model, hosts_layer])
    report.finalize()
    cases = _junit_cases(report)
    log = cases["gj-log-01"]
    assert log.find("failure") is not None
    assert log.get("file") == "inventories/lab/hosts.yaml"
    declared = int(log.get("line", "0"))
    host_lines = Path("inventories/lab/hosts.yaml").read_text(encoding="utf-8").splitlines()
    assert "gj-log-01" in host_lines[declared - 1]
    clean = cases["gj-ntp-01"]  # a clean host still says where it is declared
    assert clean.find("failure") is None and clean.get("file") == "inventories/lab/hosts.yaml"
    assert clean.get("line") != log.get("line")
    ip01 = cases["IP-01"]
    assert ip01.find("failure") is not None
    assert ip01.get("file") == str(env / "network.yaml")  # the overlapping network's line
    lines = (env / "network.yaml").read_text(encoding="utf-8").splitlines()
    assert "cidr: 10.10.110.0/24" in lines[int(ip01.get("line", "0")) - 1]
    assert cases["NS-01"].get("file") is None  # a rule with nothing failing points nowhere
    data = report.model_dump(mode="json")
    host = next(t for t in data["layers"][1]["checked"] if t["name"] == "gj-log-01")
    assert host["source"] == f"inventories/lab/hosts.yaml:{declared}"


def test_junit_acknowledgement_cases_point_at_the_ledger_entry(tmp_path: Path) -> None:
    lab = load_environment("lab")
    hosts = {h.name: HostSummary(ok=40) for h in lab.hosts if h.site == "jeonju"}
    hosts["jj-log-01"] = HostSummary(ok=39, changed=1)
    tasks = [task("jj-log-01", "Harden the SSH daemon configuration", Status.CHANGED, diff=[SSHD])]
    layer = host_layer_from_run(lab, ["jeonju"], run_result(tasks, hosts)).layer
    report = DriftReport(environment="lab", sites=["jeonju"], generated_at=dt.datetime.now(dt.UTC),
                         git=GitInfo(commit=None, dirty=None), layers=[layer])
    ledger_file = tmp_path / "drift-ack.yaml"
    ledger_file.write_text(
        "acknowledgements:\n- target: 'host:jj-log-01/base : Harden*'\n"
        "  reason: vendor hardening agent, replaced by CHG-77\n  owner: ops-kim\n"
        "  expires: 2020-12-31\n",
        encoding="utf-8",
    )
    apply_acknowledgements(report, load_ledger(ledger_file, lab), dt.date(2025, 1, 1))
    report.finalize()
    case = _junit_cases(report)["host:jj-log-01/base : Harden*"]
    assert case.find("failure") is not None  # expired
    assert case.get("file", "").endswith("drift-ack.yaml") and case.get("line") == "2"
