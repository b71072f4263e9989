"""``invoke deploy``: validate, plan, confirm, then apply site by site, each site verified before the next.

1. **Validate**: the policy pack; an unwaived error blocks the deploy (exit 2, nothing applied).
2. **Plan**: the hosts in check and diff mode and the stacks previewed (with refresh) — the same
   checks as ``invoke drift``, so the plan is a drift report of "what the deploy would change".
   A host or stack that cannot be planned stops the deploy (exit 3, nothing applied). Where
   stacks must be applied, a missing Pulumi CLI stops it before the plan (exit 1).
3. **Confirm**: a summary, then the operator types the environment's name; ``--yes`` skips this,
   and without a terminal and without ``--yes`` the deploy refuses (exit 1).
4. **Apply**, one site at a time in ``environment.deploy_order``: converge the site's hosts,
   bring its stacks up (the lab renders them and says so), then check the site's drift, which
   must be clean. A failure stops the deploy before the next site is touched. After the last
   site, the replication stack (it spans both sites) and, in the lab, the reachability probe.

The :class:`DeployReport` says what was applied and what was not. ``--plan-only`` stops after
step 2 (the pull-request summary).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dualdc.base.redact import scrub
from dualdc.model import Layer, Topology
from dualdc.ops import audit
from dualdc.ops.ack import Ledger
from dualdc.ops.drift import DriftRun, EventSink, run_drift, sites_of
from dualdc.ops.layer import LayerUnavailable, OpsLayer, environment_layers
from dualdc.ops.run import Run
from dualdc.reports.drift import (
    DriftReport,
    GitInfo,
    ItemStatus,
    render_markdown,
    render_text,
)


class DeployError(Exception):
    """The deploy cannot start (exit 1, nothing applied)."""


class StepStatus(StrEnum):
    APPLIED = "applied"
    RENDERED = "rendered"
    """Stacks of an environment without a Kubernetes API: rendered and validated, not applied."""
    VERIFIED = "verified"
    FAILED = "failed"
    NOT_RUN = "not-run"


class DeployResult(StrEnum):
    SUCCESS = "success"
    """Every site applied and verified."""
    FAILED = "failed"
    """A step failed; the report says which, and what was applied before."""
    BLOCKED = "blocked"
    """Policy errors: nothing applied."""
    UNVERIFIED = "unverified"
    """The plan could not cover everything (a host unreachable): nothing applied."""
    DECLINED = "declined"
    """Not confirmed: nothing applied."""
    PLANNED = "planned"
    """--plan-only: the plan, nothing applied."""


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str | None = Field(description="Site the step acts on; null for environment-wide steps.")
    layer: Layer = Field(description="Layer the step acts on.")
    action: str = Field(description="converge, stacks up, render, verify, replication up, lab probe.")
    status: StepStatus = Field(description="applied, rendered, verified, failed or not-run.")
    detail: str = Field(default="", description="What happened, or why it failed.")
    seconds: float = Field(default=0.0, description="How long it took.")
    _t0: float = PrivateAttr(default=0.0)


class DeployReport(BaseModel):
    """What a deploy planned, applied and verified (JSON shape documented in docs/operations.md)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["dualdc-deploy-report"] = Field(default="dualdc-deploy-report", description="Report kind.")
    schema_version: Literal[1] = Field(default=1, description="Version of this JSON shape.")
    environment: str = Field(description="Environment name.")
    sites: list[str] = Field(description="Sites in the order the deploy touches them.")
    generated_at: dt.datetime = Field(description="When the deploy started (UTC).")
    duration_seconds: float = Field(default=0.0, description="How long it took.")
    git: GitInfo = Field(description="The commit deployed.")
    plan_only: bool = Field(default=False, description="True for --plan-only.")
    result: DeployResult = Field(default=DeployResult.FAILED, description="How the deploy ended.")
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

    def finish(self, result: DeployResult, exit_code: int, message: str) -> DeployReport:
        self.result, self.exit_code, self.message = result, exit_code, message
        return self


@dataclass
class DeploySpec:
    topology: Topology
    ledger: Ledger
    site: str | None = None
    yes: bool = False
    plan_only: bool = False
    backend: str | None = None
    progress: Callable[[str], None] = lambda _: None
    on_event: EventSink | None = None
    confirm: Callable[[DeployReport], bool] | None = None
    """Asks the operator; None (no terminal) refuses unless ``yes``."""
    run: Run | None = None
    """The guarded run whose audit record mirrors what is applied."""
    run_options: dict[str, Any] = field(default_factory=dict)


