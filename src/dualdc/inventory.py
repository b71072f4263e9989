"""Build the Ansible inventory (groups and hostvars) from the topology.

This is the only place host data reaches Ansible: roles read the ``dualdc_*`` hostvars
below and nothing about hosts is typed into ``group_vars``. The Ansible inventory plugin
(``plugins/inventory/dualdc.py``) and ``invoke inventory`` both call :func:`build`.

Groups: ``site_<site>``, ``tenant_<tenant>``, ``zone_<zone>``, ``role_<role>`` and
``cluster_<cluster>`` (``-`` becomes ``_``), all children of ``all``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from dualdc.databases import pgbackrest_vars, postgresql_vars
from dualdc.flows import inbound_to_host, primary_interface
from dualdc.lab.config import LabConfig, lab_connection_vars, project_root
from dualdc.lab.plan import build as lab_plan
from dualdc.model import Host, HostRole, Topology, Zone


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


def firewall_rules(topology: Topology, host: Host) -> list[dict[str, Any]]:
    """Inbound rules for a host's own nftables: one per (flow, protocol), sources collapsed."""
    by_flow: dict[str, dict[str, Any]] = {}
    for conn in inbound_to_host(topology, host):
        rule = by_flow.setdefault(conn.flow.name, {
            "name": conn.flow.name,
            "protocol": conn.flow.protocol.value,
            "ports": list(conn.ports),
            "purpose": conn.flow.purpose,
            "_sources": [],
        })
        rule["_sources"].extend(conn.source.networks)
    rules = []
    for name in sorted(by_flow):
        rule = by_flow[name]
        rule["sources"] = _collapse(rule.pop("_sources"))
        rules.append(rule)
    return rules


def ssh_sources(topology: Topology) -> list[str]:
    """Networks SSH is accepted from on every host: mgmt segments and bastion hosts."""
    nets = [s.cidr for s in topology.segments if s.zone is Zone.MGMT]
    for host in topology.hosts:
        if host.role is HostRole.BASTION:
            nets.extend(ipaddress.IPv4Network(f"{i.address}/32") for i in host.interfaces)
    return _collapse(nets)


def hostvars(topology: Topology, host: Host) -> dict[str, Any]:
    """Every variable the roles read about one host."""
    env = topology.environment
    sources = host.time_sources or env.time_sources
    log_hosts = [h for h in topology.hosts_at(host.site) if h.role is HostRole.LOG]
    return {
        "ansible_host": str(topology.management_address(host)),
        "ansible_user": env.ssh_user,
        "dualdc_environment": env.name,
        "dualdc_lab": env.lab,
        "dualdc_site": host.site,
        "dualdc_peer_site": topology.dr_peer(host.site),
        "dualdc_rack": host.rack,
        "dualdc_role": host.role.value,
        "dualdc_tenant": host.tenant,
        "dualdc_cluster": host.cluster,
        "dualdc_cpu": host.cpu,
        "dualdc_memory_gib": host.memory_gib,
        "dualdc_bmc": str(host.bmc) if host.bmc else None,
        "dualdc_interfaces": _interfaces(topology, host),
        "dualdc_primary_interface": _primary_interface_name(topology, host),
        "dualdc_mgmt_networks": _collapse([s.cidr for s in topology.segments if s.zone is Zone.MGMT]),
        "dualdc_time_sources": [str(topology.management_address(topology.host(n))) for n in sources],
        "dualdc_log_hosts": [str(topology.management_address(h)) for h in log_hosts],
        "dualdc_is_log_host": host.role is HostRole.LOG,
        "dualdc_firewall_rules": firewall_rules(topology, host),
        "dualdc_ssh_sources": ssh_sources(topology),
        "dualdc_controller_networks": [],
        "dualdc_admins": [{"name": a.name, "ssh_public_key": a.ssh_public_key, "sudo": a.sudo}
                          for a in env.admins],
        "dualdc_mirrors": env.mirrors.model_dump(mode="json"),
        "dualdc_access": env.access.model_dump(mode="json"),
        "dualdc_log_retention": env.log_retention.model_dump(mode="json"),
        "dualdc_cluster_pod_cidr": str(topology.cluster(host.cluster).pod_cidr) if host.cluster else None,
        "dualdc_cluster_service_cidr": (str(topology.cluster(host.cluster).service_cidr)
                                        if host.cluster else None),
        "dualdc_kubernetes_version": (topology.cluster(host.cluster).kubernetes_version
                                      if host.cluster else None) or env.kubernetes_version,
        "dualdc_postgresql": postgresql_vars(topology, host),
        "dualdc_pgbackrest": pgbackrest_vars(topology, host),
        "dualdc_pki": None if env.pki is None else {
            "ca_name": env.pki.ca_name,
            "directory": str(project_root() / env.pki.directory),
        },
    }


def lab_controller_networks(topology: Topology) -> list[str]:
    """Where the lab's controller (this machine, running Ansible) connects to the hosts from.

    On the lab twin the controller reaches each site over its own link (outside the model's
    mgmt segments); the hosts' firewalls accept SSH from these addresses as well. In other
    environments the operations host sits in a mgmt segment or behind a bastion: none.
    """
    cache = topology.cache
    if "lab_controller_networks" not in cache:
        plan = lab_plan(topology, LabConfig.load(topology.environment.name).infra)
        cache["lab_controller_networks"] = [f"{r.controller_peer}/32" for r in plan.routers.values()]
    return list(cache["lab_controller_networks"])


def build(topology: Topology) -> dict[str, Any]:
    """The inventory as ``{"groups": {group: [hosts]}, "hostvars": {host: vars}}``."""
    groups: dict[str, list[str]] = {}
    hvars: dict[str, dict[str, Any]] = {}
    for host in topology.hosts:
        zones = {topology.segment(i.segment).zone.value for i in host.interfaces}
        memberships = [group_name("site", host.site), group_name("tenant", host.tenant),
                       group_name("role", host.role.value)]
        memberships += [group_name("zone", z) for z in sorted(zones)]
        if host.cluster:
            memberships.append(group_name("cluster", host.cluster))
        for group in memberships:
            groups.setdefault(group, []).append(host.name)
        hvars[host.name] = hostvars(topology, host)
        if topology.environment.lab:
            hvars[host.name].update(lab_connection_vars(topology.environment.name))
            hvars[host.name]["dualdc_controller_networks"] = lab_controller_networks(topology)
    return {"groups": dict(sorted(groups.items())), "hostvars": hvars}
