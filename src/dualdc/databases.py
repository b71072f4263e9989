"""What the ``postgresql`` and ``backup`` roles need to know, derived from the topology.

A host database (``database.platform: hosts``) becomes, on each of its hosts,
``dualdc_postgresql``; each backup host holding pgBackRest repositories gets
``dualdc_pgbackrest``. Addresses are those of the declared flows (the same connections the
hosts' firewalls open), so a standby streams from the primary exactly where the firewall
lets it, and ``pg_hba.conf`` has one line per allowed endpoint, never a wildcard network.

Secrets are not here: the replication passwords and the certificates' keys reach the roles
from the environment or Ansible Vault (see docs/roles.md).
"""

from __future__ import annotations

from typing import Any

from dualdc.flows import Connection, connections, inbound_to_host
from dualdc.model import Host, Protocol, Service, Topology

POSTGRES_PORT = 5432
PGBACKREST_PORT = 8432
#: ``topology.cache`` key: service -> {"primary": host, "fenced": [hosts]} from the DR state file
#: (``.state/<env>/primaries.json``, applied by :func:`dualdc.ops.drstate.apply`).
PRIMARIES_CACHE = "dr_primaries"


def model_placements(svc: Service) -> list[tuple[str, str, str]]:
    """(site, host, role) as the model declares them, primary first."""
    assert svc.database is not None
    return svc.database.placements()


def current_primary(topology: Topology, svc: Service) -> str:
    """The host that is primary now: the DR state file's, else the model's."""
    assert svc.database is not None and svc.database.primary_host is not None
    moved = topology.cache.get(PRIMARIES_CACHE, {}).get(svc.name)
    return str(moved["primary"]) if moved else svc.database.primary_host


def fenced_hosts(topology: Topology, svc: Service) -> list[str]:
    """Old primaries a DR command fenced and that no command has rebuilt as standbys yet."""
    moved = topology.cache.get(PRIMARIES_CACHE, {}).get(svc.name)
    return list(moved["fenced"]) if moved else []


def current_placements(topology: Topology, svc: Service) -> list[tuple[str, str, str]]:
    """(site, host, role) as the pair runs now (after a switchover or failover), primary first."""
    primary = current_primary(topology, svc)
    found = [(site, host, "primary" if host == primary else "standby")
             for site, host, _ in model_placements(svc)]
    return sorted(found, key=lambda p: p[2] != "primary")


def replication_user(service: Service) -> str:
    """The PostgreSQL role a database's standbys replicate as (one per database)."""
    return "repl_" + service.name.replace("-", "_")


def slot_name(host: str) -> str:
    """The physical replication slot a standby uses on its primary."""
    return "standby_" + host.replace("-", "_")


def _placements(topology: Topology) -> dict[str, Service]:
    """host name -> the host database it serves (computed once per topology: hostvars run per host)."""
    cache = topology.cache
    if "database_hosts" not in cache:
        found: dict[str, Service] = {}
        for svc in topology.host_databases():
            assert svc.database is not None
            for _, host, _ in svc.database.placements():
                found.setdefault(host, svc)
        cache["database_hosts"] = found
    return cache["database_hosts"]  # type: ignore[no-any-return]


def _repositories(topology: Topology) -> dict[str, list[Service]]:
    """backup host name -> the host databases whose pgBackRest repository it holds (once per topology)."""
    cache = topology.cache
    if "database_repositories" not in cache:
        found: dict[str, list[Service]] = {}
        for svc in topology.host_databases():
            repo = topology.repository_host(svc)
            if repo is not None:
                found.setdefault(repo.name, []).append(svc)
        cache["database_repositories"] = found
    return cache["database_repositories"]  # type: ignore[no-any-return]


def database_of(topology: Topology, host: str) -> Service | None:
    """The host database a host serves, if any (DB-01 makes it at most one)."""
    return _placements(topology).get(host)


def _carries(conn: Connection, port: int) -> bool:
    return conn.flow.protocol is Protocol.TCP and (not conn.ports or port in conn.ports)


def _host_pairs(topology: Topology) -> dict[tuple[str, str], list[Connection]]:
    """(source host, destination host) -> their tcp connections in flow order (once per topology)."""
    cache = topology.cache
    if "database_host_pairs" not in cache:
        found: dict[tuple[str, str], list[Connection]] = {}
        for conn in connections(topology):
            if (conn.flow.protocol is Protocol.TCP and conn.source.host is not None
                    and conn.destination.host is not None):
                found.setdefault((conn.source.host, conn.destination.host), []).append(conn)
        cache["database_host_pairs"] = found
    return cache["database_host_pairs"]  # type: ignore[no-any-return]


