"""Shared fixtures. Lab tests (marker ``lab``) need root and the lab's Debian packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dualdc.loader import load_topology
from dualdc.model import Topology
from dualdc.policy import Report, run_policy

ROOT = Path(__file__).resolve().parents[1]

# The suite pins evaluation dates with environment.today; only with this is the pin honoured
# (set before anything loads a topology, and inherited by the commands tests start).
os.environ["DUALDC_ALLOW_PINNED_TODAY"] = "1"

# The session fixture ``lab`` (a running lab twin, under the machine-wide lab lock).
pytest_plugins = ["dualdc.lab.testing"]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs from the repository root, as the commands do."""
    monkeypatch.chdir(ROOT)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0 and shutil.which("debootstrap"):
        return
    reason = "needs root and debootstrap (run ./scripts/bootstrap.sh as root)"
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


# --- the lab, deployed once per session ----------------------------------------------------


@pytest.fixture(scope="session")
def deployed(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A fresh lab (hosts' disks wiped), deployed once with `invoke deploy --env lab --yes`.

    The ops tests check the deploy itself and tamper from there; the roles tests take its
    per-site converges as the full converge of every host. Whoever changes a host puts it back.
    """
    lab.down(purge=True)
    lab.up()
    out = tmp_path_factory.mktemp("deploy")
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "deploy", "--env", "lab", "--yes", "--artifacts", str(out)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )
    written = out / "deploy.json"
    report = json.loads(written.read_text(encoding="utf-8")) if written.exists() else None
    runs = [
        step["detail"].rsplit("run ", 1)[1]
        for step in (report or {}).get("steps", [])
        if step["action"] == "converge" and step["status"] == "applied"
    ]
    return {
        "done": done,
        "report": report,
        "artifacts": out,
        # the PLAY RECAP of each site's converge, read now (ansible-runner rotates old artifacts)
        "converge_recaps": [_recap(ROOT / ".state" / "lab" / "artifacts" / run) for run in runs],
    }


def _recap(folder: Path) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of a kept run, from its artifacts (job_events, in the AWX layout)."""
    for path in sorted((folder / "job_events").glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        if event.get("event") == "playbook_on_stats":
            return {key: event["event_data"][key] for key in ("processed", "failures", "dark")}
    raise AssertionError(f"{folder} holds no PLAY RECAP")


# --- editable copies of an environment, for the model, loader and policy tests -----------


class _NoAlias(yaml.CSafeDumper):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True


class TopologyCopy:
    """A copy of an environment's YAML files that a test edits as data, then loads."""

    def __init__(self, source: Path, folder: Path) -> None:
        shutil.copytree(source, folder)
        self.folder = folder
        self.files = {p.name: yaml.load(p.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
                      for p in sorted(folder.glob("*.yaml"))}

    def section(self, key: str) -> list[Any]:
        for data in self.files.values():
            if isinstance(data, dict) and key in data:
                return data[key]  # type: ignore[no-any-return]
        raise KeyError(key)

    @property
    def env(self) -> dict[str, Any]:
        return self.section("environment")  # type: ignore[return-value]

    def file_of(self, key: str) -> str:
        return next(name for name, data in self.files.items() if isinstance(data, dict) and key in data)

    def find(self, key: str, name: str) -> dict[str, Any]:
        return next(item for item in self.section(key) if item.get("name") == name)

    def remove(self, key: str, name: str) -> None:
        items = self.section(key)
        items.remove(self.find(key, name))

    def add_flow(self, name: str, source: str, destination: str, ports: Any = (443,), **extra: Any) -> None:
        flow = {"name": name, "source": source, "destination": destination,
                "ports": list(ports) if not isinstance(ports, str) else ports,
                "purpose": extra.pop("purpose", f"test flow {name} for a policy check")}
        flow.update(extra)
        self.section("flows").append(flow)

    def save(self) -> None:
        for name, data in self.files.items():
            text = yaml.dump(data, Dumper=_NoAlias, sort_keys=False, allow_unicode=True, width=200)
            (self.folder / name).write_text(text, encoding="utf-8")

    def load(self) -> Topology:
        self.save()
        return load_topology(self.folder)

    def report(self) -> Report:
        return run_policy(self.load())

    def pairs(self, rule: str | None = None, include_waived: bool = False) -> set[tuple[str, str]]:
        """(rule, target) of the findings of the current topology, of one rule if given."""
        return {(f.rule, f.target) for f in self.report().findings
                if (rule is None or f.rule == rule) and (include_waived or not f.waived)}

    def line_of(self, file: str, text: str, after: str | None = None) -> int:
        """1-based line of the first line containing ``text`` (after the first containing ``after``)."""
        lines = (self.folder / file).read_text(encoding="utf-8").splitlines()
        start = 0
        if after is not None:
            start = next(i for i, line in enumerate(lines) if after in line)
        return next(i for i, line in enumerate(lines[start:], start=start) if text in line) + 1


@pytest.fixture
def topology_copy(tmp_path: Path) -> TopologyCopy:
    """An editable copy of inventories/lab (the model and policy tests call it ``lab``)."""
    return TopologyCopy(ROOT / "inventories" / "lab", tmp_path / "lab")


@pytest.fixture
def copy_env(tmp_path: Path) -> Callable[[str], TopologyCopy]:
    """Make an editable copy of any environment under inventories/."""

    made: list[str] = []

    def make(env: str) -> TopologyCopy:
        made.append(env)
        return TopologyCopy(ROOT / "inventories" / env, tmp_path / f"{env}-copy-{len(made)}")

    return make
