"""Rules of the databases that run on bare-metal hosts: DB-01, DB-02, DB-03.

A service's ``database`` with ``platform: hosts`` runs PostgreSQL on ``db`` hosts: a
primary at the service's primary site (with an optional local standby) and standbys at
the primary site's DR peer, streaming over the tenant's own replication segments. DR-01
judges the standby at the DR peer; these rules judge the rest of the placement, the flows
that carry the replication and the replication mode against the RPO.
"""

from __future__ import annotations

from collections.abc import Iterator

from dualdc.model import (
    SYNCHRONOUS_MODES,
    DatabasePlatform,
    Flow,
    HostRole,
    Protocol,
    Service,
    Severity,
    Topology,
    zone_traits,
)
from dualdc.policy.engine import Context, Finding, Param, rule

ERROR = Severity.ERROR
POSTGRES_PORT = 5432
SOURCE = "전자금융감독규정 제23조 (비상대책 등의 수립·운용); 제18조 (망분리, tenant separation)"


def _peer(topo: Topology, site: str) -> str | None:
    try:
        return topo.dr_peer(site)
    except KeyError:
        return None


def _claims(topo: Topology) -> dict[str, list[str]]:
    """host name -> the host databases (service names) that name it, by service name."""
    claims: dict[str, list[str]] = {}
    for svc in topo.host_databases():
        assert svc.database is not None
        for _, host, _ in svc.database.placements():
            names = claims.setdefault(host, [])
            if svc.name not in names:
                names.append(svc.name)
    return claims


@rule(
    "DB-01",
    title="A host database runs on its own tenant's db hosts at its primary site and DR peer",
    severity=ERROR,
    source=SOURCE,
    waivable=False,
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 12",
    pci_dss="1.3",
)
def db01(ctx: Context) -> Iterator[Finding]:
    """A host database (``platform: hosts``) is placed where it can run and stays its tenant's.

    - its primary is declared under the service's primary site, hosts are declared only
      under the primary site and its DR peer, and each sits at the site it is declared under;
    - every one of its hosts has the role ``db``;
    - its hosts at the primary site belong to the service's tenant (the DR peer's standbys
      are DR-01's);
    - no host is claimed by two databases.
    """
    topo = ctx.topology
    claims = _claims(topo)
    for svc in topo.host_databases():
        db = svc.database
        assert db is not None
        target = f"service:{svc.name}"
        peer = _peer(topo, svc.primary_site)
        for site, at in db.hosts.items():
            field = f"database.hosts.{site}"
            if at.primary is not None and site != svc.primary_site:
                yield ctx.finding(target, (
                    f"the primary of {svc.name}'s database ({at.primary}) is declared at {site}; it "
                    f"belongs at the service's primary site {svc.primary_site}"), svc, field)
            if site not in (svc.primary_site, peer):
                yield ctx.finding(target, (
                    f"{svc.name}'s database names hosts at {site}, which is neither its primary site "
                    f"{svc.primary_site} nor that site's DR peer {peer or '(none)'}"), svc, field)
                continue
            for name in ([at.primary] if at.primary else []) + at.standbys:
                host = topo.host(name)
                if host.site != site and site == svc.primary_site:
                    yield ctx.finding(target, (
                        f"{svc.name}'s database declares {name} at {site}, but the host sits at "
                        f"{host.site}"), svc, field)
                if host.tenant != svc.tenant and site == svc.primary_site:
                    yield ctx.finding(target, (
                        f"{svc.name}'s database runs on {name}, a host of tenant {host.tenant}; a "
                        f"database of {svc.tenant} runs only on {svc.tenant}'s hosts"), svc, field)
        for _, name, _ in db.placements():
            host = topo.host(name)
            if host.role is not HostRole.DB:
                yield ctx.finding(target, (
                    f"{svc.name}'s database runs on {name}, a {host.role.value} host; database hosts "
                    "have the role db"), svc, "database.hosts")
            others = [o for o in claims.get(name, []) if o != svc.name]
            if others:
                yield ctx.finding(target, (
                    f"{name} is claimed by the databases of {svc.name} and {', '.join(others)}; a db "
                    "host serves one database"), svc, "database.hosts")


def _covers(topo: Topology, ref: str, host: str) -> bool:
    """Whether a flow end stands for ``host`` (named, its segment, or a service on it)."""
    kind, _, name = ref.partition(":")
    if kind == "host":
        return name == host
    if kind == "segment":
        return any(i.segment == name for i in topo.host(host).interfaces)
    if kind == "service":
        return host in topo.service(name).hosts
    return False


def _carries_postgres(flow: Flow) -> bool:
    return flow.protocol is Protocol.TCP and (flow.ports == "any" or POSTGRES_PORT in flow.ports)


