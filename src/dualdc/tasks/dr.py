"""The DR tasks: ``dr.status`` (the health of every host database's replication and backups)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from dualdc import cli
from dualdc.lab.config import ssh_dir
from dualdc.model import Service, Topology
from dualdc.ops import drstate, drstatus, drswitch
from dualdc.ops.audit import Result
from dualdc.ops.lock import LockError, LockHeldError
from dualdc.ops.run import Interrupted, guarded_run

ENV_HELP = "Environment under inventories/ (default: lab)."
RENDERERS = {"text": drstatus.render_text, "json": drstatus.render_json, "markdown": drstatus.render_markdown}


@task(
    help={
        "env": "Environment under inventories/ (default: lab).",
        "service": "Only this service's database (default: every host database).",
        "format": "text (people), json (machines) or markdown (a PR or ticket).",
    }
)
def status(c: Context, env: str = "lab", service: str = "", format: str = "text") -> None:
    """Each host database's DR health from PostgreSQL's views and pgBackRest, against the model.

    For every database: its primary, each standby's state (streaming, catching up, down), replay
    lag in bytes and seconds, the WAL its slot retains, WAL archiving, and the age and size of
    the last full and last backup at the other site; lag is held against the RPO, backup age
    against the schedule. Exit 0 healthy, 2 a target missed, 3 something unreachable (a lab
    that is down), 1 bad input.
    """
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
    sys.stdout.write(RENDERERS[format](report))
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
    try:
        with guarded_run(env, f"dr.{operation}", line, sites, options=options,
                         on_note=lambda note: cli.console.print(f"note: {note}")) as run:
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
                result = {1: Result.ERROR, 3: Result.UNVERIFIED}.get(code, Result.FAILED)
                run.finish(result, code, "; ".join(str(f) for f in failures)[:2000])
                raise Exit(code=code)
            run.finish(Result.SUCCESS, 0, "; ".join(o.message for o in outcomes)[:2000])
    except LockHeldError as exc:
        raise Exit(f"error: {exc}", code=cli.ExitCode.INPUT) from None
    except LockError as exc:
        raise cli.input_error(str(exc)) from None
    except Interrupted as exc:
        raise Exit(
            f"dr.{operation} {env}: {exc}; the pair is safe (a primary is fenced before any promotion); "
            f"run the same command again to finish; the state is in {drstate.state_path(env)}",
            code=exc.exit_code,
        ) from None
    return outcomes


SERVICE_HELP = "The service whose host database to act on (or --all)."
ALL_HELP = "Every host database of the environment."


@task(help={"env": ENV_HELP, "service": SERVICE_HELP, "all": ALL_HELP,
            "to": "The site whose standby becomes primary."})
def switchover(c: Context, env: str = "lab", service: str = "", all: bool = False, to: str = "") -> None:
    """Planned switchover with no data loss: fence the primary, wait for the standby, promote it.

    The primary is shut down cleanly (sessions refused, nothing acknowledged lost); the standby at
    --to replays its last WAL position and is promoted; the old primary starts as its standby. It
    refuses, with nothing changed, when the standby lags beyond the bound, is unreachable, or the
    service is not replicated to --to. Exit 0 done (or already so), 1 bad input, 2 refused or a
    step failed, 3 a host unreachable. Run it again after an interruption to finish.
    """
    topology = cli.load(env)
    site = _site(topology, to)
    run_dr(env, "switchover", [service], all, act=lambda p: p.switchover(site),
           options={"service": service or None, "all": all, "to": to}, topology=topology)


@task(help={"env": ENV_HELP, "service": SERVICE_HELP, "all": ALL_HELP,
            "to": "The site whose standby is promoted (the surviving site)."})
def failover(c: Context, env: str = "lab", service: str = "", all: bool = False, to: str = "") -> None:
    """Unplanned failover: promote the standby at --to and fence the old primary for good.

    The old primary is stopped with a recovery signal when it can be reached; when it cannot, it is
    recorded as fenced (a converge leaves it stopped, and its start guard brings it up read-only on
    return). Reports the data-loss window. Exit codes as dr.switchover.
    """
    topology = cli.load(env)
    site = _site(topology, to)
    run_dr(env, "failover", [service], all, act=lambda p: p.failover(site),
           options={"service": service or None, "all": all, "to": to}, topology=topology)


@task(help={"env": ENV_HELP, "service": SERVICE_HELP, "all": ALL_HELP})
def failback(c: Context, env: str = "lab", service: str = "", all: bool = False) -> None:
    """Rebuild every fenced or non-streaming host as a standby of the current primary (a fresh clone).

    Then every pair is protected again; switch back with dr.switchover if wanted.
    Exit codes as dr.switchover.
    """
    run_dr(env, "failback", [service], all, act=lambda p: p.failback(),
           options={"service": service or None, "all": all})


dr_ns = Collection("dr")
dr_ns.add_task(status)
dr_ns.add_task(switchover)
dr_ns.add_task(failover)
dr_ns.add_task(failback)
