"""Every rule: the committed environments pass it, and a mutated lab copy fails it with the
exact (rule id, target). Failing cases edit a copy of inventories/lab in tmp_path."""

from __future__ import annotations

import datetime as dt

import pytest

from dualdc.loader import TopologyError, load_environment
from dualdc.model import Severity
from dualdc.policy import RULES, run_policy

REGULATION = ["NS-01", "NS-02", "NS-03", "EXT-01", "TEN-01", "IP-01", "DR-01", "DR-02", "DR-03", "CAP-01",
              "BK-01", "NTP-01", "LOG-01", "PW-01"]
LAB = load_environment("lab")
GJ_HOSTS = [h.name for h in LAB.hosts_at("gwangju")]


def test_every_rule_of_design_section_4_is_registered_with_its_metadata():
    for rule_id in REGULATION:
        rule = RULES[rule_id]
        assert rule.title and rule.source and rule.description
        assert rule.severity is (Severity.ADVISORY if rule_id == "DR-02" else Severity.ERROR)
    assert {r for r in RULES if r.startswith("STR-")} >= {f"STR-{i:02d}" for i in range(1, 9)}


@pytest.mark.parametrize("env", ["lab", "production"])
def test_committed_environments_pass_every_rule(env):
    topology = load_environment(env)
    report = run_policy(topology)
    # the only findings are LP-01's list of flows that really name a whole destination segment
    named_segments = {f"flow:{f.name}" for f in topology.flows if f.destination.startswith("segment:")}
    assert named_segments
    # and DR-04's advisories: a checkout holds no DR evidence records until drills are run in it
    found = {(f.rule, f.target) for f in report.failing(Severity.ADVISORY) if f.rule != "DR-04"}
    assert found == {("LP-01", t) for t in named_segments}
    assert {f.target for f in report.failing(Severity.ADVISORY) if f.rule == "DR-04"} <= {
        f"service:{s.name}" for s in topology.host_databases() if s.tier == 1}
    assert all(f.severity is Severity.WARNING
               for f in report.failing(Severity.ADVISORY) if f.rule != "DR-04")
    assert report.failing(Severity.ERROR) == []
    assert {r.rule.id for r in report.results} == set(RULES)


def test_production_waiver_really_waives_a_finding():
    report = run_policy(load_environment("production"))
    waived = [f for f in report.findings if f.waived]
    assert {(f.rule, f.target) for f in waived} == {("DR-01", "service:kj-card-services")}
    assert not [f for f in report.findings if f.rule == "WV-02"]


# --------------------------------------------------------------------------- NS-01


def test_ns01_dmz_straight_into_internal(lab):
    lab.add_flow("dmz-to-core", "segment:gj-kjbank-dmz", "service:kj-core-banking", [8443])
    assert lab.pairs("NS-01") == {("NS-01", "flow:dmz-to-core")}


def test_ns01_internet_straight_into_internal(lab):
    lab.add_flow("internet-to-core", "internet", "service:jb-core-banking", [8443])
    assert lab.pairs("NS-01") == {("NS-01", "flow:internet-to-core")}


def test_ns01_finds_a_path_over_several_hops_and_blames_the_way_out_of_the_dmz(lab):
    # mgmt -> internal is legitimate alone; with dmz -> mgmt it completes a path from the DMZ.
    lab.add_flow("dmz-to-mgmt", "segment:gj-kjbank-dmz", "segment:gj-group-mgmt", [22])
    lab.add_flow("mgmt-to-internal", "segment:gj-group-mgmt", "segment:gj-kjbank-internal", [22])
    report = lab.report()
    found = [f for f in report.findings if f.rule == "NS-01"]
    assert {(f.rule, f.target) for f in found} == {("NS-01", "flow:dmz-to-mgmt")}
    assert "=[dmz-to-mgmt]=> segment:gj-group-mgmt -[mgmt-to-internal]-> segment:gj-kjbank-internal" in (
        found[0].message)


def test_ns01_dmz_to_mgmt_alone_passes(lab):
    lab.add_flow("dmz-to-mgmt", "segment:gj-kjbank-dmz", "segment:gj-group-mgmt", [22])
    assert lab.pairs("NS-01") == set()


def test_ns01_mgmt_to_internal_alone_passes(lab):
    lab.add_flow("mgmt-to-internal", "segment:gj-group-mgmt", "segment:gj-kjbank-internal", [22])
    assert lab.pairs("NS-01") == set()


def test_ns01_relay_on_undeclared_port_is_no_relay(lab):
    lab.find("flows", "kj-ib-to-api")["ports"] = [9443, 22]
    assert lab.pairs("NS-01") == {("NS-01", "flow:kj-ib-to-api")}


