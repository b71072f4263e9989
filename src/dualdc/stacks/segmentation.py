"""NetworkPolicies of one cluster, from the connections :mod:`dualdc.flows` expands.

Nothing here decides what a flow means: every allow rule comes from one
:class:`~dualdc.flows.Connection`. This module only says where each end of a connection
stands inside a cluster (a *placement*: a namespace and a pod selector) and, where an end
is outside the cluster, which networks stand for it (an ``ipBlock``).

Placements in a cluster at site S:

- ``service:X`` at S, for X running on the cluster: the pods labelled
  ``dualdc.jbfg.example/service=X`` in X's namespace;
- ``segment:G`` at S, for a replication segment: the instance pods of every replicated
  database on the cluster that uses G (their read-write service has its address on G, and
  they are what the DR link carries);
- other segments (host networks), hosts, institutions and the internet are never inside a
  cluster: segment flows are between hosts, and pods do not inherit them.

An end is (also) reached as an ``ipBlock`` of its networks when it is not only inside this
cluster: a segment or host, an institution, the internet (0.0.0.0/0 except private space,
every modelled network and every institution's networks), or a service that also runs
elsewhere at that site or at another site.

One NetworkPolicy per (flow, namespace, direction) carries the flow; ``default-deny``
isolates every namespace; ``platform-*`` policies carry what the platform itself needs
(DNS, and CloudNativePG's operator, instances and clients), documented in docs/stacks.md.
No connection between two different banks' tenants is ever turned into a policy: the
stack refuses the topology instead.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dualdc.flows import INTERNET, Connection, Endpoint, connections, replication_segments
from dualdc.labels import (
    ANNOTATION_PURPOSE,
    CNPG_CLUSTER_LABEL,
    COMMON_LABELS,
    LABEL_FLOW,
    LABEL_PLATFORM,
    LABEL_SERVICE,
    NAMESPACE_NAME_LABEL,
)
from dualdc.model import Cluster, HostRole, Protocol, TenantKind, Topology, zone_traits
from dualdc.stacks.errors import StackError
from dualdc.stacks.naming import cluster_namespaces, database_name, databases_on, service_namespace

#: Where cluster DNS runs (kube-system/kube-dns is the kubeadm and CoreDNS convention).
DNS_NAMESPACE = "kube-system"
DNS_POD_LABELS = {"k8s-app": "kube-dns"}
DNS_PORT = 53
#: The CloudNativePG operator's namespace (its default install); the site stack config may override.
CNPG_OPERATOR_NAMESPACE = "cnpg-system"
#: PostgreSQL and the CloudNativePG instance manager's status port.
POSTGRES_PORT = 5432
CNPG_STATUS_PORT = 8000
#: The Kubernetes API server's port on the control-plane hosts.
API_SERVER_PORT = 6443
#: Never reachable as "the internet": private, shared, loopback and link-local space.
NOT_INTERNET = tuple(ipaddress.IPv4Network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
))

PodLabels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, order=True)
class Placement:
    """Pods inside a cluster: a namespace and a label selector (empty: every pod in it)."""

    namespace: str
    pod_labels: PodLabels = ()


@dataclass
class PolicySpec:
    """One NetworkPolicy, as plain data."""

    namespace: str
    name: str
    pod_labels: PodLabels
    labels: dict[str, str]
    annotations: dict[str, str]
    ingress: list[dict[str, Any]] | None = None
    egress: list[dict[str, Any]] | None = None
    flow: str | None = None
    direction: str | None = None

    def spec(self) -> dict[str, Any]:
        """The NetworkPolicy ``spec``."""
        types = []
        body: dict[str, Any] = {"podSelector": selector(self.pod_labels)}
        if self.ingress is not None:
            types.append("Ingress")
            body["ingress"] = self.ingress
        if self.egress is not None:
            types.append("Egress")
            body["egress"] = self.egress
        body["policyTypes"] = types
        return body


def selector(pod_labels: PodLabels) -> dict[str, Any]:
    return {"matchLabels": dict(pod_labels)} if pod_labels else {}


def namespace_peer(namespace: str, pod_labels: PodLabels | dict[str, str] = ()) -> dict[str, Any]:
    labels = tuple(sorted(pod_labels.items())) if isinstance(pod_labels, dict) else pod_labels
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
            "podSelector": selector(labels)}


def ip_peers(networks: Iterable[ipaddress.IPv4Network], excluded: list[ipaddress.IPv4Network]) -> list[
        dict[str, Any]]:
    peers = []
    for net in sorted(set(networks)):
        block: dict[str, Any] = {"cidr": str(net)}
        inside = [e for e in excluded if e != net and e.subnet_of(net)]
        if inside:
            block["except"] = [str(e) for e in ipaddress.collapse_addresses(inside)]
        peers.append({"ipBlock": block})
    return peers


def ports(conn: Connection) -> list[dict[str, Any]]:
    proto = "UDP" if conn.flow.protocol is Protocol.UDP else "TCP"
    if not conn.ports:
        return [{"protocol": proto}]
    return [{"port": p, "protocol": proto} for p in sorted(set(conn.ports))]


def modelled_networks(topology: Topology) -> list[ipaddress.IPv4Network]:
    """Every network the model declares: segments, pod and service networks, DR links."""
    nets = [s.cidr for s in topology.segments]
    nets += [c.pod_cidr for c in topology.clusters] + [c.service_cidr for c in topology.clusters]
    nets += [link.network for link in topology.links]
    return nets


def internet_exceptions(topology: Topology) -> list[ipaddress.IPv4Network]:
    """What "the internet" never includes: private space, every modelled network and every
    outside institution's networks (those are reached over dedicated lines, not the internet).

    A value of the whole topology, computed once (every cluster's policies ask for it)."""
    found: list[ipaddress.IPv4Network] | None = topology.cache.get("segmentation.internet_exceptions")
    if found is None:
        nets = list(NOT_INTERNET) + modelled_networks(topology)
        nets += [net for inst in topology.institutions for net in inst.cidrs]
        found = topology.cache["segmentation.internet_exceptions"] = list(ipaddress.collapse_addresses(nets))
    return list(found)


def internet_peers(topology: Topology, networks: tuple[ipaddress.IPv4Network, ...]) -> list[dict[str, Any]]:
    """:func:`ip_peers` of the internet's networks less :func:`internet_exceptions`.

    The same for every connection to or from the internet, so collapsed once per topology;
    each call gets peers of its own (fresh dicts and lists), never shared ones."""
    cache: dict[tuple[ipaddress.IPv4Network, ...], list[dict[str, Any]]] = topology.cache.setdefault(
        "segmentation.internet_peers", {})
    found = cache.get(networks)
    if found is None:
        found = cache[networks] = ip_peers(networks, internet_exceptions(topology))
    return [{"ipBlock": {k: list(v) if isinstance(v, list) else v for k, v in peer["ipBlock"].items()}}
            for peer in found]


class ClusterSegmentation:
    """Where connection ends stand inside one cluster."""

    def __init__(self, topology: Topology, cluster: Cluster) -> None:
        self.topology = topology
        self.cluster = cluster
        self.namespaces = cluster_namespaces(topology, cluster)
        self.names = {ns.name for ns in self.namespaces}
        self.databases = databases_on(topology, cluster.name)

    def placements(self, end: Endpoint) -> list[Placement]:
        """Pods of this cluster that stand for a connection end."""
        if end.site != self.cluster.site or end.segment is None:
            return []
        kind, _, name = end.ref.partition(":")
        if kind == "service":
            svc = self.topology.service(name)
            if self.cluster.name not in svc.clusters:
                return []
            return [Placement(service_namespace(svc), ((LABEL_SERVICE, svc.name),))]
        if kind == "segment" and zone_traits(self.topology.segment(name).zone).replication:
            found = [Placement(service_namespace(svc), ((CNPG_CLUSTER_LABEL, database_name(svc)),))
                     for svc, _role in self.databases
                     if name in replication_segments(self.topology, self.cluster.site, svc.tenant)]
            return sorted(set(found))
        return []

    def outside(self, end: Endpoint) -> bool:
        """Whether an end is (also) somewhere outside this cluster, reached by address."""
        kind, _, name = end.ref.partition(":")
        if kind != "service":
            return True
        if end.site != self.cluster.site:
            return True
        svc = self.topology.service(name)
        if any(self.topology.host(h).site == end.site for h in svc.hosts):
            return True
        return any(c != self.cluster.name and self.topology.cluster(c).site == end.site for c in svc.clusters)


def _candidates(topology: Topology, cluster: Cluster) -> list[Connection]:
    """The connections an end of which may stand in this cluster, in :func:`connections` order.

    A superset of those :meth:`ClusterSegmentation.placements` places: an end naming a
    service of the cluster at the cluster's site, or a replication segment at its site. The
    index is built once per topology, so the clusters do not each scan every connection.
    """
    cache = topology.cache
    index: tuple[dict[str, list[int]], dict[str, list[int]]] | None = cache.get("segmentation.candidates")
    if index is None:
        by_cluster: dict[str, list[int]] = defaultdict(list)
        by_site: dict[str, list[int]] = defaultdict(list)
        for i, conn in enumerate(connections(topology)):
            for end in (conn.source, conn.destination):
                if end.site is None or end.segment is None:
                    continue
                kind, _, name = end.ref.partition(":")
                if kind == "service":
                    for c in topology.service(name).clusters:
                        if topology.cluster(c).site == end.site:
                            by_cluster[c].append(i)
                elif kind == "segment" and end.zone is not None and zone_traits(end.zone).replication:
                    by_site[end.site].append(i)
        index = cache["segmentation.candidates"] = (dict(by_cluster), dict(by_site))
    every = connections(topology)
    positions = set(index[0].get(cluster.name, ())) | set(index[1].get(cluster.site, ()))
    return [every[i] for i in sorted(positions)]


def _cross_bank(topology: Topology, conn: Connection) -> bool:
    a, b = conn.source.tenant, conn.destination.tenant
    if a is None or b is None or a == b:
        return False
    return topology.tenant(a).kind is TenantKind.BANK and topology.tenant(b).kind is TenantKind.BANK


def _peer_key(peer: dict[str, Any]) -> str:
    return json.dumps(peer, sort_keys=True)


def _suffix(pod_labels: PodLabels) -> str:
    return hashlib.sha256(json.dumps(pod_labels).encode()).hexdigest()[:8]


@dataclass
class _Group:
    pod_labels: PodLabels
    ports: list[dict[str, Any]]
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)


