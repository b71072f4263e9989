"""The drift report: its data model and its renderings (text, JSON, Markdown, JUnit XML).

:class:`DriftReport` is what ``invoke drift`` produces and what the deploy's per-site
verification reads. ``docs/operations.md`` documents the JSON shape (``schema_version`` 1);
:func:`render_json` is ``report.model_dump_json`` so the shape is exactly the model's.

Exit codes (DESIGN §6): 0 clean; 2 drift (unacknowledged drift, drift under an expired
acknowledgement, an expired acknowledgement, or a model-layer error finding); 3 not
everything could be verified (a host unreachable, a task that failed in check mode, a layer
that could not run) when there is no drift; 1 is an input error, raised before any report.
Drift wins over "unverified": what was found is certain, and the report still lists what
could not be checked.

The Markdown rendering fits a pull-request or issue comment (at most
:data:`MARKDOWN_LIMIT` characters): details are folded in ``<details>`` blocks, and when the
whole does not fit, whole blocks are left out (never cut in the middle of a code fence) with
a note saying how many and where the full report is.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
import xml.etree.ElementTree as ET
from collections import Counter
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dualdc.base.exitcodes import ExitCode, decide
from dualdc.model import Layer
from dualdc.reports.header import ReportHeader

SCHEMA_VERSION = 1
#: GitHub's limit for a comment body is 65,536 characters; stay below it with a margin.
MARKDOWN_LIMIT = 65_000
#: One diff shown in Markdown or JUnit is cut after this many characters.
DIFF_LIMIT = 6_000
#: Rows of one Markdown table before the rest is summarised.
TABLE_ROWS = 150


class ItemStatus(StrEnum):
    """What one difference means for the run."""

    DRIFT = "drift"
    """Unacknowledged drift: fails the run."""
    ACKNOWLEDGED = "acknowledged"
    """Matched by a valid drift-ack entry: shown, does not fail the run."""
    ACK_EXPIRED = "ack-expired"
    """Matched only by expired drift-ack entries: fails the run."""


class TargetStatus(StrEnum):
    """How checking one target (a host, a stack, a rule set, a probe) went."""

    CLEAN = "clean"
    DRIFT = "drift"
    ACKNOWLEDGED = "acknowledged"
    """Every difference found on it is acknowledged."""
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    """It was reached but a check failed, so it is not verified."""
    NOT_CHECKED = "not-checked"
    """Its layer could not run (say why in ``detail``)."""


class LayerStatus(StrEnum):
    CLEAN = "clean"
    DRIFT = "drift"
    UNVERIFIED = "unverified"
    NOT_COMPARED = "not-compared"
    """The layer exists but has nothing to compare against here (e.g. stacks in the lab)."""


class ReportStatus(StrEnum):
    CLEAN = "clean"
    DRIFT = "drift"
    UNVERIFIED = "unverified"


class Acknowledgement(BaseModel):
    """A drift-ack ledger entry, as applied to this run."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        description="The entry's target pattern, e.g. 'host:gj-app-01/base : Configure sshd'."
    )
    reason: str = Field(description="Why the drift is accepted for now.")
    owner: str = Field(description="Who owns getting rid of it.")
    expires: dt.date = Field(description="Last day the entry holds.")
    reference: str | None = Field(default=None, description="Change or ticket reference.")
    location: str = Field(description="file:line of the entry in drift-ack.yaml.")
    expired: bool = Field(description="True once the expiry date has passed: the entry then fails the run.")
    matched: list[str] = Field(default_factory=list, description="Ids of the drift items it matched.")


