"""Least privilege in the host and router layers: allow rules carry exact addresses (/32)
wherever the model knows the endpoints, and a whole segment only where a flow names one.

Counted over both environments from what the layers render: each host's nftables inbound
rules (``dualdc_firewall_rules``) and each lab router's nftables ruleset.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from dualdc.inventory import firewall_rules
from dualdc.lab import firewall, plan
from dualdc.loader import load_environment
from dualdc.model import Topology

Net = ipaddress.IPv4Network


def whole(topology: Topology, net: Net) -> bool:
    """Whether a block covers a whole segment, an institution's network or the internet
    (else it is exact addresses, perhaps collapsed: 10.0.0.4/30 for four neighbours)."""
    wholes = [s.cidr for s in topology.segments] + [n for i in topology.institutions for n in i.cidrs]
    return net == Net("0.0.0.0/0") or any(w.subnet_of(net) for w in wholes)


def wide_allowed(topology: Topology, ref: str) -> set[Net]:
    """What a flow end may stand as when it is not exact: a named segment, an institution, the internet."""
    kind, _, name = ref.partition(":")
    if kind == "segment":
        return {topology.segment(name).cidr}
    if kind == "institution":
        return set(topology.institution(name).cidrs)
    if ref == "internet":
        return {Net("0.0.0.0/0")}
    return set()


@pytest.mark.parametrize("env", ["lab", "production"])
def test_host_firewall_sources_are_exact_unless_the_flow_names_a_segment(env: str) -> None:
    topology = load_environment(env)
    flows = {f.name: f for f in topology.flows}
    exact = wide = 0
    for host in topology.hosts:
        for rule in firewall_rules(topology, host):
            flow = flows[rule["name"]]
            for source in map(Net, rule["sources"]):
                if not whole(topology, source):
                    exact += source.num_addresses
                    continue
                wide += 1
                assert any(source.subnet_of(w) for w in wide_allowed(topology, flow.source)), \
                    (host.name, rule["name"], str(source))
    print(f"{env}: host nftables sources: {exact} exact addresses, {wide} whole segments or outside")
    assert exact > 0


@pytest.mark.parametrize("env", ["lab", "production"])
def test_host_firewall_rules_accept_only_at_the_addresses_their_flow_reaches(env: str) -> None:
    # a host in several segments (a database host: internal and replication) takes each flow at
    # the address the flow names, never at its other addresses
    topology = load_environment(env)
    multi = 0
    for host in topology.hosts:
        own = {f"{i.address}/32" for i in host.interfaces}
        for rule in firewall_rules(topology, host):
            assert rule["destinations"] and set(rule["destinations"]) <= own, (host.name, rule)
            multi += len(own) > len(rule["destinations"])
    assert multi > 0
    if env == "lab":
        rules = {r["name"]: r for r in firewall_rules(topology, topology.host("gj-db-kj-01"))}
        assert rules["kj-core-to-batch"]["destinations"] == ["10.10.110.19/32"]         # internal
        assert rules["kj-db-replication-jj-gj"]["destinations"] == ["10.10.41.19/32"]   # replication


def test_production_log_hosts_accept_core_banking_logs_only_from_its_nodes() -> None:
    # the example: a service's flow used to open its whole segment; now its nodes only
    topology = load_environment("production")
    rules = {r["name"]: r for r in firewall_rules(topology, topology.host("gj-log-01"))}
    workers = {i.address for h in topology.cluster_hosts("gwangju-core")
               if h.role.value == "k8s_worker" for i in h.interfaces if i.segment == "gj-kjbank-internal"}
    assert len(workers) == 6
    assert {a for n in map(Net, rules["kj-core-to-siem"]["sources"]) for a in n} == workers
    assert "kj-core-to-mail" not in rules  # port 25 is the mail hosts' only


@pytest.mark.parametrize("env", ["lab"])
def test_router_rules_are_exact_unless_the_flow_names_a_segment(env: str) -> None:
    topology = load_environment(env)
    layout = plan.build(topology, Net("100.64.254.0/24"))
    flows = {f.name: f for f in topology.flows}
    exact = wide = 0
    for router in layout.routers.values():
        for line in firewall.ruleset(topology, router).splitlines():
            m = re.search(r'comment "flow ([a-z0-9-]+):', line)
            if not m:
                continue
            flow = flows[m.group(1)]
            for side, ref in (("saddr", flow.source), ("daddr", flow.destination)):
                found = re.search(rf"ip {side} (\{{ [^}}]+ \}}|\S+)", line)
                if not found:
                    assert ref == "internet", line
                    continue
                for text in found.group(1).strip("{} ").split(", "):
                    net = Net(text)
                    if not whole(topology, net):
                        exact += net.num_addresses
                        continue
                    wide += 1
                    assert any(net.subnet_of(w) for w in wide_allowed(topology, ref)), line
    print(f"{env}: router nftables addresses: {exact} exact addresses, {wide} whole segments or outside")
    assert exact > wide
