"""Renderings of a policy report: text, JSON (documented shape), SARIF 2.1.0 and JUnit XML."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from dualdc.loader import load_environment
from dualdc.model import Severity
from dualdc.policy import RULES, run_policy
from dualdc.reports import table
from dualdc.reports import validate as reports

ROOT = Path(__file__).resolve().parents[2]
# The public SARIF schema lives in ../shared/schemas/ beside the clone (CI checks out shared/ there too).
SARIF_SCHEMA = Path(os.environ.get("DUALDC_SARIF_SCHEMA",
                                   ROOT.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json"))


@pytest.fixture
def broken(lab):
    """A lab copy with two errors, two warnings (STR-13; WV-03: the pinned date) and a waived finding."""
    lab.add_flow("dmz-to-core", "segment:gj-kjbank-dmz", "service:kj-core-banking", [8443])
    lab.find("segments", "gj-jbbank-dmz")["vlan"] = 210
    lab.add_flow("gj-to-jj-mgmt", "segment:gj-group-mgmt", "segment:jj-group-mgmt", [22])
    lab.env["access"]["lockout_attempts"] = 6
    lab.env["today"] = "2026-06-01"
    lab.files["services.yaml"]["waivers"] = [{
        "rule": "PW-01", "target": "environment:lab", "reason": "Legacy terminals until their replacement.",
        "approval": "정보보호위원회 2026-07", "expires": "2026-12-31"}]
    return lab


def lp01_warnings(lab) -> int:
    """LP-01 lists every flow naming a whole destination segment (the lab has some, and so does
    the fixture's gj-to-jj-mgmt)."""
    return sum(1 for f in lab.section("flows") if f["destination"].startswith("segment:"))


def test_text_groups_findings_by_severity(broken):
    report = broken.report()
    text = reports.render_text(report)
    errors = text.index("errors (2)")
    warnings = text.index(f"warnings ({2 + lp01_warnings(broken)})")  # STR-13, WV-03 and LP-01
    waived = text.index("waived (1)")
    assert errors < warnings < waived
    assert "NS-01" in text[errors:warnings] and "STR-03" in text[errors:warnings]
    assert "STR-13" in text[warnings:waived] and "정보보호위원회 2026-07" in text[waived:]
    assert "WV-03" in text[warnings:waived] and "environment.today is set to 2026-06-01" in text
    assert "FAILED" in text.splitlines()[-1]
    assert all(line == line.rstrip() for line in text.splitlines())


def test_json_shape_is_documented_and_stable(broken, tmp_path, monkeypatch):
    monkeypatch.setenv("DUALDC_EVIDENCE_DIR", str(tmp_path / "no-evidence"))
    data = json.loads(reports.render_json(broken.report()))
    assert data["schema"] == "dualdc.validate/1"
    assert data["passed"] is False and data["fail_on"] == "error"
    # DR-04: no drill and no restore test on record for each tier-1 host database
    dr04 = 2 * sum(1 for s in broken.load().host_databases() if s.tier == 1)
    assert data["summary"] == {"error": 2, "warning": 2 + lp01_warnings(broken), "advisory": dr04,
                               "waived": 1, "rules": len(RULES), "failing": 2}
    ns01 = next(f for f in data["findings"] if f["rule"] == "NS-01")
    assert ns01["target"] == "flow:dmz-to-core" and ns01["severity"] == "error" and ns01["waived"] is False
    assert ns01["location"]["line"] == broken.line_of("services.yaml", "destination: service:kj-core-banking",
                                                      after="name: dmz-to-core")
    waived = next(f for f in data["findings"] if f["waived"])
    assert waived["waiver"] == {"reason": "Legacy terminals until their replacement.",
                                "approval": "정보보호위원회 2026-07", "expires": "2026-12-31"}
    assert {r["id"] for r in data["rules"]} == set(RULES)
    doc = (ROOT / "docs" / "validate-json.md").read_text(encoding="utf-8")
    keys = set(data) | set(data["summary"]) | set(data["rules"][0]) | set(ns01) | set(ns01["location"]) | set(
        waived["waiver"]) | set(data["tool"])
    undocumented = sorted(k for k in keys if f"`{k}`" not in doc)
    assert undocumented == []


def _sarif(report) -> dict:
    return json.loads(reports.render_sarif(report, root=ROOT))


def test_sarif_lists_every_rule_and_locates_results(broken):
    report = broken.report()
    sarif = _sarif(report)
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert sarif["version"] == "2.1.0"
    assert [r["id"] for r in rules] == sorted(RULES)
    ns01_rule = rules[[r["id"] for r in rules].index("NS-01")]
    assert "전자금융감독규정" in ns01_rule["properties"]["source"] and ns01_rule["help"]["markdown"]
    assert ns01_rule["defaultConfiguration"]["level"] == "error"
    results = {(r["ruleId"], r["properties"]["target"]): r for r in run["results"]}
    ns01 = results[("NS-01", "flow:dmz-to-core")]
    assert rules[ns01["ruleIndex"]]["id"] == "NS-01"
    region = ns01["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == broken.line_of("services.yaml", "destination: service:kj-core-banking",
                                                 after="name: dmz-to-core")
    assert region["startColumn"] >= 1
    assert results[("STR-13", "flow:gj-to-jj-mgmt")]["level"] == "warning"
    suppression = results[("PW-01", "environment:lab")]["suppressions"][0]
    assert suppression["kind"] == "external" and "정보보호위원회 2026-07" in suppression["justification"]


def test_sarif_paths_are_relative_to_the_repository():
    report = run_policy(load_environment("production"))
    (result,) = [r for r in _sarif(report)["runs"][0]["results"] if r["ruleId"] == "DR-01"]  # the waived one
    location = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "inventories/production/services.yaml", "uriBaseId": "%SRCROOT%"}


