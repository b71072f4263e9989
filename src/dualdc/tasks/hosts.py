"""Tasks of the hosts layer: converge the bare-metal hosts with the roles (``invoke converge``)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from dualdc import cli
from dualdc.ansible import LiveProgress, PlaybookRun, RunError, json_report, run_playbook, text_report
from dualdc.lab import LabError, LabLock
from dualdc.lab.config import LabConfig
from dualdc.model import Layer
from dualdc.tasks import options


def _lab_lock(env: str, lab: bool) -> AbstractContextManager[object]:
    """On the lab twin, hold the machine-wide lab lock (lab tests and lab.up wait meanwhile)."""
    if not lab:
        return nullcontext()
    return LabLock(LabConfig.load(env).lock, on_wait=lambda msg: cli.console.print(msg, highlight=False))


@task(help={
    "env": options.HELP["env"],
    "site": "Only the hosts of this site.",
    "limit": "Only hosts matching this Ansible pattern (a host or group), within --site if given.",
    "check": "Check mode: change nothing, report what would change (the hosts' drift).",
    "diff": "Show each change's diff in the text report (JSON always carries them).",
    "format": "Report format: text (people) or json (machines).",
    "output": options.HELP["output"],
    "forks": "Hosts worked on in parallel (default: 50, i.e. every lab host at once).",
    "strategy": "Ansible strategy: dualdc_free (default: free over Mitogen, see docs/roles.md), "
                "free or linear (Ansible's own).",
    "pipelining": "SSH pipelining (default on; --no-pipelining turns it off).",
})
def converge(c: Context, *, env: str | None = None, site: str = "", limit: str = "", check: bool = False,
             diff: bool = False, format: str = "text", output: str = "", forks: int = 50,
             strategy: str = "dualdc_free", pipelining: bool = True) -> None:
    """Configure the environment's hosts from the model (playbooks/site.yml via ansible-runner).

    Exit 0: every host converged (or, with --check, nothing would change); 2: a task failed,
    or --check found drift; 3: a host was unreachable or the run did not complete.
    """
    env = options.env_of(c, env)
    if format not in ("text", "json"):
        raise cli.input_error(f"--format must be text or json, not {format!r}")
    topology = cli.load(env, operated=True)
    if Layer.HOSTS not in topology.environment.layers:
        raise cli.input_error(f"environment {env!r} has no hosts layer (environment.layers: "
                              f"{', '.join(layer.value for layer in topology.environment.layers)})")
    sites = [s.name for s in topology.sites]
    if site and site not in sites:
        raise cli.input_error(f"unknown site {site!r} (sites of {env}: {', '.join(sites)})")
    hosts = [h for h in topology.hosts if not site or h.site == site]
    if not hosts:
        raise cli.input_error(f"environment {env!r} has no hosts{' at ' + site if site else ''}")
    run = PlaybookRun.of(topology, site=site or None, limit=limit or None, check=check, diff=True,
                         forks=forks, strategy=strategy, pipelining=pipelining)
    title = f"converge {env}{' ' + site if site else ''}{' (check)' if check else ''}"
    try:
        run.validate()
        with _lab_lock(env, topology.environment.lab), \
                LiveProgress(cli.console, title, len(hosts)) as progress:
            result = run_playbook(run, on_event=progress.event)
    except RunError as exc:
        raise cli.input_error(str(exc)) from None
    except LabError as exc:
        raise Exit(f"error: {exc}", code=exc.code) from None
    report = json_report(result) if format == "json" else text_report(result, show_diff=diff or check)
    if format == "text" and topology.environment.lab and result.unreachable_hosts and \
            len(result.unreachable_hosts) == len(result.hosts):
        report += "hint: no lab host answered; is the lab up? (invoke lab.up)\n"
    cli.write_output(report, output or None)
    code = result.exit_code()
    if code:
        raise Exit(code=int(code))
