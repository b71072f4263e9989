"""What every command shares: exit codes (DESIGN §6), loading a topology for a task, output."""

from __future__ import annotations

import gc
import sys
from enum import IntEnum
from pathlib import Path

from invoke.exceptions import Exit
from rich.console import Console

from dualdc.loader import TopologyError, gc_paused, load_environment, load_topology
from dualdc.model import Topology

#: Progress and human messages go to stderr, so stdout stays clean for reports.
console = Console(stderr=True, highlight=False)


class ExitCode(IntEnum):
    CLEAN = 0
    INPUT = 1
    FINDINGS = 2
    UNVERIFIED = 3


MAX_PROBLEMS_SHOWN = 40


def input_error(message: str) -> Exit:
    """An :class:`Exit` for bad input (exit 1), to ``raise``."""
    return Exit(f"error: {message}", code=ExitCode.INPUT)


def format_problems(exc: TopologyError) -> str:
    """One line per problem, capped so a hostile input still fits one screen."""
    lines = [str(p) for p in exc.problems[:MAX_PROBLEMS_SHOWN]]
    if len(exc.problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"... and {len(exc.problems) - MAX_PROBLEMS_SHOWN} more problem(s)")
    count = len(exc.problems)
    header = f"error: the topology is invalid ({count} problem{'s' if count != 1 else ''}):"
    return "\n".join([header, *lines])


def load(env: str | None = None, topology: str | None = None) -> Topology:
    """Load ``--env NAME`` or ``--topology PATH`` for a task; exit 1 with every problem."""
    if env and topology:
        raise input_error("give --env or --topology, not both")
    # The topology lives until the command ends: once loaded (with the cyclic collector
    # paused), it and everything imported so far are moved out of the collector's sight, so
    # the collections that follow do not scan its 100,000s of objects again and again (about
    # a second on a 10,000-host topology).
    with gc_paused():
        try:
            loaded = load_topology(Path(topology)) if topology else load_environment(env or "lab")
        except TopologyError as exc:
            raise Exit(format_problems(exc), code=ExitCode.INPUT) from None
        gc.freeze()
    return loaded


def write_output(text: str, output: str | None) -> None:
    """Write a report to ``--output FILE`` (atomically) or to stdout."""
    if not output:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    path = Path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise input_error(f"cannot write {output}: {exc.strerror or exc}") from None
    console.print(f"wrote {output}")
