"""The one scrubbing every text dualdc shows or writes passes through (errors, reports, logs, audit).

It sits at the bottom of the package (it imports nothing of dualdc), so the loader, the
command line and the operations can all use it; it lives in :mod:`dualdc.base`.

:func:`scrub` masks

- the values of secret-looking environment variables (the Pulumi passphrase, vault
  passwords, tokens) and any value registered with :func:`register`;
- the shapes of secrets wherever they appear: password hashes (crypt ``$id$…``, bcrypt),
  PEM private keys, the password of a URL's ``user:password@``, ``password=…``-style
  assignments and well-known token formats.

:func:`shorten` cuts a value for a message (a 5,000-digit number is not echoed whole), and
:func:`clean` does both for a message shown to people.
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
#: Longest value a message quotes; longer ones are cut in the middle.
MAX_VALUE_CHARS = 80
#: Longest line of a message shown to people.
MAX_LINE_CHARS = 400

#: Secret shapes: (pattern, replacement). Each keeps enough context to say what was masked.
SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys (RSA, EC, OpenSSH, PKCS#8, encrypted), whole blocks or a truncated start
    (re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S),
     r"-----BEGIN \1PRIVATE KEY----- " + MASK),
    # crypt(3) hashes as in /etc/shadow: $1$, $5$, $6$, $y$ (yescrypt), $2b$ (bcrypt), $argon2…$
    (re.compile(r"\$(1|2[abxy]?|5|6|y|gy|7|sha1|md5|argon2(id|i|d)?)\$[^\s:'\"]{8,}"), "$" + MASK),
    # the password of user:password@host in a URL
    (re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s:/@'\"]*):(?P<pw>[^\s/@'\"]+)@"),
     r"\g<scheme>\g<user>:" + MASK + "@"),
    # password=…, secret: …, token=… (also inside quotes)
    (re.compile(r"(?i)\b(pass(word|wd|phrase)?|pwd|secret|token|api[_-]?key|private[_-]?key|credentials?)"
                r"(\s*[:=]\s*)(['\"]?)[^\s'\",;}]{3,}"),
     r"\1\3\4" + MASK),
    # well-known token formats: AWS access keys, GitHub and GitLab tokens, JWTs
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9_-]{20,})\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
)

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
    """``text`` with every known secret value and every secret shape replaced by a mask."""
    for value in secret_values(environ):
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in SHAPES:
        text = pattern.sub(replacement, text)
    return text


def shorten(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` cut in the middle to at most about ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = max(limit // 2 - 10, 4)
    return f"{text[:keep]}…({len(text) - 2 * keep} characters cut)…{text[-keep:]}"


def shown(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """A value as a message quotes it: its repr, scrubbed and shortened (safe for huge integers)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        digits = len(str(abs(value))) if value.bit_length() < 13000 else value.bit_length() * 30103 // 100000
        return f"<an integer of about {digits} digits>"
    if isinstance(value, str) and len(value) > 10 * limit:
        value = value[: 10 * limit]
    try:
        text = repr(value)
    except ValueError:  # e.g. an integer too long to convert
        text = f"<a {type(value).__name__}>"
    return shorten(scrub(text), limit)


def clean(message: str, max_line: int = MAX_LINE_CHARS) -> str:
    """A message for people: scrubbed, and every line at most ``max_line`` characters."""
    return "\n".join(shorten(line, max_line) for line in scrub(message).split("\n"))
