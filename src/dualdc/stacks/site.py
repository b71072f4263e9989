"""Components of the site stack: one cluster's baseline, one namespace's baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import pulumi
import pulumi_kubernetes as k8s

from dualdc.labels import COMMON_LABELS
from dualdc.model import Topology
from dualdc.stacks.baseline import NamespaceBaseline, namespace_baseline
from dualdc.stacks.naming import cluster_namespaces
from dualdc.stacks.segmentation import PolicySpec, cluster_policies


def provider_name(cluster: str) -> str:
    """The logical name of a cluster's Kubernetes provider (the same in every stack)."""
    return f"k8s-{cluster}"


def kubernetes_provider(cluster: str, context: str, kubeconfig: str | None,
                        parent: pulumi.Resource | None = None) -> k8s.Provider:
    """A provider bound to one cluster's kubeconfig context."""
    return k8s.Provider(
        provider_name(cluster),
        context=context,
        kubeconfig=kubeconfig,
        opts=pulumi.ResourceOptions(parent=parent),
    )


@dataclass(frozen=True)
class TenantNamespaceArgs:
    """One namespace: its baseline and its NetworkPolicies."""

    baseline: NamespaceBaseline
    policies: list[PolicySpec]


class TenantNamespace(pulumi.ComponentResource):
    """A namespace with Pod Security labels, quota, limits, RBAC and NetworkPolicies."""

    TYPE = "dualdc:site:TenantNamespace"

    def __init__(self, name: str, args: TenantNamespaceArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        base = args.baseline
        namespace = base.ref.name
        self.namespace = k8s.core.v1.Namespace(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace, labels=base.labels,
                                                annotations=base.annotations or None),
            opts=pulumi.ResourceOptions(parent=self),
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])

        def meta(object_name: str, labels: dict[str, str] | None = None,
                 annotations: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=namespace,
                                              labels=labels or dict(COMMON_LABELS),
                                              annotations=annotations or None)

        k8s.core.v1.ResourceQuota(
            f"{name}/quota",
            metadata=meta("dualdc-quota"),
            spec=k8s.core.v1.ResourceQuotaSpecArgs(hard=base.quota),
            opts=in_ns,
        )
        k8s.core.v1.LimitRange(
            f"{name}/limits",
            metadata=meta("dualdc-limits"),
            spec=cast("k8s.core.v1.LimitRangeSpecArgsDict", {"limits": base.limits}),
            opts=in_ns,
        )
        for binding, role, groups in base.role_bindings:
            k8s.rbac.v1.RoleBinding(
                f"{name}/rolebinding/{binding}",
                metadata=meta(binding),
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                                 name=role),
                subjects=[k8s.rbac.v1.SubjectArgs(api_group="rbac.authorization.k8s.io", kind="Group", name=g)
                          for g in groups],
                opts=in_ns,
            )
        for policy in args.policies:
            k8s.networking.v1.NetworkPolicy(
                f"{name}/networkpolicy/{policy.name}",
                metadata=meta(policy.name, policy.labels, policy.annotations),
                spec=cast("k8s.networking.v1.NetworkPolicySpecArgsDict", policy.spec()),
                opts=in_ns,
            )
        self.register_outputs({"namespace": namespace})


def plan_cluster(topology: Topology, cluster: str, cnpg_operator_namespace: str) -> list[TenantNamespaceArgs]:
    """Everything one cluster's namespaces get, computed before any resource is declared."""
    found = topology.cluster(cluster)
    policies = cluster_policies(topology, found, cnpg_operator_namespace)
    return [TenantNamespaceArgs(namespace_baseline(topology, ref), policies[ref.name])
            for ref in cluster_namespaces(topology, found)]


@dataclass(frozen=True)
class ClusterBaselineArgs:
    """One cluster of a site and what its namespaces get (see :func:`plan_cluster`)."""

    cluster: str
    kube_context: str
    namespaces: list[TenantNamespaceArgs]
    kubeconfig: str | None = None


class ClusterBaseline(pulumi.ComponentResource):
    """Every namespace of one cluster, through a provider bound to that cluster."""

    TYPE = "dualdc:site:ClusterBaseline"

    def __init__(self, name: str, args: ClusterBaselineArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self.provider = kubernetes_provider(args.cluster, args.kube_context, args.kubeconfig, parent=self)
        self.namespaces: dict[str, TenantNamespace] = {}
        for ns in args.namespaces:
            ref = ns.baseline.ref
            self.namespaces[ref.name] = TenantNamespace(
                f"{args.cluster}/{ref.name}", ns,
                opts=pulumi.ResourceOptions(parent=self, providers=[self.provider]),
            )
        self.register_outputs({"namespaces": sorted(self.namespaces)})