def test_ns01_relay_on_any_port_is_no_relay(lab):
    lab.find("flows", "jb-ib-to-api")["ports"] = "any"
    assert lab.pairs("NS-01") == {("NS-01", "flow:jb-ib-to-api")}


def test_ns01_service_not_marked_relay(lab):
    lab.find("services", "kj-ib-api")["relay"] = False
    assert lab.pairs("NS-01") == {("NS-01", "flow:kj-ib-to-api")}


def test_ns01_parameter_protects_more_zones(lab):
    lab.env["policy"] = {"NS-01": {"protected_zones": "internal,mgmt"}}
    lab.add_flow("dmz-to-mgmt", "segment:gj-kjbank-dmz", "segment:gj-group-mgmt", [22])
    assert lab.pairs("NS-01") == {("NS-01", "flow:dmz-to-mgmt")}


# --------------------------------------------------------------------------- NS-02


def test_ns02_host_with_dmz_and_internal_interfaces(lab):
    host = lab.find("hosts", "gj-db-kj-01")
    host["interfaces"].append({"name": "eth9", "segment": "gj-kjbank-dmz", "address": "10.10.210.90"})
    assert lab.pairs("NS-02") == {("NS-02", "host:gj-db-kj-01")}


def test_ns02_cluster_nodes_on_both_sides(lab):
    # the worker stays in internal, a new DMZ interface on the control plane: the cluster spans
    host = lab.find("hosts", "gj-core-cp-01")
    host["interfaces"].append({"name": "eth9", "segment": "gj-kjbank-dmz", "address": "10.10.210.91"})
    assert lab.pairs("NS-02") == {("NS-02", "host:gj-core-cp-01"), ("NS-02", "cluster:gwangju-core")}


def test_ns02_internal_service_on_dmz_cluster(lab):
    lab.find("services", "kj-batch")["hosts"] = []
    lab.find("services", "kj-batch")["clusters"] = ["gwangju-dmz", "jeonju-core"]
    assert lab.pairs("NS-02") == {("NS-02", "cluster:gwangju-dmz")}


# --------------------------------------------------------------------------- NS-03


def test_ns03_zone_crossing_flow_without_purpose(lab):
    del lab.find("flows", "kj-core-to-pg")["purpose"]
    lab.find("flows", "pg-to-kftc")["purpose"] = "TBD"
    assert lab.pairs("NS-03") == {("NS-03", "flow:kj-core-to-pg"), ("NS-03", "flow:pg-to-kftc")}


def test_ns03_same_zone_flow_needs_no_purpose(lab):
    lab.find("flows", "kj-core-to-batch")["purpose"] = ""
    assert lab.pairs("NS-03") == set()


def test_ns03_min_purpose_length_is_a_parameter(lab):
    lab.env["policy"] = {"NS-03": {"min_purpose_length": 30}}
    report = lab.report()
    short = {("NS-03", f"flow:{f['name']}") for f in lab.section("flows") if len(f["purpose"]) < 30}
    crossing = {("NS-03", "flow:pg-to-kftc"), ("NS-03", "flow:pg-to-cardnet")}
    assert crossing <= short
    assert crossing <= {(f.rule, f.target) for f in report.findings if f.rule == "NS-03"}


# --------------------------------------------------------------------------- EXT-01


def test_ext01_unlisted_port_to_institution(lab):
    lab.find("flows", "pg-to-kftc")["ports"] = [5001, 22]
    assert lab.pairs("EXT-01") == {("EXT-01", "flow:pg-to-kftc")}


def test_ext01_any_port(lab):
    lab.find("flows", "pg-to-cardnet")["ports"] = "any"
    assert lab.pairs("EXT-01") == {("EXT-01", "flow:pg-to-cardnet")}


def test_ext01_institution_reached_from_outside_the_external_zone(lab):
    lab.add_flow("core-to-kftc", "service:kj-core-banking", "institution:kftc", [5001])
    assert lab.pairs("EXT-01") == {("EXT-01", "flow:core-to-kftc")}


def test_ext01_external_segment_open_to_the_internet(lab):
    lab.add_flow("internet-to-ext", "internet", "segment:gj-group-external", [7001])
    assert lab.pairs("EXT-01") == {("EXT-01", "flow:internet-to-ext")}


