"""Bank separation judged by an independent analyzer, not by the project's own evaluator.

The rendered NetworkPolicies and Namespaces of every cluster, with representative pods
(one per service, one per CloudNativePG database, one unlisted workload per namespace, the
cluster DNS and the CloudNativePG operator), are fed to IBM's network-config-analyzer
(``nca``, from PyPI, installed by ``scripts/bootstrap.sh`` into its own ``.venv-nca``: its
pins clash with the project's). Its connectivity map is then checked against the model:

- every namespace is isolated by default: an unlisted workload reaches only DNS and is
  reached by nothing;
- no connection joins two banks' pods within a cluster;
- every allowed connection is a declared flow (its ends and ports) or one of the documented
  platform allowances (docs/stacks.md).

Across clusters and sites, where no analyzer sees both ends, the rendered ``ipBlock``s of
every bank's pods are compared with the model's addresses of the other bank's endpoints
(hosts, services' addresses, database load-balancer addresses, segments).
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dualdc.flows import INTERNET, Connection, connections, replication_segments
from dualdc.model import HostRole, TenantKind, Topology

ROOT = Path(__file__).resolve().parents[2]
NCA = ROOT / ".venv-nca" / "bin" / "nca"
SERVICE = "dualdc.jbfg.example/service"
TENANT = "dualdc.jbfg.example/tenant"
CNPG = "cnpg.io/cluster"
NS_NAME = "kubernetes.io/metadata.name"
PLATFORM_NAMESPACES = {"kube-system": {"k8s-app": "kube-dns"},
                       "cnpg-system": {"app.kubernetes.io/name": "cloudnative-pg"}}
Net = ipaddress.IPv4Network


@pytest.fixture(scope="module")
def nca() -> Path:
    if not NCA.exists():
        pytest.fail(f"{NCA} is missing: run ./scripts/bootstrap.sh (it installs network-config-analyzer "
                    "into .venv-nca)")
    return NCA


# --------------------------------------------------------------------------- the analyzer's input


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: tuple[tuple[str, str], ...]
    service: str | None = None
    database: str | None = None
    unlisted: bool = False


def cluster_input(rendered: Any, cluster: str, folder: Path,
                  extra: Sequence[dict[str, Any]] = ()) -> dict[str, Pod]:
    """Write the cluster's policies, namespaces and representative pods for nca; return the pods."""
    site = [o for _, c, o in rendered.objects("dualdc-site") if c == cluster]
    dbs = [o for _, c, o in rendered.objects("dualdc-replication") if c == cluster and o["kind"] == "Cluster"]
    policies = [o for o in site if o["kind"] == "NetworkPolicy"] + list(extra)
    namespaces = [o for o in site if o["kind"] == "Namespace"]
    for name, _labels in PLATFORM_NAMESPACES.items():
        namespaces.append({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": name, "labels": {NS_NAME: name}}})
    pods: dict[str, Pod] = {}

    def add(pod: Pod) -> None:
        pods[f"{pod.namespace}/{pod.name}"] = pod

    topology: Topology = rendered.topology
    for svc in topology.services:
        if cluster in svc.clusters:
            ns = svc.name if svc.own_namespace else f"{svc.tenant}-{svc.zone.value}"
            add(Pod(f"svc-{svc.name}", ns, ((SERVICE, svc.name),), service=svc.name))
    for db in dbs:
        meta = db["metadata"]
        add(Pod(f"db-{meta['name']}", meta["namespace"], ((CNPG, meta["name"]),),
                database=meta["labels"][SERVICE]))
    for ns in namespaces:
        name = ns["metadata"]["name"]
        if name in PLATFORM_NAMESPACES:
            add(Pod("platform", name, tuple(PLATFORM_NAMESPACES[name].items())))
        else:
            add(Pod("unlisted", name, (("app", "unlisted-workload"),), unlisted=True))
    folder.mkdir(parents=True)
    (folder / "policies").mkdir()
    for i, policy in enumerate(policies):
        (folder / "policies" / f"{i:03d}.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
    namespace_list = {"apiVersion": "v1", "kind": "List", "items": namespaces}
    (folder / "namespaces.yaml").write_text(yaml.safe_dump(namespace_list), encoding="utf-8")
    items = [{"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels)},
              "spec": {"nodeName": "node"}, "status": {"podIP": "10.255.0.1"}} for p in pods.values()]
    (folder / "pods.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}),
                                      encoding="utf-8")
    return pods


# --------------------------------------------------------------------------- the analyzer's output


@dataclass(frozen=True)
class Link:
    src: str
    """``namespace/pod`` or an address range ``a-b``."""
    dst: str
    ports: tuple[tuple[str, int, int], ...]
    """(protocol, first port, last port); empty: all connections."""


LINE = re.compile(r"^(?P<src>\S+) => (?P<dst>\S+) : (?P<conn>.+)$")


def _endpoint(text: str) -> str:
    return text.removesuffix("[Pod]")


def _ports(text: str) -> tuple[tuple[str, int, int], ...]:
    if text.strip() == "All connections":
        return ()
    found = []
    for part in re.findall(r"\{([^}]*)\}", text):
        protos = re.search(r"protocols:([A-Z, ]+?)(,dst_ports:|$)", part)
        ports = re.search(r"dst_ports:([0-9,\- ]+)", part)
        assert protos, text
        for proto in (p.strip() for p in protos.group(1).split(",")):
            for item in (ports.group(1).split(",") if ports else ["1-65535"]):
                lo, _, hi = item.strip().partition("-")
                found.append((proto, int(lo), int(hi or lo)))
    return tuple(found)


def analyze(nca: Path, folder: Path) -> list[Link]:
    """nca's connectivity map of one cluster, one line per (source, destination)."""
    run = subprocess.run(
        [str(nca), "--connectivity", str(folder / "policies"), "-n", str(folder / "namespaces.yaml"),
         "-p", str(folder / "pods.yaml"), "-o", "txt_no_fw_rules"],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    links = []
    for line in run.stdout.splitlines():
        m = LINE.match(line.strip())
        if m:
            links.append(Link(_endpoint(m["src"]), _endpoint(m["dst"]), _ports(m["conn"])))
    assert links, run.stdout[-2000:]
    return links


def addresses(text: str) -> Net | list[Net]:
    first, _, last = text.partition("-")
    return list(ipaddress.summarize_address_range(ipaddress.IPv4Address(first),
                                                  ipaddress.IPv4Address(last or first)))


# --------------------------------------------------------------------------- the model's side


class Judge:
    """What the model declares for the pods of one cluster."""

    def __init__(self, topology: Topology, cluster: str, pods: dict[str, Pod]) -> None:
        self.t = topology
        self.cluster = topology.cluster(cluster)
        self.site = self.cluster.site
        self.pods = pods
        self.conns = connections(topology)
        self.api = {Net(f"{i.address}/32") for h in topology.cluster_hosts(cluster)
                    if h.role is HostRole.K8S_CONTROL_PLANE for i in h.interfaces}

    def tenant(self, pod: Pod) -> str | None:
        name = pod.service or pod.database
        if name:
            return self.t.service(name).tenant
        return next((t for t in self.cluster.tenants if pod.namespace.startswith(f"{t}-")), None)

    def bank(self, tenant: str | None) -> bool:
        return tenant is not None and self.t.tenant(tenant).kind is TenantKind.BANK

    def stands_for(self, pod: Pod, ref: str, site: str | None) -> bool:
        """Whether a pod is one a connection end places in this cluster."""
        if site != self.site:
            return False
        kind, _, name = ref.partition(":")
        if kind == "service":
            return pod.service == name
        if kind == "segment" and pod.database:
            svc = self.t.service(pod.database)
            return name in replication_segments(self.t, self.site, svc.tenant)
        return False

    def _matches(self, conn: Connection, ports: tuple[tuple[str, int, int], ...]) -> bool:
        proto = conn.flow.protocol.value.upper()
        if not ports:
            return False
        return all(p == proto and (not conn.ports or all(x in conn.ports for x in range(lo, hi + 1)))
                   for p, lo, hi in ports)

    def declared_pods(self, src: Pod, dst: Pod, ports: tuple[tuple[str, int, int], ...]) -> bool:
        return any(self._matches(c, ports) and self.stands_for(src, c.source.ref, c.source.site)
                   and self.stands_for(dst, c.destination.ref, c.destination.site) for c in self.conns)

    def declared_egress(self, src: Pod, nets: list[Net], ports: tuple[tuple[str, int, int], ...]) -> bool:
        allowed = [n for c in self.conns
                   if self._matches(c, ports) and self.stands_for(src, c.source.ref, c.source.site)
                   for n in _networks(self.t, c.destination)]
        return _covered(nets, allowed)

    def declared_ingress(self, nets: list[Net], dst: Pod, ports: tuple[tuple[str, int, int], ...]) -> bool:
        allowed = [n for c in self.conns
                   if self._matches(c, ports) and self.stands_for(dst, c.destination.ref, c.destination.site)
                   for n in _networks(self.t, c.source)]
        return _covered(nets, allowed)

    def platform(self, src: Pod | None, dst: Pod | None, nets: list[Net],
                 ports: tuple[tuple[str, int, int], ...]) -> bool:
        """The documented platform allowances (docs/stacks.md)."""
        tcp = bool(ports) and all(p == "TCP" for p, _, _ in ports)
        pg = bool(ports) and all(lo == hi and lo in (5432, 8000) for _, lo, hi in ports)
        if dst is not None and dst.namespace == "kube-system":
            return bool(ports) and all(lo == hi == 53 for _, lo, hi in ports)
        if src is not None and src.namespace == "cnpg-system":
            return dst is not None and dst.database is not None and tcp and pg
        if src is not None and dst is not None and src.database and src.database == dst.database:
            return tcp and pg
        if src is not None and dst is not None and src.service and src.service == dst.database:
            return tcp and all(lo == hi == 5432 for _, lo, hi in ports)
        if src is not None and src.database and nets:
            return tcp and all(lo == hi == 6443 for _, lo, hi in ports) and _covered(nets, list(self.api))
        return False


def _covered(nets: list[Net], allowed: list[Net]) -> bool:
    """Whether every address of ``nets`` lies in the union of ``allowed``."""
    union = list(ipaddress.collapse_addresses(allowed))
    return all(any(n.subnet_of(a) for a in union) for n in nets)


def _networks(topology: Topology, end: Any) -> list[Net]:
    if end.node == INTERNET:
        return [Net("0.0.0.0/0")]
    return list(end.networks)


def violations(topology: Topology, cluster: str, pods: dict[str, Pod], links: list[Link]) -> list[str]:
    """Every connection of the map the model does not account for, and every isolation breach."""
    judge = Judge(topology, cluster, pods)
    found = []
    for link in links:
        src, dst = pods.get(link.src), pods.get(link.dst)
        # the platform's own namespaces carry no policy of ours: only what our pods open to
        # them, and what they may open to our pods, is judged
        if (src is None or src.namespace in PLATFORM_NAMESPACES) and (
                dst is None or dst.namespace in PLATFORM_NAMESPACES):
            continue
        where = f"{cluster}: {link.src} => {link.dst} {link.ports or 'all'}"
        if src is not None and dst is not None:
            a, b = judge.tenant(src), judge.tenant(dst)
            if judge.bank(a) and judge.bank(b) and a != b:
                found.append(f"{where}: joins {a} and {b}")
                continue
        to_dns = dst is not None and dst.namespace == "kube-system"
        if (src is not None and src.unlisted and not to_dns) or (dst is not None and dst.unlisted):
            found.append(f"{where}: an unlisted workload is not isolated")
            continue
        nets_src = [] if src is not None else addresses(link.src)
        nets_dst = [] if dst is not None else addresses(link.dst)
        if judge.platform(src, dst, nets_dst, link.ports):
            continue
        if src is not None and dst is not None:
            ok = judge.declared_pods(src, dst, link.ports)
        elif src is not None:
            ok = judge.declared_egress(src, nets_dst, link.ports)
        else:
            assert dst is not None
            ok = judge.declared_ingress(nets_src, dst, link.ports)
        if not ok:
            found.append(f"{where}: matches no declared flow")
    return found


def check_cluster(nca: Path, rendered: Any, cluster: str, folder: Path,
                  extra: Sequence[dict[str, Any]] = ()) -> tuple[list[str], list[Link]]:
    pods = cluster_input(rendered, cluster, folder, extra)
    links = analyze(nca, folder)
    return violations(rendered.topology, cluster, pods, links), links


# --------------------------------------------------------------------------- within each cluster


def test_every_cluster_isolates_namespaces_keeps_the_banks_apart_and_allows_only_declared_flows(
        nca: Path, rendered: Any, tmp_path: Path) -> None:
    topology: Topology = rendered.topology
    for cluster in topology.clusters:
        found, links = check_cluster(nca, rendered, cluster.name, tmp_path / cluster.name)
        assert found == [], "\n".join(found)
        # the map is not empty: the declared flows really pass
        assert any(pod_ns(link.src) and not pod_ns(link.dst) for link in links) or cluster.zone.value == "dev"


def pod_ns(text: str) -> bool:
    return "/" in text and not re.match(r"^\d", text)


def _cross_bank_policy() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "oops-kj-from-jb", "namespace": "kj-core-banking"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {NS_NAME: "jb-core-banking"}}}],
                               "ports": [{"port": 8443, "protocol": "TCP"}]}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "oops-jb-to-kj", "namespace": "jb-core-banking"},
         "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                  "egress": [{"to": [{"namespaceSelector": {"matchLabels": {NS_NAME: "kj-core-banking"}}}],
                              "ports": [{"port": 8443, "protocol": "TCP"}]}]}},
    ]


