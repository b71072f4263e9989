"""The DR tasks: ``dr.status`` (the health of every host database's replication and backups)."""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Callable
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from dualdc import cli, drevidence
from dualdc.databases import current_primary
from dualdc.lab.config import ssh_dir
from dualdc.model import Service, Topology
from dualdc.ops import audit, drdrill, drrestore, drstate, drstatus, drswitch
from dualdc.ops.lock import current_host, current_user
from dualdc.reports.header import Outcome
from dualdc.tasks import options
from dualdc.tasks.options import guarded

ENV_HELP = options.HELP["env"]
RENDERERS = {"text": drstatus.render_text, "json": drstatus.render_json, "markdown": drstatus.render_markdown}


@task(
    help={
        "env": "Environment under inventories/ (default: lab).",
        "service": "Only this service's database (default: every host database).",
        "format": "text (people), json (machines) or markdown (a PR or ticket).",
    }
)
def status(c: Context, env: str | None = None, service: str = "", format: str = "text") -> None:
    """Each host database's DR health from PostgreSQL's views and pgBackRest, against the model.

    For every database: its primary, each standby's state (streaming, catching up, down), replay
    lag in bytes and seconds, the WAL its slot retains, WAL archiving, and the age and size of
    the last full and last backup at the other site; lag is held against the RPO, backup age
    against the schedule. Exit 0 healthy, 2 a target missed, 3 something unreachable (a lab
    that is down), 1 bad input.
    """
    env = options.env_of(c, env)
    if format not in RENDERERS:
        raise cli.input_error(f"--format must be one of {', '.join(RENDERERS)}, not {format!r}")
    topology = cli.load(env)
    names = [s.name for s in topology.host_databases()]
    if service and service not in names:
        raise cli.input_error(
            f"service {service!r} has no host database in {env} "
            f"(host databases: {', '.join(names) or 'none'})"
        )
    if not names:
        raise Exit(f"{env} has no host database (database.platform: hosts): nothing to report", code=0)
    try:
        drstate.load_and_apply(topology)
    except drstate.StateError as exc:
        raise cli.input_error(str(exc)) from None
    try:
        report = drstatus.dr_status(topology, service or None)
    except drstatus.LabDown as exc:
        raise Exit(f"error: {exc}", code=3) from None
    cli.write_output(RENDERERS[format](report), None)
    if report.exit_code:
        raise Exit(code=report.exit_code)


# --- switchover, failover, failback -------------------------------------------------------------

def _services(topology: Topology, service: str, all_: bool) -> list[Service]:
    names = [s.name for s in topology.host_databases()]
    if bool(service) == all_:
        raise cli.input_error("give --service NAME or --all")
    if service and service not in names:
        raise cli.input_error(
            f"service {service!r} has no host database in {topology.environment.name} "
            f"(host databases: {', '.join(names) or 'none'})"
        )
    return [s for s in topology.host_databases() if all_ or s.name == service]


def _site(topology: Topology, to: str) -> str:
    sites = [s.name for s in topology.sites]
    if to not in sites:
        raise cli.input_error(f"--to must name a site ({', '.join(sites)}), not {to!r}")
    return to


