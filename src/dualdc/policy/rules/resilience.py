"""Disaster recovery, capacity and backup rules: DR-01, DR-02, DR-03, CAP-01, BK-01."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator
from decimal import Decimal

import networkx as nx

from dualdc.model import DatabasePlatform, DrMode, HostRole, ReplicationKind, Service, Severity
from dualdc.policy.engine import Context, Finding, Param, rule
from dualdc.policy.rules.common import check_lists

ERROR = Severity.ERROR


def _tiered(ctx: Context) -> list[Service]:
    return [s for s in ctx.topology.services if s.tier <= ctx.get_int("tier")]


@rule(
    "DR-01",
    title="Every tier-1 service has a replica at the other site, with RTO within 3 hours",
    severity=ERROR,
    source="전자금융감독규정 제23조 (비상대책 등의 수립·운용)",
    params={
        "tier": Param(1, "Services of this tier or more critical (a lower number) are checked."),
        "max_rto_minutes": Param(180, "Longest acceptable recovery time objective."),
    },
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 11; Art. 12",
)
def dr01(ctx: Context) -> Iterator[Finding]:
    """Every tier-1 service has a replica at the other site, with an RTO of at most 3 hours.

    For each service of tier ``tier`` or lower:

    - it runs at its primary site's peer too (on a cluster or host there): a replica;
    - its DR mode is ``active-active`` or ``active-standby``: ``backup-restore`` is a
      restore, not a replica;
    - if it has a database, the database is replicated: a ``cnpg`` database by a replica
      cluster (``cnpg`` in ``replication``); a ``hosts`` database by a standby declared at
      the primary site's DR peer (``Site.dr_peer``) that really sits there, on a host of
      the service's tenant;
    - its ``rto_minutes`` is at most ``max_rto_minutes``.
    """
    topo = ctx.topology
    limit = ctx.get_int("max_rto_minutes")
    for svc in _tiered(ctx):
        target = f"service:{svc.name}"
        sites = topo.service_sites(svc)
        try:
            peer: str | None = topo.dr_peer(svc.primary_site)
        except KeyError:
            peer = None
        if peer is not None and peer not in sites:
            where = ", ".join(sites) or "nowhere"
            yield ctx.finding(
                target,
                f"tier-{svc.tier} service {svc.name} runs only at {where}: it needs a replica "
                f"at {peer} (add a cluster or host there)",
                svc,
                "clusters" if svc.clusters else "hosts",
            )
        if svc.dr_mode is DrMode.BACKUP_RESTORE:
            yield ctx.finding(
                target,
                f"tier-{svc.tier} service {svc.name} is recovered by backup-restore; it needs "
                "a running replica (active-active or active-standby)",
                svc,
                "dr_mode",
            )
        db = svc.database
        if db is not None and db.platform is DatabasePlatform.HOSTS:
            yield from _dr_standbys(ctx, svc, peer)
        elif db is not None and ReplicationKind.CNPG not in svc.replication:
            yield ctx.finding(
                target,
                f"the database of tier-{svc.tier} service {svc.name} is not replicated to the "
                "other site (add 'cnpg' to replication)",
                svc,
                "replication",
            )
        if svc.rto_minutes > limit:
            yield ctx.finding(
                target,
                f"tier-{svc.tier} service {svc.name} has an RTO of {svc.rto_minutes} min; "
                f"at most {limit} min is allowed",
                svc,
                "rto_minutes",
            )


def _dr_standbys(ctx: Context, svc: Service, peer: str | None) -> Iterator[Finding]:
    """DR-01 for a host database: a standby of the right tenant at the DR peer."""
    topo = ctx.topology
    db = svc.database
    assert db is not None
    target = f"service:{svc.name}"
    if peer is None:
        return
    declared = db.hosts.get(peer)
    if declared is None or not declared.standbys:
        yield ctx.finding(target, (
            f"the database of tier-{svc.tier} service {svc.name} has no standby at {peer}, the DR peer "
            f"of its primary site {svc.primary_site} (name one under database.hosts.{peer}.standbys)"),
            svc, "database.hosts")
        return
    for name in declared.standbys:
        host = topo.host(name)
        if host.site != peer:
            own = " (the primary's own site)" if host.site == svc.primary_site else ""
            yield ctx.finding(target, (
                f"the DR standby {name} of {svc.name}'s database sits at {host.site}{own}, not at the DR "
                f"peer {peer}"), svc, f"database.hosts.{peer}")
        elif host.tenant != svc.tenant:
            yield ctx.finding(target, (
                f"the DR standby {name} of {svc.name}'s database is a host of {host.tenant}; "
                f"{svc.tenant}'s data replicates only to {svc.tenant}'s hosts"),
                svc, f"database.hosts.{peer}")


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius 6371.0088 km)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(h)))


@rule(
    "DR-02",
    title="The two sites are at least 40 km apart",
    severity=Severity.ADVISORY,
    source="전자금융감독규정 제23조 (distance not fixed by law)",
    params={"min_distance_km": Param(40.0, "Shortest acceptable great-circle distance between sites.")},
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 12",
)
def dr02(ctx: Context) -> Iterator[Finding]:
    """The two sites are at least 40 km apart (advisory: the law fixes no distance).

    The great-circle distance between every pair of sites, from their latitude and
    longitude, is at least ``min_distance_km``, so one regional event (flood, power, fire)
    does not take both. The finding's target is the first site of the pair by name.
    """
    limit = ctx.get_float("min_distance_km")
    for a, b in itertools.combinations(sorted(ctx.topology.sites, key=lambda s: s.name), 2):
        km = distance_km(a.latitude, a.longitude, b.latitude, b.longitude)
        if km < limit:
            yield ctx.finding(
                f"site:{a.name}",
                f"{a.name} and {b.name} are {km:.1f} km apart; at least {limit:g} km is advised",
                a,
                "latitude",
            )


@rule(
    "DR-03",
    title="Replication between the sites runs over at least two independent links",
    severity=ERROR,
    source="전자금융감독규정 제23조 (redundancy)",
    params={
        "min_links": Param(2, "Fewest independent links between every pair of sites."),
        "distinct_carriers": Param(True, "Independent links use different carriers."),
        "distinct_paths": Param(True, "Independent links follow different physical paths."),
    },
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 11",
)
def dr03(ctx: Context) -> Iterator[Finding]:
    """Replication between the sites runs over at least two independent links.

    For every pair of sites, the links joining them are counted; links are independent
    when no two share a carrier (``distinct_carriers``) or a physical path
    (``distinct_paths``). With both, the count is a maximum matching between carriers and
    paths (networkx): two links by one carrier over different paths count once. Carriers
    and paths are compared as the model keeps them: stripped, single-spaced and case-folded
    (``Carrier-A `` is ``carrier-a``). The finding's target is the first site of the pair by
    name.
    """
    topo = ctx.topology
    need = ctx.get_int("min_links")
    carriers, paths = ctx.get_bool("distinct_carriers"), ctx.get_bool("distinct_paths")
    for a, b in itertools.combinations(sorted(topo.sites, key=lambda s: s.name), 2):
        links = [lk for lk in topo.links if {e.site for e in lk.ends} == {a.name, b.name}]
        if carriers and paths:
            bipartite = nx.Graph()
            for lk in links:
                bipartite.add_edge(("carrier", lk.carrier), ("path", lk.path))
            count = len(nx.max_weight_matching(bipartite, maxcardinality=True))
        elif carriers:
            count = len({lk.carrier for lk in links})
        elif paths:
            count = len({lk.path for lk in links})
        else:
            count = len(links)
        if count < need:
            names = ", ".join(f"{lk.name} ({lk.carrier}, {lk.path})" for lk in links) or "none"
            yield ctx.finding(
                f"site:{a.name}",
                f"{a.name} and {b.name} are joined by {count} independent link(s); "
                f"at least {need} are needed (links: {names})",
                a,
            )


def _exact(value: float | int) -> Decimal:
    """A model number as an exact decimal (0.1 stays 0.1: the boundary is judged exactly)."""
    return Decimal(str(value))


@rule(
    "CAP-01",
    title="Either site alone can carry every tier-1 service of both sites",
    severity=ERROR,
    source="전자금융감독규정 제23조",
    params={
        "tier": Param(1, "Services of this tier or more critical are counted."),
        "max_utilisation": Param(0.8, "Share of a site's capacity that may be planned for (0 to 1)."),
        "capacity_roles": Param(
            "k8s_worker", "Roles of a cluster's hosts that run its workloads (comma-separated)."
        ),
    },
    param_check=lambda p: (
        check_lists(capacity_roles="role")(p)
        or (
            {}
            if 0 < float(p["max_utilisation"]) <= 1
            else {"max_utilisation": f"expected a share in (0, 1], found {p['max_utilisation']}"}
        )
    ),
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 11",
)
def cap01(ctx: Context) -> Iterator[Finding]:
    """Either site alone can carry every tier-1 service of both sites (CPU and memory).

    A site's capacity is the CPU and memory of the hosts there that can run a counted
    service: the hosts of the ``capacity_roles`` (Kubernetes workers) of the clusters the
    services run on, and the hosts the services declare. A DMZ cluster's workers, database
    hosts or workers of a cluster no counted service uses are not capacity. Times
    ``max_utilisation``. The demand is the sum of the ``cpu`` and ``memory_gib`` of every
    service of tier ``tier`` or lower, wherever its primary site is: after losing the other
    site, this one runs them all. Sums are exact decimals: demand equal to capacity passes.
    """
    topo = ctx.topology
    roles = {HostRole(r) for r in ctx.get_list("capacity_roles")}
    share = _exact(ctx.get_float("max_utilisation"))
    services = _tiered(ctx)
    cpu_need = sum((_exact(s.cpu) for s in services), Decimal(0))
    mem_need = sum((_exact(s.memory_gib) for s in services), Decimal(0))
    clusters = {c for s in services for c in s.clusters}
    declared = {h for s in services for h in s.hosts}
    for site in topo.sites:
        hosts = [h for h in topo.hosts_at(site.name)
                 if h.name in declared or (h.cluster in clusters and h.role in roles)]
        cpu = sum(h.cpu for h in hosts) * share
        mem = sum(h.memory_gib for h in hosts) * share
        short = []
        if cpu_need > cpu:
            short.append(f"{cpu_need:f} CPU cores against {cpu.normalize():f} usable")
        if mem_need > mem:
            short.append(f"{mem_need:f} GiB of memory against {mem.normalize():f} usable")
        if short:
            yield ctx.finding(
                f"site:{site.name}",
                f"{site.name} alone cannot carry the {len(services)} tier-"
                f"{ctx.get_int('tier')} services of both sites: {' and '.join(short)} "
                f"({share:.0%} of the {len(hosts)} hosts there that can run them)",
                site,
            )


@rule(
    "BK-01",
    title="Backups land at the other site",
    severity=ERROR,
    source="전자금융감독규정 제23조; DORA Art. 12",
    params={
        "tier": Param(1, "Stateful services of this tier or more critical must be backed up."),
        "min_retention_days": Param(30, "Shortest acceptable backup retention."),
    },
    edition="감독규정 2025-02-05; DORA 2022-12-14 (Regulation (EU) 2022/2554)",
    verified=False,
    dora="Art. 12",
)
def bk01(ctx: Context) -> Iterator[Finding]:
    """Backups land at the other site.

    Every service with a ``backup`` sends it to a site other than its primary site
    (``target_site``, else the primary site's DR peer), and that site has a ``backup`` host
    to receive it; a host database's pgBackRest repository (``repository_host``, else the
    first backup host there) is a ``backup`` host at that site; backups are kept at least
    ``min_retention_days``. Every stateful service (one with a database or a replication
    mechanism) of tier ``tier`` or lower has a backup at all: replication copies mistakes
    too, only a backup undoes them.
    """
    topo = ctx.topology
    keep = ctx.get_int("min_retention_days")
    receivers = {h.site for h in topo.hosts if h.role is HostRole.BACKUP}
    for svc in topo.services:
        target = f"service:{svc.name}"
        backup = svc.backup
        if backup is None:
            if svc.tier <= ctx.get_int("tier") and (svc.database is not None or svc.replication):
                yield ctx.finding(
                    target,
                    f"tier-{svc.tier} service {svc.name} holds state but declares no backup to "
                    "the other site",
                    svc,
                )
            continue
        site = topo.backup_site(svc)
        if site is None:
            yield ctx.finding(target, (
                f"the backups of {svc.name} name no target_site and its primary site "
                f"{svc.primary_site} names no dr_peer"), backup)
        elif site == svc.primary_site:
            yield ctx.finding(
                target,
                f"the backups of {svc.name} land at its primary site {svc.primary_site}; "
                "send them to the other site",
                backup,
                "target_site",
            )
        elif site not in receivers:
            yield ctx.finding(
                target,
                f"the backups of {svc.name} go to {site}, which has no backup "
                "host to receive them",
                backup,
                "target_site",
            )
        elif svc.database is not None and svc.database.platform is DatabasePlatform.HOSTS:
            repo = topo.repository_host(svc)
            if repo is not None and (repo.site != site or repo.role is not HostRole.BACKUP):
                yield ctx.finding(target, (
                    f"the pgBackRest repository of {svc.name} is on {repo.name}, a {repo.role.value} "
                    f"host at {repo.site}; it belongs on a backup host at {site}, the backup target"),
                    backup, "repository_host")
        if backup.retention_days < keep:
            yield ctx.finding(
                target,
                f"the backups of {svc.name} are kept {backup.retention_days} days; at least "
                f"{keep} are required",
                backup,
                "retention_days",
            )


@rule(
    "DR-04",
    title="Every tier-1 service has a passing DR drill and a passing restore test within 12 months",
    severity=Severity.ADVISORY,
    source="DORA Art. 11(6) (yearly switchover test); 전자금융감독규정 제23조 (비상대책, 모의훈련)",
    params={
        "max_age_days": Param(365, "How old the newest passing drill and restore test may be."),
        "enforce": Param(False, "Report a miss as an error (a release gate) rather than an advisory."),
    },
    edition="감독규정 2025-02-05; DORA 2022-12-14 (Regulation (EU) 2022/2554)",
    verified=False,
    dora="Art. 11(6)",
)
def dr04(ctx: Context) -> Iterator[Finding]:
    """Every tier-1 service has a passing DR drill and a passing restore test within 12 months.

    Tier-1 services whose database runs on hosts (the pairs dualdc switches over) are judged.
    The rule reads the evidence records that ``invoke dr.drill`` and ``invoke dr.restore-test``
    write (``evidence/<env>/dr/*.json``, see docs/dr.md): for every tier-1 service, the newest
    passing drill record that covers it and the newest passing restore-test record that covers
    it must be at most ``max_age_days`` old. Advisory by default (records live outside the
    model, so a fresh checkout has none); ``enforce: true`` makes a miss an error. A record
    that cannot be read is reported on the environment.
    """
    from dualdc.drevidence import read_all  # noqa: PLC0415 (only this rule reads the folder)

    topo = ctx.topology
    severity = Severity.ERROR if ctx.get_bool("enforce") else Severity.ADVISORY
    limit = ctx.get_int("max_age_days")
    records, problems = read_all(topo.environment.name)
    for problem in problems:
        yield ctx.finding(f"environment:{topo.environment.name}", problem, topo.environment,
                          severity=severity)
    now = dt.datetime.now(dt.UTC)
    kinds = (("drill", "DR drill (invoke dr.drill)"),
             ("restore-test", "restore test (invoke dr.restore-test)"))
    for svc in topo.host_databases():
        if svc.tier != 1:
            continue
        for kind, what in kinds:
            passing = [r for r in records if r.kind == kind and r.passed and svc.name in r.services]
            newest = max((r.finished for r in passing), default=None)
            target = f"service:{svc.name}"
            if newest is None:
                yield ctx.finding(target, f"no passing {what} on record for tier-1 service {svc.name}",
                                  svc, "tier", severity=severity)
            elif (now - newest).days > limit:
                yield ctx.finding(target, f"the last passing {what} of {svc.name} was {newest:%Y-%m-%d}, "
                                  f"more than {limit} days ago", svc, "tier", severity=severity)
