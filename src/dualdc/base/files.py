"""Atomic file writes: a temporary file beside the target, renamed over it.

A reader (another run, a CI job collecting artifacts) sees the old file or the new one, never
half of one. The temporary name carries the process id, so two writers never share it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, *, mode: int | None = None, keep_mode: bool = False) -> Path:
    """Replace ``path`` with ``data`` atomically and return it.

    ``mode`` sets the file's permissions (the temporary file is created with them, so a secret
    is never readable by others, not even for a moment); ``keep_mode`` keeps those of the file
    being replaced (default 0644 for a new one). Creates the parent folder. On failure the
    temporary file is removed and the :class:`OSError` raised; the target is untouched.
    """
    if keep_mode and mode is None:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            mode = 0o644
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # without a mode, the process's umask decides, as for any new file
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
        if mode is not None:
            os.chmod(tmp, mode)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return path

