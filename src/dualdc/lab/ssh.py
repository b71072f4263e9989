"""The lab's SSH material: one key pair per lab, every host's key in a known-hosts file.

Host key checking stays on: the lab inventory passes ``UserKnownHostsFile=<known_hosts>``
and ``StrictHostKeyChecking=yes`` to ssh (see :mod:`dualdc.inventory`). The private key
never leaves the state directory (mode 0600) and is never printed.
"""

from __future__ import annotations

import os
from pathlib import Path

from dualdc.base.files import write_atomic
from dualdc.lab import system


def ensure_keypair(private: Path, comment: str) -> bool:
    """Generate the lab's ed25519 key pair if missing. True if generated."""
    private.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(private.parent, 0o700)
    public = private.with_name(private.name + ".pub")
    if private.is_file() and public.is_file():
        return False
    private.unlink(missing_ok=True)
    public.unlink(missing_ok=True)
    system.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)])
    os.chmod(private, 0o600)
    return True


def public_key(private: Path) -> str:
    return private.with_name(private.name + ".pub").read_text().strip()


def known_hosts_text(entries: dict[str, tuple[list[str], str]]) -> str:
    """``entries``: host → (names and addresses, public key line ``type base64 [comment]``)."""
    lines = ["# dualdc lab: host keys collected by lab.up (one line per host)"]
    for host in sorted(entries):
        names, key = entries[host]
        kind, b64 = key.split()[:2]
        lines.append(f"{','.join(names)} {kind} {b64}")
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    write_atomic(path, text, mode=mode)
    return True


def ssh_config_text(private: Path, known_hosts: Path, hosts: dict[str, str], user: str) -> str:
    """An ssh_config for people: ``ssh -F <state>/ssh/config gj-bastion-01``."""
    lines = ["# dualdc lab: ssh -F this-file <host>", ""]
    for name in sorted(hosts):
        lines += [f"Host {name}", f"  HostName {hosts[name]}", f"  User {user}",
                  f"  IdentityFile {private}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {known_hosts}",
                  "  StrictHostKeyChecking yes", ""]
    return "\n".join(lines)
