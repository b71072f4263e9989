"""Build the Ansible inventory (groups, group vars and host vars) from the topology.

This is the only place host data reaches Ansible: roles read the ``dualdc_*`` variables
below and nothing about hosts is typed into ``group_vars`` files. The Ansible inventory
plugin (``plugins/inventory/dualdc.py``) calls :func:`layers`; ``invoke inventory`` and the
tests call :func:`build`, which also gives each host's variables merged as Ansible merges them.

Groups: ``site_<site>``, ``tenant_<tenant>``, ``zone_<zone>``, ``role_<role>`` and
``cluster_<cluster>`` (``-`` becomes ``_``), all children of ``all``.

The cost is linear in the size of the topology. A value of the whole topology (SSH
sources, mgmt networks, admins, mirrors, …) is computed once and set on ``all``; a value of
a site, tenant, role or cluster once on that group; only what differs from host to host
(addresses, interfaces, firewall rules) is set on the host. Each key is set on ``all`` and at
most one other group a host is in, so Ansible's merge order of groups of equal depth never
decides a value: ``all`` < that group < the host.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from dualdc.base import paths
from dualdc.databases import pgbackrest_vars, postgresql_vars
from dualdc.flows import Connection, inbound_groups, primary_interface
from dualdc.loader import gc_paused
from dualdc.model import Host, HostRole, Topology, zone_traits


def group_name(prefix: str, name: str) -> str:
    """An Ansible-safe group name."""
    return f"{prefix}_{name.replace('-', '_')}"


def _interfaces(topology: Topology, host: Host) -> list[dict[str, Any]]:
    found = []
    for iface in host.interfaces:
        seg = topology.segment(iface.segment)
        found.append({
            "name": iface.name,
            "segment": seg.name,
            "zone": seg.zone.value,
            "tenant": seg.tenant,
            "address": str(iface.address),
            "prefix": seg.cidr.prefixlen,
            "cidr": str(seg.cidr),
            "gateway": str(seg.gateway),
            "vlan": seg.vlan,
            "members": list(iface.members),
            "parent": iface.parent,
        })
    return found


def _primary_interface_name(topology: Topology, host: Host) -> str:
    """The interface carrying the default route: the one in the host's primary segment."""
    segment = primary_interface(topology, host)
    return next(i.name for i in host.interfaces if i.segment == segment)


def _collapse(networks: list[ipaddress.IPv4Network]) -> list[str]:
    return [str(n) for n in ipaddress.collapse_addresses(networks)]


def _rules(entries: list[tuple[int, Connection]], collapsed: dict[tuple[int, ...], list[str]]
           ) -> list[dict[str, Any]]:
    """One rule per flow of these connections (all of one destination), sources collapsed.

    ``collapsed`` remembers collapsed source lists by the identity of their networks (the
    expanded flows' endpoints live as long as the topology's cache, and hashing the
    ``ipaddress`` objects themselves would cost more than it saves). Each rule keeps the
    networks its flow names at the destination under ``"_to"``, for :func:`firewall_rules` to
    pick the host's own addresses from.
    """
    by_flow: dict[str, dict[str, Any]] = {}
    for _, conn in entries:
        rule = by_flow.get(conn.flow.name)
        if rule is None:
            rule = by_flow[conn.flow.name] = {
                "name": conn.flow.name,
                "protocol": conn.flow.protocol.value,
                "ports": list(conn.ports),
                "purpose": conn.flow.purpose,
                "sources": [],
                "_to": [],
            }
        rule["sources"].extend(conn.source.networks)
        rule["_to"].extend(conn.destination.networks)
    for rule in by_flow.values():
        sources = rule["sources"]
        key = tuple(map(id, sources))
        found = collapsed.get(key)
        if found is None:
            found = collapsed[key] = _collapse(sources)
        rule["sources"] = found
    return list(by_flow.values())


def _own_addresses(host: Host, networks: list[ipaddress.IPv4Network]) -> list[str]:
    """The host's addresses inside these networks, as /32s in interface order."""
    return [f"{i.address}/32" for i in host.interfaces if any(i.address in n for n in networks)]


