"""Fuzzing the loader (and the policy pack behind it) with hypothesis.

Whatever the input — garbled YAML text or random structures where the topology expects
entities — loading gives a Topology or a TopologyError, never another exception; and a
topology that loads is checked by the policy pack without an exception either. The
example count and deadline keep this to seconds.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dualdc.loader import TopologyError, load_topology
from dualdc.model import Topology
from dualdc.policy import Report, run_policy

LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"
FILES = sorted(p.name for p in LAB.glob("*.yaml"))
FUZZ = settings(max_examples=80, deadline=dt.timedelta(seconds=5), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
SIGNIFICANT = [*list(":-[]{}&*!|>'\"#%@`,?\t\n "), "\x00", "\ufeff", "é", "<<", "~", "0x", "---", "..."]


def _check(folder: Path) -> None:
    """The property: a Topology or a TopologyError; and the policy pack runs on any Topology."""
    try:
        topology = load_topology(folder)
    except TopologyError as exc:
        assert exc.problems, "a TopologyError always says why"
        for problem in exc.problems:
            assert problem.message
        return
    assert isinstance(topology, Topology)
    try:
        report = run_policy(topology)
    except TopologyError:
        return
    assert isinstance(report, Report)


def _copy_lab(tmp: str) -> Path:
    folder = Path(tmp) / "lab"
    shutil.copytree(LAB, folder)
    return folder


edits = st.lists(
    st.tuples(st.sampled_from(["delete", "insert", "duplicate-line", "swap-lines", "truncate"]),
              st.floats(min_value=0, max_value=1), st.sampled_from(SIGNIFICANT)),
    min_size=1, max_size=6,
)


@FUZZ
@given(file=st.sampled_from(FILES), operations=edits)
def test_garbled_yaml_is_a_topology_or_a_topology_error(file: str, operations: list[tuple[str, float, str]]):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy_lab(tmp)
        path = folder / file
        text = path.read_text(encoding="utf-8")
        for op, where, char in operations:
            i = int(where * len(text))
            lines = text.split("\n")
            j = int(where * (len(lines) - 1))
            if op == "delete":
                text = text[:i] + text[i + 1:]
            elif op == "insert":
                text = text[:i] + char + text[i:]
            elif op == "duplicate-line":
                text = "\n".join([*lines[:j + 1], lines[j], *lines[j + 1:]])
            elif op == "swap-lines" and j + 1 < len(lines):
                lines[j], lines[j + 1] = lines[j + 1], lines[j]
                text = "\n".join(lines)
            elif op == "truncate":
                text = text[:i]
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        _check(folder)


scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True) | st.text(max_size=30) | st.dates()
           | st.sampled_from(["any", "internet", "segment:gj-group-mgmt", "service:siem", "10.10.10.0/24",
                              "10.10.10.999", "gwangju", "kjbank", "internal", "1.30", "tcp"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


@FUZZ
@given(section=st.sampled_from(["segments", "hosts", "clusters", "services", "flows", "links", "institutions",
                                "sites", "tenants"]),
       field_choice=st.floats(min_value=0, max_value=1), item_choice=st.floats(min_value=0, max_value=1),
       value=values)
def test_random_values_in_valid_entities(section: str, field_choice: float, item_choice: float, value: Any):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy_lab(tmp)
        for path in sorted(folder.glob("*.yaml")):
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
            if section not in data:
                continue
            items = data[section]
            item = items[int(item_choice * (len(items) - 1))]
            keys = sorted(item)
            item[keys[int(field_choice * (len(keys) - 1))]] = value
            path.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, allow_unicode=True), encoding="utf-8")
            break
        _check(folder)


@FUZZ
@given(document=values)
def test_random_documents(document: Any):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy_lab(tmp)
        text = yaml.dump(document, Dumper=yaml.CSafeDumper, allow_unicode=True)
        (folder / "zz-random.yaml").write_text(text, encoding="utf-8")
        _check(folder)


# Hostile strings into the string fields: a Topology whose strings hold no control character,
# or a TopologyError whose messages fit a line and echo no long value.
HOSTILE = ["{{ lookup('pipe', 'id') }}", "a\nb", "a\rb", "\x00", "\x1b[2J", "a\u2028b", "../../etc", "..",
           'x"]\n[y', "x" * 3000, " padded ", "system:masters", "*"]
STRING_SECTIONS = {"hosts": ["rack", "name", "site"], "links": ["carrier", "path"],
                   "flows": ["purpose", "name"], "tenants": ["display_name", "admin_groups"],
                   "sites": ["city", "description"], "services": ["description"]}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, BaseModel):
        return [s for name in type(value).model_fields for s in _strings(getattr(value, name))]
    return []


@FUZZ
@given(section=st.sampled_from(sorted(STRING_SECTIONS)), pick=st.floats(min_value=0, max_value=1),
       text=st.sampled_from(HOSTILE) | st.text(max_size=40))
def test_hostile_strings_are_refused_or_harmless(section: str, pick: float, text: str):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _copy_lab(tmp)
        for path in sorted(folder.glob("*.yaml")):
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
            if section not in data:
                continue
            fields = STRING_SECTIONS[section]
            field = fields[int(pick * (len(fields) - 1))]
            data[section][0][field] = [text] if field == "admin_groups" else text
            path.write_text(yaml.dump(data, Dumper=yaml.CSafeDumper, allow_unicode=True), encoding="utf-8")
            break
        try:
            topology = load_topology(folder)
        except TopologyError as exc:
            for problem in exc.problems:
                assert "\n" not in problem.message and len(problem.message) < 700
            return
        for value in _strings(topology):
            assert not any(ord(c) < 32 or c in "\x7f\u2028\u2029\x85" for c in value), value
