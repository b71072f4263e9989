"""``invoke drift``: compare what runs with what the model declares, layer by layer, in one report.

The layers are those the environment declares (``environment.layers``), each one
:class:`~dualdc.ops.layer.OpsLayer` of the registry (:mod:`dualdc.ops.layer`), checked in turn:

- **model** (here): the policy pack (:func:`dualdc.policy.run_policy`); an unwaived error is
  drift of the model against regulation.
- **hosts** (here): the site playbook in check and diff mode through :mod:`dualdc.ansible`;
  every task that would change something is one item (host, task, the file or service, the
  diff); tasks check mode could not evaluate are listed as check-mode coverage; a host that
  cannot be reached is *unverified*, and every other host is still checked.
- **stacks**: :mod:`dualdc.ops.stacklayer` (Pulumi preview with refresh and
  expect-no-changes; the lab renders and says so).
- **data**: :mod:`dualdc.ops.datalayer` (the host databases' replication and backups).
- **lab** (the lab twin only): :mod:`dualdc.ops.labprobe`, the reachability probe.

Then the drift-ack ledger (:mod:`dualdc.ops.ack`) marks acknowledged items, and
:meth:`DriftReport.finalize` decides the exit code.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dualdc.ansible import PlaybookRun, RunError, RunResult, Status, TaskResult, run_playbook
from dualdc.base.redact import scrub
from dualdc.flows import primary_interface
from dualdc.model import Layer, Source, Topology
from dualdc.ops import audit
from dualdc.ops.ack import Ledger
from dualdc.ops.layer import Checked, CheckSpec, Deploying, OpsLayer, environment_layers, register
from dualdc.ops.run import deferred_interrupts
from dualdc.policy import run_policy
from dualdc.reports.drift import (
    CheckedTarget,
    CoverageGap,
    DriftItem,
    DriftReport,
    ItemStatus,
    LayerReport,
    LayerStatus,
    TargetStatus,
)

Progress = Callable[[str], None]
EventSink = Callable[[dict[str, Any], TaskResult | None], None]


def _quiet(_: str) -> None:
    return None


def sites_of(topology: Topology, site: str | None) -> list[str]:
    """The sites a run covers, in deploy order (then any site the order leaves out)."""
    return [site] if site else topology.deploy_order()


# --------------------------------------------------------------------------- model


def _source(loc: Source | None) -> str | None:
    """``file:line`` of a declaration (for CI annotations), or None."""
    if loc is None:
        return None
    return f"{loc.file}:{loc.line}" if loc.line else loc.file



def model_layer(topology: Topology) -> LayerReport:
    """The policy pack as a drift layer: unwaived errors are items. Raises TopologyError on bad input."""
    report = run_policy(topology)
    failing = report.failing()
    layer = LayerReport(layer=Layer.MODEL, status=LayerStatus.DRIFT if failing else LayerStatus.CLEAN)
    counts = report.counts()
    layer.note = (
        f"policy pack: {len(report.results)} rules; {counts['error']} error(s), "
        f"{counts['warning']} warning(s), {counts['advisory']} advisory(ies), {counts['waived']} waived "
        "(invoke validate shows them all)"
    )
    failing_by_rule: dict[str, int] = {}
    first_source: dict[str, str | None] = {}
    for finding in failing:
        failing_by_rule[finding.rule] = failing_by_rule.get(finding.rule, 0) + 1
        first_source.setdefault(finding.rule, _source(finding.location))
        loc = finding.location
        where = f"{loc.file}:{loc.line}: " if loc else ""
        layer.items.append(
            DriftItem.found(
                Layer.MODEL,
                f"model:{finding.rule}/{finding.target}",
                "policy",
                f"{where}{finding.rule} {finding.target}: {finding.message}",
                rule=finding.rule,
                source=_source(loc),
            )
        )
    for result in report.results:
        bad = failing_by_rule.get(result.rule.id, 0)
        layer.checked.append(
            CheckedTarget(
                layer=Layer.MODEL,
                name=result.rule.id,
                status=TargetStatus.DRIFT if bad else TargetStatus.CLEAN,
                detail=result.rule.title,
                counts={"findings": len(result.findings), "failing": bad},
                source=first_source.get(result.rule.id),
            )
        )
    for item in layer.items:
        item.target = item.rule or "policy"
    return layer


# --------------------------------------------------------------------------- hosts


def task_label(result: TaskResult) -> str:
    """A task as Ansible prints it: ``role : task``."""
    return f"{result.role} : {result.task}" if result.role else result.task


def _real_path(path: str | None) -> bool:
    """An absolute path on the host, not one of Ansible's temporary copies."""
    return path is not None and path.startswith("/") and "/.ansible/tmp/" not in path


