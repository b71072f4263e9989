"""The deploy report: what a deploy planned, applied and verified, and its renderers (text, JSON, Markdown).

The orchestration (:mod:`dualdc.ops.deploy`) fills it; here it is only shown. It opens with the
header every run report shares (:class:`dualdc.reports.header.ReportHeader`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dualdc.model import Layer
from dualdc.reports.drift import DriftReport, render_markdown, render_text
from dualdc.reports.header import Outcome, ReportHeader


class StepStatus(StrEnum):
    APPLIED = "applied"
    RENDERED = "rendered"
    """Stacks of an environment without a Kubernetes API: rendered and validated, not applied."""
    VERIFIED = "verified"
    FAILED = "failed"
    NOT_RUN = "not-run"


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str | None = Field(description="Site the step acts on; null for environment-wide steps.")
    layer: Layer = Field(description="Layer the step acts on.")
    action: str = Field(description="converge, stacks up, render, verify, replication up, lab probe.")
    status: StepStatus = Field(description="applied, rendered, verified, failed or not-run.")
    detail: str = Field(default="", description="What happened, or why it failed.")
    seconds: float = Field(default=0.0, description="How long it took.")
    _t0: float = PrivateAttr(default=0.0)


class DeployReport(ReportHeader):
    """What a deploy planned, applied and verified (JSON shape documented in docs/operations.md)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["dualdc-deploy-report"] = Field(default="dualdc-deploy-report", description="Report kind.")
    schema_version: Literal[1] = Field(default=1, description="Version of this JSON shape.")
    plan_only: bool = Field(default=False, description="True for --plan-only.")
    result: Outcome = Field(default=Outcome.FAILED, description="How the deploy ended.")
    exit_code: int = Field(default=1, description="0 success, 1 not started, 2 blocked/failed, 3 unverified.")
    message: str = Field(default="", description="One line saying how it ended.")
    plan: DriftReport | None = Field(
        default=None, description="The plan (a drift report of pending changes)."
    )
    steps: list[Step] = Field(
        default_factory=list, description="Every step, in order, including those not run."
    )
    verification: list[DriftReport] = Field(default_factory=list, description="Drift after each site.")
    applied: list[str] = Field(default_factory=list, description="'site:layer' applied (or rendered).")
    not_applied: list[str] = Field(default_factory=list, description="'site:layer' planned but not applied.")

    def finish(self, result: Outcome, exit_code: int, message: str) -> DeployReport:
        self.result, self.exit_code, self.message = result, int(exit_code), message
        return self


# --------------------------------------------------------------------------- rendering


_MARK = {
    StepStatus.APPLIED: "✅",
    StepStatus.RENDERED: "📄",
    StepStatus.VERIFIED: "✅",
    StepStatus.FAILED: "❌",
    StepStatus.NOT_RUN: "⏸️",
}


