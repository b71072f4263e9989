"""A guarded run: the environment lock, SIGINT/SIGTERM handling and the audit record, together.

::

    with guarded_run("lab", "deploy", "invoke deploy --env lab", sites=["gwangju", "jeonju"]) as run:
        run.plan = {...}
        ...
        run.finish(Outcome.SUCCESS, 0, "applied and verified")

- A second run on the same environment raises :class:`~dualdc.ops.lock.LockHeldError` (and is
  recorded as ``refused``).
- SIGINT and SIGTERM raise :class:`Interrupted` in the main thread; the run records
  ``interrupted``, releases the lock and re-raises. Around calls that cancel their own child
  processes cleanly (ansible-runner polls a cancel callback), :func:`deferred_interrupts`
  turns the signal into a request those calls see through :func:`cancel_requested`; the
  :class:`Interrupted` is raised as soon as the call returns.
- However the block ends, one audit record is appended and the lock released, with further
  signals ignored while that happens.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from dualdc.ops import audit
from dualdc.ops.audit import AuditRecord
from dualdc.ops.lock import EnvironmentLock, LockHeldError, current_host, current_user
from dualdc.reports.header import Outcome

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Exit codes by result when the block ends without calling :meth:`Run.finish`.
EXIT_RESULTS = {0: Outcome.SUCCESS, 1: Outcome.ERROR, 2: Outcome.DRIFT, 3: Outcome.UNVERIFIED}


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a guarded run."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + the signal number."""
        return 128 + self.signum


class _Interrupts:
    def __init__(self) -> None:
        self.requested: int | None = None
        self.defer_depth = 0

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested = signum
        if self.defer_depth == 0:
            raise Interrupted(signum)

    def reset(self) -> None:
        self.requested = None
        self.defer_depth = 0


_interrupts = _Interrupts()


def cancel_requested() -> bool:
    """True once SIGINT or SIGTERM arrived: a ``cancel_callback`` for ansible-runner."""
    return _interrupts.requested is not None


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if a signal arrived while interrupts were deferred."""
    if _interrupts.requested is not None:
        raise Interrupted(_interrupts.requested)


@contextmanager
def deferred_interrupts() -> Iterator[Callable[[], bool]]:
    """Within the block, a signal only sets :func:`cancel_requested`; it is raised at the end."""
    _interrupts.defer_depth += 1
    try:
        yield cancel_requested
    finally:
        _interrupts.defer_depth -= 1
    if _interrupts.defer_depth == 0:
        raise_if_interrupted()


@dataclass
class Run:
    """What the guarded block tells the audit record."""

    env: str
    command: str
    sites: list[str]
    options: dict[str, str | bool | None]
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    t0: float = field(default_factory=time.monotonic)
    plan: dict[str, Any] | None = None
    applied: list[str] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)
    result: Outcome | None = None
    exit_code: int | None = None
    message: str = ""
    notes: list[str] = field(default_factory=list)

    def finish(self, result: Outcome, exit_code: int, message: str = "") -> None:
        self.result = result
        self.exit_code = exit_code
        self.message = message

    def record(self) -> AuditRecord:
        finished = dt.datetime.now(dt.UTC)
        return AuditRecord(
            time=self.started, finished=finished,
            duration_seconds=round(time.monotonic() - self.t0, 3),
            command=self.command, environment=self.env, sites=self.sites, options=self.options,
            user=current_user(), sudo_user=os.environ.get("SUDO_USER") or None, host=current_host(),
            pid=os.getpid(), git=audit.git_state(), plan=self.plan, applied=self.applied,
            not_applied=self.not_applied, result=self.result or Outcome.ERROR,
            exit_code=self.exit_code if self.exit_code is not None else 1, message=self.message,
            notes=self.notes,
        )


@contextmanager
def guarded_run(env: str, command: str, command_line: str, sites: list[str], *,
                options: dict[str, str | bool | None] | None = None, root: Path | None = None,
                on_note: Callable[[str], None] | None = None) -> Iterator[Run]:
    """Hold ``env``'s lock for the block, handle signals, and append the audit record."""
    run = Run(env=env, command=command, sites=list(sites), options=dict(options or {}))
    lock = EnvironmentLock(env, command_line, root)
    try:
        run.notes.extend(lock.acquire())
    except LockHeldError as exc:
        run.finish(Outcome.REFUSED, 1, str(exc))
        audit.append(run.record(), root)
        raise
    for note in run.notes:
        if on_note is not None:
            on_note(note)
    previous = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
    _interrupts.reset()
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, _interrupts.handler)
    try:
        yield run
        raise_if_interrupted()
        if run.result is None:
            run.finish(Outcome.SUCCESS, 0, run.message)
    except Interrupted as exc:
        run.finish(Outcome.INTERRUPTED, exc.exit_code, f"{exc}; the lock was released, re-run to converge")
        raise
    except KeyboardInterrupt:
        run.finish(Outcome.INTERRUPTED, 128 + signal.SIGINT, "interrupted by SIGINT; the lock was released, "
                   "re-run to converge")
        raise
    except BaseException as exc:
        code = getattr(exc, "code", None)
        if run.result is None:
            if isinstance(code, int):
                run.finish(EXIT_RESULTS.get(code, Outcome.FAILED), code, _first_line(exc))
            else:
                run.finish(Outcome.ERROR, 1, f"{type(exc).__name__}: {_first_line(exc)}")
        raise
    finally:
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            audit.append(run.record(), root)
        finally:
            lock.release()
            for sig, handler in previous.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            _interrupts.reset()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
