"""A last line of defence against secrets in what dualdc writes (audit, reports, logs).

The first lines are elsewhere: Ansible tasks that handle secrets use ``no_log`` and Pulumi
keeps secrets as encrypted config. Here every text dualdc writes passes through
:func:`scrub`, which replaces the values of secret-looking environment variables (the
Pulumi passphrase, vault passwords, tokens) and any value registered with :func:`register`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MASK = "********"
#: Environment variable names whose values are secrets.
SECRET_NAME = re.compile(r"(PASSPHRASE|PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|ACCESS_KEY|CREDENTIAL|"
                         r"VAULT_PASS|API_KEY)", re.IGNORECASE)
#: Shorter values are too likely to occur by chance to be masked meaningfully.
MIN_SECRET_LENGTH = 6

_registered: set[str] = set()


def register(values: Iterable[str]) -> None:
    """Mask these values too from now on (e.g. a secret read from a file)."""
    _registered.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The values to mask, longest first (so a secret containing another is masked whole)."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
    found |= _registered
    return sorted(found, key=len, reverse=True)


def scrub(text: str, environ: dict[str, str] | None = None) -> str:
    """``text`` with every known secret value replaced by a mask."""
    for value in secret_values(environ):
        if value in text:
            text = text.replace(value, MASK)
    return text
