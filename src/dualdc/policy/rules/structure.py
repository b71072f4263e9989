"""Structural checks (STR-*): the topology is internally consistent.

These are not regulation but bookkeeping a network plan must get right: unique names,
unique VLANs and addresses, addresses inside their networks, things placed where they can
run. They cannot be waived: fix the topology instead.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections import Counter
from collections.abc import Iterator

from dualdc.flows import service_segment
from dualdc.model import (
    ENTITY_LISTS,
    NODE_ROLES,
    WORKER_ROLES,
    Entity,
    HostRole,
    Severity,
    Zone,
    today_pin_allowed,
    zone_traits,
)
from dualdc.policy.engine import Context, Finding, Param, rule, waiver_target
from dualdc.policy.rules.common import conns_of
from dualdc.policy.rules.network import overlaps, private_scope_blocks

ERROR = Severity.ERROR
SOURCE = "dualdc topology consistency"


def _at(entity: Entity) -> str:
    loc = entity.location
    return f"{loc.file}:{loc.line}" if loc else "elsewhere"


@rule("STR-01", title="Names are unique per kind", severity=ERROR, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str01(ctx: Context) -> Iterator[Finding]:
    """Names are unique per kind of entity, and no two waivers name the same rule and target.

    The second and later declarations are findings, pointing at the first.
    """
    topo = ctx.topology
    for key in ENTITY_LISTS:
        kind = key[:-1]
        first: dict[str, Entity] = {}
        for item in getattr(topo, key):
            name = waiver_target(item) if key == "waivers" else item.name
            if name in first:
                target = name if key == "waivers" else f"{kind}:{name}"
                yield ctx.finding(
                    target,
                    f"{kind} {name} is declared twice (first at {_at(first[name])})",
                    item,
                    "target" if key == "waivers" else "name",
                )
            else:
                first[name] = item


@rule("STR-02", title="Networks never overlap", severity=ERROR, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str02(ctx: Context) -> Iterator[Finding]:
    """No two networks of the topology overlap.

    Networks are the segments, the clusters' pod and service networks, the inter-site link
    networks and the institutions' networks. Overlaps between two networks of IP-01's
    private scope (segments of its ``private_zones``, cluster and link networks) are IP-01
    findings; this check reports every other overlap (one involving a DMZ or external
    segment or an institution). The later-declared network is the target.
    """
    blocks = private_scope_blocks(
        ctx.topology,
        str(ctx.all_params.get("IP-01", {}).get("private_zones", "internal,mgmt,replication,backup,dev")),
    )
    for first, second in overlaps(blocks):
        if first.private_scope and second.private_scope:
            continue
        if first.target == second.target and first.target.startswith("institution:"):
            continue
        loc = first.entity.field_location(first.field)
        where = f" ({loc.file}:{loc.line})" if loc else ""
        yield ctx.finding(
            second.target,
            f"the {second.what}, {second.network}, overlaps the {first.what}, {first.network}{where}",
            second.entity,
            second.field,
        )


@rule("STR-03", title="VLAN ids are unique per site", severity=ERROR, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str03(ctx: Context) -> Iterator[Finding]:
    """No two segments at one site share a VLAN id."""
    first: dict[tuple[str, int], str] = {}
    for seg in ctx.topology.segments:
        key = (seg.site, seg.vlan)
        if key in first:
            yield ctx.finding(
                f"segment:{seg.name}",
                f"VLAN {seg.vlan} at {seg.site} is already used by segment {first[key]}",
                seg,
                "vlan",
            )
        else:
            first[key] = seg.name


def _usable(address: ipaddress.IPv4Address, net: ipaddress.IPv4Network) -> str | None:
    """Why an address cannot be a host's in ``net``, or None."""
    value, first = int(address), int(net.network_address)
    last = first | (0xFFFFFFFF >> net.prefixlen)
    if not first <= value <= last:
        return f"outside {net}"
    if net.prefixlen <= 30 and value in (first, last):
        return f"the {'network' if value == first else 'broadcast'} address of {net}"
    return None


