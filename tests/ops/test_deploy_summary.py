"""The deploy's terminal report is a summary; the full diffs go to JSON, Markdown and the artifacts."""

from __future__ import annotations

import datetime as dt

from dualdc.model import Layer
from dualdc.reports.deploy import (
    PLAN_TASKS_SHOWN,
    DeployReport,
    render_deploy_json,
    render_deploy_markdown,
    render_deploy_text,
)
from dualdc.reports.drift import DriftItem, DriftReport, ItemStatus, LayerReport, LayerStatus
from dualdc.reports.header import GitInfo, Outcome

DIFF_LINE = "+PermitRootLogin prohibit-password  # the secret-free body of a changed file"


def _planned(hosts: int, tasks: int) -> DeployReport:
    when = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    git = GitInfo(commit="b" * 40, dirty=False)
    items = [
        DriftItem(id=f"host:h{h:02d}/role : task {t}", layer=Layer.HOSTS, target=f"h{h:02d}",
                  status=ItemStatus.DRIFT, summary=f"role : task {t} would change /etc/f{t}",
                  site="gwangju", host=f"h{h:02d}", task=f"role : task {t}",
                  diff=f"--- a\n+++ b\n{DIFF_LINE}\n")
        for h in range(hosts) for t in range(tasks)
    ]
    layer = LayerReport(layer=Layer.HOSTS, status=LayerStatus.DRIFT, items=items,
                        note="playbooks/site.yml in check and diff mode; artifacts in /state/lab/artifacts/x")
    report = DeployReport(environment="lab", sites=["gwangju"], generated_at=when, git=git)
    report.plan = DriftReport(environment="lab", sites=["gwangju"], generated_at=when, git=git,
                              layers=[layer]).finalize()
    return report.finish(Outcome.PLANNED, 0, "plan only: pending changes; nothing applied")


def test_the_terminal_gets_what_changes_per_host_and_task_not_the_diffs() -> None:
    report = _planned(hosts=24, tasks=PLAN_TASKS_SHOWN + 3)
    text = render_deploy_text(report)
    assert DIFF_LINE not in text
    assert f"{24 * (PLAN_TASKS_SHOWN + 3)} change(s) on 24 host(s)" in text
    assert f"  h00 ({PLAN_TASKS_SHOWN + 3}): role : task 0, role : task 1" in text
    assert ", +3 more" in text
    assert "full diffs: --format json or --format markdown" in text and "/state/lab/artifacts/x" in text
    # one line per host, not one per file: it fits a terminal whatever the plan holds
    assert len(text.splitlines()) < 24 + 15


def test_the_full_diffs_stay_in_json_markdown_and_the_full_text() -> None:
    report = _planned(hosts=2, tasks=2)
    assert DIFF_LINE in render_deploy_json(report)
    assert DIFF_LINE in render_deploy_markdown(report)
    assert DIFF_LINE in render_deploy_text(report, full=True)
