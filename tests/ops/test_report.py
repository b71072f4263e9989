"""The drift report: status and exit codes, and the text, JSON, Markdown and JUnit renderings."""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET

import pytest

from dualdc.model import Layer
from dualdc.reports.drift import (
    MARKDOWN_LIMIT,
    Acknowledgement,
    CheckedTarget,
    CoverageGap,
    DriftItem,
    DriftReport,
    ItemStatus,
    LayerReport,
    LayerStatus,
    TargetStatus,
    render_json,
    render_junit,
    render_markdown,
    render_text,
)
from dualdc.reports.header import GitInfo

SSHD_DIFF = """\
--- before: /etc/ssh/sshd_config
+++ after: /etc/ssh/sshd_config
@@ -10,3 +10,2 @@
 PasswordAuthentication no
-PermitRootLogin yes
 X11Forwarding no
"""


def host_item(
    host: str,
    task: str = "base : Configure sshd",
    status: ItemStatus = ItemStatus.DRIFT,
    diff: str = SSHD_DIFF,
    file: str | None = "/etc/ssh/sshd_config",
) -> DriftItem:
    return DriftItem(
        id=f"host:{host}/{task}",
        layer=Layer.HOSTS,
        target=host,
        status=status,
        site="gwangju",
        host=host,
        task=task,
        file=file,
        summary=f"{task} would change {file}",
        diff=diff,
        segments=["gj-kj-internal"],
    )


def make_report(
    items: list[DriftItem] | None = None,
    unreachable: tuple[str, ...] = (),
    acks: list[Acknowledgement] | None = None,
) -> DriftReport:
    hosts = ["gj-log-01", "gj-ntp-01", *unreachable]
    checked = [
        CheckedTarget(
            layer=Layer.HOSTS,
            name=h,
            site="gwangju",
            status=TargetStatus.UNREACHABLE if h in unreachable else TargetStatus.CLEAN,
            detail="ssh: connect to host 10.0.0.9 port 22: No route to host" if h in unreachable else "",
            counts={"ok": 30},
        )
        for h in hosts
    ]
    report = DriftReport(
        environment="lab",
        sites=["gwangju"],
        generated_at=dt.datetime(2025, 6, 1, 3, 0, tzinfo=dt.UTC),
        git=GitInfo(commit="0123456789abcdef" * 2 + "01234567", dirty=False),
        layers=[
            LayerReport(
                layer=Layer.MODEL,
                status=LayerStatus.CLEAN,
                checked=[CheckedTarget(layer=Layer.MODEL, name="policy", status=TargetStatus.CLEAN)],
            ),
            LayerReport(
                layer=Layer.HOSTS, status=LayerStatus.CLEAN, checked=checked, items=list(items or [])
            ),
            LayerReport(
                layer=Layer.STACKS,
                status=LayerStatus.NOT_COMPARED,
                note="the lab has no Kubernetes API: stacks were rendered and validated, not compared",
            ),
        ],
        acknowledgements=acks or [],
        coverage=[
            CoverageGap(host="gj-log-01", task="audit : Load audit rules", reason="running in check mode")
        ],
    )
    return report.finalize()


def ack(expired: bool) -> Acknowledgement:
    return Acknowledgement(
        target="host:gj-log-01/*",
        reason="known for now, CHG-1",
        owner="ops-kim",
        expires=dt.date(2025, 6, 30),
        location="inventories/lab/drift-ack.yaml:2",
        expired=expired,
    )


@pytest.mark.parametrize(
    ("items", "unreachable", "acks", "status", "code"),
    [
        ([], (), [], "clean", 0),
        ([host_item("gj-log-01")], (), [], "drift", 2),
        ([host_item("gj-log-01", status=ItemStatus.ACKNOWLEDGED)], (), [ack(False)], "clean", 0),
        ([host_item("gj-log-01", status=ItemStatus.ACK_EXPIRED)], (), [ack(True)], "drift", 2),
        ([], (), [ack(True)], "drift", 2),  # an expired entry fails even once its drift is gone
        ([], ("gj-db-kj-01",), [], "unverified", 3),
        ([host_item("gj-log-01")], ("gj-db-kj-01",), [], "drift", 2),  # what was found is certain
    ],
)
def test_status_and_exit_code(
    items: list[DriftItem], unreachable: tuple[str, ...], acks: list[Acknowledgement], status: str, code: int
) -> None:
    report = make_report(items, unreachable, acks)
    assert (report.status.value, report.exit_code) == (status, code)


def test_summary_names_drifted_hosts_and_segments_and_unverified_targets() -> None:
    report = make_report(
        [host_item("gj-log-01"), host_item("gj-ntp-01", status=ItemStatus.ACKNOWLEDGED)], ("gj-db-kj-01",)
    )
    assert report.summary is not None
    assert report.summary.drifted_hosts == ["gj-log-01"]  # acknowledged drift is not marked
    assert report.summary.drifted_segments == ["gj-kj-internal"]
    assert report.summary.unverified_targets == ["hosts:gj-db-kj-01"]
    assert (report.summary.drift, report.summary.acknowledged) == (1, 1)


