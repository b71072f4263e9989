"""The lab's layout, firewall and probe plan, derived from the lab topology (no root needed)."""

from __future__ import annotations

import ipaddress
import re

import pytest

from dualdc.flows import connections
from dualdc.lab import firewall, plan, verify
from dualdc.lab.errors import LabError
from dualdc.loader import load_environment
from dualdc.model import Topology, Zone

INFRA = ipaddress.IPv4Network("100.64.254.0/24")


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_environment("lab")


@pytest.fixture(scope="module")
def layout(topology: Topology) -> plan.LabPlan:
    return plan.build(topology, INFRA)


def test_every_host_keeps_the_models_interfaces(topology: Topology, layout: plan.LabPlan) -> None:
    assert set(layout.hosts) == {h.name for h in topology.hosts}
    for host in topology.hosts:
        hp = layout.hosts[host.name]
        model = [(i.name, str(i.address)) for i in host.interfaces]
        assert [(n.name, str(n.address)) for n in hp.nics] == model
        assert hp.mgmt_address == topology.management_address(host)


def test_kernel_names_are_short_unique_and_deterministic(topology: Topology, layout: plan.LabPlan) -> None:
    names = list(layout.names())
    assert all(len(n) <= 15 and re.fullmatch(r"[a-z0-9]+", n) for n in names)
    assert len(names) == len(set(names))
    again = plan.build(topology, INFRA)
    assert again.names() == layout.names()


def test_routers_own_the_gateways_and_route_the_peer_site(topology: Topology, layout: plan.LabPlan) -> None:
    for site, router in layout.routers.items():
        gateways = {leg.address for leg in router.legs}
        assert gateways == {s.gateway for s in topology.segments_at(site)}
        assert {e.link for e in router.links} == {link.name for link in topology.links}
        peer = {s.cidr for s in topology.segments if s.site != site}
        assert set(router.peer_networks) == peer
        assert router.controller_net.subnet_of(INFRA)


def test_default_route_via_the_primary_interface_and_mgmt_routes(layout: plan.LabPlan) -> None:
    worker = layout.hosts["gj-core-wk-01"]
    assert worker.primary == "eth1"  # the first interface outside mgmt
    assert worker.mgmt == "eth0"
    assert ipaddress.IPv4Network("10.20.10.0/24") in worker.mgmt_routes  # the other site's mgmt
    assert INFRA in worker.mgmt_routes  # the controller's links
    bastion = layout.hosts["gj-bastion-01"]
    assert bastion.primary == "eth0" and bastion.mgmt_routes == ()


def test_infra_network_overlapping_the_model_is_refused(topology: Topology) -> None:
    with pytest.raises(LabError, match="overlaps segment gj-group-mgmt"):
        plan.build(topology, ipaddress.IPv4Network("10.10.10.0/24"))


def test_firewall_allows_each_routed_connection_and_nothing_inside_a_segment(
        topology: Topology, layout: plan.LabPlan) -> None:
    text = firewall.ruleset(topology, layout.routers["gwangju"])
    assert "policy drop;" in text
    assert 'iifname "controller" ip daddr 10.10.10.0/24 tcp dport 22' in text
    # kj-ib-to-api: the DMZ worker to the core workers, exactly (the service's nodes in its segments)
    assert ("ip saddr 10.10.210.18/32 ip daddr { 10.10.110.15/32, 10.10.110.16/32 } tcp dport 9443 "
            in text)
    assert "ip daddr 10.10.210.18/32 tcp dport 443" in text  # the internet: any source
    # a flow naming segments keeps the whole segments
    assert "ip saddr 10.10.40.0/24 ip daddr 10.20.40.0/24 tcp dport { 5432, 8000 }" in text
    # each bank's databases replicate between their own replication addresses only
    assert "ip saddr 10.10.41.19/32 ip daddr 10.20.41.19/32 tcp dport 5432" in text
    assert "ip saddr 10.10.42.20/32 ip daddr 10.20.42.20/32 tcp dport 5432" in text
    # Same-segment flows (kj-api-to-core) are switched, never routed: no rule.
    assert "flow kj-api-to-core" not in text
    # Jeonju-only flows are not in Gwangju's router.
    assert "flow jj-core-k8s-api" not in text
    routed = [c for c in connections(topology) if firewall.relevant(c, "gwangju")]
    assert {c.flow.name for c in routed} == set(re.findall(r'comment "flow ([a-z0-9-]+):', text))


