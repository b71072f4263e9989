"""The lab's state file: what it made, so ``lab.down`` removes exactly that and ``lab.up`` resumes.

``<state>/state.json`` is written *before* each kind of object is created (the names it is
about to make) and after (the pids it started), atomically (write + rename). A lab that
failed half-way therefore always has a record ``lab.down`` can act on.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from dualdc.base.files import write_atomic
from dualdc.lab.errors import LabError

VERSION = 1


class LabState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.data: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return self.empty()
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"the lab state file {self.path} is unreadable ({exc}); "
                           "move it away and run lab.down to clean up by the names in the topology") from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise LabError(f"the lab state file {self.path} has an unknown format; "
                           "move it away and run lab.down")
        base = self.empty()
        base.update(data)
        return base

    @staticmethod
    def empty() -> dict[str, Any]:
        return {"version": VERSION, "env": None, "base": None, "namespaces": [], "root_devices": [],
                "hosts": {}, "firewall": {}, "faults": {"hosts": [], "links": [], "sites": []}}

    def save(self) -> None:
        with self._lock:
            write_atomic(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")

    def remember(self, key: str, names: list[str]) -> None:
        """Add names to a recorded list (before creating them) and save."""
        with self._lock:
            current = list(self.data.get(key, []))
            for name in names:
                if name not in current:
                    current.append(name)
            self.data[key] = current
        self.save()

    def forget(self, key: str, names: list[str]) -> None:
        with self._lock:
            self.data[key] = [n for n in self.data.get(key, []) if n not in set(names)]
        self.save()

    def host(self, name: str) -> dict[str, Any]:
        with self._lock:
            hosts: dict[str, dict[str, Any]] = self.data.setdefault("hosts", {})
            return hosts.setdefault(name, {})

    def set_host(self, name: str, **values: Any) -> None:
        with self._lock:
            self.data.setdefault("hosts", {}).setdefault(name, {}).update(values)
        self.save()

    @property
    def faults(self) -> dict[str, list[str]]:
        faults: dict[str, list[str]] = self.data.setdefault("faults", {"hosts": [], "links": [], "sites": []})
        return faults

    def set_fault(self, kind: str, name: str, on: bool) -> None:
        with self._lock:
            items = [n for n in self.faults.get(kind, []) if n != name]
            if on:
                items.append(name)
            self.faults[kind] = sorted(items)
        self.save()
