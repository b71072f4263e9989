"""Host databases: DR-01's standby at the DR peer, DB-01..DB-03 and BK-01's repository.

Each failing case edits a copy of inventories/lab (the ``lab`` fixture) and asserts the
exact (rule id, target) findings; bad references are refused by the loader with file and
line instead.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dualdc.loader import TopologyError
from dualdc.policy import RULES


def _clone_host(lab: Any, name: str, new: str, last_octet: int, **changes: Any) -> dict[str, Any]:
    """A copy of a host with a new name and addresses ending in ``last_octet``."""
    host = copy.deepcopy(lab.find("hosts", name))
    host["name"] = new
    host.pop("bmc", None)
    for iface in host["interfaces"]:
        iface["address"] = ".".join([*iface["address"].split(".")[:3], str(last_octet)])
    host.update(changes)
    lab.section("hosts").append(host)
    return host


def _kj_db(lab: Any) -> dict[str, Any]:
    return lab.find("services", "kj-core-banking")["database"]  # type: ignore[no-any-return]


def _messages(lab: Any, rule: str) -> list[str]:
    return [f.message for f in lab.report().findings if f.rule == rule]


def test_the_new_rules_are_registered_with_sources():
    for rule_id in ("DB-01", "DB-02", "DB-03"):
        assert RULES[rule_id].source and RULES[rule_id].description


def test_committed_lab_places_both_core_banking_databases_on_hosts(lab):
    topo = lab.load()
    assert [s.name for s in topo.host_databases()] == ["jb-core-banking", "kj-core-banking"]
    kj = topo.service("kj-core-banking").database
    assert kj.placements() == [("gwangju", "gj-db-kj-01", "primary"), ("jeonju", "jj-db-kj-01", "standby")]
    assert topo.backup_site(topo.service("kj-core-banking")) == "jeonju"
    assert topo.repository_host(topo.service("kj-core-banking")).name == "jj-backup-01"
    assert topo.repository_host(topo.service("jb-core-banking")).name == "gj-backup-01"


# --------------------------------------------------------------------------- DR-01


def test_dr01_database_without_a_standby_at_the_dr_peer(lab):
    del _kj_db(lab)["hosts"]["jeonju"]
    lab.remove("flows", "kj-db-replication-jj-gj")
    assert lab.pairs("DR-01") == {("DR-01", "service:kj-core-banking")}
    assert any("no standby at jeonju" in m for m in _messages(lab, "DR-01"))


def test_dr01_standby_at_the_primarys_own_site(lab):
    _clone_host(lab, "gj-db-kj-01", "gj-db-kj-02", 29)
    _kj_db(lab)["hosts"]["jeonju"]["standbys"] = ["gj-db-kj-02"]
    assert lab.pairs("DR-01") == {("DR-01", "service:kj-core-banking")}
    (message,) = _messages(lab, "DR-01")
    assert "gj-db-kj-02" in message and "the primary's own site" in message


def test_dr01_standby_of_the_other_bank_and_a_host_claimed_by_two_databases(lab):
    _kj_db(lab)["hosts"]["jeonju"]["standbys"] = ["jj-db-jb-01"]
    assert lab.pairs("DR-01") == {("DR-01", "service:kj-core-banking")}
    assert "a host of jbbank" in _messages(lab, "DR-01")[0]
    # jj-db-jb-01 is also jb-core-banking's primary: both databases are told
    assert lab.pairs("DB-01") == {("DB-01", "service:kj-core-banking"), ("DB-01", "service:jb-core-banking")}


# --------------------------------------------------------------------------- DB-01


def test_db01_primary_on_a_host_of_another_tenant(lab):
    _clone_host(lab, "gj-db-jb-01", "gj-db-jb-02", 30)
    _kj_db(lab)["hosts"]["gwangju"]["primary"] = "gj-db-jb-02"
    assert lab.pairs("DB-01") == {("DB-01", "service:kj-core-banking")}
    assert "a host of tenant jbbank" in _messages(lab, "DB-01")[0]


def test_db01_database_on_a_host_that_is_not_a_db_host(lab):
    lab.find("hosts", "jj-db-kj-01")["role"] = "app"
    assert lab.pairs("DB-01") == {("DB-01", "service:kj-core-banking")}


def test_db01_primary_declared_away_from_the_primary_site(lab):
    hosts = _kj_db(lab)["hosts"]
    hosts["gwangju"] = {"standbys": ["gj-db-kj-01"]}
    hosts["jeonju"] = {"primary": "jj-db-kj-01"}
    found = lab.report().findings
    assert {(f.rule, f.target) for f in found if f.rule == "DB-01"} == {("DB-01", "service:kj-core-banking")}
    assert any("belongs at the service's primary site gwangju" in f.message for f in found)


def test_db01_is_not_waivable():
    assert RULES["DB-01"].waivable is False


# --------------------------------------------------------------------------- DB-02


def test_db02_standby_without_a_flow_to_its_primary(lab):
    lab.remove("flows", "kj-db-replication-jj-gj")
    assert lab.pairs("DB-02") == {("DB-02", "service:kj-core-banking")}
    assert "from the standby jj-db-kj-01 to the primary gj-db-kj-01" in _messages(lab, "DB-02")[0]


def test_db02_replication_flow_between_the_two_banks_databases(lab):
    lab.add_flow("kj-to-jb-db", "host:gj-db-kj-01", "host:jj-db-jb-01", ports=(5432,), cross_site=True)
    assert lab.pairs("DB-02") == {("DB-02", "service:kj-core-banking"), ("DB-02", "service:jb-core-banking")}
    assert all("kj-to-jb-db" in m for m in _messages(lab, "DB-02"))


def test_db02_other_ports_between_the_banks_databases_are_not_replication(lab):
    lab.add_flow("kj-to-jb-https", "host:gj-db-kj-01", "host:jj-db-jb-01", ports=(443,), cross_site=True)
    assert lab.pairs("DB-02") == set()


def test_db02_database_host_off_its_tenants_replication_segment(lab):
    eth2 = lab.find("hosts", "gj-db-kj-01")["interfaces"][2]
    eth2["segment"], eth2["address"] = "gj-group-replication", "10.10.40.19"
    assert lab.pairs("DB-02") == {("DB-02", "service:kj-core-banking")}
    assert "gj-db-kj-01 has no interface in a replication segment of kjbank" in _messages(lab, "DB-02")[0]


def test_db02_replication_over_a_segment_flow_of_the_group(lab):
    lab.add_flow("kj-db-over-internal", "segment:jj-kjbank-internal", "host:gj-db-kj-01", ports=(5432,),
                 cross_site=True)
    assert lab.pairs("DB-02") == {("DB-02", "service:kj-core-banking")}
    assert "over segment jj-kjbank-internal" in _messages(lab, "DB-02")[0]


# --------------------------------------------------------------------------- DB-03


def test_db03_rpo_zero_needs_synchronous_replication(lab):
    lab.find("services", "kj-core-banking")["rpo_minutes"] = 0
    assert lab.pairs("DB-03") == {("DB-03", "service:kj-core-banking")}
    _kj_db(lab)["replication_mode"] = "remote_apply"
    assert lab.pairs("DB-03") == set()


def test_db03_threshold_is_a_parameter(lab):
    lab.env["policy"] = {"DB-03": {"max_async_rpo_minutes": 5}}
    assert lab.pairs("DB-03") == {("DB-03", "service:kj-core-banking"), ("DB-03", "service:jb-core-banking")}
    _kj_db(lab)["replication_mode"] = "remote_write"
    assert lab.pairs("DB-03") == {("DB-03", "service:jb-core-banking")}


# --------------------------------------------------------------------------- BK-01


def test_bk01_target_site_defaults_to_the_dr_peer(lab):
    del lab.find("services", "kj-core-banking")["backup"]["target_site"]
    assert lab.pairs("BK-01") == set()
    assert lab.load().backup_site(lab.load().service("kj-core-banking")) == "jeonju"


def test_bk01_pgbackrest_repository_at_the_primary_site(lab):
    lab.find("services", "kj-core-banking")["backup"]["repository_host"] = "gj-backup-01"
    assert lab.pairs("BK-01") == {("BK-01", "service:kj-core-banking")}
    assert "jeonju, the backup target" in _messages(lab, "BK-01")[0]


def test_bk01_pgbackrest_repository_on_a_host_that_is_not_a_backup_host(lab):
    lab.find("services", "kj-core-banking")["backup"]["repository_host"] = "jj-log-01"
    assert lab.pairs("BK-01") == {("BK-01", "service:kj-core-banking")}


# --------------------------------------------------------------------------- refused by the loader


def _problem(lab: Any) -> Any:
    with pytest.raises(TopologyError) as err:
        lab.load()
    (problem,) = err.value.problems
    return problem


def test_unknown_database_host_is_refused_with_file_and_line(lab):
    _kj_db(lab)["hosts"]["jeonju"]["standbys"] = ["jj-db-kj-09"]
    problem = _problem(lab)
    assert problem.file.endswith("services.yaml")
    assert problem.line == lab.line_of("services.yaml", "- jj-db-kj-09")
    assert "refers to host 'jj-db-kj-09'" in problem.message


def test_unknown_database_site_is_refused(lab):
    _kj_db(lab)["hosts"]["seoul"] = {"standbys": ["jj-db-kj-01"]}
    assert "refers to site 'seoul'" in _problem(lab).message


def test_host_database_needs_exactly_one_primary(lab):
    _kj_db(lab)["hosts"]["jeonju"]["primary"] = "jj-db-kj-01"
    problem = _problem(lab)
    assert "exactly one primary host, found 2 (gj-db-kj-01, jj-db-kj-01)" in problem.message
    assert problem.line == lab.line_of("services.yaml", "name: kj-core-banking")


def test_cnpg_replication_needs_a_cnpg_database(lab):
    lab.find("services", "kj-core-banking")["replication"] = ["cnpg", "velero"]
    assert "replication 'cnpg' needs a database on platform 'cnpg'" in _problem(lab).message


def test_platform_defaults_by_tier(lab):
    svc = lab.find("services", "kj-core-banking")
    del svc["database"]["platform"]
    assert lab.load().service("kj-core-banking").database.platform.value == "hosts"
    batch = lab.find("services", "kj-batch")
    batch["database"] = {"storage_gib": 10}
    topo = lab.load()
    assert topo.service("kj-batch").database.platform.value == "cnpg"
    assert topo.service("kj-batch").database.version == 16
    assert topo.service("kj-core-banking").database.version == 15


def test_cnpg_settings_on_a_host_database_are_refused(lab):
    _kj_db(lab)["storage_gib"] = 100
    assert "storage_gib and instances are cnpg settings" in _problem(lab).message
