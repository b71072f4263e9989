"""The header every run report shares: which environment and sites, which commit, when, how long."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Outcome(StrEnum):
    """How a run ended: the one vocabulary of the reports and of the audit log."""

    SUCCESS = "success"
    """Everything asked was done (deploy applied and verified; drift clean)."""
    PLANNED = "planned"
    """A plan was asked for (deploy --plan-only): shown, nothing applied."""
    DRIFT = "drift"
    """Drift or findings (exit 2)."""
    BLOCKED = "blocked"
    """Policy errors stopped a deploy before anything was applied (exit 2)."""
    UNVERIFIED = "unverified"
    """Not everything could be verified, e.g. a host was unreachable (exit 3)."""
    FAILED = "failed"
    """A step failed (a task, a stack update, a post-deploy drift check)."""
    ERROR = "error"
    """Bad input or an environment problem; nothing was applied (exit 1)."""
    DECLINED = "declined"
    """The operator did not confirm the plan; nothing was applied."""
    REFUSED = "refused"
    """Another run held the lock; nothing was done."""
    INTERRUPTED = "interrupted"
    """SIGINT or SIGTERM stopped the run; the lock was released."""


class GitInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    commit: str | None = Field(description="Commit checked; null outside git.")
    dirty: bool | None = Field(description="Whether the working tree differed from the commit.")


class ReportHeader(BaseModel):
    """The fields every run report opens with (drift, deploy): one definition, one meaning."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="Report kind.")
    schema_version: int = Field(description="Version of this JSON shape.")
    environment: str = Field(description="Environment name.")
    sites: list[str] = Field(description="Sites the run covers, in deploy order.")
    generated_at: dt.datetime = Field(description="When the run started (UTC).")
    duration_seconds: float = Field(default=0.0, description="How long it took.")
    git: GitInfo = Field(description="The commit the model and the code were read from.")

    def header_line(self, *, when: bool = False) -> str:
        """``commit abc123def456 [2026-12-03 18:00:00 UTC, ]12.3 s``; "" outside git."""
        if not self.git.commit:
            return ""
        dirty = " (dirty working tree)" if self.git.dirty else ""
        started = f"{self.generated_at:%Y-%m-%d %H:%M:%S} UTC, " if when else ""
        return f"commit {self.git.commit[:12]}{dirty}, {started}{self.duration_seconds:.1f} s"

    def commit_markdown(self) -> str:
        """``commit `abc123def456` (dirty)`` for Markdown ("" outside git)."""
        if not self.git.commit:
            return ""
        return f"commit `{self.git.commit[:12]}`{' (dirty)' if self.git.dirty else ''}"
