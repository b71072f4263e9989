"""The host baseline's controls catalogue: controls as data, schema-checked.

``controls.yaml`` (next to this module) lists every control of the host baseline: the items
of the sources it satisfies (KISA's Unix checklist ``U-01``..``U-72``, the CIS Debian Linux 12
Benchmark, the 전자금융감독규정), a Korean and an English title, the host roles it applies
to, the role task that enforces it and the check ``invoke compliance`` runs on a live host.
Every KISA Unix item is either satisfied by a control or listed as not applicable with the
reason, and the catalogue names the edition each id comes from. An id nobody checked
against the source text says so (``verified: false``) instead of pretending.

:func:`load_catalogue` reads the file with the topology's safe YAML loader, so a mistake is
reported as ``file:line:column: field: what was expected``, never as a traceback.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dualdc.compliance.checks import CHECKS
from dualdc.loader import LoadProblem, TopologyError, _validation_problems, display_path, parse_yaml
from dualdc.model import HostRole

CATALOGUE = Path(__file__).with_name("controls.yaml")
#: Every item of the KISA Unix checklist (2021 edition): U-01 .. U-72.
KISA_ITEMS = tuple(f"U-{n:02d}" for n in range(1, 73))
#: A control's id is shaped like a policy rule's, so the topology's waivers can name it.
CONTROL_ID = r"^HB-\d{2}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceName(StrEnum):
    KISA = "kisa"
    CIS = "cis"
    EFSR = "efsr"


class Category(StrEnum):
    ACCOUNTS = "accounts"
    FILES = "files"
    SERVICES = "services"
    KERNEL = "kernel"
    SSH = "ssh"
    LOGGING = "logging"
    INTEGRITY = "integrity"


class Source(_Strict):
    title: str = Field(min_length=3, description="The source's full title as published.")
    edition: str = Field(min_length=4, description="The edition the ids of this catalogue come from.")
    note: str = Field(default="", description="What was and was not checked against the source's text.")


class Title(_Strict):
    ko: str = Field(min_length=2, description="Korean title (as the KISA item reads, where one applies).")
    en: str = Field(min_length=2, description="English title.")


class Reference(_Strict):
    source: SourceName = Field(description="Which source the id is from (kisa, cis, efsr).")
    id: str = Field(min_length=1, max_length=40, description="The item's id in that source's edition.")
    verified: bool = Field(
        default=False,
        description="True only when the id and its wording were checked against the source's text.",
    )

    @model_validator(mode="after")
    def _shape(self) -> Reference:
        shapes = {
            SourceName.KISA: (r"^U-\d{2}$", "U-01 .. U-72"),
            SourceName.CIS: (r"^\d+(\.\d+){1,4}$", "a section number such as 5.1.18"),
            SourceName.EFSR: (
                r"^제\d+조(의\d+)?(제\d+항)?(제\d+호)?$",
                "an article such as 제32조 or 제13조제1항",
            ),
        }
        pattern, expected = shapes[self.source]
        if not re.match(pattern, self.id):
            raise ValueError(f"{self.source.value} id {self.id!r} is not {expected}")
        if self.source is SourceName.KISA and self.id not in KISA_ITEMS:
            raise ValueError(f"{self.id} is not an item of the Unix checklist (U-01 .. U-72)")
        return self


class Enforcement(_Strict):
    role: str = Field(pattern=r"^[a-z_]+$", description="The role under roles/ that enforces the control.")
    tasks: str = Field(pattern=r"^[a-z_]+\.yml$", description="The role's task file holding the task.")
    task: str = Field(min_length=3, description="The task's name, exactly as in the task file.")


class Check(_Strict):
    kind: str = Field(description="The checker (dualdc.compliance.checks.CHECKS) that judges the live host.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The checker's parameters, checked by its model."
    )

    @model_validator(mode="after")
    def _known(self) -> Check:
        checker = CHECKS.get(self.kind)
        if checker is None:
            raise ValueError(f"unknown check kind {self.kind!r}; known: {', '.join(sorted(CHECKS))}")
        checker.params.model_validate(self.params)
        return self


class Control(_Strict):
    id: str = Field(
        pattern=CONTROL_ID, description="The control's id (HB-nn); waivers name it as their rule."
    )
    category: Category = Field(
        description="The area: accounts, files, services, kernel, ssh, logging, integrity."
    )
    title: Title = Field(description="What the control requires, in Korean and English.")
    satisfies: list[Reference] = Field(min_length=1, description="The source items the control satisfies.")
    roles: list[str] = Field(
        min_length=1, description="Host roles it applies to (a role of the model), or 'all'."
    )
    enforced_by: Enforcement = Field(description="The role and task that put the control in place.")
    checks: list[Check] = Field(
        min_length=1, description="How it is checked on a live host (every check must pass)."
    )
    note: str = Field(
        default="", description="What an auditor should know: a deviation from the source, a limit."
    )

    @model_validator(mode="after")
    def _roles(self) -> Control:
        known = {r.value for r in HostRole} | {"all"}
        wrong = [r for r in self.roles if r not in known]
        if wrong:
            raise ValueError(f"unknown host role(s) {', '.join(wrong)}; known: {', '.join(sorted(known))}")
        return self

    def applies_to(self, role: str) -> bool:
        return "all" in self.roles or role in self.roles

    def refs(self, source: SourceName) -> list[str]:
        return [r.id for r in self.satisfies if r.source is source]


class NotApplicable(_Strict):
    kisa: str = Field(pattern=r"^U-\d{2}$", description="The KISA Unix item.")
    title: Title = Field(description="The item's title.")
    reason: str = Field(min_length=10, description="Why the item does not apply to dualdc's Debian 12 hosts.")


class CisNotCovered(_Strict):
    cis: str = Field(pattern=r"^\d+(\.\d+){0,4}$", description="The CIS section (or a whole chapter).")
    title: str = Field(min_length=3, description="The section's subject.")
    reason: str = Field(min_length=10, description="Why no control of the catalogue covers it.")


class Catalogue(_Strict):
    sources: dict[SourceName, Source] = Field(description="The edition of each source the ids come from.")
    controls: list[Control] = Field(min_length=1, description="The controls of the host baseline.")
    not_applicable: list[NotApplicable] = Field(
        default_factory=list, description="KISA Unix items that do not apply, each with the reason."
    )
    cis_not_covered: list[CisNotCovered] = Field(
        default_factory=list,
        description="CIS Level 1 - Server sections outside this catalogue, with the reason.",
    )

    @model_validator(mode="after")
    def _complete(self) -> Catalogue:
        problems: list[str] = []
        missing = [s.value for s in SourceName if s not in self.sources]
        if missing:
            problems.append(f"sources: no edition given for {', '.join(missing)}")
        seen: set[str] = set()
        for control in self.controls:
            if control.id in seen:
                problems.append(f"control {control.id} is declared twice")
            seen.add(control.id)
        covered = {r.id for c in self.controls for r in c.satisfies if r.source is SourceName.KISA}
        excluded: set[str] = set()
        for item in self.not_applicable:
            if item.kisa in excluded:
                problems.append(f"not_applicable lists {item.kisa} twice")
            if item.kisa in covered:
                problems.append(f"{item.kisa} is both satisfied by a control and marked not applicable")
            if item.kisa not in KISA_ITEMS:
                problems.append(f"not_applicable: {item.kisa} is not an item of U-01 .. U-72")
            excluded.add(item.kisa)
        absent = [k for k in KISA_ITEMS if k not in covered and k not in excluded]
        if absent:
            problems.append(
                "every KISA Unix item needs a control or a reason it does not apply; missing: "
                + ", ".join(absent)
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def control(self, control_id: str) -> Control:
        for control in self.controls:
            if control.id == control_id:
                return control
        raise KeyError(control_id)


class CatalogueError(Exception):
    """The catalogue could not be loaded; every problem with file and line."""

    def __init__(self, problems: list[LoadProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def parse_catalogue(text: str | bytes, file_name: str) -> Catalogue:
    """A catalogue from YAML text, or :class:`CatalogueError` with file, line and field of each problem."""
    try:
        data = parse_yaml(text, file_name)
    except TopologyError as exc:
        raise CatalogueError(exc.problems) from None
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        problems = _validation_problems(data, exc, file_name)
        # the loader speaks of the topology; here the document is the catalogue
        fixed = [
            LoadProblem(
                p.file,
                p.line,
                p.column,
                p.path,
                p.message.replace("the topology model", "the controls catalogue"),
            )
            for p in problems
        ]
        raise CatalogueError(fixed) from None


def load_catalogue(path: Path | None = None) -> Catalogue:
    """The catalogue at ``path`` (default: the package's ``controls.yaml``)."""
    if path is None:
        return _default()
    target = Path(path)
    try:
        text = target.read_bytes()
    except OSError as exc:
        raise CatalogueError(
            [LoadProblem(display_path(target), 0, 0, "", f"cannot read: {exc.strerror or exc}")]
        ) from None
    return parse_catalogue(text, display_path(target))


@cache
def _default() -> Catalogue:
    return parse_catalogue(CATALOGUE.read_bytes(), display_path(CATALOGUE))
