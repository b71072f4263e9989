"""The AI zone (AI 분석망), data classes, exemptions and citations: AI-01 to AI-04, EXM-01, DATA-01.

Each rule passes on the committed environments (test_rules.py checks both validate clean) and
fails on a mutated copy with the exact (rule id, target), located at the file and line that
caused it. The lab copy has the AI segment; the production copy has the outside AI service
and its sandbox exemption.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from dualdc.loader import TopologyError, load_environment
from dualdc.model import DataClass, HostRole, InstitutionKind, Zone
from dualdc.policy import RULES, run_policy

AI_RULES = ["AI-01", "AI-02", "AI-03", "AI-04", "EXM-01"]


@pytest.fixture
def prod(copy_env: Any) -> Any:
    return copy_env("production")


def _only(copy: Any, rule: str) -> list[Any]:
    return [f for f in copy.report().findings if f.rule == rule and not f.waived]


# --------------------------------------------------------------------------- the environments


@pytest.mark.parametrize("env", ["lab", "production"])
def test_both_environments_have_an_ai_zone_that_passes_the_ai_rules(env):
    topology = load_environment(env)
    ai_segments = [s for s in topology.segments if s.zone is Zone.AI]
    banks = {t.name for t in topology.tenants if t.kind.value == "bank"}
    assert {s.tenant for s in ai_segments} >= banks and {s.site for s in ai_segments} == {"gwangju"}
    gpu = [h for h in topology.hosts if h.role is HostRole.GPU_WORKER]
    assert {h.tenant for h in gpu} == banks
    ai_services = [s for s in topology.services if s.zone is Zone.AI]
    assert ai_services and all(s.data_held in (DataClass.PSEUDONYMISED, DataClass.ANONYMISED)
                               for s in ai_services)
    # the DR posture is explicit: backups land at the primary's DR peer, restored there
    for svc in ai_services:
        assert svc.dr_mode.value == "backup-restore"
        assert topology.backup_site(svc) == topology.dr_peer(svc.primary_site)
    report = run_policy(topology)
    assert [f for f in report.findings if f.rule in (*AI_RULES, "DATA-01")] == []
    # data enters only from pseudonymisers, and results leave only over publishing flows
    into_ai = [f for f in topology.flows if f.destination.startswith("service:")
               and topology.service(f.destination[8:]).zone is Zone.AI and f.data is not DataClass.NONE]
    assert into_ai and all(topology.service(f.source[8:]).pseudonymiser for f in into_ai
                           if f.source.startswith("service:") and f.source[8:] not in
                           {s.name for s in ai_services})
    assert any(f.publishes_results for f in topology.flows)


def test_production_has_a_sandboxed_outside_ai_service_and_its_exemption():
    prod = load_environment("production")
    ai = [i for i in prod.institutions if i.kind is InstitutionKind.AI]
    assert ai
    covered = {f for e in prod.exemptions for f in e.flows}
    to_ai = [f.name for f in prod.flows if f.destination in {f"institution:{i.name}" for i in ai}]
    assert to_ai and set(to_ai) <= covered
    exm = prod.exemptions[0]
    assert exm.ai_service is not None and exm.ai_service.model_version == ai[0].model_version
    assert "2025-02-05" in exm.provision and exm.alternative_controls and exm.risk_assessment


# --------------------------------------------------------------------------- AI-01


def test_ai01_personal_data_into_ai_is_found_at_its_data_line(lab):
    lab.find("flows", "kj-pseudonymiser-to-ai")["data"] = "personal"
    found = _only(lab, "AI-01")
    assert [(f.rule, f.target) for f in found] == [("AI-01", "flow:kj-pseudonymiser-to-ai")]
    lab.save()
    loc = found[0].location
    assert loc is not None and Path(loc.file).name == lab.file_of("flows")
    flows = lab.file_of("flows")
    assert loc.line == lab.line_of(flows, "data: personal", after="name: kj-pseudonymiser-to-ai")
    assert "personal data" in found[0].message


def test_ai01_pseudonymised_data_from_a_service_that_is_no_pseudonymiser(lab):
    lab.add_flow("core-to-ai", "service:kj-core-banking", "service:kj-ai-analytics", [8500],
                 data="pseudonymised")
    assert lab.pairs("AI-01") == {("AI-01", "flow:core-to-ai")}


def test_ai01_a_flow_into_ai_without_a_data_class(lab):
    del lab.find("flows", "jb-pseudonymiser-to-ai")["data"]
    assert lab.pairs("AI-01") == {("AI-01", "flow:jb-pseudonymiser-to-ai")}


def test_ai01_a_pseudonymiser_on_ports_it_does_not_declare_or_any(lab):
    lab.find("flows", "kj-pseudonymiser-to-ai")["ports"] = [8501]
    assert lab.pairs("AI-01") == {("AI-01", "flow:kj-pseudonymiser-to-ai")}
    lab.find("flows", "kj-pseudonymiser-to-ai")["ports"] = "any"
    assert lab.pairs("AI-01") == {("AI-01", "flow:kj-pseudonymiser-to-ai")}


def test_ai01_control_traffic_without_data_passes(lab):
    lab.add_flow("health-to-ai", "service:kj-core-banking", "service:kj-ai-analytics", [8500], data="none")
    assert lab.pairs("AI-01") == set()
    lab.find("flows", "health-to-ai")["data"] = "anonymised"  # the same flow with data is refused
    assert lab.pairs("AI-01") == {("AI-01", "flow:health-to-ai")}


def test_ai01_an_ai_service_holding_personal_data(lab):
    lab.find("services", "kj-ai-analytics")["holds"] = "personal"
    assert lab.pairs("AI-01") == {("AI-01", "service:kj-ai-analytics")}
    del lab.find("services", "kj-ai-analytics")["holds"]
    assert lab.pairs("AI-01") == {("AI-01", "service:kj-ai-analytics")}  # must say what it holds


def test_ai01_ai_zones_is_a_checked_parameter(lab):
    lab.env["policy"] = {"AI-01": {"ai_zones": "gpu"}}
    with pytest.raises(TopologyError) as err:
        lab.report()
    assert "environment.policy.AI-01.ai_zones" in str(err.value.problems[0].path)


# --------------------------------------------------------------------------- AI-02


def test_ai02_a_flow_from_ai_back_into_internal_that_is_not_publishing(lab):
    lab.add_flow("ai-to-core", "service:kj-ai-analytics", "service:kj-core-banking", [8443],
                 data="anonymised")
    found = _only(lab, "AI-02")
    assert [(f.rule, f.target) for f in found] == [("AI-02", "flow:ai-to-core")]
    assert "segment:gj-kjbank-internal" in found[0].message


def test_ai02_publishing_on_a_port_the_destination_does_not_declare(lab):
    lab.find("flows", "jb-ai-publish-results")["ports"] = [8701]
    found = _only(lab, "AI-02")
    assert [(f.rule, f.target) for f in found] == [("AI-02", "flow:jb-ai-publish-results")]
    assert "marked publishes_results" in found[0].message


def test_ai02_a_path_over_several_hops_is_blamed_where_it_leaves_the_ai_zone(lab):
    # ai -> the bank's internet banking (dmz) -> its API relay -> core banking (internal)
    lab.add_flow("ai-to-ib", "service:kj-ai-analytics", "service:kj-internet-banking", [443], data="none")
    found = _only(lab, "AI-02")
    assert [(f.rule, f.target) for f in found] == [("AI-02", "flow:ai-to-ib")]
    assert "=[ai-to-ib]=>" in found[0].message and "-[kj-ib-to-api]->" in found[0].message


def test_ai02_a_publishing_mark_on_a_flow_that_does_not_leave_ai_is_a_warning(lab):
    lab.find("flows", "kj-core-to-pseudonymiser")["publishes_results"] = True
    found = _only(lab, "AI-02")
    assert [(f.rule, f.target, f.severity.value) for f in found] == [
        ("AI-02", "flow:kj-core-to-pseudonymiser", "warning")]


# --------------------------------------------------------------------------- AI-03


def test_ai03_a_model_version_past_its_approval_is_found_at_the_version(prod):
    prod.find("institutions", "genai-provider")["model_version"] = "2.2"
    found = _only(prod, "AI-03")
    assert [(f.rule, f.target) for f in found] == [("AI-03", "flow:genai-gateway-to-provider")]
    assert "moved to version 2.2, past the approved 2.1" in found[0].message
    prod.save()
    loc = found[0].location
    assert loc is not None and Path(loc.file).name == prod.file_of("institutions")
    assert loc.line == prod.line_of(prod.file_of("institutions"), "model_version: '2.2'",
                                    after="name: genai-provider")


def test_ai03_an_endpoint_other_than_the_approved_one(prod):
    prod.find("institutions", "genai-provider")["endpoint"] = "llm2.genai-provider.example:443"
    found = _only(prod, "AI-03")
    assert [(f.rule, f.target) for f in found] == [("AI-03", "flow:genai-gateway-to-provider")]
    assert "approves endpoint llm.genai-provider.example:443" in found[0].message


def test_ai03_a_flow_no_exemption_covers(prod):
    exm = prod.find("exemptions", "genai-sandbox")
    exm["flows"].remove("genai-gateway-to-provider")
    found = _only(prod, "AI-03")
    assert [(f.rule, f.target) for f in found] == [("AI-03", "flow:genai-gateway-to-provider")]
    assert "no exemption covers it" in found[0].message


def test_ai03_an_expired_exemption_covers_nothing(prod):
    exm = prod.find("exemptions", "genai-sandbox")
    exm["approved_on"], exm["expires"] = "2023-01-02", "2024-01-01"
    assert ("AI-03", "flow:genai-gateway-to-provider") in prod.pairs("AI-03")
    assert "expired on 2024-01-01" in _only(prod, "AI-03")[0].message


def test_ai03_an_outside_saas_reached_from_ai_needs_an_exemption_too(lab):
    lab.section("institutions").append({"name": "saas-crm", "display_name": "CRM SaaS", "kind": "saas",
                                        "cidrs": ["10.99.3.0/28"], "ports": [443]})
    lab.add_flow("ai-to-saas", "service:kj-ai-analytics", "institution:saas-crm", [443], data="anonymised")
    assert lab.pairs("AI-03") == {("AI-03", "flow:ai-to-saas")}


def test_ai03_a_financial_institution_is_not_watched(lab):
    lab.add_flow("ai-to-kftc", "service:kj-ai-analytics", "institution:kftc", [5001], data="anonymised")
    assert lab.pairs("AI-03") == set()


# --------------------------------------------------------------------------- AI-04


def test_ai04_a_banks_gpu_host_in_the_other_banks_ai_segment(lab):
    iface = lab.find("hosts", "gj-gpu-jb-01")["interfaces"][1]
    iface["segment"], iface["address"] = "gj-kjbank-ai", "10.10.71.32"
    assert ("AI-04", "host:gj-gpu-jb-01") in lab.pairs("AI-04")


def test_ai04_a_banks_ai_service_on_the_other_banks_host(lab):
    lab.find("services", "kj-ai-analytics")["hosts"].append("gj-gpu-jb-01")
    assert ("AI-04", "service:kj-ai-analytics") in lab.pairs("AI-04")


def test_ai04_data_from_one_banks_pseudonymiser_into_the_other_banks_ai(lab):
    lab.add_flow("kj-to-jb-ai", "service:kj-pseudonymiser", "service:jb-ai-analytics", [8500],
                 data="pseudonymised")
    assert lab.pairs("AI-04") == {("AI-04", "flow:kj-to-jb-ai")}
    assert ("TEN-01", "flow:kj-to-jb-ai") in lab.pairs("TEN-01")


def test_ten01_keeps_the_banks_ai_endpoints_apart_by_default(lab):
    assert "ai" in RULES["TEN-01"].params["protected_zones"].default.split(",")
    lab.add_flow("kj-ai-to-jb-ai", "service:kj-ai-analytics", "service:jb-ai-analytics", [8500], data="none")
    assert lab.pairs("TEN-01") == {("TEN-01", "flow:kj-ai-to-jb-ai")}


def test_ai04_a_production_ai_node_carrying_both_banks(prod):
    host = prod.find("hosts", "gj-gpu-kj-01")
    host["interfaces"].append({"name": "bond0.720", "segment": "gj-jbbank-ai", "address": "10.66.70.90",
                               "parent": "bond0"})
    assert ("AI-04", "host:gj-gpu-kj-01") in prod.pairs("AI-04")


# --------------------------------------------------------------------------- EXM-01


def test_exm01_an_expired_exemption_is_an_error_at_its_expiry_line(prod):
    exm = prod.find("exemptions", "genai-sandbox")
    exm["approved_on"], exm["expires"] = "2023-01-02", "2024-01-01"
    found = _only(prod, "EXM-01")
    assert [(f.rule, f.target, f.severity.value) for f in found] == [
        ("EXM-01", "exemption:genai-sandbox", "error")]
    prod.save()
    loc = found[0].location
    assert loc is not None and Path(loc.file).name == prod.file_of("exemptions")
    assert loc.line == prod.line_of(prod.file_of("exemptions"), "expires: '2024-01-01'")


def test_exm01_an_approval_dated_in_the_future(prod):
    exm = prod.find("exemptions", "genai-sandbox")
    exm["approved_on"] = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    exm["expires"] = (dt.date.today() + dt.timedelta(days=400)).isoformat()
    assert prod.pairs("EXM-01") == {("EXM-01", "exemption:genai-sandbox")}
    assert "not approved yet" in _only(prod, "EXM-01")[0].message


def test_exm01_expiring_soon_and_unused_are_warnings(lab):
    lab.files[lab.file_of("services")]["exemptions"] = [{
        "name": "unused", "kind": "exception", "provision": "전자금융감독규정 시행세칙 제2조의2",
        "provision_edition": "2025-02-05",
        "services": ["kj-ai-results"], "approval": "ISC-2026-07", "approved_on": "2026-01-01",
        "risk_assessment": "RA-2026-02", "alternative_controls": ["별표7 logging"],
        "expires": (dt.date.today() + dt.timedelta(days=10)).isoformat()}]
    lab.remove("flows", "kj-ai-publish-results")  # the only flow reaching kj-ai-results
    found = _only(lab, "EXM-01")
    assert sorted((f.target, f.severity.value, "in 10 days" in f.message) for f in found) == [
        ("exemption:unused", "warning", False), ("exemption:unused", "warning", True)]


def test_exm01_cannot_be_waived(lab):
    lab.files[lab.file_of("services")]["waivers"] = [{
        "rule": "EXM-01", "target": "exemption:x", "reason": "we would rather not renew it",
        "approval": "ISC-2026-01", "expires": "2099-01-01"}]
    with pytest.raises(TopologyError) as err:
        lab.report()
    assert "EXM-01 cannot be waived" in err.value.problems[0].message


# --------------------------------------------------------------------------- DATA-01


def test_data01_a_flow_leaving_internal_without_a_data_class(lab):
    del lab.find("flows", "kj-core-to-pg")["data"]
    found = _only(lab, "DATA-01")
    assert [(f.rule, f.target, f.severity.value) for f in found] == [
        ("DATA-01", "flow:kj-core-to-pg", "warning")]


def test_data01_a_flow_within_internal_needs_no_data_class(lab):
    assert "data" not in lab.find("flows", "kj-core-to-siem")
    assert ("DATA-01", "flow:kj-core-to-siem") not in lab.pairs("DATA-01")


# --------------------------------------------------------------------------- citations


def test_every_rule_names_the_edition_of_what_it_cites():
    for rule in RULES.values():
        assert rule.edition, f"{rule.id} names no edition of its source"
        if "감독규정" in rule.source:
            # the 2025-02-05 rewrite moved articles; nothing here was checked against its text
            assert "2025-02-05" in rule.edition, rule.id
            assert not rule.verified and "unverified" in rule.citation, rule.id
        if "로드맵" in rule.source:
            assert "2024-08-13" in rule.edition, rule.id


def test_cross_references_to_dora_and_pci_dss():
    assert RULES["BK-01"].dora == "Art. 12" and RULES["AI-03"].dora == "Art. 28"
    assert "11.4.5" in RULES["TEN-01"].pci_dss and "11.4.5" in RULES["AI-02"].pci_dss
    assert RULES["STR-01"].cross_references == {}
    assert all(set(r.cross_references) <= {"dora", "pci_dss"} for r in RULES.values())


# --------------------------------------------------------------------------- the model


def test_an_exemption_naming_an_undeclared_flow_is_an_input_error(lab):
    lab.files[lab.file_of("services")]["exemptions"] = [{
        "name": "typo", "kind": "exception", "provision": "시행세칙 제2조의2",
        "provision_edition": "2025-02-05",
        "flows": ["no-such-flow"],
        "approval": "ISC-1", "approved_on": "2026-01-01", "risk_assessment": "RA-1",
        "alternative_controls": ["x"], "expires": "2027-01-01"}]
    with pytest.raises(TopologyError) as err:
        lab.load()
    assert any("no-such-flow" in p.message and "exemption 'typo'" in p.message for p in err.value.problems)


@pytest.mark.parametrize(("change", "expected"), [
    ({"flows": [], "services": []}, "scope names at least one flow or service"),
    ({"expires": "2024-01-01"}, "expires after it was approved"),
])
def test_exemption_shape_errors(lab, change, expected):
    exm = {"name": "ex", "kind": "sandbox", "provision": "시행세칙 제2조의2",
           "provision_edition": "2025-02-05",
           "flows": ["kj-pseudonymiser-to-ai"],
           "approval": "FSC-1", "approved_on": "2025-01-01", "risk_assessment": "RA-1",
           "alternative_controls": ["x"], "expires": "2027-01-01"} | change
    lab.files[lab.file_of("services")]["exemptions"] = [exm]
    with pytest.raises(TopologyError) as err:
        lab.load()
    assert any(expected in p.message for p in err.value.problems)


def test_an_ai_institution_names_endpoint_model_and_version(lab):
    lab.section("institutions").append({"name": "llm", "display_name": "LLM", "kind": "ai",
                                        "cidrs": ["10.99.3.0/28"], "ports": [443]})
    with pytest.raises(TopologyError) as err:
        lab.load()
    assert any("names its endpoint, model and model_version" in p.message for p in err.value.problems)


def test_a_pseudonymiser_sits_in_internal_and_personal_data_is_personal(lab):
    lab.find("services", "kj-ai-analytics")["pseudonymiser"] = True
    lab.find("services", "kj-core-banking")["holds"] = "anonymised"
    with pytest.raises(TopologyError) as err:
        lab.load()
    messages = " ".join(p.message for p in err.value.problems)
    assert "pseudonymisation service (pseudonymiser: true) sits in the internal zone" in messages
    assert "personal_data: true means the service holds personal data" in messages


def test_exm01_a_provision_cited_from_a_superseded_edition_is_a_warning(prod):
    prod.find("exemptions", "genai-sandbox")["provision_edition"] = "2024-07-01"
    found = _only(prod, "EXM-01")
    assert [(f.target, f.severity.value) for f in found] == [("exemption:genai-sandbox", "warning")]
    assert "2025-02-05 edition replaced" in found[0].message
    prod.env["policy"] = {"EXM-01": {"current_edition": "2025-13-01"}}
    with pytest.raises(TopologyError) as err:
        prod.report()
    assert "expected an ISO date" in err.value.problems[0].message


def test_data01_a_service_that_does_not_say_what_it_holds(lab):
    del lab.find("services", "siem")["holds"]
    found = _only(lab, "DATA-01")
    assert [(f.target, f.severity.value) for f in found] == [("service:siem", "warning")]
    lab.find("services", "siem")["personal_data"] = True  # personal_data: true says it
    assert lab.pairs("DATA-01") == set()
