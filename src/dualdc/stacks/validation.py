"""Offline validation of rendered objects.

Built-in kinds are checked against the Kubernetes OpenAPI schemas bundled with
kubernetes-validate (strict variant: unknown fields are errors), for the cluster's
Kubernetes minor version. The bundled versions are listed by :func:`supported_versions`;
a cluster outside them cannot be validated (the caller reports it, exit 3). Custom kinds
(CloudNativePG, Velero) are checked against :mod:`dualdc.stacks.crds`. A kind with
neither schema is reported as invalid: nothing reaches a reviewer unchecked.

The schemas are read once and the validators cached, so validating hundreds of objects
takes well under a second.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from referencing import Registry, Resource

from dualdc.stacks.crds import CUSTOM_SCHEMAS

SCHEMA_PACKAGE = "kubernetes_validate"
SCHEMA_ROOT = "kubernetes-json-schema"


class UnsupportedVersion(Exception):
    """No bundled schema covers this Kubernetes version."""


def _schema_dir() -> Any:
    return importlib.resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_ROOT)


@functools.cache
def supported_versions() -> tuple[str, ...]:
    """Minor versions with bundled strict schemas, e.g. ('1.25', ..., '1.37')."""
    found = set()
    for entry in _schema_dir().iterdir():
        match = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", entry.name)
        if match:
            found.add((int(match.group(1)), int(match.group(2))))
    return tuple(f"{a}.{b}" for a, b in sorted(found))


def _folder(minor: str) -> str:
    if minor not in supported_versions():
        have = supported_versions()
        span = f"{have[0]} to {have[-1]}" if have else "none"
        raise UnsupportedVersion(f"Kubernetes {minor} has no bundled OpenAPI schema (kubernetes-validate "
                                 f"covers {span}); upgrade kubernetes-validate")
    return f"v{minor}.0-local-strict"


@functools.cache
def _registry(minor: str) -> Registry[Any]:
    text = _schema_dir().joinpath(_folder(minor), "_definitions.json").read_text(encoding="utf-8")
    definitions = json.loads(text)
    return Registry().with_resources([(definitions["$id"], Resource.from_contents(definitions))])


def _file_name(api_version: str, kind: str) -> str:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


@functools.cache
def _builtin_validator(minor: str, api_version: str, kind: str) -> jsonschema.Draft202012Validator | None:
    path = _schema_dir().joinpath(_folder(minor), _file_name(api_version, kind))
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, registry=_registry(minor))


@functools.cache
def _custom_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator | None:
    schema = CUSTOM_SCHEMAS.get((api_version, kind))
    return None if schema is None else jsonschema.Draft202012Validator(schema)


def is_builtin(api_version: str) -> bool:
    """Core and ``*.k8s.io`` groups are built in; anything else is a custom resource."""
    group = api_version.rpartition("/")[0]
    return group == "" or group.endswith(".k8s.io") or "." not in group


def schema_source(api_version: str, kind: str, minor: str) -> str:
    """Which schema an object is checked against (for the render summary)."""
    if is_builtin(api_version):
        return f"kubernetes {minor} OpenAPI (strict)"
    if (api_version, kind) in CUSTOM_SCHEMAS:
        return "dualdc structural schema (dualdc.stacks.crds)"
    return "none"


def errors(obj: dict[str, Any], minor: str) -> list[str]:
    """Every schema violation of one object, as ``path: message``; empty when valid.

    Raises :class:`UnsupportedVersion` for a built-in kind and an unbundled version.
    """
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    if is_builtin(api_version):
        validator = _builtin_validator(minor, api_version, kind)
    else:
        validator = _custom_validator(api_version, kind)
    if validator is None:
        return [f"{api_version} {kind}: no schema to validate against"]
    found = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path]):
        path = ".".join(str(p) for p in err.absolute_path) or "(object)"
        found.append(f"{path}: {err.message}")
    return found
