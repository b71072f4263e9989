"""The base every layer of dualdc stands on, and the order of those layers.

The base holds what every layer shares and imports nothing of dualdc above it:

- :mod:`dualdc.base.exitcodes`: the exit codes of DESIGN §6 (0 clean, 1 input, 2 findings, 3 unverified);
- :mod:`dualdc.base.redact`: the one scrubbing of every message, report and log;
- :mod:`dualdc.base.files`: atomic file writes (a reader never sees half a file);
- :mod:`dualdc.base.paths`: the one resolver of the project's and the state's paths, with its
  environment overrides;
- :mod:`dualdc.base.proc`: reading ``/proc/<pid>/stat`` (start times, parents);
- :mod:`dualdc.base.lock`: the one ``flock`` file lock under the lab lock and the deploy lock.

:data:`LAYERS` is the dependency order of the whole package, written down once, lowest first. A
module may import from its own area and from the layers below; never from a layer above, and
never from another area of its own layer (those stand side by side and know nothing of each
other). ``tests/test_layers.py`` walks every module's imports and enforces it.
"""

from __future__ import annotations

#: The layers, lowest first: (layer, its areas); an area is a tuple of module prefixes.
LAYERS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("base", (("dualdc.base",),)),
    ("model", (("dualdc.model", "dualdc.loader", "dualdc.flows", "dualdc.databases", "dualdc.labels"),)),
    ("policy", (("dualdc.policy", "dualdc.schema", "dualdc.drevidence"),)),
    ("layers", (
        ("dualdc.inventory", "dualdc.ansible", "dualdc.collection"),   # hosts
        ("dualdc.stacks", "dualdc.render", "dualdc.pulumi"),           # Kubernetes stacks
        ("dualdc.lab",),                                               # the lab twin
    )),
    ("reports", (("dualdc.reports",),)),
    ("orchestration", (("dualdc.ops",),)),
    ("interface", (("dualdc.cli", "dualdc.tasks"),)),
)
