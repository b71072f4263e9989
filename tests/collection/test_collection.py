"""The jbfg.dualdc collection: assembled from the repository's files, built, installed, used outside.

The built tarball is installed with ``ansible-galaxy collection install --offline`` into an
empty folder, and every run here then happens from a temporary working directory with no
ansible.cfg (``ANSIBLE_CONFIG`` unset), so only the installed collection can answer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dualdc import collection as coll

from .conftest import BIN, LAB_SOURCE, groups_and_hosts, outside_env, repo_graph, run

ROOT = Path(__file__).resolve().parents[2]


# --- the layout -------------------------------------------------------------------------------


def test_every_role_and_plugin_is_in_the_collection_under_its_layout() -> None:
    targets = {e.target.as_posix(): e.source.as_posix() for e in coll.plan()}
    for role in (ROOT / "roles").iterdir():
        assert f"roles/{role.name}/tasks/main.yml" in targets
        assert f"roles/{role.name}/meta/argument_specs.yml" in targets
        for module in (role / "library").glob("*.py"):
            assert targets[f"plugins/modules/{module.name}"] == f"roles/{role.name}/library/{module.name}"
    assert not any("/library/" in t for t in targets)  # collection roles cannot carry plugins
    assert targets["plugins/inventory/dualdc.py"] == "plugins/inventory/dualdc.py"
    package = "src/dualdc/ansible"
    assert targets["plugins/strategy/dualdc_free.py"] == f"{package}/strategy_plugins/dualdc_free.py"
    assert targets["plugins/callback/dualdc_skips.py"] == f"{package}/callback_plugins/dualdc_skips.py"
    assert targets["meta/runtime.yml"] == "collection/meta/runtime.yml"
    assert targets["playbooks/site.yml"] == "playbooks/site.yml"
    assert not any(t.endswith(("__init__.py", ".pyc")) for t in targets)


def _mini_repo(root: Path) -> None:
    (root / "collection").mkdir()
    shutil.copy2(ROOT / "collection" / "galaxy.yml", root / "collection" / "galaxy.yml")
    for role in ("base", "postgresql"):
        (root / "roles" / role / "tasks").mkdir(parents=True)
        (root / "roles" / role / "tasks" / "main.yml").write_text("---\n[]\n", encoding="utf-8")
    (root / "roles" / "postgresql" / "library").mkdir()
    (root / "roles" / "postgresql" / "library" / "dualdc_pg.py").write_text("# module\n", encoding="utf-8")


def test_a_new_role_or_module_is_picked_up_without_touching_the_assembly(tmp_path: Path) -> None:
    _mini_repo(tmp_path)
    tree = coll.assemble(tmp_path / "out", root=tmp_path)
    assert (tree / "roles" / "postgresql" / "tasks" / "main.yml").is_file()
    assert (tree / "plugins" / "modules" / "dualdc_pg.py").read_text(encoding="utf-8") == "# module\n"
    assert not (tree / "roles" / "postgresql" / "library").exists()


def test_two_files_for_one_place_are_refused(tmp_path: Path) -> None:
    _mini_repo(tmp_path)
    (tmp_path / "roles" / "base" / "library").mkdir()
    (tmp_path / "roles" / "base" / "library" / "dualdc_pg.py").write_text("# other\n", encoding="utf-8")
    with pytest.raises(coll.CollectionError, match=r"plugins/modules/dualdc_pg.py: from both roles/base"):
        coll.plan(tmp_path)


def test_assembly_replaces_an_older_tree(tmp_path: Path) -> None:
    _mini_repo(tmp_path)
    tree = coll.assemble(tmp_path / "out", root=tmp_path)
    (tree / "roles" / "gone").mkdir()
    coll.assemble(tmp_path / "out", root=tmp_path)
    assert not (tree / "roles" / "gone").exists()


def test_the_collection_version_is_the_python_package_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert coll.galaxy()["version"] == pyproject["project"]["version"]
    runtime = yaml.safe_load((ROOT / "collection" / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    assert runtime["requires_ansible"].startswith(">=2.19")


def test_the_tarball_holds_the_repository_files_unchanged(tarball: Path) -> None:
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())  # type: ignore[union-attr]
        inventory = tar.extractfile("plugins/inventory/dualdc.py").read()  # type: ignore[union-attr]
    assert manifest["collection_info"]["namespace"] == "jbfg"
    assert manifest["collection_info"]["name"] == "dualdc"
    assert {"roles/base/tasks/main.yml", "plugins/modules/dualdc_nft_table.py",
            "plugins/modules/dualdc_sysctl.py", "plugins/strategy/dualdc_free.py"} <= names
    assert inventory == (ROOT / "plugins" / "inventory" / "dualdc.py").read_bytes()


# --- installed, used from outside the repository -------------------------------------------------


def test_ansible_doc_finds_every_plugin_by_its_fqcn(installed: Path, tmp_path: Path) -> None:
    env = outside_env(installed)
    for kind, name in (("inventory", "dualdc"), ("module", "dualdc_nft_table"), ("module", "dualdc_sysctl"),
                       ("strategy", "dualdc_free"), ("callback", "dualdc_skips")):
        done = run([str(BIN / "ansible-doc"), "-t", kind, "--json", f"jbfg.dualdc.{name}"], tmp_path, env)
        assert done.returncode == 0, done.stderr
        assert f"jbfg.dualdc.{name}" in json.loads(done.stdout)


@pytest.mark.parametrize("marker", ["dualdc", "jbfg.dualdc.dualdc"])
def test_inventory_graph_outside_the_repository_matches_the_repository(
    installed: Path, tmp_path: Path, marker: str
) -> None:
    topology = tmp_path / "lab"
    shutil.copytree(ROOT / "inventories" / "lab", topology)
    source = topology / "inventory.dualdc.yml"
    extra = {}
    if marker == "dualdc":  # the repository's marker file as it is: enable the plugin by name
        extra["ANSIBLE_INVENTORY_ENABLED"] = "jbfg.dualdc.dualdc"
    else:  # a marker naming the collection's plugin: Ansible's default 'auto' finds it
        source.write_text(source.read_text(encoding="utf-8").replace("plugin: dualdc", f"plugin: {marker}"),
                          encoding="utf-8")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = outside_env(installed, **extra)
    graph = run([str(BIN / "ansible-inventory"), "-i", str(source), "--graph"], cwd, env)
    assert graph.returncode == 0, graph.stderr
    assert "|--@site_gwangju:" in graph.stdout and "|--gj-log-01" in graph.stdout
    listing = run([str(BIN / "ansible-inventory"), "-i", str(source), "--list"], cwd, env)
    assert groups_and_hosts(json.loads(listing.stdout)) == groups_and_hosts(repo_graph())


def test_an_invalid_topology_fails_readably_through_the_collection(installed: Path, tmp_path: Path) -> None:
    topology = tmp_path / "lab"
    shutil.copytree(ROOT / "inventories" / "lab", topology)
    hosts = next(p for p in sorted(topology.glob("*.yaml")) if "hosts:" in p.read_text(encoding="utf-8"))
    hosts.write_text(hosts.read_text(encoding="utf-8") + "\nbogus_key: 1\n", encoding="utf-8")
    env = outside_env(installed, ANSIBLE_INVENTORY_ENABLED="jbfg.dualdc.dualdc",
                      ANSIBLE_INVENTORY_UNPARSED_FAILED="True")
    done = run([str(BIN / "ansible-inventory"), "-i", str(topology / "inventory.dualdc.yml"), "--list"],
               tmp_path, env)
    assert done.returncode != 0
    assert "invalid topology" in done.stderr and hosts.name in done.stderr and "bogus_key" in done.stderr
    assert "Traceback" not in done.stderr


PLAY = """\
- name: The collection's strategy, callback and module
  hosts: localhost
  gather_facts: false
  strategy: jbfg.dualdc.dualdc_free
  tasks:
    - name: A task skipped by its condition
      ansible.builtin.debug:
        msg: never
      when: false

    - name: Read a kernel parameter with the collection's module (check mode writes nothing)
      jbfg.dualdc.dualdc_sysctl:
        values:
          kernel.hostname: not-this-host
        prefixes: ['kernel.hostname']
      check_mode: true
      register: sysctl

    - name: The module saw the difference and wrote nothing
      ansible.builtin.assert:
        that:
          - sysctl is changed
          - sysctl.changed_keys == ['kernel.hostname']
