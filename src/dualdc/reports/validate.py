"""Renderings of a policy :class:`~dualdc.policy.Report`: text, JSON, SARIF 2.1.0 and JUnit XML.

- ``text``: for people; one table per severity (errors first), waived findings last
  with their approval, then a one-line summary.
- ``json``: for machines; the shape is documented in ``docs/validate-json.md`` and versioned
  by its ``schema`` field (``dualdc.validate/1``): fields are only ever added.
- ``sarif``: SARIF 2.1.0 for code scanning; every rule is in ``tool.driver.rules`` with its
  help text and source, every finding is a result located at ``file:line:column`` relative
  to the repository root, so a pull request shows it inline. Waived findings carry an
  accepted ``suppressions`` entry with the waiver's approval.
- ``junit``: JUnit XML for CI; one failing test case per failing finding, with the
  finding's ``file`` and ``line`` (GitLab and GitHub annotate that topology line), and one
  passing test case per rule without failures; warnings, advisories and waived findings are
  listed in the ``<system-out>`` of their rule's first case.

Exit codes are decided by :func:`exit_code`: 0 when nothing fails, 2 when a finding at the
``fail_on`` severity or worse (default: error) is not waived. Input errors (exit 1) happen
before a report exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import dualdc
from dualdc.base.exitcodes import decide
from dualdc.model import Severity
from dualdc.policy import Finding, Report, iter_rules
from dualdc.reports import table

FORMATS = ("text", "json", "sarif", "junit")
JSON_SCHEMA_ID = "dualdc.validate/1"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/jbfg/dualdc"
SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.ADVISORY: "note"}
FINDING_COLUMNS = (table.Column("rule", wrap=False), table.Column("target"), table.Column("where"),
                   table.Column("finding"))
WAIVED_COLUMNS = (table.Column("rule", wrap=False), table.Column("target"), table.Column("approval"),
                  table.Column("expires", wrap=False), table.Column("finding"))


def exit_code(report: Report, fail_on: Severity = Severity.ERROR) -> int:
    """2 when a finding at ``fail_on`` or worse is not waived, else 0."""
    return decide(findings=bool(report.failing(fail_on)))


def _where(finding: Finding) -> str:
    loc = finding.location
    if loc is None:
        return ""
    return f"{loc.file}:{loc.line}:{loc.column}" if loc.line else loc.file


# --------------------------------------------------------------------------- text


def render_text(report: Report, fail_on: Severity = Severity.ERROR, width: int = 160) -> str:
    """Tables grouped by severity, then waived findings, then a summary line."""
    blocks: list[str] = []
    findings = report.findings
    for severity in Severity:
        group = [f for f in findings if f.severity is severity and not f.waived]
        if group:
            blocks.append(table.render(
                f"{severity.value}s ({len(group)})", FINDING_COLUMNS,
                [(f.rule, f.target, _where(f), f.message) for f in group], width))
    waived = [f for f in findings if f.waived]
    if waived:
        rows = []
        for f in waived:
            assert f.waived_by is not None
            rows.append((f.rule, f.target, f.waived_by.approval, str(f.waived_by.expires), f.message))
        blocks.append(table.render(f"waived ({len(waived)})", WAIVED_COLUMNS, rows, width))
    counts = report.counts()
    failing = len(report.failing(fail_on))
    verdict = "FAILED" if failing else "passed"
    blocks.append(
        f"{report.environment}: {verdict} — {len(report.results)} rules, {counts['error']} errors, "
        f"{counts['warning']} warnings, {counts['advisory']} advisories, {counts['waived']} waived "
        f"(as of {report.today}; failing on {fail_on.value})\n"
    )
    return "\n".join(blocks)


# --------------------------------------------------------------------------- json


def _location(finding: Finding) -> dict[str, Any] | None:
    loc = finding.location
    return None if loc is None else {"file": loc.file, "line": loc.line, "column": loc.column}


def as_dict(report: Report, fail_on: Severity = Severity.ERROR) -> dict[str, Any]:
    """The JSON shape documented in ``docs/validate-json.md``."""
    counts = report.counts()
    return {
        "schema": JSON_SCHEMA_ID,
        "tool": {"name": "dualdc", "version": dualdc.__version__},
        "environment": report.environment,
        "date": report.today.isoformat(),
        "fail_on": fail_on.value,
        "passed": not report.failing(fail_on),
        "summary": {**counts, "rules": len(report.results), "failing": len(report.failing(fail_on))},
        "rules": [
            {
                "id": r.rule.id,
                "title": r.rule.title,
                "severity": r.rule.severity.value,
                "source": r.rule.source,
                "edition": r.rule.edition,
                "verified": r.rule.verified,
                "cross_references": r.rule.cross_references,
                "waivable": r.rule.waivable,
                "parameters": dict(sorted(r.params.items())),
                "findings": len(r.findings),
            }
            for r in report.results
        ],
        "findings": [
            {
                "rule": f.rule,
                "severity": f.severity.value,
                "target": f.target,
                "message": f.message,
                "location": _location(f),
                "waived": f.waived,
                "waiver": None if f.waived_by is None else {
                    "reason": f.waived_by.reason,
                    "approval": f.waived_by.approval,
                    "expires": f.waived_by.expires.isoformat(),
                },
            }
            for f in report.findings
        ],
    }


def render_json(report: Report, fail_on: Severity = Severity.ERROR) -> str:
    return json.dumps(as_dict(report, fail_on), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- sarif


def _artifact(file: str, root: Path) -> dict[str, str]:
    """A SARIF artifactLocation: relative to the repository root where the file is inside it."""
    path = Path(file)
    absolute = path if path.is_absolute() else (Path.cwd() / path)
    try:
        relative = absolute.resolve().relative_to(root.resolve())
    except ValueError:
        return {"uri": absolute.resolve().as_uri()}
    return {"uri": relative.as_posix(), "uriBaseId": "%SRCROOT%"}


def _rule_help(rule_id: str) -> tuple[str, str]:
    rule = next(r for r in iter_rules() if r.id == rule_id)
    params = "".join(f"\n- `{name}` (default `{p.default}`): {p.help}"
                     for name, p in sorted(rule.params.items()))
    refs = "".join(f"; {name}: {ref}" for name, ref in
                   (("DORA", rule.dora), ("PCI DSS 4.0", rule.pci_dss)) if ref)
    text = f"{rule.description}\n\nSource: {rule.citation}{refs}."
    markdown = f"**{rule.id}: {rule.title}**\n\n{rule.description}\n\n*Source:* {rule.citation}{refs}"
    if params:
        text += "\n\nParameters (override in environment.policy):" + params.replace("`", "")
        markdown += "\n\n*Parameters* (override in `environment.policy`):" + params
    if rule.waivable:
        markdown += "\n\nA finding can be waived by a `waivers:` entry naming this rule and its target."
    return text, markdown


def _camel(title: str) -> str:
    """``No path from the internet …`` → ``NoPathFromTheInternet…`` (SARIF rule names)."""
    words = "".join(c if c.isalnum() else " " for c in title).split()
    return "".join(w[:1].upper() + w[1:] for w in words)


def render_sarif(report: Report, root: Path | None = None) -> str:
    """SARIF 2.1.0 with every rule and every finding (waived ones as suppressed results)."""
    root = root or Path.cwd()
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for result in report.results:
        rule = result.rule
        index[rule.id] = len(rules)
        text, markdown = _rule_help(rule.id)
        rules.append({
            "id": rule.id,
            "name": _camel(rule.title),
            "shortDescription": {"text": rule.title},
            "fullDescription": {"text": rule.summary},
            "help": {"text": text, "markdown": markdown},
            "defaultConfiguration": {"level": SARIF_LEVEL[rule.severity]},
            "properties": {
                "source": rule.source,
                "edition": rule.edition,
                "verified": rule.verified,
                "crossReferences": rule.cross_references,
                "parameters": dict(sorted(result.params.items())),
                "tags": ["dualdc", "structure" if rule.id.startswith(("STR-", "WV-")) else "regulation"],
            },
        })
    results = []
    for f in report.findings:
        entry: dict[str, Any] = {
            "ruleId": f.rule,
            "ruleIndex": index[f.rule],
            "level": SARIF_LEVEL[f.severity],
            "message": {"text": f"{f.target}: {f.message}"},
            "partialFingerprints": {"dualdcFinding/v1": f"{f.rule}|{f.target}"},
            "properties": {"target": f.target},
        }
        if f.location is not None:
            physical: dict[str, Any] = {"artifactLocation": _artifact(f.location.file, root)}
            if f.location.line:
                physical["region"] = {"startLine": f.location.line, "startColumn": max(1, f.location.column)}
            entry["locations"] = [{"physicalLocation": physical}]
        if f.waived_by is not None:
            # No "status": absent means the suppression is in effect, and drafts of 2.1.0
            # disagree on the property's name ("state" in the published JSON schema).
            suppression: dict[str, Any] = {
                "kind": "external",
                "justification": f"{f.waived_by.reason} (approval {f.waived_by.approval}, "
                                 f"expires {f.waived_by.expires.isoformat()})",
                "properties": {"approval": f.waived_by.approval, "expires": f.waived_by.expires.isoformat()},
            }
            declared = f.waived_by.location
            if declared is not None:  # where the waiver is written: the suppression's own location
                written: dict[str, Any] = {"artifactLocation": _artifact(declared.file, root)}
                if declared.line:
                    written["region"] = {"startLine": declared.line, "startColumn": max(1, declared.column)}
                suppression["location"] = {"physicalLocation": written}
            entry["suppressions"] = [suppression]
        results.append(entry)
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "dualdc",
                "semanticVersion": dualdc.__version__,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }},
            "automationDetails": {"id": f"dualdc/validate/{report.environment}/"},
            "invocations": [{"executionSuccessful": True}],
            "results": results,
        }],
    }
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- junit


def _relative(file: str, root: Path) -> str:
    """A finding's file relative to the repository root (as CI annotations want), else absolute."""
    path = Path(file)
    absolute = path if path.is_absolute() else (Path.cwd() / path)
    try:
        return absolute.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return absolute.resolve().as_posix()


