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
from typing import Any

from dualdc.base.exitcodes import ExitCode, decide
from dualdc.base.redact import scrub
from dualdc.model import Layer, Topology
from dualdc.ops import audit
from dualdc.ops.ack import Ledger
from dualdc.ops.drift import DriftRun, EventSink, run_drift, sites_of
from dualdc.ops.layer import LayerUnavailable, OpsLayer, environment_layers
from dualdc.ops.run import Run
from dualdc.reports.deploy import DeployReport, Step, StepStatus
from dualdc.reports.drift import (
    DriftReport,
    ItemStatus,
)
from dualdc.reports.header import Outcome


class DeployError(Exception):
    """The deploy cannot start (exit 1, nothing applied)."""


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
        code = decide(findings=bool(errors), unverified=bool(unverified))
        what = f"{len(plan.items()) - errors} pending change(s)"
        note = f"; {errors} policy error(s) would block it" if errors else ""
        note += f"; not planned: {', '.join(unverified)}" if unverified else ""
        return _done(report, t0).finish(
            Outcome.PLANNED, code, f"plan only: {what}{note}; nothing applied"
        )
    if errors:
        return _done(report, t0).finish(
            Outcome.BLOCKED,
            ExitCode.FINDINGS,
            f"{errors} policy error(s) block the deploy (invoke validate shows them); nothing applied",
        )
    if unverified:
        return _done(report, t0).finish(
            Outcome.UNVERIFIED, ExitCode.UNVERIFIED,
            f"cannot plan {', '.join(unverified)}; nothing applied",
        )
    if not spec.yes:
        assert spec.confirm is not None  # checked before planning
        if not spec.confirm(report):
            return _done(report, t0).finish(
                Outcome.DECLINED, ExitCode.INPUT, "not confirmed; nothing applied"
            )

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
            Outcome.FAILED,
            ExitCode.FINDINGS,
            f"{where}{step.action} failed; stopped there (applied: {', '.join(report.applied) or 'nothing'})",
        )
    return _done(report, t0).finish(
        Outcome.SUCCESS, ExitCode.CLEAN, f"applied and verified: {', '.join(report.applied)}"
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