@rule(
    "STR-04", title="Host addresses lie inside their segment", severity=ERROR, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str04(ctx: Context) -> Iterator[Finding]:
    """Every interface address lies inside its segment's network, is neither its network
    nor its broadcast address, and is not the segment's gateway."""
    topo = ctx.topology
    for host in topo.hosts:
        for iface in host.interfaces:
            seg = topo.segment(iface.segment)
            why = _usable(iface.address, seg.cidr)
            if why is None and iface.address == seg.gateway:
                why = "the segment's gateway"
            if why:
                yield ctx.finding(
                    f"host:{host.name}",
                    f"{host.name} {iface.name} address {iface.address} is {why} (segment {seg.name})",
                    iface,
                    "address",
                )


@rule("STR-05", title="Addresses are unique", severity=ERROR, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str05(ctx: Context) -> Iterator[Finding]:
    """No address is used twice: interface addresses, BMC addresses and the link ends'
    addresses are all distinct. The later use is the finding."""
    topo = ctx.topology
    first: dict[ipaddress.IPv4Address, str] = {}

    def claim(address: ipaddress.IPv4Address, owner: str) -> str | None:
        if address in first:
            return first[address]
        first[address] = owner
        return None

    for host in topo.hosts:
        for iface in host.interfaces:
            other = claim(iface.address, f"{host.name} {iface.name}")
            if other:
                yield ctx.finding(
                    f"host:{host.name}",
                    f"{host.name} {iface.name} address {iface.address} is already used by {other}",
                    iface,
                    "address",
                )
        if host.bmc is not None:
            other = claim(host.bmc, f"the BMC of {host.name}")
            if other:
                yield ctx.finding(
                    f"host:{host.name}",
                    f"the BMC address {host.bmc} of {host.name} is already used by {other}",
                    host,
                    "bmc",
                )
    for link in topo.links:
        for end in link.ends:
            other = claim(end.address, f"link {link.name} at {end.site}")
            if other:
                yield ctx.finding(
                    f"link:{link.name}",
                    f"link {link.name} end address {end.address} is already used by {other}",
                    end,
                    "address",
                )


@rule("STR-06", title="Gateways lie inside their segment", severity=ERROR, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str06(ctx: Context) -> Iterator[Finding]:
    """Every segment's gateway lies inside its network and is neither the network nor the
    broadcast address."""
    for seg in ctx.topology.segments:
        why = _usable(seg.gateway, seg.cidr)
        if why:
            yield ctx.finding(
                f"segment:{seg.name}",
                f"the gateway {seg.gateway} of segment {seg.name} is {why}",
                seg,
                "gateway",
            )


@rule(
    "STR-07",
    title="BMCs sit in a management segment of their site",
    severity=ERROR,
    source=SOURCE,
    waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str07(ctx: Context) -> Iterator[Finding]:
    """Every BMC address lies in a ``mgmt`` segment at the host's own site (out-of-band
    management never shares a business network)."""
    topo = ctx.topology
    mgmt: set[tuple[str, int, int]] = set()  # (site, prefix length, network address)
    lengths: set[int] = set()
    for seg in topo.segments:
        if zone_traits(seg.zone).admin:
            mgmt.add((seg.site, seg.cidr.prefixlen, int(seg.cidr.network_address)))
            lengths.add(seg.cidr.prefixlen)
    for host in topo.hosts:
        if host.bmc is None:
            continue
        value = int(host.bmc)
        found = any((host.site, n, value & ~(0xFFFFFFFF >> n) & 0xFFFFFFFF) in mgmt for n in lengths)
        if not found:
            yield ctx.finding(
                f"host:{host.name}",
                f"the BMC address {host.bmc} of {host.name} is in no mgmt segment at {host.site}",
                host,
                "bmc",
            )


@rule(
    "STR-08",
    title="At most one segment per site, tenant and zone",
    severity=ERROR,
    source=SOURCE,
    waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str08(ctx: Context) -> Iterator[Finding]:
    """At most one segment per (site, tenant, zone): services and flows are placed by that
    triple, so a second segment would be ambiguous."""
    first: dict[tuple[str, str, Zone], str] = {}
    for seg in ctx.topology.segments:
        key = (seg.site, seg.tenant, seg.zone)
        if key in first:
            yield ctx.finding(
                f"segment:{seg.name}",
                f"segment {seg.name} is a second {seg.zone.value} segment of "
                f"{seg.tenant} at {seg.site} (first: {first[key]})",
                seg,
                "zone",
            )
        else:
            first[key] = seg.name


@rule(
    "STR-09",
    title="Hosts and clusters are placed consistently",
    severity=ERROR,
    source=SOURCE,
    waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str09(ctx: Context) -> Iterator[Finding]:
    """Hosts and clusters are placed consistently.

    A host's interfaces are in segments of its own site; only Kubernetes nodes belong to a
    cluster (``gpu_worker`` hosts are workers), and a cluster's nodes are at the cluster's
    site; every cluster has at least one control-plane node and one worker.
    """
    topo = ctx.topology
    roles: dict[str, Counter[HostRole]] = {c.name: Counter() for c in topo.clusters}
    for host in topo.hosts:
        for iface in host.interfaces:
            seg = topo.segment(iface.segment)
            if seg.site != host.site:
                yield ctx.finding(
                    f"host:{host.name}",
                    f"{host.name} is at {host.site} but its {iface.name} is in "
                    f"segment {seg.name} at {seg.site}",
                    iface,
                    "segment",
                )
        if host.cluster is None:
            continue
        cluster = topo.cluster(host.cluster)
        roles[cluster.name][host.role] += 1
        if host.role not in NODE_ROLES:
            yield ctx.finding(
                f"host:{host.name}",
                f"{host.name} is a {host.role.value} host; only Kubernetes nodes belong to a cluster",
                host,
                "cluster",
            )
        if cluster.site != host.site:
            yield ctx.finding(
                f"host:{host.name}",
                f"{host.name} is at {host.site} but its cluster {cluster.name} is at {cluster.site}",
                host,
                "cluster",
            )
    for cluster in topo.clusters:
        if not roles[cluster.name][HostRole.K8S_CONTROL_PLANE]:
            yield ctx.finding(
                f"cluster:{cluster.name}", f"cluster {cluster.name} has no k8s_control_plane node", cluster
            )
        if not any(roles[cluster.name][role] for role in WORKER_ROLES):
            yield ctx.finding(
                f"cluster:{cluster.name}",
                f"cluster {cluster.name} has no worker node (k8s_worker or gpu_worker)", cluster,
            )


@rule("STR-10", title="Services are placed where they can run", severity=ERROR, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str10(ctx: Context) -> Iterator[Finding]:
    """Services are placed where they can run.

    A service's primary site is one of the sites it runs at; its tenant has namespaces on
    each of its clusters (``tenants``); each of its hosts, and some worker of each of its
    clusters, has an interface in the service's segment (site, tenant, zone) there.
    """
    topo = ctx.topology
    workers: dict[str, list[set[str]]] = {c.name: [] for c in topo.clusters}
    for host in topo.hosts:
        if host.cluster in workers and host.role in WORKER_ROLES:
            workers[host.cluster].append({i.segment for i in host.interfaces})
    for svc in topo.services:
        target = f"service:{svc.name}"
        sites = topo.service_sites(svc)
        if svc.primary_site not in sites:
            yield ctx.finding(
                target,
                f"the primary site of {svc.name}, {svc.primary_site}, is not among the sites "
                f"it runs at ({', '.join(sites)})",
                svc,
                "primary_site",
            )
        for name in svc.clusters:
            cluster = topo.cluster(name)
            if svc.tenant not in cluster.tenants:
                yield ctx.finding(
                    target,
                    f"{svc.name} runs on cluster {name}, which has no namespaces for tenant {svc.tenant}",
                    svc,
                    "clusters",
                )
            seg = service_segment(topo, svc.name, cluster.site)
            if seg is not None and not any(seg in segs for segs in workers[name]):
                yield ctx.finding(
                    target,
                    f"{svc.name} runs on cluster {name}, but no worker of it has an interface in {seg}",
                    svc,
                    "clusters",
                )
        for name in svc.hosts:
            host = topo.host(name)
            seg = service_segment(topo, svc.name, host.site)
            if seg is not None and all(i.segment != seg for i in host.interfaces):
                yield ctx.finding(
                    target, f"{svc.name} runs on host {name}, which has no interface in {seg}", svc, "hosts"
                )


@rule("STR-11", title="Inter-site links join two sites", severity=ERROR, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str11(ctx: Context) -> Iterator[Finding]:
    """Each link's two ends are at two different sites, with distinct addresses inside the
    link's network."""
    for link in ctx.topology.links:
        target = f"link:{link.name}"
        a, b = link.ends
        if a.site == b.site:
            yield ctx.finding(target, f"both ends of link {link.name} are at {a.site}", b, "site")
        if a.address == b.address:
            yield ctx.finding(target, f"both ends of link {link.name} have address {a.address}", b, "address")
        for end in link.ends:
            why = _usable(end.address, link.network)
            if why:
                yield ctx.finding(
                    target, f"the {end.site} end of link {link.name}, {end.address}, is {why}", end, "address"
                )


@rule("STR-12", title="Deploy order lists every site once", severity=ERROR, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str12(ctx: Context) -> Iterator[Finding]:
    """``environment.deploy_order`` lists every site exactly once: deploy goes one site at a
    time and must not skip or repeat one."""
    env = ctx.topology.environment
    order = Counter(env.deploy_order)
    sites = {s.name for s in ctx.topology.sites}
    repeated = sorted(n for n, c in order.items() if c > 1)
    missing = sorted(sites - set(order))
    problems = ([f"repeats {', '.join(repeated)}"] if repeated else []) + (
        [f"misses {', '.join(missing)}"] if missing else []
    )
    if problems:
        yield ctx.finding(
            f"environment:{env.name}", f"deploy_order {' and '.join(problems)}", env, "deploy_order"
        )


@rule("STR-13", title="Every flow allows something", severity=Severity.WARNING, source=SOURCE, waivable=False,
    edition="dualdc topology model (this repository)",
    verified=True,
)
def str13(ctx: Context) -> Iterator[Finding]:
    """Every flow resolves to at least one connection (a warning).

    A flow between two places that never meet (a service's ends at different sites without
    ``cross_site``, a host end without an interface the other end can use) allows nothing
    and is most likely a mistake.
    """
    topo = ctx.topology
    for flow in topo.flows:
        if not conns_of(topo, flow):
            yield ctx.finding(
                f"flow:{flow.name}",
                f"flow {flow.name} from {flow.source} to {flow.destination} "
                "allows no connection (different sites without cross_site: true?)",
                flow,
            )


@rule(
    "WV-01",
    title="Waivers are current",
    severity=ERROR,
    source="전자금융감독규정 시행세칙 제2조의2",
    params={
        "max_days": Param(366, "Longest a waiver may run from today: exceptions are re-approved yearly.")
    },
    waivable=False,
    edition="시행세칙 2025-02-05",
    verified=False,
)
def wv01(ctx: Context) -> Iterator[Finding]:
    """Waivers are current: not expired, and expiring within ``max_days`` of today.

    An expired waiver waives nothing (its finding fails again) and is itself an error:
    renew it with a new approval or remove it. A waiver running further than ``max_days``
    ahead is an error too: exceptions are approved for a limited time.
    """
    today = ctx.topology.today()
    limit = ctx.get_int("max_days")
    for waiver in ctx.topology.waivers:
        target = waiver_target(waiver)
        if waiver.expires < today:
            yield ctx.finding(
                target,
                f"the waiver of {waiver.rule} for {waiver.target} (approval {waiver.approval}) "
                f"expired on {waiver.expires}",
                waiver,
                "expires",
            )
        elif (waiver.expires - today).days > limit:
            yield ctx.finding(
                target,
                f"the waiver of {waiver.rule} for {waiver.target} runs until {waiver.expires}, "
                f"more than {limit} days from {today}",
                waiver,
                "expires",
            )


@rule(
    "WV-02",
    title="Every waiver matches a finding",
    severity=Severity.WARNING,
    source="전자금융감독규정 시행세칙 제2조의2",
    waivable=False,
    edition="시행세칙 2025-02-05",
    verified=False,
)
def wv02(ctx: Context) -> Iterator[Finding]:
    """Every current waiver matches a finding (a warning).

    A waiver whose rule and target match no finding is stale (the problem was fixed) or
    mistyped (and waives nothing); remove or correct it. Computed by the engine after every
    other rule has run.
    """
    return iter(())


@rule(
    "WV-03",
    title="The evaluation date is the real date",
    severity=Severity.WARNING,
    source="전자금융감독규정 시행세칙 제2조의2 (a waiver holds until its expiry, judged by the calendar)",
    waivable=False,
    edition="시행세칙 2025-02-05",
    verified=False,
)
def wv03(ctx: Context) -> Iterator[Finding]:
    """``environment.today`` is not set (a warning when it is).

    Waivers and exemptions expire on a date; a topology that sets its own ``today`` could
    keep an expired waiver alive. The date is therefore honoured only under the test suite
    (``DUALDC_ALLOW_PINNED_TODAY=1``) and otherwise ignored; either way its presence is
    reported, so a pinned date never passes unnoticed.
    """
    env = ctx.topology.environment
    if env.today is None:
        return
    if today_pin_allowed():
        how = f"waivers are judged as of {env.today} (DUALDC_ALLOW_PINNED_TODAY=1: tests only)"
    else:
        how = f"it is ignored: waivers are judged against the real date, {dt.date.today()}"
    yield ctx.finding(f"environment:{env.name}", f"environment.today is set to {env.today}; {how}", env,
                      "today")