def test_probe_plan_covers_every_connection_and_forbids_only_what_no_flow_allows(
        topology: Topology, layout: plan.LabPlan) -> None:
    probes, skipped = verify.plan_probes(topology, layout)
    # only database hosts of both banks in one segment (the shared mgmt segment) go unprobed here
    assert all("same segment, separated by the hosts' own firewalls only" in s for s in skipped), skipped
    declared = {p.reason.removeprefix("flow ") for p in probes
                if p.kind == "declared" and p.category == "flow"}
    assert declared == {f.name for f in topology.flows}
    conns = connections(topology)
    forbidden = [p for p in probes if p.kind == "forbidden"]
    categories = {p.category for p in forbidden}
    assert {"dmz-to-internal", "bank-to-bank", "bank-db", "to-mgmt", "controller", "sample"} <= categories
    for p in forbidden:
        if p.source[0] == "host":
            assert not verify._allowed(conns, ipaddress.IPv4Address(p.src), ipaddress.IPv4Address(p.dst),
                                       p.proto, p.port), p
    # The same plan every time (the sample is seeded).
    assert [p.id for p in verify.plan_probes(topology, layout)[0]] == [p.id for p in probes]


def test_bank_database_hosts_are_probed_apart_and_replicate_only_to_their_own(
        topology: Topology, layout: plan.LabPlan) -> None:
    probes, _ = verify.plan_probes(topology, layout)
    dbs = {h.name: h for h in topology.hosts if h.role.value == "db"}
    tcp_ports = {p for f in topology.flows if f.protocol.value == "tcp" and f.ports != "any" for p in f.ports}
    for a in dbs.values():
        for b in dbs.values():
            if a.tenant == b.tenant:
                continue
            shared = {i.segment for i in a.interfaces}
            # every routed address of the other bank's database host, every port (in a segment both
            # sit in, no router stands between them: the hosts' own firewalls part them there)
            for iface in (i for i in b.interfaces if i.segment not in shared):
                ports = {p.port for p in probes if p.kind == "forbidden" and p.destination == ("host", b.name)
                         and p.source == ("host", a.name) and p.dst == str(iface.address)}
                assert ports >= tcp_ports, (a.name, b.name, str(iface.address))
    declared = {(p.src, p.dst, p.port) for p in probes if p.kind == "declared"}
    # each bank's replication, between its own hosts' replication addresses (both directions)
    assert {("10.10.41.19", "10.20.41.19", 5432), ("10.20.41.19", "10.10.41.19", 5432),
            ("10.20.42.20", "10.10.42.20", 5432), ("10.10.42.20", "10.20.42.20", 5432)} <= declared


def test_forbidden_mgmt_probes_come_from_outside_mgmt(topology: Topology, layout: plan.LabPlan) -> None:
    probes, _ = verify.plan_probes(topology, layout)
    mgmt_nets = [s.cidr for s in topology.segments if s.zone is Zone.MGMT]
    for p in probes:
        if p.category == "to-mgmt":
            assert p.port == 22
            assert any(ipaddress.IPv4Address(p.dst) in n for n in mgmt_nets)
            src_in = [n for n in mgmt_nets if ipaddress.IPv4Address(p.src) in n]
            dst_in = [n for n in mgmt_nets if ipaddress.IPv4Address(p.dst) in n]
            assert src_in != dst_in  # never from inside the same mgmt segment (bastion's L2)


