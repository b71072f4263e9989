"""Fixtures of the collection tests: the tarball built once, installed once into an empty folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dualdc import collection as coll

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAB_SOURCE = ROOT / "inventories" / "lab" / "inventory.dualdc.yml"


def outside_env(collections: Path, **extra: str) -> dict[str, str]:
    """The environment of a user outside the repository: no ANSIBLE_* setting but the collection path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "DUALDC_"))}
    env["PATH"] = os.pathsep.join((str(BIN), env.get("PATH", "")))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    env["ANSIBLE_NOCOLOR"] = "True"
    env.update(extra)
    return env


def run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="session")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return coll.build(tmp_path_factory.mktemp("collection-build"))


@pytest.fixture(scope="session")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder the tarball was installed into (the ANSIBLE_COLLECTIONS_PATH)."""
    folder = tmp_path_factory.mktemp("collections")
    assert list(folder.iterdir()) == []
    coll.install(tarball, folder)
    return folder


def repo_graph() -> dict[str, Any]:
    """``ansible-inventory -i inventories/lab --list`` from the repository root, as today."""
    done = subprocess.run([str(BIN / "ansible-inventory"), "-i", "inventories/lab", "--list"],
                          cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    return dict(json.loads(done.stdout))


def groups_and_hosts(listing: dict[str, Any]) -> dict[str, set[str]]:
    """Each group's own hosts and child groups (the shape --graph draws)."""
    return {
        name: set(body.get("hosts", [])) | {f"@{c}" for c in body.get("children", [])}
        for name, body in listing.items()
        if name != "_meta"
    }