def test_the_analyzer_test_fails_on_a_cross_bank_policy(nca: Path, rendered_lab: Any, tmp_path: Path) -> None:
    found, _ = check_cluster(nca, rendered_lab, "gwangju-core", tmp_path / "gwangju-core",
                             _cross_bank_policy())
    joined = [f for f in found if "joins jbbank and kjbank" in f]
    assert joined, found
    pair = "jb-core-banking/svc-jb-core-banking => kj-core-banking/svc-kj-core-banking"
    assert any(pair in f for f in joined)


# --------------------------------------------------------------------------- across clusters and sites


def bank_endpoints(topology: Topology, rendered: Any) -> dict[str, list[tuple[ipaddress.IPv4Address, str]]]:
    """Each bank's endpoint addresses from the model: hosts, services, database load balancers,
    and the first usable address of each of its segments."""
    banks = {t.name for t in topology.tenants if t.kind is TenantKind.BANK}
    found: dict[str, list[tuple[ipaddress.IPv4Address, str]]] = {b: [] for b in banks}
    for host in topology.hosts:
        if host.tenant in banks:
            found[host.tenant] += [(i.address, f"host {host.name} ({i.segment})") for i in host.interfaces]
    for seg in topology.segments:
        if seg.tenant in banks:
            found[seg.tenant].append((next(iter(seg.cidr.hosts())), f"segment {seg.name}"))
    for svc in topology.services:
        if svc.tenant in banks:
            for end in (e for c in connections(topology) for e in (c.source, c.destination)
                        if e.ref == f"service:{svc.name}"):
                found[svc.tenant] += [(n.network_address, f"service {svc.name} at {end.site}")
                                      for n in end.networks]
    for _, _, obj in rendered.objects("dualdc-replication"):
        if obj["kind"] == "Cluster":
            tenant = obj["metadata"]["labels"][TENANT]
            if tenant not in found:
                continue
            for service in obj["spec"]["managed"]["services"]["additional"]:
                for value in service["serviceTemplate"]["metadata"]["annotations"].values():
                    found[tenant].append((ipaddress.IPv4Address(value),
                                          f"database {obj['metadata']['name']} load balancer at "
                                          f"{obj['metadata']['labels']['dualdc.jbfg.example/site']}"))
    return found