def host_file(task: TaskResult) -> str | None:
    """The file on the host a task's difference is in: its target, else the live side of its diff."""
    if _real_path(task.target):
        return task.target
    for diff in task.diff:
        if _real_path(diff.before_header):
            return diff.before_header
    return None


@dataclass
class HostLayer:
    layer: LayerReport
    coverage: list[CoverageGap] = field(default_factory=list)
    run: RunResult | None = None


def host_layer_from_run(topology: Topology, sites: list[str], result: RunResult) -> HostLayer:
    """Turn a check-mode run into the hosts layer: per host, per task, with the diff."""
    layer = LayerReport(
        layer=Layer.HOSTS,
        status=LayerStatus.CLEAN,
        note=f"playbooks/site.yml in check and diff mode (run {result.ident}, "
        f"{result.seconds:.1f} s, forks {result.options.forks}, "
        f"strategy {result.options.strategy}); artifacts in {result.artifacts_dir}",
    )
    hosts = [h for h in topology.hosts if h.site in sites]
    by_host: dict[str, list[TaskResult]] = {}
    for task in result.tasks:
        by_host.setdefault(task.host, []).append(task)
    coverage: list[CoverageGap] = []
    for host in hosts:
        tasks = by_host.get(host.name, [])
        summary = result.hosts.get(host.name)
        segment = primary_interface(topology, host)
        counts = {}
        if summary is not None:
            counts = {
                "ok": summary.ok,
                "changed": summary.changed,
                "skipped": summary.skipped,
                "failed": summary.failed,
                "unreachable": summary.unreachable,
            }
        items: dict[str, DriftItem] = {}
        for task in tasks:
            if task.check_mode_skipped:
                coverage.append(
                    CoverageGap(
                        host=host.name,
                        task=task_label(task),
                        reason=scrub(task.skip_reason or task.msg or "skipped in check mode"),
                    )
                )
            if task.status is not Status.CHANGED or task.handler:
                continue
            label = task_label(task)
            item_id = f"host:{host.name}/{label}"
            diff = "".join(d.unified if d.unified.endswith("\n") else d.unified + "\n" for d in task.diff)
            target = task.target
            file = host_file(task)
            is_file = file is not None
            what = f"would change {file or target}" if (file or target) else "would change"
            if item_id in items:
                items[item_id].diff += scrub(diff)
                continue
            items[item_id] = DriftItem.found(
                Layer.HOSTS,
                item_id,
                host.name,
                f"{label} {what}",
                site=host.site,
                host=host.name,
                task=label,
                action=task.action,
                file=file,
                segments=[segment],
                diff=scrub(diff),
            )
            if target and not is_file:
                items[item_id].summary = f"{label}: {task.action.rsplit('.', 1)[-1]} {target} would change"
        layer.items.extend(items.values())
        failed = [t for t in tasks if t.status is Status.FAILED and not t.ignored]
        unreachable = [t for t in tasks if t.status is Status.UNREACHABLE]
        if summary is None:
            status = TargetStatus.NOT_CHECKED
            detail = scrub(result.error or "not in the run's recap: the run did not reach it")
        elif summary.unreachable or unreachable:
            status = TargetStatus.UNREACHABLE
            detail = scrub(unreachable[0].msg if unreachable else "unreachable")
        elif failed:
            status = TargetStatus.FAILED
            detail = "; ".join(scrub(f"{task_label(t)}: {t.msg}")[:400] for t in failed[:3])
        else:
            status = TargetStatus.DRIFT if items else TargetStatus.CLEAN
            detail = ""
        layer.checked.append(
            CheckedTarget(
                layer=Layer.HOSTS,
                name=host.name,
                site=host.site,
                status=status,
                detail=detail,
                counts=counts,
                source=_source(host.location),
            )
        )
    layer.status = _layer_status(layer)
    return HostLayer(layer, coverage, result)


