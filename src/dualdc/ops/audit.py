"""The audit trail: every deploy or drift run appends one JSON line to ``.state/<env>/audit.jsonl``.

A record says who ran what, from which commit, on which sites, what the plan was, how it
ended and how long it took. It is built from fields dualdc chooses (never raw command lines,
environment variables or tool output), and every line passes through
:func:`dualdc.base.redact.scrub` before it is written, so no secret reaches the file.

Lines are appended with one ``write`` on an ``O_APPEND`` descriptor and synced, so concurrent
writers (a refused run records itself too) never interleave and a crash loses at most the
line being written.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dualdc.base import redact
from dualdc.base.paths import ops_state
from dualdc.reports.header import GitInfo, Outcome

AUDIT_NAME = "audit.jsonl"
GIT_TIMEOUT = 10


class AuditRecord(BaseModel):
    """One run, as one JSON line."""

    model_config = ConfigDict(extra="forbid")

    time: dt.datetime = Field(description="When the run started (UTC).")
    finished: dt.datetime = Field(description="When the run ended (UTC).")
    duration_seconds: float = Field(description="Wall-clock duration.")
    command: str = Field(description="'deploy' or 'drift'.")
    environment: str = Field(description="Environment name.")
    sites: list[str] = Field(description="Sites the run covered, in the order it touched them.")
    options: dict[str, str | bool | None] = Field(
        default_factory=dict, description="The run's own options (e.g. format, yes); never secrets."
    )
    user: str = Field(description="Login name that ran it.")
    sudo_user: str | None = Field(default=None, description="Who ran it through sudo, if anyone.")
    host: str = Field(description="Host it ran on.")
    pid: int = Field(description="Process id.")
    git: GitInfo = Field(description="The commit deployed or checked.")
    plan: dict[str, Any] | None = Field(default=None, description="Plan summary (counts, per site); null if "
                                        "the run stopped before planning.")
    applied: list[str] = Field(default_factory=list, description="What was applied, e.g. 'gwangju:hosts'.")
    not_applied: list[str] = Field(default_factory=list, description="What was planned but not applied.")
    result: Outcome = Field(description="How the run ended.")
    exit_code: int = Field(description="The process exit code.")
    message: str = Field(default="", description="One-line explanation of the result.")
    notes: list[str] = Field(default_factory=list,
                             description="Notable events, e.g. a stale lock taken over.")


def git_state(cwd: Path | None = None) -> GitInfo:
    """HEAD and the dirty flag of the checkout in ``cwd`` (nulls when git or the checkout is missing)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "--verify", "HEAD")
    if commit is None:
        return GitInfo(commit=None, dirty=None)
    status = git("status", "--porcelain")
    return GitInfo(commit=commit.strip(), dirty=None if status is None else bool(status.strip()))


def audit_path(env: str, root: Path | None = None) -> Path:
    return ops_state(env, root) / AUDIT_NAME


def append(record: AuditRecord, root: Path | None = None) -> Path:
    """Append ``record`` as one line to the environment's audit log; returns its path."""
    path = audit_path(record.environment, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = redact.scrub(record.model_dump_json()) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read(env: str, root: Path | None = None) -> list[AuditRecord]:
    """Every record of an environment's audit log, oldest first (unreadable lines are skipped)."""
    path = audit_path(env, root)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(AuditRecord.model_validate_json(line))
            except ValueError:
                continue
    return records