@pytest.mark.skipif(not SARIF_SCHEMA.is_file(), reason=f"the SARIF 2.1.0 schema is not at {SARIF_SCHEMA} "
                    "(set DUALDC_SARIF_SCHEMA)")
@pytest.mark.parametrize("env", ["broken", "production"])
def test_sarif_validates_against_the_sarif_2_1_0_schema(env, broken):
    report = broken.report() if env == "broken" else run_policy(load_environment("production"))
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [e.message for e in validator.iter_errors(_sarif(report))] == []


def test_junit_has_a_failing_case_per_failing_finding_and_a_passing_case_per_other_rule(broken):
    report = broken.report()
    root = ET.fromstring(reports.render_junit(report, root=broken.folder))
    cases = root.findall("./testsuite/testcase")
    by_name = {c.get("name"): c for c in cases}
    failed = [c for c in cases if c.find("failure") is not None]
    assert sorted(c.get("name").split()[0] for c in failed) == ["NS-01", "STR-03"]
    ns01 = next(c for c in failed if c.get("name").startswith("NS-01"))
    assert ns01.get("name").endswith(": flow:dmz-to-core")
    assert ns01.find("failure").get("message").startswith("flow:dmz-to-core: ")
    # rules without a failing finding: one passing case each, other findings in its system-out
    passing = {c.get("name").split()[0]: c for c in cases if c.find("failure") is None}
    assert set(passing) == set(RULES) - {"NS-01", "STR-03"}
    assert "gj-to-jj-mgmt" in passing["STR-13"].find("system-out").text  # a warning: reported, not failed
    assert "waived by 정보보호위원회 2026-07" in passing["PW-01"].find("system-out").text
    assert passing["STR-13"].get("file") is None  # only failures are annotated
    assert root.get("failures") == "2" and root.find("testsuite").get("tests") == str(len(cases))
    assert len(by_name) == len(cases)  # names are unique
    # failing on warnings turns the warning into a failing case of its own
    strict = ET.fromstring(reports.render_junit(report, Severity.WARNING, root=broken.folder))
    # the two errors, STR-13, WV-03 (the pinned date) and each LP-01 finding (whole-segment flows)
    assert strict.get("failures") == str(4 + lp01_warnings(broken))
    assert {c.get("name").split()[0] for c in strict.iter("testcase") if c.find("failure") is not None} == {
        "NS-01", "STR-03", "STR-13", "WV-03", "LP-01"}


def test_junit_failures_carry_the_topology_file_and_line(broken):
    """GitLab's test report and GitHub's JUnit annotations read a test case's file and line."""
    report = broken.report()
    root = ET.fromstring(reports.render_junit(report, root=broken.folder))
    ns01 = next(c for c in root.iter("testcase") if c.get("name").startswith("NS-01"))
    assert ns01.get("file") == "services.yaml"  # relative to the root given (the repository's)
    assert ns01.get("line") == str(broken.line_of("services.yaml", "destination: service:kj-core-banking",
                                                  after="name: dmz-to-core"))
    str03 = next(c for c in root.iter("testcase") if c.get("name").startswith("STR-03"))
    line = int(str03.get("line"))
    lines = (broken.folder / str03.get("file")).read_text(encoding="utf-8").splitlines()
    assert "vlan: 210" in lines[line - 1]