def _command_line(name: str, env: str, **flags: str | bool) -> str:
    parts = ["invoke", f"dr.{name}", "--env", env]
    for key, value in flags.items():
        if value is True:
            parts.append(f"--{key.replace('_', '-')}")
        elif value:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def run_dr(env: str, operation: str, services: list[str] | None, all_: bool, *,
           act: Callable[[drswitch.Pair], drswitch.Outcome], options: dict[str, str | bool | None],
           node: drswitch.Node | None = None, topology: Topology | None = None) -> list[drswitch.Outcome]:
    """Load, lock, act on each service's pair, record the state, the audit line and the evidence."""
    topology = topology or cli.load(env)
    chosen = _services(topology, (services or [""])[0], all_)
    try:
        state = drstate.load_and_apply(topology)
    except drstate.StateError as exc:
        raise cli.input_error(str(exc)) from None
    if node is None:
        if topology.environment.lab and not (ssh_dir(env) / "config").is_file():
            raise Exit(f"error: the lab twin of {env!r} is not up: run invoke lab.up, then invoke deploy",
                       code=3)
        node = drswitch.SshNode(drstatus.ssh_runner(topology))
    outcomes: list[drswitch.Outcome] = []
    sites = [s.name for s in topology.sites]
    line = _command_line(operation, env, **{k: v for k, v in options.items() if isinstance(v, (str, bool))})
    after = (f"the pair is safe (a primary is fenced before any promotion); run the same command "
             f"again to finish; the state is in {drstate.state_path(env)}")
    with guarded(env, f"dr.{operation}", line, sites, options, after_interrupt=after) as run:
        failures: list[drswitch.DrError] = []
        for svc in chosen:
            pair = drswitch.Pair(topology, svc, node, state, save=drstate.save,
                                 progress=cli.console.print, options=drswitch.Options())
            try:
                outcome = act(pair)
            except drswitch.DrError as exc:
                failures.append(exc)
                cli.console.print(f"[red]{exc}[/red]")
                run.not_applied.append(svc.name)
                continue
            outcomes.append(outcome)
            (run.applied if outcome.changed else run.notes).append(outcome.message)
            cli.console.print(outcome.message)
        run.plan = {"services": [s.name for s in chosen]}
        if failures:
            code = max(f.code for f in failures)
            result = {1: Outcome.ERROR, 3: Outcome.UNVERIFIED}.get(code, Outcome.FAILED)
            run.finish(result, code, "; ".join(str(f) for f in failures)[:2000])
            raise Exit(code=code)
        run.finish(Outcome.SUCCESS, 0, "; ".join(o.message for o in outcomes)[:2000])
    return outcomes


SERVICE_HELP = "The service whose host database to act on (or --all)."
ALL_HELP = "Every host database of the environment."


@task(help={"env": ENV_HELP, "service": SERVICE_HELP, "all": ALL_HELP,
            "to": "The site whose standby becomes primary."})
def switchover(
    c: Context, env: str | None = None, service: str = "", all: bool = False, to: str = ""
) -> None:
    """Planned switchover with no data loss: fence the primary, wait for the standby, promote it.

    The primary is shut down cleanly (sessions refused, nothing acknowledged lost); the standby at
    --to replays its last WAL position and is promoted; the old primary starts as its standby. It
    refuses, with nothing changed, when the standby lags beyond the bound, is unreachable, or the
    service is not replicated to --to. Exit 0 done (or already so), 1 bad input, 2 refused or a
    step failed, 3 a host unreachable. Run it again after an interruption to finish.
    """
    env = options.env_of(c, env)
    topology = cli.load(env)
    site = _site(topology, to)
    run_dr(env, "switchover", [service], all, act=lambda p: p.switchover(site),
           options={"service": service or None, "all": all, "to": to}, topology=topology)


@task(help={"env": ENV_HELP, "service": SERVICE_HELP, "all": ALL_HELP,
            "to": "The site whose standby is promoted (the surviving site)."})
def failover(
    c: Context, env: str | None = None, service: str = "", all: bool = False, to: str = ""
) -> None:
    """Unplanned failover: promote the standby at --to and fence the old primary for good.

    The old primary is stopped with a recovery signal when it can be reached; when it cannot, it is
    recorded as fenced (a converge leaves it stopped, and its start guard brings it up read-only on
    return). Reports the data-loss window. Exit codes as dr.switchover.
    """
    env = options.env_of(c, env)
    topology = cli.load(env)
    site = _site(topology, to)
    run_dr(env, "failover", [service], all, act=lambda p: p.failover(site),
           options={"service": service or None, "all": all, "to": to}, topology=topology)


@task(help={"env": ENV_HELP, "service": SERVICE_HELP, "all": ALL_HELP})
def failback(c: Context, env: str | None = None, service: str = "", all: bool = False) -> None:
    """Rebuild every fenced or non-streaming host as a standby of the current primary (a fresh clone).

    Then every pair is protected again; switch back with dr.switchover if wanted.
    Exit codes as dr.switchover.
    """
    env = options.env_of(c, env)
    run_dr(env, "failback", [service], all, act=lambda p: p.failback(),
           options={"service": service or None, "all": all})


dr_ns = Collection("dr")
dr_ns.add_task(status)
dr_ns.add_task(switchover)
dr_ns.add_task(failover)
dr_ns.add_task(failback)


# --- drill and restore test -----------------------------------------------------------------------

