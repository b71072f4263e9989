"""What every command shares: exit codes (DESIGN §6), loading a topology for a task, output.

Every message and report a task shows or writes passes through :func:`dualdc.base.redact.clean`
or :func:`dualdc.base.redact.scrub` here: the same scrubbing drift's reports get.
"""

from __future__ import annotations

import gc
import os
import stat
import sys
from pathlib import Path

from invoke.exceptions import Exit
from rich.console import Console

from dualdc.base.exitcodes import ExitCode
from dualdc.base.files import write_atomic
from dualdc.base.redact import clean, scrub, shorten
from dualdc.loader import (
    MAX_PROBLEMS_SHOWN,
    TopologyError,
    format_problems,
    gc_paused,
    load_environment,
    load_topology,
)
from dualdc.model import Topology

#: Progress and human messages go to stderr, so stdout stays clean for reports.
console = Console(stderr=True, highlight=False)


def input_error(message: str) -> Exit:
    """An :class:`Exit` for bad input (exit 1), to ``raise``; the message is scrubbed and shortened."""
    return Exit(clean(f"error: {message}"), code=ExitCode.INPUT)


def shown_path(path: Path | str) -> str:
    """A path as a message quotes it (shortened, scrubbed)."""
    return clean(shorten(repr(str(path)), 160))


def load(env: str | None = None, topology: str | None = None, *, operated: bool = False) -> Topology:
    """Load ``--env NAME`` or ``--topology PATH`` for a task; exit 1 with every problem.

    ``operated``: the environment as it runs now, for the commands that act on its hosts:
    the databases follow ``.state/<env>/primaries.json`` (who is primary after a
    ``dr.switchover`` or ``dr.failover``), so a converge never demotes a new primary.
    """
    if env == "":
        raise input_error("--env needs an environment name (a folder under inventories/)")
    if topology == "":
        raise input_error("--topology needs a path (a folder of YAML files, or one .yaml file)")
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
        if operated:
            from dualdc.ops import drstate  # noqa: PLC0415

            try:
                drstate.ensure_applied(loaded)
            except drstate.StateError as exc:
                raise input_error(str(exc)) from None
        gc.freeze()
    return loaded


def output_target(output: str) -> Path:
    """Where ``--output`` writes: the file itself, or the file a symbolic link points to.

    Refuses what is not (or would not be) a regular file: a device, a FIFO, a folder,
    ``/dev/stdout`` (leave out ``--output`` for stdout), a dangling link or a link loop.
    The link itself is never replaced.
    """
    path = Path(output)
    if path.is_symlink():
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise input_error(f"--output {shown_path(output)} is a symbolic link that leads nowhere "
                              "(dangling, or a loop)") from None
        if stat.S_ISREG(mode):
            return Path(os.path.realpath(path))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise input_error(f"cannot write {shown_path(output)}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise input_error(f"--output {shown_path(output)} is not a regular file (a folder, device, pipe or "
                          "terminal): give a file path, or leave out --output to print to stdout")
    return path


def write_output(text: str, output: str | None) -> None:
    """Write a report (scrubbed) to ``--output FILE`` or to stdout.

    The file is replaced atomically (a temporary file beside it, renamed over it, keeping its
    permissions); through a symbolic link, the link's target is written and the link stays.
    """
    text = scrub(text)
    if not output:
        try:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            raise _stdout_gone() from None
        return
    path = output_target(output)
    try:
        write_atomic(path, text, keep_mode=True)
    except OSError as exc:
        raise input_error(f"cannot write {shown_path(output)}: {exc.strerror or exc}") from None
    console.print(f"wrote {shown_path(output)}")


def _stdout_gone() -> Exit:
    """Standard output's reader went away (``| head``, a closed pipe): say so on stderr, once.

    Standard output is pointed at /dev/null first, so the interpreter's own last flush does not
    add a second complaint (Python's advice for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return input_error("standard output was closed before the report was written out (broken pipe)")


def finish(task: str, code: int = 0) -> None:
    """End ``task`` with ``code``, without freeing what it loaded one object at a time.

    Tearing down a 10,000-host topology and its report object by object costs about 0.7 s of
    CPU after the work is done, for nothing: the kernel takes the memory back at once. When
    ``task`` is the only task of this ``invoke`` run, the output is flushed and the process
    ends here (mypy ends the same way); otherwise (more tasks follow, or the task was called
    from Python) it returns, or raises :class:`Exit` for a non-zero code, as a task does.
    """
    if _sole_task(task):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        raise Exit(code=code)


def _sole_task(task: str) -> bool:
    """Whether the running ``invoke`` program was asked for ``task`` alone."""
    program = getattr(sys.modules.get("invoke.main"), "program", None)
    tasks = getattr(program, "tasks", None)
    return isinstance(tasks, list) and len(tasks) == 1 and getattr(tasks[0], "name", None) == task


#: What the tasks use from here: their shared helpers, and the base's exit codes and topology messages.
__all__ = ["MAX_PROBLEMS_SHOWN", "ExitCode", "console", "finish", "format_problems", "input_error", "load",
           "output_target", "shown_path", "write_output"]
