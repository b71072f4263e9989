"""What the replication stack declares: CloudNativePG replica clusters and Velero backups.

- **Databases.** Every service with a ``database`` and replication ``cnpg`` gets a
  CloudNativePG ``Cluster`` at its primary site and a replica ``Cluster`` at the peer site
  (``spec.replica.enabled: true``), bootstrapped with ``pg_basebackup`` from, and then
  streaming from, the primary as an external cluster. The primary is reached over the
  replication segment: each side exposes its read-write service as a LoadBalancer at an
  address of its site's replication segment (see :func:`replication_addresses`). The
  replica connects as a dedicated replication role whose password is a Pulumi config
  secret; the primary's ``pg_hba`` admits that role only from the networks of the declared
  flows that carry tcp/5432 from the peer site into its replication segment.
- **Backups (BK-01).** Every namespace of a service with replication ``velero``, and every
  namespace of a tier-1 service, is backed up by a Velero ``Schedule`` on each cluster it
  runs on that is not at the backup's target site, to a ``BackupStorageLocation`` at the
  target site (``backup.target_site``, else the peer site). The object store address is the
  destination of a declared flow from a segment the cluster's nodes sit in to a backup
  host (or backup-zone service) at the target site. The schedule runs at least as often
  as the RPO asks (see :func:`backup_interval_minutes`); backups live ``retention_days``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from dualdc.flows import Connection, connections, replication_segments
from dualdc.labels import COMMON_LABELS, LABEL_DATABASE, LABEL_ROLE, LABEL_SERVICE, LABEL_SITE, LABEL_TENANT
from dualdc.model import HostRole, Protocol, ReplicationKind, Service, Topology, zone_traits
from dualdc.stacks.baseline import database_resources
from dualdc.stacks.errors import StackError
from dualdc.stacks.naming import (
    DatabasePlacement,
    database_external_name,
    database_name,
    database_placement,
    replicated_databases,
    service_namespace,
)
from dualdc.stacks.segmentation import POSTGRES_PORT

#: The PostgreSQL role the replica connects as (login + replication only).
REPLICATION_ROLE = "dr_replicator"
#: Velero cannot meaningfully back up more often than this; a lower RPO is met by replication.
MIN_BACKUP_INTERVAL = 5
#: Intervals a cron expression repeats evenly at, in minutes.
CRON_INTERVALS = (5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440)
#: Retention of a tier-1 namespace's backups when the model declares no backup.
DEFAULT_RETENTION_DAYS = 30
#: Annotation asking the load balancer for a given address (MetalLB); the stack config may override.
LOAD_BALANCER_IP_ANNOTATION = "metallb.universe.tf/loadBalancerIPs"
VELERO_NAMESPACE = "velero"


def backup_interval_minutes(rpo_minutes: int) -> int:
    """The longest cron-friendly interval that still meets the RPO (at least 5 minutes)."""
    fitting = [i for i in CRON_INTERVALS if i <= max(rpo_minutes, MIN_BACKUP_INTERVAL)]
    return fitting[-1]


def cron(interval: int) -> str:
    """A cron expression running every ``interval`` minutes (one of :data:`CRON_INTERVALS`)."""
    if interval < 60:
        return f"*/{interval} * * * *"
    if interval < 1440:
        return f"0 */{interval // 60} * * *"
    return "0 0 * * *"


def ttl(days: int) -> str:
    return f"{days * 24}h0m0s"


# --------------------------------------------------------------------------- databases


@dataclass(frozen=True)
class ReplicationEndpoint:
    """Where one side of a replicated database listens on the replication segment."""

    site: str
    cluster: str
    segment: str
    address: ipaddress.IPv4Address


def replication_addresses(topology: Topology) -> dict[tuple[str, str], ReplicationEndpoint]:
    """The LoadBalancer address of each (service, site) database on its replication segment.

    Addresses are taken from the top of the segment downwards, skipping the gateway, every
    host interface address and every link end in it, and given to the replicated databases
    at that segment in name order.
    """
    taken = {i.address for h in topology.hosts for i in h.interfaces}
    taken |= {s.gateway for s in topology.segments}
    taken |= {end.address for link in topology.links for end in link.ends}
    per_segment: dict[str, list[tuple[str, str, str]]] = {}
    problems = []
    for svc in replicated_databases(topology):
        placement = database_placement(topology, svc)
        for site, cluster in ((placement.primary_site, placement.primary_cluster),
                              (placement.replica_site, placement.replica_cluster)):
            segs = replication_segments(topology, site, svc.tenant)
            if not segs:
                problems.append(f"service {svc.name!r}: site {site!r} has no replication segment for tenant "
                                f"{svc.tenant!r} (nor a shared one) to replicate its database over")
                continue
            per_segment.setdefault(segs[0], []).append((svc.name, site, cluster))
    if problems:
        raise StackError(problems)
    found: dict[tuple[str, str], ReplicationEndpoint] = {}
    for seg_name, users in sorted(per_segment.items()):
        cidr = topology.segment(seg_name).cidr
        free = (a for a in reversed(list(cidr.hosts())) if a not in taken)
        for service, site, cluster in sorted(users):
            address = next(free, None)
            if address is None:
                raise StackError([f"segment {seg_name!r} has no free address left for the replication "
                                  f"endpoint of service {service!r}"])
            found[(service, site)] = ReplicationEndpoint(site, cluster, seg_name, address)
    return found


def replication_sources(topology: Topology, segment: str, from_site: str) -> list[ipaddress.IPv4Network]:
    """Networks of declared flows carrying tcp/5432 from ``from_site`` into ``segment``."""
    nets: set[ipaddress.IPv4Network] = set()
    for conn in connections(topology):
        dst = conn.destination
        if dst.segment != segment or conn.source.site != from_site:
            continue
        if conn.flow.protocol is not Protocol.TCP or (conn.ports and POSTGRES_PORT not in conn.ports):
            continue
        nets.update(conn.source.networks)
    return sorted(nets)


@dataclass(frozen=True)
class DatabaseSide:
    """One CloudNativePG Cluster of a replicated database."""

    service: str
    role: str
    """``primary`` or ``replica``."""
    cluster: str
    site: str
    namespace: str
    name: str
    spec: dict[str, Any]
    labels: dict[str, str]
    password_secret: str


def database_sides(topology: Topology, service: Service, registry: str,
                   endpoints: dict[tuple[str, str], ReplicationEndpoint],
                   lb_annotation: str = LOAD_BALANCER_IP_ANNOTATION) -> list[DatabaseSide]:
    """The primary and the replica Cluster of one replicated database."""
    db = service.database
    assert db is not None
    placement: DatabasePlacement = database_placement(topology, service)
    name = database_name(service)
    secret = f"{name}-{REPLICATION_ROLE.replace('_', '-')}"
    namespace = service_namespace(service)
    problems = []
    hba: dict[str, list[str]] = {}
    for site, peer in ((placement.primary_site, placement.replica_site),
                       (placement.replica_site, placement.primary_site)):
        endpoint = endpoints[(service.name, site)]
        sources = replication_sources(topology, endpoint.segment, peer)
        if not sources:
            problems.append(
                f"service {service.name!r}: no declared flow carries tcp/{POSTGRES_PORT} from site {peer!r} "
                f"into replication segment {endpoint.segment!r}; declare one so the replica can stream")
        hba[site] = [f"hostssl replication {REPLICATION_ROLE} {net} scram-sha-256" for net in sources]
    if problems:
        raise StackError(problems)

    def external(site: str) -> dict[str, Any]:
        endpoint = endpoints[(service.name, site)]
        return {
            "name": database_external_name(service, site),
            "connectionParameters": {
                "host": str(endpoint.address),
                "port": str(POSTGRES_PORT),
                "user": REPLICATION_ROLE,
                "dbname": "postgres",
                "sslmode": "require",
            },
            "password": {"name": secret, "key": "password"},
        }

    sides = []
    for role, site, cluster, peer in (
            ("primary", placement.primary_site, placement.primary_cluster, placement.replica_site),
            ("replica", placement.replica_site, placement.replica_cluster, placement.primary_site)):
        labels = {**COMMON_LABELS, LABEL_SERVICE: service.name, LABEL_TENANT: service.tenant,
                  LABEL_SITE: site, LABEL_ROLE: role}
        endpoint = endpoints[(service.name, site)]
        spec: dict[str, Any] = {
            "instances": db.instances,
            "imageName": f"{registry}/cloudnative-pg/postgresql:{db.version}",
            "inheritedMetadata": {"labels": {LABEL_DATABASE: service.name, LABEL_TENANT: service.tenant}},
            "storage": {"size": f"{db.storage_gib}Gi"},
            "resources": database_resources(service),
            "postgresql": {"pg_hba": hba[site]},
            "managed": {
                "roles": [{
                    "name": REPLICATION_ROLE, "ensure": "present", "login": True, "replication": True,
                    "passwordSecret": {"name": secret},
                }],
                "services": {"additional": [{
                    "selectorType": "rw",
                    "serviceTemplate": {
                        "metadata": {"name": f"{name}-dr",
                                     "annotations": {lb_annotation: str(endpoint.address)}},
                        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
                    },
                }]},
            },
            "externalClusters": [external(peer)],
        }
        if role == "primary":
            spec["bootstrap"] = {"initdb": {"database": "app", "owner": "app"}}
        else:
            source = database_external_name(service, peer)
            spec["bootstrap"] = {"pg_basebackup": {"source": source}}
            spec["replica"] = {"enabled": True, "source": source}
        sides.append(DatabaseSide(service.name, role, cluster, site, namespace, name, spec, labels, secret))
    return sides


# --------------------------------------------------------------------------- backups


@dataclass(frozen=True)
class BackupTarget:
    """An object store at a site, as one cluster reaches it."""

    cluster: str
    site: str
    url: str
    flow: str


def backup_target(topology: Topology, cluster: str, site: str) -> BackupTarget:
    """The object store at ``site`` that ``cluster``'s nodes may reach by a declared flow."""
    node_segments = {i.segment for h in topology.cluster_hosts(cluster) for i in h.interfaces}
    by_source = _tcp_by_source_segment(topology)
    candidates = []
    # the choice below is by (address, port, flow): the order the connections come in does not matter
    for conn in (c for seg in sorted(node_segments) for c in by_source.get(seg, ())):
        dst = conn.destination
        if dst.site != site:
            continue
        for host in _store_hosts(topology, dst.ref, dst.host, dst.segment, site):
            if not conn.ports:
                continue
            for iface in topology.host(host).interfaces:
                if iface.segment == dst.segment:
                    candidates.append((conn.flow.name, str(iface.address), min(conn.ports)))
    if not candidates:
        raise StackError([
            f"BK-01: no declared flow lets the nodes of cluster {cluster!r} reach a backup host at site "
            f"{site!r} (a tcp flow from one of their segments to a host with role 'backup'); declare one"])
    flow, address, port = min(candidates, key=lambda c: (ipaddress.IPv4Address(c[1]), c[2], c[0]))
    return BackupTarget(cluster, site, f"https://{address}:{port}", flow)