def test_ext01_inbound_from_an_institution_on_a_declared_port_passes(lab):
    lab.add_flow("kftc-to-pg", "institution:kftc", "service:payment-gateway", [7001])
    assert lab.pairs("EXT-01") == set()
    lab.env["policy"] = {"EXT-01": {"allow_inbound": False}}
    assert lab.pairs("EXT-01") == {("EXT-01", "flow:kftc-to-pg")}


# --------------------------------------------------------------------------- TEN-01


def test_ten01_flow_between_the_banks_internal_segments(lab):
    lab.add_flow("kj-to-jb", "service:kj-core-banking", "service:jb-core-banking", [8443])
    assert lab.pairs("TEN-01") == {("TEN-01", "flow:kj-to-jb")}


def test_ten01_path_through_a_bank_dmz(lab):
    lab.add_flow("kj-core-to-dmz", "service:kj-core-banking", "segment:gj-kjbank-dmz", [443])
    lab.add_flow("kj-dmz-to-jb-dmz", "segment:gj-kjbank-dmz", "segment:gj-jbbank-dmz", [443])
    report = lab.report()
    found = [f for f in report.findings if f.rule == "TEN-01"]
    # the existing relay flow jb-ib-to-api completes the path into jbbank's business network
    assert {(f.rule, f.target) for f in found} == {("TEN-01", "flow:kj-dmz-to-jb-dmz")}
    assert "-[jb-ib-to-api]-> service:jb-ib-api@gwangju" in found[0].message


def test_ten01_path_through_a_group_service_passes(lab):
    # kj -> siem exists in the lab; siem -> jb makes a path only through group
    lab.add_flow("siem-to-jb", "service:siem", "service:jb-core-banking", [8443])
    assert lab.pairs("TEN-01") == set()


def _move(lab, host, iface, segment, address):
    found = next(i for i in lab.find("hosts", host)["interfaces"] if i["name"] == iface)
    found["segment"], found["address"] = segment, address


def test_ten01_bank_hosts_in_a_shared_segment_joined_by_a_segment_flow(lab):
    # the old replication design: both banks' db hosts in the group segments, joined segment to segment
    _move(lab, "gj-db-kj-01", "eth2", "gj-group-replication", "10.10.40.19")
    _move(lab, "jj-db-jb-01", "eth2", "jj-group-replication", "10.20.40.20")
    found = {f.target: f.message for f in lab.report().findings if f.rule == "TEN-01"}
    assert found == {
        "flow:gj-to-jj-replication": (
            "host:gj-db-kj-01 ~ segment:gj-group-replication =[gj-to-jj-replication]=> "
            "segment:jj-group-replication ~ host:jj-db-jb-01: flow gj-to-jj-replication (tcp/5432,8000) "
            "lets kjbank's host:gj-db-kj-01 reach jbbank's host:jj-db-jb-01 without passing through a group "
            "service"),
        "flow:jj-to-gj-replication": (
            "host:jj-db-jb-01 ~ segment:jj-group-replication =[jj-to-gj-replication]=> "
            "segment:gj-group-replication ~ host:gj-db-kj-01: flow jj-to-gj-replication (tcp/5432,8000) "
            "lets jbbank's host:jj-db-jb-01 reach kjbank's host:gj-db-kj-01 without passing through a group "
            "service"),
    }


def test_ten01_pod_egress_covering_the_other_banks_database(lab):
    # kjbank's core banking pods may open tcp/5432 to the peer's shared replication segment,
    # where a jbbank database host sits: the egress covers the other bank's database
    _move(lab, "jj-db-jb-01", "eth2", "jj-group-replication", "10.20.40.20")
    lab.add_flow("kj-pg-egress", "service:kj-core-banking", "segment:jj-group-replication", [5432],
                 cross_site=True)
    found = [f for f in lab.report().findings if f.rule == "TEN-01"]
    assert [(f.target, f.message) for f in found] == [(
        "flow:kj-pg-egress",
        "service:kj-core-banking@gwangju =[kj-pg-egress]=> segment:jj-group-replication ~ host:jj-db-jb-01: "
        "flow kj-pg-egress (tcp/5432) lets kjbank's service:kj-core-banking@gwangju reach jbbank's "
        "host:jj-db-jb-01 without passing through a group service")]