def _blocks(peers: list[dict[str, Any]]) -> list[tuple[Net, list[Net]]]:
    return [(Net(p["ipBlock"]["cidr"]), [Net(e) for e in p["ipBlock"].get("except", [])])
            for p in peers if "ipBlock" in p]


def cross_site_violations(rendered: Any, extra: Sequence[tuple[str, dict[str, Any]]] = ()) -> list[str]:
    """Every egress or ingress ipBlock of a bank's pods covering another bank's endpoint."""
    topology: Topology = rendered.topology
    tenants = {}
    policies = list(extra)
    for _, cluster, obj in rendered.objects("dualdc-site"):
        if obj["kind"] == "Namespace":
            tenants[(cluster, obj["metadata"]["name"])] = obj["metadata"]["labels"].get(TENANT)
        elif obj["kind"] == "NetworkPolicy":
            policies.append((cluster, obj))
    endpoints = bank_endpoints(topology, rendered)
    found = []
    for cluster, policy in policies:
        tenant = tenants.get((cluster, policy["metadata"]["namespace"]))
        if tenant not in endpoints:
            continue
        for direction, key in (("egress", "to"), ("ingress", "from")):
            for rule in policy["spec"].get(direction) or []:
                for cidr, excepts in _blocks(rule.get(key) or []):
                    for bank, addrs in endpoints.items():
                        if bank == tenant:
                            continue
                        for address, what in addrs:
                            if address in cidr and not any(address in e for e in excepts):
                                found.append(f"{cluster} {policy['metadata']['namespace']}/"
                                             f"{policy['metadata']['name']} {direction} {cidr} covers "
                                             f"{bank}'s {what} ({address})")
    return found


