"""The layer interface: what ``deploy`` and ``drift`` iterate over.

Each layer of an environment (``environment.layers``: model, hosts, stacks, data, lab) is one
:class:`OpsLayer` object, registered by name with :func:`register`:

- :meth:`OpsLayer.check` compares what runs with the model and returns the layer's part of a
  drift report (``invoke drift``, the deploy's plan and its verification after each site);
- :meth:`OpsLayer.apply_site` applies the layer to one site (``invoke deploy``, site by site, in
  the topology's deploy order), where the layer can be applied site by site (hosts, stacks);
- :meth:`OpsLayer.apply_after` runs once after every site (the database hosts' second
  converge, the replication stack, the lab's reachability probe).

Adding a layer is one new module with its class and one :func:`register` call in it, plus its
module's name in :data:`MODULES` (so the registry is complete without importing every
layer's dependencies at start-up). The orchestration knows no layer by name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dualdc.model import Layer, Topology
from dualdc.reports.drift import CoverageGap, LayerReport

#: The modules that register the layers, in the order deploy and drift go through them.
MODULES = ("dualdc.ops.drift", "dualdc.ops.stacklayer", "dualdc.ops.datalayer", "dualdc.ops.labprobe")

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class CheckSpec:
    """What a layer's check is given: the run's loaded topology and options (never loaded again)."""

    topology: Topology
    sites: list[str]
    """The sites the run covers, in deploy order."""
    site: str | None = None
    """``--site``, or None for the whole environment."""
    backend: str | None = None
    progress: Progress = _quiet
    on_event: Callable[..., None] | None = None
    run_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Checked:
    """A layer's part of the drift report."""

    layer: LayerReport
    coverage: list[CoverageGap] = field(default_factory=list)
    """Tasks check mode could not evaluate (the hosts layer)."""


class Deploying(Protocol):
    """What a deploy offers a layer's apply: its spec's settings and its steps (see ``dualdc.ops.deploy``)."""

    @property
    def topology(self) -> Topology: ...
    @property
    def site(self) -> str | None:
        """``--site``, or None for the whole environment."""
    @property
    def backend(self) -> str | None: ...
    @property
    def progress(self) -> Progress: ...
    @property
    def on_event(self) -> Callable[..., None] | None: ...
    @property
    def run_options(self) -> dict[str, Any]: ...

    def start(self, site: str | None, layer: Layer, action: str) -> Any:
        """Record a step as started; returns it for :meth:`end`."""

    def end(self, step: Any, status: str, detail: str) -> None:
        """Finish a step: ``applied``, ``rendered``, ``verified`` or ``failed``."""

    def applied(self, what: str) -> None:
        """Mark ``what`` (``site:layer``) applied."""


class LayerUnavailable(Exception):
    """A layer cannot be applied here at all (the deploy refuses before planning, exit 1)."""


class OpsLayer:
    """One layer of an environment for ``deploy`` and ``drift``; subclasses set :attr:`kind`."""

    kind: Layer
    per_site: bool = False
    """Applied site by site (and then verified per site) by ``deploy``."""

    def declared(self, topology: Topology) -> bool:
        """Whether the environment has this layer (``environment.layers``) to check."""
        return self.kind in topology.environment.layers

    def note(self, spec: CheckSpec) -> str | None:
        """The progress line before the check (None: the check says what it does itself)."""
        return None

    def check(self, spec: CheckSpec) -> Checked:
        raise NotImplementedError

    def prepare(self, topology: Topology) -> None:
        """Raise :class:`LayerUnavailable` if the layer cannot be applied in this environment."""

    def planned_after(self, topology: Topology, site: str | None) -> list[str]:
        """What :meth:`apply_after` will apply (``what:layer``), for the deploy report's not-applied list."""
        return []

    def apply_site(self, deploy: Deploying, site: str) -> bool:
        """Apply the layer to one site; False when it failed (the deploy stops there)."""
        return True

    def apply_after(self, deploy: Deploying) -> bool:
        """Once every site is applied and verified; False when it failed."""
        return True


_REGISTRY: dict[Layer, OpsLayer] = {}


def register(layer: OpsLayer) -> OpsLayer:
    """Register a layer by its name (one object per layer); returns it."""
    if layer.kind in _REGISTRY and type(_REGISTRY[layer.kind]) is not type(layer):
        raise ValueError(f"layer {layer.kind.value!r} is registered twice")
    _REGISTRY[layer.kind] = layer
    return layer


def registered() -> list[OpsLayer]:
    """Every registered layer, in :data:`MODULES` order (then the order each module registers them)."""
    for module in MODULES:
        importlib.import_module(module)
    position = {layer.kind: i for i, layer in enumerate(_REGISTRY.values())}

    def order(layer: OpsLayer) -> tuple[int, int]:
        module = type(layer).__module__
        return (MODULES.index(module) if module in MODULES else len(MODULES), position[layer.kind])

    return sorted(_REGISTRY.values(), key=order)


def environment_layers(topology: Topology, wanted: set[Layer] | None = None) -> list[OpsLayer]:
    """The layers of ``topology``'s environment (those it declares and has), restricted to ``wanted``."""
    return [layer for layer in registered()
            if layer.declared(topology) and (wanted is None or layer.kind in wanted)]
