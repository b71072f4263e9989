"""Policy for values that are well-formed but dangerous, and the gaps a hostile topology used.

RBAC-01 (system groups, wildcards), AIR-01 (air gap), META-01 (Kubernetes metadata limits),
CAP-01 counting only hosts that can run the services and judging its boundary exactly,
WV-03 and waivers judged against the real date, DR-03 with carriers normalised.
"""

from __future__ import annotations

import datetime as dt

import pytest

from dualdc.loader import TopologyError
from dualdc.model import PINNED_TODAY_ENV
from dualdc.policy import RULES

# --------------------------------------------------------------------------- RBAC-01


def test_rbac01_registered_with_source_and_parameters():
    rule = RULES["RBAC-01"]
    assert rule.source and "forbidden_prefixes" in rule.params and not rule.waivable


def test_rbac01_passes_the_lab(lab):
    assert lab.pairs("RBAC-01") == set()


@pytest.mark.parametrize("group", ["system:authenticated", "system:masters", "System:Serviceaccounts", "*",
                                   "kjbank-*", "ops?"])
def test_rbac01_refuses_system_groups_and_wildcards(lab, group):
    lab.find("tenants", "kjbank")["admin_groups"].append(group)
    report = lab.report()
    found = [(f.rule, f.target, f.location.line) for f in report.findings if f.rule == "RBAC-01"]
    # located at the list of groups (it starts on the line after its key)
    assert found == [("RBAC-01", "tenant:kjbank", lab.line_of(lab.file_of("tenants"), "admin_groups:",
                                                                after="name: kjbank") + 1)]
    message = next(f.message for f in report.findings if f.rule == "RBAC-01")
    assert repr(group) in message and "admin group" in message


def test_rbac01_viewer_groups_too(lab):
    lab.find("tenants", "jbbank")["viewer_groups"] = ["system:unauthenticated"]
    assert lab.pairs("RBAC-01") == {("RBAC-01", "tenant:jbbank")}


def test_rbac01_cannot_be_waived(lab):
    lab.files[lab.file_of("services")]["waivers"] = [{
        "rule": "RBAC-01", "target": "tenant:kjbank", "reason": "we would like to anyway",
        "approval": "ISC-2026-01", "expires": "2026-12-31"}]
    with pytest.raises(TopologyError, match="RBAC-01 cannot be waived"):
        lab.report()


# --------------------------------------------------------------------------- AIR-01


def test_air01_passes_the_lab_and_its_file_mirror(lab):
    assert lab.env["mirrors"]["apt"].startswith("file:///")
    assert lab.pairs("AIR-01") == set()


@pytest.mark.parametrize(("field", "value"), [
    ("registry", "docker.io"),
    ("registry", "registry.jbfg.example.evil.com:5000"),
    ("apt", "http://deb.debian.org/debian"),
    ("kubernetes_apt", "https://pkgs.k8s.io/core:/stable:/v1.30/deb"),
    ("registry", "8.8.8.8:5000"),
])
def test_air01_refuses_hosts_outside_the_internal_domains(lab, field, value):
    lab.env["mirrors"][field] = value
    report = lab.report()
    found = [f for f in report.findings if f.rule == "AIR-01"]
    assert [(f.target, f.location.line) for f in found] == [
        ("environment:lab", lab.line_of(lab.file_of("environment"), f"{field}:"))]
    assert f"mirrors.{field}" in found[0].message and "air gap" in found[0].message


def test_air01_private_addresses_and_domains_are_parameters(lab):
    lab.env["mirrors"]["registry"] = "10.10.10.40:5000"
    assert lab.pairs("AIR-01") == set()
    lab.env["policy"] = {"AIR-01": {"allow_private_addresses": False}}
    assert lab.pairs("AIR-01") == {("AIR-01", "environment:lab")}
    lab.env["mirrors"]["registry"] = "registry.bank.internal"
    assert lab.pairs("AIR-01") == {("AIR-01", "environment:lab")}
    lab.env["policy"] = {"AIR-01": {"allowed_domains": ".bank.internal"}}
    assert lab.pairs("AIR-01") == set()


def test_air01_file_urls_are_a_parameter(lab):
    lab.env["policy"] = {"AIR-01": {"allow_file_urls": False}}
    assert lab.pairs("AIR-01") == {("AIR-01", "environment:lab")}


# --------------------------------------------------------------------------- META-01


def test_meta01_a_300000_character_purpose_is_refused(lab):
    lab.section("flows")[0]["purpose"] = "x" * 300_000
    with pytest.raises(TopologyError) as err:
        lab.load()
    (problem,) = err.value.problems
    assert problem.path.endswith(".purpose") and "at most 2000 characters" in problem.message
    assert len(str(problem)) < 400  # the value is not echoed whole


def test_meta01_annotation_size_is_judged_against_the_limit(lab):
    flow = lab.section("flows")[0]
    flow["purpose"] = "p" * 1000
    assert lab.pairs("META-01") == set()
    lab.env["policy"] = {"META-01": {"max_annotation_bytes": 1000}}  # key + 1,000 bytes > 1,000
    assert lab.pairs("META-01") == {("META-01", f"flow:{flow['name']}")}
    flow["purpose"] = "한" * 330  # 330 characters, 990 bytes of UTF-8 + the key: counted in bytes
    assert lab.pairs("META-01") == {("META-01", f"flow:{flow['name']}")}