def flow_address(topology: Topology, source: str, destination: str, port: int) -> str | None:
    """The address ``destination`` is reached on from ``source`` by a declared tcp flow on ``port``."""
    for conn in _host_pairs(topology).get((source, destination), []):
        if _carries(conn, port):
            return str(conn.destination.networks[0].network_address)
    return None


def _hba(topology: Topology, host: Host, svc: Service, members: set[str]) -> list[dict[str, str]]:
    """One pg_hba line per allowed endpoint of the declared tcp/5432 flows into this host.

    A source host of the same database gets a replication line for the database's
    replication user; a host of another database gets none (pg_hba rejects it); any other
    declared source (a segment, a service, another host) a client line. A flow from
    everywhere (a /0 network) never becomes a line.
    """
    user = replication_user(svc)
    others = {h for h, owner in _placements(topology).items() if owner is not svc}
    lines: dict[tuple[str, str, str], dict[str, str]] = {}
    for conn in inbound_to_host(topology, host):
        if not _carries(conn, POSTGRES_PORT) or conn.destination.host not in (None, host.name):
            continue
        source = conn.source.host
        if source is not None and source in others:
            continue
        for net in conn.source.networks:
            if net.prefixlen == 0:
                continue
            key = ("replication", user, str(net)) if source in members else ("all", "all", str(net))
            lines.setdefault(key, {"database": key[0], "user": key[1], "address": key[2],
                                   "flow": conn.flow.name})
    return [lines[k] for k in sorted(lines)]


def postgresql_vars(topology: Topology, host: Host) -> dict[str, Any] | None:
    """``dualdc_postgresql`` of a db host serving a host database, else None."""
    svc = database_of(topology, host.name)
    if svc is None:
        return None
    db = svc.database
    assert db is not None
    placements = current_placements(topology, svc)
    primary = current_primary(topology, svc)
    primary_site = topology.host(primary).site
    role = "primary" if host.name == primary else "standby"
    members = {h for _, h, _ in placements}
    repo = topology.repository_host(svc)
    return {
        "service": svc.name,
        "tenant": svc.tenant,
        "stanza": svc.name,
        "version": db.version,
        "port": POSTGRES_PORT,
        "role": role,
        # fenced: an old primary a DR command stopped; the role leaves it stopped until
        # dr.failback rebuilds it as a standby (a converge never starts it writable).
        "fenced": host.name in fenced_hosts(topology, svc),
        "replication_mode": db.replication_mode.value,
        "replication_user": replication_user(svc),
        "rpo_minutes": svc.rpo_minutes,
        "primary": {
            "name": primary,
            "address": (None if role == "primary"
                        else flow_address(topology, host.name, primary, POSTGRES_PORT)),
        },
        "slot": None if role == "primary" else slot_name(host.name),
        # the other hosts of the database (the start guard asks them for their timeline)
        "peers": [{"name": h, "address": flow_address(topology, host.name, h, POSTGRES_PORT)}
                  for _, h, _ in placements if h != host.name],
        "standbys": [{"name": h, "site": site, "slot": slot_name(h)}
                     for site, h, r in placements if r == "standby"],
        "peer_standbys": [h for site, h, r in placements if r == "standby" and site != primary_site],
        "hba": _hba(topology, host, svc, members - {host.name}),
        "repository": None if repo is None else {
            "name": repo.name,
            "address": flow_address(topology, host.name, repo.name, PGBACKREST_PORT),
        },
    }


def pgbackrest_vars(topology: Topology, host: Host) -> dict[str, Any] | None:
    """``dualdc_pgbackrest`` of a backup host holding pgBackRest repositories, else None."""
    stanzas = []
    for svc in _repositories(topology).get(host.name, []):
        db, backup = svc.database, svc.backup
        assert db is not None and backup is not None
        stanzas.append({
            "name": svc.name,
            "tenant": svc.tenant,
            "version": db.version,
            "pg_hosts": [{"name": h, "role": r,
                          "address": flow_address(topology, host.name, h, PGBACKREST_PORT)}
                         for _, h, r in current_placements(topology, svc)],
            "retention_days": backup.retention_days,
            "full_every_hours": backup.full_every_hours,
            "diff_every_hours": backup.diff_every_hours,
            "incr_every_hours": backup.incr_every_hours,
        })
    return {"stanzas": stanzas} if stanzas else None