def cluster_policies(topology: Topology, cluster: Cluster,
                     cnpg_operator_namespace: str = CNPG_OPERATOR_NAMESPACE) -> dict[str, list[PolicySpec]]:
    """Every NetworkPolicy of a cluster, by namespace, each list sorted by name."""
    seg = ClusterSegmentation(topology, cluster)
    policies: dict[str, list[PolicySpec]] = {ns.name: [] for ns in seg.namespaces}
    for ns in seg.namespaces:
        policies[ns.name] += _baseline_policies(ns.name)

    groups: dict[tuple[str, str, str], dict[PodLabels, _Group]] = defaultdict(dict)
    purposes: dict[str, str] = {}
    refused: list[str] = []
    for conn in _candidates(topology, cluster):
        sources, destinations = seg.placements(conn.source), seg.placements(conn.destination)
        if not sources and not destinations:
            continue
        if _cross_bank(topology, conn):
            refused.append(
                f"flow {conn.flow.name!r} connects tenant {conn.source.tenant!r} with tenant "
                f"{conn.destination.tenant!r} on cluster {cluster.name!r}: the stacks never let one "
                "bank's workloads reach the other's (TEN-01); route it through a group service")
            continue
        purposes[conn.flow.name] = conn.flow.purpose
        rule_ports = ports(conn)
        for direction, here, there, other in (("egress", sources, destinations, conn.destination),
                                              ("ingress", destinations, sources, conn.source)):
            peers = [namespace_peer(p.namespace, p.pod_labels) for p in there]
            if seg.outside(other):
                peers += (internet_peers(topology, other.networks) if other.node == INTERNET
                          else ip_peers(other.networks, []))
            if not peers:
                continue
            for place in here:
                by_selector = groups[(conn.flow.name, place.namespace, direction)]
                group = by_selector.setdefault(place.pod_labels, _Group(place.pod_labels, rule_ports))
                for peer in peers:
                    group.peers[_peer_key(peer)] = peer
    if refused:
        raise StackError(refused)

    for (flow, namespace, direction), by_selector in sorted(groups.items()):
        several = len(by_selector) > 1
        for pod_labels, group in sorted(by_selector.items()):
            name = f"flow-{flow}-{direction}" + (f"-{_suffix(pod_labels)}" if several else "")
            peer_list = [group.peers[k] for k in sorted(group.peers)]
            rule = {"to" if direction == "egress" else "from": peer_list, "ports": group.ports}
            spec = PolicySpec(
                namespace, name, pod_labels,
                labels={**COMMON_LABELS, LABEL_FLOW: flow},
                annotations={ANNOTATION_PURPOSE: purposes[flow]} if purposes[flow] else {},
                flow=flow, direction=direction)
            if direction == "egress":
                spec.egress = [rule]
            else:
                spec.ingress = [rule]
            policies[namespace].append(spec)

    for svc, _role in seg.databases:
        policies[service_namespace(svc)] += _database_policies(topology, cluster, svc.name,
                                                               cnpg_operator_namespace)
    return {ns: sorted(items, key=lambda p: p.name) for ns, items in policies.items()}


