"""The machinery of the policy pack: rules, parameters, findings, waivers and the report.

A :class:`Rule` is a function over a loaded :class:`~dualdc.model.Topology` that yields
:class:`Finding` objects, registered with :func:`rule` together with its id, title,
severity, the source it cites and its parameters. :func:`run_policy` runs every rule with
the parameters of the environment (``environment.policy``), then applies the waivers and
returns a :class:`Report`.

Parameter overrides are validated before anything runs: an unknown rule id, an unknown
parameter or a value of the wrong type is an input error (:class:`~dualdc.loader.TopologyError`
with the file and line of the offending key), not a finding.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from dualdc.loader import LoadProblem, TopologyError, gc_paused
from dualdc.model import Entity, Severity, Source, Topology, Waiver

ParamValue = int | float | str | bool

SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.ADVISORY: 2}


@dataclass(frozen=True)
class Param:
    """A rule parameter: its default and what it means."""

    default: ParamValue
    help: str

    def accepts(self, value: object) -> bool:
        """Whether ``value`` has the parameter's type (an int is accepted for a float)."""
        kind = type(self.default)
        if kind is bool:
            return isinstance(value, bool)
        if kind is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if kind is float:
            return isinstance(value, int | float) and not isinstance(value, bool)
        return isinstance(value, str)

    @property
    def type_name(self) -> str:
        return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}[type(self.default)]


@dataclass(frozen=True)
class Finding:
    """One violation of one rule by one target.

    ``target`` is ``kind:name`` (``flow:kj-ib-to-api``, ``service:kj-core-banking``,
    ``site:gwangju``, ``environment:lab`` …): what a waiver names to waive it.
    """

    rule: str
    severity: Severity
    target: str
    message: str
    location: Source | None = None
    waived_by: Waiver | None = None

    @property
    def waived(self) -> bool:
        return self.waived_by is not None

    def sort_key(self) -> tuple[Any, ...]:
        loc = self.location
        return (
            SEVERITY_ORDER[self.severity],
            self.rule,
            self.target,
            loc.file if loc else "",
            loc.line if loc else 0,
            self.message,
        )


class Context:
    """What a rule sees: the topology, its parameters, and a helper to make findings."""

    def __init__(
        self,
        topology: Topology,
        rule: Rule,
        params: dict[str, ParamValue],
        all_params: dict[str, dict[str, ParamValue]] | None = None,
    ) -> None:
        self.topology = topology
        self.rule = rule
        self.params = params
        #: Every rule's effective parameters, for the few checks that split work with another rule.
        self.all_params = all_params or {rule.id: params}

    def get_int(self, name: str) -> int:
        value = self.params[name]
        assert isinstance(value, int)
        return value

    def get_float(self, name: str) -> float:
        value = self.params[name]
        assert isinstance(value, int | float)
        return float(value)

    def get_bool(self, name: str) -> bool:
        value = self.params[name]
        assert isinstance(value, bool)
        return value

    def get_str(self, name: str) -> str:
        value = self.params[name]
        assert isinstance(value, str)
        return value

    def get_list(self, name: str) -> list[str]:
        """A comma-separated string parameter as a list of stripped, non-empty items."""
        return [item.strip() for item in self.get_str(name).split(",") if item.strip()]

    def finding(
        self,
        target: str,
        message: str,
        entity: Entity | None = None,
        field_name: str | None = None,
        severity: Severity | None = None,
    ) -> Finding:
        """A finding of this rule, located at ``entity`` (its ``field_name`` when given)."""
        location = None
        if entity is not None:
            location = entity.field_location(field_name) if field_name else entity.location
        if location is None:
            location = self.topology.environment.location
        return Finding(self.rule.id, severity or self.rule.severity, target, message, location)


Check = Callable[[Context], Iterable[Finding]]
#: Validates a rule's parameters beyond their type; returns a message per bad parameter.
ParamCheck = Callable[[dict[str, ParamValue]], dict[str, str]]


