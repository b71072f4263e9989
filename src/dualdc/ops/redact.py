"""Compatibility: the scrubbing moved to :mod:`dualdc.redact` (usable below ``ops``); same names here."""

from __future__ import annotations

from dualdc.redact import (
    MASK,
    MIN_SECRET_LENGTH,
    SECRET_NAME,
    SHAPES,
    clean,
    register,
    scrub,
    secret_values,
    shorten,
    shown,
)

__all__ = ["MASK", "MIN_SECRET_LENGTH", "SECRET_NAME", "SHAPES", "clean", "register", "scrub",
           "secret_values", "shorten", "shown"]