def _one_run(
    topology: Topology,
    sites: list[str],
    site: str | None,
    *,
    on_event: EventSink | None,
    cancel: Callable[[], bool] | None,
    run_options: dict[str, Any],
) -> HostLayer:
    run = PlaybookRun.of(topology, site=site, check=True, diff=True, cancel=cancel, **run_options)
    try:
        result = run_playbook(run, on_event=on_event)
    except (RunError, OSError) as exc:
        layer = LayerReport(
            layer=Layer.HOSTS, status=LayerStatus.UNVERIFIED, note=f"cannot run the playbook: {exc}"
        )
        for host in topology.hosts:
            if host.site in sites:
                layer.checked.append(
                    CheckedTarget(
                        layer=Layer.HOSTS,
                        name=host.name,
                        site=host.site,
                        status=TargetStatus.NOT_CHECKED,
                        detail=str(exc),
                        source=_source(host.location),
                    )
                )
        return HostLayer(layer)
    return host_layer_from_run(topology, sites, result)


def _merge(parts: list[HostLayer]) -> HostLayer:
    layer = LayerReport(
        layer=Layer.HOSTS,
        status=LayerStatus.CLEAN,
        note="; ".join(p.layer.note for p in parts if p.layer.note),
    )
    merged = HostLayer(layer)
    for part in parts:
        layer.checked.extend(part.layer.checked)
        layer.items.extend(part.layer.items)
        merged.coverage.extend(part.coverage)
    layer.status = _layer_status(layer)
    return merged


def host_layer(
    topology: Topology,
    sites: list[str],
    site: str | None,
    *,
    on_event: EventSink | None = None,
    cancel: Callable[[], bool] | None = None,
    run_options: dict[str, Any] | None = None,
    parallel_sites: bool = True,
) -> HostLayer:
    """Run the hosts' check and build the layer. A run that cannot start leaves its hosts not checked.

    With several sites, each site's hosts are checked by their own ansible-playbook at the same
    time (``parallel_sites``): Ansible's controller is one Python process per run, and one per
    site puts every core to work. The same playbook, tasks and hosts are checked either way.
    """
    options = dict(run_options or {})
    if site is not None or len(sites) < 2 or not parallel_sites:
        return _one_run(topology, sites, site, on_event=on_event, cancel=cancel, run_options=options)
    lock = threading.Lock()
    started = {site: threading.Event() for site in sites}

    def sink(site_name: str) -> EventSink:
        def serialised(event: dict[str, Any], result: TaskResult | None) -> None:
            started[site_name].set()
            if on_event is not None:
                with lock:
                    on_event(event, result)

        return serialised

    with ThreadPoolExecutor(max_workers=len(sites), thread_name_prefix="dualdc-hosts") as pool:
        futures = []
        for name in sites:
            futures.append(
                pool.submit(
                    _one_run, topology, [name], name, on_event=sink(name), cancel=cancel, run_options=options
                )
            )
            # ansible-runner prunes old artifact folders when a run starts: let each run get past
            # that (its first event) before the next one starts, so they never prune under each other.
            while not started[name].wait(0.2) and not futures[-1].done():
                pass
        parts = [f.result() for f in futures]
    return _merge(parts)


