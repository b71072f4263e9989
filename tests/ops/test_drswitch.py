"""dr.switchover, dr.failover and dr.failback on a simulated pair: order, refusals, resumption, safety.

The simulated hosts keep PostgreSQL's rules that matter here: a server starts read-only when it
has a standby.signal, a clean shutdown ends with a checkpoint that streaming standbys receive, a
promotion moves to the next timeline. After every operation the simulation checks that no two
hosts of the pair accept writes; an interruption (SIGINT) is injected at every step in turn and
the command run again must finish the job.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
from invoke.exceptions import Exit

from dualdc.databases import slot_name
from dualdc.loader import load_environment
from dualdc.model import Topology
from dualdc.ops import audit, drstate, drswitch
from dualdc.ops.drswitch import DrError, Facts, Options, Pair
from dualdc.reports.header import Outcome
from dualdc.tasks import dr as drtasks

SVC = "kj-core-banking"
GJ, JJ = "gj-db-kj-01", "jj-db-kj-01"


class Stop(BaseException):
    """The injected interruption (as SIGINT raises Interrupted in a guarded run)."""


class SimNode:
    """A simulated pair of PostgreSQL hosts behind :class:`dualdc.ops.drswitch.Node`."""

    def __init__(self, primary: str = GJ, standby: str = JJ) -> None:
        self.h: dict[str, dict[str, Any]] = {
            primary: {"state": "writable", "lsn": 1000, "tl": 1, "signal": False, "up": None,
                      "ckpt": None, "clean": False, "slots": {slot_name(standby)}},
            standby: {"state": "recovery", "lsn": 1000, "tl": 1, "signal": True, "up": primary,
                      "ckpt": None, "clean": False, "slots": set()},
        }
        self.lagging: set[str] = set()
        self.down: set[str] = set()
        self.ops: list[str] = []
        self.interrupt_at: int | None = None
        self.archived: int | None = None
        self.both_writable: list[str] = []

    # the simulation -------------------------------------------------------------------------
    def _step(self, op: str) -> None:
        self.ops.append(op)
        self._replicate()
        writable = [n for n, h in self.h.items() if h["state"] == "writable"]
        if len(writable) > 1:
            self.both_writable.append(f"after {op}: {writable}")
        if self.interrupt_at is not None and len(self.ops) == self.interrupt_at:
            raise Stop(op)

    def _replicate(self) -> None:
        for name, h in self.h.items():
            up = self.h.get(h["up"]) if h["up"] else None
            if (h["state"] == "recovery" and up is not None and name not in self.lagging
                    and h["up"] not in self.down and up["tl"] >= h["tl"]):
                h["lsn"] = max(h["lsn"], up["lsn"])
                h["tl"] = up["tl"]

    def write(self, host: str, n: int = 10) -> None:
        assert self.h[host]["state"] == "writable"
        self.h[host]["lsn"] += n
        self._replicate()

    # Node -----------------------------------------------------------------------------------
    def facts(self, host: str) -> Facts:
        self._replicate()
        h = self.h[host]
        if host in self.down:
            return Facts(host, "unreachable", detail="no route")
        if h["state"] == "stopped":
            return Facts(host, "stopped")
        senders = {}
        for name, other in self.h.items():
            if other["up"] == host and other["state"] == "recovery" and name not in self.down \
                    and other["tl"] <= h["tl"]:
                senders[slot_name(name)] = {"state": "streaming", "lag_bytes": h["lsn"] - other["lsn"],
                                            "replay_lag_s": 99.0 if name in self.lagging else 0.0}
        return Facts(host, h["state"], h["lsn"], h["lsn"], h["tl"], senders, sorted(h["slots"]))

    def _reach(self, host: str) -> None:
        if host in self.down:
            raise DrError(f"{host}: unreachable over SSH", code=3)

    def stop(self, host: str) -> None:
        self._reach(host)
        h = self.h[host]
        if h["state"] != "stopped":
            h["ckpt"] = h["lsn"]
            h["lsn"] += 40  # the shutdown checkpoint record
            h["clean"] = True
            self._replicate()
            h["state"] = "stopped"
        self._step(f"stop {host}")

    def start(self, host: str) -> None:
        self._reach(host)
        h = self.h[host]
        if h["state"] == "stopped":
            h["state"] = "recovery" if h["signal"] else "writable"
            h["clean"] = False
        self._step(f"start {host}")

    def fence(self, host: str, conf: str) -> None:
        self._reach(host)
        found = re.search(r"is a standby of (\S+);", conf)
        assert found, conf
        self.h[host]["signal"] = True
        self.h[host]["up"] = found.group(1)
        self._step(f"fence {host}")

    def unfence(self, host: str) -> None:
        self.h[host]["signal"] = False
        self.h[host]["up"] = None
        self._step(f"unfence {host}")

    def checkpoint(self, host: str) -> tuple[int | None, int | None, str]:
        self._reach(host)
        h = self.h[host]
        return h["ckpt"], h["tl"], "shut down" if h["clean"] else "in production"

    def promote(self, host: str) -> None:
        h = self.h[host]
        assert h["state"] == "recovery"
        h["state"], h["signal"], h["up"] = "writable", False, None
        h["tl"] += 1
        self._step(f"promote {host}")

    def create_slot(self, host: str, slot: str) -> None:
        self.h[host]["slots"].add(slot)
        self._step(f"slot {host}")

    def drop_slot(self, host: str, slot: str) -> None:
        self.h[host]["slots"].discard(slot)

    def reclone(self, host: str, conninfo: str, slot: str, conf: str) -> None:
        self._reach(host)
        primary = next(n for n, h in self.h.items() if h["state"] == "writable")
        self.h[host].update(state="recovery", lsn=self.h[primary]["lsn"], tl=self.h[primary]["tl"],
                            signal=True, up=primary, clean=False)
        self._step(f"reclone {host}")

    def archived_lsn(self, repo_host: str, stanza: str) -> int | None:
        return self.archived


@pytest.fixture
def lab() -> Topology:
    return load_environment("lab")


def _pair(lab: Topology, node: SimNode, root: Path, **opts: Any) -> Pair:
    state = drstate.load_and_apply(lab, root)
    svc = next(s for s in lab.host_databases() if s.name == SVC)
    return Pair(lab, svc, node, state, save=lambda s: drstate.save(s, root), progress=lambda m: None,
                options=Options(poll=0.001, catchup_timeout=0.05, stream_timeout=0.05, **opts))


def test_switchover_fences_before_promoting_and_loses_nothing(lab: Topology, tmp_path: Path) -> None:
    node = SimNode()
    node.write(GJ, 500)
    outcome = _pair(lab, node, tmp_path).switchover("jeonju")
    assert node.both_writable == []
    assert node.ops.index(f"stop {GJ}") < node.ops.index(f"promote {JJ}")
    assert node.h[JJ]["state"] == "writable" and node.h[GJ]["state"] == "recovery"
    assert node.h[GJ]["up"] == JJ and node.h[GJ]["tl"] == node.h[JJ]["tl"] == 2
    assert node.h[JJ]["lsn"] >= node.h[GJ]["ckpt"]  # replayed the old primary's last WAL
    assert slot_name(GJ) in node.h[JJ]["slots"]
    assert outcome.changed and outcome.loss_bytes == 0 and outcome.fenced == []
    assert [p["phase"] for p in outcome.phases][:4] == ["checks", "fence", "catch-up", "promote"]
    state = drstate.load("lab", tmp_path)
    assert state.services[SVC].primary == JJ and state.services[SVC].pending is None


def test_switchover_again_changes_nothing(lab: Topology, tmp_path: Path) -> None:
    node = SimNode()
    _pair(lab, node, tmp_path).switchover("jeonju")
    before = list(node.ops)
    outcome = _pair(load_environment("lab"), node, tmp_path).switchover("jeonju")
    assert not outcome.changed
    assert not [op for op in node.ops[len(before):] if op.startswith(("stop", "promote", "reclone"))]


def test_switch_back_returns_to_the_model_and_empties_the_state(lab: Topology, tmp_path: Path) -> None:
    node = SimNode()
    _pair(lab, node, tmp_path).switchover("jeonju")
    _pair(load_environment("lab"), node, tmp_path).switchover("gwangju")
    assert node.h[GJ]["state"] == "writable" and node.h[JJ]["state"] == "recovery"
    assert node.h[GJ]["tl"] == 3
    assert drstate.load("lab", tmp_path).services == {}
    assert node.both_writable == []


@pytest.mark.parametrize(("setup", "message", "code"), [
    (lambda n: n.lagging.add(JJ), "behind", 2),
    (lambda n: n.down.add(JJ), "unreachable", 3),
    (lambda n: n.h[JJ].update(up=None), "does not stream", 2),
])
def test_switchover_refuses_with_nothing_changed(lab: Topology, tmp_path: Path, setup: Any, message: str,
                                                 code: int) -> None:
    node = SimNode()
    node.write(GJ, 100)
    setup(node)
    with pytest.raises(DrError, match=message) as err:
        _pair(lab, node, tmp_path).switchover("jeonju")
    assert err.value.code == code
    assert "nothing changed" in str(err.value)
    assert node.ops == []
    assert node.h[GJ]["state"] == "writable"
    assert drstate.load("lab", tmp_path).services == {}


def test_switchover_to_a_site_without_a_standby_is_bad_input(lab: Topology, tmp_path: Path) -> None:
    node = SimNode()
    with pytest.raises(DrError, match="not replicated to") as err:
        _pair(lab, node, tmp_path).at_site("nowhere")
    assert err.value.code == 1


def test_a_standby_that_does_not_catch_up_lifts_the_fence(lab: Topology, tmp_path: Path) -> None:
    node = SimNode()
    pair = _pair(lab, node, tmp_path, max_lag_seconds=1000.0)
    node.lagging.add(JJ)
    node.h[JJ]["lsn"] = node.h[GJ]["lsn"]  # in step at the checks, then stuck
    with pytest.raises(DrError, match="primary again, nothing changed"):
        pair.switchover("jeonju")
    assert node.h[GJ]["state"] == "writable" and node.h[JJ]["state"] == "recovery"
    assert drstate.load("lab", tmp_path).services == {}
    assert node.both_writable == []


@pytest.mark.parametrize("step", range(1, 9))
def test_an_interrupted_switchover_is_safe_and_a_rerun_finishes_it(lab: Topology, tmp_path: Path,
                                                                   step: int) -> None:
    node = SimNode()
    node.interrupt_at = step
    with contextlib.suppress(Stop):
        _pair(lab, node, tmp_path).switchover("jeonju")
    node.interrupt_at = None
    assert node.both_writable == []
    _pair(load_environment("lab"), node, tmp_path).switchover("jeonju")
    assert node.both_writable == []
    assert node.h[JJ]["state"] == "writable" and node.h[GJ]["state"] == "recovery"
    assert node.h[GJ]["up"] == JJ
    assert drstate.load("lab", tmp_path).services[SVC].primary == JJ


def test_failover_with_the_site_down_fences_by_record_and_reports_the_window(lab: Topology,
                                                                             tmp_path: Path) -> None:
    node = SimNode()
    node.write(GJ, 100)
    node.lagging.add(JJ)
    node.write(GJ, 300)  # acknowledged at gwangju, never received at jeonju
    node.down.add(GJ)
    node.h[GJ]["state"] = "stopped"  # the site's processes died with it
    node.archived = node.h[GJ]["lsn"]
    node.lagging.clear()
    outcome = _pair(lab, node, tmp_path).failover("jeonju")
    assert node.h[JJ]["state"] == "writable"
    assert outcome.fenced == [GJ] and outcome.loss_bytes == 300
    state = drstate.load("lab", tmp_path)
    assert state.services[SVC].fenced == [GJ] and state.services[SVC].by == "failover"
    # the site returns: the start guard (timeline 1 < 2) keeps it read-only
    node.down.clear()
    assert node.h[GJ]["tl"] < node.h[JJ]["tl"]
    # failback rebuilds it
    result = _pair(load_environment("lab"), node, tmp_path).failback()
    assert result.changed and node.h[GJ]["state"] == "recovery" and node.h[GJ]["up"] == JJ
    assert drstate.load("lab", tmp_path).services[SVC].fenced == []
    assert node.both_writable == []


def test_failover_with_a_reachable_old_primary_stops_it_first(lab: Topology, tmp_path: Path) -> None:
    """Both links cut: the controller still reaches the old primary and fences it before promoting."""
    node = SimNode()
    node.lagging.add(JJ)
    node.write(GJ, 50)
    outcome = _pair(lab, node, tmp_path).failover("jeonju")
    assert node.ops.index(f"stop {GJ}") < node.ops.index(f"promote {JJ}")
    assert node.h[GJ]["signal"] and node.h[GJ]["state"] == "stopped"
    assert outcome.loss_bytes is not None and outcome.loss_bytes >= 50
    assert node.both_writable == []


@pytest.mark.parametrize("step", range(1, 4))
def test_an_interrupted_failover_is_safe_and_a_rerun_finishes_it(lab: Topology, tmp_path: Path,
                                                                 step: int) -> None:
    node = SimNode()
    node.interrupt_at = step
    with contextlib.suppress(Stop):
        _pair(lab, node, tmp_path).failover("jeonju")
    node.interrupt_at = None
    assert node.both_writable == []
    _pair(load_environment("lab"), node, tmp_path).failover("jeonju")
    assert node.both_writable == []
    assert node.h[JJ]["state"] == "writable" and node.h[GJ]["state"] == "stopped" and node.h[GJ]["signal"]
    assert drstate.load("lab", tmp_path).services[SVC].fenced == [GJ]


def test_failover_again_changes_nothing(lab: Topology, tmp_path: Path) -> None:
    node = SimNode()
    _pair(lab, node, tmp_path).failover("jeonju")
    n = len(node.ops)
    outcome = _pair(load_environment("lab"), node, tmp_path).failover("jeonju")
    assert not outcome.changed and len(node.ops) == n


def test_the_task_refuses_bad_input_before_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUALDC_OPS_STATE_DIR", str(tmp_path))
    with pytest.raises(Exit) as err:
        drtasks.run_dr("lab", "failback", [""], False, act=lambda p: p.failback(), options={},
                       node=SimNode())
    assert err.value.code == 1
    assert audit.read("lab", tmp_path) == []


def test_the_task_holds_the_lock_and_writes_the_audit_record(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUALDC_OPS_STATE_DIR", str(tmp_path))
    node = SimNode()
    outcomes = drtasks.run_dr("lab", "switchover", [SVC], False, act=lambda p: p.switchover("jeonju"),
                              options={"service": SVC, "to": "jeonju"}, node=node)
    assert outcomes[0].target == JJ
    records = audit.read("lab", tmp_path)
    assert [r.command for r in records] == ["dr.switchover"]
    assert records[0].result is Outcome.SUCCESS and records[0].exit_code == 0
    node.lagging.add(GJ)  # the old primary, now the standby, falls behind: switching back is refused
    node.write(JJ, 10)
    with pytest.raises(Exit) as err:
        drtasks.run_dr("lab", "switchover", [SVC], False, act=lambda p: p.switchover("gwangju"),
                       options={"service": SVC, "to": "gwangju"}, node=node)
    assert err.value.code == 2
    assert audit.read("lab", tmp_path)[-1].result is Outcome.FAILED


def test_lsn_positions_convert_both_ways() -> None:
    assert drswitch.lsn_int("1/10") == (1 << 32) + 16 and drswitch.lsn_str((1 << 32) + 16) == "1/10"