def render_junit(report: Report, fail_on: Severity = Severity.ERROR, root: Path | None = None) -> str:
    """JUnit XML: a failing test case per failing finding, a passing one per rule without failures.

    A failing case carries the finding's ``file`` (relative to ``root``, default the working
    directory) and ``line``, so GitLab's test report and GitHub's JUnit annotations point at
    the topology line. Warnings, advisories and waived findings stay in ``<system-out>`` of
    their rule's first case.
    """
    root = root or Path.cwd()
    failing = {id(f) for f in report.failing(fail_on)}
    classname = f"dualdc.policy.{report.environment}"
    suite = ET.Element("testsuite", name=f"dualdc validate {report.environment}",
                       timestamp=report.today.isoformat())
    tests = failures = 0
    for result in report.results:
        rule = result.rule
        cases: list[ET.Element] = []
        others = []
        for f in sorted(result.findings, key=Finding.sort_key):
            if id(f) in failing:
                case = ET.SubElement(suite, "testcase", classname=classname,
                                     name=f"{rule.id} {rule.title}: {f.target}")
                if f.location is not None:
                    case.set("file", _relative(f.location.file, root))
                    if f.location.line:
                        case.set("line", str(f.location.line))
                failure = ET.SubElement(case, "failure", type=f.severity.value,
                                        message=f"{f.target}: {f.message}")
                failure.text = f"{_where(f)}\n{f.rule} {f.severity.value} {f.target}\n{f.message}\n"
                cases.append(case)
            else:
                state = (f"waived by {f.waived_by.approval} until {f.waived_by.expires}" if f.waived_by
                         else f.severity.value)
                others.append(f"{_where(f)}: {f.rule} {f.target} ({state}): {f.message}")
        failures += len(cases)
        if not cases:
            name = f"{rule.id} {rule.title}"
            cases.append(ET.SubElement(suite, "testcase", classname=classname, name=name))
        tests += len(cases)
        if others:
            ET.SubElement(cases[0], "system-out").text = "\n".join(others) + "\n"
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    suites = ET.Element("testsuites", name="dualdc validate", tests=str(tests),
                        failures=str(failures), errors="0")
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def render(report: Report, fmt: str, fail_on: Severity = Severity.ERROR, root: Path | None = None) -> str:
    """The report in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "text":
        return render_text(report, fail_on)
    if fmt == "json":
        return render_json(report, fail_on)
    if fmt == "sarif":
        return render_sarif(report, root)
    if fmt == "junit":
        return render_junit(report, fail_on, root)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