def render_deploy_json(report: DeployReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


#: Tasks listed per host in the terminal's plan summary.
PLAN_TASKS_SHOWN = 8


def render_deploy_text(report: DeployReport, *, full: bool = False) -> str:
    """For the terminal: the steps and a summary of the plan; ``full`` adds the plan's diffs (artifacts)."""
    lines = [
        f"deploy {report.environment} ({', '.join(report.sites)}): {report.result.value.upper()}: "
        f"{report.message}"
    ]
    if report.git.commit:
        lines.append(report.header_line())
    if report.steps:
        lines += ["", "steps:"]
        for step in report.steps:
            where = step.site or "all"
            lines.append(
                f"  [{step.status.value}] {where}: {step.action} ({step.seconds:.1f} s)"
                + (f": {step.detail}" if step.detail else "")
            )
    lines += [
        "",
        f"applied: {', '.join(report.applied) or 'nothing'}",
        f"not applied: {', '.join(report.not_applied) or 'nothing'}",
    ]
    if report.plan is not None and full:
        lines += [
            "",
            "plan (what the deploy found pending before applying):",
            "",
            render_text(report.plan).rstrip(),
        ]
    elif report.plan is not None:
        lines += ["", *plan_summary_lines(report)]
    return "\n".join(lines) + "\n"


def plan_summary_lines(report: DeployReport) -> list[str]:
    """The plan for a terminal: per host and task what changes, counts, and where the full diffs are.

    A fresh lab's plan holds every file of every host in full; the terminal gets what changes
    and the counts, the diffs stay in the JSON and Markdown reports and the run's artifacts.
    """
    plan = report.plan
    assert plan is not None
    items = [i for i in plan.items() if i.layer is not Layer.MODEL]
    by_host: dict[str, list[str]] = {}
    others: list[str] = []
    for item in items:
        if item.host:
            by_host.setdefault(item.host, []).append(item.task or item.summary)
        else:
            others.append(f"{item.target}: {item.resource or item.summary}")
    lines = [f"plan (pending before applying): {len(items)} change(s) on {len(by_host)} host(s)"
             + (f" and {len(others)} other target(s)" if others else "")]
    for host in sorted(by_host):
        tasks = sorted(set(by_host[host]))
        shown = ", ".join(tasks[:PLAN_TASKS_SHOWN])
        more = f", +{len(tasks) - PLAN_TASKS_SHOWN} more" if len(tasks) > PLAN_TASKS_SHOWN else ""
        lines.append(f"  {host} ({len(by_host[host])}): {shown}{more}")
    for line in others[:PLAN_TASKS_SHOWN]:
        lines.append(f"  {line}")
    if len(others) > PLAN_TASKS_SHOWN:
        lines.append(f"  ... and {len(others) - PLAN_TASKS_SHOWN} more")
    notes = [layer.note for layer in plan.layers if layer.layer is Layer.HOSTS and layer.note]
    lines.append("full diffs: --format json or --format markdown (or --artifacts DIR); the host runs' "
                 f"artifacts: {'; '.join(notes) if notes else 'none'}")
    return lines


def render_deploy_markdown(report: DeployReport, *, full_report: str | None = None) -> str:
    """For a PR comment (--plan-only) or the deploy job's summary, within a comment's size."""
    if report.plan_only and report.plan is not None:
        body = render_markdown(
            report.plan,
            title="Plan: what the deploy would change",
            drift_label="Pending changes",
            plan=True,
            full_report=full_report,
            limit=60_000,
        )
        first, _, rest = body.partition("\n")
        return f"{first}\n\n**{report.message}**\n{rest}"
    mark = {Outcome.SUCCESS: "✅", Outcome.PLANNED: "📝", Outcome.DECLINED: "⏹️"}.get(
        report.result, "❌"
    )
    lines = [
        f"## {mark} Deploy {report.result.value}: `{report.environment}` ({', '.join(report.sites)})",
        "",
        report.message,
        "",
    ]
    if report.git.commit:
        lines += [f"{report.commit_markdown()} · {report.duration_seconds:.0f} s", ""]
    if report.steps:
        lines += ["| | site | step | detail | time |", "|---|---|---|---|---:|"]
        for step in report.steps:
            detail = step.detail.replace("|", "\\|").replace("\n", " ")[:300]
            lines.append(
                f"| {_MARK[step.status]} {step.status.value} | {step.site or 'all'} | {step.action} | "
                f"{detail} | {step.seconds:.0f} s |"
            )
        lines.append("")
    lines += [
        f"**Applied:** {', '.join(report.applied) or 'nothing'}  ",
        f"**Not applied:** {', '.join(report.not_applied) or 'nothing'}",
        "",
    ]
    text = "\n".join(lines)
    if report.plan is not None:
        plan = render_markdown(
            report.plan,
            title="Plan",
            drift_label="Pending changes",
            plan=True,
            heading="###",
            full_report=full_report,
            limit=60_000 - len(text),
        )
        text += (
            "\n<details><summary>The plan (what the deploy found pending before applying)</summary>\n\n"
            + plan
            + "\n</details>\n"
        )
    return text
