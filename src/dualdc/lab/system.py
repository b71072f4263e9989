"""Thin, checked wrappers around the Linux tools the lab drives, and /proc lookups.

Nothing here knows about the topology. Every command runs without a shell, with a time
limit; a failure raises :class:`LabError` naming the command and its error output.
Processes are identified by pid *and* start time, so a recycled pid is never mistaken for
a lab process.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualdc.base.proc import start_time, stat_fields
from dualdc.lab.errors import LabError

NETNS_DIR = Path("/run/netns")

#: Tool → the Debian package that provides it (for the error message).
TOOLS: dict[str, str] = {
    "ip": "iproute2",
    "bridge": "iproute2",
    "nft": "nftables",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
    "chroot": "coreutils",
    "mknod": "coreutils",
    "sysctl": "procps",
}
DEBOOTSTRAP = {"debootstrap": "debootstrap"}


def require_environment(tools: dict[str, str] | None = None) -> None:
    """Stop with a clear message unless this is Linux, we are root and the tools are installed."""
    if platform.system() != "Linux":
        raise LabError("the lab twin needs Linux (namespaces, bridges, overlayfs); "
                       f"this is {platform.system()}")
    if os.geteuid() != 0:
        raise LabError("the lab twin needs root (namespaces, bridges, mounts): "
                       "run it as root, e.g. with sudo")
    missing: dict[str, list[str]] = {}
    for tool, package in (tools or TOOLS).items():
        if shutil.which(tool) is None and not any(Path(d, tool).exists() for d in ("/usr/sbin", "/sbin")):
            missing.setdefault(package, []).append(tool)
    if missing:
        tools_text = ", ".join(t for ts in missing.values() for t in ts)
        raise LabError(f"missing tool(s) {tools_text}: install the Debian package(s) with "
                       f"'apt-get install {' '.join(sorted(missing))}' (or run ./scripts/bootstrap.sh)")
    if not Path("/proc/self/ns/net").exists():
        raise LabError("this kernel has no network namespaces (CONFIG_NET_NS)")


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; raise :class:`LabError` on a non-zero exit when ``check``."""
    try:
        proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout,
                              check=False, env=env)
    except FileNotFoundError:
        raise LabError(f"command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"command timed out after {timeout:.0f}s: {' '.join(argv)}") from None
    if check and proc.returncode != 0:
        detail = _tail(proc.stderr or proc.stdout)
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}\n{detail}")
    return proc


def ip(ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def ip_batch(ns: str | None, commands: Iterable[str]) -> int:
    """Run ``ip -batch`` in a namespace (or the root one); returns how many commands ran."""
    lines = [c for c in commands if c]
    if lines:
        run(["ip", *(["-n", ns] if ns else []), "-batch", "-"], input="\n".join(lines) + "\n")
    return len(lines)


def ip_json(ns: str | None, *args: str) -> list[dict[str, Any]]:
    out = run(["ip", "-j", *(["-n", ns] if ns else []), *args]).stdout.strip()
    data = json.loads(out) if out else []
    return data if isinstance(data, list) else []


def in_netns(ns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside a named network namespace (and nothing else)."""
    return ["nsenter", f"--net={NETNS_DIR / ns}", "--", *argv]


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def netns_list() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except OSError:
        return []


def sysctl(ns: str, values: dict[str, str]) -> None:
    """Set network sysctls inside a namespace."""
    run(in_netns(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())]))


def read_sysctl(ns: str, key: str) -> str | None:
    proc = run(in_netns(ns, ["sysctl", "-n", key]), check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Proc:
    """A process the lab started: pid plus kernel start time (survives pid reuse)."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        start = start_time(pid)
        return cls(pid, start) if start is not None else None

    def alive(self) -> bool:
        fields = stat_fields(self.pid)
        return bool(fields) and fields[0] != "Z" and int(fields[19]) == self.start  # type: ignore[index]

    def exists(self) -> bool:
        """Alive or a zombie not reaped yet."""
        fields = stat_fields(self.pid)
        return bool(fields) and int(fields[19]) == self.start  # type: ignore[index]

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: Any) -> Proc | None:
        if isinstance(data, dict) and isinstance(data.get("pid"), int) and isinstance(data.get("start"), int):
            return cls(data["pid"], data["start"])
        return None

    def kill(self, sig: int) -> bool:
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True


def wait_gone(procs: Iterable[Proc], timeout: float) -> bool:
    """Wait until none of the processes is alive (zombies count as gone)."""
    pending = list(procs)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [p for p in pending if p.alive()]
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def ns_inode_of(pid: int, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def processes_in(kind: str, inodes: set[int]) -> list[int]:
    """Pids of live processes inside any of the given namespaces (e.g. kind ``net``)."""
    found = []
    for pid in pids():
        if ns_inode_of(pid, kind) in inodes:
            fields = stat_fields(pid)
            if fields and fields[0] != "Z":
                found.append(pid)
    return found


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def tcp_listening(pid: int, port: int) -> bool:
    """Whether the network namespace of ``pid`` has a TCP socket listening on ``port``."""
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 3 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) of the root mount namespace (of this process)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        cols = line.split()
        if len(cols) >= 3:
            found.append((cols[1].replace("\\040", " "), cols[2]))
    return found
