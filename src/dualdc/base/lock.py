"""The one file lock under the lab lock and the environment (deploy/drift) lock.

A :class:`FileLock` is an exclusive ``flock`` on a file plus a record its holder writes into the
file (who holds it). ``flock`` is the authority: the kernel drops it when the holder dies, however
it dies, so a crashed holder never blocks the next one; the record is only what a waiting or
refused process prints. The file is never deleted (deleting a file others wait on breaks
``flock``); release empties it. The descriptor is close-on-exec, so child processes never
inherit the lock.

The policies on top (the lab's waiting and re-entrance, the environment lock's stale-record
notes) stay with their owners: :mod:`dualdc.lab.lock` and :mod:`dualdc.ops.lock`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

#: A record longer than this is not a record (read no further).
MAX_RECORD_BYTES = 64 * 1024
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


class LockFileError(Exception):
    """The lock file cannot be used (permissions, file system); ``str()`` says what and why."""

    def __init__(self, path: Path, action: str, exc: OSError) -> None:
        self.path = path
        self.action = action
        self.reason = exc.strerror or str(exc)
        super().__init__(f"cannot {action} {path}: {self.reason}")


class FileLock:
    """An exclusive ``flock`` on ``path`` (created with its folder), not waiting: see :meth:`try_acquire`."""

    def __init__(self, path: Path, *, nofollow: bool = False) -> None:
        self.path = path
        self.nofollow = nofollow
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def _open(self, flags: int) -> int:
        return os.open(self.path, flags | os.O_CLOEXEC | (os.O_NOFOLLOW if self.nofollow else 0), 0o644)

    def try_acquire(self) -> bool:
        """Take the lock if it is free (True) or say it is busy (False); :class:`LockFileError` otherwise."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._open(os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise LockFileError(self.path, "open the lock file", exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _BUSY:
                return False
            raise LockFileError(self.path, "lock", exc) from None
        self.fd = fd
        return True

    def record(self) -> str:
        """The record in the file (stripped; empty if none or unreadable), held or not."""
        try:
            if self.fd is not None:
                raw = os.pread(self.fd, MAX_RECORD_BYTES, 0)
            else:
                fd = self._open(os.O_RDONLY)
                try:
                    raw = os.pread(fd, MAX_RECORD_BYTES, 0)
                finally:
                    os.close(fd)
        except OSError:
            return ""
        return raw.decode("utf-8", errors="replace").strip()

    def write_record(self, text: str, *, sync: bool = False) -> None:
        """Replace the record (the lock must be held); :class:`LockFileError` if it cannot be written."""
        assert self.fd is not None, "write_record needs the lock held"
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, text.encode("utf-8"), 0)
            if sync:
                os.fsync(self.fd)
        except OSError as exc:
            raise LockFileError(self.path, "write the lock record", exc) from None

    def release(self) -> None:
        """Empty the record and drop the lock (idempotent)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):  # the flock is what matters; a leftover record reads as stale
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the flock

    def busy(self) -> bool:
        """Whether someone holds the lock right now (a read-only peek; False if there is no file)."""
        try:
            fd = self._open(os.O_RDONLY)
        except OSError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)