@dataclass(frozen=True)
class Rule:
    """A rule of the policy pack."""

    id: str
    title: str
    severity: Severity
    source: str
    params: dict[str, Param]
    check: Check
    waivable: bool = True
    param_check: ParamCheck | None = None
    edition: str = ""
    """The edition (date) of every text ``source`` cites, e.g. ``2025-02-05`` for the rewritten 감독규정."""
    verified: bool = False
    """True only when the cited article was checked against the text of that edition."""
    dora: str = ""
    """The DORA (Regulation (EU) 2022/2554) article the rule maps to, if any."""
    pci_dss: str = ""
    """The PCI DSS 4.0 requirement the rule maps to, if any."""

    @property
    def citation(self) -> str:
        """The source with its edition, and whether the citation was checked against that text."""
        checked = "" if self.verified else "; unverified against that text"
        return f"{self.source} [edition {self.edition or 'not named'}{checked}]"

    @property
    def cross_references(self) -> dict[str, str]:
        """The other frameworks an auditor maps the same control to (only those that apply)."""
        found = {"dora": self.dora, "pci_dss": self.pci_dss}
        return {k: v for k, v in found.items() if v}

    @property
    def description(self) -> str:
        """The rule's documentation: the docstring of its check, dedented."""
        return inspect.cleandoc(self.check.__doc__ or self.title)

    @property
    def summary(self) -> str:
        """The first paragraph of the description."""
        return self.description.split("\n\n", 1)[0].replace("\n", " ")


RULES: dict[str, Rule] = {}


def rule(
    rule_id: str,
    *,
    title: str,
    severity: Severity,
    source: str,
    params: dict[str, Param] | None = None,
    waivable: bool = True,
    param_check: ParamCheck | None = None,
    edition: str = "",
    verified: bool = False,
    dora: str = "",
    pci_dss: str = "",
) -> Callable[[Check], Check]:
    """Register a rule; the decorated function's docstring is its documentation.

    ``edition`` names the edition (date) of each text ``source`` cites; ``verified`` is true
    only for a citation checked against that edition's text (``--list-rules`` marks the
    rest unverified). ``dora`` and ``pci_dss`` are the cross-references an auditor maps the
    same control to.
    """

    def register(check: Check) -> Check:
        if rule_id in RULES:
            raise ValueError(f"rule {rule_id} registered twice")
        RULES[rule_id] = Rule(
            rule_id, title, severity, source, dict(params or {}), check, waivable, param_check,
            edition, verified, dora, pci_dss,
        )
        return check

    return register


# --------------------------------------------------------------------------- parameters


def _policy_location(topology: Topology, *keys: str) -> tuple[str, int, int]:
    env = topology.environment
    loc = env.field_location(".".join(("policy", *keys))) or env.field_location("policy") or env.location
    return (loc.file, loc.line, loc.column) if loc else ("<topology>", 0, 0)


def resolve_params(topology: Topology) -> dict[str, dict[str, ParamValue]]:
    """Every rule's parameters: defaults overlaid with ``environment.policy``.

    Raises :class:`TopologyError` naming each unknown rule id, unknown parameter and
    mistyped value with its file and line.
    """
    problems: list[LoadProblem] = []
    resolved = {rid: {name: p.default for name, p in r.params.items()} for rid, r in RULES.items()}
    for rule_id, overrides in topology.environment.policy.items():
        if rule_id not in RULES:
            known = ", ".join(sorted(RULES))
            problems.append(
                LoadProblem(
                    *_policy_location(topology, rule_id),
                    f"environment.policy.{rule_id}",
                    f"unknown rule id; expected one of {known}",
                )
            )
            continue
        spec = RULES[rule_id]
        before = len(problems)
        for name, value in overrides.items():
            where = _policy_location(topology, rule_id, name)
            path = f"environment.policy.{rule_id}.{name}"
            if name not in spec.params:
                known = ", ".join(sorted(spec.params)) or "none"
                problems.append(
                    LoadProblem(*where, path, f"unknown parameter of {rule_id}; expected one of {known}")
                )
            elif not spec.params[name].accepts(value):
                problems.append(
                    LoadProblem(*where, path, f"expected {spec.params[name].type_name}, found {value!r}")
                )
            else:
                resolved[rule_id][name] = value
        if spec.param_check is not None and len(problems) == before:
            for name, message in spec.param_check(resolved[rule_id]).items():
                problems.append(
                    LoadProblem(
                        *_policy_location(topology, rule_id, name),
                        f"environment.policy.{rule_id}.{name}",
                        message,
                    )
                )
    for i, waiver in enumerate(topology.waivers):
        loc = waiver.field_location("rule")
        where = (loc.file, loc.line, loc.column) if loc else ("<topology>", 0, 0)
        if waiver.rule not in RULES:
            problems.append(
                LoadProblem(
                    *where,
                    f"waivers[{i}].rule",
                    f"unknown rule id {waiver.rule!r}; expected one of {', '.join(sorted(RULES))}",
                )
            )
        elif not RULES[waiver.rule].waivable:
            problems.append(
                LoadProblem(
                    *where, f"waivers[{i}].rule", f"{waiver.rule} cannot be waived: fix the topology instead"
                )
            )
    if problems:
        raise TopologyError(problems)
    return resolved


