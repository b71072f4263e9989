"""Ansible inventory plugin: the inventory of a dualdc environment, built from its topology.

Each ``inventories/<env>/`` folder holds an ``inventory.dualdc.yml`` with ``plugin: dualdc``;
this plugin then loads the whole folder's topology through :mod:`dualdc.loader`, so
``ansible-inventory -i inventories/<env> --graph`` works from the repository root.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: dualdc
short_description: Inventory of a dualdc environment, from its topology model
description:
  - Loads the topology YAML in the folder of the source file (inventories/<env>/),
    validates it with the dualdc model and adds every host with its groups
    (site_, tenant_, zone_, role_, cluster_) and dualdc_* hostvars.
  - An invalid topology fails with the same readable errors as C(invoke validate).
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    choices: ['dualdc']
"""

import gc
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

MARKER = "inventory.dualdc.yml"


class InventoryModule(BaseInventoryPlugin):  # type: ignore[misc]
    NAME = "dualdc"

    def verify_file(self, path: str) -> bool:
        return Path(path).name == MARKER and super().verify_file(path)

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            # Imported here so a missing dualdc gives Ansible a clear parser error.
            from dualdc import inventory as dualdc_inventory  # noqa: PLC0415
            from dualdc.loader import TopologyError, gc_paused, load_topology  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise AnsibleParserError(f"dualdc is not installed in Ansible's Python: {exc}") from exc
        # Everything built here stays alive (the inventory) or is dropped at the end (the
        # topology): the cyclic collector, paused meanwhile, would only rescan it all, again
        # and again, while Ansible copies each value in.
        with gc_paused():
            try:
                topology = load_topology(Path(path).parent)
            except TopologyError as exc:
                raise AnsibleParserError(f"invalid topology:\n{exc}") from None
            built = dualdc_inventory.layers(topology)
            topology.cache.clear()  # its derived data refers back to it: let it go without a collection
            del topology
            self._populate(built)
            del built
            # The inventory lives as long as the Ansible process: keep the collector from
            # rescanning it (and from touching its pages after Ansible forks its workers).
            gc.freeze()

    def _populate(self, built: dict[str, Any]) -> None:
        inventory = self.inventory
        for group, hosts in built["groups"].items():
            inventory.add_group(group)
            for host in hosts:
                inventory.add_host(host, group=group)
        # Values of the whole environment or of a group are set once on that group;
        # Ansible merges them into each host's variables (all < group < host).
        for group, group_vars in built["group_vars"].items():
            for key, value in group_vars.items():
                inventory.set_variable(group, key, value)
        for host, host_vars in built["host_vars"].items():
            for key, value in host_vars.items():
                inventory.set_variable(host, key, value)
