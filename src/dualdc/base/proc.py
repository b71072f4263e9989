"""What ``/proc/<pid>/stat`` tells about a process: its state, parent and start time (and
``/proc/<pid>/cmdline``, its command line).

The command name (the second field) is in parentheses and may itself hold spaces and ``)``, so
the fields are split after the last ``)``. The start time (clock ticks since boot) tells a
re-used pid apart from the process that had it before.
"""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields after the command name (``[0]`` state, ``[1]`` parent, ``[19]`` start), None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    return fields if len(fields) > 19 else None


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), None if no such process."""
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except ValueError:
        return None


def parent(pid: int) -> int | None:
    """The parent of ``pid``, None if no such process."""
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def ancestors(pid: int) -> list[int]:
    """The parent, grandparent … of ``pid`` up to (not including) init."""
    chain: list[int] = []
    while pid > 1:
        up = parent(pid)
        if up is None:
            break
        chain.append(up)
        pid = up
    return chain


def all_parents() -> dict[int, int]:
    """Every process's parent (processes that end while this reads are left out)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            up = parent(int(entry.name))
            if up is not None:
                parents[int(entry.name)] = up
    return parents


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (or dead)."""
    fields = stat_fields(pid)
    return bool(fields) and fields[0] not in ("Z", "X")  # type: ignore[index]


def cmdline(pid: int) -> bytes | None:
    """The command line of ``pid`` as the kernel keeps it (NUL-separated), None if gone or empty."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw or None
