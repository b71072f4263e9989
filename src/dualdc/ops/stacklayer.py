"""The stacks layer for deploy and drift, on top of :mod:`dualdc.pulumi` and :mod:`dualdc.render`.

- An environment whose stacks have a Kubernetes API (not the lab): drift is a Pulumi preview
  with ``refresh`` and ``expect_no_changes``, reported per resource and per property from the
  engine's step events; deploy is ``pulumi up`` through :class:`dualdc.pulumi.StackRunner`.
- The lab twin has no Kubernetes API: its stacks are rendered and validated offline
  (:mod:`dualdc.render`) and the report says plainly that nothing was compared or applied.

A missing Pulumi CLI, plugin or passphrase is never a silent skip: drift reports the stack as
not checked (exit 3) with the installation instructions; deploy refuses before touching any
site (exit 1).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi.automation import EngineEvent, OpType
from pulumi.automation.errors import CommandError

from dualdc import render
from dualdc.base.redact import scrub
from dualdc.model import Layer, Topology
from dualdc.ops.layer import Checked, CheckSpec, Deploying, LayerUnavailable, OpsLayer, register
from dualdc.pulumi import Operation, Outcome, PulumiFailed, PulumiUnavailable, StackRunner, find_cli
from dualdc.pulumi.automation import check_passphrase
from dualdc.reports.drift import CheckedTarget, DriftItem, LayerReport, LayerStatus, TargetStatus
from dualdc.stacks.validation import UnsupportedVersion

#: Engine operations that are not changes.
UNCHANGED = {
    OpType.SAME,
    OpType.READ,
    OpType.READ_REPLACEMENT,
    OpType.REFRESH,
    OpType.DISCARD,
    OpType.DISCARD_REPLACED,
    OpType.REMOVE_PENDING_REPLACE,
    # a replacement is reported once, as its "replace" step
    OpType.CREATE_REPLACEMENT,
    OpType.DELETE_REPLACED,
}
LAB_NOTE = (
    "the lab twin has no Kubernetes API: its stacks were rendered and validated offline against the "
    "Kubernetes schema (invoke render), not compared with or applied to a cluster"
)


def target_name(target: render.StackTarget) -> str:
    """How a stack is named in reports and drift ids: ``project.stack``."""
    return f"{target.project}.{target.stack}"


def has_kubernetes_api(topology: Topology) -> bool:
    """Whether the environment's stacks are applied to real clusters (everything but the lab twin)."""
    return Layer.STACKS in topology.environment.layers and not topology.environment.lab


def require_pulumi() -> None:
    """Raise :class:`PulumiUnavailable` (with how to install) when stacks cannot be applied here."""
    find_cli()
    check_passphrase()


# --------------------------------------------------------------------------- events -> items


def _resource(urn: str) -> tuple[str, str]:
    """(type, name) from ``urn:pulumi:STACK::PROJECT::[parent$]TYPE::NAME``."""
    parts = urn.split("::")
    if len(parts) < 4:
        return "", urn
    return parts[2].rsplit("$", 1)[-1], "::".join(parts[3:])


_PATH_PART = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]|([^.\[\]]+)')


def property_path(path: str) -> list[str | int]:
    """Pulumi's property path syntax: ``a.b[0]["key.with.dots"]`` -> ['a', 'b', 0, 'key.with.dots']."""
    parts: list[str | int] = []
    for quoted, index, plain in _PATH_PART.findall(path):
        if index:
            parts.append(int(index))
        elif plain:
            parts.append(plain)
        else:
            parts.append(re.sub(r"\\(.)", r"\1", quoted))
    return parts


def _value(state: Any, prop: str, first: str) -> Any:
    """The value at a property path of a step's old (live, refreshed) or new (declared) state."""
    other = "inputs" if first == "outputs" else "outputs"
    node = getattr(state, first, None) or getattr(state, other, None) or {}
    for part in property_path(prop):
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            return None
    return node