def test_ten01_multi_hop_through_a_group_segment_that_is_not_a_group_service(lab):
    # gj-group-internal holds the core control plane, which belongs to no group service
    lab.add_flow("kj-to-group", "service:kj-core-banking", "segment:gj-group-internal", [8080])
    lab.add_flow("group-to-jb", "segment:gj-group-internal", "service:jb-batch", [5432])
    found = [f for f in lab.report().findings if f.rule == "TEN-01"]
    assert [(f.target, f.message) for f in found] == [(
        "flow:kj-to-group",
        "service:kj-core-banking@gwangju =[kj-to-group]=> segment:gj-group-internal ~ host:gj-core-cp-01 ~ "
        "segment:gj-group-internal -[group-to-jb]-> host:gj-db-jb-01: flow kj-to-group (tcp/8080) lets "
        "kjbank's service:kj-core-banking@gwangju reach jbbank's host:gj-db-jb-01 without passing through a "
        "group service")]


def test_ten01_group_host_outside_any_group_service_is_no_free_pass(lab):
    lab.add_flow("kj-db-to-cp", "host:gj-db-kj-01", "host:gj-core-cp-01", [22])
    lab.add_flow("cp-to-jb-db", "host:gj-core-cp-01", "host:gj-db-jb-01", [22])
    assert lab.pairs("TEN-01") == {("TEN-01", "flow:kj-db-to-cp")}


def test_ten01_group_service_host_relays(lab):
    # gj-backup-01 is a host of the group service backup-store: a path through it is allowed
    lab.add_flow("kj-db-to-backup", "host:gj-db-kj-01", "host:gj-backup-01", [22])
    lab.add_flow("backup-to-jb-db", "host:gj-backup-01", "host:gj-db-jb-01", [22])
    assert lab.pairs("TEN-01") == set()


def test_ten01_multi_homed_host_is_an_edge_between_its_segments(lab):
    # the core workers sit in both banks' internal segments: a flow onto kjbank's segment
    # reaches them, and a flow from jbbank's segment is then open to them
    lab.add_flow("kj-api-to-kj-segment", "service:kj-ib-api", "segment:gj-kjbank-internal", [8080])
    lab.add_flow("jb-segment-to-jb-batch", "segment:gj-jbbank-internal", "service:jb-batch", [5432])
    assert lab.pairs("TEN-01") == {("TEN-01", "flow:jb-segment-to-jb-batch")}
    message = next(f.message for f in lab.report().findings if f.rule == "TEN-01")
    assert "~ host:gj-core-wk-01 ~ segment:gj-jbbank-internal =[jb-segment-to-jb-batch]=> host:gj-db-jb-01" \
        in message


def test_ten01_replication_and_backup_zones_are_protected_by_default_and_a_parameter(lab):
    lab.add_flow("kj-repl-to-jb-repl", "segment:gj-kjbank-replication", "segment:jj-jbbank-replication",
                 [5432], cross_site=True)
    assert lab.pairs("TEN-01") == {("TEN-01", "flow:kj-repl-to-jb-repl")}
    lab.env["policy"] = {"TEN-01": {"protected_zones": "dev"}}
    assert lab.pairs("TEN-01") == set()


def test_ten01_bank_host_in_the_other_banks_segment(lab):
    _move(lab, "gj-db-kj-01", "eth1", "gj-jbbank-internal", "10.10.120.99")
    report = lab.report()
    found = [f for f in report.findings if f.rule == "TEN-01"]
    assert [(f.target, f.message) for f in found] == [(
        "host:gj-db-kj-01",
        "host gj-db-kj-01 of kjbank has interface eth1 in jbbank's segment gj-jbbank-internal: a bank's host "
        "never sits in the other bank's network")]
    assert found[0].location is not None
    # located at the host's interfaces (the list starts on the line after the key)
    assert found[0].location.line == lab.line_of("hosts.yaml", "interfaces:", after="name: gj-db-kj-01") + 1


# --------------------------------------------------------------------------- LP-01


def test_lp01_flow_to_a_whole_segment_is_listed(lab):
    lab.add_flow("kj-core-to-group-internal", "service:kj-core-banking", "segment:gj-group-internal", [6514])
    found = [f for f in lab.report().findings
             if f.rule == "LP-01" and f.target == "flow:kj-core-to-group-internal"]
    assert [(f.severity, f.message) for f in found] == [(
        Severity.WARNING,
        "flow kj-core-to-group-internal (tcp/6514): its destination is the whole segment gj-group-internal "
        "(10.10.130.0/24, 5 hosts); every layer allows that whole range: name hosts or services where the "
        "flow means them")]


def test_lp01_flow_naming_services_and_hosts_passes(lab):
    lab.add_flow("kj-core-to-log", "service:kj-core-banking", "host:gj-log-01", [6514])
    assert ("LP-01", "flow:kj-core-to-log") not in lab.pairs("LP-01")
    assert ("LP-01", "flow:kj-core-to-siem") not in lab.pairs("LP-01")


