"""Tasks of the orchestration: deploy, drift, diagram."""

from __future__ import annotations

import re
import shlex
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from pydantic import ValidationError

from dualdc import cli
from dualdc.ansible import LiveProgress
from dualdc.base import redact
from dualdc.lab import LabError, LabLock
from dualdc.lab.config import LabConfig
from dualdc.loader import TopologyError
from dualdc.model import Layer, Topology
from dualdc.ops import comment as comments
from dualdc.ops.ack import Ledger, ledger_path, load_ledger
from dualdc.ops.outputs import FORMATS, render_drift, write_drift_artifacts, write_text
from dualdc.ops.run import Interrupted
from dualdc.reports import diagram as diagrams
from dualdc.reports.drift import DriftReport
from dualdc.reports.header import Outcome
from dualdc.tasks import options

if TYPE_CHECKING:
    from dualdc.reports.deploy import DeployReport

# dualdc.ops.deploy and dualdc.ops.drift bring in Pulumi (about 0.3 s): deploy and drift
# import them when they run, so every other command starts without it.


@task(
    help={
        "env": options.HELP["env"],
        "output_dir": "Folder for <env>.svg, <env>.dot, <env>.mmd and <env>.md (default: build/diagrams).",
        "drift_report": "A JSON drift report (invoke drift --format json): mark what drifted.",
    }
)
def diagram(c: Context, env: str | None = None, output_dir: str = "build/diagrams",
            drift_report: str = "") -> None:
    """Draw sites, segments (grouped by site and zone, coloured by zone) and flows as SVG and Mermaid."""
    env = options.env_of(c, env)
    topology = cli.load(env)
    marks = None
    if drift_report:
        try:
            report = DriftReport.model_validate_json(Path(drift_report).read_bytes())
        except OSError as exc:
            raise cli.input_error(f"cannot read {drift_report}: {exc.strerror or exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]["msg"]
            raise cli.input_error(
                f"{drift_report} is not a dualdc drift report (JSON): "
                f"{exc.error_count()} problem(s), first: {first}"
            ) from None
        if report.environment != topology.environment.name:
            raise cli.input_error(
                f"{drift_report} is a report of environment {report.environment!r}, "
                f"not {topology.environment.name!r}"
            )
        summary = report.summary or report.finalize().summary
        assert summary is not None
        marks = diagrams.marks_for(topology, set(summary.drifted_hosts), set(summary.drifted_segments))
    try:
        written = diagrams.write_diagrams(topology, Path(output_dir), marks)
    except diagrams.DiagramError as exc:
        raise Exit(f"error: {exc}", code=cli.ExitCode.INPUT) from None
    except OSError as exc:
        raise cli.input_error(f"cannot write to {output_dir}: {exc.strerror or exc}") from None
    for path in written:
        cli.console.print(f"wrote {path}")


@task(
    help={
        "file": "The Markdown file to post (e.g. build/plan.md from invoke deploy --plan-only).",
        "pr": "Pull request number (GitHub) or merge request IID (GitLab).",
        "marker": "Which summary comment to create or update (default: plan).",
    }
)
def comment(c: Context, file: str = "", pr: str = "", marker: str = "plan") -> None:
    """Post a Markdown report as the PR/MR summary comment (updates the previous one) from CI."""
    if not file or not re.fullmatch(r"[1-9][0-9]{0,9}", pr):
        raise cli.input_error("give --file FILE and --pr NUMBER (a pull or merge request number)")
    if not re.fullmatch(r"[a-z0-9-]{1,40}", marker):
        raise cli.input_error("--marker is 1 to 40 lower-case letters, digits or '-'")
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise cli.input_error(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        target = comments.detect(int(pr))
        action, comment_id = comments.post(target, text, marker)
    except comments.CommentError as exc:
        raise cli.input_error(str(exc)) from None
    cli.console.print(f"{action} comment {comment_id} on {target.platform} #{pr}")


DEPLOY_FORMATS = ("text", "json", "markdown")

# --------------------------------------------------------------------------- shared


def _site(topology: Topology, site: str) -> str | None:
    if not site:
        return None
    known = [s.name for s in topology.sites]
    if site not in known:
        raise cli.input_error(
            f"--site {site!r} is not a site of {topology.environment.name!r} (sites: {', '.join(known)})"
        )
    return site


def _ledger(topology: Topology) -> Ledger:
    try:
        return load_ledger(ledger_path(topology.environment.name), topology)
    except TopologyError as exc:
        raise Exit(
            cli.format_problems(exc).replace("the topology is invalid", "the drift-ack ledger is invalid"),
            code=cli.ExitCode.INPUT,
        ) from None


def _command_line(name: str, **options: str | bool) -> str:
    parts = ["invoke", name]
    for key, value in options.items():
        if value is True:
            parts.append(f"--{key.replace('_', '-')}")
        elif value:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def _lab_lock(topology: Topology) -> AbstractContextManager[object]:
    """On the lab twin, hold the machine-wide lab lock too (lab.up/down/fault and lab tests wait meanwhile).

    Taken after the environment's lock: a second deploy or drift is refused at once, not queued.
    """
    if not topology.environment.lab:
        return nullcontext()
    return LabLock(
        LabConfig.load(topology.environment.name).lock,
        on_wait=lambda msg: cli.console.print(msg, highlight=False),
    )


def _host_progress(topology: Topology, sites: list[str], title: str) -> LiveProgress:
    return LiveProgress(cli.console, title, sum(1 for h in topology.hosts if h.site in sites))


# --------------------------------------------------------------------------- drift


@task(
    help={
        "env": options.HELP["env"],
        "site": "Check only this site (default: every site, in deploy order).",
        "format": "Report format: text (people), json (machines, documented in docs/operations.md), "
        "markdown (a PR/issue comment) or junit (CI).",
        "output": options.HELP["output"],
        "artifacts": "Also write every format and the diagram into this folder (drift.json, drift.md, ...).",
        "backend": options.HELP["backend"],
    }
)
def drift(
    c: Context,
    *,
    env: str | None = None,
    site: str = "",
    format: str = "text",
    output: str = "",
    artifacts: str = "",
    backend: str = "",
) -> None:
    """Compare what runs with the model: policy, hosts (check/diff), stacks (preview, refresh), lab probe.

    Exit 0 clean; 1 input error; 2 drift (unacknowledged, or under an expired acknowledgement);
    3 not everything could be verified (e.g. a host unreachable) while everything reachable was
    checked. Acknowledged drift (inventories/<env>/drift-ack.yaml) is shown and does not fail.
    """
    env = options.env_of(c, env)
    from dualdc.ops.drift import DriftRun, run_drift, sites_of  # noqa: PLC0415

    if format not in FORMATS:
        raise cli.input_error(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    topology = cli.load(env, operated=True)
    if output:
        cli.output_target(output)  # a bad --output is refused before the run, not after it
    chosen = _site(topology, site)
    ledger = _ledger(topology)
    sites = sites_of(topology, chosen)
    command_line = _command_line(
        "drift", env=env, site=site, format=format, output=output, artifacts=artifacts
    )
    with options.guarded(
        env,
        "drift",
        command_line,
        sites,
        {"site": site or None, "format": format, "artifacts": artifacts or None},
    ) as run:
        spec = DriftRun(
            topology=topology,
            ledger=ledger,
            site=chosen,
            backend=backend or None,
            progress=lambda text: cli.console.print(text, highlight=False),
        )
        try:
            with (
                _lab_lock(topology),
                _host_progress(topology, sites, f"drift {env}: hosts (check mode)") as progress,
            ):
                spec.on_event = progress.event
                report = run_drift(spec)
        except LabError as exc:
            raise Exit(f"error: {exc}", code=exc.code) from None
        except TopologyError as exc:
            raise Exit(cli.format_problems(exc), code=cli.ExitCode.INPUT) from None
        text = render_drift(report, format, topology, color=not output and sys.stdout.isatty())
        cli.write_output(text, output or None)
        if artifacts:
            for path in write_drift_artifacts(report, topology, Path(artifacts)):
                cli.console.print(f"wrote {path}", highlight=False)
        summary = report.summary
        run.plan = (
            summary.model_dump(
                include={
                    "drift",
                    "acknowledged",
                    "ack_expired",
                    "expired_acknowledgements",
                    "targets_checked",
                    "unverified",
                }
            )
            if summary
            else None
        )
        result = {0: Outcome.SUCCESS, 2: Outcome.DRIFT, 3: Outcome.UNVERIFIED}[report.exit_code]
        run.finish(result, report.exit_code, report.headline())
    cli.console.print(report.headline(), highlight=False)
    if report.exit_code:
        raise Exit(code=report.exit_code)


# --------------------------------------------------------------------------- deploy


def _confirm(report: DeployReport) -> bool:
    """Show the plan's summary on the terminal and ask for the environment's name."""
    plan = report.plan
    assert plan is not None
    cli.console.print()
    cli.console.print(
        f"[bold]deploy {report.environment}[/]: sites in this order: {' → '.join(report.sites)}"
    )
    pending = [i for i in plan.items() if i.layer is not Layer.MODEL]
    by_site: dict[str, list[str]] = {}
    for item in pending:
        by_site.setdefault(item.site or "all", []).append(f"{item.target}: {item.task or item.summary}")
    for site in [*report.sites, "all"]:
        changes = by_site.get(site, [])
        if site == "all" and not changes:
            continue
        cli.console.print(f"  {site}: {len(changes)} pending change(s)", highlight=False)
        for line in changes[:15]:
            cli.console.print(f"    {line}", highlight=False, markup=False)
        if len(changes) > 15:
            cli.console.print(f"    … and {len(changes) - 15} more", highlight=False)
    for note in (layer.note for layer in plan.layers if layer.layer is Layer.STACKS and layer.note):
        cli.console.print(f"  stacks: {note}", highlight=False)
    try:
        answer = input(f"Type the environment name ({report.environment}) to deploy, anything else to stop: ")
    except EOFError:
        return False
    return answer.strip() == report.environment


@task(
    help={
        "env": options.HELP["env"],
        "site": "Deploy only this site (default: every site in environment.deploy_order, then the "
        "replication stack).",
        "yes": "Do not ask for confirmation (CI after its approval gate). Without a terminal it is required.",
        "plan_only": "Validate and plan (hosts in check mode, stacks previewed), apply nothing.",
        "format": "Report format: text, json or markdown (the plan as a PR comment with --plan-only).",
        "output": options.HELP["output"],
        "artifacts": "Also write the report in every format into this folder (deploy.json, deploy.md, ...).",
        "backend": options.HELP["backend"],
    }
)
def deploy(
    c: Context,
    *,
    env: str | None = None,
    site: str = "",
    yes: bool = False,
    plan_only: bool = False,
    format: str = "text",
    output: str = "",
    artifacts: str = "",
    backend: str = "",
) -> None:
    """Validate, plan, confirm, then converge hosts and bring stacks up site by site, each verified by drift.

    A failure at one site stops before the next site is touched; the report says what was and
    was not applied. Exit 0 applied and verified; 1 input error, not confirmed or cannot start
    (e.g. no Pulumi CLI where stacks must be applied; nothing applied); 2 policy errors (nothing
    applied) or a failed step; 3 the plan could not reach everything (nothing applied).
    """
    env = options.env_of(c, env)
    from dualdc.ops.deploy import DeployError, DeploySpec, new_report  # noqa: PLC0415
    from dualdc.ops.deploy import deploy as deploy_run  # noqa: PLC0415
    from dualdc.ops.drift import sites_of  # noqa: PLC0415

    if format not in DEPLOY_FORMATS:
        raise cli.input_error(f"--format must be one of {', '.join(DEPLOY_FORMATS)}, not {format!r}")
    topology = cli.load(env, operated=True)
    if output:
        cli.output_target(output)  # a bad --output is refused before the run, not after it
    chosen = _site(topology, site)
    ledger = _ledger(topology)
    sites = sites_of(topology, chosen)
    command_line = _command_line(
        "deploy",
        env=env,
        site=site,
        yes=yes,
        plan_only=plan_only,
        format=format,
        output=output,
        artifacts=artifacts,
    )
    report = new_report(topology, chosen, plan_only)
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    with options.guarded(
        env,
        "deploy",
        command_line,
        sites,
        {"site": site or None, "yes": yes, "plan_only": plan_only, "format": format},
    ) as run:
        spec = DeploySpec(
            topology=topology,
            ledger=ledger,
            site=chosen,
            yes=yes,
            plan_only=plan_only,
            backend=backend or None,
            progress=lambda text: cli.console.print(text, highlight=False),
            confirm=_confirm if interactive else None,
            run=run,
        )
        if not yes and not plan_only and not interactive:
            message = ("no terminal to ask for confirmation on: pass --yes to deploy without asking "
                       "(nothing was run)")
            run.finish(Outcome.ERROR, 1, message)
            raise cli.input_error(message)
        try:
            with _lab_lock(topology), _host_progress(topology, sites, f"deploy {env}: hosts") as progress:
                spec.on_event = progress.event
                deploy_run(spec, report)
        except LabError as exc:
            run.finish(Outcome.ERROR, exc.code, str(exc))
            raise Exit(f"error: {exc}", code=exc.code) from None
        except DeployError as exc:
            run.finish(Outcome.ERROR, 1, str(exc))
            raise cli.input_error(str(exc)) from None
        except TopologyError as exc:
            raise Exit(cli.format_problems(exc), code=cli.ExitCode.INPUT) from None
        except Interrupted:
            report.finish(Outcome.INTERRUPTED, 130, "interrupted; the report lists what was applied before")
            _write_deploy(report, format, output, artifacts)
            raise
        _write_deploy(report, format, output, artifacts)
        run.finish(report.result, report.exit_code, report.message)
    cli.console.print(f"deploy {env}: {report.result.value}: {report.message}", highlight=False)
    if report.exit_code:
        raise Exit(code=report.exit_code)


def _render_deploy(report: DeployReport, fmt: str, *, full: bool = False) -> str:
    from dualdc.reports.deploy import (  # noqa: PLC0415
        render_deploy_json,
        render_deploy_markdown,
        render_deploy_text,
    )

    if fmt == "json":
        text = render_deploy_json(report)
    elif fmt == "markdown":
        text = render_deploy_markdown(report, full_report="deploy.json in the job's artifacts")
    else:
        text = render_deploy_text(report, full=full)
    return redact.scrub(text)


def _write_deploy(report: DeployReport, format: str, output: str, artifacts: str) -> None:
    cli.write_output(_render_deploy(report, format), output or None)
    if artifacts:
        for fmt, ext in (("text", "txt"), ("json", "json"), ("markdown", "md")):
            path = write_text(Path(artifacts) / f"deploy.{ext}", _render_deploy(report, fmt, full=True))
            cli.console.print(f"wrote {path}", highlight=False)
