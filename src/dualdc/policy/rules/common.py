"""Helpers shared by the rules."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from dualdc.flows import Connection, connections
from dualdc.model import Flow, HostRole, Topology, Zone
from dualdc.policy.engine import ParamCheck, ParamValue

ZONE_NAMES = ", ".join(z.value for z in Zone)
ROLE_NAMES = ", ".join(r.value for r in HostRole)


def split(value: ParamValue) -> list[str]:
    return [item.strip() for item in str(value).split(",") if item.strip()]


def zones(value: ParamValue) -> frozenset[Zone]:
    return frozenset(Zone(z) for z in split(value))


def check_lists(**kinds: str) -> ParamCheck:
    """A parameter check for comma-separated lists: ``name='zone'|'role'|'network'``."""

    def check(params: dict[str, ParamValue]) -> dict[str, str]:
        bad: dict[str, str] = {}
        for name, kind in kinds.items():
            items = split(params[name])
            valid: Callable[[str], bool]
            if kind == "zone":
                valid, expected = (lambda z: z in {x.value for x in Zone}), f"zones among {ZONE_NAMES}"
            elif kind == "role":
                valid, expected = (lambda r: r in {x.value for x in HostRole}), f"roles among {ROLE_NAMES}"
            else:
                valid, expected = _is_network, "IPv4 networks like 10.0.0.0/8"
            wrong = [i for i in items if not valid(i)]
            if wrong or not items:
                bad[name] = f"expected a comma-separated list of {expected}, found {params[name]!r}"
        return bad

    return check


def _is_network(text: str) -> bool:
    try:
        ipaddress.IPv4Network(text)
    except ValueError:
        return False
    return True


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def flow_connections(topology: Topology) -> dict[int, list[Connection]]:
    """The connections of each flow, keyed by ``id(flow)`` (cached on the topology)."""
    cache = topology.cache
    if "policy.flow_connections" not in cache:
        grouped: dict[int, list[Connection]] = {id(f): [] for f in topology.flows}
        for conn in connections(topology):
            grouped[id(conn.flow)].append(conn)
        cache["policy.flow_connections"] = grouped
    found: dict[int, list[Connection]] = cache["policy.flow_connections"]
    return found


def conns_of(topology: Topology, flow: Flow) -> list[Connection]:
    return flow_connections(topology).get(id(flow), [])
