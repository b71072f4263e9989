"""The controls catalogue: its schema, its completeness, and that what it names exists."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from dualdc.compliance.catalogue import (
    CATALOGUE,
    KISA_ITEMS,
    CatalogueError,
    SourceName,
    load_catalogue,
    parse_catalogue,
)
from dualdc.compliance.checks import CHECKS

ROOT = Path(__file__).resolve().parents[2]


def test_the_catalogue_loads_and_covers_every_kisa_unix_item() -> None:
    cat = load_catalogue()
    covered = {r for c in cat.controls for r in c.refs(SourceName.KISA)} | {
        n.kisa for n in cat.not_applicable
    }
    assert covered == set(KISA_ITEMS)
    assert set(cat.sources) == set(SourceName)
    assert all(cat.sources[s].edition for s in SourceName)


def test_every_enforcing_task_exists_in_its_role() -> None:
    for control in load_catalogue().controls:
        where = control.enforced_by
        path = ROOT / "roles" / where.role / "tasks" / where.tasks
        assert path.is_file(), (control.id, path)
        names = [t.get("name") for t in yaml.safe_load(path.read_text(encoding="utf-8")) or []]
        assert where.task in names, (control.id, where.task, names)


def test_every_check_kind_is_used_and_every_checker_documented() -> None:
    used = {check.kind for c in load_catalogue().controls for check in c.checks}
    assert used == set(CHECKS)
    assert all(spec.doc for spec in CHECKS.values())


def test_a_missing_kisa_item_is_named() -> None:
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    data["controls"] = [c for c in data["controls"] if c["id"] != "HB-05"]
    with pytest.raises(CatalogueError, match="missing: U-44"):
        parse_catalogue(yaml.safe_dump(data, allow_unicode=True), "controls.yaml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "X-1"}, "id"),
        ({"roles": ["mainframe"]}, "unknown host role"),
        ({"satisfies": [{"source": "kisa", "id": "U-73"}]}, "not an item of the Unix checklist"),
        ({"satisfies": [{"source": "cis", "id": "five"}]}, "is not a section number"),
        ({"checks": [{"kind": "telepathy"}]}, "unknown check kind"),
        (
            {"checks": [{"kind": "sshd", "params": {"option": "PermitRootLogin"}}]},
            "String should match pattern",
        ),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_a_bad_control_is_reported_with_file_and_line(change: dict[str, object], message: str) -> None:
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    data["controls"][0] = {**data["controls"][0], **change}
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "controls.yaml")
    text = str(err.value)
    assert message in text
    assert text.startswith("controls.yaml:") and "controls[0]" in text


def test_a_control_declared_twice_and_an_item_both_covered_and_excluded_are_refused() -> None:
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    data["controls"].append(copy.deepcopy(data["controls"][0]))
    data["not_applicable"] = [
        {"kisa": "U-01", "title": {"ko": "root", "en": "root"}, "reason": "just because we say"}
    ]
    with pytest.raises(CatalogueError) as err:
        parse_catalogue(yaml.safe_dump(data, allow_unicode=True), "controls.yaml")
    assert "HB-01 is declared twice" in str(err.value)
    assert "U-01 is both satisfied" in str(err.value)


def test_the_loader_refuses_unsafe_yaml() -> None:
    with pytest.raises(CatalogueError, match=r"controls\.yaml:1"):
        parse_catalogue("sources: !!python/object:os.system {}\n", "controls.yaml")