# --------------------------------------------------------------------------- report


@dataclass
class RuleResult:
    """One rule's outcome: its effective parameters and its findings."""

    rule: Rule
    params: dict[str, ParamValue]
    findings: list[Finding] = field(default_factory=list)


@dataclass
class Report:
    """Everything :func:`run_policy` found, ordered by severity, rule and target."""

    environment: str
    today: dt.date
    results: list[RuleResult]

    @property
    def findings(self) -> list[Finding]:
        found = [f for r in self.results for f in r.findings]
        return sorted(found, key=Finding.sort_key)

    def failing(self, fail_on: Severity = Severity.ERROR) -> list[Finding]:
        """Findings that fail the run: not waived, at ``fail_on`` or more severe."""
        limit = SEVERITY_ORDER[fail_on]
        return [f for f in self.findings if not f.waived and SEVERITY_ORDER[f.severity] <= limit]

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Severity} | {"waived": 0}
        for f in self.findings:
            if f.waived:
                counts["waived"] += 1
            else:
                counts[f.severity.value] += 1
        return counts


def _apply_waivers(topology: Topology, results: list[RuleResult], today: dt.date) -> list[Finding]:
    """Mark findings covered by a current waiver; return the waivers' own findings."""
    current: dict[tuple[str, str], Waiver] = {}
    for waiver in topology.waivers:
        if waiver.expires >= today:
            current.setdefault((waiver.rule, waiver.target), waiver)
    used: set[tuple[str, str]] = set()
    for result in results:
        for i, finding in enumerate(result.findings):
            key = (finding.rule, finding.target)
            if key in current:
                result.findings[i] = replace(finding, waived_by=current[key])
                used.add(key)
    return [
        Finding(
            "WV-02",
            Severity.WARNING,
            waiver_target(w),
            f"the waiver of {w.rule} for {w.target} matches no finding: remove it, or fix its target",
            w.location,
        )
        for w in topology.waivers
        if w.expires >= today and (w.rule, w.target) not in used
    ]


def waiver_target(waiver: Waiver) -> str:
    """The target naming a waiver in findings: ``waiver:RULE@TARGET``."""
    return f"waiver:{waiver.rule}@{waiver.target}"


def run_policy(topology: Topology, only: Iterable[str] | None = None) -> Report:
    """Run the rule pack (or the rules in ``only``) over a loaded topology.

    Raises :class:`TopologyError` for bad ``environment.policy`` overrides or waivers
    naming unknown rules. Rule ``WV-02`` (waivers matching nothing) is computed here, after
    every other rule, so it is only meaningful when every rule ran.
    """
    with gc_paused():
        return _run_policy(topology, only)


def _run_policy(topology: Topology, only: Iterable[str] | None) -> Report:
    params = resolve_params(topology)
    wanted = set(only) if only is not None else set(RULES)
    results: list[RuleResult] = []
    for rule_id in sorted(RULES):
        spec = RULES[rule_id]
        if rule_id not in wanted or rule_id == "WV-02":
            continue
        result = RuleResult(spec, params[rule_id])
        result.findings = list(spec.check(Context(topology, spec, params[rule_id], params)))
        results.append(result)
    today = topology.today()
    stale = _apply_waivers(topology, results, today)
    if "WV-02" in wanted:
        results.append(RuleResult(RULES["WV-02"], params["WV-02"], stale))
        results.sort(key=lambda r: r.rule.id)
    return Report(topology.environment.name, today, results)


def iter_rules() -> Iterator[Rule]:
    """Every registered rule, by id."""
    for rule_id in sorted(RULES):
        yield RULES[rule_id]
