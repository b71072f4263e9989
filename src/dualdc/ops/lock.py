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
import getpass
import os
import socket
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dualdc.base.lock import FileLock, LockFileError
from dualdc.base.paths import ops_state
from dualdc.base.proc import start_time as process_start

LOCK_NAME = "lock"


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


def _parse_record(text: str) -> LockRecord | str | None:
    """A lock file's record: None if empty, the raw text if it is not a valid record."""
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
        self.path = ops_state(env, root) / LOCK_NAME
        self._file = FileLock(self.path, nofollow=True)
        self.record: LockRecord | None = None

    @property
    def held(self) -> bool:
        return self._file.held

    def acquire(self) -> list[str]:
        """Take the lock or raise :class:`LockHeldError`; returns notes (a stale lock taken over)."""
        if self._file.held:
            raise LockError(f"{self.path}: already held by this run")
        try:
            taken = self._file.try_acquire()
        except LockFileError as exc:
            raise LockError(str(exc)) from None
        if not taken:
            previous = _parse_record(self._file.record())
            raise LockHeldError(self.env, previous if isinstance(previous, LockRecord) else None)
        notes: list[str] = []
        previous = _parse_record(self._file.record())
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
            self._file.write_record(record.model_dump_json() + "\n", sync=True)
        except LockFileError as exc:
            self._file.release()
            raise LockError(str(exc)) from None
        self.record = record
        return notes

    def release(self) -> None:
        """Empty the record and drop the lock (idempotent)."""
        self._file.release()

    def holder(self) -> LockRecord | None:
        """The current holder's record, if the lock is held by someone (read-only peek)."""
        if not self._file.busy():
            return None
        record = _parse_record(self._file.record())
        return record if isinstance(record, LockRecord) else None

    def __enter__(self) -> EnvironmentLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_holder(env: str, root: Path | None = None) -> LockRecord | None:
    """Who holds ``env``'s lock right now, if anyone."""
    return EnvironmentLock(env, "", root).holder()