def _tcp_by_source_segment(topology: Topology) -> dict[str, list[Connection]]:
    """The tcp connections by the segment of their source, indexed once per topology (every
    cluster asks; scanning every connection for each made the render quadratic)."""
    found: dict[str, list[Connection]] | None = topology.cache.get("dr.tcp_by_source_segment")
    if found is None:
        found = {}
        for conn in connections(topology):
            if conn.source.segment is not None and conn.flow.protocol is Protocol.TCP:
                found.setdefault(conn.source.segment, []).append(conn)
        topology.cache["dr.tcp_by_source_segment"] = found
    return found


def _backup_hosts_at(topology: Topology, site: str) -> list[str]:
    """The backup hosts of a site, indexed once per topology (not a scan of the site per flow)."""
    found: dict[str, list[str]] | None = topology.cache.get("dr.backup_hosts")
    if found is None:
        found = {}
        for host in topology.hosts:
            if host.role is HostRole.BACKUP:
                found.setdefault(host.site, []).append(host.name)
        topology.cache["dr.backup_hosts"] = found
    return found.get(site, [])


def _store_hosts(topology: Topology, ref: str, host: str | None, segment: str | None, site: str) -> list[str]:
    """Backup hosts a flow destination lands on: the host itself, a backup service's hosts, or a
    segment's backup hosts."""
    if segment is None:
        return []
    kind, _, name = ref.partition(":")
    if host is not None:
        candidates = [host]
    elif kind == "service":
        svc = topology.service(name)
        if not zone_traits(svc.zone).backup:
            return []
        candidates = list(svc.hosts)
    else:
        candidates = _backup_hosts_at(topology, site)
    return sorted(h for h in candidates
                  if topology.host(h).role is HostRole.BACKUP and topology.host(h).site == site
                  and any(i.segment == segment for i in topology.host(h).interfaces))


