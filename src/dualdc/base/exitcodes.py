"""The exit codes every command keeps (DESIGN §6)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """0 clean, 1 usage or input error (nothing applied), 2 findings or drift, 3 not all verified."""

    CLEAN = 0
    INPUT = 1
    FINDINGS = 2
    UNVERIFIED = 3
