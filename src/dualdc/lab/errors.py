"""The lab's one exception type: a message for people and an exit code (DESIGN §6)."""

from __future__ import annotations


class LabError(Exception):
    """A lab operation could not be done; ``str(exc)`` says why and what to do.

    ``code`` follows :class:`dualdc.cli.ExitCode`: 1 for a usage, input or environment
    problem (not root, a tool missing, …), 3 when something could not be verified.
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
