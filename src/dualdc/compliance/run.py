"""``invoke compliance``: every control of the catalogue on every live host, read-only, in parallel.

Per host: the controls that apply to its role, what the collector observed, each check's
verdict with the observed value as evidence, then the topology's waivers (rule = control
id, target ``host:NAME``, judged against the real date like every waiver). Exit codes
(DESIGN §6): 0 every control passes (or is waived / not applicable), 2 a control fails,
3 a host could not be checked, 1 bad input (raised by the task before anything runs).
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dualdc.base.redact import scrub
from dualdc.compliance.catalogue import Catalogue, Control, SourceName, load_catalogue
from dualdc.compliance.checks import CHECKS, Context, Needs, Outcome, Verdict
from dualdc.compliance.collector import SCRIPT
from dualdc.model import Host, Topology

#: Runs the collector on a host: (host, argument) -> (exit code, stdout, stderr); 255 unreachable.
Collect = Callable[[str, str], tuple[int, str, str]]
SSH_TIMEOUT = 900


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ControlResult(_Strict):
    control: str = Field(description="Control id (HB-nn).")
    category: str = Field(description="The control's category.")
    title_ko: str = Field(description="Korean title.")
    title_en: str = Field(description="English title.")
    kisa: list[str] = Field(description="KISA Unix items the control satisfies.")
    cis: list[str] = Field(description="CIS Debian 12 sections it satisfies.")
    efsr: list[str] = Field(description="전자금융감독규정 articles it satisfies.")
    outcome: Outcome = Field(description="pass, fail, not_applicable, waived or error.")
    evidence: list[str] = Field(description="The observed value of each check.")
    expected: list[str] = Field(description="What each check expects.")
    waiver: str | None = Field(default=None, description="The waiver's approval and expiry, when waived.")


class HostResult(_Strict):
    host: str = Field(description="Host name.")
    site: str = Field(description="Site.")
    role: str = Field(description="Host role.")
    reachable: bool = Field(description="Whether the host could be checked.")
    error: str = Field(default="", description="Why not, when it could not.")
    seconds: float = Field(description="Time to collect and judge.")
    controls: list[ControlResult] = Field(default_factory=list, description="Per control, its outcome.")


class ComplianceReport(_Strict):
    environment: str = Field(description="Environment.")
    sites: list[str] = Field(description="Sites checked.")
    started: str = Field(description="Start time (UTC, ISO 8601).")
    seconds: float = Field(description="Duration of the whole run.")
    catalogue: dict[str, str] = Field(description="Edition of each source the ids come from.")
    hosts: list[HostResult] = Field(description="Per host, its results.")

    def counts(self) -> dict[str, int]:
        counts = {o.value: 0 for o in Outcome} | {"unreachable": 0}
        for host in self.hosts:
            if not host.reachable:
                counts["unreachable"] += 1
            for c in host.controls:
                counts[c.outcome.value] += 1
        return counts

    def exit_code(self) -> int:
        if any(c.outcome in (Outcome.FAIL, Outcome.ERROR) for h in self.hosts for c in h.controls):
            return 2
        if any(not h.reachable for h in self.hosts):
            return 3
        return 0


def context(topology: Topology, host: Host) -> Context:
    """The policy values a host's checks compare against, from the model."""
    env = topology.environment
    access = env.access
    admins = [a.name for a in env.admins]
    values: dict[str, Any] = {
        "lockout_attempts": access.lockout_attempts,
        "idle_timeout_seconds": access.idle_timeout_seconds,
        "password_min_length": access.password_min_length,
        "password_min_classes": access.password_min_classes,
        "password_max_days": access.password_max_days,
        "password_min_days": access.password_min_days,
        "password_warn_days": access.password_warn_days,
        "su_group": access.su_group,
        "su_members": [a.name for a in env.admins if a.sudo],
        "root_group_members": [],
        "admins": admins,
        "apt_mirror": env.mirrors.apt,
        "sshd_permit_root_login": "without-password" if env.ssh_user == "root" else "no",
    }
    return Context(host=host.name, role=host.role.value, lab=env.lab, values=values)


def needs_for(controls: list[Control]) -> Needs:
    needs = Needs()
    for control in controls:
        for check in control.checks:
            spec = CHECKS[check.kind]
            spec.needs(spec.params.model_validate(check.params), needs)
    return needs


def judge(control: Control, obs: dict[str, Any], ctx: Context) -> tuple[Outcome, list[Verdict]]:
    """Every check of a control on one host's observations; the control passes when all do."""
    verdicts = []
    for check in control.checks:
        spec = CHECKS[check.kind]
        try:
            verdicts.append(spec.judge(spec.params.model_validate(check.params), obs, ctx))
        except (KeyError, ValueError, TypeError) as exc:
            verdicts.append(Verdict(Outcome.ERROR, f"cannot judge: {exc}", check.kind))
    if any(v.outcome is Outcome.ERROR for v in verdicts):
        return Outcome.ERROR, verdicts
    if any(v.outcome is Outcome.FAIL for v in verdicts):
        return Outcome.FAIL, verdicts
    return Outcome.PASS, verdicts