def test_no_bank_pod_egress_or_ingress_covers_the_other_banks_endpoints(rendered: Any) -> None:
    found = cross_site_violations(rendered)
    assert found == [], "\n".join(found[:20])


def test_the_cross_site_check_fails_on_an_ipblock_covering_the_other_banks_database(
        rendered_lab: Any) -> None:
    topology: Topology = rendered_lab.topology
    jb_db = topology.host("jj-db-jb-01")
    target = next(i for i in jb_db.interfaces if i.segment == "jj-jbbank-replication")
    oops = ("gwangju-core", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "oops-replication", "namespace": "kj-core-banking"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"ipBlock": {"cidr": "10.20.40.0/22"}}],
                             "ports": [{"port": 5432, "protocol": "TCP"}]}]}})
    found = cross_site_violations(rendered_lab, [oops])
    assert (f"gwangju-core kj-core-banking/oops-replication egress 10.20.40.0/22 covers jbbank's host "
            f"jj-db-jb-01 (jj-jbbank-replication) ({target.address})") in found


def test_rendered_allow_rules_are_exact_where_the_model_knows_the_endpoints(rendered: Any) -> None:
    """Count the ipBlocks of flow policies: every one that is not a /32 stands for a flow end
    that names a whole segment, an institution or the internet."""
    topology: Topology = rendered.topology
    wide_ok = {s.cidr for s in topology.segments} | {n for i in topology.institutions for n in i.cidrs}
    wide_ok.add(Net("0.0.0.0/0"))
    exact = wide = 0
    for _, _, obj in rendered.objects("dualdc-site"):
        if obj["kind"] != "NetworkPolicy" or not obj["metadata"]["name"].startswith("flow-"):
            continue
        flow = topology_flow(topology, obj["metadata"]["labels"]["dualdc.jbfg.example/flow"])
        for direction, key in (("egress", "to"), ("ingress", "from")):
            for rule in obj["spec"].get(direction) or []:
                for cidr, _ in _blocks(rule.get(key) or []):
                    if cidr.prefixlen == 32:
                        exact += 1
                        continue
                    wide += 1
                    assert cidr in wide_ok, (obj["metadata"], cidr)
                    named = flow.destination if direction == "egress" else flow.source
                    assert named.startswith(("segment:", "institution:")) or named == INTERNET, \
                        (obj["metadata"]["name"], cidr)
    print(f"{topology.environment.name}: {exact} exact /32 ipBlocks, {wide} whole-segment/outside ipBlocks")
    assert exact > wide


def topology_flow(topology: Topology, name: str) -> Any:
    return next(f for f in topology.flows if f.name == name)