class DriftItem(BaseModel):
    """One difference between what the model declares and what runs."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        description="Stable id; drift-ack targets match it. 'host:NAME/TASK', "
        "'stack:PROJECT.STACK/RESOURCE[/PROPERTY]', 'lab:probe/FLOW', 'model:RULE/TARGET', "
        "'data:SERVICE/CHECK[/HOST]'."
    )
    layer: Layer = Field(description="Layer the difference is in.")
    target: str = Field(description="Name of the checked target it was found on (see CheckedTarget.name).")
    status: ItemStatus = Field(description="drift, acknowledged or ack-expired.")
    summary: str = Field(description="One line saying what differs.")
    site: str | None = Field(default=None, description="Site of the target, if it has one.")
    host: str | None = Field(default=None, description="Host (hosts layer).")
    task: str | None = Field(
        default=None, description="Ansible task name, with its role prefix (hosts layer)."
    )
    task_path: str | None = Field(default=None, description="Where the task is declared (file:line).")
    action: str | None = Field(default=None, description="Ansible module of the task.")
    file: str | None = Field(default=None, description="The file on the host the difference is in, if any.")
    stack: str | None = Field(default=None, description="Pulumi project.stack (stacks layer).")
    resource: str | None = Field(default=None, description="Resource URN or type::name (stacks layer).")
    property: str | None = Field(default=None, description="Property path that differs (stacks layer).")
    rule: str | None = Field(default=None, description="Policy rule id (model layer).")
    segments: list[str] = Field(
        default_factory=list, description="Segments this difference concerns (diagrams)."
    )
    diff: str = Field(default="", description="Unified diff or before/after text; may be empty.")
    acknowledged_by: str | None = Field(
        default=None, description="Target of the drift-ack entry that matched."
    )
    source: str | None = Field(
        default=None,
        description="file:line in the topology the difference is about (model layer: the finding).",
    )

    @classmethod
    def found(cls, layer: Layer, id: str, target: str, summary: str, **details: Any) -> DriftItem:
        """A difference a layer just found (status drift; the ledger may acknowledge it later)."""
        return cls(id=id, layer=layer, target=target, status=ItemStatus.DRIFT, summary=summary, **details)


class CheckedTarget(BaseModel):
    """One thing a layer checked, and how that went."""

    model_config = ConfigDict(extra="forbid")

    layer: Layer = Field(description="Layer.")
    name: str = Field(description="Host name, project.stack, 'policy' or the probe name.")
    site: str | None = Field(default=None, description="Site, if any.")
    status: TargetStatus = Field(description="Outcome of checking it.")
    detail: str = Field(default="", description="Why it is unreachable, failed or not checked; else empty.")
    counts: dict[str, int] = Field(
        default_factory=dict, description="Per-outcome counts, e.g. ok/changed/skipped."
    )
    source: str | None = Field(
        default=None,
        description="file:line declaring it in the topology (a host), or of its first failing "
        "finding (a rule); CI annotates that line. Null where nothing in the repository declares it.",
    )


class CoverageGap(BaseModel):
    """A task check mode could not evaluate (it would only run for real)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="Host.")
    task: str = Field(description="Task name with its role prefix.")
    reason: str = Field(description="Why it was not evaluated, as Ansible said.")


class LayerReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: Layer = Field(description="model, hosts, stacks, lab or data.")
    status: LayerStatus = Field(description="Outcome of the layer.")
    note: str = Field(default="", description="What the layer did here, said plainly (e.g. rendered only).")
    checked: list[CheckedTarget] = Field(default_factory=list, description="Everything the layer checked.")
    items: list[DriftItem] = Field(default_factory=list, description="Differences found.")


class Summary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drift: int = Field(description="Items with status drift.")
    acknowledged: int = Field(description="Items with status acknowledged.")
    ack_expired: int = Field(description="Items with status ack-expired.")
    expired_acknowledgements: int = Field(description="Ledger entries past their expiry.")
    targets_checked: int = Field(description="Targets checked (all layers).")
    unverified: int = Field(description="Targets unreachable, failed or not checked.")
    unverified_targets: list[str] = Field(description="Their 'layer:name'.")
    drifted_hosts: list[str] = Field(description="Hosts with drift or ack-expired items.")
    drifted_segments: list[str] = Field(description="Segments concerned by drift or ack-expired items.")


