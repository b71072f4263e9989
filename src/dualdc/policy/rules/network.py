"""Network separation rules: NS-01, NS-02, NS-03, EXT-01, TEN-01, IP-01."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from dualdc.flows import INTERNET, Connection
from dualdc.model import (
    Entity,
    HostRole,
    Segment,
    Severity,
    TenantKind,
    Topology,
    Zone,
    zone_traits,
    zones_where,
)
from dualdc.policy import graph
from dualdc.policy.engine import Context, Finding, Param, ParamValue, rule
from dualdc.policy.rules.common import check_lists, conns_of, split, zones

ERROR = Severity.ERROR


#: The defaults of ``exposed_zones`` and ``protected_zones``: the zone kinds with that trait.
_EXPOSED = ",".join(z.value for z in zones_where("exposed"))
_PROTECTED = ",".join(z.value for z in zones_where("protected"))


def _zone_params(params: dict[str, ParamValue]) -> dict[str, str]:
    bad = check_lists(exposed_zones="zone", protected_zones="zone")(params)
    if not bad and zones(params["exposed_zones"]) & zones(params["protected_zones"]):
        bad["protected_zones"] = "a zone cannot be both exposed and protected"
    return bad


def _institutions(zone: Zone | None) -> bool:
    """Whether links to outside institutions land in the zone (``ZoneTraits.institutions``)."""
    return zone is not None and zone_traits(zone).institutions


def _segment_zones(topology: Topology) -> dict[str, Zone]:
    return {f"segment:{s.name}": s.zone for s in topology.segments}


def _ports(conn: Connection) -> str:
    return f"{conn.flow.protocol.value}/{'any' if not conn.ports else ','.join(map(str, conn.ports))}"


@rule(
    "NS-01",
    title="No path from the internet or the DMZ into the business network except through declared relays",
    severity=ERROR,
    source="전자금융감독규정 제15조 제1항 제3호 (망분리)",
    params={
        "exposed_zones": Param(_EXPOSED, "Zones treated as exposed, like the internet (comma-separated)."),
        "protected_zones": Param(_PROTECTED, "Zones nothing exposed may reach (comma-separated)."),
        "relay_ports_declared": Param(
            True, "A relay hop's ports must all be ports the relay service declares."
        ),
    },
    param_check=_zone_params,
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 9",
    pci_dss="1.4; 11.4.5",
)
def ns01(ctx: Context) -> Iterator[Finding]:
    """No path from the internet or the DMZ into the business network except through declared relays.

    Computed over the graph of declared flows across any number of hops (see
    :mod:`dualdc.policy.graph`): the sources are the internet and every segment of an
    exposed zone (``dmz``); the protected nodes are the segments of a protected zone
    (``internal``). A *relay hop* is a connection into a protected segment whose destination
    is a ``service:`` marked ``relay: true``, on named ports (never ``any``) that the
    service declares. Relay hops are removed from the graph; any remaining path from a
    source into a protected segment is a breach. Paths may pass through any zone (a DMZ
    host that may open SSH to a mgmt segment, which may reach internal, is a path); the
    internet and outside institutions are never transit.

    The finding names the flow that takes the path out of the exposed region (internet and
    DMZ) — for a DMZ segment flowing straight into an internal one, that flow itself; for
    DMZ → mgmt → internal, the DMZ → mgmt flow, since mgmt → internal alone is legitimate —
    and the message shows the whole path, the blamed hop drawn ``=[flow]=>``.
    """
    topo = ctx.topology
    exposed, protected = zones(ctx.params["exposed_zones"]), zones(ctx.params["protected_zones"])
    zone_of = _segment_zones(topo)
    check_ports = ctx.get_bool("relay_ports_declared")

    def is_relay_hop(conn: Connection) -> bool:
        dst = conn.destination
        kind, _, name = dst.ref.partition(":")
        if dst.zone not in protected or kind != "service" or conn.flow.ports == "any":
            return False
        svc = topo.service(name)
        return svc.relay and (not check_ports or set(conn.flow.ports) <= set(svc.ports))

    flows = graph.build(topo, keep=lambda c: not is_relay_hop(c))
    sources = [INTERNET, *(n for n, z in zone_of.items() if z in exposed)]
    seen: set[str] = set()
    for breach in graph.breaches(
        flows, sources, inside=lambda n: n == INTERNET or zone_of.get(n) in exposed,
        protected=lambda n: zone_of.get(n) in protected,
    ):
        conn = breach.connection
        if conn.flow.name in seen:
            continue
        seen.add(conn.flow.name)
        dst = conn.destination
        kind, _, name = dst.ref.partition(":")
        hint = ""
        if kind == "service" and topo.service(name).relay and zone_of.get(dst.node) in protected:
            hint = (
                f"; {dst.ref} is a relay, but this flow's ports {_ports(conn)} are not named ports it "
                f"declares ({', '.join(map(str, topo.service(name).ports)) or 'none'})"
            )
        elif zone_of.get(dst.node) in protected:
            hint = f"; enter the business network only through a relay service (relay: true), not {dst.ref}"
        target_segment = breach.path[-1].partition(":")[2]
        yield ctx.finding(
            f"flow:{conn.flow.name}",
            f"{graph.describe(breach)}: flow {conn.flow.name} ({_ports(conn)}) opens a path from "
            f"{breach.path[0]} to the {zone_of[breach.path[-1]].value} segment {target_segment} without a "
            f"declared relay{hint}",
            conn.flow,
            "destination",
        )


@rule(
    "NS-02",
    title="A cluster or host never spans the DMZ and the business network",
    severity=ERROR,
    source="전자금융감독규정 제15조 제1항 제5호",
    params={
        "exposed_zones": Param(_EXPOSED, "Zones on one side of the split (comma-separated)."),
        "protected_zones": Param(_PROTECTED, "Zones on the other side (comma-separated)."),
    },
    param_check=_zone_params,
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 9",
    pci_dss="1.2; 1.4",
)
def ns02(ctx: Context) -> Iterator[Finding]:
    """A cluster or host never spans the DMZ and the business network.

    A host spans them when it has interfaces in segments of both an exposed zone
    (``dmz``) and a protected zone (``internal``). A cluster spans them when, taken
    together, its zone, its nodes' interfaces and the zones of the services placed on it
    touch both sides: one cluster's nodes and control plane would then carry both
    networks.
    """
    topo = ctx.topology
    exposed, protected = zones(ctx.params["exposed_zones"]), zones(ctx.params["protected_zones"])

    def spans(found: set[Zone]) -> bool:
        return bool(found & exposed) and bool(found & protected)

    by_cluster: dict[str, set[Zone]] = {c.name: {c.zone} for c in topo.clusters}
    why: dict[str, list[str]] = {c.name: [] for c in topo.clusters}
    for host in topo.hosts:
        found = {topo.segment(i.segment).zone for i in host.interfaces}
        if spans(found):
            names = ", ".join(
                f"{i.name} in {i.segment}"
                for i in host.interfaces
                if topo.segment(i.segment).zone in exposed | protected
            )
            yield ctx.finding(
                f"host:{host.name}",
                f"host {host.name} has interfaces on both sides of the DMZ/business network split: {names}",
                host,
                "interfaces",
            )
        if host.cluster in by_cluster:
            touched = found & (exposed | protected)
            by_cluster[host.cluster] |= touched
            if touched:
                why[host.cluster].append(f"node {host.name} ({', '.join(sorted(z.value for z in touched))})")
    for svc in topo.services:
        for name in svc.clusters:
            if name in by_cluster:
                by_cluster[name].add(svc.zone)
                if svc.zone in exposed | protected:
                    why[name].append(f"service {svc.name} ({svc.zone.value})")
    for cluster in topo.clusters:
        if spans(by_cluster[cluster.name]):
            reasons = [f"its zone ({cluster.zone.value})", *why[cluster.name]]
            shown = ", ".join(reasons[:6]) + (f" and {len(reasons) - 6} more" if len(reasons) > 6 else "")
            yield ctx.finding(
                f"cluster:{cluster.name}",
                f"cluster {cluster.name} spans the DMZ and the business network: {shown}",
                cluster,
                "zone",
            )


PLACEHOLDERS = "tbd,todo,n/a,na,none,misc,test,temp,-,?"


def _zone_key(conn_end_zone: Zone | None, node: str) -> str:
    if conn_end_zone is not None:
        return conn_end_zone.value
    return "internet" if node == INTERNET else "institution"


@rule(
    "NS-03",
    title="Every flow that crosses zones names its purpose",
    severity=ERROR,
    source="전자금융감독규정 제15조 단서; 시행세칙 제2조의2",
    params={
        "min_purpose_length": Param(10, "Shortest acceptable purpose, in characters."),
        "placeholders": Param(PLACEHOLDERS, "Purposes that say nothing (comma-separated, case-insensitive)."),
    },
    edition="감독규정 and 시행세칙 2025-02-05",
    verified=False,
    dora="Art. 9",
    pci_dss="1.2.5",
)
def ns03(ctx: Context) -> Iterator[Finding]:
    """Every flow that crosses zones names its purpose.

    A flow crosses zones when one of its connections joins two different zones, or a
    zone and the internet or an outside institution. Its ``purpose`` must then say why:
    at least ``min_purpose_length`` characters and not a placeholder such as "tbd".
    Exceptions to any rule are waivers, which the model only accepts with a reason, an
    approval reference (정보보호위원회 resolution) and an expiry date; WV-01 checks that
    they are current.
    """
    placeholders = {p.lower() for p in ctx.get_list("placeholders")}
    shortest = ctx.get_int("min_purpose_length")
    topo = ctx.topology
    for flow in topo.flows:
        purpose = flow.purpose.strip()
        if len(purpose) >= shortest and purpose.lower() not in placeholders:
            continue
        crossing = _crossing(conns_of(topo, flow))
        if crossing is None:
            continue
        said = f"its purpose is {purpose!r}" if purpose else "it names no purpose"
        yield ctx.finding(
            f"flow:{flow.name}",
            f"flow {flow.name} crosses from {crossing[0]} to {crossing[1]} but {said}; "
            f"say why it is needed (at least {shortest} characters)",
            flow,
            "purpose" if purpose else None,
        )


def _crossing(conns: list[Connection]) -> tuple[str, str] | None:
    """The first (source zone, destination zone) of connections joining two different zones."""
    for conn in conns:
        a = _zone_key(conn.source.zone, conn.source.node)
        b = _zone_key(conn.destination.zone, conn.destination.node)
        if a != b:
            return a, b
    return None


@rule(
    "EXT-01",
    title="External flows only to listed institutions, on named ports",
    severity=ERROR,
    source="전자금융감독규정 시행세칙 제2조의2",
    params={
        "allow_inbound": Param(True, "Whether an institution may open connections to an external segment."),
    },
    edition="시행세칙 2025-02-05",
    verified=False,
    dora="Art. 9",
    pci_dss="1.4.2",
)
def ext01(ctx: Context) -> Iterator[Finding]:
    """External flows only to listed institutions, on named ports (no any/any).

    For every flow with an institution at one end:

    - the other end lies in ``external`` (대외계) segments only: not the internet, not
      another institution, not a segment of another zone;
    - the ports are named, never ``any``;
    - towards the institution, every port is one the institution lists; from the
      institution (only when ``allow_inbound``), every port is one the destination service
      declares, if the destination is a service.

    And for every flow with an ``external`` segment at one end: the other end is not the
    internet, and the ports are named. Institutions must be declared (the loader refuses
    a flow naming an unknown one).
    """
    topo = ctx.topology
    inbound_ok = ctx.get_bool("allow_inbound")
    for flow in topo.flows:
        src_inst = flow.source.startswith("institution:")
        dst_inst = flow.destination.startswith("institution:")
        if not (src_inst or dst_inst or flow.ports == "any" or INTERNET in (flow.source, flow.destination)):
            continue  # nothing below could apply
        conns = conns_of(topo, flow)
        problems: list[str] = []
        field_name = "ports"
        if src_inst or dst_inst:
            inst_ref, other_ref = (
                (flow.source, flow.destination) if src_inst else (flow.destination, flow.source)
            )
            inst = topo.institution(inst_ref.partition(":")[2])
            others = [c.destination if src_inst else c.source for c in conns]
            if other_ref == INTERNET or other_ref.startswith("institution:"):
                problems.append(
                    f"it joins {inst_ref} to {other_ref}; institutions connect only to external segments"
                )
                field_name = "source" if dst_inst else "destination"
            else:
                wrong = sorted({o.segment or o.node for o in others if not _institutions(o.zone)})
                if wrong:
                    problems.append(
                        f"its other end {other_ref} lies outside the external zone "
                        f"({', '.join(wrong)}); institutions connect only to 대외계 segments"
                    )
                    field_name = "source" if dst_inst else "destination"
            if src_inst and not inbound_ok:
                problems.append(f"{inst_ref} may not open connections to us (allow_inbound is false)")
                field_name = "source"
            if flow.ports == "any":
                problems.append("its ports are 'any'; name them")
            elif dst_inst:
                extra = sorted(set(flow.ports) - set(inst.ports))
                if extra:
                    problems.append(
                        f"ports {', '.join(map(str, extra))} are not among {inst.name}'s listed ports "
                        f"({', '.join(map(str, inst.ports))})"
                    )
            elif flow.destination.startswith("service:"):
                svc = topo.service(flow.destination.partition(":")[2])
                extra = sorted(set(flow.ports) - set(svc.ports))
                if extra:
                    problems.append(f"ports {', '.join(map(str, extra))} are not ports {svc.name} declares")
        else:
            ext_ends = [c for c in conns if _institutions(c.source.zone) or _institutions(c.destination.zone)]
            if ext_ends:
                if INTERNET in (flow.source, flow.destination):
                    problems.append(
                        "it joins an external segment to the internet; 대외계 connects only to "
                        "listed institutions"
                    )
                    field_name = "source" if flow.source == INTERNET else "destination"
                if flow.ports == "any":
                    problems.append("it reaches an external segment on ports 'any'; name them")
        if problems:
            yield ctx.finding(
                f"flow:{flow.name}", f"flow {flow.name}: " + "; ".join(problems), flow, field_name
            )


@rule(
    "TEN-01",
    title="No path between the two banks' endpoints, except through group services",
    severity=ERROR,
    source="전자금융감독규정 제18조 (2025-02-05 시행)",
    params={
        "protected_zones": Param(
            "internal,replication,backup,ai",
            "Zones whose bank endpoints are kept apart from every other bank (comma-separated); ai: AI-04.",
        ),
    },
    param_check=check_lists(protected_zones="zone"),
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 9",
    pci_dss="1.3; 11.4.5",
)
def ten01(ctx: Context) -> Iterator[Finding]:
    """No path between the two banks' endpoints, except through group services.

    Judged between endpoints, not segments (:func:`dualdc.policy.graph.endpoint_graph`):
    hosts (of their own tenant, wherever they sit: a bank's host in a ``group`` segment is
    still that bank's endpoint), services' pods and declared hosts (of the service's tenant),
    and segments as the places they sit in. A host with interfaces in several segments joins
    them; a flow naming a segment reaches everything in it.

    For every bank, from each of its endpoints in a protected zone (``internal``,
    ``replication``, ``backup``, ``ai``), no path over any number of declared flows may reach
    another bank's endpoint in a protected zone. Only a *group service* (a service whose
    tenant is of kind ``shared``; its declared hosts and its pods) may stand between: paths
    end there. A shared segment, or a group host that belongs to no group service, is never
    a free pass. The internet and institutions are never transit.

    The finding names both endpoints and the flow where the path leaves the first bank's
    side (a flow from the bank's endpoint, or from a place the bank's endpoint sits in or
    is joined to by a multi-homed host), with the whole path in the message. A bank's host
    with an interface in another bank's segment is a finding of its own.
    """
    topo = ctx.topology
    protected = zones(ctx.params["protected_zones"])
    banks = sorted(t.name for t in topo.tenants if t.kind is TenantKind.BANK)
    for host in topo.hosts:
        if host.tenant not in banks:
            continue
        for iface in host.interfaces:
            seg = topo.segment(iface.segment)
            if seg.tenant in banks and seg.tenant != host.tenant:
                yield ctx.finding(
                    f"host:{host.name}",
                    f"host {host.name} of {host.tenant} has interface {iface.name} in {seg.tenant}'s segment "
                    f"{seg.name}: a bank's host never sits in the other bank's network",
                    host, "interfaces",
                )
    net = graph.endpoint_graph(topo)
    none: frozenset[Zone] = frozenset()
    bank_set = set(banks)

    starts_of: dict[str, list[str]] = {b: [] for b in banks}
    for node in net.adj:
        owner = net.tenant.get(node)
        if owner in starts_of and not node.startswith("segment:") and net.zones.get(node, none) & protected:
            starts_of[owner].append(node)
    seen: set[str] = set()
    for bank in banks:
        starts = sorted(starts_of[bank])

        def target(node: str, bank: str = bank) -> bool:
            owner = net.tenant.get(node)
            return (owner in bank_set and owner != bank and not node.startswith("from:")
                    and bool(net.zones.get(node, none) & protected))

        for breach in graph.tenant_breaches(net, bank, starts, target):
            conn = breach.connection
            if conn.flow.name in seen:
                continue
            seen.add(conn.flow.name)
            first, last = graph.endpoint_name(breach.path[0]), graph.endpoint_name(breach.path[-1])
            other = net.tenant[breach.path[-1]]
            yield ctx.finding(
                f"flow:{conn.flow.name}",
                f"{graph.describe_endpoints(breach)}: flow {conn.flow.name} ({_ports(conn)}) lets {bank}'s "
                f"{first} reach {other}'s {last} without passing through a group service",
                conn.flow,
                "destination",
            )


def _lp_params(params: dict[str, ParamValue]) -> dict[str, str]:
    ends = split(params["ends"])
    if not ends or set(ends) - {"source", "destination"}:
        return {"ends": "expected a comma-separated list of 'source' and 'destination', "
                        f"found {params['ends']!r}"}
    return {}


@rule(
    "LP-01",
    title="Allow rules name exact endpoints; a whole segment is listed for review",
    severity=Severity.WARNING,
    source="전자금융감독규정 제15조 (해킹 등 방지대책: 필요한 접속만 허용; article text unverified); "
           "ISMS-P 2.6.1 네트워크 접근",
    params={
        "ends": Param("destination",
                      "Which flow ends naming a whole segment are listed (comma-separated: destination, "
                      "source). A whole-segment destination opens the flow's ports on every host in it."),
    },
    param_check=_lp_params,
    edition="감독규정 2025-02-05; ISMS-P 2023-04",
    verified=False,
    dora="Art. 9",
    pci_dss="1.3.1",
)
def lp01(ctx: Context) -> Iterator[Finding]:
    """Allow rules name exact endpoints; a whole segment is listed for review.

    Every layer (the hosts' nftables, the lab routers, the NetworkPolicies) allows exactly
    the addresses a flow's ends resolve to (:mod:`dualdc.flows`): a host's address in the
    segment the connection uses, a service's declared hosts and its clusters' workers. A
    flow that names a ``segment:`` end allows the whole segment on the flow's ports: as a
    destination it opens them on every host in it; so does a service on a cluster none of
    whose workers sits in the service's segment. Those rules are legitimate where the flow
    really means the segment (the bastion may SSH to every host of the mgmt segment), and
    this warning lists each so a reviewer sees it; name hosts or services instead where the
    flow means them. The ``ends`` parameter adds whole-segment sources (every host of the
    mgmt segment syncs time) to the list.
    """
    topo = ctx.topology
    ends = set(ctx.get_list("ends"))
    hosts_in: dict[str, int] = {}
    for host in topo.hosts:
        for name in {i.segment for i in host.interfaces}:
            hosts_in[name] = hosts_in.get(name, 0) + 1
    for flow in topo.flows:
        wide: list[str] = []
        fields: list[str] = []
        for end, ref in (("source", flow.source), ("destination", flow.destination)):
            if end not in ends:
                continue
            if ref.startswith("segment:"):
                seg = topo.segment(ref.partition(":")[2])
                count = hosts_in.get(seg.name, 0)
                wide.append(f"its {end} is the whole segment {seg.name} ({seg.cidr}, {count} hosts)")
                fields.append(end)
            elif ref.startswith("service:"):
                loose = sorted({str(n) for c in conns_of(topo, flow)
                                for e in ((c.source,) if end == "source" else (c.destination,))
                                if not e.exact for n in e.networks})
                if loose:
                    wide.append(f"its {end} {ref} has no worker in its segment, so it stands as "
                                f"{', '.join(loose)}")
                    fields.append(end)
        if wide:
            yield ctx.finding(
                f"flow:{flow.name}",
                f"flow {flow.name} ({flow.protocol.value}/"
                f"{'any' if flow.ports == 'any' else ','.join(map(str, flow.ports))}): "
                + "; ".join(wide) + "; every layer allows that whole range: name hosts or services where the "
                "flow means them",
                flow,
                fields[0],
            )


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class Block:
    """An address block of the topology, for privacy and overlap checks."""

    network: ipaddress.IPv4Network
    target: str
    what: str
    entity: Entity
    field: str
    private_scope: bool
    order: int


def _blocks(topo: Topology, private_zones: frozenset[Zone]) -> list[Block]:
    blocks: list[Block] = []

    def add(  # noqa: PLR0917  (positional for brevity below)
        net: ipaddress.IPv4Network, target: str, what: str, entity: Entity, field: str, scope: bool
    ) -> None:
        blocks.append(Block(net, target, what, entity, field, scope, len(blocks)))

    for seg in topo.segments:
        add(
            seg.cidr,
            f"segment:{seg.name}",
            f"segment {seg.name} ({seg.zone.value})",
            seg,
            "cidr",
            seg.zone in private_zones,
        )
    for cl in topo.clusters:
        add(cl.pod_cidr, f"cluster:{cl.name}", f"pod network of cluster {cl.name}", cl, "pod_cidr", True)
        add(
            cl.service_cidr,
            f"cluster:{cl.name}",
            f"service network of cluster {cl.name}",
            cl,
            "service_cidr",
            True,
        )
    for link in topo.links:
        add(link.network, f"link:{link.name}", f"network of link {link.name}", link, "network", True)
    for inst in topo.institutions:
        for net in inst.cidrs:
            add(
                net,
                f"institution:{inst.name}",
                f"network {net} of institution {inst.name}",
                inst,
                "cidrs",
                False,
            )
    return blocks


def overlaps(blocks: list[Block]) -> Iterator[tuple[Block, Block]]:
    """Every pair of overlapping blocks, (earlier declared, later declared).

    CIDR blocks either nest or are disjoint, so a sweep over blocks sorted by first
    address, with a stack of the blocks still open, finds every pair in O(n log n + pairs).
    """
    ordered = sorted(blocks, key=lambda b: (int(b.network.network_address), b.network.prefixlen, b.order))
    open_blocks: list[Block] = []
    for block in ordered:
        start = int(block.network.network_address)
        open_blocks = [b for b in open_blocks if int(b.network.broadcast_address) >= start]
        for other in open_blocks:
            yield (other, block) if other.order < block.order else (block, other)
        open_blocks.append(block)


def _where(entity: Entity, field: str) -> str:
    loc = entity.field_location(field)
    return f" ({loc.file}:{loc.line})" if loc else ""


def _private_params(params: dict[str, ParamValue]) -> dict[str, str]:
    return check_lists(private_zones="zone", private_ranges="network")(params)


@rule(
    "IP-01",
    title="Internal, database and management addresses are private and never overlap",
    severity=ERROR,
    source="전자금융감독규정 제18조",
    params={
        "private_zones": Param(
            "internal,mgmt,replication,backup,dev",
            "Zones whose segments must use private addresses (comma-separated).",
        ),
        "private_ranges": Param(
            "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16", "What counts as private (RFC 1918; comma-separated)."
        ),
    },
    param_check=_private_params,
    edition="감독규정 2025-02-05",
    verified=False,
    pci_dss="1.4.5",
)
def ip01(ctx: Context) -> Iterator[Finding]:
    """Internal, database and management addresses are private (RFC 1918) and never overlap.

    Private: segments of the private zones (``internal``, ``mgmt``, ``replication``,
    ``backup``, ``dev``), every BMC address, every address of a ``db`` host, every
    cluster's pod and service network and every inter-site link network lie inside the
    private ranges. DMZ and external segments may use public addresses.

    Never overlap: no two of those private-scope blocks (segments of private zones,
    cluster networks, link networks) share an address. Overlaps involving a DMZ or external
    segment or an institution's network are the structural check STR-02.
    """
    topo = ctx.topology
    ranges = [ipaddress.IPv4Network(r) for r in ctx.get_list("private_ranges")]
    blocks = _blocks(topo, zones(ctx.params["private_zones"]))

    bounds = [(int(r.network_address), int(r.broadcast_address)) for r in ranges]

    def private(net: ipaddress.IPv4Network) -> bool:
        first, last = int(net.network_address), int(net.broadcast_address)
        return any(lo <= first and last <= hi for lo, hi in bounds)

    def private_address(address: ipaddress.IPv4Address) -> bool:
        value = int(address)
        return any(lo <= value <= hi for lo, hi in bounds)

    for block in blocks:
        if block.private_scope and not private(block.network):
            yield ctx.finding(
                block.target,
                f"the {block.what} uses {block.network}, which is not a private range "
                f"({ctx.get_str('private_ranges')})",
                block.entity,
                block.field,
            )
    for host in topo.hosts:
        if host.bmc is not None and not private_address(host.bmc):
            yield ctx.finding(
                f"host:{host.name}", f"the BMC address {host.bmc} of {host.name} is not private", host, "bmc"
            )
        if host.role is HostRole.DB:
            public = [
                f"{i.name} {i.address}"
                for i in host.interfaces
                if not private_address(i.address)
            ]
            if public:
                yield ctx.finding(
                    f"host:{host.name}",
                    f"database host {host.name} has public addresses: {', '.join(public)}",
                    host,
                    "interfaces",
                )
    for first, second in overlaps(blocks):
        if first.private_scope and second.private_scope:
            yield ctx.finding(
                second.target,
                f"the {second.what}, {second.network}, overlaps the {first.what}, "
                f"{first.network}{_where(first.entity, first.field)}",
                second.entity,
                second.field,
            )


def private_scope_blocks(topo: Topology, private_zones: str) -> list[Block]:
    """The blocks IP-01 judges, for STR-02 (which judges the rest)."""
    return _blocks(topo, zones(private_zones))


def segment_key(seg: Segment) -> tuple[str, str, Zone]:
    return (seg.site, seg.tenant, seg.zone)


__all__ = ["overlaps", "private_scope_blocks", "split"]
