"""Ansible strategy ``dualdc_free``: the free strategy over Mitogen, with warm caches in every worker.

Why. On a controller with few cores, a check of the site playbook is CPU-bound, and two costs
dominate it (measured with py-spy on the lab twin):

- **On the hosts**, every module run starts a Python interpreter and imports Ansible's module
  utilities from a fresh AnsiballZ zip (no bytecode cache), about 0.3 CPU-s a module. Mitogen
  (``mitogen_free``) keeps one interpreter per host over the same SSH connection, with the
  module utilities imported once.
- **On the controller**, Ansible forks a worker process for every task on every host. Each
  worker inherits the parent's caches as they were at the fork, and the parent never loads
  Jinja's filter and test plugins itself, so every worker imported and wrapped all of them
  again the first time a task used one. Loading them once in the parent, before the first
  fork, hands every worker a warm cache. ``gc.freeze()`` then moves the parent's objects out
  of the collector's reach, so workers neither scan them nor copy their pages on write.

The tasks, their order, their conditions, check and diff mode and the results are those of
Ansible's own free strategy: this changes how tasks are carried out, never which. It is
enabled by dualdc's ansible-runner wrapper (``ANSIBLE_STRATEGY_PLUGINS``); stock
``ansible-playbook`` runs keep Ansible's defaults.
"""

from __future__ import annotations

import gc
from typing import Any

import ansible_mitogen.loaders
import ansible_mitogen.strategy
from ansible.plugins.loader import filter_loader, test_loader

DOCUMENTATION = r"""
name: dualdc_free
short_description: The free strategy over Mitogen, with plugin caches warmed before workers fork
description:
  - Runs like Ansible's free strategy (each host at its own pace) through Mitogen's connection
    multiplexer, and loads the Jinja filter and test plugins once in the controller so that
    every forked worker inherits them.
requirements:
  - mitogen (ansible_mitogen) importable by the controller's Python
"""

_Free: Any = ansible_mitogen.loaders.strategy_loader.get("free", class_only=True)


def warm_caches() -> None:
    """Load what every worker would otherwise load for itself, then freeze the parent's heap."""
    for loader in (filter_loader, test_loader):
        # Jinja2Loader builds its table of every builtin and legacy plugin on first use.
        for _plugin in loader.all():
            pass
    gc.collect()
    gc.freeze()


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Free):  # type: ignore[misc]
    def run(self, iterator: Any, play_context: Any, result: int = 0) -> Any:
        warm_caches()
        return super().run(iterator, play_context)