def test_lp01_sources_are_listed_when_the_parameter_asks(lab):
    assert ("LP-01", "flow:gj-ntp") not in lab.pairs("LP-01")
    lab.env["policy"] = {"LP-01": {"ends": "source,destination"}}
    assert ("LP-01", "flow:gj-ntp") in lab.pairs("LP-01")


# --------------------------------------------------------------------------- IP-01


def test_ip01_public_mgmt_segment(lab):
    lab.find("segments", "jj-group-mgmt")["cidr"] = "198.51.100.0/24"
    lab.find("segments", "jj-group-mgmt")["gateway"] = "198.51.100.1"
    assert lab.pairs("IP-01") == {("IP-01", "segment:jj-group-mgmt")}


def test_ip01_public_bmc(lab):
    lab.find("hosts", "jj-ntp-01")["bmc"] = "203.0.113.9"
    assert lab.pairs("IP-01") == {("IP-01", "host:jj-ntp-01")}


def test_ip01_overlapping_internal_segments(lab):
    lab.find("segments", "gj-jbbank-internal")["cidr"] = "10.10.110.0/25"
    lab.find("segments", "gj-jbbank-internal")["gateway"] = "10.10.110.1"
    assert lab.pairs("IP-01") == {("IP-01", "segment:gj-jbbank-internal")}


def test_ip01_overlapping_cluster_networks(lab):
    lab.find("clusters", "jeonju-dmz")["pod_cidr"] = "10.110.0.0/17"
    assert lab.pairs("IP-01") == {("IP-01", "cluster:jeonju-dmz")}


def test_ip01_dmz_may_be_public(lab):
    seg = lab.find("segments", "gj-kjbank-dmz")
    seg["cidr"], seg["gateway"] = "198.51.100.0/24", "198.51.100.1"
    for host in ("gj-dmz-cp-01", "gj-dmz-wk-01"):
        iface = next(i for i in lab.find("hosts", host)["interfaces"] if i["segment"] == "gj-kjbank-dmz")
        iface["address"] = f"198.51.100.{17 if host.endswith('cp-01') else 18}"
    assert lab.report().failing() == []


# --------------------------------------------------------------------------- DR-01 .. DR-03


def test_dr01_tier1_without_replica_at_the_other_site(lab):
    lab.find("services", "kj-core-banking")["clusters"] = ["gwangju-core"]
    assert lab.pairs("DR-01") == {("DR-01", "service:kj-core-banking")}


def test_dr01_rto_above_three_hours(lab):
    lab.find("services", "payment-gateway")["rto_minutes"] = 181
    assert lab.pairs("DR-01") == {("DR-01", "service:payment-gateway")}


def test_dr01_rto_limit_is_a_parameter(lab):
    lab.env["policy"] = {"DR-01": {"max_rto_minutes": 45}}
    assert lab.pairs("DR-01") == {("DR-01", "service:kj-core-banking"), ("DR-01", "service:jb-core-banking")}


def test_dr01_backup_restore_is_not_a_replica_and_tier2_is_not_checked(lab):
    lab.find("services", "jb-core-banking")["dr_mode"] = "backup-restore"
    lab.find("services", "kj-batch")["hosts"] = ["gj-db-kj-01"]
    assert lab.pairs("DR-01") == {("DR-01", "service:jb-core-banking")}


def test_dr02_sites_too_close_is_an_advisory(lab):
    site = lab.find("sites", "jeonju")
    site["latitude"], site["longitude"] = 35.30, 126.90
    report = lab.report()
    found = [f for f in report.findings if f.rule == "DR-02"]
    assert [(f.rule, f.target, f.severity) for f in found] == [("DR-02", "site:gwangju", Severity.ADVISORY)]
    assert report.failing() == []
    assert [f for f in report.failing(Severity.ADVISORY) if f.rule not in ("LP-01", "DR-04")] == found


def test_dr03_single_link(lab):
    lab.remove("links", "dr-link-b")
    assert lab.pairs("DR-03") == {("DR-03", "site:gwangju")}


def test_dr03_two_links_of_one_carrier_are_not_independent(lab):
    lab.find("links", "dr-link-b")["carrier"] = "carrier-a"
    assert lab.pairs("DR-03") == {("DR-03", "site:gwangju")}
    lab.env["policy"] = {"DR-03": {"distinct_carriers": False}}
    assert lab.pairs("DR-03") == set()


# --------------------------------------------------------------------------- CAP-01, BK-01


def test_cap01_tier1_demand_beyond_one_site(lab):
    lab.find("services", "kj-core-banking")["cpu"] = 80  # 98 cores of tier 1 against 89.6 usable
    assert lab.pairs("CAP-01") == {("CAP-01", "site:gwangju"), ("CAP-01", "site:jeonju")}


