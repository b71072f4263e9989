"""The drift-acknowledgement ledger: ``inventories/<env>/drift-ack.yaml``.

Some drift is known and accepted for a while (a vendor agent rewrites a file until a fix
ships). An entry acknowledges it with a reason, an owner and an expiry::

    acknowledgements:
    - target: "host:gj-app-01/base : Configure journald"
      reason: The vendor's log agent rewrites journald.conf until CHG-1234 ships its fix.
      owner: ops-kim
      expires: 2026-03-31
      reference: CHG-1234

``target`` is matched against drift item ids (see :class:`dualdc.reports.drift.DriftItem`):
``host:NAME/TASK``, ``stack:PROJECT.STACK/RESOURCE[/PROPERTY]``, ``lab:probe/FLOW``; shell
wildcards (``*``, ``?``, ``[...]``) are allowed, a bare wildcard is not. Acknowledged drift is
shown but does not fail ``invoke drift``; an entry past its expiry fails the run until it is
renewed or removed. Policy findings (the model layer) are not acknowledged here: they are
waived in the topology with an approval reference.

The file is read with the topology's safe loader; every problem is reported with
``file:line:column`` and the run exits 1.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dualdc.loader import INVENTORIES, LoadProblem, PosDict, PosList, TopologyError, display_path, parse_yaml
from dualdc.model import Topology
from dualdc.reports.drift import Acknowledgement, DriftItem, ItemStatus

LEDGER_NAME = "drift-ack.yaml"
MAX_LEDGER_BYTES = 4 * 1024 * 1024
KINDS = ("host", "stack", "lab", "data")
_GLOB = re.compile(r"[*?\[]")


class DriftAck(BaseModel):
    """One acknowledged drift."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        min_length=3,
        description="Drift item id or a shell-style pattern over ids, e.g. 'host:gj-app-01/base : Configure "
        "journald' or 'stack:site.gwangju/*'. Kinds: host, stack, lab, data.",
    )
    reason: str = Field(min_length=10, description="Why the drift is accepted for now.")
    owner: str = Field(min_length=2, description="Who owns removing the drift (a login or team name).")
    expires: dt.date = Field(description="Last day the entry holds; after it, the drift fails again.")
    reference: str | None = Field(default=None, description="Change or ticket reference.")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        kind, sep, rest = value.partition(":")
        if not sep or kind not in KINDS:
            if kind == "model":
                raise ValueError("policy findings are waived in the topology (waivers:, with an approval), "
                                 "not acknowledged as drift")
            kinds = ", ".join(k + ":" for k in KINDS)
            raise ValueError(f"a target starts with one of {kinds}; found {value!r}")
        if not _GLOB.sub("", rest).strip("/ "):
            raise ValueError(f"{value!r} would acknowledge every {kind} drift; name what is acknowledged")
        return value

    @property
    def literal_name(self) -> str | None:
        """The host or stack named before the first '/', when it has no wildcard."""
        name = self.target.partition(":")[2].split("/", 1)[0]
        return None if _GLOB.search(name) else name

    def matches(self, item_id: str) -> bool:
        return fnmatchcase(item_id, self.target)


class DriftAckLedger(BaseModel):
    """The whole ``drift-ack.yaml`` file."""

    model_config = ConfigDict(extra="forbid")

    acknowledgements: list[DriftAck] = Field(default_factory=list, description="Acknowledged drift.")


@dataclass
class Ledger:
    """A loaded ledger: the entries and where each one stands in the file."""

    entries: list[DriftAck]
    locations: list[str]
    path: str

    def apply(self, items: list[DriftItem], today: dt.date) -> list[Acknowledgement]:
        """Set each item's status from the entries; return the entries as the report shows them.

        An item matched by a valid entry is acknowledged; one matched only by expired entries
        is ``ack-expired``; the others stay ``drift``.
        """
        matched: list[list[str]] = [[] for _ in self.entries]
        for item in items:
            valid = expired = None
            for index, entry in enumerate(self.entries):
                if entry.matches(item.id):
                    matched[index].append(item.id)
                    if entry.expires >= today:
                        valid = valid or entry
                    else:
                        expired = expired or entry
            if valid is not None:
                item.status, item.acknowledged_by = ItemStatus.ACKNOWLEDGED, valid.target
            elif expired is not None:
                item.status, item.acknowledged_by = ItemStatus.ACK_EXPIRED, expired.target
        return [
            Acknowledgement(target=e.target, reason=e.reason, owner=e.owner, expires=e.expires,
                            reference=e.reference, location=loc, expired=e.expires < today, matched=m)
            for e, loc, m in zip(self.entries, self.locations, matched, strict=True)
        ]


def ledger_path(env: str, root: Path = INVENTORIES) -> Path:
    return root / env / LEDGER_NAME


def _where(data: Any, loc: tuple[str | int, ...], fallback: str) -> tuple[str, int, int, str]:
    """file, line, column and readable path of the deepest part of ``loc`` found in ``data``."""
    pos = getattr(data, "pos", (fallback, 0, 0))
    node = data
    parts: list[str] = []
    for element in loc:
        if isinstance(node, PosDict) and element in node:
            pos, node = node.value_pos[element], node[element]
            parts.append(str(element))
        elif isinstance(node, PosList) and isinstance(element, int) and 0 <= element < len(node):
            pos, node = node.item_pos[element], node[element]
            parts[-1:] = [f"{parts[-1] if parts else ''}[{element}]"]
        else:
            if isinstance(element, str):
                parts.append(element)
            break
    return pos[0], pos[1], pos[2], ".".join(parts)


def load_ledger(path: Path, topology: Topology | None = None) -> Ledger:
    """Read and check a ledger; a missing file is an empty ledger. Raises :class:`TopologyError`."""
    shown = display_path(path)
    if not path.exists():
        return Ledger([], [], shown)
    try:
        if path.stat().st_size > MAX_LEDGER_BYTES:
            raise TopologyError([LoadProblem(shown, 0, 0, "", f"larger than {MAX_LEDGER_BYTES} bytes")])
        data = parse_yaml(path.read_bytes(), shown)
    except OSError as exc:
        raise TopologyError([LoadProblem(shown, 0, 0, "", f"cannot read: {exc.strerror or exc}")]) from None
    if data is None:
        return Ledger([], [], shown)
    try:
        ledger = DriftAckLedger.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            file, line, column, field = _where(data, tuple(err["loc"]), shown)
            if err["type"] == "missing":
                message = "required field is missing"
            elif err["type"] == "extra_forbidden":
                message = "unknown field (expected target, reason, owner, expires, reference)"
            else:
                message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(LoadProblem(file, line, column, field, message))
        raise TopologyError(problems) from None
    locations = []
    problems = []
    for index, entry in enumerate(ledger.acknowledgements):
        file, line, column, _ = _where(data, ("acknowledgements", index), shown)
        locations.append(f"{file}:{line}")
        name = entry.literal_name
        if topology is None or name is None:
            continue
        kind = entry.target.partition(":")[0]
        known = {h.name for h in topology.hosts} if kind == "host" else None
        if known is not None and name not in known:
            f, ln, col, field = _where(data, ("acknowledgements", index, "target"), shown)
            problems.append(LoadProblem(f, ln, col, field, f"no host {name!r} in environment "
                                        f"{topology.environment.name!r}; the entry would never match"))
    if problems:
        raise TopologyError(problems)
    return Ledger(ledger.acknowledgements, locations, shown)