def test_json_round_trips_and_has_the_documented_top_level_keys() -> None:
    report = make_report([host_item("gj-log-01")], ("gj-db-kj-01",), [ack(False)])
    text = render_json(report)
    data = json.loads(text)
    assert data["kind"] == "dualdc-drift-report" and data["schema_version"] == 1
    assert data["exit_code"] == 2 and data["status"] == "drift"
    host_layer = next(layer for layer in data["layers"] if layer["layer"] == "hosts")
    assert host_layer["items"][0]["host"] == "gj-log-01"
    assert host_layer["items"][0]["file"] == "/etc/ssh/sshd_config"
    assert DriftReport.model_validate_json(text) == report


def test_text_names_host_task_file_and_shows_the_diff() -> None:
    text = render_text(make_report([host_item("gj-log-01")], ("gj-db-kj-01",)))
    assert text.startswith("DRIFT: lab (gwangju)")
    assert "gj-log-01: base : Configure sshd (/etc/ssh/sshd_config)" in text
    assert "-PermitRootLogin yes" in text
    assert "unreachable" in text and "No route to host" in text
    assert "not compared" in text
    assert "audit : Load audit rules on 1 host(s): running in check mode" in text
    assert "\x1b[" not in text  # no colour codes unless asked


def _fences_balanced(markdown: str) -> bool:
    """Every opened code fence is closed by a fence of the same length."""
    open_fence = None
    for line in markdown.splitlines():
        match = re.match(r"^(`{3,})", line)
        if not match:
            continue
        if open_fence is None:
            open_fence = match.group(1)
        elif match.group(1) == open_fence and line.strip() == open_fence:
            open_fence = None
    return open_fence is None


def test_markdown_folds_details_and_escapes_table_cells() -> None:
    task = "base : Configure | pipes <and> tags"
    report = make_report([host_item("gj-log-01", task=task)], ("gj-db-kj-01",))
    md = render_markdown(report, diagram="flowchart LR\n  a --> b")
    assert md.startswith("## ❌ Drift detected: `lab` (gwangju)")
    assert "| ❌ | gj-log-01 | base : Configure \\| pipes &lt;and&gt; tags | /etc/ssh/sshd_config |" in md
    assert md.count("<details>") == md.count("</details>") >= 3
    assert "```diff\n--- before: /etc/ssh/sshd_config" in md
    assert "```mermaid\nflowchart LR" in md
    assert "### Not verified (1)" in md and "No route to host" in md
    assert _fences_balanced(md)


def test_markdown_fence_outgrows_backticks_in_a_diff() -> None:
    diff = "-```\n+````yaml\n"
    md = render_markdown(make_report([host_item("gj-log-01", diff=diff)]))
    assert "`````diff\n-```\n+````yaml\n`````" in md
    assert _fences_balanced(md)


def test_huge_report_fits_a_comment_and_says_it_was_truncated() -> None:
    big_diff = "".join(f"-old line {n} {'x' * 60}\n+new line {n} {'y' * 60}\n" for n in range(200))
    items = [host_item(f"gj-host-{n:04d}", diff=big_diff) for n in range(800)]
    md = render_markdown(make_report(items), full_report="drift.json (artifact)")
    assert len(md) <= MARKDOWN_LIMIT
    assert "Truncated to fit a comment" in md and "drift.json (artifact)" in md
    assert md.count("<details>") == md.count("</details>")
    assert _fences_balanced(md)
    assert "… and 650 more (see the full report)" in md
    assert "more line(s)" in md  # one diff longer than the per-diff limit is cut at a line


def test_junit_suites_cases_and_failures() -> None:
    items = [host_item("gj-log-01"), host_item("gj-ntp-01", status=ItemStatus.ACKNOWLEDGED)]
    report = make_report(items, ("gj-db-kj-01",), [ack(True)])
    root = ET.fromstring(render_junit(report))
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    hosts = suites["drift.hosts"]
    cases = {c.get("name"): c for c in hosts.findall("testcase")}
    assert set(cases) == {"gj-log-01", "gj-ntp-01", "gj-db-kj-01"}
    failure = cases["gj-log-01"].find("failure")
    assert failure is not None and "base : Configure sshd (/etc/ssh/sshd_config)" in (failure.text or "")
    assert cases["gj-ntp-01"].find("failure") is None  # acknowledged
    error = cases["gj-db-kj-01"].find("error")
    assert error is not None and error.get("type") == "unreachable"
    assert (hosts.get("tests"), hosts.get("failures"), hosts.get("errors")) == ("3", "1", "1")
    assert suites["drift.acknowledgements"].find("testcase/failure") is not None  # expired entry
    assert suites["drift.check-mode-coverage"].find("testcase/skipped") is not None
    assert root.get("failures") == "2" and root.get("errors") == "1"


def test_junit_survives_control_characters() -> None:
    report = make_report([host_item("gj-log-01", diff="-a\x00b\x1b[31m\n+c\n")])
    root = ET.fromstring(render_junit(report))
    assert root.find(".//failure") is not None