def _baseline_policies(namespace: str) -> list[PolicySpec]:
    deny = PolicySpec(namespace, "default-deny", (), {**COMMON_LABELS, LABEL_PLATFORM: "default-deny"},
                      {ANNOTATION_PURPOSE: "Deny all ingress and egress not allowed by another policy"},
                      ingress=[], egress=[])
    dns_ports = [{"port": DNS_PORT, "protocol": "UDP"}, {"port": DNS_PORT, "protocol": "TCP"}]
    dns = PolicySpec(namespace, "platform-dns", (), {**COMMON_LABELS, LABEL_PLATFORM: "dns"},
                     {ANNOTATION_PURPOSE: "Name resolution through the cluster DNS"},
                     egress=[{"to": [namespace_peer(DNS_NAMESPACE, DNS_POD_LABELS)], "ports": dns_ports}])
    return [deny, dns]


def api_server_networks(topology: Topology, cluster: Cluster) -> list[ipaddress.IPv4Network]:
    """The addresses of the cluster's control-plane hosts (what the API server endpoints are)."""
    found = {ipaddress.IPv4Network(f"{i.address}/32")
             for h in topology.cluster_hosts(cluster.name) if h.role is HostRole.K8S_CONTROL_PLANE
             for i in h.interfaces}
    return sorted(found)


