"""The Ansible inventory: every host's variables, as Ansible resolves them, match the model.

The plugin sets values shared by the whole environment or a group once, as group variables,
and only what differs per host on the host (see :mod:`dualdc.inventory`). What a role sees is
the merge Ansible makes of them. These tests run the real ``ansible-inventory`` on both
environments and compare every host's merged variables, key by key, with a naive reference
computed here straight from the model: every value as the roles expect it, for one host at a
time, by plain scans of the topology (no group layering, no indexes, no caches).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dualdc import databases, flows, inventory
from dualdc.loader import load_environment
from dualdc.model import Host, HostRole, Topology, Zone

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


@pytest.fixture(autouse=True)
def published_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The lab's connection data as ``lab.up`` publishes it, in a state folder of the test's own.

    The inventory reads it (it never imports the lab); no lab is built for that.
    """
    from dualdc.lab.config import LabConfig
    from dualdc.lab.core import publish_connection
    from dualdc.lab.plan import build as lab_plan

    monkeypatch.setenv("DUALDC_LAB_STATE_DIR", str(tmp_path / "lab-state"))
    cfg = LabConfig.load("lab")
    return publish_connection(lab_plan(load_environment("lab"), cfg.infra), cfg)


def test_the_inventory_reads_what_the_lab_published(published_lab: Path) -> None:
    topology = load_environment("lab")
    data = json.loads(published_lab.read_text(encoding="utf-8"))
    data["controller_networks"] = ["192.0.2.7/32"]
    data["private_key"] = "/elsewhere/key"
    published_lab.write_text(json.dumps(data), encoding="utf-8")
    hv = inventory.build(topology)["hostvars"][topology.hosts[0].name]
    assert hv["dualdc_controller_networks"] == ["192.0.2.7/32"]
    assert hv["ansible_ssh_private_key_file"] == "/elsewhere/key"


def test_before_the_lab_is_built_no_controller_network_is_allowed(published_lab: Path) -> None:
    published_lab.unlink()
    topology = load_environment("lab")
    hv = inventory.build(topology)["hostvars"][topology.hosts[0].name]
    assert hv["dualdc_controller_networks"] == []
    assert hv["ansible_ssh_private_key_file"] == str(published_lab.parent / "ssh" / "id_ed25519")


def test_unreadable_connection_data_is_a_clear_error(published_lab: Path) -> None:
    published_lab.write_text("{not json", encoding="utf-8")
    with pytest.raises(inventory.LabConnectionError, match=r"run invoke lab\.up"):
        inventory.build(load_environment("lab"))


