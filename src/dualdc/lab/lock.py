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

import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from dualdc.lab.errors import LabError
from dualdc.lab.system import Proc

_held: dict[str, tuple[int, int]] = {}  # path → (fd, depth) held by this process


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rfind(")") + 2:].split()[1])
        chain.append(pid)
    return chain


def _holder(path: Path) -> Proc | None:
    try:
        text = path.read_text().split()
    except OSError:
        return None
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
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            self._mode = "nested"
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LabError(f"cannot open the lab lock {self.path}: {exc.strerror}") from None
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise LabError(f"cannot lock {self.path}: {exc.strerror}") from None
            holder = _holder(self.path)
            if holder is not None and holder.alive() and holder.pid in _ancestors(os.getpid()):
                os.close(fd)
                self._mode = "inherited"
                return
            if time.monotonic() > deadline:
                os.close(fd)
                raise LabError(f"the lab is busy: {describe_holder(self.path)} holds {self.path} "
                               f"(waited {self.timeout:.0f}s)")
            if not told and callable(self.on_wait):
                self.on_wait(f"waiting for the lab lock held by {describe_holder(self.path)}")
                told = True
            time.sleep(0.2)
        me = Proc.of(os.getpid())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {me.start if me else 0}\n".encode(), 0)
        _held[key] = (fd, 1)
        self._mode = "owner"

    def release(self) -> None:
        key = str(self.path)
        if self._mode in ("nested", "owner") and key in _held:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
            else:
                del _held[key]
                try:
                    os.ftruncate(fd, 0)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
        self._mode = ""

    def __enter__(self) -> LabLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
