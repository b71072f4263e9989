"""The execution environment's build context, and the inventory source as AWX runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

from dualdc import collection as coll

from .conftest import groups_and_hosts, repo_graph

ROOT = Path(__file__).resolve().parents[2]


def test_ansible_builder_creates_the_build_context(tmp_path: Path) -> None:
    definition = yaml.safe_load((ROOT / coll.EE_DEFINITION).read_text(encoding="utf-8"))
    assert definition["version"] == 3
    context = coll.ee_context(tmp_path / "ee")
    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    build = context / "_build"
    # the collection: the tarball of this repository, installed by the galaxy stage
    with tarfile.open(build / "collections" / "jbfg-dualdc.tar.gz") as tar:
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())  # type: ignore[union-attr]
        assert "roles/base/tasks/main.yml" in tar.getnames()
    assert manifest["collection_info"]["version"] == coll.galaxy()["version"]
    galaxy = yaml.safe_load((build / "requirements.yml").read_text(encoding="utf-8"))
    assert galaxy["collections"] == [{"name": "collections/jbfg-dualdc.tar.gz", "type": "file"}]
    assert "ansible-galaxy collection install" in containerfile and "-r requirements.yml" in containerfile
    # dualdc's Python package: its wheel in the context, found by pip through PIP_FIND_LINKS
    (wheel,) = (build / "wheels").glob("dualdc-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        assert "dualdc/inventory.py" in whl.namelist() and "dualdc/loader.py" in whl.namelist()
    assert "dualdc==" in (build / "requirements.txt").read_text(encoding="utf-8")
    assert "COPY _build/wheels/ /build/wheels/" in containerfile
    assert "ENV PIP_FIND_LINKS=/build/wheels" in containerfile
    # the engine and the system packages
    assert "ansible-core>=2.19.4,<2.20" in containerfile and "ansible-runner" in containerfile
    assert "openssh-clients [platform:rpm]" in (build / "bindep.txt").read_text(encoding="utf-8")
    assert containerfile.index("FROM base AS galaxy") < containerfile.index("FROM base AS final")


def test_the_ee_pins_the_same_ansible_core_as_the_package() -> None:
    definition = yaml.safe_load((ROOT / coll.EE_DEFINITION).read_text(encoding="utf-8"))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"{definition["dependencies"]["ansible_core"]["package_pip"]}"' in pyproject


def test_awx_inventory_update_through_ansible_runner(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As AWX runs an inventory sourced from a project: ansible-inventory in a runner private_data_dir.

    The project holds only the topology files; the plugin comes from the installed collection.
    """
    for key in list(os.environ):
        if key.startswith(("ANSIBLE_", "DUALDC_")):
            monkeypatch.delenv(key)
    private = tmp_path / "runner"
    project = private / "project"
    shutil.copytree(ROOT / "inventories" / "lab", project / "inventories" / "lab")
    assert sorted(p.name for p in (project / "inventories" / "lab").iterdir()) == sorted(
        p.name for p in (ROOT / "inventories" / "lab").iterdir()
    )
    envvars = {
        "ANSIBLE_COLLECTIONS_PATH": str(installed),
        "ANSIBLE_INVENTORY_ENABLED": "jbfg.dualdc.dualdc",
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
    }
    # The venv's ansible-inventory, as the EE's is on its PATH.
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join((venv_bin, os.environ.get("PATH", ""))))
    response, error = ansible_runner.get_inventory(
        action="list",
        inventories=["inventories/lab/inventory.dualdc.yml"],
        response_format="json",
        private_data_dir=str(private),
        host_cwd=str(project),
        envvars=envvars,
        quiet=True,
    )
    assert not error, error
    listing: dict[str, Any] = response if isinstance(response, dict) else json.loads(response)
    assert groups_and_hosts(listing) == groups_and_hosts(repo_graph())
    site = listing["_meta"]["hostvars"]["gj-log-01"]["dualdc_site"]
    # --export marks strings from the plugin as unsafe ({"__ansible_unsafe": ...}); AWX reads either.
    assert (site.get("__ansible_unsafe") if isinstance(site, dict) else site) == "gwangju"


def test_the_awx_drift_playbook_runs_invoke_drift_from_the_checkout(tmp_path: Path) -> None:
    """The job template's playbook finds tasks.py and fails the job on invoke drift's exit code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["AWX_PRIVATE_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "playbooks/awx/drift.yml",
         "-e", "dualdc_drift_env=no-such-env"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 2  # the play failed
    assert "invoke drift exited 1" in done.stdout
    assert "no-such-env" in done.stdout  # invoke's own input error, so tasks.py was found
    assert "Traceback" not in done.stdout


def test_the_awx_playbooks_are_not_packed_into_the_collection() -> None:
    targets = {e.target.as_posix() for e in coll.plan()}
    assert "playbooks/site.yml" in targets
    assert not any(t.startswith("playbooks/awx") or t.endswith("drift.yml") for t in targets)