class DriftReport(ReportHeader):
    """The whole drift report (JSON ``schema_version`` 1, documented in docs/operations.md)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["dualdc-drift-report"] = Field(default="dualdc-drift-report", description="Report kind.")
    schema_version: Literal[1] = Field(default=1, description="Version of this JSON shape.")
    status: ReportStatus = Field(default=ReportStatus.CLEAN, description="clean, drift or unverified.")
    exit_code: int = Field(default=0, description="0 clean, 2 drift, 3 unverified.")
    summary: Summary | None = Field(default=None, description="Counts; filled by finalize().")
    layers: list[LayerReport] = Field(default_factory=list, description="One entry per layer checked.")
    acknowledgements: list[Acknowledgement] = Field(default_factory=list, description="The drift-ack ledger.")
    coverage: list[CoverageGap] = Field(
        default_factory=list, description="Tasks not evaluated in check mode."
    )
    messages: list[str] = Field(default_factory=list, description="Notes for the reader.")

    # -- derived ------------------------------------------------------------------------

    def items(self) -> list[DriftItem]:
        return [item for layer in self.layers for item in layer.items]

    def checked(self) -> list[CheckedTarget]:
        return [target for layer in self.layers for target in layer.checked]

    def layer(self, layer: Layer) -> LayerReport | None:
        return next((entry for entry in self.layers if entry.layer is layer), None)

    def finalize(self) -> DriftReport:
        """Compute summary, status and exit code from the layers; returns self."""
        items = self.items()
        counts = Counter(item.status for item in items)
        failing = [item for item in items if item.status is not ItemStatus.ACKNOWLEDGED]
        unverified = [
            t
            for t in self.checked()
            if t.status in (TargetStatus.UNREACHABLE, TargetStatus.FAILED, TargetStatus.NOT_CHECKED)
        ]
        expired = [ack for ack in self.acknowledgements if ack.expired]
        self.summary = Summary(
            drift=counts[ItemStatus.DRIFT],
            acknowledged=counts[ItemStatus.ACKNOWLEDGED],
            ack_expired=counts[ItemStatus.ACK_EXPIRED],
            expired_acknowledgements=len(expired),
            targets_checked=len(self.checked()),
            unverified=len(unverified),
            unverified_targets=[f"{t.layer.value}:{t.name}" for t in unverified],
            drifted_hosts=sorted({item.host for item in failing if item.host}),
            drifted_segments=sorted({seg for item in failing for seg in item.segments}),
        )
        layer_unverified = any(x.status is LayerStatus.UNVERIFIED for x in self.layers)
        code = decide(findings=bool(failing or expired), unverified=bool(unverified) or layer_unverified)
        self.exit_code = int(code)
        self.status = {ExitCode.FINDINGS: ReportStatus.DRIFT, ExitCode.UNVERIFIED: ReportStatus.UNVERIFIED,
                       ExitCode.CLEAN: ReportStatus.CLEAN}[code]
        return self

    def headline(self) -> str:
        """One line: the outcome and the counts."""
        s = self.summary or self.finalize().summary
        assert s is not None
        where = f"{self.environment} ({', '.join(self.sites)})"
        parts = [
            f"{s.drift + s.ack_expired} drifted",
            f"{s.acknowledged} acknowledged",
            f"{s.unverified} unverified of {s.targets_checked} checked",
        ]
        if s.expired_acknowledgements:
            parts.append(f"{s.expired_acknowledgements} expired acknowledgement(s)")
        return f"{self.status.value.upper()}: {where}: " + ", ".join(parts)


# --------------------------------------------------------------------------- helpers

_STATUS_MARK = {
    ReportStatus.CLEAN: "✅",
    ReportStatus.DRIFT: "❌",
    ReportStatus.UNVERIFIED: "⚠️",
    LayerStatus.CLEAN: "✅",
    LayerStatus.DRIFT: "❌",
    LayerStatus.UNVERIFIED: "⚠️",
    LayerStatus.NOT_COMPARED: "➖",
    ItemStatus.DRIFT: "❌",
    ItemStatus.ACK_EXPIRED: "⌛",
    ItemStatus.ACKNOWLEDGED: "☑️",
}


def cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a line end, with a note of what was left out."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    if "\n" in head:
        head = head[: head.rfind("\n")]
    rest = text[len(head) :]
    return f"{head}\n… ({rest.count(chr(10)) + 1} more line(s), {len(rest)} characters, not shown)"


def _where(item: DriftItem) -> str:
    if item.host:
        return item.host
    if item.stack:
        return item.stack
    if item.rule:
        return f"rule {item.rule}"
    return item.id.split("/", 1)[0]


def _what(item: DriftItem) -> str:
    if item.task:
        return item.task
    if item.resource:
        return item.resource + (f" · {item.property}" if item.property else "")
    return item.summary


# --------------------------------------------------------------------------- JSON


def render_json(report: DriftReport) -> str:
    """The documented JSON shape (docs/operations.md)."""
    return report.model_dump_json(indent=2) + "\n"


# --------------------------------------------------------------------------- text


def render_text(report: DriftReport, *, color: bool = False, width: int = 120) -> str:
    """For people at a terminal: a summary, one table per layer, then each difference with its diff."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )
    style = {"clean": "green", "drift": "bold red", "unverified": "yellow"}[report.status.value]
    console.print(Text(report.headline(), style=style))
    if report.git.commit:
        console.print(report.header_line(when=True))
    for message in report.messages:
        console.print(f"note: {message}")
    for layer in report.layers:
        console.print()
        console.print(Text(f"{layer.layer.value} layer: {layer.status.value}", style="bold"))
        if layer.note:
            console.print(f"  {layer.note}")
        if layer.checked:
            table = Table(show_edge=False, pad_edge=False, box=None)
            for column in ("target", "site", "status", "detail"):
                table.add_column(column, overflow="fold")
            for target in layer.checked:
                counts = " ".join(f"{k}={v}" for k, v in sorted(target.counts.items()))
                detail = "; ".join(p for p in (target.detail, counts) if p)
                table.add_row(target.name, target.site or "", target.status.value, detail)
            console.print(table)
    items = report.items()
    if items:
        console.print()
        console.print(Text("differences", style="bold"))
        for item in items:
            head = f"[{item.status.value}] {_where(item)}: {_what(item)}"
            if item.file:
                head += f" ({item.file})"
            console.print(Text(head, style="red" if item.status is not ItemStatus.ACKNOWLEDGED else "cyan"))
            if item.status is not ItemStatus.DRIFT and item.acknowledged_by:
                console.print(f"  acknowledged by {item.acknowledged_by!r}")
            if item.summary and item.summary != _what(item):
                console.print(f"  {item.summary}")
            if item.diff:
                console.print(
                    Text("\n".join("    " + line for line in cut(item.diff, DIFF_LIMIT).splitlines()))
                )
    if report.acknowledgements:
        console.print()
        console.print(Text("drift acknowledgements", style="bold"))
        for ack in report.acknowledgements:
            state = "EXPIRED" if ack.expired else f"until {ack.expires}"
            console.print(
                f"  {ack.location}: {ack.target} ({ack.owner}, {state}): {len(ack.matched)} matched"
            )
    if report.coverage:
        console.print()
        console.print(
            Text(
                f"check-mode coverage: {len(report.coverage)} task(s) not evaluated in check mode",
                style="bold",
            )
        )
        for gap, count in _coverage_groups(report.coverage):
            console.print(f"  {gap.task} on {count} host(s): {gap.reason}")
    return buffer.getvalue()


