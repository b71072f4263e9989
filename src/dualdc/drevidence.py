"""DR evidence for auditors: one record per drill, switchover, failover, failback and restore test.

Each record is written three times into the evidence folder, ``evidence/<env>/dr/`` (or
``$DUALDC_EVIDENCE_DIR/<env>/dr/``): ``<stamp>-<kind>.json`` (the machine-readable record,
which policy rule DR-04 reads), ``<stamp>-<kind>.en.md`` and ``<stamp>-<kind>.ko.md`` (the
same facts for people, in English and in Korean). A record holds the scenario, the commit, every
phase with its start and end, the measured RTO and RPO against the model's targets and their
sources, the consistency checks, and who ran it. Records are only ever added, never rewritten.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EVIDENCE_ROOT = Path("evidence")
EVIDENCE_ENV = "DUALDC_EVIDENCE_DIR"
KINDS = ("drill", "switchover", "failover", "failback", "restore-test")
#: Where the targets come from (the record cites them).
SOURCES = {
    "rto": "전자금융감독규정 제23조 (비상대책: 핵심업무 복구목표시간, 은행 3시간); DORA Art. 11(6), 12(7)",
    "drill": "DORA Art. 11(6) (yearly switchover test); 전자금융감독규정 제23조 (모의훈련)",
    "restore": "DORA Art. 12 (backup, restoration and recovery); 전자금융감독규정 제23조",
}


class Phase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Phase name, e.g. fault, failover, first-commit, failback.")
    start: str = Field(description="Start (UTC, ISO 8601).")
    end: str = Field(description="End (UTC, ISO 8601).")
    seconds: float = Field(description="Duration.")
    detail: str = Field(default="", description="What happened in it.")


class Measure(BaseModel):
    """One service's figures against its targets."""

    model_config = ConfigDict(extra="forbid")

    service: str = Field(description="Service name.")
    tier: int = Field(description="Service tier (1 = core business).")
    rto_seconds: float | None = Field(
        default=None, description="Fault to first acknowledged commit at the new primary."
    )
    rto_target_seconds: float | None = Field(
        default=None, description="The service's rto_minutes, in seconds."
    )
    rpo_lost_commits: int | None = Field(default=None, description="Acknowledged commits missing afterwards.")
    rpo_window_seconds: float | None = Field(
        default=None, description="Time between the first and the last lost acknowledged commit."
    )
    rpo_target_seconds: float | None = Field(
        default=None, description="The service's rpo_minutes, in seconds."
    )
    seconds: float | None = Field(default=None, description="Other duration measured (switchover, restore).")
    met: bool = Field(description="Every target met.")


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What was checked, e.g. balances-sum, no-half-transfer, pairs-protected.")
    service: str | None = Field(default=None, description="The service it concerns, if one.")
    passed: bool = Field(description="Whether it held.")
    detail: str = Field(default="", description="The figures behind it.")


