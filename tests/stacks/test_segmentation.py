"""Segmentation, proved by evaluating the rendered NetworkPolicies against the model's flows.

The expectations here are stated from the model (which pods stand for which flow end) and
the documented platform allowances; the policies are only ever *evaluated*, never compared
with what the program meant to write.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections import Counter
from typing import Any

import pytest

from dualdc.flows import INTERNET, Connection, Endpoint, connections
from dualdc.model import HostRole, Protocol, ReplicationKind, Service, TenantKind, Topology, Zone

SERVICE = "dualdc.jbfg.example/service"
CNPG = "cnpg.io/cluster"
DNS_POD = ("kube-system", (("k8s-app", "kube-dns"),))
OPERATOR_POD = ("cnpg-system", (("app.kubernetes.io/name", "cloudnative-pg"),))
INTERNET_PROBE = ipaddress.IPv4Address("8.8.8.8")  # only ever evaluated, never contacted
EXTRA_PORTS = (22, 53, 80, 443, 3306, 5432, 6443, 8000, 9999)


def namespace_of(svc: Service) -> str:
    return svc.name if svc.own_namespace else f"{svc.tenant}-{svc.zone.value}"


def db_clusters(topology: Topology, svc: Service) -> set[str]:
    """The clusters the model puts a replicated database on: one at each of the two sites."""
    sites = {svc.primary_site, topology.dr_peer(svc.primary_site)}
    found = set()
    for site in sites:
        on_site = sorted(c for c in svc.clusters if topology.cluster(c).site == site)
        if on_site:
            found.add(on_site[0])
    return found


def replicated(topology: Topology) -> list[Service]:
    return [s for s in topology.services if s.database and ReplicationKind.CNPG in s.replication]


class Model:
    """What the model says stands where, for one cluster."""

    def __init__(self, topology: Topology, cluster: str, netpol: Any) -> None:
        self.t = topology
        self.cluster = topology.cluster(cluster)
        self.site = self.cluster.site
        self.np = netpol
        self._ip = (self.cluster.pod_cidr.network_address + 10 + i for i in itertools.count())
        self.services = [s for s in topology.services if cluster in s.clusters]
        self.databases = [s for s in replicated(topology) if cluster in db_clusters(topology, s)]
        self.namespaces = sorted({f"{t}-{self.cluster.zone.value}" for t in self.cluster.tenants}
                                 | {namespace_of(s) for s in self.services})
        self.pods: dict[Any, dict[str, Any]] = {}
        for svc in self.services:
            self._pod(namespace_of(svc), {SERVICE: svc.name}, service=svc.name, tenant=svc.tenant)
        for svc in self.databases:
            self._pod(namespace_of(svc), {CNPG: f"{svc.name}-db"}, db=svc.name, tenant=svc.tenant)
        for ns in self.namespaces:
            tenant = next((t for t in self.cluster.tenants if ns == f"{t}-{self.cluster.zone.value}"), None)
            tenant = tenant or next(s.tenant for s in self.services if namespace_of(s) == ns)
            self._pod(ns, {"app": "unlisted-workload"}, tenant=tenant)
        self.dns = self.np.Pod(DNS_POD[0], DNS_POD[1], ipaddress.IPv4Address("10.255.255.10"))
        self.operator = self.np.Pod(OPERATOR_POD[0], OPERATOR_POD[1], ipaddress.IPv4Address("10.255.255.11"))
        self.addresses = self._addresses()
        self.api = {i.address for h in topology.cluster_hosts(cluster) if h.role is HostRole.K8S_CONTROL_PLANE
                    for i in h.interfaces}

    def _pod(self, namespace: str, labels: dict[str, str], **meta: Any) -> None:
        pod = self.np.Pod(namespace, tuple(sorted(labels.items())), next(self._ip))
        self.pods[pod] = meta

    def _addresses(self) -> list[Any]:
        found = []
        for seg in self.t.segments:
            hosts = [i.address for h in self.t.hosts for i in h.interfaces if i.segment == seg.name]
            found += [self.np.Address(a, f"host in {seg.name}") for a in sorted(set(hosts))[:2]]
            found.append(self.np.Address(representative(seg.cidr), f"segment {seg.name}"))
        for inst in self.t.institutions:
            found += [self.np.Address(representative(c), f"institution {inst.name}") for c in inst.cidrs]
        found.append(self.np.Address(INTERNET_PROBE, "internet"))
        found += [self.np.Address(representative(c.pod_cidr), f"pods of {c.name}") for c in self.t.clusters]
        return found

    # -- membership: which probes stand for a flow end ---------------------------------------

    def member(self, probe: Any, end: Endpoint) -> bool:
        if isinstance(probe, self.np.Pod):
            meta = self.pods.get(probe)
            if meta is None or end.site != self.site:
                return False
            kind, _, name = end.ref.partition(":")
            if kind == "service":
                return meta.get("service") == name
            if kind == "segment" and meta.get("db"):
                seg = self.t.segment(name)
                if seg.zone is not Zone.REPLICATION:
                    return False
                # a bank's databases replicate over its own replication segments where it has
                # them; only a tenant without one falls back to the shared segments
                own = any(s.site == self.site and s.zone is Zone.REPLICATION and s.tenant == meta["tenant"]
                          for s in self.t.segments)
                return seg.tenant == meta["tenant"] or (
                    not own and self.t.tenant(seg.tenant).kind is TenantKind.SHARED)
            return False
        if end.node == INTERNET:
            # The internet: public space outside every modelled network and every institution.
            return probe.ip.is_global and not any(probe.ip in n for n in modelled(self.t))
        return any(probe.ip in n for n in end.networks)

    def declared(self, src: Any, dst: Any, port: int, proto: str) -> bool:
        for conn in connections(self.t):
            if conn.flow.protocol.value.upper() != proto:
                continue
            if conn.ports and port not in conn.ports:
                continue
            if self.member(src, conn.source) and self.member(dst, conn.destination):
                return True
        return False

    def platform(self, src: Any, dst: Any, port: int, proto: str) -> bool:
        """The documented platform allowances (docs/stacks.md)."""
        s, d = self.pods.get(src, {}), self.pods.get(dst, {})
        if dst == self.dns and port == 53 and src in self.pods:
            return True
        if proto != "TCP":
            return False
        if src == self.operator and d.get("db") and port in (5432, 8000):
            return True
        if s.get("db") and s.get("db") == d.get("db") and port in (5432, 8000):
            return True
        if s.get("service") and s.get("service") == d.get("db") and port == 5432:
            return True
        return bool(s.get("db") and isinstance(dst, self.np.Address) and dst.ip in self.api and port == 6443)

    def touches(self, conn: Connection) -> bool:
        return any(self.member(p, conn.source) or self.member(p, conn.destination) for p in self.pods)


def representative(net: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    if net.prefixlen >= 31:
        return net.network_address
    return net.network_address + min(200, net.num_addresses - 2)


def modelled(t: Topology) -> list[ipaddress.IPv4Network]:
    return ([s.cidr for s in t.segments] + [c.pod_cidr for c in t.clusters]
            + [c.service_cidr for c in t.clusters] + [link.network for link in t.links]
            + [n for i in t.institutions for n in i.cidrs])


def flow_ports(t: Topology) -> list[int]:
    ports = set(EXTRA_PORTS)
    for flow in t.flows:
        if flow.ports != "any":
            ports.update(flow.ports)
    return sorted(ports)


def end_probes(model: Model, end: Endpoint) -> list[Any]:
    """Concrete probes for a flow end: member pods, and an address of each of its networks."""
    found = [p for p in model.pods if model.member(p, end)]
    if end.node == INTERNET:
        found.append(model.np.Address(INTERNET_PROBE, "internet"))
    elif elsewhere(model, end):
        found += [model.np.Address(representative(n), end.ref) for n in end.networks]
    return found


def elsewhere(model: Model, end: Endpoint) -> bool:
    """Whether a flow end also runs outside this cluster (so it is reached by address here)."""
    kind, _, name = end.ref.partition(":")
    if kind != "service" or end.site != model.site:
        return True
    svc = model.t.service(name)
    return (any(model.t.host(h).site == end.site for h in svc.hosts)
            or any(c != model.cluster.name and model.t.cluster(c).site == end.site for c in svc.clusters))


def clusters_of(rendered: Any) -> list[str]:
    return sorted(c.name for c in rendered.topology.clusters)


# --------------------------------------------------------------------------- tests


def test_every_namespace_has_default_deny(rendered: Any) -> None:
    for cluster in clusters_of(rendered):
        pols = rendered.cluster_policies(cluster)
        assert pols.namespaces, f"no namespace rendered for {cluster}"
        for ns in pols.namespaces:
            deny = [p for p in pols.by_namespace.get(ns, [])
                    if p["spec"].get("podSelector") in ({}, None)
                    and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
                    and not p["spec"].get("ingress") and not p["spec"].get("egress")]
            assert len(deny) == 1, f"{cluster}/{ns}: expected one default-deny policy, found {len(deny)}"


def test_every_declared_flow_is_allowed(rendered: Any, netpol: Any) -> None:
    """Each connection touching a cluster is allowed end to end, on each of its ports."""
    topo = rendered.topology
    checked = 0
    for cluster in clusters_of(rendered):
        model = Model(topo, cluster, netpol)
        pols = rendered.cluster_policies(cluster)
        for conn in connections(topo):
            if not model.touches(conn):
                continue
            proto = conn.flow.protocol.value.upper()
            ports = conn.ports or (12345,)
            sources, destinations = end_probes(model, conn.source), end_probes(model, conn.destination)
            for src, dst in itertools.product(sources, destinations):
                if src not in model.pods and dst not in model.pods:
                    continue
                for port in ports:
                    assert pols.allowed(src, dst, port, proto), (
                        f"{cluster}: flow {conn.flow.name} should allow {src} -> {dst} {proto}/{port}")
                    checked += 1
    assert checked > 0


def first_undeclared(model: Model, pols: Any, ports: list[int]) -> str | None:
    """The first allowed (source, destination, port) that neither a flow nor the platform explains."""
    others = [*model.pods, *model.addresses, model.dns, model.operator]
    pairs = [(a, b) for a in model.pods for b in others if a != b]
    pairs += [(b, a) for a in model.pods for b in [*model.addresses, model.operator]]
    for (src, dst), proto in itertools.product(pairs, ("TCP", "UDP")):
        for port in ports:
            if pols.allowed(src, dst, port, proto) and not (
                    model.declared(src, dst, port, proto) or model.platform(src, dst, port, proto)):
                return f"{src} -> {dst} {proto}/{port}"
    return None


def test_nothing_undeclared_is_allowed(rendered: Any, netpol: Any) -> None:
    """Every allowed (source, destination, port) is a declared flow or a documented platform need."""
    topo = rendered.topology
    for cluster in clusters_of(rendered):
        model = Model(topo, cluster, netpol)
        found = first_undeclared(model, rendered.cluster_policies(cluster), flow_ports(topo))
        assert found is None, f"{cluster}: {found} is allowed but no flow declares it"


def test_the_check_catches_an_over_broad_policy(rendered_lab: Any, netpol: Any) -> None:
    """The evaluation above can fail: one allow-all egress policy is caught."""
    topo = rendered_lab.topology
    pols = rendered_lab.cluster_policies("gwangju-core")
    loose = {"metadata": {"name": "oops", "namespace": "kjbank-internal"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}
    broken = netpol.ClusterPolicies(pols.name, pols.namespaces, [*pols.policies, loose], pols.pod_cidr)
    model = Model(topo, "gwangju-core", netpol)
    assert first_undeclared(model, pols, flow_ports(topo)) is None
    assert first_undeclared(model, broken, flow_ports(topo)) is not None


def test_no_cross_bank_path_in_any_cluster(rendered: Any, netpol: Any) -> None:
    topo = rendered.topology
    banks = {t.name for t in topo.tenants if t.kind is TenantKind.BANK}
    segments = {t: [s.cidr for s in topo.segments if s.tenant == t] for t in banks}
    ports = flow_ports(topo)
    for cluster in clusters_of(rendered):
        model = Model(topo, cluster, netpol)
        pols = rendered.cluster_policies(cluster)
        bank_pods = [(p, m["tenant"]) for p, m in model.pods.items() if m.get("tenant") in banks]
        for (a, ta), (b, tb) in itertools.product(bank_pods, bank_pods):
            if ta == tb:
                continue
            for port, proto in itertools.product(ports, ("TCP", "UDP")):
                assert not pols.allowed(a, b, port, proto), f"{cluster}: {a} ({ta}) reaches {b} ({tb}) {port}"
        # No ipBlock in one bank's namespace covers any part of the other bank's networks.
        for pol in pols.policies:
            ns = pol["metadata"]["namespace"]
            tenant = pols.namespaces[ns].get("dualdc.jbfg.example/tenant")
            if tenant not in banks:
                continue
            for other in banks - {tenant}:
                for rule in (pol["spec"].get("ingress") or []) + (pol["spec"].get("egress") or []):
                    for peer in rule.get("from", []) + rule.get("to", []):
                        if "ipBlock" not in peer:
                            continue
                        block = ipaddress.IPv4Network(peer["ipBlock"]["cidr"])
                        holes = [ipaddress.IPv4Network(e) for e in peer["ipBlock"].get("except", [])]
                        for net in segments[other]:
                            covered = block.overlaps(net) and not any(net.subnet_of(h) for h in holes)
                            assert not covered, (f"{cluster}/{ns} {pol['metadata']['name']}: ipBlock {block} "
                                                 f"reaches {other}'s {net}")


def test_each_flow_has_exactly_one_policy_per_namespace_and_direction(rendered: Any, netpol: Any) -> None:
    topo = rendered.topology
    for cluster in clusters_of(rendered):
        model = Model(topo, cluster, netpol)
        pols = rendered.cluster_policies(cluster)
        expected = set()
        for conn in connections(topo):
            for pod in model.pods:
                if model.member(pod, conn.source):
                    expected.add((conn.flow.name, pod.namespace, "Egress"))
                if model.member(pod, conn.destination):
                    expected.add((conn.flow.name, pod.namespace, "Ingress"))
        found = Counter()
        for pol in pols.policies:
            flow = (pol["metadata"].get("labels") or {}).get("dualdc.jbfg.example/flow")
            if flow:
                for kind in pol["spec"]["policyTypes"]:
                    found[(flow, pol["metadata"]["namespace"], kind)] += 1
        assert set(found) == expected, f"{cluster}: flow policies differ from the model's flows"
        assert all(n == 1 for n in found.values()), f"{cluster}: {[k for k, n in found.items() if n != 1]}"


def test_cross_bank_flow_is_refused(lab: Topology, tmp_path: Any) -> None:
    """A flow between the two banks never becomes a policy: the stack refuses the topology."""
    from dualdc import render
    from dualdc.model import Flow

    topo = lab.model_copy(deep=True)
    bad = Flow(name="kj-to-jb-core", source="service:kj-core-banking", destination="service:jb-core-banking",
               protocol=Protocol.TCP, ports=[8443], purpose="must never render")
    topo.flows.append(bad)
    topo.cache.clear()
    with pytest.raises(render.RenderError) as err:
        render.render(topo, site="gwangju", out_root=tmp_path)
    assert "kj-to-jb-core" in str(err.value) and "TEN-01" in str(err.value)
