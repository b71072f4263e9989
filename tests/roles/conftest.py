"""Fixtures of the role tests: the lab inventory's hostvars and a renderer for role templates.

:class:`Renderer` renders a role's template for one host the way the ``template`` action
does (Ansible's own Templar and environment, ``trim_blocks`` on, the role's defaults and
vars under the host's inventory variables), so the tests check the files the hosts get
without running a play.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from dualdc import inventory
from dualdc.loader import load_environment

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
#: Every role under roles/ (a role is a folder with tasks/main.yml): adding one needs no edit here.
ROLE_NAMES = tuple(sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").is_file()))
K8S_ROLES = ("k8s_control_plane", "k8s_worker")


def managed_string() -> str:
    """The ``ansible_managed`` text every run gets (a variable of ``all`` in the inventory)."""
    return inventory.MANAGED


def _trusted(value: Any) -> Any:
    """Role files are trusted templates in Ansible (inventory values are not)."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    if isinstance(value, dict):
        return {k: _trusted(v) for k, v in value.items()}
    return value


def _yaml(path: Path) -> dict[str, Any]:
    """A role's defaults or vars file, trusted as Ansible trusts role content."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return _trusted(data or {})


class Renderer:
    """Render role templates (and role variables) for hosts of an inventory."""

    def __init__(self, built: dict[str, Any]) -> None:
        self.built = built
        self.hostvars: dict[str, dict[str, Any]] = built["hostvars"]
        self.managed = managed_string()

    def groups_of(self, host: str) -> list[str]:
        return sorted(g for g, hosts in self.built["groups"].items() if host in hosts)

    def variables(
        self,
        role: str,
        host: str,
        overrides: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Role defaults < host variables < role vars < extra (as Ansible's precedence has it)."""
        merged: dict[str, Any] = {}
        merged.update(_yaml(ROLES / role / "defaults" / "main.yml"))
        merged.update(copy.deepcopy(self.hostvars[host]))
        merged.update(overrides or {})
        merged.update(_yaml(ROLES / role / "vars" / "main.yml"))
        merged.update(
            {
                "inventory_hostname": host,
                "group_names": self.groups_of(host),
                "ansible_check_mode": False,
                "ansible_managed": self.managed,
            }
        )
        merged.update(extra or {})
        return merged

    def templar(
        self,
        role: str,
        host: str,
        overrides: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Templar:
        base = Templar(loader=DataLoader(), variables=self.variables(role, host, overrides, extra))
        return base.copy_with_new_env(searchpath=[str(ROLES / role / "templates")])

    def var(self, role: str, host: str, name: str, overrides: dict[str, Any] | None = None) -> Any:
        """The value of a (role) variable for a host, templated."""
        templar = self.templar(role, host, overrides)
        return templar.template(templar.available_variables[name])

    def render(
        self, role: str, template: str, host: str, overrides: dict[str, Any] | None = None, **extra: Any
    ) -> str:
        """A role template rendered for a host, as the template module would write it."""
        text = (ROLES / role / "templates" / template).read_text(encoding="utf-8")
        templar = self.templar(role, host, overrides, extra)
        result: str = templar.template(
            trust_as_template(text),
            preserve_trailing_newlines=True,
            escape_backslashes=False,
            overrides={"trim_blocks": True, "lstrip_blocks": False},
        )
        return result


@pytest.fixture(scope="session")
def lab_inventory() -> dict[str, Any]:
    return inventory.build(load_environment("lab"))


@pytest.fixture(scope="session")
def renderer(lab_inventory: dict[str, Any]) -> Renderer:
    return Renderer(lab_inventory)


def is_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(
    not is_root() or not shutil.which("unshare"),
    reason="needs root and unshare (a scratch network namespace)",
)


@pytest.fixture
def netns() -> Iterator[str]:
    """A scratch network namespace (``ip netns``), removed afterwards."""
    if not is_root():
        pytest.skip("needs root for a network namespace")
    name = f"dualdc-roletest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
