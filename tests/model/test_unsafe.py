"""Strings of the model are data, never code: proven with the real ``ansible-playbook``.

Every string field of the model (found by walking the pydantic models, so a new field is
covered without touching this test) gets a template that would run a command on the
controller: ``{{ lookup('pipe', 'touch <canary>') }}``. The model either refuses the value
(a readable TopologyError), or accepts it; every accepted one is then put into one topology
at once and run through the inventory plugin and ``ansible-playbook`` (connection local,
into a temporary folder), rendering the hostvars and the roles' own templates that read
model strings. The values that reach the hostvars must come out literally, and no canary
file may exist afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from dualdc import inventory
from dualdc.loader import load_topology
from dualdc.model import Topology, entity_in

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "inventories" / "lab"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICgdYrVc0AWnBeuHbHSQH/lNWyY+4y41wNUHN2x528po"


def _string_kinds(annotation: Any) -> tuple[bool, bool]:
    """(holds a plain str, as a list) for a field annotation; enums and literals are not free strings."""
    origin = typing.get_origin(annotation)
    if annotation is str:
        return True, False
    if origin is typing.Annotated:
        return _string_kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found = [_string_kinds(a) for a in typing.get_args(annotation)]
        return any(f[0] for f in found), any(f[1] for f in found)
    if origin is list:
        inner, _ = _string_kinds(typing.get_args(annotation)[0])
        return inner, inner
    return False, False


def string_fields(
    cls: type[BaseModel] = Topology, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], bool]]:
    """Every string field of the model as (path of field names, is a list), entities walked recursively."""
    found: list[tuple[tuple[str, ...], bool]] = []
    for name, info in cls.model_fields.items():
        nested = entity_in(info.annotation)
        if nested is not None:
            found += string_fields(nested, (*prefix, name))
            continue
        is_str, is_list = _string_kinds(info.annotation)
        if is_str:
            found.append(((*prefix, name), is_list))
    return found


FIELDS = string_fields()


def _lab_documents(folder: Path) -> dict[str, dict[str, Any]]:
    """The lab's YAML documents, plus a waiver and an exemption (the lab has none) so their fields are
    tried too."""
    docs = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.yaml"))}
    waiver = {"rule": "NS-01", "target": "flow:x", "reason": "a reason long enough",
              "approval": "ISC-2026-01",
              "expires": "2099-01-01"}
    exemption = {"name": "sandbox", "kind": "sandbox", "provision": "전자금융감독규정 제15조",
                 "provision_edition": "2025-02-05",
                 "flows": ["kj-pseudonymiser-to-ai"], "approval": "FSC-2025-01", "approved_on": "2025-01-01",
                 "risk_assessment": "RA-2025-01", "alternative_controls": ["별표7 monitoring"],
                 "expires": "2099-01-01",
                 "ai_service": {"endpoint": "llm.example:443", "model": "m", "model_version": "1"}}
    docs["waivers.yaml"] = {"waivers": [waiver], "exemptions": [exemption]}
    return docs


def _first(node: Any) -> Any:
    return node[0] if isinstance(node, list) else node


def _place(docs: dict[str, dict[str, Any]], path: tuple[str, ...], value: Any) -> bool:
    """Set ``path`` (section, then nested fields, first item of each list) in the documents."""
    for doc in docs.values():
        if path[0] not in doc:
            continue
        node = _first(doc[path[0]])
        for part in path[1:-1]:
            if part not in node or node[part] is None:
                return False
            node = _first(node[part])
        if not isinstance(node, dict):
            return False
        node[path[-1]] = value
        return True
    return False


def _payload(path: tuple[str, ...], canary_dir: Path) -> str:
    canary = canary_dir / ("canary-" + "-".join(path))
    text = "{{ lookup('pipe', 'touch " + str(canary) + "') }}"
    return f"{KEY} {text}" if path[-1] == "ssh_public_key" else text


def _write(docs: dict[str, dict[str, Any]], folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copy(LAB / "inventory.dualdc.yml", folder / "inventory.dualdc.yml")
    for name, doc in docs.items():
        (folder / name).write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


PLAYBOOK = """
- name: Render what the hosts would get, on the controller
  hosts: all
  connection: local
  gather_facts: false
  tasks:
    - name: Every model variable of the host
      ansible.builtin.copy:
        content: "{{ hostvars[inventory_hostname] | dict2items
                     | selectattr('key', 'match', '^(dualdc_|ansible_user)') | items2dict | to_nice_json }}"
        dest: "{{ out }}/{{ inventory_hostname }}.json"
        mode: "0600"

    - name: The roles' variables
      ansible.builtin.include_vars:
        file: "{{ root }}/roles/{{ item }}/defaults/main.yml"
      loop: [base, firewall, container_runtime, network]

    - name: The network role's variables
      ansible.builtin.include_vars:
        file: "{{ root }}/roles/network/vars/main.yml"

    - name: The roles' templates that read model strings
      ansible.builtin.template:
        src: "{{ root }}/roles/{{ item }}"
        dest: "{{ out }}/{{ inventory_hostname }}-{{ item | basename }}"
        mode: "0600"
      loop:
        - base/templates/dualdc.sources.j2
        - base/templates/sudoers.j2
        - firewall/templates/table.nft.j2

    - name: The registry mirror of containerd
      ansible.builtin.template:
        src: "{{ root }}/roles/container_runtime/templates/hosts.toml.j2"
        dest: "{{ out }}/{{ inventory_hostname }}-hosts.toml"
        mode: "0600"
      vars:
        item: docker.io

    - name: The network files, by the network role itself
      ansible.builtin.include_role:
        name: network
        tasks_from: files.yml
      vars:
        network_config_dir: "{{ out }}/{{ inventory_hostname }}-network"
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Which string fields the model refuses the template in, and the run of everything it accepted."""
    base = tmp_path_factory.mktemp("unsafe")
    canaries = base / "canaries"
    canaries.mkdir()
    refused: dict[tuple[str, ...], str] = {}
    accepted: dict[tuple[str, ...], str] = {}
    unplaced: list[tuple[str, ...]] = []
    for path, is_list in FIELDS:
        docs = _lab_documents(LAB)
        payload = _payload(path, canaries)
        if not _place(docs, path, [payload] if is_list else payload):
            unplaced.append(path)
            continue
        # The shape of a field is judged by its entity: validate just the one holding the value.
        entity = entity_in(Topology.model_fields[path[0]].annotation)
        assert entity is not None
        raw = next(_first(d[path[0]]) for d in docs.values() if path[0] in d)
        try:
            entity.model_validate(raw)
        except ValidationError as exc:
            refused[path] = str(exc)
        else:
            accepted[path] = payload
    docs = _lab_documents(LAB)
    for path, payload in accepted.items():
        is_list = dict(FIELDS)[path]
        assert _place(docs, path, [payload] if is_list else payload)
    env = base / "all"
    _write(docs, env)
    topology = load_topology(env)
    built = json.dumps(inventory.build(topology), ensure_ascii=False)
    reaching = {p: v for p, v in accepted.items() if json.dumps(v, ensure_ascii=False)[1:-1] in built}
    out = base / "out"
    out.mkdir()
    (base / "site.yml").write_text(PLAYBOOK, encoding="utf-8")
    # the hosts that get each value that reaches hostvars, and a Kubernetes node (containerd)
    hosts = {next(h.name for h in topology.hosts if h.cluster)}
    for value in reaching.values():
        quoted = json.dumps(value, ensure_ascii=False)[1:-1]
        hosts.add(next(h for h, hv in inventory.build(topology)["hostvars"].items()
                       if quoted in json.dumps(hv, ensure_ascii=False)))
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(env), str(base / "site.yml"),
         "--limit", ",".join(sorted(hosts)), "--forks", "10",
         "-e", json.dumps({"out": str(out), "root": str(ROOT),
                           "ansible_python_interpreter": sys.executable})],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANSIBLE_DEPRECATION_WARNINGS": "False"},
    )
    return {"refused": refused, "accepted": accepted, "reaching": reaching, "unplaced": unplaced,
            "run": run, "out": out, "canaries": canaries, "hosts": sorted(hosts)}


def test_every_string_field_is_enumerated() -> None:
    paths = {p for p, _ in FIELDS}
    # a few that the issue names, so the walk cannot silently find nothing
    for expected in [("hosts", "rack"), ("environment", "ssh_user"), ("environment", "mirrors", "apt"),
                     ("environment", "mirrors", "registry"), ("hosts", "interfaces", "members"),
                     ("hosts", "interfaces", "parent"), ("environment", "admins", "ssh_public_key"),
                     ("flows", "purpose"), ("links", "carrier"), ("tenants", "admin_groups")]:
        assert expected in paths


def test_every_string_field_was_tried(hostile: dict[str, Any]) -> None:
    assert hostile["unplaced"] == []
    assert set(hostile["refused"]) | set(hostile["accepted"]) == {p for p, _ in FIELDS}


def test_names_devices_users_urls_and_registries_refuse_templates(hostile: dict[str, Any]) -> None:
    for path, message in hostile["refused"].items():
        assert path[-1] in message, (path, message)
    # names, devices, users, URLs and registries take no template syntax at all
    for path in [("hosts", "rack"), ("environment", "ssh_user"), ("environment", "mirrors", "apt"),
                 ("environment", "mirrors", "registry"), ("hosts", "interfaces", "members"),
                 ("hosts", "interfaces", "parent"), ("hosts", "name")]:
        assert path in hostile["refused"], path


def test_no_template_from_the_model_ever_runs(hostile: dict[str, Any]) -> None:
    run = hostile["run"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert list(hostile["canaries"].iterdir()) == []


def test_accepted_templates_reach_the_output_literally(hostile: dict[str, Any]) -> None:
    reaching = hostile["reaching"]
    # free text reaches the hosts: the admin key's comment (authorized_keys) and a flow's purpose
    assert ("environment", "admins", "ssh_public_key") in reaching
    assert ("flows", "purpose") in reaching
    rendered = "".join(p.read_text(encoding="utf-8") for p in hostile["out"].glob("*.json"))
    for payload in reaching.values():
        assert json.dumps(payload, ensure_ascii=False)[1:-1] in rendered
    # containerd's hosts.toml stays valid TOML naming the model's registry (quoted by to_json)
    for path in hostile["out"].glob("*-hosts.toml"):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert data["server"].startswith("https://") and len(data["host"]) == 1
    # the purpose reaches the firewall rules' hostvars; the nft file names rules only by flow name
    files = [p for p in hostile["out"].rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "touch " not in text or "{{ lookup('pipe', 'touch " in text, path  # literal, never half-run


def test_extra_variables_of_the_runner_are_never_templated(tmp_path: Path) -> None:
    from dualdc.ansible.runner import write_unsafe_extravars

    canary = tmp_path / "canary-extravars"
    value = "{{ lookup('pipe', 'touch " + str(canary) + "') }}"
    extra = tmp_path / "extravars.yml"
    write_unsafe_extravars({"given": value, "nested": {"list": [value]}}, extra)
    out = tmp_path / "out.txt"
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.copy:\n        content: \"{{ given }}|{{ nested.list[0] }}\"\n"
        f"        dest: {out}\n        mode: '0600'\n", encoding="utf-8")
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
         str(tmp_path / "play.yml"),
         "-e", f"@{extra}", "-e", json.dumps({"ansible_python_interpreter": sys.executable})],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert out.read_text(encoding="utf-8") == f"{value}|{value}"
    assert not canary.exists()
