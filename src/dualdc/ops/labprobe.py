"""The lab layer of drift and deploy: the lab twin's reachability probe (:mod:`dualdc.lab.verify`) as a
drift layer.

Every declared flow must connect and every forbidden pair must stay blocked, with real
connections between lab hosts. An unexpected result is drift (a declared flow blocked, or a
forbidden pair open); a probe that could not run (its host is down) leaves that part unverified.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

from dualdc.lab import Lab, LabError
from dualdc.lab import verify as lab_verify
from dualdc.model import Layer, Topology
from dualdc.ops.layer import Checked, CheckSpec, Deploying, OpsLayer, register
from dualdc.reports.drift import CheckedTarget, DriftItem, LayerReport, LayerStatus, TargetStatus

NOT_RUN = "not run"


def _segment_of(topology: Topology, address: str) -> str | None:
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return None
    return next((s.name for s in topology.segments if ip in s.cidr), None)


def _site_of_place(topology: Topology, place: tuple[str, str]) -> str | None:
    kind, name = place
    if kind == "host":
        return next((h.site for h in topology.hosts if h.name == name), None)
    return name  # the edge and the controller are per site


def probe_id(result: lab_verify.Result) -> str:
    """A stable id for drift acknowledgements (the verify module numbers probes per run)."""
    p = result.probe
    return f"lab:probe/{p.kind}:{p.label(p.source)}->{p.label(p.destination)}:{p.dst}:{p.port}/{p.proto}"


def layer_from_report(topology: Topology, report: lab_verify.Report, sites: list[str]) -> LayerReport:
    """The probe results at ``sites`` (a probe counts if either end is there) as the lab layer."""
    layer = LayerReport(layer=Layer.LAB, status=LayerStatus.CLEAN)
    wanted = set(sites)
    categories: dict[str, Counter[str]] = {}
    details: dict[str, list[str]] = {}
    for result in report.results:
        p = result.probe
        ends = {_site_of_place(topology, p.source), _site_of_place(topology, p.destination)}
        if not ends & wanted:
            continue
        name = f"{p.kind}:{p.category}"
        counts = categories.setdefault(name, Counter())
        where = f"{p.label(p.source)} ({p.src}) → {p.label(p.destination)} ({p.dst}) {p.port}/{p.proto}"
        if result.result == NOT_RUN:
            counts["not-run"] += 1
            details.setdefault(name, []).append(f"{where}: {result.note}")
            continue
        if result.ok:
            counts["as-expected"] += 1
            continue
        counts["unexpected"] += 1
        expected = "open" if p.expect_open else "blocked"
        what = "declared flow is blocked" if p.expect_open else "forbidden connection is open"
        layer.items.append(
            DriftItem.found(
                Layer.LAB,
                probe_id(result),
                name,
                f"{what}: {where} ({p.reason}): expected {expected}, got {result.result}",
                site=_site_of_place(topology, p.source) if p.source[0] == "host" else None,
                host=p.destination[1] if p.destination[0] == "host" else None,
                segments=sorted(
                    {s for s in (_segment_of(topology, p.src), _segment_of(topology, p.dst)) if s}
                ),
                diff=f"- expected: {expected}\n+ found:    {result.result}\n",
            )
        )
    for name in sorted(categories):
        counts = categories[name]
        if counts["unexpected"]:
            status = TargetStatus.DRIFT
        elif counts["not-run"]:
            status = TargetStatus.NOT_CHECKED
        else:
            status = TargetStatus.CLEAN
        notes = details.get(name, [])
        detail = ""
        if notes:
            detail = f"{len(notes)} probe(s) could not run, e.g. {notes[0]}"
        layer.checked.append(
            CheckedTarget(layer=Layer.LAB, name=name, status=status, detail=detail, counts=dict(counts))
        )
    total = sum(sum(c.values()) for c in categories.values())
    faults = ", ".join(f"{k}: {', '.join(v)}" for k, v in report.faults.items() if v)
    layer.note = (
        f"reachability probe: {total} real connections ({report.seconds:.1f} s); declared flows must "
        f"connect, forbidden pairs must not" + (f"; lab faults in place: {faults}" if faults else "")
    )
    if layer.items:
        layer.status = LayerStatus.DRIFT
    elif any(t.status is TargetStatus.NOT_CHECKED for t in layer.checked):
        layer.status = LayerStatus.UNVERIFIED
    return layer


def lab_probe(topology: Topology, sites: list[str]) -> LayerReport:
    """Run the probe against the running lab; a lab that is not up leaves the layer unverified."""
    try:
        lab = Lab(topology)  # the run's topology: loaded once
        lab.require_running()
        report = lab_verify.run(lab)
    except LabError as exc:
        return LayerReport(
            layer=Layer.LAB,
            status=LayerStatus.UNVERIFIED,
            note=f"reachability probe: {exc}",
            checked=[
                CheckedTarget(
                    layer=Layer.LAB, name="reachability", status=TargetStatus.NOT_CHECKED, detail=str(exc)
                )
            ],
        )
    return layer_from_report(topology, report, sites)


class LabLayer(OpsLayer):
    """The lab twin's reachability probe: checked by drift, and by deploy after the last site."""

    kind = Layer.LAB

    def declared(self, topology: Topology) -> bool:
        return super().declared(topology) and topology.environment.lab

    def note(self, spec: CheckSpec) -> str:
        return "lab: reachability probe over the declared and forbidden flows"

    def check(self, spec: CheckSpec) -> Checked:
        return Checked(lab_probe(spec.topology, spec.sites))

    def apply_after(self, deploy: Deploying) -> bool:
        if deploy.site is not None:
            return True
        step = deploy.start(None, Layer.LAB, "lab probe")
        sites = deploy.topology.deploy_order()
        probe = lab_probe(deploy.topology, sites)
        ok = probe.status in (LayerStatus.CLEAN, LayerStatus.NOT_COMPARED)
        bad = [i.summary for i in probe.items][:5]
        deploy.end(step, "verified" if ok else "failed", probe.note if ok else "; ".join(bad) or probe.note)
        return ok


register(LabLayer())
