"""docs/operations.md documents every field of the JSON reports and the audit record."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from dualdc.ops.audit import AuditRecord
from dualdc.reports.deploy import DeployReport, Step
from dualdc.reports.drift import (
    Acknowledgement,
    CheckedTarget,
    CoverageGap,
    DriftItem,
    DriftReport,
    LayerReport,
    Summary,
)
from dualdc.reports.header import GitInfo

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


@pytest.mark.parametrize(
    "model",
    [
        DriftReport,
        LayerReport,
        CheckedTarget,
        DriftItem,
        Summary,
        Acknowledgement,
        CoverageGap,
        GitInfo,
        DeployReport,
        Step,
        AuditRecord,
    ],
    ids=lambda m: m.__name__,
)
def test_every_field_is_documented(model: type[BaseModel]) -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in model.model_fields if f"`{name}`" not in text]
    assert not missing, f"{model.__name__}: undocumented fields {missing} in {DOC.name}"
