"""The compliance report for people (text, Markdown, in Korean or English) and machines (JSON, JUnit)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from dualdc.compliance.checks import Outcome
from dualdc.compliance.run import ComplianceReport, ControlResult

FORMATS = ("text", "json", "markdown", "junit")
LANGS = ("ko", "en")

WORDS = {
    "en": {
        "title": "Host baseline compliance",
        "env": "environment",
        "sites": "sites",
        "host": "host",
        "control": "control",
        "outcome": "outcome",
        "evidence": "evidence",
        "refs": "items",
        "unreachable": "could not be checked",
        "summary": "summary",
        "took": "took",
        "editions": "sources",
        "expected": "expected",
        Outcome.PASS: "pass",
        Outcome.FAIL: "FAIL",
        Outcome.NOT_APPLICABLE: "not applicable",
        Outcome.WAIVED: "waived",
        Outcome.ERROR: "ERROR",
    },
    "ko": {
        "title": "호스트 기준선 점검 결과",
        "env": "환경",
        "sites": "사이트",
        "host": "호스트",
        "control": "통제항목",
        "outcome": "결과",
        "evidence": "점검 근거",
        "refs": "관련 항목",
        "unreachable": "점검 불가",
        "summary": "요약",
        "took": "소요",
        "editions": "기준",
        "expected": "기대값",
        Outcome.PASS: "양호",
        Outcome.FAIL: "취약",
        Outcome.NOT_APPLICABLE: "해당 없음",
        Outcome.WAIVED: "예외 승인",
        Outcome.ERROR: "점검 오류",
    },
}


def _refs(c: ControlResult) -> str:
    parts = [*c.kisa, *(f"CIS {s}" for s in c.cis), *(f"전자금융감독규정 {a}" for a in c.efsr)]
    return ", ".join(parts)


def _title(c: ControlResult, lang: str) -> str:
    return c.title_ko if lang == "ko" else c.title_en


def _counts(report: ComplianceReport, lang: str) -> str:
    w = WORDS[lang]
    counts = report.counts()
    parts = [f"{w[o]} {counts[o.value]}" for o in Outcome]
    parts.append(f"{w['unreachable']} {counts['unreachable']}")
    return ", ".join(parts)


def render_text(report: ComplianceReport, lang: str = "en", verbose: bool = False) -> str:
    """Per host: its failures (and waivers) with evidence; every pass only with ``verbose``."""
    w = WORDS[lang]
    lines = [f"{w['title']} — {w['env']} {report.environment}, {w['sites']} {', '.join(report.sites)}"]
    for host in sorted(report.hosts, key=lambda h: h.host):
        if not host.reachable:
            lines.append(f"  {host.host}: {w['unreachable']}: {host.error}")
            continue
        shown = [
            c for c in host.controls if verbose or c.outcome in (Outcome.FAIL, Outcome.ERROR, Outcome.WAIVED)
        ]
        passed = sum(1 for c in host.controls if c.outcome is Outcome.PASS)
        lines.append(
            f"  {host.host} ({host.role}): {w[Outcome.PASS]} {passed}/"
            f"{sum(1 for c in host.controls if c.outcome is not Outcome.NOT_APPLICABLE)}"
        )
        for c in shown:
            lines.append(f"    {w[c.outcome]:<6} {c.control} [{_refs(c)}] {_title(c, lang)}")
            for evidence, expected in zip(c.evidence, c.expected, strict=False):
                lines.append(
                    f"           {evidence}"
                    + (
                        f"  ({w['expected']}: {expected})"
                        if c.outcome is not Outcome.PASS and expected
                        else ""
                    )
                )
            if c.waiver:
                lines.append(f"           {w[Outcome.WAIVED]}: {c.waiver}")
    lines.append(
        f"{w['summary']}: {_counts(report, lang)}; {len(report.hosts)} {w['host']}, "
        f"{w['took']} {report.seconds:.1f} s"
    )
    return "\n".join(lines) + "\n"


def render_json(report: ComplianceReport) -> str:
    data = report.model_dump(mode="json")
    data["counts"] = report.counts()
    data["exit_code"] = report.exit_code()
    import json  # noqa: PLC0415

    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: ComplianceReport, lang: str = "en") -> str:
    """The auditor's evidence: one table per host, every control with its items and the observed value."""
    w = WORDS[lang]
    out = [
        f"# {w['title']}: {report.environment}",
        "",
        f"- {w['sites']}: {', '.join(report.sites)}",
        f"- {report.started}, {w['took']} {report.seconds:.1f} s",
        f"- {w['summary']}: {_counts(report, lang)}",
    ]
    out += [f"- {w['editions']}: {name}: {edition}" for name, edition in report.catalogue.items()]
    for host in sorted(report.hosts, key=lambda h: h.host):
        out += ["", f"## {host.host} ({host.site}, {host.role})", ""]
        if not host.reachable:
            out.append(f"{w['unreachable']}: {_cell(host.error)}")
            continue
        out += [f"| {w['control']} | {w['refs']} | {w['outcome']} | {w['evidence']} |", "|---|---|---|---|"]
        for c in host.controls:
            evidence = "; ".join(c.evidence) + (f" ({c.waiver})" if c.waiver else "")
            out.append(
                f"| {c.control} {_cell(_title(c, lang))} | {_cell(_refs(c))} | {w[c.outcome]} | "
                f"{_cell(evidence)} |"
            )
    return "\n".join(out) + "\n"


def render_junit(report: ComplianceReport) -> str:
    """One test suite per host, one test case per control (failures carry the evidence)."""
    suites = ET.Element("testsuites", name=f"compliance {report.environment}")
    for host in sorted(report.hosts, key=lambda h: h.host):
        suite = ET.SubElement(suites, "testsuite", name=host.host, time=f"{host.seconds:.2f}")
        if not host.reachable:
            case = ET.SubElement(suite, "testcase", name="reachable", classname=host.host)
            ET.SubElement(case, "error", message=host.error)
            suite.set("tests", "1")
            suite.set("errors", "1")
            continue
        failures = 0
        for c in host.controls:
            case = ET.SubElement(
                suite, "testcase", classname=host.host, name=f"{c.control} {c.title_en} [{_refs(c)}]"
            )
            if c.outcome in (Outcome.FAIL, Outcome.ERROR):
                failures += 1
                failure = ET.SubElement(case, "failure", message="; ".join(c.evidence))
                failure.text = "\n".join(f"expected: {e}" for e in c.expected)
            elif c.outcome in (Outcome.NOT_APPLICABLE, Outcome.WAIVED):
                ET.SubElement(case, "skipped", message=c.waiver or "not applicable")
        suite.set("tests", str(len(host.controls)))
        suite.set("failures", str(failures))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def render(report: ComplianceReport, fmt: str, lang: str) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report, lang)
    if fmt == "junit":
        return render_junit(report)
    return render_text(report, lang)