def _short(value: Any) -> str:
    text = scrub(repr(value))
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass
class PreviewCollector:
    """Turns the engine's step events of a preview into drift items, per resource and property."""

    stack: str
    site: str | None
    items: list[DriftItem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __call__(self, event: EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is None:
            return
        meta = pre.metadata
        op = meta.op if isinstance(meta.op, OpType) else OpType(meta.op)
        self.counts[op.value] = self.counts.get(op.value, 0) + 1
        if op in UNCHANGED or meta.type == "pulumi:pulumi:Stack" or meta.type.startswith("pulumi:providers:"):
            return
        rtype, name = _resource(meta.urn)
        resource = f"{rtype}::{name}"
        base = f"stack:{self.stack}/{resource}"
        properties = sorted((meta.detailed_diff or {}).keys()) or sorted(meta.diffs or [])
        if op in (OpType.UPDATE, OpType.REPLACE) and properties:
            for prop in properties:
                kind = (
                    meta.detailed_diff[prop].diff_kind.value
                    if meta.detailed_diff and prop in meta.detailed_diff
                    else "update"
                )
                before, after = _value(meta.old, prop, "outputs"), _value(meta.new, prop, "inputs")
                diff = f"- {prop}: {_short(before)}\n+ {prop}: {_short(after)}"
                self.items.append(
                    DriftItem.found(
                        Layer.STACKS,
                        f"{base}/{prop}",
                        self.stack,
                        f"{resource}: {prop} would {kind} ({op.value})",
                        site=self.site,
                        stack=self.stack,
                        resource=resource,
                        property=prop,
                        diff=diff,
                    )
                )
            return
        what = {
            OpType.CREATE: "is missing from the cluster and would be created",
            OpType.DELETE: "exists but is not declared, and would be deleted",
        }.get(op, f"would {op.value}")
        self.items.append(
            DriftItem.found(
                Layer.STACKS,
                base,
                self.stack,
                f"{resource} {what}",
                site=self.site,
                stack=self.stack,
                resource=resource,
            )
        )


class DriftPreviewRunner(StackRunner):
    """A :class:`StackRunner` whose preview refreshes first and reports each step (for drift)."""

    def preview_drift(self, collector: PreviewCollector) -> None:
        stack = self._stack()
        try:
            stack.preview(
                refresh=True, expect_no_changes=True, diff=True, on_event=collector, on_output=self._output
            )
        except CommandError as exc:
            if collector.items:
                return  # expect-no-changes failing is the drift the collector recorded
            raise PulumiFailed(scrub(str(exc))) from None


# --------------------------------------------------------------------------- layer results


def _site_of(target: render.StackTarget, topology: Topology) -> str | None:
    return target.stack if any(s.name == target.stack for s in topology.sites) else None


def _checked(
    name: str, site: str | None, status: TargetStatus, detail: str = "", counts: dict[str, int] | None = None
) -> CheckedTarget:
    return CheckedTarget(
        layer=Layer.STACKS, name=name, site=site, status=status, detail=detail, counts=counts or {}
    )


def drift_layer(
    topology: Topology,
    site: str | None,
    backend: str | None = None,
    progress: Callable[[str], None] | None = None,
    out_root: Path = render.RENDER_ROOT,
) -> LayerReport:
    """The stacks layer of a drift report."""
    say = progress or (lambda _: None)
    try:
        targets = render.stack_targets(topology, site)
    except render.RenderError as exc:
        return LayerReport(
            layer=Layer.STACKS,
            status=LayerStatus.UNVERIFIED,
            note="cannot find the stacks: " + "; ".join(exc.problems),
        )
    if not has_kubernetes_api(topology):
        return render_layer(topology, targets, say, out_root)
    layer = LayerReport(
        layer=Layer.STACKS,
        status=LayerStatus.CLEAN,
        note="pulumi preview with refresh and expect-no-changes, per resource and property",
    )
    for target in targets:
        name = target_name(target)
        say(f"stacks: previewing {name} with refresh")
        collector = PreviewCollector(name, _site_of(target, topology))
        try:
            DriftPreviewRunner(target, topology.environment.name, backend).preview_drift(collector)
        except PulumiUnavailable as exc:
            layer.checked.append(_checked(name, collector.site, TargetStatus.NOT_CHECKED, detail=str(exc)))
            continue
        except PulumiFailed as exc:
            layer.checked.append(_checked(name, collector.site, TargetStatus.FAILED, detail=str(exc)[:2000]))
            continue
        layer.items.extend(collector.items)
        layer.checked.append(
            _checked(
                name,
                collector.site,
                TargetStatus.DRIFT if collector.items else TargetStatus.CLEAN,
                counts=collector.counts,
            )
        )
    layer.status = _status(layer)
    return layer


def render_layer(
    topology: Topology,
    targets: list[render.StackTarget],
    say: Callable[[str], None],
    out_root: Path = render.RENDER_ROOT,
) -> LayerReport:
    """Render and validate the stacks offline (the lab): said plainly, never passed off as a comparison."""
    layer = LayerReport(layer=Layer.STACKS, status=LayerStatus.NOT_COMPARED, note=LAB_NOTE)
    for target in targets:
        name = target_name(target)
        say(f"stacks: rendering {name} (no Kubernetes API in this environment)")
        site = _site_of(target, topology)
        try:
            stack = render.collect(target, topology)
            render.validate(stack, topology)
            path = render.write(stack, topology, out_root)
        except render.RenderError as exc:
            layer.checked.append(_checked(name, site, TargetStatus.FAILED, detail="; ".join(exc.problems)))
            continue
        except UnsupportedVersion as exc:
            layer.checked.append(_checked(name, site, TargetStatus.FAILED, detail=f"cannot render: {exc}"))
            continue
        if stack.invalid:
            detail = "; ".join(f"{p}: {', '.join(e)}" for p, e in sorted(stack.invalid.items()))
            layer.checked.append(
                _checked(
                    name,
                    site,
                    TargetStatus.FAILED,
                    detail=f"rendered objects fail schema validation: {detail}",
                )
            )
            continue
        layer.checked.append(
            _checked(
                name,
                site,
                TargetStatus.CLEAN,
                detail=f"rendered only: {len(stack.objects)} valid objects in {path}",
                counts={"objects": len(stack.objects)},
            )
        )
    if any(t.status is TargetStatus.FAILED for t in layer.checked):
        layer.status = LayerStatus.UNVERIFIED
    return layer


def _status(layer: LayerReport) -> LayerStatus:
    if layer.items:
        return LayerStatus.DRIFT
    if any(
        t.status in (TargetStatus.FAILED, TargetStatus.NOT_CHECKED, TargetStatus.UNREACHABLE)
        for t in layer.checked
    ):
        return LayerStatus.UNVERIFIED
    return LayerStatus.CLEAN


# --------------------------------------------------------------------------- deploy


def preview(
    target: render.StackTarget,
    topology: Topology,
    backend: str | None,
    on_output: Callable[[str], None] | None = None,
) -> Outcome:
    """A plain preview (the deploy plan); raises PulumiUnavailable / PulumiFailed."""
    return StackRunner(target, topology.environment.name, backend, on_output=on_output).run(Operation.PREVIEW)


def up(
    target: render.StackTarget,
    topology: Topology,
    backend: str | None,
    on_output: Callable[[str], None] | None = None,
) -> Outcome:
    """``pulumi up`` of one stack; raises PulumiUnavailable / PulumiFailed."""
    return StackRunner(target, topology.environment.name, backend, on_output=on_output).run(Operation.UP)


# --------------------------------------------------------------------------- the layer


def _site_targets(topology: Topology, site: str) -> list[render.StackTarget]:
    return [t for t in render.stack_targets(topology) if t.stack == site]


def replication_targets(topology: Topology) -> list[render.StackTarget]:
    """The stacks that span the sites (the replication stack): applied after the last site."""
    sites = {s.name for s in topology.sites}
    return [t for t in render.stack_targets(topology) if t.stack not in sites]


class StacksLayer(OpsLayer):
    """The Kubernetes stacks: previewed (the lab: rendered) and brought up site by site."""

    kind = Layer.STACKS
    per_site = True

    def check(self, spec: CheckSpec) -> Checked:
        return Checked(drift_layer(spec.topology, spec.site, spec.backend, spec.progress))

    def prepare(self, topology: Topology) -> None:
        if not has_kubernetes_api(topology):
            return
        try:
            require_pulumi()
        except PulumiUnavailable as exc:
            raise LayerUnavailable(
                f"the stacks of {topology.environment.name!r} must be applied with Pulumi, and {exc}"
            ) from None

    def planned_after(self, topology: Topology, site: str | None) -> list[str]:
        return ["replication:stacks"] if site is None and replication_targets(topology) else []

    def apply_site(self, deploy: Deploying, site: str) -> bool:
        return all(self._up(deploy, site, target, f"{site}:stacks")
                   for target in _site_targets(deploy.topology, site))

    def apply_after(self, deploy: Deploying) -> bool:
        if deploy.site is not None:
            return True
        return all(self._up(deploy, None, target, "replication:stacks")
                   for target in replication_targets(deploy.topology))

    def _up(self, deploy: Deploying, site: str | None, target: render.StackTarget, what: str) -> bool:
        topology = deploy.topology
        name = target_name(target)
        where = site or "replication"
        if not has_kubernetes_api(topology):
            deploy.progress(f"{where}: rendering {name} (no Kubernetes API in this environment)")
            step = deploy.start(site, Layer.STACKS, f"render {name}")
            layer = render_layer(topology, [target], deploy.progress)
            if layer.status is LayerStatus.UNVERIFIED:
                deploy.end(step, "failed", "; ".join(t.detail for t in layer.checked))
                return False
            deploy.end(step, "rendered", f"{LAB_NOTE}: {layer.checked[0].detail}")
            deploy.applied(what)
            return True
        deploy.progress(f"{where}: pulumi up {name}")
        step = deploy.start(site, Layer.STACKS, f"stacks up {name}")
        try:
            outcome = up(target, topology, deploy.backend)
        except (PulumiUnavailable, PulumiFailed) as exc:
            deploy.end(step, "failed", str(exc)[:2000])
            return False
        deploy.end(step, "applied", ", ".join(f"{op} {n}" for op, n in sorted(outcome.changes.items())))
        deploy.applied(what)
        return True


register(StacksLayer())
