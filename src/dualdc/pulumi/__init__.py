"""Pulumi Automation API for the dualdc stacks: preview, up, refresh and destroy.

See :mod:`dualdc.pulumi.automation`. Imported as ``dualdc.pulumi``; the SDK itself stays
the top-level ``pulumi`` package.
"""

from dualdc.pulumi.automation import (
    Operation,
    Outcome,
    PulumiFailed,
    PulumiUnavailable,
    StackRunner,
    backend_url,
    check_passphrase,
    find_cli,
    install_help,
)

__all__ = [
    "Operation",
    "Outcome",
    "PulumiFailed",
    "PulumiUnavailable",
    "StackRunner",
    "backend_url",
    "check_passphrase",
    "find_cli",
    "install_help",
]