def _record(kind: str, env: str, scenario: str, services: list[Service], started: dt.datetime, *,
            phases: list[dict[str, Any]], measures: list[dict[str, Any]], checks: list[dict[str, Any]],
            notes: list[str], sources: list[str]) -> drevidence.Record:
    git = audit.git_state()
    record = drevidence.Record(
        kind=kind, scenario=scenario, environment=env, services=[s.name for s in services], started=started,
        finished=dt.datetime.now(dt.UTC), commit=git.commit, dirty=git.dirty, user=current_user(),
        host=current_host(), phases=[drevidence.Phase(**p) for p in phases],
        measures=[drevidence.Measure(**m) for m in measures], checks=[drevidence.Check(**c) for c in checks],
        sources=sources, notes=notes,
        passed=bool(checks) and all(c["passed"] for c in checks) and all(m["met"] for m in measures),
    )
    for path in drevidence.write(record):
        cli.console.print(f"evidence: {path}")
    return record


def _plan(topology: Topology, services: list[Service], scenario: str) -> str:
    lines = [f"dr.drill --scenario {scenario} on {topology.environment.name} would:"]
    for svc in services:
        primary = current_primary(topology, svc)
        site = topology.host(primary).site
        peer = topology.dr_peer(site)
        step = {"planned": f"switch over {primary} to its standby at {peer}, then back",
                "site-down": f"take {site} down, fail over to {peer}, restore {site}, fail back, switch back",
                "link-cut": f"cut every inter-site link, fail over to {peer}, restore the links, fail back, "
                            "switch back"}[scenario]
        lines.append(f"  {svc.name}: write synthetic transfers to {primary}; {step}; measure RTO/RPO "
                     f"(targets {svc.rto_minutes} min / {svc.rpo_minutes} min)")
    return "\n".join(lines) + "\n"


@task(help={"env": ENV_HELP,
            "scenario": "planned (switchover), site-down (a site fails) or link-cut (both links).",
            "service": SERVICE_HELP, "all": ALL_HELP,
            "execute": "Outside the lab twin, really run it (without: print the plan, change nothing)."})
def drill(c: Context, env: str | None = None, scenario: str = "", service: str = "", *, all: bool = False,
          execute: bool = False) -> None:
    """Rehearse a site takeover: workload, fault, failover, RTO/RPO, consistency, failback, evidence.

    On the lab twin it runs for real; elsewhere it prints the plan unless --execute is given (and
    only the planned scenario can run outside the lab: faults come from lab.fault). Exit 0 every
    target met, 2 one missed (RTO, RPO, consistency, two writable primaries), 1 bad input, 3 a host
    unreachable.
    """
    env = options.env_of(c, env)
    if scenario not in drdrill.SCENARIOS:
        raise cli.input_error(f"--scenario must be one of {', '.join(drdrill.SCENARIOS)}, not {scenario!r}")
    topology = cli.load(env)
    chosen = _services(topology, service, all)
    try:
        state = drstate.load_and_apply(topology)
    except drstate.StateError as exc:
        raise cli.input_error(str(exc)) from None
    if not topology.environment.lab:
        cli.write_output(_plan(topology, chosen, scenario), None)
        if not execute:
            cli.console.print("nothing changed (give --execute to run it)")
            return
        if scenario != "planned":
            raise cli.input_error(f"--scenario {scenario} injects its fault with lab.fault: only the lab "
                                  "twin can run it; outside the lab only 'planned' runs")
    elif not (ssh_dir(env) / "config").is_file():
        raise Exit(f"error: the lab twin of {env!r} is not up: run invoke lab.up, then invoke deploy", code=3)
    node = drswitch.SshNode(drstatus.ssh_runner(topology))
    started = dt.datetime.now(dt.UTC)
    line = _command_line("drill", env, scenario=scenario, service=service, all=all, execute=execute)
    after = ("no two primaries were writable at any step (fence before promote); run dr.status, then "
             "dr.failback and dr.switchover to put the pairs back")
    chosen_options: dict[str, str | bool | None] = {"scenario": scenario, "service": service or None,
                                                    "all": all}
    with guarded(env, "dr.drill", line, [s.name for s in topology.sites], chosen_options,
                 after_interrupt=after) as run:
        def pair(svc: Service) -> drswitch.Pair:
            return drswitch.Pair(topology, svc, node, state, save=drstate.save,
                                 progress=cli.console.print, options=drswitch.Options())

        try:
            result = drdrill.drill(topology, chosen, scenario, pair, cli.console.print)
        except (drswitch.DrError, RuntimeError) as exc:
            code = getattr(exc, "code", 2)
            _record("drill", env, scenario, chosen, started, phases=[], measures=[],
                    checks=[{"name": "completed", "service": None, "passed": False,
                             "detail": str(exc)[:500]}],
                    notes=[], sources=[drevidence.SOURCES["drill"], drevidence.SOURCES["rto"]])
            run.finish(Outcome.FAILED if code != 3 else Outcome.UNVERIFIED, code, str(exc)[:2000])
            raise Exit(f"dr.drill: {exc}", code=code) from None
        record = _record("drill", env, scenario, chosen, started, phases=result.phases,
                         measures=result.measures, checks=result.checks, notes=result.notes,
                         sources=[drevidence.SOURCES["drill"], drevidence.SOURCES["rto"]])
        for m in result.measures:
            cli.console.print(
                f"{m['service']}: RTO {m['rto_seconds']} s (target {m['rto_target_seconds']} s), "
                f"lost {m['rpo_lost_commits']} commits over {m['rpo_window_seconds']} s "
                f"(RPO {m['rpo_target_seconds']} s): {'met' if m['met'] else 'MISSED'}")
        for ch in result.checks:
            if not ch["passed"]:
                cli.console.print(f"[red]check {ch['name']} {ch['service'] or ''}: {ch['detail']}[/red]")
        run.plan = {"scenario": scenario, "services": [s.name for s in chosen]}
        if not record.passed:
            run.finish(Outcome.DRIFT, 2, "a target was missed")
            raise Exit(f"dr.drill {scenario}: a target was missed (see the evidence record)", code=2)
        run.finish(Outcome.SUCCESS, 0, f"drill {scenario} passed")
        cli.console.print(f"dr.drill {scenario}: every target met")