def test_a_replication_interface_reaches_its_banks_replication_segments_at_the_other_site(
        layout: plan.LabPlan) -> None:
    """A standby's connection leaves from its replication address, the one the replication flows and
    the firewalls name; without these routes it would leave through the host's default route."""
    kj = layout.hosts["jj-db-kj-01"]
    assert [(name, str(net)) for name, net in kj.replication_routes] == [("eth2", "10.10.41.0/24")]
    jb = layout.hosts["gj-db-jb-01"]
    assert [(name, str(net)) for name, net in jb.replication_routes] == [("eth2", "10.20.42.0/24")]
    assert layout.hosts["gj-ntp-01"].replication_routes == ()


def test_the_ai_zone_is_probed_personal_data_paths_closed_and_publishing_open(
        topology: Topology, layout: plan.LabPlan) -> None:
    """lab.verify's AI probes: declared pseudonymised feeds and result publishing expected open;
    every personal-data holder to every AI host, the AI zone back into internal and one bank's
    AI segment to the other's expected blocked, on ports no flow allows."""
    probes, _ = verify.plan_probes(topology, layout)
    conns = connections(topology)
    ai_nets = [s.cidr for s in topology.segments if s.zone is Zone.AI]
    internal_nets = [s.cidr for s in topology.segments if s.zone is Zone.INTERNAL]

    def inside(address: str, nets: list[ipaddress.IPv4Network]) -> bool:
        return any(ipaddress.IPv4Address(address) in n for n in nets)

    feeds = {f.name for f in topology.flows if f.data is not None and f.data.value == "pseudonymised"
             and f.destination.startswith("service:")
             and topology.service(f.destination[8:]).zone is Zone.AI}
    publishing = {f.name for f in topology.flows if f.publishes_results}
    assert feeds and publishing
    declared = {p.reason.removeprefix("flow ") for p in probes if p.kind == "declared"}
    assert feeds | publishing <= declared
    personal = [p for p in probes if p.category == "personal-to-ai"]
    # every host of a personal-data service (nodes and database hosts), at both sites, to every AI host
    holders = set()
    for svc in topology.services:
        if svc.data_held is None or svc.data_held.value != "personal" or svc.pseudonymiser:
            continue
        placed = {x for _, x, _ in svc.database.placements()} if svc.database else set()
        holders |= {h.name for h in topology.hosts if h.name in svc.hosts or h.name in placed
                    or (h.cluster in svc.clusters and h.role.value == "k8s_worker")}
    gpu = {h.name for h in topology.hosts if h.role.value == "gpu_worker"}
    assert {p.source[1] for p in personal} == holders and {p.destination[1] for p in personal} == gpu
    assert {h.split("-")[0] for h in holders} == {"gj", "jj"}
    assert all(inside(p.dst, ai_nets) for p in personal)
    back = [p for p in probes if p.category == "ai-to-internal"]
    assert {(p.src, p.dst) for p in back} and all(inside(p.src, ai_nets) and inside(p.dst, internal_nets)
                                                  for p in back)
    across = [p for p in probes if p.category == "ai-bank-to-bank"]
    assert len(across) == 2 and all(inside(p.src, ai_nets) and inside(p.dst, ai_nets) for p in across)
    for p in [*personal, *back, *across]:
        assert not verify._allowed(conns, ipaddress.IPv4Address(p.src), ipaddress.IPv4Address(p.dst),
                                   p.proto, p.port), p


def test_the_ai_segments_are_routed_legs_of_the_gwangju_router(topology: Topology,
                                                               layout: plan.LabPlan) -> None:
    ai = [s for s in topology.segments if s.zone is Zone.AI]
    assert ai and {s.site for s in ai} == {"gwangju"}
    legs = {leg.segment: leg for leg in layout.routers["gwangju"].legs}
    for seg in ai:
        assert legs[seg.name].zone is Zone.AI
    gpu = [layout.hosts[h.name] for h in topology.hosts if h.role.value == "gpu_worker"]
    assert gpu and all({n.zone for n in h.nics} == {Zone.MGMT, Zone.AI} for h in gpu)
