"""Benchmark: fuzz ``invoke validate``'s path with 10,000+ generated hostile topologies.

Each topology is the lab's, merged into one YAML file, with 1 to 4 hostile edits: a string
field (found by walking the model, so new fields are fuzzed too) set to a template, an
injected line, quotes, control characters, a huge or empty value, a path traversal, a
system group, credentials in a URL …; a number set to a huge integer, NaN, infinity or a
wrong type; an entity dropped, duplicated or replaced by another shape; or the YAML text
itself garbled. Each is loaded and, if it loads, checked by the policy pack, and the error
message is formatted as the command line prints it.

Printed: how many topologies loaded clean, were refused as input errors, and raised
anything else (an *unhandled exception*: the target is 0), with the first few of those.
Deterministic (seeded); ``--count`` and ``--seed`` change it. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import copy
import random
import sys
import tempfile
import time
import traceback
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from dualdc import cli
from dualdc.loader import TopologyError, load_topology
from dualdc.model import Entity, Topology, entity_in
from dualdc.policy import run_policy

LAB = Path(__file__).resolve().parents[1] / "inventories" / "lab"

HOSTILE_STRINGS = [
    "{{ lookup('pipe', 'touch /tmp/dualdc-fuzz-canary') }}",
    "{% raw %}x{% endraw %}",
    "http://mirror.infra.jbfg.example/debian\nTrusted: yes",
    'registry.infra.jbfg.example"]\n[host."https://evil',
    "eno1\n[Network]\nDHCP=yes",
    "../../etc/cron.d/x", "..", ".", "/", "a/b", "eth0 ", " eth0",
    "x" * 16, "x" * 2001, "y" * 300_000,
    "", " ", "\t", "\x00", "\x1b[31m", "a\u2028b", "\ufeff", "é" * 50, "한" * 700,
    "system:authenticated", "system:masters", "*", "kjbank-*",
    "docker.io", "https://user:secret-pw-1234@mirror.example/x", "ftp://mirror/x", "file://relative",
    "http://[::1]:99999/", "http://mirror.infra.jbfg.example:0/", "registry:70000", "UPPER.case",
    "root:$6$saltsalt$hashhashhashhashhash:19000:0:99999:7:::", "-----BEGIN RSA PRIVATE KEY-----\nabc",
    "ssh-ed25519 AAAA x\ncommand=\"sh\" ssh-ed25519 AAAA",
    "Carrier-A ", "CARRIER-A", "  carrier-a",
]


class HugeDigits(str):
    """A 5,000-digit integer as written in a file (Python refuses to build it: over 4,300 digits)."""


class FuzzDumper(yaml.CSafeDumper):  # type: ignore[misc]
    """CSafeDumper that writes :class:`HugeDigits` as a plain integer scalar."""


FuzzDumper.add_representer(HugeDigits, lambda d, v: d.represent_scalar("tag:yaml.org,2002:int", str(v)))
GARBLE = [":", "-", "[", "{", "&a", "*a", "!!python/object", "\t", "\n", "'", '"', "<<: ", "\x00", "~",
          "---\n"]
HOSTILE_NUMBERS: list[Any] = [
    HugeDigits("7" * 5000), 10**4000, -(10**30), -1, 0, 2**63, 1e308, float("inf"), float("nan"), -0.0, 0.1,
    True, None, "5", [], {},
]


def _strings_and_entities(cls: type[Entity], prefix: tuple[str, ...], out: list[tuple[str, ...]]) -> None:
    for name, info in cls.model_fields.items():
        nested = entity_in(info.annotation)
        if nested is not None:
            _strings_and_entities(nested, (*prefix, name), out)
        else:
            out.append((*prefix, name))


def _is_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Annotated, typing.Union, types.UnionType, list):
        return any(_is_str(a) for a in typing.get_args(annotation))
    return False


FIELD_PATHS: list[tuple[str, ...]] = []
_strings_and_entities(Topology, (), FIELD_PATHS)


def _annotation(path: tuple[str, ...]) -> Any:
    cls: Any = Topology
    for part in path[:-1]:
        cls = entity_in(cls.model_fields[part].annotation)
    return cls.model_fields[path[-1]].annotation


STRING_PATHS = [p for p in FIELD_PATHS if _is_str(_annotation(p))]
OTHER_PATHS = [p for p in FIELD_PATHS if p not in STRING_PATHS]


def _pick(rng: random.Random, node: Any) -> Any:
    return rng.choice(node) if isinstance(node, list) and node else node


def _set(rng: random.Random, data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = data
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        node = _pick(rng, node[part])
    if isinstance(node, dict):
        node[path[-1]] = value


def _mutate(rng: random.Random, data: dict[str, Any]) -> str | None:
    """Apply one hostile edit; return replacement YAML text for text-level edits."""
    kind = rng.random()
    if kind < 0.45:
        value: Any = rng.choice(HOSTILE_STRINGS)
        if rng.random() < 0.2:
            value = [value]
        _set(rng, data, rng.choice(STRING_PATHS), value)
    elif kind < 0.7:
        _set(rng, data, rng.choice(OTHER_PATHS + STRING_PATHS), copy.deepcopy(rng.choice(HOSTILE_NUMBERS)))
    elif kind < 0.85:
        section = rng.choice([k for k in data if isinstance(data[k], list) and data[k]] or ["sites"])
        items = data.get(section)
        if isinstance(items, list) and items:
            op = rng.randrange(4)
            if op == 0:
                items.pop(rng.randrange(len(items)))
            elif op == 1:
                items.append(copy.deepcopy(rng.choice(items)))
            elif op == 2:
                items[rng.randrange(len(items))] = rng.choice(["x", 1, None, [], {"name": "x"}])
            else:
                item = rng.choice(items)
                if isinstance(item, dict) and item:
                    item.pop(rng.choice(sorted(item)), None)
    else:
        text = yaml.dump(data, Dumper=FuzzDumper, allow_unicode=True)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text) + 1)
            text = text[:i] + rng.choice(GARBLE) + text[i:]
        return text
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="Topologies to generate (default 10,000).")
    parser.add_argument("--seed", type=int, default=12, help="Random seed (default 12).")
    args = parser.parse_args()
    base: dict[str, Any] = {}
    for path in sorted(LAB.glob("*.yaml")):
        base.update(yaml.safe_load(path.read_text(encoding="utf-8")))
    rng = random.Random(args.seed)
    outcomes: collections.Counter[str] = collections.Counter()
    unhandled: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "topology.yaml"
        for i in range(args.count):
            data = copy.deepcopy(base)
            text = None
            try:
                for _ in range(rng.randint(1, 4)):
                    text = _mutate(rng, data) or text
                if text is None:
                    text = yaml.dump(data, Dumper=FuzzDumper, allow_unicode=True)
                file.write_bytes(text.encode("utf-8", errors="surrogatepass"))
            except (ValueError, UnicodeError, yaml.YAMLError):
                outcomes["not representable as YAML (skipped)"] += 1
                continue
            try:
                topology = load_topology(file)
                run_policy(topology)
                outcomes["loaded and checked"] += 1
            except TopologyError as exc:
                message = cli.format_problems(exc)
                assert message.startswith("error: ")
                outcomes["input error (exit 1)"] += 1
            except Exception:  # counting them is the point
                outcomes["UNHANDLED"] += 1
                if len(unhandled) < 5:
                    last = traceback.format_exc().splitlines(keepends=True)[-4:]
                    unhandled.append(f"#{i}: " + "".join(last))
            if (i + 1) % 1000 == 0:
                print(f"  {i + 1} topologies, {outcomes['UNHANDLED']} unhandled, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
    total = sum(outcomes.values())
    print(f"fuzzed {total} topologies (seed {args.seed}) in {time.perf_counter() - started:.0f} s:")
    for name, count in sorted(outcomes.items()):
        print(f"  {name}: {count}")
    print(f"unhandled exceptions: {outcomes['UNHANDLED']} (target 0)")
    for text in unhandled:
        print(text, end="")
    return 1 if outcomes["UNHANDLED"] else 0


if __name__ == "__main__":
    sys.exit(main())