def plan_summary(plan: DriftReport) -> dict[str, Any]:
    """Counts per site and layer (for the audit record and the confirmation)."""
    per_site: dict[str, Counter[str]] = {}
    for item in plan.items():
        if item.layer is Layer.MODEL:
            continue
        per_site.setdefault(item.site or "all", Counter())[item.layer.value] += 1
    hosts = {i.host for i in plan.items() if i.host}
    summary = plan.summary
    model = plan.layer(Layer.MODEL)
    return {
        "pending": {site: dict(counts) for site, counts in sorted(per_site.items())},
        "hosts_changing": len(hosts),
        "policy_errors": len(model.items) if model else 0,
        "unverified": summary.unverified_targets if summary else [],
    }


def _mirror(spec: DeploySpec, report: DeployReport) -> None:
    if spec.run is not None:
        spec.run.applied = list(report.applied)
        spec.run.not_applied = list(report.not_applied)


def new_report(topology: Topology, site: str | None, plan_only: bool) -> DeployReport:
    return DeployReport(
        environment=topology.environment.name,
        sites=sites_of(topology, site),
        generated_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        git=audit.git_state(),
        plan_only=plan_only,
    )


def deploy(spec: DeploySpec, report: DeployReport) -> DeployReport:
    """Plan and (unless plan-only, blocked or declined) apply; fills and returns ``report``.

    Raises :class:`DeployError` when the deploy cannot start, and lets
    :class:`~dualdc.ops.run.Interrupted` through (the report then holds what was applied).
    """
    topology = spec.topology
    t0 = time.monotonic()
    if not spec.plan_only and not spec.yes and spec.confirm is None:
        raise DeployError(
            "no terminal to ask for confirmation on: pass --yes to deploy without asking "
            "(nothing was run or applied)"
        )
    layers = [layer for layer in environment_layers(topology) if layer.per_site]
    kinds = [layer.kind for layer in layers]
    for layer in layers:
        try:
            layer.prepare(topology)
        except LayerUnavailable as exc:
            raise DeployError(str(exc)) from None
    report.not_applied = [f"{site}:{kind.value}" for site in report.sites for kind in kinds]
    for layer in layers:
        report.not_applied += layer.planned_after(topology, spec.site)
    _mirror(spec, report)

    spec.progress("plan: validating the model, then the hosts in check mode and the stacks' preview")
    plan = run_drift(
        DriftRun(
            topology=topology,
            ledger=Ledger([], [], ""),
            site=spec.site,
            backend=spec.backend,
            layers={Layer.MODEL, *kinds},
            progress=spec.progress,
            on_event=spec.on_event,
            run_options=spec.run_options,
        )
    )
    report.plan = plan
    if spec.run is not None:
        spec.run.plan = plan_summary(plan)
    model = plan.layer(Layer.MODEL)
    errors = len(model.items) if model else 0
    unverified = plan.summary.unverified_targets if plan.summary else []
    if spec.plan_only:
        code = 2 if errors else 3 if unverified else 0
        what = f"{len(plan.items()) - errors} pending change(s)"
        note = f"; {errors} policy error(s) would block it" if errors else ""
        note += f"; not planned: {', '.join(unverified)}" if unverified else ""
        return _done(report, t0).finish(
            DeployResult.PLANNED, code, f"plan only: {what}{note}; nothing applied"
        )
    if errors:
        return _done(report, t0).finish(
            DeployResult.BLOCKED,
            2,
            f"{errors} policy error(s) block the deploy (invoke validate shows them); nothing applied",
        )
    if unverified:
        return _done(report, t0).finish(
            DeployResult.UNVERIFIED, 3, f"cannot plan {', '.join(unverified)}; nothing applied"
        )
    if not spec.yes:
        assert spec.confirm is not None  # checked before planning
        if not spec.confirm(report):
            return _done(report, t0).finish(DeployResult.DECLINED, 1, "not confirmed; nothing applied")

    applying = _Deployment(spec, report)
    failed = False
    for site in report.sites:
        if failed:
            for kind in kinds:
                report.steps.append(
                    Step(
                        site=site,
                        layer=kind,
                        action="not touched",
                        status=StepStatus.NOT_RUN,
                        detail="an earlier site failed",
                    )
                )
            continue
        failed = not _apply_site(applying, site, layers)
    # once every site is applied and verified: the database hosts' second converge, the
    # replication stack, the lab's reachability probe (each layer knows its own)
    for layer in environment_layers(topology):
        if failed:
            break
        failed = not layer.apply_after(applying)
    _mirror(spec, report)
    if failed:
        step = next(s for s in reversed(report.steps) if s.status is StepStatus.FAILED)
        where = f"{step.site}: " if step.site else ""
        return _done(report, t0).finish(
            DeployResult.FAILED,
            2,
            f"{where}{step.action} failed; stopped there (applied: {', '.join(report.applied) or 'nothing'})",
        )
    return _done(report, t0).finish(
        DeployResult.SUCCESS, 0, f"applied and verified: {', '.join(report.applied)}"
    )