def test_junit_paths_are_relative_to_the_root_given(broken):
    report = broken.report()
    root = ET.fromstring(reports.render_junit(report, root=broken.folder.parent))
    files = {c.get("file") for c in root.iter("testcase") if c.find("failure") is not None}
    assert files == {f"{broken.folder.name}/services.yaml", f"{broken.folder.name}/network.yaml"}


def test_exit_codes(broken, copy_env):
    assert reports.exit_code(broken.report()) == 2
    clean = run_policy(load_environment("lab"))
    assert reports.exit_code(clean) == 0
    lab = copy_env("lab")
    site = lab.find("sites", "jeonju")
    site["latitude"], site["longitude"] = 35.23, 126.85  # DR-02 advisory only
    advisory = lab.report()
    assert reports.exit_code(advisory) == 0
    assert reports.exit_code(advisory, Severity.ADVISORY) == 2


def test_json_is_plain_utf8_and_ends_with_a_newline(broken):
    text = reports.render_json(broken.report())
    assert text.endswith("}\n") and "정보보호위원회" in text
    assert not re.search(r"\\u[0-9a-f]{4}", text)


def test_sarif_suppression_says_where_the_waiver_is_written(broken):
    report = broken.report()
    run = json.loads(reports.render_sarif(report, root=broken.folder))["runs"][0]
    waived = [r for r in run["results"] if "suppressions" in r]
    assert [(r["ruleId"], r["properties"]["target"]) for r in waived] == [("PW-01", "environment:lab")]
    (suppression,) = waived[0]["suppressions"]
    assert suppression["kind"] == "external"
    assert "Legacy terminals until their replacement." in suppression["justification"]
    assert suppression["properties"] == {"approval": "정보보호위원회 2026-07", "expires": "2026-12-31"}
    where = suppression["location"]["physicalLocation"]
    assert where["artifactLocation"] == {"uri": "services.yaml", "uriBaseId": "%SRCROOT%"}
    line = where["region"]["startLine"]
    first, last = broken.line_of("services.yaml", "waivers:"), broken.line_of("services.yaml", "2026-12-31")
    assert first <= line <= last
    # the unwaived findings carry no suppression: code scanning keeps them open
    assert all("suppressions" not in r for r in run["results"] if r["ruleId"] in ("NS-01", "STR-03"))


# --------------------------------------------------------------------------- the plain table


def _columns_at(line: str) -> list[int]:
    """Cell offsets where each two-space-separated field of a table line starts."""
    starts, offset, previous = [], 0, " "
    for i, ch in enumerate(line):
        if ch != " " and previous == " " and line[max(0, i - 2):i] == "  ":
            starts.append(offset)
        offset += table.cells(ch)
        previous = ch
    return starts


def test_plain_table_aligns_wide_characters_and_folds_within_the_width():
    message = "정보보호위원회 승인 없이 개인(신용)정보가 AI 분석망으로 들어갑니다 " * 4
    rows = [("AI-01", "flow:가명-처리", "flows.yaml:12:3", message.strip()),
            ("STR-03", "segment:gj-kjbank-dmz", "a/" * 60 + "network.yaml:41:9", "VLAN 210 is already used")]
    columns = (table.Column("rule", wrap=False), table.Column("target"), table.Column("where"),
               table.Column("finding"))
    text = table.render("errors (2)", columns, rows, width=100)
    lines = text.splitlines()
    assert lines[0] == "errors (2)" and lines[3].strip().startswith("─")
    assert all(table.cells(line) <= 100 for line in lines)
    # every line of the first row starts its finding text at the same cell
    first_row = lines[4:lines.index(next(x for x in lines if x.startswith("  STR-03")))]
    finding_at = _columns_at(lines[2])[-1]
    assert len(first_row) > 1
    assert all(_columns_at(line)[-1] == finding_at for line in first_row)
    # folding loses nothing: the message's words and the long path come back whole
    assert " ".join(line[_cell_index(line, finding_at):] for line in first_row).split() == message.split()
    second = lines[4 + len(first_row):]
    where_at = _columns_at(lines[2])[2]
    where = "".join(line[_cell_index(line, where_at):_cell_index(line, finding_at)].strip()
                    for line in second)
    assert where == "a/" * 60 + "network.yaml:41:9"
    assert len(lines[3].split()[-1]) >= (100 - 2 - 3 * 2) // 2  # the free text keeps half the room


def _cell_index(line: str, cell: int) -> int:
    """The character index of ``line`` at terminal cell ``cell``."""
    used = 0
    for i, ch in enumerate(line):
        if used >= cell:
            return i
        used += table.cells(ch)
    return len(line)