def firewall_rules(topology: Topology, host: Host) -> list[dict[str, Any]]:
    """Inbound rules for a host's own nftables: one per (flow, protocol), sources collapsed.

    Each rule accepts only at the host's own addresses that its flow names (``destinations``):
    a host in several segments takes a flow at the address the flow reaches, never at its
    others. The rules of a destination shared by several hosts (a segment, a service) are
    computed once and copied; each flow's connections come from one destination, so a rule is
    never split between two of them.
    """
    cache: dict[str, list[dict[str, Any]]] = topology.cache.setdefault("inventory.rules", {})
    collapsed: dict[tuple[int, ...], list[str]] = topology.cache.setdefault("inventory.collapsed", {})
    found: list[dict[str, Any]] = []
    for key, entries in inbound_groups(topology, host):
        rules = cache.get(key)
        if rules is None:
            rules = _rules(entries, collapsed)
            if not key.startswith("host:"):  # a host's own destination is needed once
                cache[key] = rules
        found.extend(rules)
    found.sort(key=lambda r: r["name"])
    built = []
    for r in found:
        destinations = _own_addresses(host, r["_to"])
        if not destinations:  # a connection lands on a host only at one of its addresses
            raise ValueError(f"flow {r['name']} lands on {host.name} at none of its addresses")
        built.append({"name": r["name"], "protocol": r["protocol"], "ports": list(r["ports"]),
                      "purpose": r["purpose"], "sources": list(r["sources"]), "destinations": destinations})
    return built


def mgmt_networks(topology: Topology) -> list[str]:
    """Every mgmt segment's network, collapsed."""
    return _collapse([s.cidr for s in topology.segments if zone_traits(s.zone).admin])


def ssh_sources(topology: Topology) -> list[str]:
    """Networks SSH is accepted from on every host: mgmt segments and bastion hosts."""
    nets = [s.cidr for s in topology.segments if zone_traits(s.zone).admin]
    for host in topology.hosts:
        if host.role is HostRole.BASTION:
            nets.extend(ipaddress.IPv4Network(f"{i.address}/32") for i in host.interfaces)
    return _collapse(nets)


def time_sources(topology: Topology, names: list[str]) -> list[str]:
    """The management addresses of the named time-source hosts."""
    return [str(topology.management_address(topology.host(n))) for n in names]


#: The first line of every file the roles write (``{{ ansible_managed | comment }}``). Set as a
#: variable of ``all`` rather than in ansible.cfg: the setting is deprecated since ansible-core
#: 2.19, and the inventory reaches every run (stock, wrapper, collection, AWX) alike.
MANAGED = "Managed by dualdc (Ansible); local changes are reverted and reported as drift."


def all_vars(topology: Topology) -> dict[str, Any]:
    """Variables with one value for every host of the environment: set on ``all``.

    The per-group keys (``dualdc_is_log_host``, the cluster's) get their value for a host
    outside any such group here; the group sets the other value.
    """
    env = topology.environment
    found: dict[str, Any] = {
        "ansible_managed": MANAGED,
        "ansible_user": env.ssh_user,
        "dualdc_environment": env.name,
        "dualdc_lab": env.lab,
        "dualdc_mgmt_networks": mgmt_networks(topology),
        "dualdc_time_sources": time_sources(topology, env.time_sources),
        "dualdc_is_log_host": False,
        "dualdc_ssh_sources": ssh_sources(topology),
        "dualdc_controller_networks": [],
        "dualdc_admins": [{"name": a.name, "ssh_public_key": a.ssh_public_key, "sudo": a.sudo}
                          for a in env.admins],
        "dualdc_mirrors": env.mirrors.model_dump(mode="json"),
        "dualdc_access": env.access.model_dump(mode="json"),
        "dualdc_log_retention": env.log_retention.model_dump(mode="json"),
        "dualdc_cluster": None,
        "dualdc_cluster_pod_cidr": None,
        "dualdc_cluster_service_cidr": None,
        "dualdc_kubernetes_version": env.kubernetes_version,
        "dualdc_postgresql": None,
        "dualdc_pgbackrest": None,
        "dualdc_pki": None,
    }
    if env.pki is not None:

        found["dualdc_pki"] = {"ca_name": env.pki.ca_name,
                               "directory": str(paths.project_root() / env.pki.directory)}
    if env.lab:
        found.update(lab_connection_vars(env.name))
        found["dualdc_controller_networks"] = lab_controller_networks(topology)
    return found