@dataclass(frozen=True)
class NamespaceBackup:
    """One Velero Schedule: a namespace on a cluster, backed up to another site."""

    cluster: str
    site: str
    namespace: str
    target_site: str
    interval: int
    retention_days: int
    services: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.namespace}-to-{self.target_site}"


def backup_services(topology: Topology) -> list[Service]:
    """Services on clusters whose namespaces Velero backs up: replication ``velero`` (required),
    or tier 1 or a declared ``backup`` (where a declared flow lets the backup land), by name."""
    return sorted((s for s in topology.services
                   if s.clusters and (ReplicationKind.VELERO in s.replication or s.tier == 1 or s.backup)),
                  key=lambda s: s.name)


def runs_at(topology: Topology, service: Service, site: str) -> bool:
    """Whether the service itself runs at a site (on a cluster or a host)."""
    return site in topology.service_sites(service)


@dataclass(frozen=True)
class BackupPlan:
    """The Velero Schedules of an environment, and what could not be backed up and why."""

    backups: list[NamespaceBackup]
    skipped: list[str]


def namespace_backups(topology: Topology) -> BackupPlan:
    """Every Velero Schedule, merged per (cluster, namespace, target site).

    A service with replication ``velero`` must be backed up: no declared flow to a backup
    host at the target site is an error (BK-01). A tier-1 service, or one with a ``backup``
    but no ``velero`` replication, is backed up where such a flow exists; where none does it
    is skipped (and listed), and a tier-1 one must then run at the other site itself or have
    a replica database there (DR-01), else it is an error.
    """
    merged: dict[tuple[str, str, str], list[Service]] = {}
    for svc in backup_services(topology):
        for cluster in sorted(svc.clusters):
            site = topology.cluster(cluster).site
            target = topology.backup_site(svc) or topology.dr_peer(site)
            if target == site:
                continue  # these pods are backed up from the other site's cluster (BK-01)
            merged.setdefault((cluster, service_namespace(svc), target), []).append(svc)
    found, skipped, problems = [], [], []
    replicas = {s.name for s in replicated_databases(topology)}
    for (cluster, namespace, target), services in sorted(merged.items()):
        required = [s.name for s in services if ReplicationKind.VELERO in s.replication]
        try:
            backup_target(topology, cluster, target)
        except StackError as exc:
            if required:
                problems += exc.problems
                continue
            names = ", ".join(s.name for s in services)
            skipped.append(f"namespace {namespace} on {cluster} ({names}) is not backed up to {target}: no "
                           "declared flow lets the cluster's nodes reach a backup host there")
            for svc in services:
                if svc.tier == 1 and not runs_at(topology, svc, target) and svc.name not in replicas:
                    problems.append(
                        f"DR-01: tier-1 service {svc.name!r} has no replica at {target!r} and its "
                        f"namespace on {cluster!r} cannot be backed up there; declare a flow to a "
                        "backup host or run it at both sites")
            continue
        rpo = min(s.rpo_minutes for s in services)
        retention = max(s.backup.retention_days if s.backup else DEFAULT_RETENTION_DAYS for s in services)
        found.append(NamespaceBackup(cluster, topology.cluster(cluster).site, namespace, target,
                                     backup_interval_minutes(rpo), retention,
                                     tuple(s.name for s in services)))
    if problems:
        raise StackError(problems)
    return BackupPlan(found, skipped)


def schedule_spec(backup: NamespaceBackup) -> dict[str, Any]:
    return {
        "schedule": cron(backup.interval),
        "useOwnerReferencesInBackup": False,
        "template": {
            "includedNamespaces": [backup.namespace],
            "storageLocation": storage_location_name(backup.target_site),
            "ttl": ttl(backup.retention_days),
            "defaultVolumesToFsBackup": True,
            "snapshotVolumes": False,
        },
    }


def storage_location_name(site: str) -> str:
    return f"dualdc-{site}"


def credentials_secret_name(site: str) -> str:
    return f"dualdc-backup-{site}"


def storage_location_spec(target: BackupTarget, bucket: str, prefix: str) -> dict[str, Any]:
    return {
        "provider": "aws",
        "objectStorage": {"bucket": bucket, "prefix": prefix},
        "config": {"region": target.site, "s3ForcePathStyle": "true", "s3Url": target.url},
        "credential": {"name": credentials_secret_name(target.site), "key": "cloud"},
        "accessMode": "ReadWrite",
        "default": False,
    }
