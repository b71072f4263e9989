"""The site routers' firewall: an nftables ruleset per site, built from the model's flows.

Default deny. Allowed through a site's router:

- replies (``ct state established,related``);
- every connection of :func:`dualdc.flows.connections` that touches the site (or the
  outside: internet, institutions) and crosses segments — source networks to destination
  networks, protocol and ports exactly as expanded there (flows are never re-derived);
- the controller's SSH to the site's management segments (``iifname "controller"``).

Traffic inside one segment is switched by its bridge and never reaches the router, like
on a real L2 segment: it is the hosts' own firewalls that filter it.

The ruleset replaces the table ``inet dualdc_lab`` atomically (one ``nft -f``); nothing
else in the router's namespace is touched.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from dualdc.flows import Connection, connections
from dualdc.lab.plan import ROUTER_CONTROLLER_DEV, RouterPlan
from dualdc.model import Topology

TABLE = "dualdc_lab"
ANY = ipaddress.IPv4Network("0.0.0.0/0")


def relevant(conn: Connection, site: str) -> bool:
    """Whether a connection passes the given site's router."""
    src, dst = conn.source, conn.destination
    if src.segment is not None and src.segment == dst.segment:
        return False
    return site in (src.site, dst.site) or src.site is None or dst.site is None


def _set(nets: Iterable[ipaddress.IPv4Network]) -> str:
    items = sorted({str(n) for n in ipaddress.collapse_addresses(nets)})
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _comment(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9 _.:>/-]", "", text)[:120]


def rule(conn: Connection) -> str:
    """One nft rule for one connection."""
    parts = []
    if ANY not in conn.source.networks:
        parts.append(f"ip saddr {_set(conn.source.networks)}")
    if ANY not in conn.destination.networks:
        parts.append(f"ip daddr {_set(conn.destination.networks)}")
    proto = conn.flow.protocol.value
    if conn.ports:
        ports = [str(p) for p in sorted(set(conn.ports))]
        parts.append(f"{proto} dport {ports[0] if len(ports) == 1 else '{ ' + ', '.join(ports) + ' }'}")
    else:
        parts.append(f"meta l4proto {proto}")
    comment = _comment(f"flow {conn.flow.name}: {conn.source.ref} > {conn.destination.ref}")
    return " ".join(parts) + f' counter accept comment "{comment}"'


def ruleset(topology: Topology, router: RouterPlan) -> str:
    """The complete nft script for one site's router."""
    rules: list[str] = []
    seen: set[str] = set()
    for conn in connections(topology):
        if relevant(conn, router.site):
            text = rule(conn)
            if text not in seen:
                seen.add(text)
                rules.append(text)
    mgmt = _set(router.mgmt_networks) if router.mgmt_networks else None
    controller = (
        [f'iifname "{ROUTER_CONTROLLER_DEV}" ip daddr {mgmt} tcp dport 22 counter accept '
         f'comment "controller: SSH to the management segments"'] if mgmt else [])
    lines = [
        f"# dualdc lab: firewall of site {router.site}, generated from the topology's flows",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        "    ct state established,related accept",
        "    ct state invalid drop",
        *(f"    {r}" for r in controller),
        *(f"    {r}" for r in rules),
        '    counter comment "denied: not declared"',
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy drop;",
        "    ct state established,related accept",
        '    iifname "lo" accept',
        "    icmp type echo-request accept",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"
