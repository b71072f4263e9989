"""The roles keep the house style (DESIGN §5), and ansible-lint's production profile passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROLE_NAMES, ROLES, ROOT


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _tasks(role: str) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((ROLES / role).glob("*/*.yml")):
        if path.parent.name not in ("tasks", "handlers"):
            continue
        for task in _load(path) or []:
            found.append((path, task))
            for inner in task.get("block", []) + task.get("rescue", []):
                found.append((path, inner))
    return found


def test_ansible_lint_production_profile_passes() -> None:
    config = _load(ROOT / ".ansible-lint")
    assert config["profile"] == "production"
    assert not config.get("skip_list") and not config.get("warn_list")
    lint = Path(sys.executable).parent / "ansible-lint"
    out = subprocess.run([str(lint), "--nocolor"], cwd=ROOT, capture_output=True, text=True, check=False,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in out.stderr


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_public_variables_are_prefixed_and_documented(role: str) -> None:
    defaults = _load(ROLES / role / "defaults" / "main.yml") or {}
    spec = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert all(name.startswith(f"{role}_") for name in defaults), sorted(defaults)
    assert set(defaults) <= set(spec), sorted(set(defaults) - set(spec))
    for name, option in spec.items():
        assert name.startswith(f"{role}_") and option.get("description"), name
        assert name in defaults or option.get("required"), f"{name} has neither a default nor required"
    vars_file = ROLES / role / "vars" / "main.yml"
    internal = (_load(vars_file) if vars_file.exists() else None) or {}
    assert all(name.startswith(f"_{role}_") for name in internal), sorted(internal)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_main_only_routes_to_phases(role: str) -> None:
    if [p.name for p in (ROLES / role / "tasks").glob("*.yml")] == ["main.yml"]:
        return  # a one-phase role (the shared package install): main.yml is that phase
    for task in _load(ROLES / role / "tasks" / "main.yml"):
        action = next(k for k in task if k.startswith("ansible.builtin."))
        # import_role: the shared package install (roles/packages), imported with the role's own list
        routing = ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks",
                   "ansible.builtin.import_role")
        assert action in routing, (role, task["name"])


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_handlers_are_guarded_in_check_mode(role: str) -> None:
    path = ROLES / role / "handlers" / "main.yml"
    for handler in (_load(path) or []) if path.exists() else []:
        when = handler.get("when", [])
        conditions = when if isinstance(when, list) else [when]
        assert "not ansible_check_mode" in conditions, (role, handler["name"])


def test_files_with_a_checker_are_validated() -> None:
    checkers = {"/etc/ssh/sshd_config": "sshd -t", "/etc/sudoers.d/dualdc-admins": "visudo -cf",
                "/etc/nftables.conf": "nft -c -f", "/etc/chrony/chrony.conf": "chronyd -p",
                "/etc/containerd/config.toml": "containerd --config"}
    seen = {}
    for role in ROLE_NAMES:
        for _, task in _tasks(role):
            args = task.get("ansible.builtin.template") or {}
            if args.get("dest") in checkers:
                seen[args["dest"]] = args.get("validate", "")
    assert set(seen) == set(checkers)
    for dest, checker in checkers.items():
        assert checker in seen[dest] and "%s" in seen[dest], dest


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_phase_has_a_phase_tag(role: str) -> None:
    """issue 13 item 7: --tags install|configure|service runs one phase of every role."""
    tasks = _load(ROLES / role / "tasks" / "main.yml")
    if [p.name for p in (ROLES / role / "tasks").glob("*.yml")] == ["main.yml"]:
        return
    for task in tasks:
        tags = task.get("tags", [])
        assert tags and set(tags) <= {"install", "configure", "service"}, (role, task["name"])
        action = task.get("ansible.builtin.include_tasks")
        if isinstance(action, dict):  # an include passes its tags on only through apply
            assert action.get("apply", {}).get("tags") == tags, (role, task["name"])


def test_no_role_keeps_a_copy_of_the_package_install() -> None:
    """One shared package install (roles/packages), imported by each role with its own list."""
    for role in ROLE_NAMES:
        for _, task in _tasks(role):
            # k8s_node and gpu_worker install from their own internal repository (pinned, held)
            own_repository = ("k8s_node", "gpu_worker")
            if "ansible.builtin.apt" in task and role not in ("packages", *own_repository):
                raise AssertionError(f"{role}: {task['name']} installs packages itself")
