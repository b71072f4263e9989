"""The AI analytics zone (AI 분석망) and regulator-facing exemptions: AI-01 to AI-04, EXM-01, DATA-01.

The zone handling of this module, in one place (the zone-traits table of issue 13 takes it
over): the ``ai`` zone admits only pseudonymised or anonymised data, and only from a
declared pseudonymisation service in ``internal`` (AI-01); nothing leaves it for
``internal`` except declared result-publishing flows (AI-02); outside AI and SaaS services
are reached only under a current exemption tied to the approved endpoint and model version
(AI-03); each bank's data in it stays the bank's (AI-04, and TEN-01's protected zones).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import networkx as nx

from dualdc.flows import Connection
from dualdc.model import (
    AI_ADMISSIBLE,
    DataClass,
    Exemption,
    HostRole,
    Institution,
    InstitutionKind,
    Severity,
    TenantKind,
    Topology,
    Zone,
)
from dualdc.policy import graph
from dualdc.policy.engine import Context, Finding, Param, ParamValue, rule
from dualdc.policy.rules.common import check_lists, conns_of, split, zones

ERROR = Severity.ERROR
ROADMAP = "금융위원회 금융분야 망분리 개선 로드맵 (2024-08-13)"
EFSR = "전자금융감독규정"
EDITION = "감독규정 and 시행세칙 2025-02-05"


def _ai_zone_params(params: dict[str, ParamValue]) -> dict[str, str]:
    return check_lists(ai_zones="zone")(params)


def _into(conn: Connection, area: frozenset[Zone]) -> bool:
    """Whether the connection enters ``area`` from outside it."""
    return conn.destination.zone in area and conn.source.zone not in area


def _service(topo: Topology, ref: str) -> str | None:
    kind, _, name = ref.partition(":")
    return name if kind == "service" else None


# --------------------------------------------------------------------------- AI-01


@rule(
    "AI-01",
    title="Only pseudonymised or anonymised data flows into the AI zone, through a declared pseudonymisation "
          "service",
    severity=ERROR,
    source=f"{ROADMAP}; 신용정보의 이용 및 보호에 관한 법률 제2조 제15호·제40조의2 (가명정보)",
    params={
        "ai_zones": Param("ai", "Zones of AI analytics (comma-separated)."),
    },
    param_check=_ai_zone_params,
    edition="로드맵 2024-08-13; 신용정보법 as in force on 2025-02-05",
    verified=False,
    dora="Art. 9",
)
def ai01(ctx: Context) -> Iterator[Finding]:
    """Only pseudonymised or anonymised data flows into the AI zone, through a pseudonymisation service.

    Every flow with a connection into an ``ai`` segment from outside the zone declares what it
    carries (``data``). ``personal`` (개인(신용)정보) is refused. ``pseudonymised`` and
    ``anonymised`` data enter only from a service marked ``pseudonymiser: true`` (a declared
    pseudonymisation service in ``internal``, a relay-like hop) on named ports the AI end
    declares when it is a service. ``none`` (control traffic: the API server, time, logs)
    may come from anywhere the other rules allow. Every service in the zone declares what it
    holds (``holds``), and never ``personal``.
    """
    topo = ctx.topology
    area = zones(ctx.params["ai_zones"])
    for flow in topo.flows:
        entering = [c for c in conns_of(topo, flow) if _into(c, area)]
        if not entering:
            continue
        dst = entering[0].destination
        where = f"{dst.ref} in the {dst.zone.value if dst.zone else '?'} zone ({dst.segment})"
        if flow.data is None:
            yield ctx.finding(
                f"flow:{flow.name}",
                f"flow {flow.name} enters {where} but declares no data class; say what it carries "
                "(data: pseudonymised, anonymised or none)",
                flow, "destination")
            continue
        if flow.data is DataClass.PERSONAL:
            yield ctx.finding(
                f"flow:{flow.name}",
                f"flow {flow.name} carries personal data (개인(신용)정보) into {where}; only pseudonymised "
                "or anonymised data enters the AI zone, through a declared pseudonymisation service",
                flow, "data")
            continue
        if flow.data not in AI_ADMISSIBLE:
            continue
        name = _service(topo, flow.source)
        if name is None or not topo.service(name).pseudonymiser:
            yield ctx.finding(
                f"flow:{flow.name}",
                f"flow {flow.name} carries {flow.data.value} data into {where} from {flow.source}, which is "
                "not a declared pseudonymisation service (a service with pseudonymiser: true in internal)",
                flow, "source")
            continue
        target = _service(topo, flow.destination)
        if flow.ports == "any":
            yield ctx.finding(
                f"flow:{flow.name}",
                f"flow {flow.name} from the pseudonymisation service {name} into {where} has ports 'any'; "
                "name them",
                flow, "ports")
        elif target is not None:
            extra = sorted(set(flow.ports) - set(topo.service(target).ports))
            if extra:
                yield ctx.finding(
                    f"flow:{flow.name}",
                    f"flow {flow.name} reaches {target} on ports {', '.join(map(str, extra))}, which it does "
                    "not declare",
                    flow, "ports")
    for svc in topo.services:
        if svc.zone not in area:
            continue
        held = svc.data_held
        if held is DataClass.PERSONAL:
            yield ctx.finding(
                f"service:{svc.name}",
                f"service {svc.name} in the {svc.zone.value} zone holds personal data; only pseudonymised or "
                "anonymised data belongs there",
                svc, "personal_data" if svc.holds is None else "holds")
        elif held is None:
            yield ctx.finding(
                f"service:{svc.name}",
                f"service {svc.name} in the {svc.zone.value} zone does not say what it holds; declare "
                "holds: pseudonymised, anonymised or none",
                svc, "zone")


# --------------------------------------------------------------------------- AI-02


def _publish_params(params: dict[str, ParamValue]) -> dict[str, str]:
    bad = check_lists(ai_zones="zone", protected_zones="zone")(params)
    if not bad and zones(params["ai_zones"]) & zones(params["protected_zones"]):
        bad["protected_zones"] = "a zone cannot be both an AI zone and protected from it"
    return bad


@rule(
    "AI-02",
    title="No path from the AI zone back into the business network except declared result publishing",
    severity=ERROR,
    source=f"{EFSR} 제15조 제1항 제3호 (망분리); {ROADMAP}",
    params={
        "ai_zones": Param("ai", "Zones of AI analytics (comma-separated)."),
        "protected_zones": Param("internal", "Zones the AI zone reaches only by publishing results "
                                             "(comma-separated)."),
    },
    param_check=_publish_params,
    edition="감독규정 2025-02-05; 로드맵 2024-08-13",
    verified=False,
    dora="Art. 9",
    pci_dss="1.4; 11.4.5",
)
def ai02(ctx: Context) -> Iterator[Finding]:
    """No path from the AI zone back into the business network except declared result publishing.

    Over the graph of declared flows and any number of hops (as NS-01): the sources are the
    segments of the ``ai`` zone, the protected nodes the segments of ``internal``. A
    *publishing hop* is a connection from the AI zone into a protected segment whose flow is
    marked ``publishes_results: true``, whose destination is a ``service:`` and whose ports
    are named (never ``any``) and declared by that service. Publishing hops are removed; any
    remaining path is a breach, blamed on the flow where it leaves the AI zone. A flow
    marked ``publishes_results`` that does not go from the AI zone into a protected one is a
    finding too (the mark would mean nothing).
    """
    topo = ctx.topology
    area, protected = zones(ctx.params["ai_zones"]), zones(ctx.params["protected_zones"])
    zone_of = {f"segment:{s.name}": s.zone for s in topo.segments}

    def publishing(conn: Connection) -> bool:
        flow = conn.flow
        name = _service(topo, flow.destination)
        return (flow.publishes_results and conn.source.zone in area and conn.destination.zone in protected
                and name is not None and flow.ports != "any"
                and set(flow.ports) <= set(topo.service(name).ports))

    flows = graph.build(topo, keep=lambda c: not publishing(c))
    sources = [n for n, z in zone_of.items() if z in area]
    seen: set[str] = set()
    for breach in graph.breaches(flows, sources, inside=lambda n: zone_of.get(n) in area,
                                 protected=lambda n: zone_of.get(n) in protected):
        conn = breach.connection
        if conn.flow.name in seen:
            continue
        seen.add(conn.flow.name)
        hint = ""
        if conn.flow.publishes_results:
            hint = ("; it is marked publishes_results, but a publishing flow goes to a service on named "
                    "ports that service declares")
        yield ctx.finding(
            f"flow:{conn.flow.name}",
            f"{graph.describe(breach)}: flow {conn.flow.name} opens a path from the AI zone into "
            f"{breach.path[-1]} that is not a declared result-publishing flow{hint}",
            conn.flow, "destination")
    for flow in topo.flows:
        if flow.publishes_results and flow.name not in seen and not any(
                c.source.zone in area and c.destination.zone in protected for c in conns_of(topo, flow)):
            yield ctx.finding(
                f"flow:{flow.name}",
                f"flow {flow.name} is marked publishes_results but does not go from the AI zone into "
                f"{', '.join(sorted(z.value for z in protected))}",
                flow, "publishes_results", severity=Severity.WARNING)


# --------------------------------------------------------------------------- AI-03


def _ai03_params(params: dict[str, ParamValue]) -> dict[str, str]:
    bad = check_lists(ai_zones="zone")(params)
    kinds = {k.value for k in InstitutionKind}
    wrong = [k for k in split(params["watched_kinds"]) if k not in kinds]
    if wrong or not split(params["watched_kinds"]):
        bad["watched_kinds"] = (f"expected a comma-separated list of institution kinds among "
                                f"{', '.join(sorted(kinds))}, found {params['watched_kinds']!r}")
    return bad


def exemption_gaps(exemption: Exemption, institution: Institution, today: dt.date) -> list[str]:
    """Why ``exemption`` does not cover a flow to ``institution`` today (empty: it does)."""
    gaps: list[str] = []
    if exemption.expires < today:
        gaps.append(f"exemption {exemption.name} expired on {exemption.expires.isoformat()}")
    if exemption.approved_on > today:
        gaps.append(f"exemption {exemption.name} is approved only from {exemption.approved_on.isoformat()}")
    if institution.kind is InstitutionKind.AI:
        approved = exemption.ai_service
        if approved is None:
            gaps.append(f"exemption {exemption.name} names no approved AI service (endpoint, model, version)")
        else:
            if approved.endpoint != institution.endpoint:
                gaps.append(f"exemption {exemption.name} approves endpoint {approved.endpoint}, but "
                            f"{institution.name} is reached at {institution.endpoint}")
            if approved.model != institution.model:
                gaps.append(f"exemption {exemption.name} approves model {approved.model}, but "
                            f"{institution.name} serves {institution.model}")
            elif approved.model_version != institution.model_version:
                gaps.append(f"{institution.name}'s model {institution.model} moved to version "
                            f"{institution.model_version}, past the approved {approved.model_version} of "
                            f"exemption {exemption.name}: a new version needs a new approval")
    return gaps


@rule(
    "AI-03",
    title="Flows from the AI zone to an outside AI or SaaS service are covered by a current exemption "
          "for the approved endpoint and model version",
    severity=ERROR,
    source=f"{ROADMAP} (생성형 AI 샌드박스: 승인 모델·버전 단위); {EFSR} 시행세칙 제2조의2; "
           "금융혁신지원 특별법 (혁신금융서비스 지정)",
    params={
        "ai_zones": Param("ai", "Zones of AI analytics (comma-separated)."),
        "watched_kinds": Param("ai,saas", "Institution kinds that need an exemption (comma-separated)."),
    },
    param_check=_ai03_params,
    edition="로드맵 2024-08-13; 시행세칙 2025-02-05; 금융혁신지원 특별법 as in force on 2025-02-05",
    verified=False,
    dora="Art. 28",
)
def ai03(ctx: Context) -> Iterator[Finding]:
    """Flows from the AI zone to an outside AI or SaaS service are covered by a current exemption.

    Every flow into an institution of a watched kind (``ai``, ``saas``) whose source the AI
    zone reaches over declared flows (directly, or through a 대외계 gateway as EXT-01 wants)
    must be in the scope (``flows``) of an exemption that is approved (``approved_on`` not in
    the future), not expired, and, for an AI service, approves exactly the institution's
    ``endpoint``, ``model`` and ``model_version``: a sandbox approval is tied to the approved
    model and version, and a new version needs a new approval. The finding names what is
    missing; it stands at the institution's version when that is what moved.
    """
    topo = ctx.topology
    area = zones(ctx.params["ai_zones"])
    watched = {InstitutionKind(k) for k in ctx.get_list("watched_kinds")}
    flows = graph.build(topo)
    starts = [f"segment:{s.name}" for s in topo.segments if s.zone in area]
    reach: set[str] = set(starts)
    for start in starts:
        if start in flows:
            reach |= nx.descendants(flows, start)
    today = topo.today()
    for flow in topo.flows:
        if not flow.destination.startswith("institution:"):
            continue
        inst = topo.institution(flow.destination.partition(":")[2])
        if inst.kind not in watched:
            continue
        conns = [c for c in conns_of(topo, flow) if c.source.node in reach]
        if not conns:
            continue
        covering = [e for e in topo.exemptions if flow.name in e.flows]
        if not covering:
            yield ctx.finding(
                f"flow:{flow.name}",
                f"flow {flow.name} takes data from the AI zone ({conns[0].source.node}) to the outside "
                f"{inst.kind.value} service {inst.name}, but no exemption covers it: declare the sandbox "
                "designation or 시행세칙 제2조의2 exception with this flow in its scope",
                flow, "destination")
            continue
        gaps = [exemption_gaps(e, inst, today) for e in covering]
        if any(not g for g in gaps):
            continue
        problems = [p for g in gaps for p in g]
        moved = any("moved to version" in p for p in problems)
        yield ctx.finding(
            f"flow:{flow.name}",
            f"flow {flow.name} to the outside {inst.kind.value} service {inst.name} is not covered: "
            + "; ".join(problems),
            inst if moved else flow, "model_version" if moved else "destination")


# --------------------------------------------------------------------------- AI-04


@rule(
    "AI-04",
    title="Each bank's data in the AI zone stays that bank's",
    severity=ERROR,
    source=f"{EFSR} 제18조; 신용정보의 이용 및 보호에 관한 법률 제40조의2 (가명정보의 처리)",
    params={
        "ai_zones": Param("ai", "Zones of AI analytics (comma-separated)."),
    },
    param_check=_ai_zone_params,
    edition="감독규정 2025-02-05; 신용정보법 as in force on 2025-02-05",
    verified=False,
    dora="Art. 9",
    pci_dss="1.3; 11.4.5",
)
def ai04(ctx: Context) -> Iterator[Finding]:
    """Each bank's data in the AI zone stays that bank's.

    TEN-01 keeps every path between the two banks' endpoints closed and counts ``ai`` among
    its protected zones by default. On top of that, in the AI zone:

    - a bank's host sits only in its own bank's AI segments (not a shared one: its data would
      share a network with the other bank's);
    - a bank's AI service runs only on its own bank's hosts, and no cluster node carries the
      AI services of two banks;
    - a flow that carries data (anything but ``none``) into or out of an AI endpoint of one
      bank never has another bank's endpoint at its other end.
    """
    topo = ctx.topology
    area = zones(ctx.params["ai_zones"])
    banks = {t.name for t in topo.tenants if t.kind is TenantKind.BANK}
    for host in topo.hosts:
        if host.tenant not in banks:
            continue
        for iface in host.interfaces:
            seg = topo.segment(iface.segment)
            if seg.zone in area and seg.tenant != host.tenant:
                yield ctx.finding(
                    f"host:{host.name}",
                    f"host {host.name} of {host.tenant} has {iface.name} in the {seg.tenant} AI segment "
                    f"{seg.name}; a bank's AI hosts sit only in its own AI segments",
                    iface, "segment")
    carried: dict[str, set[str]] = {}
    for svc in topo.services:
        if svc.zone not in area or svc.tenant not in banks:
            continue
        for name in svc.hosts:
            host = topo.host(name)
            if host.tenant != svc.tenant:
                yield ctx.finding(
                    f"service:{svc.name}",
                    f"{svc.tenant}'s AI service {svc.name} runs on {host.name}, a host of {host.tenant}",
                    svc, "hosts")
        for cluster in svc.clusters:
            segment = next((s.name for s in topo.segments if s.site == topo.cluster(cluster).site
                            and s.tenant == svc.tenant and s.zone is svc.zone), None)
            for node in topo.cluster_hosts(cluster):
                if node.role is not HostRole.K8S_CONTROL_PLANE and any(
                        i.segment == segment for i in node.interfaces):
                    carried.setdefault(node.name, set()).add(svc.tenant)
    for name, tenants in sorted(carried.items()):
        if len(tenants) > 1:
            host = topo.host(name)
            yield ctx.finding(
                f"host:{name}",
                f"node {name} carries the AI services of {' and '.join(sorted(tenants))}; give each bank its "
                "own AI nodes",
                host, "interfaces")
    for flow in topo.flows:
        if flow.data in (None, DataClass.NONE):
            continue
        for conn in conns_of(topo, flow):
            src, dst = conn.source, conn.destination
            if not (src.zone in area or dst.zone in area):
                continue
            if src.tenant in banks and dst.tenant in banks and src.tenant != dst.tenant:
                yield ctx.finding(
                    f"flow:{flow.name}",
                    f"flow {flow.name} carries {flow.data.value} data between {src.tenant}'s {src.ref} and "
                    f"{dst.tenant}'s {dst.ref} in the AI zone; each bank's data stays its own",
                    flow, "destination")
                break


# --------------------------------------------------------------------------- EXM-01


def _edition_param(params: dict[str, ParamValue]) -> dict[str, str]:
    try:
        dt.date.fromisoformat(str(params["current_edition"]))
    except ValueError:
        found = params["current_edition"]
        return {"current_edition": f"expected an ISO date like 2025-02-05, found {found!r}"}
    return {}


@rule(
    "EXM-01",
    title="Exemptions are current, approved and used",
    severity=ERROR,
    source=f"{EFSR} 시행세칙 제2조의2 (망분리 예외); {ROADMAP}",
    params={
        "warn_days": Param(60, "Warn this many days before an exemption expires."),
        "current_edition": Param(
            "2025-02-05", "The edition of 전자금융감독규정 and its 시행세칙 in force (ISO date); a provision "
                          "cited from an older one is a warning."),
    },
    param_check=_edition_param,
    waivable=False,
    edition="시행세칙 2025-02-05; 로드맵 2024-08-13",
    verified=False,
    dora="Art. 28",
)
def exm01(ctx: Context) -> Iterator[Finding]:
    """Exemptions are current, approved and used.

    An exemption (a sandbox designation or a 시행세칙 제2조의2 exception) is an error once it
    has expired or while its approval date lies in the future; it is a warning when no
    declared flow uses it (no flow in its scope, and no flow to or from a service in its
    scope), when it expires within ``warn_days``, and when the provision it departs from is
    cited from an edition older than ``current_edition`` (the 2025-02-05 rewrite moved articles:
    re-check the citation and, if need be, the approval). Exemptions are judged against the real
    date, as waivers are. An exemption cannot be waived.
    """
    topo = ctx.topology
    today = topo.today()
    warn = ctx.get_int("warn_days")
    current = dt.date.fromisoformat(ctx.get_str("current_edition"))
    ends: set[str] = set()
    for flow in topo.flows:
        ends.update((flow.source, flow.destination))
    for exm in topo.exemptions:
        target = f"exemption:{exm.name}"
        if exm.expires < today:
            yield ctx.finding(
                target,
                f"exemption {exm.name} ({exm.approval}) expired on {exm.expires.isoformat()}; renew the "
                "approval, or remove the exemption and what it covers",
                exm, "expires")
        elif (exm.expires - today).days <= warn:
            yield ctx.finding(
                target,
                f"exemption {exm.name} expires on {exm.expires.isoformat()}, in {(exm.expires - today).days} "
                "days; renew the approval in time",
                exm, "expires", severity=Severity.WARNING)
        if exm.approved_on > today:
            yield ctx.finding(
                target,
                f"exemption {exm.name} is dated {exm.approved_on.isoformat()}, after today: it is not "
                "approved yet",
                exm, "approved_on")
        if exm.provision_edition < current:
            yield ctx.finding(
                target,
                f"exemption {exm.name} cites {exm.provision!r} from the {exm.provision_edition.isoformat()} "
                f"edition, which the {current.isoformat()} edition replaced: re-check the article",
                exm, "provision_edition", severity=Severity.WARNING)
        if not exm.flows and not any(f"service:{s}" in ends for s in exm.services):
            yield ctx.finding(
                target,
                f"exemption {exm.name} is used by no flow: its scope names no flow, and no flow reaches "
                f"{', '.join(exm.services)}; remove it, or fix its scope",
                exm, "services", severity=Severity.WARNING)


# --------------------------------------------------------------------------- DATA-01


@rule(
    "DATA-01",
    title="Every flow that carries data out of the business network says what it carries, and every "
          "service what it holds",
    severity=Severity.WARNING,
    source="신용정보의 이용 및 보호에 관한 법률 제2조 (개인신용정보·가명정보); 개인정보 보호법 제28조의2",
    params={
        "from_zones": Param("internal", "Zones data leaves (comma-separated)."),
    },
    param_check=check_lists(from_zones="zone"),
    edition="신용정보법 and 개인정보 보호법 as in force on 2025-02-05",
    verified=False,
)
def data01(ctx: Context) -> Iterator[Finding]:
    """Every flow that carries data out of the business network says what it carries, and every
    service what it holds (warnings).

    A flow with a connection from a segment of ``internal`` to any other zone, the internet
    or an outside institution declares ``data``: ``personal`` (개인(신용)정보),
    ``pseudonymised`` (가명정보), ``anonymised`` or ``none``. Every service declares what it
    holds (``holds``, or ``personal_data: true``). AI-01 requires the same of every flow into
    the AI zone and every service in it, as errors.
    """
    topo = ctx.topology
    area = zones(ctx.params["from_zones"])
    for flow in topo.flows:
        if flow.data is not None:
            continue
        leaving = next((c for c in conns_of(topo, flow)
                        if c.source.zone in area and c.destination.zone not in area), None)
        if leaving is None:
            continue
        there = leaving.destination.zone.value if leaving.destination.zone else leaving.destination.node
        here = leaving.source.zone.value if leaving.source.zone else "?"
        yield ctx.finding(
            f"flow:{flow.name}",
            f"flow {flow.name} leaves {here} for {there} "
            "but does not say what it carries (data: personal, pseudonymised, anonymised or none)",
            flow, "destination")
    for svc in topo.services:
        if svc.data_held is None:
            yield ctx.finding(
                f"service:{svc.name}",
                f"service {svc.name} does not say what it holds (holds: personal, pseudonymised, anonymised "
                "or none)",
                svc, "zone")