def group_vars(topology: Topology) -> dict[str, dict[str, Any]]:
    """Variables set on a group: ``all``, then one value per site, tenant, role and cluster."""
    env = topology.environment
    log_hosts: dict[str, list[str]] = {}
    for host in topology.hosts:
        if host.role is HostRole.LOG:
            log_hosts.setdefault(host.site, []).append(str(topology.management_address(host)))
    found: dict[str, dict[str, Any]] = {"all": all_vars(topology)}
    for site in topology.sites:
        found[group_name("site", site.name)] = {
            "dualdc_site": site.name,
            "dualdc_peer_site": topology.dr_peer(site.name),
            "dualdc_log_hosts": log_hosts.get(site.name, []),
        }
    for tenant in topology.tenants:
        found[group_name("tenant", tenant.name)] = {"dualdc_tenant": tenant.name}
    for role in HostRole:
        found[group_name("role", role.value)] = {"dualdc_role": role.value}
    found[group_name("role", HostRole.LOG.value)]["dualdc_is_log_host"] = True
    for cluster in topology.clusters:
        found[group_name("cluster", cluster.name)] = {
            "dualdc_cluster": cluster.name,
            "dualdc_cluster_pod_cidr": str(cluster.pod_cidr),
            "dualdc_cluster_service_cidr": str(cluster.service_cidr),
            "dualdc_kubernetes_version": cluster.kubernetes_version or env.kubernetes_version,
        }
    return found


def own_vars(topology: Topology, host: Host) -> dict[str, Any]:
    """The variables that differ from host to host: set on the host itself."""
    found: dict[str, Any] = {
        "ansible_host": str(topology.management_address(host)),
        "dualdc_rack": host.rack,
        "dualdc_cpu": host.cpu,
        "dualdc_memory_gib": host.memory_gib,
        "dualdc_bmc": str(host.bmc) if host.bmc else None,
        "dualdc_interfaces": _interfaces(topology, host),
        "dualdc_primary_interface": _primary_interface_name(topology, host),
        "dualdc_firewall_rules": firewall_rules(topology, host),
    }
    if host.time_sources:
        found["dualdc_time_sources"] = time_sources(topology, host.time_sources)
    # A db host's PostgreSQL and a backup host's pgBackRest settings (None, from all, elsewhere).
    for key, value in (("dualdc_postgresql", postgresql_vars(topology, host)),
                       ("dualdc_pgbackrest", pgbackrest_vars(topology, host))):
        if value is not None:
            found[key] = value
    return found


class LabConnectionError(ValueError):
    """The lab's published connection data cannot be read."""


def lab_connection(env: str) -> dict[str, Any]:
    """What ``lab.up`` published for the inventory (:func:`dualdc.base.paths.lab_connection`).

    ``{"controller_networks": [...], "private_key": path, "known_hosts": path}``. Before the lab
    is first built nothing is published: the key and known_hosts are where ``lab.up`` will put
    them, and no controller networks (there is no lab to connect to yet).
    """
    path = paths.lab_connection(env)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as exc:
        raise LabConnectionError(f"the lab's connection data {path} is unreadable ({exc}): "
                                 "run invoke lab.up to publish it again") from None
    if not isinstance(data, dict) or not all(isinstance(n, str) for n in data.get("controller_networks", [])):
        raise LabConnectionError(f"the lab's connection data {path} is not what lab.up writes: "
                                 "run invoke lab.up to publish it again")
    return {
        "controller_networks": list(data.get("controller_networks", [])),
        "private_key": str(data.get("private_key") or paths.lab_private_key(env)),
        "known_hosts": str(data.get("known_hosts") or paths.lab_known_hosts(env)),
    }


