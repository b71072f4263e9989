"""The JSON Schema of a topology file, for editors (completion and checks while typing).

Generated from the pydantic model (:class:`dualdc.model.Topology`), with two adjustments
that make it fit how topologies are written:

- an environment is split over several files, each holding some of the sections, so no
  top-level section is required by the schema (the loader requires ``environment``,
  ``sites`` and ``tenants`` across the merged files);
- ``environment.policy`` lists every rule id of the policy pack and each rule's
  parameters with their type, default and meaning, so overrides complete and typos show.

``invoke schema`` writes it to :data:`SCHEMA_PATH` (committed); ``invoke schema --check``
and a test fail when the committed file is stale. A topology file opts in with a first
line such as ``# yaml-language-server: $schema=../../schemas/topology.schema.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dualdc.model import Topology
from dualdc.policy import iter_rules

SCHEMA_PATH = Path("schemas/topology.schema.json")
SCHEMA_ID = "https://dualdc.jbfg.example/schemas/topology.schema.json"
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _policy_schema() -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for rule in iter_rules():
        params = {
            name: {"type": JSON_TYPES[type(p.default)], "default": p.default, "description": p.help}
            for name, p in sorted(rule.params.items())
        }
        rules[rule.id] = {
            "type": "object",
            "description": f"{rule.title} ({rule.source}).",
            "properties": params,
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "description": "Rule parameter overrides: {rule id: {parameter: value}}.",
        "properties": rules,
        "additionalProperties": False,
    }


def topology_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one topology file."""
    schema = Topology.model_json_schema()
    schema.pop("required", None)
    schema["$defs"]["Environment"]["properties"]["policy"] = _policy_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "dualdc topology file",
        "description": (
            "One YAML file of a dualdc environment (inventories/<env>/*.yaml). The files of a folder are "
            "merged: list sections concatenate, and 'environment' appears in exactly one file."
        ),
    }


def render() -> str:
    """The schema as committed: indented JSON with a final newline."""
    return json.dumps(topology_schema(), indent=2, ensure_ascii=False) + "\n"