def _plain(value: Any) -> Any:
    """ansible-inventory's JSON with 2.19's ``{"__ansible_unsafe": ...}`` markers removed."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _ansible_inventory(env: str, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = _plain(_ansible_inventory_raw(env, *args))
    return result


def _collapse(networks: list[ipaddress.IPv4Network]) -> list[str]:
    return [str(n) for n in ipaddress.collapse_addresses(networks)]


def _lands_on(topology: Topology, host: Host, conn: flows.Connection) -> bool:
    """Whether a connection's destination is this host (see flows.inbound_to_host's contract)."""
    dest = conn.destination
    segments = {i.segment for i in host.interfaces}
    kind, _, name = dest.ref.partition(":")
    if kind == "host":
        return name == host.name
    if kind == "segment":
        return name in segments
    if kind == "service":
        svc = topology.service(name)
        placed = host.name in svc.hosts or (host.cluster is not None and host.cluster in svc.clusters)
        # ... and only where the service's exact addresses include the host's (a cluster's
        # control plane is not where its services' pods are reached).
        reached = any(i.address in n for n in dest.networks for i in host.interfaces)
        return placed and dest.segment in segments and reached
    return False


def _reference(topology: Topology, host: Host) -> dict[str, Any]:
    """Every variable a host should end up with, computed naively from the model."""
    env = topology.environment

    def mgmt_address(h: Host) -> str:
        for iface in h.interfaces:
            if next(s for s in topology.segments if s.name == iface.segment).zone is Zone.MGMT:
                return str(iface.address)
        return str(h.interfaces[0].address)

    def segment(name: str) -> Any:
        return next(s for s in topology.segments if s.name == name)

    mgmt = [s.cidr for s in topology.segments if s.zone is Zone.MGMT]
    bastions = [ipaddress.IPv4Network(f"{i.address}/32")
                for h in topology.hosts if h.role is HostRole.BASTION for i in h.interfaces]
    rules: dict[str, dict[str, Any]] = {}
    for conn in flows.connections(topology):
        if _lands_on(topology, host, conn):
            rule = rules.setdefault(conn.flow.name, {
                "name": conn.flow.name, "protocol": conn.flow.protocol.value,
                "ports": [] if conn.flow.ports == "any" else list(conn.flow.ports),
                "purpose": conn.flow.purpose, "sources": [], "destinations": []})
            rule["sources"].extend(conn.source.networks)
            rule["destinations"] += [f"{i.address}/32" for i in host.interfaces
                                     if any(i.address in n for n in conn.destination.networks)
                                     and f"{i.address}/32" not in rule["destinations"]]
    firewall = [{**rules[n], "sources": _collapse(rules[n]["sources"])} for n in sorted(rules)]
    primary = next((i for i in host.interfaces if segment(i.segment).zone is not Zone.MGMT),
                   host.interfaces[0])
    cluster = next((c for c in topology.clusters if c.name == host.cluster), None)
    expected: dict[str, Any] = {
        "ansible_host": mgmt_address(host),
        "ansible_managed": "Managed by dualdc (Ansible); local changes are reverted and reported as drift.",
        "ansible_user": env.ssh_user,
        "dualdc_environment": env.name,
        "dualdc_lab": env.lab,
        "dualdc_site": host.site,
        "dualdc_peer_site": next(s.dr_peer for s in topology.sites if s.name == host.site),
        "dualdc_rack": host.rack,
        "dualdc_role": host.role.value,
        "dualdc_tenant": host.tenant,
        "dualdc_cluster": host.cluster,
        "dualdc_cpu": host.cpu,
        "dualdc_memory_gib": host.memory_gib,
        "dualdc_bmc": str(host.bmc) if host.bmc else None,
        "dualdc_interfaces": [{
            "name": i.name, "segment": i.segment, "zone": segment(i.segment).zone.value,
            "tenant": segment(i.segment).tenant, "address": str(i.address),
            "prefix": segment(i.segment).cidr.prefixlen, "cidr": str(segment(i.segment).cidr),
            "gateway": str(segment(i.segment).gateway), "vlan": segment(i.segment).vlan,
            "members": list(i.members), "parent": i.parent} for i in host.interfaces],
        "dualdc_primary_interface": primary.name,
        "dualdc_mgmt_networks": _collapse(mgmt),
        "dualdc_time_sources": [mgmt_address(h) for n in (host.time_sources or env.time_sources)
                                for h in topology.hosts if h.name == n],
        "dualdc_log_hosts": [mgmt_address(h) for h in topology.hosts
                             if h.site == host.site and h.role is HostRole.LOG],
        "dualdc_is_log_host": host.role is HostRole.LOG,
        "dualdc_firewall_rules": firewall,
        "dualdc_ssh_sources": _collapse(mgmt + bastions),
        "dualdc_controller_networks": [],
        "dualdc_admins": [{"name": a.name, "ssh_public_key": a.ssh_public_key, "sudo": a.sudo}
                          for a in env.admins],
        "dualdc_mirrors": env.mirrors.model_dump(mode="json"),
        "dualdc_access": env.access.model_dump(mode="json"),
        "dualdc_log_retention": env.log_retention.model_dump(mode="json"),
        "dualdc_cluster_pod_cidr": str(cluster.pod_cidr) if cluster else None,
        "dualdc_cluster_service_cidr": str(cluster.service_cidr) if cluster else None,
        "dualdc_kubernetes_version": ((cluster.kubernetes_version if cluster else None)
                                      or env.kubernetes_version),
        # The database settings' own meaning is tested in tests/roles (PostgreSQL and pgBackRest);
        # here only that each host ends up with its own, wherever the inventory sets them.
        "dualdc_postgresql": databases.postgresql_vars(topology, host),
        "dualdc_pgbackrest": databases.pgbackrest_vars(topology, host),
        "dualdc_pki": None if env.pki is None else {
            "ca_name": env.pki.ca_name,
            "directory": str(Path(__file__).resolve().parents[2] / env.pki.directory)},
    }
    if env.lab:
        from dualdc.inventory import lab_connection_vars
        from dualdc.lab.config import LabConfig
        from dualdc.lab.plan import build as lab_plan

        expected.update(lab_connection_vars(env.name))
        plan = lab_plan(topology, LabConfig.load(env.name).infra)
        expected["dualdc_controller_networks"] = [f"{r.controller_peer}/32" for r in plan.routers.values()]
    return expected


def _groups_of(topology: Topology, host: Host) -> set[str]:
    zones = {next(s for s in topology.segments if s.name == i.segment).zone.value for i in host.interfaces}
    found = {f"site_{host.site}", f"tenant_{host.tenant}", f"role_{host.role.value}",
             *(f"zone_{z}" for z in zones)}
    if host.cluster:
        found.add(f"cluster_{host.cluster}")
    return {g.replace("-", "_") for g in found}


@pytest.mark.parametrize("env", ["lab", "production"])
def test_every_host_resolves_to_the_models_variables_in_ansible(env: str) -> None:
    topology = load_environment(env)
    listed = _ansible_inventory(env, "--list")
    hostvars = listed["_meta"]["hostvars"]
    assert set(hostvars) == {h.name for h in topology.hosts}
    for host in topology.hosts:
        expected = _reference(topology, host)
        got = hostvars[host.name]
        assert sorted(got) == sorted(expected), host.name
        for key, value in expected.items():
            assert got[key] == value, f"{host.name}: {key}"
        groups = {g for g, v in listed.items()
                  if g not in ("_meta", "all") and host.name in v.get("hosts", [])}
        assert groups == _groups_of(topology, host), host.name


@pytest.mark.parametrize("env", ["lab", "production"])
def test_shared_values_are_group_variables_not_copied_into_hosts(env: str) -> None:
    """``--export`` shows where each value is set: environment-wide ones once, on ``all``."""
    exported = _ansible_inventory(env, "--list", "--export")
    all_vars = exported["all"]["vars"]
    for key in ("dualdc_ssh_sources", "dualdc_mgmt_networks", "dualdc_admins", "dualdc_mirrors",
                "dualdc_access", "dualdc_log_retention", "dualdc_controller_networks", "dualdc_environment"):
        assert key in all_vars
    assert exported["site_gwangju"]["vars"]["dualdc_peer_site"] == "jeonju"
    for name, own in exported["_meta"]["hostvars"].items():
        assert not own.keys() & {"dualdc_ssh_sources", "dualdc_mgmt_networks", "dualdc_admins",
                                 "dualdc_log_hosts", "dualdc_site", "dualdc_mirrors"}, name
        assert own["dualdc_firewall_rules"] is not None


@pytest.mark.parametrize("env", ["lab", "production"])
def test_build_merges_like_ansible(env: str) -> None:
    """``inventory.build``'s merged ``hostvars`` (what ``invoke inventory`` and the role tests use)."""
    topology = load_environment(env)
    built = inventory.build(topology)
    for host in topology.hosts:
        expected = _reference(topology, host)
        assert built["hostvars"][host.name] == expected, host.name


