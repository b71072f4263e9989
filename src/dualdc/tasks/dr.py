"""The DR tasks: ``dr.status`` (the health of every host database's replication and backups)."""

from __future__ import annotations

import sys

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from dualdc import cli
from dualdc.ops import drstatus

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
        report = drstatus.dr_status(topology, service or None)
    except drstatus.LabDown as exc:
        raise Exit(f"error: {exc}", code=3) from None
    sys.stdout.write(RENDERERS[format](report))
    if report.exit_code:
        raise Exit(code=report.exit_code)


dr_ns = Collection("dr")
dr_ns.add_task(status)