def lab_connection_vars(env: str) -> dict[str, str]:
    """Ansible connection variables of a lab environment's hosts: the lab key, host key checking on."""
    published = lab_connection(env)
    return {
        "ansible_ssh_private_key_file": published["private_key"],
        "ansible_ssh_common_args": (f"-o UserKnownHostsFile={published['known_hosts']} "
                                    "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"),
    }


def lab_controller_networks(topology: Topology) -> list[str]:
    """Where the lab's controller (this machine, running Ansible) connects to the hosts from.

    On the lab twin the controller reaches each site over its own link (outside the model's
    mgmt segments); the hosts' firewalls accept SSH from these addresses as well. The lab
    publishes them when it is built (``lab.up``). In other environments the operations host
    sits in a mgmt segment or behind a bastion: none.
    """
    cache = topology.cache
    if "lab_controller_networks" not in cache:
        cache["lab_controller_networks"] = lab_connection(topology.environment.name)["controller_networks"]
    return list(cache["lab_controller_networks"])


def memberships(topology: Topology, host: Host) -> list[str]:
    """The groups a host is in (besides ``all``)."""
    zones = {topology.segment(i.segment).zone.value for i in host.interfaces}
    found = [group_name("site", host.site), group_name("tenant", host.tenant),
             group_name("role", host.role.value)]
    found += [group_name("zone", z) for z in sorted(zones)]
    if host.cluster:
        found.append(group_name("cluster", host.cluster))
    return found


def layers(topology: Topology) -> dict[str, Any]:
    """The inventory as Ansible holds it.

    ``{"groups": {group: [hosts]}, "group_vars": {group: vars}, "host_vars": {host: vars}}``;
    ``group_vars`` has ``all`` and only the groups that have hosts.
    """
    groups: dict[str, list[str]] = {}
    host_vars: dict[str, dict[str, Any]] = {}
    with gc_paused():  # builds only objects that stay alive (see dualdc.loader.gc_paused)
        for host in topology.hosts:
            for group in memberships(topology, host):
                groups.setdefault(group, []).append(host.name)
            host_vars[host.name] = own_vars(topology, host)
    gvars = {g: v for g, v in group_vars(topology).items() if g == "all" or g in groups}
    return {"groups": dict(sorted(groups.items())), "group_vars": gvars, "host_vars": host_vars}


def static(built: dict[str, Any]) -> dict[str, Any]:
    """:func:`layers`' result in the shape of Ansible's YAML inventory (``all``: vars, hosts, children).

    What the wrapper hands ansible-runner, so a run uses the inventory it has already built
    from the loaded topology instead of loading the topology again inside Ansible. The
    variables land where the plugin sets them: ``all``'s on ``all``, a group's on the group,
    a host's own on the host.
    """
    gvars: dict[str, dict[str, Any]] = built["group_vars"]
    return {"all": {
        "vars": gvars["all"],
        "hosts": built["host_vars"],
        "children": {group: {"hosts": {name: None for name in hosts}, "vars": gvars.get(group, {})}
                     for group, hosts in built["groups"].items()},
    }}


def build(topology: Topology) -> dict[str, Any]:
    """:func:`layers`, plus ``"hostvars"``: each host's variables merged as Ansible merges them.

    ``all``'s variables, then those of the host's groups (no two of which set the same key),
    then the host's own.
    """
    built = layers(topology)
    gvars: dict[str, dict[str, Any]] = built["group_vars"]
    member_of: dict[str, list[str]] = {}
    for group, hosts in built["groups"].items():
        for name in hosts:
            member_of.setdefault(name, []).append(group)
    merged: dict[str, dict[str, Any]] = {}
    for name, own in built["host_vars"].items():
        found = dict(gvars["all"])
        for group in member_of.get(name, []):
            found.update(gvars.get(group, {}))
        found.update(own)
        merged[name] = found
    built["hostvars"] = merged
    return built
