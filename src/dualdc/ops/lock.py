"""One deploy or drift run per environment at a time.

The lock is ``.state/<env>/lock``: an ``flock`` on that file, plus a JSON record written into
it by the holder (who, which process, which command, since when). ``flock`` is the authority:
the kernel drops it when the holding process dies, however it dies, so a crashed run never
blocks the next one forever. The record is what a refused run prints, and what tells the next
run that the previous one died without cleaning up (a *stale* lock): its record is still
there but nobody holds the ``flock``. The next run says so and takes over.

The file is never deleted (deleting a file others may be waiting on breaks ``flock``); release
empties it. The descriptor is close-on-exec, so child processes (ansible-playbook, pulumi)
never inherit the lock and cannot keep it after the run ends.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import getpass
import os
import socket
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dualdc.ops import state_dir

LOCK_NAME = "lock"
MAX_RECORD_BYTES = 64 * 1024


def current_user() -> str:
    """The login name running this process (never fails)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def current_host() -> str:
    return socket.gethostname() or "localhost"


def boot_id() -> str | None:
    """This boot's id: a pid recorded before a reboot means nothing after it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (tells a re-used pid apart), if alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


class LockRecord(BaseModel):
    """Who holds an environment's lock."""

    model_config = ConfigDict(extra="forbid")

    environment: str = Field(description="Environment the lock is for.")
    user: str = Field(description="Login name of the holder.")
    sudo_user: str | None = Field(default=None, description="Who ran it through sudo, if anyone.")
    host: str = Field(description="Host name the holder runs on.")
    pid: int = Field(description="Process id of the holder.")
    pid_start: int | None = Field(default=None, description="Start time of that process (clock ticks).")
    boot_id: str | None = Field(default=None, description="Boot id of the holder's host.")
    command: str = Field(description="The command holding the lock, e.g. 'invoke deploy --env lab'.")
    started: dt.datetime = Field(description="When the lock was taken (UTC).")

    @property
    def owner(self) -> str:
        return f"{self.user}@{self.host}"

    def describe(self) -> str:
        via = f" (sudo by {self.sudo_user})" if self.sudo_user else ""
        return (f"{self.owner}{via}, pid {self.pid}, running `{self.command}` since "
                f"{self.started.astimezone(dt.UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}")

    def process_alive(self) -> bool | None:
        """Whether the holder process still runs: None when that cannot be told from here."""
        if self.host != current_host():
            return None
        if self.boot_id and boot_id() and self.boot_id != boot_id():
            return False
        start = process_start(self.pid)
        if start is None:
            return False
        return self.pid_start is None or start == self.pid_start


class LockHeldError(Exception):
    """Another run holds the environment's lock."""

    def __init__(self, env: str, record: LockRecord | None) -> None:
        self.env = env
        self.record = record
        who = "another run (it has not written its record yet)" if record is None else record.describe()
        super().__init__(f"environment {env!r} is locked by {who}; wait for it to finish "
                         f"(one deploy or drift run per environment at a time)")


class LockError(Exception):
    """The lock file cannot be used (permissions, file system)."""


def _read_record(fd: int) -> LockRecord | str | None:
    """The record in the lock file: None if empty, the raw text if it is not a valid record."""
    try:
        raw = os.pread(fd, MAX_RECORD_BYTES, 0)
    except OSError:
        return None
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        return LockRecord.model_validate_json(text)
    except ValidationError:
        return text


class EnvironmentLock:
    """The lock of one environment; use as a context manager or acquire()/release()."""

    def __init__(self, env: str, command: str, root: Path | None = None) -> None:
        self.env = env
        self.command = command
        self.path = state_dir(env, root) / LOCK_NAME
        self.fd: int | None = None
        self.record: LockRecord | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> list[str]:
        """Take the lock or raise :class:`LockHeldError`; returns notes (a stale lock taken over)."""
        if self.fd is not None:
            raise LockError(f"{self.path}: already held by this run")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise LockError(f"cannot open the lock file {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            previous = _read_record(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                holder = previous if isinstance(previous, LockRecord) else None
                raise LockHeldError(self.env, holder) from None
            raise LockError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        notes: list[str] = []
        previous = _read_record(fd)
        if isinstance(previous, LockRecord):
            alive = previous.process_alive()
            state = {False: "that process is gone", None: "its host is another machine, and it no longer "
                     "holds the lock", True: "that process no longer holds the lock"}[alive]
            notes.append(f"took over a stale lock of {self.env!r} left by {previous.describe()}: {state}; "
                         "its run did not finish cleanly, this run converges from where it stopped")
        elif isinstance(previous, str):
            notes.append(f"took over a stale lock of {self.env!r} with an unreadable record")
        env_sudo = os.environ.get("SUDO_USER")
        record = LockRecord(
            environment=self.env, user=current_user(), sudo_user=env_sudo or None, host=current_host(),
            pid=os.getpid(), pid_start=process_start(os.getpid()), boot_id=boot_id(),
            command=self.command, started=dt.datetime.now(dt.UTC),
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (record.model_dump_json() + "\n").encode("utf-8"), 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise LockError(f"cannot write the lock record {self.path}: {exc.strerror or exc}") from None
        self.fd = fd
        self.record = record
        return notes

    def release(self) -> None:
        """Empty the record and drop the lock (idempotent)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the flock is what matters; a leftover record only reads as stale
        finally:
            os.close(fd)  # closing drops the flock

    def holder(self) -> LockRecord | None:
        """The current holder's record, if the lock is held by someone (read-only peek)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                record = _read_record(fd)
                return record if isinstance(record, LockRecord) else None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def __enter__(self) -> EnvironmentLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_holder(env: str, root: Path | None = None) -> LockRecord | None:
    """Who holds ``env``'s lock right now, if anyone."""
    return EnvironmentLock(env, "", root).holder()

