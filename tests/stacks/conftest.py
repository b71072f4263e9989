"""Fixtures of the stack tests: rendered environments and a NetworkPolicy evaluator.

The evaluator implements the Kubernetes NetworkPolicy semantics (networking.k8s.io/v1)
independently of the program that writes the policies: a connection from a source to a
destination on a port is allowed when the source pod's namespace does not isolate it for
egress or some egress rule allows it, and the destination pod's namespace does not isolate
it for ingress or some ingress rule allows it. Addresses outside the cluster are matched
by ``ipBlock`` only. A pod is also matched by an ``ipBlock`` containing its address (the
conservative reading: some CNIs do).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from dualdc import render
from dualdc.loader import load_environment
from dualdc.model import Topology

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = ROOT / "inventories"


def environments() -> list[str]:
    """Environments with a topology: lab always, production once it is written."""
    found = ["lab"]
    prod = INVENTORIES / "production"
    if any(p.suffix in (".yaml", ".yml") and p.name != "inventory.dualdc.yml" for p in prod.glob("*")):
        found.append("production")
    return found


# --------------------------------------------------------------------------- evaluator


@dataclass(frozen=True)
class Pod:
    """A pod: its namespace, labels and an address in the cluster's pod network."""

    namespace: str
    labels: tuple[tuple[str, str], ...]
    ip: ipaddress.IPv4Address

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def __str__(self) -> str:
        return f"pod {self.namespace}/{dict(self.labels)}"


@dataclass(frozen=True)
class Address:
    """Something outside the cluster, by address."""

    ip: ipaddress.IPv4Address
    what: str = ""

    def __str__(self) -> str:
        return f"{self.ip} ({self.what})"


Peer = Pod | Address


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass
class ClusterPolicies:
    """The NetworkPolicies and namespaces of one cluster, from rendered objects."""

    name: str
    namespaces: dict[str, dict[str, str]]
    policies: list[dict[str, Any]]
    pod_cidr: ipaddress.IPv4Network
    by_namespace: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pol in self.policies:
            self.by_namespace.setdefault(pol["metadata"]["namespace"], []).append(pol)

    def namespace_labels(self, name: str) -> dict[str, str]:
        return self.namespaces.get(name, {"kubernetes.io/metadata.name": name})

    def _peer_matches(self, peer: dict[str, Any], target: Peer, policy_ns: str) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            if target.ip not in ipaddress.IPv4Network(block["cidr"]):
                return False
            return not any(target.ip in ipaddress.IPv4Network(e) for e in block.get("except") or [])
        if not isinstance(target, Pod):
            return False
        if "namespaceSelector" in peer:
            if not _matches(peer["namespaceSelector"], self.namespace_labels(target.namespace)):
                return False
        elif target.namespace != policy_ns:
            return False
        return _matches(peer.get("podSelector"), target.label_map())

    @staticmethod
    def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
        if not rule_ports:
            return True
        for item in rule_ports:
            if item.get("protocol", "TCP") != protocol:
                continue
            if "port" not in item:
                return True
            end = item.get("endPort", item["port"])
            if item["port"] <= port <= end:
                return True
        return False

    def _side_allows(self, pod: Pod, other: Peer, port: int, protocol: str, direction: str) -> bool:
        kind, key = ("Egress", "egress") if direction == "egress" else ("Ingress", "ingress")
        peers_key = "to" if direction == "egress" else "from"
        selecting = [p for p in self.by_namespace.get(pod.namespace, [])
                     if kind in p["spec"].get("policyTypes", [])
                     and _matches(p["spec"].get("podSelector") or {}, pod.label_map())]
        if not selecting:
            return True  # not isolated
        for pol in selecting:
            for rule in pol["spec"].get(key) or []:
                if not self._port_matches(rule.get("ports"), port, protocol):
                    continue
                peers = rule.get(peers_key)
                if not peers or any(self._peer_matches(p, other, pod.namespace) for p in peers):
                    return True
        return False

    def allowed(self, src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
        """Whether the policies let ``src`` open a connection to ``dst`` on ``port``."""
        if isinstance(src, Pod) and not self._side_allows(src, dst, port, protocol, "egress"):
            return False
        return not (isinstance(dst, Pod) and not self._side_allows(dst, src, port, protocol, "ingress"))


# --------------------------------------------------------------------------- rendered environments


@dataclass(eq=False)
class RenderedEnv:
    topology: Topology
    out: Path
    stacks: list[render.RenderedStack]

    def files(self) -> Iterator[Path]:
        yield from sorted(p for p in self.out.rglob("*.yaml") if p.name != render.SUMMARY)

    @functools.cached_property
    def parsed(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(project, stack, cluster, object) of every rendered file, parsed back from disk once."""
        found = []
        for path in self.files():
            rel = path.relative_to(self.out)
            body = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
            found.append((rel.parts[0], rel.parts[1], rel.parts[2], body))
        return found

    def objects(self, project: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        """(stack label, cluster, object) of every rendered file."""
        return [(f"{p}/{s}", c, o) for p, s, c, o in self.parsed if project is None or p == project]

    @functools.cache  # noqa: B019 - session-scoped fixture objects, a handful of clusters
    def cluster_policies(self, cluster: str) -> ClusterPolicies:
        site_objects = [o for _, c, o in self.objects(render.SITE_PROJECT) if c == cluster]
        namespaces = {o["metadata"]["name"]: o["metadata"].get("labels") or {}
                      for o in site_objects if o["kind"] == "Namespace"}
        policies = [o for o in site_objects if o["kind"] == "NetworkPolicy"]
        return ClusterPolicies(cluster, namespaces, policies, self.topology.cluster(cluster).pod_cidr)


def render_environment(topology: Topology, out: Path) -> RenderedEnv:
    return RenderedEnv(topology, out, render.render(topology, out_root=out, stacks_root=ROOT / "stacks"))


@pytest.fixture(scope="session")
def lab() -> Topology:
    return load_environment("lab", root=INVENTORIES)


@pytest.fixture(scope="session", params=environments())
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RenderedEnv:
    """Every stack of an environment rendered once into a temporary folder."""
    topology = load_environment(request.param, root=INVENTORIES)
    return render_environment(topology, tmp_path_factory.mktemp(f"render-{request.param}"))


@pytest.fixture(scope="session")
def rendered_production(tmp_path_factory: pytest.TempPathFactory) -> RenderedEnv:
    """Production rendered: its cnpg databases (the lab's run on hosts, not in clusters)."""
    return render_environment(load_environment("production"), tmp_path_factory.mktemp("render-production"))


@pytest.fixture(scope="session")
def rendered_lab(tmp_path_factory: pytest.TempPathFactory, lab: Topology) -> RenderedEnv:
    return render_environment(lab, tmp_path_factory.mktemp("render-lab"))


@pytest.fixture(scope="session")
def netpol() -> Any:
    """The evaluator's types, for tests (conftest modules are not importable by name)."""
    import types

    return types.SimpleNamespace(Pod=Pod, Address=Address, ClusterPolicies=ClusterPolicies,
                                 render_environment=render_environment)
