"""The exit codes every command keeps (DESIGN §6)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """0 clean, 1 usage or input error (nothing applied), 2 findings or drift, 3 not all verified."""

    CLEAN = 0
    INPUT = 1
    FINDINGS = 2
    UNVERIFIED = 3


def decide(*, findings: bool = False, unverified: bool = False, incomplete: bool = False) -> ExitCode:
    """The one place a run's exit code is decided from what it found (DESIGN §6).

    - ``incomplete``: the run itself did not get through (a host unreachable mid-playbook, no
      recap): what it found cannot be all there is, so 3 comes first;
    - ``findings``: policy violations, drift, a failed change: 2, even where some targets could
      not be verified (the findings are real either way);
    - ``unverified``: something could not be checked: 3;
    - else 0. (1, bad input, is raised before any work, never decided here.)
    """
    if incomplete:
        return ExitCode.UNVERIFIED
    if findings:
        return ExitCode.FINDINGS
    if unverified:
        return ExitCode.UNVERIFIED
    return ExitCode.CLEAN
