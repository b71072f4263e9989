"""Rendering and writing the reports of drift and deploy: one format to stdout or ``--output``, or
every format at once into an artifacts folder (``--artifacts DIR``, what the pipelines keep)."""

from __future__ import annotations

from pathlib import Path

from dualdc.base import redact
from dualdc.base.files import write_atomic
from dualdc.model import Topology
from dualdc.reports import diagram
from dualdc.reports.drift import DriftReport, render_json, render_junit, render_markdown, render_text

FORMATS = ("text", "json", "markdown", "junit")
EXTENSIONS = {"text": "txt", "json": "json", "markdown": "md", "junit": "xml"}


def drift_marks(topology: Topology, report: DriftReport) -> diagram.Marks:
    summary = report.summary or report.finalize().summary
    assert summary is not None
    return diagram.marks_for(topology, set(summary.drifted_hosts), set(summary.drifted_segments))


def render_drift(
    report: DriftReport, fmt: str, topology: Topology, *, color: bool = False, full_report: str | None = None
) -> str:
    """The report in one format; the Markdown carries a Mermaid diagram marking what drifted."""
    if fmt == "json":
        text = render_json(report)
    elif fmt == "junit":
        text = render_junit(report)
    elif fmt == "markdown":
        mermaid = diagram.mermaid_for_report(topology, drift_marks(topology, report))
        text = render_markdown(report, diagram=mermaid, full_report=full_report)
    else:
        text = render_text(report, color=color)
    return redact.scrub(text)


def write_text(path: Path, text: str) -> Path:
    """Write atomically (a reader never sees half a report)."""
    return write_atomic(path, text)


def write_drift_artifacts(
    report: DriftReport, topology: Topology, folder: Path, stem: str = "drift"
) -> list[Path]:
    """Every format into ``folder`` (``drift.json``, ``.md``, ``.xml``, ``.txt``) plus the diagram (SVG) with
    the drift marked; a diagram that cannot be drawn is noted in the text report, never fatal."""
    written = []
    for fmt in FORMATS:
        name = f"{stem}.{EXTENSIONS[fmt]}"
        text = render_drift(report, fmt, topology, full_report=f"{stem}.json in the job's artifacts")
        written.append(write_text(folder / name, text))
    try:
        written.extend(diagram.write_diagrams(topology, folder / "diagram", drift_marks(topology, report)))
    except (diagram.DiagramError, OSError) as exc:
        with (folder / f"{stem}.txt").open("a", encoding="utf-8") as handle:
            handle.write(f"\nnote: the diagram could not be drawn: {exc}\n")
    return written