def test_cap01_utilisation_is_a_parameter(lab):
    lab.env["policy"] = {"CAP-01": {"max_utilisation": 0.1}}  # 11.2 cores usable per site, 18 needed
    assert lab.pairs("CAP-01") == {("CAP-01", "site:gwangju"), ("CAP-01", "site:jeonju")}


def test_bk01_backup_at_the_primary_site(lab):
    lab.find("services", "kj-core-banking")["backup"]["target_site"] = "gwangju"
    assert lab.pairs("BK-01") == {("BK-01", "service:kj-core-banking")}


def test_bk01_stateful_tier1_without_backup(lab):
    svc = lab.find("services", "jb-core-banking")
    del svc["backup"]
    svc["replication"] = []  # its host database is state enough
    assert lab.pairs("BK-01") == {("BK-01", "service:jb-core-banking")}


def test_bk01_backup_site_without_backup_host(lab):
    lab.find("hosts", "jj-backup-01")["role"] = "app"
    # every service whose backups land in Jeonju (kj-core-banking, and the AI zone's analytics)
    landing = {s.name for s in LAB.services if LAB.backup_site(s) == "jeonju"}
    assert {"kj-core-banking", "kj-ai-analytics"} <= landing
    assert lab.pairs("BK-01") == {("BK-01", f"service:{name}") for name in landing}


# --------------------------------------------------------------------------- NTP-01, LOG-01, PW-01


def test_ntp01_host_with_its_own_time_sources(lab):
    lab.find("hosts", "jj-log-01")["time_sources"] = ["jj-ntp-01"]
    assert lab.pairs("NTP-01") == {("NTP-01", "host:jj-log-01")}


def test_ntp01_time_sources_unreachable_without_a_flow(lab):
    lab.remove("flows", "gj-ntp")
    expected = {("NTP-01", f"host:{h}") for h in GJ_HOSTS if h != "gj-ntp-01"}
    assert lab.pairs("NTP-01") == expected


def test_ntp01_one_source_and_not_an_ntp_host(lab):
    lab.env["time_sources"] = ["gj-log-01"]
    report = lab.report()
    at_env = [f for f in report.findings if f.rule == "NTP-01" and f.target == "environment:lab"]
    assert len(at_env) == 3  # not an ntp host; fewer than 2 sources; none at jeonju
    # and nobody has a flow to gj-log-01 on udp/123
    assert {f.target for f in report.findings if f.rule == "NTP-01"} - {"environment:lab"} == {
        f"host:{h.name}" for h in LAB.hosts if h.name != "gj-log-01"}


def test_log01_short_retention(lab):
    lab.env["log_retention"]["personal_data_log_days"] = 400
    assert lab.pairs("LOG-01") == {("LOG-01", "environment:lab")}


def test_log01_hosts_without_a_flow_to_a_log_host(lab):
    lab.remove("flows", "gj-syslog")
    # hosts in the banks' internal segments still reach the SIEM on gj-log-01 (kj/jb-core-to-siem)
    still = {"gj-log-01", "gj-core-wk-01", "gj-core-wk-02", "gj-db-kj-01", "gj-db-jb-01"}
    expected = {("LOG-01", f"host:{h}") for h in GJ_HOSTS if h not in still}
    assert lab.pairs("LOG-01") == expected


def test_log01_site_without_log_host(lab):
    lab.find("hosts", "jj-log-01")["role"] = "app"
    lab.find("services", "siem")["hosts"] = ["gj-log-01", "jj-log-01"]
    found = lab.pairs("LOG-01")
    assert ("LOG-01", "site:jeonju") in found
    assert all(t.startswith(("site:jeonju", "host:jj-")) for _, t in found)


def test_pw01_lockout_and_idle_timeout(lab):
    lab.env["access"] = {"lockout_attempts": 10, "lockout_seconds": 900, "idle_timeout_seconds": 0}
    report = lab.report()
    found = [f for f in report.findings if f.rule == "PW-01"]
    assert {(f.rule, f.target) for f in found} == {("PW-01", "environment:lab")}
    assert len(found) == 2


# --------------------------------------------------------------------------- structure


def test_str01_duplicate_names(lab):
    lab.section("tenants").append(dict(lab.find("tenants", "group")))
    assert lab.pairs("STR-01") == {("STR-01", "tenant:group")}