def _coverage_groups(gaps: list[CoverageGap]) -> list[tuple[CoverageGap, int]]:
    """Gaps grouped by task (the same task is usually skipped on many hosts)."""
    first: dict[tuple[str, str], CoverageGap] = {}
    counts: Counter[tuple[str, str]] = Counter()
    for gap in gaps:
        key = (gap.task, gap.reason)
        first.setdefault(key, gap)
        counts[key] += 1
    return [(first[key], counts[key]) for key in sorted(first)]


# --------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return html.escape(text.replace("\n", " ").replace("|", "\\|"), quote=False)


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _details(summary: str, body: str, lang: str = "") -> str:
    body = body.rstrip("\n")
    fence = _fence(body)
    return (
        f"<details><summary>{html.escape(summary, quote=False)}</summary>\n\n"
        f"{fence}{lang}\n{body}\n{fence}\n\n</details>\n"
    )


def render_markdown(
    report: DriftReport,
    *,
    diagram: str | None = None,
    full_report: str | None = None,
    limit: int = MARKDOWN_LIMIT,
    title: str | None = None,
    drift_label: str = "Drift",
    heading: str = "##",
    plan: bool = False,
) -> str:
    """A Markdown summary for a pull-request or issue comment, at most ``limit`` characters.

    ``diagram`` is Mermaid text (with the drifted hosts and segments marked); ``full_report``
    names where the complete report is (e.g. the JSON artifact), for the truncation note.
    ``title``, ``drift_label`` and ``plan`` reword it for a deploy plan ("Pending changes", no exit code).
    """
    s = report.summary or report.finalize().summary
    assert s is not None
    head: list[str] = []
    title = (
        title
        or {
            ReportStatus.CLEAN: "No drift",
            ReportStatus.DRIFT: "Drift detected",
            ReportStatus.UNVERIFIED: "Not everything could be verified",
        }[report.status]
    )
    sites = ", ".join(report.sites)
    head.append(f"{heading} {_STATUS_MARK[report.status]} {title}: `{report.environment}` ({sites})\n")
    facts = [
        f"exit {report.exit_code}",
        f"{s.drift + s.ack_expired} drifted",
        f"{s.acknowledged} acknowledged",
        f"{s.unverified} unverified of {s.targets_checked} checked",
    ]
    if plan:
        facts[:3] = [f"{s.drift + s.ack_expired} pending change(s)"]
    if report.git.commit:
        facts.append(report.commit_markdown())
    facts.append(f"{report.generated_at:%Y-%m-%d %H:%M} UTC")
    head.append(" · ".join(facts) + "\n")
    for message in report.messages:
        head.append(f"> {_md_cell(message)}\n")
    rows = [
        "| layer | status | checked | drifted | acknowledged | unverified | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for layer in report.layers:
        c = Counter(i.status for i in layer.items)
        bad = sum(
            1
            for t in layer.checked
            if t.status in (TargetStatus.UNREACHABLE, TargetStatus.FAILED, TargetStatus.NOT_CHECKED)
        )
        rows.append(
            f"| {layer.layer.value} | {_STATUS_MARK[layer.status]} {layer.status.value} | "
            f"{len(layer.checked)} | {c[ItemStatus.DRIFT] + c[ItemStatus.ACK_EXPIRED]} | "
            f"{c[ItemStatus.ACKNOWLEDGED]} | {bad} | {_md_cell(layer.note)} |"
        )
    head.append("\n".join(rows) + "\n")

    chunks: list[str] = []
    items = report.items()
    failing = [i for i in items if i.status is not ItemStatus.ACKNOWLEDGED]
    acked = [i for i in items if i.status is ItemStatus.ACKNOWLEDGED]
    for label, group in ((drift_label, failing), ("Acknowledged drift", acked)):
        if not group:
            continue
        table = [f"{heading}# {label} ({len(group)})\n", "| | where | what | file |", "|---|---|---|---|"]
        for item in group[:TABLE_ROWS]:
            table.append(
                f"| {_STATUS_MARK[item.status]} | {_md_cell(_where(item))} | {_md_cell(_what(item))} | "
                f"{_md_cell(item.file or '')} |"
            )
        if len(group) > TABLE_ROWS:
            table.append(f"\n… and {len(group) - TABLE_ROWS} more (see the full report)")
        chunks.append("\n".join(table) + "\n")
        for item in group:
            title_parts = [_where(item), _what(item)] + ([item.file] if item.file else [])
            body = item.diff or item.summary
            if item.acknowledged_by:
                body = f"acknowledged by {item.acknowledged_by!r}\n{body}"
            chunks.append(
                _details(" · ".join(title_parts), cut(body, DIFF_LIMIT), "diff" if item.diff else "")
            )
    unverified = [
        t
        for t in report.checked()
        if t.status in (TargetStatus.UNREACHABLE, TargetStatus.FAILED, TargetStatus.NOT_CHECKED)
    ]
    if unverified:
        lines = [
            f"{heading}# Not verified ({len(unverified)})\n",
            "| layer | target | status | why |",
            "|---|---|---|---|",
        ]
        for target in unverified[:TABLE_ROWS]:
            lines.append(
                f"| {target.layer.value} | {_md_cell(target.name)} | {target.status.value} | "
                f"{_md_cell(cut(target.detail, 300))} |"
            )
        chunks.append("\n".join(lines) + "\n")
    if report.acknowledgements:
        lines = [
            f"{heading}# Drift acknowledgements ({len(report.acknowledgements)})\n",
            "| target | owner | expires | matched | where |",
            "|---|---|---|---:|---|",
        ]
        for ack in report.acknowledgements[:TABLE_ROWS]:
            expires = f"⌛ **expired** {ack.expires}" if ack.expired else str(ack.expires)
            lines.append(
                f"| `{_md_cell(ack.target)}` | {_md_cell(ack.owner)} | {expires} | {len(ack.matched)} | "
                f"{_md_cell(ack.location)} |"
            )
        chunks.append("\n".join(lines) + "\n")
    if report.coverage:
        groups = _coverage_groups(report.coverage)
        body = "\n".join(f"- {gap.task} ({count} host(s)): {gap.reason}" for gap, count in groups)
        chunks.append(
            f"<details><summary>Check-mode coverage: {len(report.coverage)} task run(s) not "
            f"evaluated in check mode</summary>\n\n{html.escape(body, quote=False)}\n\n</details>\n"
        )
    if diagram:
        chunks.append(
            f"<details><summary>Where the drift is (diagram)</summary>\n\n```mermaid\n{diagram}\n```"
            "\n\n</details>\n"
        )

    where = f" in {full_report}" if full_report else " in the JSON report"
    reserve = 300
    out = "\n".join(head)
    left_out = 0
    for chunk in chunks:
        if len(out) + 1 + len(chunk) + reserve <= limit:
            out += "\n" + chunk
        else:
            left_out += 1
    if left_out:
        out += (
            f"\n> **Truncated to fit a comment:** {left_out} section(s) were left out; "
            f"the full report is{where}.\n"
        )
    if len(out) > limit:  # only the head itself could be this long: cut it at a line
        out = cut(out, limit - 200) + "\n"
    return out


# --------------------------------------------------------------------------- JUnit

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text: str) -> str:
    return _XML_BAD.sub("?", text)