def result_of(control: Control, outcome: Outcome, verdicts: list[Verdict]) -> ControlResult:
    return ControlResult(
        control=control.id,
        category=control.category.value,
        title_ko=control.title.ko,
        title_en=control.title.en,
        kisa=control.refs(SourceName.KISA),
        cis=control.refs(SourceName.CIS),
        efsr=control.refs(SourceName.EFSR),
        outcome=outcome,
        evidence=[scrub(v.evidence) for v in verdicts],
        expected=[v.expected for v in verdicts],
    )


def check_host(
    topology: Topology, catalogue: Catalogue, host: Host, collect: Collect, today: dt.date
) -> HostResult:
    started = time.monotonic()
    ctx = context(topology, host)
    applicable = [c for c in catalogue.controls if c.applies_to(host.role.value)]
    code, stdout, stderr = collect(host.name, json.dumps(needs_for(applicable).to_json()))
    base = {"host": host.name, "site": host.site, "role": host.role.value}
    if code == 255:
        return HostResult(
            **base,
            reachable=False,
            error=scrub(stderr.strip()[-300:] or "unreachable"),
            seconds=round(time.monotonic() - started, 2),
        )
    try:
        obs = json.loads(stdout)
    except ValueError:
        return HostResult(
            **base,
            reachable=False,
            error=scrub(f"the collector failed (exit {code}): {stderr.strip()[-300:]}"),
            seconds=round(time.monotonic() - started, 2),
        )
    results = []
    for control in catalogue.controls:
        if not control.applies_to(host.role.value):
            results.append(
                result_of(
                    control,
                    Outcome.NOT_APPLICABLE,
                    [Verdict(Outcome.NOT_APPLICABLE, f"not for {host.role.value} hosts")],
                )
            )
            continue
        outcome, verdicts = judge(control, obs, ctx)
        result = result_of(control, outcome, verdicts)
        waiver = next(
            (
                w
                for w in topology.waivers
                if w.rule == control.id and w.target == f"host:{host.name}" and w.expires >= today
            ),
            None,
        )
        if outcome is Outcome.FAIL and waiver is not None:
            result.outcome = Outcome.WAIVED
            result.waiver = f"{waiver.approval}, until {waiver.expires.isoformat()}: {scrub(waiver.reason)}"
        results.append(result)
    return HostResult(**base, reachable=True, seconds=round(time.monotonic() - started, 2), controls=results)


def ssh_collect(topology: Topology) -> Collect:
    """The collector over SSH (the lab's own ssh config on the lab twin, else ssh_user@mgmt address)."""
    env = topology.environment
    if env.lab:
        from dualdc.inventory import lab_connection  # noqa: PLC0415

        # the ssh_config lab.up writes beside the key it publishes for the inventory
        config = str(Path(lab_connection(env.name)["private_key"]).parent / "config")

    def run(host: str, argument: str) -> tuple[int, str, str]:
        base = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        command = f"python3 - {shlex.quote(argument)}"
        if env.lab:
            argv = [*base, "-F", config, host, command]
        else:
            address = topology.management_address(topology.host(host))
            argv = [*base, f"{env.ssh_user}@{address}", f"sudo -n {command}"]
        try:
            done = subprocess.run(
                argv, input=SCRIPT, capture_output=True, text=True, timeout=SSH_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 255, "", str(exc)
        return done.returncode, done.stdout, done.stderr

    return run


def run_compliance(
    topology: Topology,
    sites: list[str],
    host: str | None = None,
    *,
    collect: Collect | None = None,
    catalogue: Catalogue | None = None,
    workers: int = 24,
    progress: Callable[[HostResult], None] | None = None,
) -> ComplianceReport:
    """Check every applicable control on the chosen hosts, in parallel."""
    catalogue = catalogue or load_catalogue()
    collect = collect or ssh_collect(topology)
    today = topology.today()
    hosts = [h for h in topology.hosts if h.site in sites and (host is None or h.name == host)]
    started_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = time.monotonic()
    results: list[HostResult] = []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(hosts) or 1))) as pool:
        for result in pool.map(lambda h: check_host(topology, catalogue, h, collect, today), hosts):
            results.append(result)
            if progress is not None:
                progress(result)
    return ComplianceReport(
        environment=topology.environment.name,
        sites=sites,
        started=started_at.isoformat(),
        seconds=round(time.monotonic() - started, 1),
        catalogue={s.value: catalogue.sources[s].edition for s in catalogue.sources},
        hosts=results,
    )