def _database_policies(topology: Topology, cluster: Cluster, service: str,
                       operator_namespace: str) -> list[PolicySpec]:
    svc = topology.service(service)
    namespace = service_namespace(svc)
    db = database_name(svc)
    db_labels: PodLabels = ((CNPG_CLUSTER_LABEL, db),)
    pg_status = [{"port": POSTGRES_PORT, "protocol": "TCP"}, {"port": CNPG_STATUS_PORT, "protocol": "TCP"}]
    pg = [{"port": POSTGRES_PORT, "protocol": "TCP"}]
    egress: list[dict[str, Any]] = [{"to": [namespace_peer(namespace, db_labels)], "ports": pg_status}]
    api = api_server_networks(topology, cluster)
    if api:
        egress.append({"to": ip_peers(api, []), "ports": [{"port": API_SERVER_PORT, "protocol": "TCP"}]})
    instances = PolicySpec(
        namespace, f"platform-cnpg-{service}", db_labels, {**COMMON_LABELS, LABEL_PLATFORM: "cnpg"},
        {ANNOTATION_PURPOSE: (f"CloudNativePG instances of {db}: the operator, each other and the "
                              f"service's own pods in; each other and the API server out")},
        ingress=[
            {"from": [namespace_peer(operator_namespace, {})], "ports": pg_status},
            {"from": [namespace_peer(namespace, db_labels)], "ports": pg_status},
            {"from": [namespace_peer(namespace, ((LABEL_SERVICE, service),))], "ports": pg},
        ],
        egress=egress)
    clients = PolicySpec(
        namespace, f"platform-cnpg-{service}-clients", ((LABEL_SERVICE, service),),
        {**COMMON_LABELS, LABEL_PLATFORM: "cnpg-clients"},
        {ANNOTATION_PURPOSE: f"{service} reaches its own database {db}"},
        egress=[{"to": [namespace_peer(namespace, db_labels)], "ports": pg}])
    return [instances, clients]