def test_str02_institution_overlapping_a_segment(lab):
    lab.find("institutions", "kftc")["cidrs"] = ["10.10.31.0/28"]
    assert lab.pairs("STR-02") == {("STR-02", "institution:kftc")}


def test_str03_duplicate_vlan_at_a_site(lab):
    lab.find("segments", "gj-jbbank-dmz")["vlan"] = 210
    assert lab.pairs("STR-03") == {("STR-03", "segment:gj-jbbank-dmz")}


def test_str04_address_outside_its_segment(lab):
    lab.find("hosts", "gj-ntp-01")["interfaces"][0]["address"] = "10.10.11.12"
    assert lab.pairs("STR-04") == {("STR-04", "host:gj-ntp-01")}


def test_str05_duplicate_address(lab):
    lab.find("hosts", "jj-ntp-01")["interfaces"][0]["address"] = "10.20.10.11"
    assert lab.pairs("STR-05") == {("STR-05", "host:jj-ntp-01")}


def test_str06_gateway_outside_its_segment(lab):
    lab.find("segments", "jj-group-backup")["gateway"] = "10.20.51.1"
    assert lab.pairs("STR-06") == {("STR-06", "segment:jj-group-backup")}


def test_str07_bmc_outside_mgmt(lab):
    lab.find("hosts", "gj-backup-01")["bmc"] = "10.10.50.212"
    assert lab.pairs("STR-07") == {("STR-07", "host:gj-backup-01")}


def test_str08_second_segment_for_a_site_tenant_and_zone(lab):
    lab.section("segments").append({"name": "gj-kjbank-dmz-2", "site": "gwangju", "tenant": "kjbank",
                                    "zone": "dmz", "vlan": 211, "cidr": "10.10.211.0/24",
                                    "gateway": "10.10.211.1"})
    assert lab.pairs("STR-08") == {("STR-08", "segment:gj-kjbank-dmz-2")}


def test_str09_host_in_a_segment_of_the_other_site(lab):
    lab.find("hosts", "gj-backup-01")["interfaces"][2] = {"name": "eth2", "segment": "jj-group-internal",
                                                         "address": "10.20.130.99"}
    assert lab.pairs("STR-09") == {("STR-09", "host:gj-backup-01")}


def test_str09_cluster_without_worker(lab):
    lab.find("hosts", "jj-dmz-wk-01")["role"] = "k8s_control_plane"
    assert lab.pairs("STR-09") == {("STR-09", "cluster:jeonju-dmz")}


def test_str10_service_on_a_cluster_without_its_tenant(lab):
    lab.find("services", "siem")["hosts"] = []
    lab.find("services", "siem")["clusters"] = ["gwangju-dmz", "jeonju-core"]
    lab.find("services", "siem")["zone"] = "internal"
    found = lab.pairs("STR-10")
    assert found == {("STR-10", "service:siem")}


def test_str11_link_with_both_ends_at_one_site(lab):
    lab.find("links", "dr-link-b")["ends"][1]["site"] = "gwangju"
    assert lab.pairs("STR-11") == {("STR-11", "link:dr-link-b")}


def test_str12_deploy_order_missing_a_site(lab):
    lab.env["deploy_order"] = ["gwangju", "gwangju"]
    assert lab.pairs("STR-12") == {("STR-12", "environment:lab")}


def test_str13_flow_that_allows_nothing_is_a_warning(lab):
    lab.add_flow("gj-to-jj-mgmt", "segment:gj-group-mgmt", "segment:jj-group-mgmt", [22])
    report = lab.report()
    found = [f for f in report.findings if f.rule == "STR-13"]
    assert [(f.rule, f.target, f.severity) for f in found] == [
        ("STR-13", "flow:gj-to-jj-mgmt", Severity.WARNING)]
    assert report.failing() == []


# --------------------------------------------------------------------------- waivers


def _waive(lab, rule, target, expires="2026-12-31", today="2026-06-01"):
    lab.env["today"] = today
    lab.section("environment")  # exists
    lab.files[lab.file_of("flows")].setdefault("waivers", []).append({
        "rule": rule, "target": target, "reason": "Accepted for the test until the fix ships.",
        "approval": "정보보호위원회 2026-99", "expires": expires})


def test_waiver_waives_its_finding(lab):
    lab.add_flow("dmz-to-core", "segment:gj-kjbank-dmz", "service:kj-core-banking", [8443])
    _waive(lab, "NS-01", "flow:dmz-to-core")
    report = lab.report()
    assert report.failing() == []
    assert {(f.rule, f.target) for f in report.findings if f.waived} == {("NS-01", "flow:dmz-to-core")}