def _annotate(case: ET.Element, source: str | None) -> None:
    """``file`` and ``line`` attributes on a test case, from ``file:line`` (GitLab, GitHub annotations)."""
    if not source:
        return
    file, sep, line = source.rpartition(":")
    if sep and line.isdigit() and file:
        case.set("file", _xml(file))
        case.set("line", line)
    else:
        case.set("file", _xml(source))


def render_junit(report: DriftReport) -> str:
    """JUnit XML for CI: a suite per layer, a test case per target checked; drift fails it.

    A test case carries ``file`` and ``line`` where the repository declares what it checked
    (a host's entry in the topology, a rule's first failing finding, a drift-ack entry), so
    CI annotates that line.
    """
    root = ET.Element("testsuites", name=f"dualdc drift {report.environment}")
    totals = Counter[str]()
    by_target: dict[tuple[Layer, str], list[DriftItem]] = {}
    for item in report.items():
        by_target.setdefault((item.layer, item.target), []).append(item)
    for layer in report.layers:
        suite = ET.SubElement(root, "testsuite", name=f"drift.{layer.layer.value}")
        counts = Counter[str]()
        seen: set[str] = set()
        for target in layer.checked:
            seen.add(target.name)
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"drift.{layer.layer.value}.{target.site or 'all'}",
                name=_xml(target.name),
            )
            counts["tests"] += 1
            items = by_target.get((layer.layer, target.name), [])
            _annotate(case, target.source or next((i.source for i in items if i.source), None))
            _junit_case(case, target.status, target.detail, items, counts)
        for (item_layer, name), items in by_target.items():
            if item_layer is layer.layer and name not in seen:
                case = ET.SubElement(
                    suite, "testcase", classname=f"drift.{layer.layer.value}", name=_xml(name)
                )
                counts["tests"] += 1
                _annotate(case, next((i.source for i in items if i.source), None))
                _junit_case(case, TargetStatus.DRIFT, "", items, counts)
        if layer.note:
            ET.SubElement(suite, "system-out").text = _xml(layer.note)
        for key in ("tests", "failures", "errors", "skipped"):
            suite.set(key, str(counts[key]))
            totals[key] += counts[key]
    if report.acknowledgements:
        suite = ET.SubElement(root, "testsuite", name="drift.acknowledgements")
        counts = Counter[str]()
        for ack in report.acknowledgements:
            case = ET.SubElement(suite, "testcase", classname="drift.acknowledgements", name=_xml(ack.target))
            _annotate(case, ack.location)
            counts["tests"] += 1
            if ack.expired:
                counts["failures"] += 1
                ET.SubElement(
                    case,
                    "failure",
                    type="expired",
                    message=_xml(
                        f"acknowledgement expired on {ack.expires} ({ack.location}); "
                        "fix the drift or renew it"
                    ),
                )
            else:
                ET.SubElement(case, "system-out").text = _xml(
                    f"{ack.owner} until {ack.expires}: {ack.reason}; matched {len(ack.matched)}"
                )
        for key in ("tests", "failures", "errors", "skipped"):
            suite.set(key, str(counts[key]))
            totals[key] += counts[key]
    if report.coverage:
        suite = ET.SubElement(root, "testsuite", name="drift.check-mode-coverage")
        for gap, count in _coverage_groups(report.coverage):
            case = ET.SubElement(
                suite, "testcase", classname="drift.check-mode-coverage", name=_xml(gap.task)
            )
            ET.SubElement(
                case, "skipped", message=_xml(f"not evaluated in check mode on {count} host(s): {gap.reason}")
            )
        n = len(suite.findall("testcase"))
        suite.set("tests", str(n))
        suite.set("skipped", str(n))
        suite.set("failures", "0")
        suite.set("errors", "0")
        totals["tests"] += n
        totals["skipped"] += n
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(totals[key]))
    root.set("time", f"{report.duration_seconds:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _junit_case(
    case: ET.Element, status: TargetStatus, detail: str, items: list[DriftItem], counts: Counter[str]
) -> None:
    failing = [i for i in items if i.status is not ItemStatus.ACKNOWLEDGED]
    acked = [i for i in items if i.status is ItemStatus.ACKNOWLEDGED]
    if status in (TargetStatus.UNREACHABLE, TargetStatus.FAILED):
        counts["errors"] += 1
        ET.SubElement(case, "error", type=status.value, message=_xml(cut(detail or status.value, 500)))
    elif status is TargetStatus.NOT_CHECKED:
        counts["skipped"] += 1
        ET.SubElement(case, "skipped", message=_xml(cut(detail or "not checked", 500)))
    if failing:
        counts["failures"] += 1
        parts = []
        for i in failing:
            where = f" ({i.file})" if i.file else ""
            parts.append(f"[{i.status.value}] {_what(i)}{where}\n{cut(i.diff or i.summary, DIFF_LIMIT)}")
        message = f"{len(failing)} difference(s): " + "; ".join(_what(i) for i in failing)
        failure = ET.SubElement(case, "failure", type="drift", message=_xml(cut(message, 500)))
        failure.text = _xml("\n\n".join(parts))
    if acked:
        ET.SubElement(case, "system-out").text = _xml(
            "\n".join(f"acknowledged ({i.acknowledged_by}): {_what(i)}" for i in acked)
        )