# --------------------------------------------------------------------------- the two layers


class ModelLayer(OpsLayer):
    """The policy pack: checked, never applied (a deploy with policy errors is blocked)."""

    kind = Layer.MODEL

    def note(self, spec: CheckSpec) -> str:
        return "model: running the policy pack"

    def check(self, spec: CheckSpec) -> Checked:
        return Checked(model_layer(spec.topology))


def database_hosts(topology: Topology) -> list[str]:
    """The db and backup hosts of the host databases, which the deploy converges once more."""
    names: set[str] = set()
    for svc in topology.host_databases():
        assert svc.database is not None
        names.update(h for _, h, _ in svc.database.placements())
        repo = topology.repository_host(svc)
        if repo is not None:
            names.add(repo.name)
    return sorted(names)


def _converge(deploy: Deploying, step: Any, **options: Any) -> RunResult | None:
    """Run the site playbook for a deploy step; None (the step failed) when it cannot start."""
    run = PlaybookRun.of(deploy.topology, diff=True, **options, **deploy.run_options)
    try:
        with deferred_interrupts() as cancelled:
            run.cancel = cancelled
            return run_playbook(run, on_event=deploy.on_event)
    except RunError as exc:
        deploy.end(step, "failed", f"cannot run the playbook: {exc}")
        return None


def _problems(result: RunResult) -> list[str]:
    """The first failed tasks and every unreachable host of a run, one line each."""
    found = [f"{t.host}: {task_label(t)}: {t.msg}"[:300] for t in result.failed_tasks[:5]]
    return found + [f"{h}: unreachable" for h in result.unreachable_hosts]


def _counts(result: RunResult) -> str:
    return f"{len(result.hosts)} host(s), {len(result.changed_tasks)} change(s)"


class HostsLayer(OpsLayer):
    """The host roles: checked in check and diff mode, applied by converging each site's hosts."""

    kind = Layer.HOSTS
    per_site = True

    def note(self, spec: CheckSpec) -> str:
        count = sum(1 for h in spec.topology.hosts if h.site in spec.sites)
        return f"hosts: check and diff mode on {count} hosts"

    def check(self, spec: CheckSpec) -> Checked:
        # ansible-runner polls the cancel callback and ends the playbook's processes itself;
        # a SIGINT/SIGTERM is raised as Interrupted as soon as it has.
        with deferred_interrupts() as cancelled:
            hosts = host_layer(spec.topology, spec.sites, spec.site, on_event=spec.on_event,
                               cancel=cancelled, run_options=spec.run_options)
        return Checked(hosts.layer, hosts.coverage)

    def apply_site(self, deploy: Deploying, site: str) -> bool:
        deploy.progress(f"{site}: converging its hosts")
        step = deploy.start(site, Layer.HOSTS, "converge")
        result = _converge(deploy, step, site=site, check=False)
        if result is None:
            return False
        if result.unreachable_hosts or result.failed_tasks or not result.completed:
            problems = _problems(result) + ([result.error[:500]] if result.error else [])
            touched = sorted({t.host for t in result.changed_tasks})
            where = f" (changes were made on {', '.join(touched)})" if touched else " (nothing was changed)"
            deploy.end(step, "failed", "; ".join(problems) + where)
            return False
        deploy.end(step, "applied", f"{_counts(result)}; run {result.ident}")
        deploy.applied(f"{site}:hosts")
        return True

    def apply_after(self, deploy: Deploying) -> bool:
        """Converge the database hosts again once every site's primaries are up, then check them.

        Each site's converge brings up the primaries it holds; a standby or a repository whose
        primary is at a later site waits (its role says so and changes nothing). This pass
        clones those standbys and creates those stanzas, and a check-mode run must then find
        nothing left to change on these hosts.
        """
        names = database_hosts(deploy.topology)
        if deploy.site is not None or not names:
            return True
        deploy.progress(f"databases: standbys and backup repositories on {len(names)} host(s)")
        for check in (False, True):
            step = deploy.start(None, Layer.HOSTS, "verify databases" if check else "converge databases")
            result = _converge(deploy, step, limit=",".join(names), check=check)
            if result is None:
                return False
            problems = _problems(result)
            if not result.completed and result.error:
                problems.append(result.error[:500])
            if check and result.changed_tasks:
                problems += [f"{t.host}: {task_label(t)} would change" for t in result.changed_tasks[:5]]
            if problems:
                deploy.end(step, "failed", "; ".join(problems))
                return False
            deploy.end(step, "verified" if check else "applied", f"{_counts(result)}; run {result.ident}")
        return True