def test_expired_waiver_is_an_error_and_waives_nothing(lab):
    lab.add_flow("dmz-to-core", "segment:gj-kjbank-dmz", "service:kj-core-banking", [8443])
    _waive(lab, "NS-01", "flow:dmz-to-core", expires="2026-05-31")
    found = lab.pairs()
    assert ("NS-01", "flow:dmz-to-core") in found
    assert ("WV-01", "waiver:NS-01@flow:dmz-to-core") in found


def test_waiver_running_too_long_is_an_error(lab):
    lab.add_flow("dmz-to-core", "segment:gj-kjbank-dmz", "service:kj-core-banking", [8443])
    _waive(lab, "NS-01", "flow:dmz-to-core", expires="2030-01-01")
    assert lab.pairs("WV-01") == {("WV-01", "waiver:NS-01@flow:dmz-to-core")}


def test_waiver_matching_nothing_is_a_warning(lab):
    _waive(lab, "DR-01", "service:no-such-service")
    report = lab.report()
    found = [f for f in report.findings if f.rule == "WV-02"]
    assert [(f.target, f.severity) for f in found] == [
        ("waiver:DR-01@service:no-such-service", Severity.WARNING)]
    assert report.failing() == []


def test_waiver_of_unknown_or_structural_rule_is_an_input_error(lab):
    _waive(lab, "ZZ-01", "flow:x")
    _waive(lab, "STR-04", "host:gj-ntp-01")
    with pytest.raises(TopologyError) as err:
        lab.report()
    text = str(err.value)
    assert "unknown rule id 'ZZ-01'" in text and "STR-04 cannot be waived" in text
    assert f"{lab.file_of('flows')}:" in text


def test_today_pins_waiver_expiry(lab):
    _waive(lab, "NS-01", "flow:x", expires="2026-06-01", today="2026-06-01")
    assert lab.load().today() == dt.date(2026, 6, 1)
    assert lab.pairs("WV-01") == set()


# --------------------------------------------------------------------------- parameters


def test_unknown_policy_rule_and_parameter_are_input_errors_with_lines(lab):
    lab.env["policy"] = {"XX-01": {"a": 1}, "NS-03": {"bogus": 1, "min_purpose_length": "ten"},
                         "CAP-01": {"max_utilisation": 1.5}}
    with pytest.raises(TopologyError) as err:
        lab.report()
    env_file = lab.file_of("environment")
    problems = {(p.path, p.line) for p in err.value.problems}
    assert ("environment.policy.XX-01", lab.line_of(env_file, "XX-01:")) in problems
    assert ("environment.policy.NS-03.bogus", lab.line_of(env_file, "bogus:")) in problems
    assert ("environment.policy.NS-03.min_purpose_length",
            lab.line_of(env_file, "min_purpose_length:")) in problems
    assert ("environment.policy.CAP-01.max_utilisation",
            lab.line_of(env_file, "max_utilisation:")) in problems


def test_findings_are_located_at_the_offending_field(lab):
    lab.find("segments", "gj-jbbank-dmz")["vlan"] = 210
    report = lab.report()
    finding = next(f for f in report.findings if f.rule == "STR-03")
    file = lab.file_of("segments")
    assert finding.location is not None
    assert finding.location.file.endswith(file)
    assert finding.location.line == lab.line_of(file, "vlan: 210", after="name: gj-jbbank-dmz")


def test_ten01_production_before_per_bank_replication(copy_env):
    # production as it was: both banks' database hosts on the group replication segments,
    # joined segment to segment; TEN-01 names the flows and both banks' hosts
    prod = copy_env("production")
    every_host = [h for data in prod.files.values() if isinstance(data, dict) for h in data.get("hosts", [])]
    for host in every_host:
        if host["role"] == "db":
            iface = next(i for i in host["interfaces"] if i["segment"].endswith("bank-replication"))
            site = host["name"][:2]
            iface["segment"] = f"{site}-group-replication"
            iface["address"] = iface["address"].replace("10.65.40.", "10.64.40.").replace(
                "10.66.40.", "10.64.40.").replace("10.97.40.", "10.96.40.").replace("10.98.40.", "10.96.40.")
    found = {f.target: f.message for f in prod.report().findings if f.rule == "TEN-01"}
    assert set(found) == {"flow:gj-replication", "flow:jj-replication"}
    assert "lets jbbank's host:gj-db-jb-01 reach kjbank's host:jj-db-kj-01" in found["flow:gj-replication"]
    assert "lets jbbank's host:jj-db-jb-01 reach kjbank's host:gj-db-kj-01" in found["flow:jj-replication"]
