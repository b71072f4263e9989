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
  - Every value is data, never a template - the plugin declares C(trusted_by_default=False),
    so ansible-core never trusts a string it sets as a template, and a C({{ ... }}) in a
    topology is written out literally.
options:
  plugin:
    description:
      - Marks the file as a source for this plugin. C(dualdc) is its name in the repository
        (C(inventory_plugins = plugins/inventory)), C(jbfg.dualdc.dualdc) in the collection;
        either name is accepted by either copy, so one file serves both.
    required: true
    choices: ['dualdc', 'jbfg.dualdc.dualdc']
"""

import gc
import os
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

MARKER = "inventory.dualdc.yml"
#: The plugin's names: in the repository, and in the jbfg.dualdc collection.
NAMES = ("dualdc", "jbfg.dualdc.dualdc")


class InventoryModule(BaseInventoryPlugin):  # type: ignore[misc]
    NAME = "dualdc"
    #: The topology arrives through pull requests: none of its strings is a template. On
    #: ansible-core 2.19 (data tagging) a string an inventory plugin sets is a template only
    #: when trusted; with this False, none is. (The old ``wrap_var`` copy of every value on
    #: top of it took a quarter of a 10,000-host parse and is deprecated for removal in 2.23.)
    trusted_by_default = False

    def verify_file(self, path: str) -> bool:
        return Path(path).name == MARKER and super().verify_file(path)

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        # The marker file may name the plugin either way (see DOCUMENTATION); Ansible's check
        # of the name accepts those the plugin was loaded as, so add the other one.
        loaded_as = getattr(self, "_redirected_names", None) or [self.NAME]
        self._redirected_names = [*loaded_as, *(n for n in NAMES if n not in loaded_as)]
        self._read_config_data(path)
        try:
            # Imported here so a missing dualdc gives Ansible a clear parser error.
            from dualdc import inventory as dualdc_inventory  # noqa: PLC0415
            from dualdc.base.redact import clean  # noqa: PLC0415
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
                raise AnsibleParserError(clean(f"invalid topology:\n{exc}")) from None
            try:
                # Who is primary after dr.switchover/dr.failover (.state/<env>/primaries.json beside
                # the checkout's other run state): a converge follows it and never demotes the new primary.
                from dualdc.base.paths import OPS_STATE_ENV  # noqa: PLC0415
                from dualdc.ops import drstate  # noqa: PLC0415

                checkout = Path(path).resolve().parent.parent.parent
                root = None if os.environ.get(OPS_STATE_ENV) else checkout / ".state"
                drstate.load_and_apply(topology, root)
            except drstate.StateError as exc:
                raise AnsibleParserError(clean(f"cannot build the inventory: {exc}")) from None
            try:
                built = dualdc_inventory.layers(topology)
            except (KeyError, ValueError) as exc:  # the lab's connection data included
                raise AnsibleParserError(clean(f"cannot build the inventory: {exc}")) from None
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
        # None of these strings is trusted as a template (trusted_by_default): Ansible writes
        # each as it is, whatever it holds ({{ lookup('pipe', ...) }} included).
        for group, group_vars in built["group_vars"].items():
            for key, value in group_vars.items():
                inventory.set_variable(group, key, value)
        for host, host_vars in built["host_vars"].items():
            for key, value in host_vars.items():
                inventory.set_variable(host, key, value)