register(ModelLayer())
register(HostsLayer())


# --------------------------------------------------------------------------- whole report


def _layer_status(layer: LayerReport) -> LayerStatus:
    if layer.status is LayerStatus.NOT_COMPARED and not layer.items:
        bad = any(
            t.status in (TargetStatus.FAILED, TargetStatus.NOT_CHECKED, TargetStatus.UNREACHABLE)
            for t in layer.checked
        )
        return LayerStatus.UNVERIFIED if bad else LayerStatus.NOT_COMPARED
    if any(i.status is not ItemStatus.ACKNOWLEDGED for i in layer.items):
        return LayerStatus.DRIFT
    if any(
        t.status in (TargetStatus.FAILED, TargetStatus.NOT_CHECKED, TargetStatus.UNREACHABLE)
        for t in layer.checked
    ):
        return LayerStatus.UNVERIFIED
    return LayerStatus.CLEAN


def apply_acknowledgements(report: DriftReport, ledger: Ledger, today: dt.date) -> None:
    """Mark acknowledged items and the targets whose every difference is acknowledged."""
    report.acknowledgements = ledger.apply(report.items(), today)
    for layer in report.layers:
        for target in layer.checked:
            if target.status is not TargetStatus.DRIFT:
                continue
            mine = [i for i in layer.items if i.target == target.name]
            if mine and all(i.status is ItemStatus.ACKNOWLEDGED for i in mine):
                target.status = TargetStatus.ACKNOWLEDGED
        layer.status = _layer_status(layer)


@dataclass
class DriftRun:
    """What ``invoke drift`` (and the deploy's verification) asks for."""

    topology: Topology
    ledger: Ledger
    site: str | None = None
    backend: str | None = None
    layers: set[Layer] | None = None
    """Restrict to these layers (default: every layer the environment declares)."""
    progress: Progress = _quiet
    on_event: EventSink | None = None
    run_options: dict[str, Any] = field(default_factory=dict)


def run_drift(spec: DriftRun) -> DriftReport:
    """Check every layer and return the finalized report (exit code in ``report.exit_code``)."""
    topology = spec.topology
    t0 = time.monotonic()
    sites = sites_of(topology, spec.site)
    wanted = None if spec.layers is None else set(spec.layers)
    report = DriftReport(
        environment=topology.environment.name,
        sites=sites,
        generated_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        git=audit.git_state(),
    )
    check = CheckSpec(topology=topology, sites=sites, site=spec.site, backend=spec.backend,
                      progress=spec.progress, on_event=spec.on_event, run_options=spec.run_options)
    for layer in environment_layers(topology, wanted):
        note = layer.note(check)
        if note:
            spec.progress(note)
        checked = layer.check(check)
        report.layers.append(checked.layer)
        report.coverage += checked.coverage
    apply_acknowledgements(report, spec.ledger, topology.today())
    if report.coverage:
        report.messages.append(
            f"{len(report.coverage)} task run(s) could not be evaluated in check mode "
            "(listed under check-mode coverage)"
        )
    report.duration_seconds = round(time.monotonic() - t0, 2)
    return report.finalize()
