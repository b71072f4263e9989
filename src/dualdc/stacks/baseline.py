"""The namespace baseline of the site stack: labels, Pod Security, quota, limits, RBAC.

Everything is derived from the model; the defaults below are the documented policy
(docs/stacks.md) where the model says nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dualdc.labels import (
    ANNOTATION_PSA_EXCEPTION,
    COMMON_LABELS,
    LABEL_CLUSTER,
    LABEL_ENVIRONMENT,
    LABEL_SERVICE,
    LABEL_SITE,
    LABEL_TENANT,
    LABEL_ZONE,
    NAMESPACE_NAME_LABEL,
)
from dualdc.model import Service, Topology, Waiver
from dualdc.stacks.naming import NamespaceRef, cluster_services, databases_on, service_namespace

#: Quota = what the model's services placed in the namespace need x this (rolling updates, surge).
QUOTA_HEADROOM = 1.25
#: Limits may burst to this multiple of the requests quota.
LIMIT_FACTOR = 2
#: Quota of a namespace with no service placed in it (tools, jobs of the tenant).
DEFAULT_CPU_MILLI = 2000
DEFAULT_MEMORY_GIB = 4
#: Pods per requested core, and at least this many pods.
PODS_PER_CORE = 10
MIN_PODS = 20
#: Container defaults applied by the LimitRange when a pod declares none.
CONTAINER_DEFAULT_REQUEST = {"cpu": "100m", "memory": "128Mi"}
CONTAINER_DEFAULT_LIMIT = {"cpu": "1", "memory": "1Gi"}
#: The share of a service's declared CPU and memory its database instances get, split among them.
DATABASE_SHARE = 0.5

#: The Pod Security Admission level every namespace enforces, and what a waiver relaxes it to.
PSA_LEVEL = "restricted"
PSA_WAIVED_LEVEL = "baseline"
#: Waivers of this rule id relax Pod Security for ``namespace:<name>`` or ``service:<name>``.
PSA_RULE = "PSA-01"


def cpu_quantity(milli: int) -> str:
    """Kubernetes CPU quantity: whole cores as ``"4"``, else millicores ``"2500m"``."""
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def memory_quantity(mib: int) -> str:
    """Kubernetes memory quantity in Gi where whole, else Mi."""
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(round(value, 6) / step) * step)


@dataclass(frozen=True)
class NamespaceBaseline:
    """What the site stack declares for one namespace, apart from its NetworkPolicies."""

    ref: NamespaceRef
    labels: dict[str, str]
    annotations: dict[str, str]
    quota: dict[str, str]
    limits: list[dict[str, Any]]
    role_bindings: list[tuple[str, str, list[str]]]
    """(binding name, ClusterRole, directory groups)."""
    services: list[str]


def namespace_services(topology: Topology, ref: NamespaceRef) -> list[Service]:
    """The services whose pods run in this namespace on its cluster, by name."""
    return [s for s in cluster_services(topology, ref.cluster) if service_namespace(s) == ref.name]


def pod_security_waiver(topology: Topology, ref: NamespaceRef) -> Waiver | None:
    """An unexpired PSA-01 waiver for this namespace (or its service), if any."""
    targets = {f"namespace:{ref.name}"} | {f"service:{s.name}" for s in namespace_services(topology, ref)}
    today = topology.today()
    active = [w for w in topology.waivers
              if w.rule == PSA_RULE and w.target in targets and w.expires >= today]
    return min(active, key=lambda w: (w.target, w.expires)) if active else None


def namespace_baseline(topology: Topology, ref: NamespaceRef) -> NamespaceBaseline:
    cluster = topology.cluster(ref.cluster)
    version = cluster.kubernetes_version or topology.environment.kubernetes_version
    labels = {
        **COMMON_LABELS,
        NAMESPACE_NAME_LABEL: ref.name,
        LABEL_TENANT: ref.tenant,
        LABEL_ZONE: ref.zone.value,
        LABEL_SITE: cluster.site,
        LABEL_CLUSTER: cluster.name,
        LABEL_ENVIRONMENT: topology.environment.name,
    }
    if ref.service:
        labels[LABEL_SERVICE] = ref.service
    annotations: dict[str, str] = {}
    waiver = pod_security_waiver(topology, ref)
    enforce = PSA_WAIVED_LEVEL if waiver else PSA_LEVEL
    for mode, level in (("enforce", enforce), ("audit", PSA_LEVEL), ("warn", PSA_LEVEL)):
        labels[f"pod-security.kubernetes.io/{mode}"] = level
        labels[f"pod-security.kubernetes.io/{mode}-version"] = f"v{version}"
    if waiver:
        annotations[ANNOTATION_PSA_EXCEPTION] = (
            f"{PSA_RULE} waived to '{PSA_WAIVED_LEVEL}' for {waiver.target}: {waiver.reason} "
            f"(approval {waiver.approval}, expires {waiver.expires.isoformat()}); "
            f"audit and warn stay '{PSA_LEVEL}'")

    services = namespace_services(topology, ref)
    databases = [(s, role) for s, role in databases_on(topology, ref.cluster)
                 if service_namespace(s) == ref.name]
    cpu_milli = _round_up(sum(s.cpu for s in services) * 1000 * QUOTA_HEADROOM, 100)
    memory_mib = _round_up(sum(s.memory_gib for s in services) * 1024 * QUOTA_HEADROOM, 1024)
    cpu_milli = max(cpu_milli, DEFAULT_CPU_MILLI)
    memory_mib = max(memory_mib, DEFAULT_MEMORY_GIB * 1024)
    storage_gib = 0
    claims = 0
    for svc, _role in databases:
        assert svc.database is not None
        storage_gib += svc.database.instances * (svc.database.storage_gib or 0)
        claims += svc.database.instances + 1
    quota = {
        "requests.cpu": cpu_quantity(cpu_milli),
        "requests.memory": memory_quantity(memory_mib),
        "limits.cpu": cpu_quantity(cpu_milli * LIMIT_FACTOR),
        "limits.memory": memory_quantity(memory_mib * LIMIT_FACTOR),
        "pods": str(max(MIN_PODS, PODS_PER_CORE * math.ceil(cpu_milli / 1000))),
        "persistentvolumeclaims": str(claims),
        "requests.storage": f"{math.ceil(storage_gib * QUOTA_HEADROOM)}Gi",
        "services.nodeports": "0",
    }
    limits: list[dict[str, Any]] = [{
        "type": "Container",
        "default": dict(CONTAINER_DEFAULT_LIMIT),
        "defaultRequest": dict(CONTAINER_DEFAULT_REQUEST),
    }]
    if databases:
        largest = max(s.database.storage_gib or 0 for s, _ in databases if s.database is not None)
        limits.append({"type": "PersistentVolumeClaim", "max": {"storage": f"{largest}Gi"}})

    tenant = topology.tenant(ref.tenant)
    bindings = []
    if tenant.admin_groups:
        bindings.append(("dualdc-admins", "admin", sorted(tenant.admin_groups)))
    if tenant.viewer_groups:
        bindings.append(("dualdc-viewers", "view", sorted(tenant.viewer_groups)))
    return NamespaceBaseline(ref, labels, annotations, quota, limits, bindings, [s.name for s in services])


def database_resources(service: Service) -> dict[str, dict[str, str]]:
    """Requests and limits of one database instance: its share of the service's CPU and memory."""
    assert service.database is not None
    instances = service.database.instances
    cpu = max(_round_up(service.cpu * 1000 * DATABASE_SHARE / instances, 100), 500)
    memory = max(_round_up(service.memory_gib * 1024 * DATABASE_SHARE / instances, 256), 1024)
    return {
        "requests": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)},
        "limits": {"cpu": cpu_quantity(cpu * LIMIT_FACTOR), "memory": memory_quantity(memory)},
    }