"""


def test_strategy_callback_and_module_by_fqcn(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "play.yml").write_text(PLAY, encoding="utf-8")
    skips = tmp_path / "skips.jsonl"
    hostname = Path("/proc/sys/kernel/hostname").read_text(encoding="utf-8")
    env = outside_env(installed, ANSIBLE_CALLBACKS_ENABLED="jbfg.dualdc.dualdc_skips",
                      DUALDC_SKIPS_FILE=str(skips))
    done = run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                "-e", f"ansible_python_interpreter={sys.executable}", "play.yml"], tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed=0" in done.stdout
    assert Path("/proc/sys/kernel/hostname").read_text(encoding="utf-8") == hostname
    records = [json.loads(line) for line in skips.read_text(encoding="utf-8").splitlines()]
    assert [r["task"] for r in records] == ["A task skipped by its condition"]


BASE_PLAY = """\
- name: Base OS from the installed collection, in check mode
  hosts: "{{ target }}"
  gather_facts: false
  roles:
    - role: jbfg.dualdc.base
"""


def test_check_mode_play_with_the_base_role_on_localhost(installed: Path, tmp_path: Path) -> None:
    """jbfg.dualdc.base in check mode on this machine (connection local), with one lab host's variables."""
    (tmp_path / "play.yml").write_text(BASE_PLAY, encoding="utf-8")
    env = outside_env(installed, ANSIBLE_INVENTORY_ENABLED="jbfg.dualdc.dualdc")
    before = Path("/etc/ssh/sshd_config").read_bytes() if Path("/etc/ssh/sshd_config").exists() else None
    done = run([str(BIN / "ansible-playbook"), "-i", str(LAB_SOURCE),
                "--check", "-e", "target=gj-log-01", "-e", "ansible_connection=local",
                "-e", f"ansible_python_interpreter={sys.executable}", "play.yml"], tmp_path, env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "TASK [jbfg.dualdc.base : " in done.stdout
    assert "gj-log-01" in done.stdout and "failed=0" in done.stdout
    after = Path("/etc/ssh/sshd_config").read_bytes() if Path("/etc/ssh/sshd_config").exists() else None
    assert before == after  # check mode changed nothing


def test_the_collections_site_playbook_lists_every_role(installed: Path, tmp_path: Path) -> None:
    env = outside_env(installed, ANSIBLE_INVENTORY_ENABLED="jbfg.dualdc.dualdc")
    done = run([str(BIN / "ansible-playbook"), "-i", str(LAB_SOURCE),
                "jbfg.dualdc.site", "--list-tasks", "--limit", "gj-core-wk-01"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    for role in ("base", "time_sync", "firewall", "audit", "network"):
        assert f"jbfg.dualdc.{role} : " in done.stdout


def test_ansible_test_sanity_passes_on_the_installed_collection(installed: Path) -> None:
    out = coll.sanity(coll.tree(installed))
    assert 'Running sanity test "shebang"' in out and 'Running sanity test "compile"' in out
    assert "ERROR" not in out


def test_sanity_refuses_a_collection_outside_the_ansible_collections_layout(tmp_path: Path) -> None:
    with pytest.raises(coll.CollectionError, match="ansible_collections/jbfg/dualdc"):
        coll.sanity(tmp_path)


# --- on the lab twin -----------------------------------------------------------------------------


@pytest.mark.lab
def test_check_mode_play_with_the_base_role_against_the_lab(
    lab: Any, installed: Path, tmp_path: Path
) -> None:
    (tmp_path / "play.yml").write_text(BASE_PLAY, encoding="utf-8")
    env = outside_env(installed, ANSIBLE_INVENTORY_ENABLED="jbfg.dualdc.dualdc")
    done = run([str(BIN / "ansible-playbook"), "-i", str(LAB_SOURCE),
                "--check", "--diff", "-e", "target=site_gwangju:&role_ntp", "play.yml"],
               tmp_path, env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "TASK [jbfg.dualdc.base : " in done.stdout
    assert "unreachable=0" in done.stdout and "failed=0" in done.stdout


def test_invoke_collection_errors_exit_1_with_one_readable_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "invoke", "collection", "--out", str(blocker / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and str(blocker) in done.stderr
    assert "Traceback" not in done.stderr
