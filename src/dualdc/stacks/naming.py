"""Names and placement shared by both stacks, derived only from model names.

Every Kubernetes object name and every Pulumi logical name is built from model names
(cluster, tenant, zone, service, flow, site), never from a position in a YAML list, so
reordering the topology files never renames, and so never replaces, a resource.
"""

from __future__ import annotations

from dataclasses import dataclass

from dualdc.model import Cluster, DatabasePlatform, ReplicationKind, Service, Topology, Zone
from dualdc.stacks.errors import StackError


@dataclass(frozen=True, order=True)
class NamespaceRef:
    """One namespace on one cluster, and what the model says it holds."""

    cluster: str
    name: str
    tenant: str
    zone: Zone
    service: str | None
    """The service owning the namespace (``own_namespace: true``), else None."""


def tenant_namespace(tenant: str, zone: Zone) -> str:
    """The shared namespace of a tenant in a zone, e.g. ``kjbank-internal``."""
    return f"{tenant}-{zone.value}"


def service_namespace(service: Service) -> str:
    """The namespace a service's pods run in on every cluster it runs on."""
    return service.name if service.own_namespace else tenant_namespace(service.tenant, service.zone)


def cluster_services(topology: Topology, cluster: str) -> list[Service]:
    """Services that run on a cluster, by name (indexed once per topology, not a scan per cluster)."""
    by_cluster: dict[str, list[Service]] | None = topology.cache.get("naming.cluster_services")
    if by_cluster is None:
        by_cluster = {}
        for svc in sorted(topology.services, key=lambda s: s.name):
            for name in dict.fromkeys(svc.clusters):
                by_cluster.setdefault(name, []).append(svc)
        topology.cache["naming.cluster_services"] = by_cluster
    return list(by_cluster.get(cluster, []))


def cluster_namespaces(topology: Topology, cluster: Cluster) -> list[NamespaceRef]:
    """Every namespace the site stack declares on a cluster, by name.

    One per tenant of the cluster in the cluster's zone, one per (tenant, zone) of a service
    placed on it, and one per service with ``own_namespace: true``.
    """
    found: dict[str, NamespaceRef] = {}
    problems: list[str] = []

    def add(ref: NamespaceRef) -> None:
        known = found.get(ref.name)
        if known is None:
            found[ref.name] = ref
        elif known != ref:
            problems.append(
                f"cluster {cluster.name!r}: namespace {ref.name!r} is claimed twice "
                f"({_owner(known)} and {_owner(ref)}); rename the service")

    for tenant in cluster.tenants:
        add(NamespaceRef(cluster.name, tenant_namespace(tenant, cluster.zone), tenant, cluster.zone, None))
    for svc in cluster_services(topology, cluster.name):
        if svc.own_namespace:
            add(NamespaceRef(cluster.name, svc.name, svc.tenant, svc.zone, svc.name))
        else:
            shared = tenant_namespace(svc.tenant, svc.zone)
            add(NamespaceRef(cluster.name, shared, svc.tenant, svc.zone, None))
    if problems:
        raise StackError(problems)
    return [found[name] for name in sorted(found)]


def _owner(ref: NamespaceRef) -> str:
    return f"service {ref.service!r}" if ref.service else f"tenant {ref.tenant!r} in zone {ref.zone.value!r}"


def database_name(service: Service) -> str:
    """The CloudNativePG Cluster name of a service's database, e.g. ``kj-core-banking-db``."""
    return f"{service.name}-db"


def database_external_name(service: Service, site: str) -> str:
    """The externalClusters entry naming a service's database at one site."""
    return f"{service.name}-db-{site}"


@dataclass(frozen=True)
class DatabasePlacement:
    """Where a replicated database runs: the primary and the replica cluster."""

    service: str
    primary_cluster: str
    primary_site: str
    replica_cluster: str
    replica_site: str


def replicated_databases(topology: Topology) -> list[Service]:
    """Services with a database replicated by CloudNativePG, by name (found once per topology)."""
    found: list[Service] | None = topology.cache.get("naming.replicated_databases")
    if found is None:
        found = topology.cache["naming.replicated_databases"] = sorted(
            (s for s in topology.services if s.database is not None and ReplicationKind.CNPG in s.replication
             and s.database.platform is DatabasePlatform.CNPG),
            key=lambda s: s.name)
    return list(found)


def database_placement(topology: Topology, service: Service) -> DatabasePlacement:
    """The primary cluster (at the primary site) and the replica cluster (at the peer site).

    Where a service runs on several clusters at one site, the first by name is chosen, so
    the choice does not depend on the order of the YAML.
    """
    primary_site = service.primary_site
    try:
        replica_site = topology.dr_peer(primary_site)
    except KeyError:
        raise StackError([f"service {service.name!r}: site {primary_site!r} has no peer site for a "
                          "replica database"]) from None

    def pick(site: str, role: str) -> str:
        names = sorted(c for c in service.clusters if topology.cluster(c).site == site)
        if not names:
            raise StackError([f"service {service.name!r}: replication 'cnpg' needs a cluster at the "
                              f"{role} site {site!r}; add one to its clusters"])
        return names[0]

    return DatabasePlacement(service.name, pick(primary_site, "primary"), primary_site,
                             pick(replica_site, "replica"), replica_site)


def databases_on(topology: Topology, cluster: str) -> list[tuple[Service, str]]:
    """(service, 'primary' or 'replica') for every replicated database placed on a cluster."""
    found = []
    for svc in replicated_databases(topology):
        placement = database_placement(topology, svc)
        if placement.primary_cluster == cluster:
            found.append((svc, "primary"))
        elif placement.replica_cluster == cluster:
            found.append((svc, "replica"))
    return found