class Record(BaseModel):
    """One DR exercise, as auditors read it."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="drill, switchover, failover, failback or restore-test.")
    scenario: str = Field(default="", description="drill: planned, site-down or link-cut.")
    environment: str = Field(description="Environment.")
    services: list[str] = Field(description="Services covered.")
    started: dt.datetime = Field(description="Start (UTC).")
    finished: dt.datetime = Field(description="End (UTC).")
    commit: str | None = Field(default=None, description="The dualdc commit that ran it.")
    dirty: bool | None = Field(default=None, description="Whether the checkout had uncommitted changes.")
    user: str = Field(description="Who ran it (login name).")
    host: str = Field(description="Where it ran.")
    phases: list[Phase] = Field(default_factory=list, description="Every phase with its times.")
    measures: list[Measure] = Field(default_factory=list, description="Per service: RTO, RPO, targets.")
    checks: list[Check] = Field(default_factory=list, description="Consistency and protection checks.")
    sources: list[str] = Field(default_factory=list, description="Regulation the targets come from.")
    passed: bool = Field(description="Every measure met and every check held.")
    notes: list[str] = Field(default_factory=list, description="Anything else worth telling the auditor.")


def evidence_dir(env: str, root: Path | None = None) -> Path:
    if root is None:
        override = os.environ.get(EVIDENCE_ENV)
        root = Path(override) if override else EVIDENCE_ROOT
    return root / env / "dr"


def write(record: Record, root: Path | None = None) -> list[Path]:
    """Write the JSON and both Markdown versions; returns their paths (never overwrites)."""
    folder = evidence_dir(record.environment, root)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{record.started:%Y%m%dT%H%M%SZ}-{record.kind}"
    stem += f"-{record.scenario}" if record.scenario else ""
    n, base = 1, stem
    while (folder / f"{stem}.json").exists():
        n += 1
        stem = f"{base}-{n}"
    paths = [folder / f"{stem}.json", folder / f"{stem}.en.md", folder / f"{stem}.ko.md"]
    texts = [record.model_dump_json(indent=2) + "\n", markdown(record, "en"), markdown(record, "ko")]
    for path, text in zip(paths, texts, strict=True):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    return paths


def read_all(env: str, root: Path | None = None) -> tuple[list[Record], list[str]]:
    """Every record of an environment (oldest first) and a problem per unreadable file."""
    folder = evidence_dir(env, root)
    records, problems = [], []
    if not folder.is_dir():
        return [], []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(Record.model_validate_json(path.read_bytes()))
        except (OSError, ValidationError) as exc:
            problems.append(f"{path}: not a DR evidence record ({str(exc).splitlines()[0]})")
    return sorted(records, key=lambda r: r.started), problems


_WORDS = {
    "en": {
        "title": "DR evidence", "kind": "Exercise", "scenario": "Scenario", "env": "Environment",
        "services": "Services", "when": "When", "commit": "Commit", "who": "Run by", "result": "Result",
        "passed": "PASSED", "failed": "FAILED", "phases": "Phases", "phase": "Phase", "start": "Start",
        "end": "End", "seconds": "Seconds",
        "measures": "Recovery time and recovery point against the targets",
        "service": "Service", "rto": "RTO (s)", "rto_t": "RTO target (s)", "lost": "Lost commits",
        "window": "Loss window (s)", "rpo_t": "RPO target (s)", "met": "Met", "checks": "Checks",
        "check": "Check", "held": "Held", "detail": "Detail", "yes": "yes", "no": "no",
        "sources": "Sources", "notes": "Notes", "dirty": " (with uncommitted changes)",
        "other": "Duration (s)",
    },
    "ko": {
        "title": "재해복구 훈련 증적", "kind": "훈련 종류", "scenario": "시나리오", "env": "환경",
        "services": "대상 서비스", "when": "일시", "commit": "커밋", "who": "수행자", "result": "결과",
        "passed": "적합", "failed": "부적합", "phases": "단계", "phase": "단계", "start": "시작",
        "end": "종료", "seconds": "소요(초)", "measures": "복구목표시간(RTO)·복구목표시점(RPO) 대비 측정값",
        "service": "서비스", "rto": "RTO (초)", "rto_t": "RTO 목표 (초)", "lost": "유실 커밋 수",
        "window": "유실 구간 (초)", "rpo_t": "RPO 목표 (초)", "met": "충족", "checks": "정합성 점검",
        "check": "점검 항목", "held": "결과", "detail": "내용", "yes": "예", "no": "아니오",
        "sources": "근거 규정", "notes": "비고", "dirty": " (커밋되지 않은 변경 포함)", "other": "소요 (초)",
    },
}
_KINDS_KO = {"drill": "재해복구 모의훈련", "switchover": "계획 전환(switchover)",
             "failover": "비상 전환(failover)",
             "failback": "원복(failback)", "restore-test": "백업 복구 시험"}


def _v(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def markdown(record: Record, lang: str) -> str:
    """The record for people: ``en`` or ``ko``."""
    w = _WORDS[lang]
    kind = _KINDS_KO.get(record.kind, record.kind) if lang == "ko" else record.kind
    lines = [
        f"# {w['title']}: {kind}" + (f" ({record.scenario})" if record.scenario else ""), "",
        f"- {w['env']}: {record.environment}",
        f"- {w['services']}: {', '.join(record.services)}",
        f"- {w['when']}: {record.started:%Y-%m-%d %H:%M:%S} – {record.finished:%H:%M:%S} UTC",
        f"- {w['commit']}: {record.commit or '-'}" + (w["dirty"] if record.dirty else ""),
        f"- {w['who']}: {record.user}@{record.host}",
        f"- {w['result']}: **{w['passed'] if record.passed else w['failed']}**", "",
        f"## {w['phases']}", "",
        f"| {w['phase']} | {w['start']} | {w['end']} | {w['seconds']} | {w['detail']} |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {p.name} | {p.start} | {p.end} | {_v(p.seconds)} | {p.detail} |" for p in record.phases]
    if record.measures:
        lines += ["", f"## {w['measures']}", "",
                  f"| {w['service']} | {w['rto']} | {w['rto_t']} | {w['lost']} | {w['window']} "
                  f"| {w['rpo_t']} | {w['other']} | {w['met']} |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {m.service} | {_v(m.rto_seconds)} | {_v(m.rto_target_seconds)} "
                  f"| {_v(m.rpo_lost_commits)} | {_v(m.rpo_window_seconds)} "
                  f"| {_v(m.rpo_target_seconds)} | {_v(m.seconds)} "
                  f"| {w['yes'] if m.met else w['no']} |" for m in record.measures]
    if record.checks:
        lines += ["", f"## {w['checks']}", "",
                  f"| {w['check']} | {w['service']} | {w['held']} | {w['detail']} |",
                  "|---|---|---|---|"]
        lines += [f"| {c.name} | {c.service or '-'} | {w['yes'] if c.passed else w['no']} | {c.detail} |"
                  for c in record.checks]
    if record.sources:
        lines += ["", f"## {w['sources']}", "", *[f"- {s}" for s in record.sources]]
    if record.notes:
        lines += ["", f"## {w['notes']}", "", *[f"- {n}" for n in record.notes]]
    return "\n".join(lines) + "\n"
