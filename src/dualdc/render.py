"""``invoke render``: run the stack programs under Pulumi's mock runtime and write manifests.

Each stack program (``stacks/<project>/__main__.py``) runs in-process under
``pulumi.runtime.set_mocks`` with its committed stack config, in a fresh context (so the
stacks never see each other's resources or config). Every Kubernetes object it declares
is written as YAML, one file per object, to::

    build/render/<project>/<stack>/<cluster>/<namespace or _cluster>/<kind>-<name>.yaml

with a fixed key order, so two runs give byte-identical files, and stale files of an
earlier render are removed. ``_stack.yaml`` beside them summarises the stack (clusters and
their kubeconfig contexts, object counts, which schema checked which kind).

Secrets are never rendered: the programs run in render mode (no secret is read) and any
value marked secret is replaced by :data:`REDACTED`.

Every object is validated offline (:mod:`dualdc.stacks.validation`); invalid objects are
reported (and still written, for the reviewer), and the command exits 2.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import runpy
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from dualdc.loader import TopologyError, parse_yaml
from dualdc.model import Topology
from dualdc.stacks import validation
from dualdc.stacks.config import REPLICATION_PROJECT, SITE_PROJECT
from dualdc.stacks.programs import PRELOADED, StackProgramError
from dualdc.stacks.site import provider_name

STACKS_ROOT = Path("stacks")
RENDER_ROOT = Path("build/render")
REDACTED = "(redacted: a Pulumi config secret)"
SUMMARY = "_stack.yaml"
CLUSTER_SCOPED = "_cluster"
TOP_KEYS = ("apiVersion", "kind", "metadata")
META_KEYS = ("name", "namespace", "labels", "annotations")

try:  # the markers Pulumi's RPC layer wraps secret values in
    from pulumi.runtime.rpc import _special_secret_sig as SECRET_SIG
    from pulumi.runtime.rpc import _special_sig_key as SIG_KEY
except ImportError:  # pragma: no cover - older SDKs used the same constants
    SIG_KEY = "4dabf18193072939515e22adb298388d"
    SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # noqa: S105 - a marker, not a secret


class RenderError(Exception):
    """The stacks cannot be rendered (bad input or stack config); exit 1."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class StackTarget:
    """One stack of one project folder."""

    folder: Path
    project: str
    stack: str

    @property
    def label(self) -> str:
        return f"{self.project}/{self.stack}"


@dataclass
class RenderedObject:
    cluster: str
    resource_name: str
    """The Pulumi logical name of the resource that declares it."""
    body: dict[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        ns = self.body["metadata"].get("namespace")
        return str(ns) if ns else None

    @property
    def path(self) -> Path:
        return Path(self.cluster, self.namespace or CLUSTER_SCOPED, f"{self.kind.lower()}-{self.name}.yaml")


@dataclass
class RenderedStack:
    target: StackTarget
    environment: str
    objects: list[RenderedObject]
    contexts: dict[str, str]
    """kubeconfig context of each cluster's provider."""
    warnings: list[str] = field(default_factory=list)
    """What the program warned about (e.g. a namespace that cannot be backed up)."""
    invalid: dict[str, list[str]] = field(default_factory=dict)
    """Schema errors by output path."""
    seconds: float = 0.0


# --------------------------------------------------------------------------- stacks


def project_name(folder: Path) -> str:
    """The ``name`` in a project's Pulumi.yaml."""
    file = folder / "Pulumi.yaml"
    try:
        data = parse_yaml(file.read_text(encoding="utf-8"), str(file))
    except OSError as exc:
        raise RenderError([f"{file}: cannot read ({exc.strerror or exc})"]) from None
    except TopologyError as exc:
        raise RenderError([str(p) for p in exc.problems]) from None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str):
        raise RenderError([f"{file}: no project 'name'"])
    return name


def stack_targets(topology: Topology, site: str | None = None,
                  stacks_root: Path = STACKS_ROOT) -> list[StackTarget]:
    """The stacks of an environment: one site stack per site (deploy order), the replication stack.

    With ``site``, only that site's stack.
    """
    sites = topology.deploy_order()
    if site is not None:
        if site not in sites:
            raise RenderError([f"site {site!r} is not declared in environment {topology.environment.name!r} "
                               f"(sites: {', '.join(sites)})"])
        sites = [site]
    site_dir, replication_dir = stacks_root / "site", stacks_root / "replication"
    targets = [StackTarget(site_dir, project_name(site_dir), s) for s in sites]
    if site is None:
        targets.append(StackTarget(replication_dir, project_name(replication_dir), topology.environment.name))
    return targets


