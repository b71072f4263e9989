"""The topology model: its conventions, lookups, locations and committed JSON Schema."""

from __future__ import annotations

import ipaddress
import json

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from dualdc import model, schema
from dualdc.flows import connections
from dualdc.loader import load_environment
from dualdc.model import Entity, Interface, Service, Topology

ROOT = schema.SCHEMA_PATH


def _models() -> list[type[BaseModel]]:
    found = [model.Source]
    pending: list[type[BaseModel]] = [Entity]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", _models(), ids=lambda c: c.__name__)
def test_every_model_forbids_extra_fields_and_describes_every_field(cls):
    assert cls.model_config.get("extra") == "forbid"
    for name, info in cls.model_fields.items():
        assert info.description, f"{cls.__name__}.{name} has no description"


def test_lookups_and_derived_facts():
    lab = load_environment("lab")
    assert lab.dr_peer("gwangju") == "jeonju" and lab.dr_peer("jeonju") == "gwangju"
    assert lab.management_address(lab.host("gj-core-wk-01")) == ipaddress.IPv4Address("10.10.10.15")
    assert lab.service_sites(lab.service("jb-core-banking")) == ["jeonju", "gwangju"]
    assert [h.name for h in lab.cluster_hosts("gwangju-dmz")] == ["gj-dmz-cp-01", "gj-dmz-wk-01"]
    assert {e for e, _ in lab.iter_entities()} >= {"host:gj-ntp-01", "flow:pg-to-kftc", "site:jeonju"}


def test_locations_point_at_the_yaml(lab):
    topology = lab.load()
    flow = topology.flows[-1]
    services = lab.folder / "services.yaml"
    assert flow.location.file.endswith("services.yaml")
    assert flow.location.line == lab.line_of("services.yaml", f"name: {flow.name}")
    ports_key = lab.line_of("services.yaml", "ports:", after=f"name: {flow.name}")
    assert flow.field_location("ports").line == ports_key + 1  # the list's first item
    iface = topology.host("gj-log-01").interfaces[1]
    assert iface.location.line == lab.line_of("hosts.yaml", "- name: eth1", after="name: gj-log-01")
    assert topology.environment.access.location.line == lab.line_of("environment.yaml", "lockout_attempts:")
    # a field never written falls back to the entity's own location
    first = topology.flows[0]
    assert "cross_site" not in (services.read_text().split(f"name: {first.name}\n")[1].split("- name:")[0])
    assert first.field_location("cross_site") == first.location


def test_entities_built_in_code_have_no_location():
    iface = Interface(name="eth0", segment="seg-a", address="10.0.0.1")
    assert iface.location is None and iface.field_location("address") is None


def test_interface_is_a_bond_or_a_vlan_not_both():
    with pytest.raises(ValidationError, match="either a bond"):
        Interface(name="bond0", segment="seg-a", address="10.0.0.1", members=["eth0"], parent="eth1")


def test_service_consistency_rules():
    base = {"name": "svc", "tenant": "group", "zone": "internal", "tier": 2, "primary_site": "gwangju",
            "dr_mode": "active-active", "rto_minutes": 1, "rpo_minutes": 1, "cpu": 1, "memory_gib": 1}
    with pytest.raises(ValidationError, match="runs somewhere"):
        Service(**base)
    with pytest.raises(ValidationError, match="'cnpg' needs a database"):
        Service(**base, clusters=["c1"], replication=["cnpg"])
    with pytest.raises(ValidationError, match="'backup-restore' needs a backup"):
        Service(**{**base, "dr_mode": "backup-restore"}, clusters=["c1"])


def test_flows_pair_service_ends_per_site_unless_cross_site():
    lab = load_environment("lab")
    by_flow: dict[str, list[tuple[str | None, str | None]]] = {}
    for conn in connections(lab):
        by_flow.setdefault(conn.flow.name, []).append((conn.source.segment, conn.destination.segment))
    assert sorted(by_flow["kj-api-to-core"]) == [("gj-kjbank-internal", "gj-kjbank-internal"),
                                                ("jj-kjbank-internal", "jj-kjbank-internal")]
    assert sorted(by_flow["gj-ntp"]) == [("gj-group-mgmt", "gj-group-mgmt"),
                                        ("gj-group-mgmt", "jj-group-mgmt")]


def test_committed_schema_is_current():
    committed = (schema.SCHEMA_PATH).read_text(encoding="utf-8")
    assert committed == schema.render(), "schemas/topology.schema.json is stale: run 'invoke schema'"


@pytest.mark.parametrize("env", ["lab", "production"])
def test_every_topology_file_validates_against_the_schema(env):
    from pathlib import Path

    validator = jsonschema.Draft202012Validator(json.loads(schema.render()))
    for path in sorted(Path("inventories", env).glob("*.yaml")):
        data = json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))
        errors = [e.message for e in validator.iter_errors(data)]
        assert errors == [], path


def test_schema_knows_the_policy_rules_and_rejects_typos():
    validator = jsonschema.Draft202012Validator(schema.topology_schema())
    good = {"environment": {"policy": {"DR-01": {"max_rto_minutes": 120}}}}
    bad = {"environment": {"policy": {"DR-01": {"max_rto_minutse": 120}}}}
    assert not [e for e in validator.iter_errors(good) if "policy" in list(e.absolute_path)]
    assert [e for e in validator.iter_errors(bad) if "policy" in list(e.absolute_path)]


def test_topology_schema_is_the_models():
    generated = schema.topology_schema()
    assert "required" not in generated  # each file holds only some sections
    assert set(generated["properties"]) == set(Topology.model_fields)
