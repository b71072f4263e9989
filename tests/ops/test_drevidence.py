"""DR evidence records (JSON, Markdown in English and Korean) and rule DR-04 that reads them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from dualdc import drevidence
from dualdc.drevidence import Check, Measure, Phase, Record
from dualdc.loader import load_environment
from dualdc.model import Severity
from dualdc.policy import run_policy

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _record(kind: str, services: list[str], *, passed: bool = True, age_days: int = 1) -> Record:
    start = NOW - dt.timedelta(days=age_days)
    return Record(
        kind=kind, scenario="site-down" if kind == "drill" else "", environment="lab", services=services,
        started=start, finished=start + dt.timedelta(minutes=3), commit="0" * 40, dirty=False,
        user="ops-kim", host="ctl-01",
        phases=[Phase(name="fault", start="2026-01-01T00:00:00Z", end="2026-01-01T00:00:01Z", seconds=1.0)],
        measures=[Measure(service=s, tier=1, rto_seconds=12.5, rto_target_seconds=3600, rpo_lost_commits=0,
                          rpo_window_seconds=0.0, rpo_target_seconds=300, met=passed) for s in services],
        checks=[Check(name="balances-sum", service=services[0], passed=passed, detail="1000000 = 1000000")],
        sources=[drevidence.SOURCES["rto"]], passed=passed,
    )


def test_a_record_is_written_as_json_and_in_both_languages(tmp_path: Path) -> None:
    paths = drevidence.write(_record("drill", ["kj-core-banking"]), tmp_path)
    assert [p.suffixes[-2:] if len(p.suffixes) > 1 else p.suffixes for p in paths] == [
        [".json"], [".en", ".md"], [".ko", ".md"]]
    assert all(p.parent == tmp_path / "lab" / "dr" for p in paths)
    data = json.loads(paths[0].read_text(encoding="utf-8"))
    assert data["measures"][0]["rto_seconds"] == 12.5 and data["passed"] is True
    en, ko = paths[1].read_text(encoding="utf-8"), paths[2].read_text(encoding="utf-8")
    assert "PASSED" in en and "Recovery time" in en and "| kj-core-banking | 12.5 | 3600 |" in en
    assert "적합" in ko and "복구목표시간" in ko and "재해복구 모의훈련" in ko
    assert "| kj-core-banking | 12.5 |" in ko
    # a second record in the same second never overwrites the first
    again = drevidence.write(_record("drill", ["kj-core-banking"]), tmp_path)
    assert again[0] != paths[0] and paths[0].exists()
    records, problems = drevidence.read_all("lab", tmp_path)
    assert len(records) == 2 and problems == []


def _dr04(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict | None = None) -> list:
    monkeypatch.setenv(drevidence.EVIDENCE_ENV, str(tmp_path))
    topology = load_environment("lab")
    if params:
        topology.environment.policy["DR-04"] = params
    return [f for f in run_policy(topology).findings if f.rule == "DR-04"]


def test_dr04_advises_when_a_tier1_service_has_no_records(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    found = _dr04(tmp_path, monkeypatch)
    assert {f.target for f in found} == {"service:kj-core-banking", "service:jb-core-banking"}
    assert all(f.severity is Severity.ADVISORY for f in found)
    assert any("no passing DR drill" in f.message for f in found)
    assert any("no passing restore test" in f.message for f in found)


def test_dr04_passes_with_recent_passing_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    both = ["kj-core-banking", "jb-core-banking"]
    drevidence.write(_record("drill", both), tmp_path)
    drevidence.write(_record("restore-test", both), tmp_path)
    assert _dr04(tmp_path, monkeypatch) == []


def test_dr04_ignores_failed_and_old_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    both = ["kj-core-banking", "jb-core-banking"]
    drevidence.write(_record("drill", both, passed=False), tmp_path)
    drevidence.write(_record("restore-test", both, age_days=400), tmp_path)
    found = _dr04(tmp_path, monkeypatch)
    assert any("no passing DR drill" in f.message for f in found)
    assert any("more than 365 days ago" in f.message for f in found)


def test_dr04_parameter_makes_it_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = _dr04(tmp_path, monkeypatch, {"enforce": True})
    assert found and all(f.severity is Severity.ERROR for f in found)


def test_dr04_reports_an_unreadable_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "lab" / "dr"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("{", encoding="utf-8")
    found = _dr04(tmp_path, monkeypatch)
    assert any(f.target == "environment:lab" and "broken.json" in f.message for f in found)