def stack_config(target: StackTarget, environment: str) -> tuple[dict[str, str], list[str]]:
    """The runtime config of a stack from ``Pulumi.<stack>.yaml``: (values, secret keys).

    Secure values are never decrypted: they become placeholders, listed as secret keys.
    """
    file = target.folder / f"Pulumi.{target.stack}.yaml"
    if not file.is_file():
        raise RenderError([f"{file}: missing; every stack has a committed config file (see docs/stacks.md)"])
    try:
        data = parse_yaml(file.read_text(encoding="utf-8"), str(file))
    except TopologyError as exc:
        raise RenderError([str(p) for p in exc.problems]) from None
    raw = (data or {}).get("config") or {}
    if not isinstance(raw, dict):
        raise RenderError([f"{file}: 'config' must be a mapping"])
    values: dict[str, str] = {}
    secret: list[str] = []
    for key, value in raw.items():
        full = key if ":" in key else f"{target.project}:{key}"
        cleaned, is_secret = _config_value(value)
        values[full] = cleaned
        if is_secret:
            secret.append(full)
    values[f"{target.project}:environment"] = environment
    values[f"{target.project}:render"] = "true"
    return values, secret


def _config_value(value: Any) -> tuple[str, bool]:
    found_secret = False

    def walk(node: Any) -> Any:
        nonlocal found_secret
        if isinstance(node, dict):
            if set(node) == {"secure"}:
                found_secret = True
                return REDACTED
            return {str(k): walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    cleaned = walk(value)
    if isinstance(cleaned, str):
        return cleaned, found_secret
    if isinstance(cleaned, bool):
        return ("true" if cleaned else "false"), found_secret
    if isinstance(cleaned, int | float):
        return str(cleaned), found_secret
    return json.dumps(cleaned), found_secret


# --------------------------------------------------------------------------- running


@dataclass
class _Registration:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None


class _Recorder(pulumi.runtime.Mocks):
    """Mock engine: records every registration and echoes the inputs back as outputs."""

    def __init__(self) -> None:
        self.registrations: list[_Registration] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        self.registrations.append(_Registration(args.typ, args.name, dict(args.inputs), args.provider))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


class _Collect(logging.Handler):
    """Keeps what the program logs at warning level or above through the (mock) engine."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_program(target: StackTarget, topology: Topology) -> tuple[list[_Registration], list[str]]:
    """Run a stack's ``__main__.py`` under the mock engine: its registrations, and its warnings."""
    config, secret_keys = stack_config(target, topology.environment.name)
    program = target.folder / "__main__.py"
    if not program.is_file():
        raise RenderError([f"{program}: missing"])

    logger = logging.getLogger(f"dualdc.render.{target.project}.{target.stack}")
    logger.propagate = False
    collector = _Collect()
    logger.handlers[:] = [collector]

    def work() -> list[_Registration]:
        recorder = _Recorder()
        pulumi.runtime.set_mocks(recorder, project=target.project, stack=target.stack, preview=False,
                                 logger=logger)
        pulumi.runtime.set_all_config(config, secret_keys)
        PRELOADED.set(topology)

        def main() -> None:
            runpy.run_path(str(program), run_name="__main__")

        pulumi.runtime.test(main)()  # type: ignore[no-untyped-call]
        return recorder.registrations

    try:
        return contextvars.Context().run(work), sorted(set(collector.messages))
    except StackProgramError as exc:
        raise RenderError([f"{target.label}: {p}" for p in exc.problems]) from None


def _clean(value: Any, secret: bool = False) -> Any:
    """Plain data from mock inputs: integral floats back to ints, every secret leaf redacted.

    Inside a value marked secret the structure (keys) stays and every leaf is redacted.
    """
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return _clean(value.get("value"), secret=True)
        return {str(k): _clean(v, secret) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_clean(v, secret) for v in value]
    if secret:
        return REDACTED
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _ordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _ordered(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


def canonical(body: dict[str, Any]) -> dict[str, Any]:
    """apiVersion, kind, metadata (name, namespace, labels, annotations) first; the rest sorted."""
    out: dict[str, Any] = {k: body[k] for k in ("apiVersion", "kind") if k in body}
    meta = body.get("metadata") or {}
    out["metadata"] = {k: _ordered(meta[k]) for k in META_KEYS if meta.get(k) not in (None, {}, "")}
    out["metadata"].update({k: _ordered(meta[k]) for k in sorted(meta) if k not in META_KEYS})
    for key in sorted(body):
        if key not in TOP_KEYS:
            out[key] = _ordered(body[key])
    return out


def _provider_cluster(ref: str | None) -> str | None:
    """``urn:...::k8s-<cluster>::<id>`` -> ``<cluster>``."""
    if not ref:
        return None
    parts = ref.split("::")
    name = parts[-2] if len(parts) >= 2 else ""
    prefix = provider_name("")
    return name[len(prefix):] if name.startswith(prefix) else None


def collect(target: StackTarget, topology: Topology) -> RenderedStack:
    """Run one stack and collect its Kubernetes objects."""
    started = time.perf_counter()
    registrations, warnings = run_program(target, topology)
    contexts = {}
    for reg in registrations:
        prefix = provider_name("")
        if reg.type == "pulumi:providers:kubernetes" and reg.name.startswith(prefix):
            contexts[reg.name[len(prefix):]] = str(reg.inputs.get("context", ""))
    objects = []
    problems = []
    for reg in registrations:
        if not reg.type.startswith("kubernetes:"):
            continue
        cluster = _provider_cluster(reg.provider)
        if cluster is None:
            problems.append(f"{target.label}: resource {reg.name!r} has no cluster provider")
            continue
        objects.append(RenderedObject(cluster, reg.name, canonical(_clean(reg.inputs))))
    seen: dict[Path, str] = {}
    for obj in objects:
        if obj.path in seen:
            problems.append(f"{target.label}: {obj.path} is declared twice ({seen[obj.path]} and "
                            f"{obj.resource_name})")
        seen[obj.path] = obj.resource_name
    if problems:
        raise RenderError(problems)
    objects.sort(key=lambda o: o.path)
    return RenderedStack(target, topology.environment.name, objects, contexts, warnings=warnings,
                         seconds=time.perf_counter() - started)


# --------------------------------------------------------------------------- validation


def validate(stack: RenderedStack, topology: Topology) -> None:
    """Fill ``stack.invalid``; raises validation.UnsupportedVersion (exit 3)."""
    for obj in stack.objects:
        cluster = topology.cluster(obj.cluster)
        minor = cluster.kubernetes_version or topology.environment.kubernetes_version
        found = validation.errors(obj.body, minor)
        if found:
            stack.invalid[str(obj.path)] = found


# --------------------------------------------------------------------------- writing


_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter when present


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """Safe YAML without anchors or aliases: every object is written out in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(obj: RenderedObject, target: StackTarget) -> str:
    head = f"# Source: {target.label} (Pulumi resource {obj.resource_name})\n"
    return head + yaml.dump(obj.body, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                            default_flow_style=False, width=4096)


def summary(stack: RenderedStack, topology: Topology) -> str:
    kinds = Counter(f"{o.api_version} {o.kind}" for o in stack.objects)
    minors = {c: topology.cluster(c).kubernetes_version or topology.environment.kubernetes_version
              for c in stack.contexts}
    data = {
        "project": stack.target.project,
        "stack": stack.target.stack,
        "environment": stack.environment,
        "clusters": {c: {"kubeContext": stack.contexts[c], "kubernetesVersion": minors[c]}
                     for c in sorted(stack.contexts)},
        "objects": {k: kinds[k] for k in sorted(kinds)},
        "validatedWith": {
            k: sorted({validation.schema_source(o.api_version, o.kind, minors.get(o.cluster, "?"))
                       for o in stack.objects if f"{o.api_version} {o.kind}" == k})
            for k in sorted(kinds)},
        "warnings": stack.warnings,
        "invalid": {p: stack.invalid[p] for p in sorted(stack.invalid)},
    }
    return "# Generated by invoke render; do not edit.\n" + yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096)


def write(stack: RenderedStack, topology: Topology, out_root: Path = RENDER_ROOT) -> Path:
    """Write a stack's objects, replacing whatever an earlier render left there."""
    final = out_root / stack.target.project / stack.target.stack
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.new-{os.getpid()}")
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for obj in stack.objects:
            path = staging / obj.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(to_yaml(obj, stack.target), encoding="utf-8")
        staging.mkdir(parents=True, exist_ok=True)
        (staging / SUMMARY).write_text(summary(stack, topology), encoding="utf-8")
        if final.exists():
            final.rename(old)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return final


def render(topology: Topology, site: str | None = None, out_root: Path = RENDER_ROOT,
           stacks_root: Path = STACKS_ROOT) -> list[RenderedStack]:
    """Render, validate and write every stack of an environment (or one site's)."""
    stacks = []
    for target in stack_targets(topology, site, stacks_root):
        stack = collect(target, topology)
        validate(stack, topology)
        write(stack, topology, out_root)
        stacks.append(stack)
    return stacks


__all__ = [
    "REPLICATION_PROJECT",
    "SITE_PROJECT",
    "RenderError",
    "RenderedObject",
    "RenderedStack",
    "StackTarget",
    "collect",
    "render",
    "stack_targets",
    "validate",
    "write",
]
