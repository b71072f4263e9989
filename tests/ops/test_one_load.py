"""One model load per run: a two-site drift loads the topology once and hands Ansible what it built.

The hosts layer's ansible-playbook runs (one per site, at the same time) get the inventory the
run built from its loaded topology as a static file in their artifacts; the inventory plugin
(which would load the topology again in each Ansible process) is left to stock
``ansible-playbook`` and ``ansible-inventory``. The runs here target no host (a limit no host
matches), so no lab is needed: what is counted is the loading, not the converging.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dualdc import cli, loader
from dualdc.model import Layer
from dualdc.ops.ack import Ledger
from dualdc.ops.drift import DriftRun, run_drift


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every topology load in this process, by path."""
    counted: Counter[str] = Counter()
    original = loader._load_topology

    def counting(path: Path, max_bytes: int) -> Any:
        counted[str(path)] += 1
        return original(path, max_bytes)

    monkeypatch.setattr(loader, "_load_topology", counting)
    return counted


def test_a_two_site_drift_loads_the_topology_once(loads: Counter[str], tmp_path: Path) -> None:
    topology = cli.load("lab")  # as `invoke drift --env lab` loads it
    sites = [s.name for s in topology.sites]
    assert len(sites) >= 2
    report = run_drift(DriftRun(
        topology=topology, ledger=Ledger([], [], ""), layers={Layer.MODEL, Layer.HOSTS, Layer.LAB},
        run_options={"limit": "no-such-host", "strategy": "linear", "state_root": tmp_path}))
    assert {layer.layer for layer in report.layers} == {Layer.MODEL, Layer.HOSTS, Layer.LAB}
    assert sum(loads.values()) == 1, loads
    # one ansible-playbook per site, each handed the static inventory in its own artifacts
    commands = sorted(tmp_path.glob("lab/artifacts/*/command"))
    assert len(commands) == len(sites), report.layers
    for command in commands:
        argv = json.loads(command.read_text(encoding="utf-8"))["command"]
        given = argv[argv.index("-i") + 1]
        assert given == str(command.parent / "inventory.yml")
        assert Path(given).is_file() and Path(given).stat().st_mode & 0o077 == 0
        assert "inventories/lab" not in " ".join(argv)
