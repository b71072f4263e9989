"""Lab settings and guard rails that need no root: mirrors, errors, the lock, inventory vars."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dualdc import inventory
from dualdc.lab import config, system
from dualdc.lab.errors import LabError
from dualdc.lab.lock import LabLock
from dualdc.loader import load_environment


def test_mirror_from_deb822_and_one_line_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUALDC_LAB_MIRROR", raising=False)
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "security.sources").write_text(textwrap.dedent("""\
        Types: deb
        URIs: http://mirror.example/debian-security
        Suites: bookworm-security
        Components: main
        """))
    (d / "debian.sources").write_text(textwrap.dedent("""\
        Types: deb deb-src
        # a comment
        URIs: http://mirror.example/debian
        Suites: bookworm bookworm-updates
        Components: main contrib
        Signed-By: /nonexistent/keyring.gpg
        """))
    (d / "old.list.disabled").write_text("deb http://ignored.example/debian bookworm main\n")
    sources = config.read_apt_sources((tmp_path / "sources.list", d))
    assert {s.uri for s in sources} == {"http://mirror.example/debian", "http://mirror.example/debian-security"}
    uri, _keyring = config.find_mirror("bookworm", sources)
    assert uri == "http://mirror.example/debian"

    line = "deb [signed-by=/k.gpg arch=amd64] http://one.example/d bookworm main\n"
    (tmp_path / "sources.list").write_text(line)
    one = config.read_apt_sources((tmp_path / "sources.list",))
    assert one[0].uri == "http://one.example/d" and one[0].signed_by == "/k.gpg"
    with pytest.raises(LabError, match="no apt source for Debian 'trixie'"):
        config.find_mirror("trixie", sources)


def test_mirror_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUALDC_LAB_MIRROR", "http://internal.example/debian")
    assert config.find_mirror("bookworm", [])[0] == "http://internal.example/debian"


def test_not_root_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        system.require_environment()


def test_missing_tool_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(LabError, match=r"apt-get install nftables"):
        system.require_environment({"nft-does-not-exist": "nftables"})


def test_lab_inventory_carries_ssh_vars_with_host_key_checking() -> None:
    built = inventory.build(load_environment("lab"))
    hv = built["hostvars"]["gj-bastion-01"]
    assert hv["ansible_ssh_private_key_file"] == str(config.private_key_path("lab"))
    assert Path(hv["ansible_ssh_private_key_file"]).is_absolute()
    args = hv["ansible_ssh_common_args"]
    assert f"UserKnownHostsFile={config.known_hosts_path('lab')}" in args
    assert "StrictHostKeyChecking=yes" in args


def test_lock_is_reentrant_in_process_and_exclusive_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "lab.lock"
    other = [sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from dualdc.lab.lock import LabLock
        from dualdc.lab.errors import LabError
        try:
            with LabLock(Path({str(path)!r}), timeout=0.5):
                print("acquired")
        except LabError as exc:
            print("busy" if "busy" in str(exc) else exc)
        """)]
    with LabLock(path):
        with LabLock(path):  # nested in the same process
            pass
        # A child process inherits the lock (its ancestor holds it).
        assert subprocess.run(other, capture_output=True, text=True, check=True).stdout.strip() == "acquired"
    assert subprocess.run(other, capture_output=True, text=True, check=True).stdout.strip() == "acquired"


def test_lock_excludes_a_process_that_is_not_a_descendant(tmp_path: Path) -> None:
    path = tmp_path / "lab.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from dualdc.lab.lock import LabLock
        with LabLock(Path({str(path)!r})):
            print("held", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LabError, match=r"the lab is busy: pid \d+"):
            LabLock(path, timeout=0.3).acquire()
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    with LabLock(path, timeout=2):
        pass
