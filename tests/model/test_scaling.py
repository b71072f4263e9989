"""The shape of the inventory's cost: whole-topology work happens once, not once per host.

Deterministic, not timed (timings are benchmarks/bench_scale.py's): the lists of the
topology are replaced by lists that count how often they are walked, and the functions that
compute a value of the whole topology count their calls. Building the inventory must walk
each list a fixed number of times and compute each whole-topology value once, whatever the
number of hosts: the same counts for the 72-host production and for production with every
host declared twice over (renamed copies), which would show any per-host scan.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from dualdc import flows, inventory
from dualdc.loader import load_environment
from dualdc.model import Topology
from dualdc.stacks.dr import backup_target, namespace_backups
from dualdc.stacks.segmentation import cluster_policies

WALKED = ("hosts", "segments", "services", "clusters", "flows", "sites", "tenants")


class _CountedList(list[Any]):
    """A list that counts how often it is iterated."""

    walks: Counter[str]
    name: str

    def __iter__(self) -> Any:
        self.walks[self.name] += 1
        return super().__iter__()


def _count_walks(topology: Topology, walks: Counter[str]) -> None:
    for name in WALKED:
        counted = _CountedList(getattr(topology, name))
        counted.walks, counted.name = walks, name
        object.__setattr__(topology, name, counted)  # a plain swap: no validation, same items
    topology.cache.clear()


def _counts(topology: Topology, monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], Counter[str]]:
    walks: Counter[str] = Counter()
    calls: Counter[str] = Counter()

    def counted(module: Any, name: str) -> None:
        original = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for name in ("ssh_sources", "mgmt_networks", "all_vars", "group_vars", "lab_controller_networks"):
        counted(inventory, name)
    counted(flows, "connections")
    _count_walks(topology, walks)
    inventory.layers(topology)
    return Counter(walks), Counter(calls)  # copies: later walks (by the test itself) do not count


def _doubled(topology: Topology) -> Topology:
    """The topology with a renamed copy of every host added (same segments, more hosts)."""
    data = topology.model_dump(mode="python")
    used = {str(i["address"]) for h in data["hosts"] for i in h["interfaces"]}
    used |= {str(h["bmc"]) for h in data["hosts"] if h.get("bmc")}
    free: dict[str, Any] = {}
    for seg in topology.segments:
        free[seg.name] = (a for a in seg.cidr.hosts() if str(a) not in used and a != seg.gateway)
    copies = []
    for host in data["hosts"]:
        copy = {**host, "name": f"{host['name']}-b", "bmc": None, "interfaces": [
            {**i, "address": next(free[i["segment"]])} for i in host["interfaces"]]}
        copies.append(copy)
    data["hosts"] = data["hosts"] + copies
    return Topology.model_validate(data)


@pytest.fixture(scope="module")
def production() -> Topology:
    return load_environment("production")


def test_whole_topology_values_are_computed_once(production: Topology,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, calls = _counts(production, monkeypatch)
    for name in ("ssh_sources", "mgmt_networks", "all_vars", "group_vars", "connections"):
        assert calls[name] <= 1, f"{name} computed {calls[name]} times for {len(production.hosts)} hosts"


def test_each_list_is_walked_a_fixed_number_of_times_whatever_the_number_of_hosts(
        production: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    prod_walks, _ = _counts(production, monkeypatch)
    doubled = _doubled(production)
    assert len(doubled.hosts) == 2 * len(production.hosts)
    doubled_walks, _ = _counts(doubled, monkeypatch)
    assert prod_walks == doubled_walks
    assert all(n <= 5 for n in prod_walks.values()), prod_walks


def test_indexed_lookups_answer_like_a_scan(production: Topology) -> None:
    for site in production.sites:
        assert production.hosts_at(site.name) == [h for h in production.hosts if h.site == site.name]
    for cluster in production.clusters:
        assert production.cluster_hosts(cluster.name) == [h for h in production.hosts
                                                          if h.cluster == cluster.name]
    extra = production.model_copy(deep=True)
    extra.hosts = extra.hosts[:-1]
    assert len(extra.hosts_at(extra.hosts[0].site)) == \
        len([h for h in extra.hosts if h.site == extra.hosts[0].site])


def test_the_stacks_walk_the_connections_a_fixed_number_of_times_whatever_the_number_of_clusters(
        production: Topology) -> None:
    """Every cluster's NetworkPolicies and backup target come from indexes and values built once:
    the connections and the topology's lists are walked a few times for all clusters, the
    connections as often as for one cluster (each cluster scanning the connections for its backup target, and
    collapsing every segment for its internet peers, made the render quadratic)."""
    def walks(clusters: int) -> tuple[Counter[str], Any]:
        topology = production.model_copy()
        counter: Counter[str] = Counter()
        _count_walks(topology, counter)
        counted = _CountedList(flows.connections(topology))
        counted.walks, counted.name = counter, "connections"
        topology.cache["connections"] = counted
        chosen = topology.clusters[:clusters]
        built = [cluster_policies(topology, c) for c in chosen]
        targets = sorted({(b.cluster, b.target_site) for b in namespace_backups(topology).backups
                          if b.cluster in {c.name for c in chosen}})
        built.append([backup_target(topology, *key) for key in targets])
        return counter, built

    one, _ = walks(1)
    every, built = walks(len(production.clusters))
    assert len(production.clusters) >= 6 and built[-1]  # several clusters, some backup targets
    # a list walked per cluster would be walked at least once per cluster: 22 and 44 times before
    assert max(every.values()) <= 3, f"{every} walks for {len(production.clusters)} clusters, {one} for one"
    assert every["connections"] == one["connections"]
