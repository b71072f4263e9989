"""What the tasks share: their defaults, in one place, and the help of options many tasks have.

``tasks.py`` sets :data:`DEFAULTS` on the collection (``ns.configure``): a task whose ``--env``
is not given takes ``dualdc.env`` from Invoke's configuration (``lab``, or an ``invoke.yaml``'s
``dualdc: {env: ...}``, or ``INVOKE_DUALDC_ENV``). An ``--env ""`` stays an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from invoke.context import Context
from invoke.exceptions import Exit

if TYPE_CHECKING:
    from dualdc.ops.run import Run

#: Invoke configuration of every task (``ns.configure``).
DEFAULTS: dict[str, Any] = {"dualdc": {"env": "lab"}}

#: Help of options several tasks share, said once.
HELP = {
    "env": "Environment under inventories/ (default: dualdc.env of the Invoke configuration, lab).",
    "output": "Write the report to this file instead of stdout.",
    "backend": "Pulumi state backend URL (default: $DUALDC_PULUMI_BACKEND, else .state/<env>/pulumi).",
}


def helps(*shared: str, **own: str) -> dict[str, str]:
    """A task's ``help``: the shared entries named, then its own (which may say more)."""
    return {**{name: HELP[name] for name in shared}, **own}


def env_of(c: Context, env: str | None) -> str:
    """``--env`` as given, else the configured default (``dualdc.env``)."""
    if env is not None:
        return env
    config = c.config.get("dualdc") if c.config is not None else None
    configured = config.get("env") if config else None
    return str(configured or DEFAULTS["dualdc"]["env"])


@contextmanager
def guarded(env: str, command: str, command_line: str, sites: list[str],
            options: dict[str, str | bool | None], *, after_interrupt: str = "") -> Iterator[Run]:
    """:func:`dualdc.ops.run.guarded_run` (lock, audit line, signals) with its outcomes as the task's exits.

    A lock held by another run exits 1 with who holds it; an interrupt exits 130 or 143 with
    ``after_interrupt`` (what is safe and what to run next; by default: run it again).
    """
    from dualdc import cli  # noqa: PLC0415
    from dualdc.ops import audit  # noqa: PLC0415
    from dualdc.ops.lock import LockError, LockHeldError  # noqa: PLC0415
    from dualdc.ops.run import Interrupted, guarded_run  # noqa: PLC0415

    try:
        with guarded_run(env, command, command_line, sites, options=options,
                         on_note=lambda note: cli.console.print(f"note: {note}")) as run:
            yield run
    except LockHeldError as exc:
        raise Exit(f"error: {exc}", code=cli.ExitCode.INPUT) from None
    except LockError as exc:
        raise cli.input_error(str(exc)) from None
    except Interrupted as exc:
        then = after_interrupt or (f"the lock was released and the run recorded as interrupted in "
                                   f"{audit.audit_path(env)}; run it again to converge")
        raise Exit(f"{command} {env}: {exc}; {then}", code=exc.exit_code) from None