def _done(report: DeployReport, t0: float) -> DeployReport:
    report.duration_seconds = round(time.monotonic() - t0, 2)
    return report


def _start(report: DeployReport, site: str | None, layer: Layer, action: str) -> Step:
    step = Step(
        site=site, layer=layer, action=action, status=StepStatus.NOT_RUN, detail="started, not finished"
    )
    step._t0 = time.monotonic()
    report.steps.append(step)
    return step


def _end(step: Step, status: StepStatus, detail: str) -> None:
    step.status = status
    step.detail = scrub(detail)
    step.seconds = round(time.monotonic() - step._t0, 2)


def _applied(spec: DeploySpec, report: DeployReport, what: str) -> None:
    if what in report.not_applied:
        report.not_applied.remove(what)
    report.applied.append(what)
    _mirror(spec, report)


@dataclass
class _Deployment:
    """What a layer's apply sees of a running deploy (:class:`dualdc.ops.layer.Deploying`)."""

    spec: DeploySpec
    report: DeployReport

    @property
    def topology(self) -> Topology:
        return self.spec.topology

    @property
    def site(self) -> str | None:
        return self.spec.site

    @property
    def backend(self) -> str | None:
        return self.spec.backend

    @property
    def progress(self) -> Callable[[str], None]:
        return self.spec.progress

    @property
    def on_event(self) -> EventSink | None:
        return self.spec.on_event

    @property
    def run_options(self) -> dict[str, Any]:
        return self.spec.run_options

    def start(self, site: str | None, layer: Layer, action: str) -> Step:
        return _start(self.report, site, layer, action)

    def end(self, step: Step, status: str, detail: str) -> None:
        _end(step, StepStatus(status), detail)

    def applied(self, what: str) -> None:
        _applied(self.spec, self.report, what)


def _apply_site(applying: _Deployment, site: str, layers: list[OpsLayer]) -> bool:
    """Apply each layer to the site, then check the site's drift, which must be clean."""
    spec, report = applying.spec, applying.report
    for layer in layers:
        if not layer.apply_site(applying, site):
            return False
    spec.progress(f"{site}: checking its drift (must be clean)")
    step = _start(report, site, layers[0].kind if layers else Layer.STACKS, "verify")
    check = run_drift(
        DriftRun(
            topology=spec.topology,
            ledger=spec.ledger,
            site=site,
            backend=spec.backend,
            layers={layer.kind for layer in layers},
            progress=spec.progress,
            on_event=spec.on_event,
            run_options=spec.run_options,
        )
    )
    report.verification.append(check)
    if check.exit_code != 0:
        left = [i for i in check.items() if i.status is not ItemStatus.ACKNOWLEDGED]
        what = "; ".join(f"{i.target}: {i.task or i.resource or i.summary}" for i in left[:5])
        unverified = ", ".join(check.summary.unverified_targets) if check.summary else ""
        _end(
            step,
            StepStatus.FAILED,
            f"drift after applying: {what or 'none'}"
            + (f"; not verified: {unverified}" if unverified else ""),
        )
        return False
    _end(step, StepStatus.VERIFIED, check.headline())
    return True


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


def render_deploy_text(report: DeployReport) -> str:
    lines = [
        f"deploy {report.environment} ({', '.join(report.sites)}): {report.result.value.upper()}: "
        f"{report.message}"
    ]
    if report.git.commit:
        lines.append(
            f"commit {report.git.commit[:12]}{' (dirty working tree)' if report.git.dirty else ''}, "
            f"{report.duration_seconds:.1f} s"
        )
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
    if report.plan is not None:
        lines += [
            "",
            "plan (what the deploy found pending before applying):",
            "",
            render_text(report.plan).rstrip(),
        ]
    return "\n".join(lines) + "\n"


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
    mark = {DeployResult.SUCCESS: "✅", DeployResult.PLANNED: "📝", DeployResult.DECLINED: "⏹️"}.get(
        report.result, "❌"
    )
    lines = [
        f"## {mark} Deploy {report.result.value}: `{report.environment}` ({', '.join(report.sites)})",
        "",
        report.message,
        "",
    ]
    if report.git.commit:
        lines += [
            f"commit `{report.git.commit[:12]}`{' (dirty)' if report.git.dirty else ''} · "
            f"{report.duration_seconds:.0f} s",
            "",
        ]
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
