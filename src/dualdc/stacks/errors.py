"""The one error the stack programs raise for a topology they cannot turn into resources."""

from __future__ import annotations


class StackError(Exception):
    """The topology is valid but a stack cannot be built from it; :attr:`problems` says why.

    Each problem names the model entities involved and what to change. The tasks print them
    and exit 1; under the Pulumi engine the program stops with them as a ``RunError``.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(self.problems))