def test_the_ai_zone_reaches_the_inventory_groups_and_the_gpu_hosts_firewalls() -> None:
    """The gpu_worker hosts are in role_gpu_worker and zone_ai; each one's own nftables rules admit
    exactly its bank's pseudonymised feed on the AI service's port, from the pseudonymiser's nodes."""
    lab = load_environment("lab")
    gpu = [h for h in lab.hosts if h.role is HostRole.GPU_WORKER]
    assert gpu
    for host in gpu:
        groups = inventory.memberships(lab, host)
        assert {"role_gpu_worker", "zone_ai", f"tenant_{host.tenant}"} <= set(groups)
        rules = {r["name"]: r for r in inventory.firewall_rules(lab, host)}
        feed = next(f for f in lab.flows if f.data is not None and f.data.value == "pseudonymised"
                    and f.destination.startswith("service:")
                    and host.name in lab.service(f.destination[8:]).hosts)
        rule = next(r for name, r in rules.items() if feed.name in name)
        assert rule["ports"] == list(feed.ports)
        pseudonymiser = lab.service(feed.source[8:])
        assert pseudonymiser.pseudonymiser and pseudonymiser.tenant == host.tenant
        nodes = {str(i.address) for h in lab.hosts if h.cluster in pseudonymiser.clusters
                 for i in h.interfaces if lab.segment(i.segment).tenant == host.tenant
                 and lab.segment(i.segment).zone is Zone.INTERNAL}
        assert {s.removesuffix("/32") for s in rule["sources"]} <= nodes
        # nothing of the other bank reaches it
        other = {str(i.address) for h in lab.hosts if h.tenant not in (host.tenant, "group")
                 for i in h.interfaces}
        assert not any(s.removesuffix("/32") in other for r in rules.values() for s in r["sources"])