@task(name="restore-test",
      help={"env": ENV_HELP, "service": "Only this service's database (default: every one)."})
def restore_test(c: Context, env: str | None = None, service: str = "") -> None:
    """Restore the latest backup into a scratch instance on the backup host and check it against the source.

    pgbackrest verify, restore into a scratch folder (the repository is only read), a scratch
    PostgreSQL on a Unix socket with archiving off, row counts and an md5 of the workload's tables
    against the running primary, then the scratch instance is removed. Exit 0 passed, 2 a check
    failed, 1 bad input, 3 a host unreachable.
    """
    env = options.env_of(c, env)
    topology = cli.load(env)
    chosen = _services(topology, service, not service)
    try:
        drstate.load_and_apply(topology)
    except drstate.StateError as exc:
        raise cli.input_error(str(exc)) from None
    if topology.environment.lab and not (ssh_dir(env) / "config").is_file():
        raise Exit(f"error: the lab twin of {env!r} is not up: run invoke lab.up, then invoke deploy", code=3)
    runner = drstatus.ssh_runner(topology)
    started = dt.datetime.now(dt.UTC)
    line = _command_line("restore-test", env, service=service)
    with guarded(env, "dr.restore-test", line, [s.name for s in topology.sites], {"service": service or None},
                 after_interrupt="run it again (the scratch folder is replaced)") as run:
        phases, checks, measures, code = [], [], [], 0
        for svc in chosen:
            try:
                res = drrestore.restore_test(topology, svc, runner, cli.console.print)
            except drrestore.RestoreError as exc:
                checks.append({"name": "restore", "service": svc.name, "passed": False,
                               "detail": str(exc)})
                code = max(code, exc.code)
                cli.console.print(f"[red]{exc}[/red]")
                continue
            phases += [{**p, "name": f"{svc.name}: {p['name']}"} for p in res.phases]
            checks += res.checks
            measures.append({"service": svc.name, "tier": svc.tier, "seconds": res.seconds,
                             "met": res.passed})
            cli.console.print(f"{svc.name}: backup {res.backup} restored on {res.repo_host} in "
                              f"{res.seconds} s: {'passed' if res.passed else 'FAILED'}")
        record = _record("restore-test", env, "", chosen, started, phases=phases, measures=measures,
                         checks=checks, notes=[], sources=[drevidence.SOURCES["restore"]])
        if not record.passed:
            code = code or 2
            outcome = Outcome.UNVERIFIED if code == 3 else Outcome.FAILED
            run.finish(outcome, code, "a restore check failed")
            raise Exit("dr.restore-test: a check failed (see the evidence record)", code=code)
        run.finish(Outcome.SUCCESS, 0, "restore test passed")


dr_ns.add_task(drill)
dr_ns.add_task(restore_test)
