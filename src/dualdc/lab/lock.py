"""The machine-wide lab lock: one ``lab.up``/``lab.down``/``lab.fault`` (or lab test session) at a time.

There is one lab per machine (its namespaces and controller routes have fixed names), so
the lock is machine-wide: ``flock`` on ``/run/lock/dualdc-lab.lock`` (``DUALDC_LAB_LOCK``).
It is re-entrant in two ways, so a holder can run lab commands under it:

- inside one process (nested ``with LabLock()``);
- in a child process: a process whose ancestor holds the lock proceeds without taking it
  (the holder writes its pid into the file; a pytest session holding the lock can run
  ``invoke lab.up`` as a subprocess).

Anyone else waits (with a message naming the holder), up to ``timeout`` seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

from dualdc.base.lock import FileLock, LockFileError
from dualdc.base.proc import ancestors
from dualdc.lab.errors import LabError
from dualdc.lab.system import Proc

_held: dict[str, tuple[FileLock, int]] = {}  # path → (lock, depth) held by this process


def _holder(path: Path) -> Proc | None:
    text = FileLock(path).record().split()
    if len(text) >= 2 and text[0].isdigit() and text[1].isdigit():
        return Proc(int(text[0]), int(text[1]))
    return None


def describe_holder(path: Path) -> str:
    proc = _holder(path)
    if proc is None:
        return "another process"
    try:
        raw = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        cmd = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = "?"
    return f"pid {proc.pid} ({cmd[:120]})"


class LabLock:
    """``with LabLock(path):`` holds the machine-wide lab lock."""

    def __init__(self, path: Path, timeout: float = 1800, on_wait: object = None) -> None:
        self.path = path
        self.timeout = timeout
        self.on_wait = on_wait
        self._mode = ""

    def acquire(self) -> None:
        key = str(self.path)
        if key in _held:
            lock, depth = _held[key]
            _held[key] = (lock, depth + 1)
            self._mode = "nested"
            return
        lock = FileLock(self.path)
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                if lock.try_acquire():
                    break
            except LockFileError as exc:
                what = "open the lab lock" if exc.action == "open the lock file" else exc.action
                raise LabError(f"cannot {what} {self.path}: {exc.reason}") from None
            holder = _holder(self.path)
            if holder is not None and holder.alive() and holder.pid in ancestors(os.getpid()):
                self._mode = "inherited"
                return
            if time.monotonic() > deadline:
                raise LabError(f"the lab is busy: {describe_holder(self.path)} holds {self.path} "
                               f"(waited {self.timeout:.0f}s)")
            if not told and callable(self.on_wait):
                self.on_wait(f"waiting for the lab lock held by {describe_holder(self.path)}")
                told = True
            time.sleep(0.2)
        me = Proc.of(os.getpid())
        try:
            lock.write_record(f"{os.getpid()} {me.start if me else 0}\n")
        except LockFileError as exc:
            lock.release()
            raise LabError(str(exc)) from None
        _held[key] = (lock, 1)
        self._mode = "owner"

    def release(self) -> None:
        key = str(self.path)
        if self._mode in ("nested", "owner") and key in _held:
            lock, depth = _held[key]
            if depth > 1:
                _held[key] = (lock, depth - 1)
            else:
                del _held[key]
                lock.release()
        self._mode = ""

    def __enter__(self) -> LabLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