@rule(
    "DB-02",
    title="Database replication runs only between one database's own hosts, over its tenant's "
          "replication segments",
    severity=ERROR,
    source=SOURCE,
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 12",
    pci_dss="1.3",
)
def db02(ctx: Context) -> Iterator[Finding]:
    """The declared flows carry replication (tcp/5432) only within one host database.

    For every host database:

    - each of its hosts has an interface in a ``replication`` segment of the service's
      tenant at its site (replication never shares a segment with the other bank);
    - every standby has a declared flow carrying tcp/5432 to its primary (else the firewall
      stops the stream);
    - no declared flow carries tcp/5432 between one of its hosts and a host of another
      database, and none between its hosts runs over a segment that is not one of the
      tenant's replication segments.

    Every finding targets the database's service.
    """
    topo = ctx.topology
    databases = topo.host_databases()
    owner: dict[str, Service] = {}
    for svc in databases:
        assert svc.database is not None
        for _, host, _ in svc.database.placements():
            owner.setdefault(host, svc)
    pg_flows = [f for f in topo.flows if _carries_postgres(f)]
    for svc in databases:
        db = svc.database
        assert db is not None
        target = f"service:{svc.name}"
        hosts = [h for _, h, _ in db.placements()]
        for name in hosts:
            replication = [i.segment for i in topo.host(name).interfaces
                           for seg in [topo.segment(i.segment)]
                           if zone_traits(seg.zone).replication and seg.tenant == svc.tenant]
            if not replication:
                yield ctx.finding(target, (
                    f"{name} has no interface in a replication segment of {svc.tenant}; {svc.name}'s "
                    "database replicates only over its own tenant's replication segments"),
                    svc, "database.hosts")
        primary = db.primary_host
        for _, standby, role in db.placements():
            if role != "standby" or primary is None:
                continue
            if not any(_covers(topo, f.source, standby) and _covers(topo, f.destination, primary)
                       for f in pg_flows):
                yield ctx.finding(target, (
                    f"no declared flow carries tcp/{POSTGRES_PORT} from the standby {standby} to the "
                    f"primary {primary} of {svc.name}'s database; declare one so it can stream"),
                    svc, "database.hosts")
        for flow in pg_flows:
            sources = [h for h in owner if _covers(topo, flow.source, h)]
            destinations = [h for h in owner if _covers(topo, flow.destination, h)]
            if not sources or not destinations:
                continue
            ours_src = [h for h in sources if owner[h] is svc]
            ours_dst = [h for h in destinations if owner[h] is svc]
            if not ours_src and not ours_dst:
                continue
            foreign = sorted({owner[h].name for h in sources + destinations} - {svc.name})
            if foreign:
                yield ctx.finding(target, (
                    f"flow {flow.name} carries tcp/{POSTGRES_PORT} between hosts of {svc.name}'s "
                    f"database and of {', '.join(foreign)}'s; replication stays within one database"),
                    flow)
                continue
            for end in (flow.source, flow.destination):
                kind, _, name = end.partition(":")
                if kind == "segment":
                    seg = topo.segment(name)
                    if not zone_traits(seg.zone).replication or seg.tenant != svc.tenant:
                        yield ctx.finding(target, (
                            f"flow {flow.name} carries {svc.name}'s replication over segment {name} "
                            f"({seg.tenant}, {seg.zone.value}); use {svc.tenant}'s replication segments"),
                            flow)


@rule(
    "DB-03",
    title="An RPO of zero needs synchronous replication",
    severity=ERROR,
    source="전자금융감독규정 제23조 (비상대책 등의 수립·운용)",
    params={
        "max_async_rpo_minutes": Param(
            0, "A database whose service's RPO is at most this many minutes must replicate synchronously."
        ),
    },
    edition="감독규정 2025-02-05",
    verified=False,
    dora="Art. 12",
)
def db03(ctx: Context) -> Iterator[Finding]:
    """A database whose service has an RPO of ``max_async_rpo_minutes`` or less (0: none
    lost) replicates synchronously: a host database with ``replication_mode``
    ``remote_write`` or ``remote_apply``. Asynchronous streaming, and CloudNativePG's
    replica clusters (asynchronous across sites), can lose the last commits.
    """
    limit = ctx.get_int("max_async_rpo_minutes")
    for svc in ctx.topology.services:
        db = svc.database
        if db is None or svc.rpo_minutes > limit:
            continue
        target = f"service:{svc.name}"
        if db.platform is DatabasePlatform.CNPG:
            yield ctx.finding(target, (
                f"{svc.name} has an RPO of {svc.rpo_minutes} min but its cnpg replica cluster replicates "
                "asynchronously; run it on hosts with replication_mode remote_write or remote_apply"),
                svc, "rpo_minutes")
        elif db.replication_mode not in SYNCHRONOUS_MODES:
            yield ctx.finding(target, (
                f"{svc.name} has an RPO of {svc.rpo_minutes} min but its database replicates "
                f"{db.replication_mode.value}; use remote_write or remote_apply"),
                svc, "database.replication_mode")