@pytest.mark.parametrize("env", ["lab", "production"])
def test_the_static_inventory_a_run_is_handed_resolves_like_the_plugin(env: str, tmp_path: Path) -> None:
    # one model load per run: the wrapper hands ansible-runner the inventory it built; Ansible
    # must see the very same hosts, groups and variables (and the same unsafe marks) as through
    # the plugin that stock ansible-playbook uses
    from dualdc.ansible.runner import write_static_inventory

    path = write_static_inventory(inventory.layers(load_environment(env)), tmp_path / "inventory.yml")
    env_vars = {**os.environ, "ANSIBLE_DEPRECATION_WARNINGS": "False",
                "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_INVENTORY_ENABLED": "yaml"}
    done = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(path), "--list", "--export"], cwd=ROOT,
                          env=env_vars, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    static = json.loads(done.stdout)
    plugin = _ansible_inventory_raw(env, "--list", "--export")
    assert static == plugin
    assert "__ansible_unsafe" in done.stdout  # every string value still marked as data


def _ansible_inventory_raw(env: str, *args: str) -> dict[str, Any]:
    env_vars = {**os.environ, "ANSIBLE_DEPRECATION_WARNINGS": "False",
                "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    done = subprocess.run([str(ANSIBLE_INVENTORY), "-i", f"inventories/{env}", *args], cwd=ROOT, env=env_vars,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _unmarked_strings(value: Any, path: str, found: list[str]) -> int:
    """Collect the paths of strings not wrapped as ``{"__ansible_unsafe": ...}``; count the wrapped."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return 1
        return sum(_unmarked_strings(v, f"{path}.{k}", found) for k, v in value.items())
    if isinstance(value, list):
        return sum(_unmarked_strings(v, f"{path}[{i}]", found) for i, v in enumerate(value))
    if isinstance(value, str):
        found.append(path)
    return 0


@pytest.mark.parametrize("env", ["lab", "production"])
def test_ansible_never_trusts_a_model_string_as_a_template(env):
    """ansible-core itself says which strings it would template: in its --export JSON every string
    value the plugin set, on a group or a host, is marked ``__ansible_unsafe`` (untrusted data)."""
    listed = _ansible_inventory_raw(env, "--list", "--export")
    unmarked: list[str] = []
    marked = sum(_unmarked_strings(body.get("vars", {}), f"{group}.vars", unmarked)
                 for group, body in listed.items() if group != "_meta")
    marked += sum(_unmarked_strings(hv, f"hostvars.{host}", unmarked)
                  for host, hv in listed["_meta"]["hostvars"].items())
    assert unmarked == []
    assert marked > 500  # the walk did reach the values