def test_meta01_label_values_within_63_characters(lab):
    lab.env["policy"] = {"META-01": {"max_label_chars": 10}}
    found = lab.pairs("META-01")
    assert ("META-01", "service:kj-core-banking") in found  # 15 characters
    assert ("META-01", "site:gwangju") not in found


# --------------------------------------------------------------------------- CAP-01


def test_cap01_counts_only_hosts_that_can_run_the_services(lab):
    # tier 1 runs on the core clusters and on the extgw hosts: 2 x 32 + 4 = 68 cores per site, 54.4
    # usable. The DMZ worker (16) and the db hosts (2 x 16) are not capacity for them.
    lab.find("services", "kj-core-banking")["cpu"] = 44.5  # demand 54.5: beyond 54.4, within 89.6
    report = lab.report()
    found = sorted((f.target, f.message) for f in report.findings if f.rule == "CAP-01")
    assert [t for t, _ in found] == ["site:gwangju", "site:jeonju"]
    assert "54.5 CPU cores against 54.4 usable" in found[0][1]


def test_cap01_boundary_is_exact(lab):
    # 68 cores x 0.7 = 47.6 usable (47.599999999999994 in floats): a demand of exactly 47.6 passes
    lab.env["policy"] = {"CAP-01": {"max_utilisation": 0.7}}
    lab.find("services", "kj-core-banking")["cpu"] = 37.6  # 37.6 + 8 + 2
    assert lab.pairs("CAP-01") == set()
    lab.find("services", "kj-core-banking")["cpu"] = 37.7
    assert lab.pairs("CAP-01") == {("CAP-01", "site:gwangju"), ("CAP-01", "site:jeonju")}


def test_cap01_a_dmz_service_counts_its_dmz_workers(lab):
    # a tier-1 service on the DMZ clusters makes their workers capacity (16 cores more per site)
    lab.find("services", "kj-core-banking")["cpu"] = 44.5  # 54.5 against 54.4: short
    assert lab.pairs("CAP-01") == {("CAP-01", "site:gwangju"), ("CAP-01", "site:jeonju")}
    dmz = lab.find("services", "kj-internet-banking")
    assert dmz["clusters"] == ["gwangju-dmz", "jeonju-dmz"]
    dmz["tier"], dmz["cpu"] = 1, 1  # 55.5 against (68 + 16) x 0.8 = 67.2
    assert lab.pairs("CAP-01") == set()


# --------------------------------------------------------------------------- WV-03, waiver dates


def _expired_waiver(lab, today):
    lab.env["access"]["lockout_attempts"] = 6  # PW-01 finding
    lab.env["today"] = today
    lab.files[lab.file_of("services")]["waivers"] = [{
        "rule": "PW-01", "target": "environment:lab", "reason": "Legacy terminals until their replacement.",
        "approval": "ISC-2020-01", "expires": "2020-12-31"}]


def test_a_topology_cannot_move_its_own_clock(lab, monkeypatch):
    monkeypatch.delenv(PINNED_TODAY_ENV, raising=False)
    _expired_waiver(lab, "2020-06-01")
    report = lab.report()
    assert report.today == dt.date.today()
    pairs = {(f.rule, f.target, f.waived) for f in report.findings}
    assert ("PW-01", "environment:lab", False) in pairs  # the expired waiver waives nothing
    assert ("WV-01", "waiver:PW-01@environment:lab", False) in pairs
    wv03 = [f for f in report.findings if f.rule == "WV-03"]
    assert [(f.target, f.severity.value) for f in wv03] == [("environment:lab", "warning")]
    assert "ignored" in wv03[0].message and str(dt.date.today()) in wv03[0].message


def test_the_tests_may_pin_the_date_and_it_is_reported(lab, monkeypatch):
    monkeypatch.setenv(PINNED_TODAY_ENV, "1")
    _expired_waiver(lab, "2020-06-01")
    report = lab.report()
    assert report.today == dt.date(2020, 6, 1)
    assert not any(f.rule == "PW-01" and not f.waived for f in report.findings)
    assert [f.message for f in report.findings if f.rule == "WV-03"] == [
        "environment.today is set to 2020-06-01; waivers are judged as of 2020-06-01 "
        "(DUALDC_ALLOW_PINNED_TODAY=1: tests only)"]


def test_wv03_silent_without_a_pinned_date(lab):
    assert lab.pairs("WV-03") == set()


# --------------------------------------------------------------------------- DR-03


def test_dr03_carriers_are_compared_normalised(lab):
    links = lab.section("links")
    links[1]["carrier"] = "  Carrier-A "
    assert lab.load().links[1].carrier == "carrier-a"
    assert lab.pairs("DR-03") == {("DR-03", "site:gwangju")}


def test_dr03_paths_are_compared_normalised(lab):
    links = lab.section("links")
    assert lab.pairs("DR-03") == set()
    links[1]["path"] = "Route-Honam-Expressway "
    assert lab.pairs("DR-03") == {("DR-03", "site:gwangju")}
