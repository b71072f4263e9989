"""The lab twin for real: namespaces, bridges, routers, sshd (marker ``lab``: root, builds the lab).

The tests share one lab (the session fixture ``lab``) and run in file order: the lab is
checked as built, then firewall, faults, a failure in the middle of ``up``, and last
``down`` with nothing left behind. Each test leaves the lab up and healthy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dualdc.lab import Lab, hosts, system
from dualdc.lab import verify as lab_verify
from dualdc.lab.errors import LabError
from dualdc.lab.system import Proc

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)


def involves(result: lab_verify.Result, name: str) -> bool:
    return name in (result.probe.label(result.probe.source), result.probe.label(result.probe.destination))


# --------------------------------------------------------------------------- as built


def test_every_host_is_up_with_sshd_reachable_from_the_controller(lab: Lab) -> None:
    status = lab.status()
    assert len(status.hosts) == len(lab.topology.hosts)
    bad = [h.name for h in status.hosts if not (h.running and h.sshd and h.reachable)]
    assert bad == []
    assert all(r.present and r.forwarding and r.firewall for r in status.routers)
    assert all(state == "up" for r in status.routers for state in r.links.values())


def test_hosts_have_the_models_names_interfaces_and_a_debian_root(lab: Lab) -> None:
    for name in ("gj-core-wk-01", "jj-bastion-01"):
        host = lab.topology.host(name)
        assert lab.exec_in_host(name, ["hostname"]).stdout.strip() == name
        links = json.loads(lab.exec_in_host(name, ["ip", "-j", "addr", "show"]).stdout)
        found = {(link["ifname"], a["local"]) for link in links for a in link.get("addr_info", [])
                 if a.get("family") == "inet" and link["ifname"] != "lo"}
        assert found == {(i.name, str(i.address)) for i in host.interfaces}
        assert "bookworm" in lab.exec_in_host(name, ["cat", "/etc/os-release"]).stdout
        # Its own PID namespace: PID 1 is the host's init, and only the host's processes are visible.
        assert lab.exec_in_host(name, ["cat", "/proc/1/cmdline"]).stdout.startswith("/usr/bin/tini")
        pids = [p for p in lab.exec_in_host(name, ["ls", "/proc"]).stdout.split() if p.isdigit()]
        assert len(pids) < len(system.pids()) / 4
    # Overlay roots diverge per host.
    lab.exec_in_host("gj-ntp-01", ["sh", "-c", "echo only-here > /root/marker"])
    assert lab.exec_in_host("jj-ntp-01", ["test", "-e", "/root/marker"], check=False).returncode == 1
    lab.exec_in_host("gj-ntp-01", ["rm", "/root/marker"])


def test_nothing_of_a_host_is_mounted_on_the_controller(lab: Lab) -> None:
    state = str(lab.cfg.state)
    assert [m for m, _ in system.mounts() if m.startswith(state)] == []


def test_ansible_reaches_every_host_with_host_key_checking(lab: Lab) -> None:
    argv = [str(BIN / "ansible"), "-i", "inventories/lab", "all", "-m", "ping", "-o", "-f", "24"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("SUCCESS") == len(lab.topology.hosts)


def test_known_hosts_pins_each_hosts_own_key(lab: Lab) -> None:
    lines = [line for line in lab.cfg.known_hosts.read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == len(lab.topology.hosts)
    keys = {line.split()[2] for line in lines}
    assert len(keys) == len(lines)  # no two hosts share a key
    pub = lab.exec_in_host("gj-log-01", ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]).stdout.split()[1]
    assert any(line.startswith("gj-log-01,") and pub in line for line in lines)


def test_up_again_changes_nothing(lab: Lab) -> None:
    report = lab.up()
    assert report.changes == {}
    assert report.seconds < 20


def test_status_command_json(lab: Lab) -> None:
    proc = invoke("lab.status", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["all_up"] is True and len(data["hosts"]) == len(lab.topology.hosts)


# --------------------------------------------------------------------------- firewall


def test_verify_passes_then_fails_when_a_forbidden_flow_is_opened_by_hand(lab: Lab) -> None:
    proc = invoke("lab.verify", "--format", "json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["summary"]["unexpected"] == 0
    assert data["summary"]["declared"] >= len(lab.topology.flows)

    # Open Gwangju's kjbank DMZ -> kjbank internal by hand in the router. Verify is end to end,
    # so the destination host's own firewall (the firewall role, once converged) is opened too,
    # for the duration of the check, and then put back as it was.
    router = lab.plan.routers["gwangju"].netns
    rule = ["ip", "saddr", "10.10.210.0/24", "ip", "daddr", "10.10.110.0/24", "accept"]
    system.run(system.in_netns(router, ["nft", "insert", "rule", "inet", "dualdc_lab", "forward", *rule]))
    targets = {p.label(p.destination) for p in lab_verify.plan_probes(lab.topology, lab.plan)[0]
               if p.category == "dmz-to-internal" and p.src.startswith("10.10.210.")
               and p.dst.startswith("10.10.110.")}
    saved = {h: lab.exec_in_host(h, ["nft", "list", "ruleset"]).stdout for h in targets}
    try:
        for h in targets:
            lab.exec_in_host(h, ["nft", "flush", "ruleset"])
        report = lab_verify.run(lab)
        opened = [r for r in report.unexpected if r.probe.category == "dmz-to-internal"]
        assert opened, "the hand-opened DMZ -> internal flow went unnoticed"
        for r in report.unexpected:  # only what was opened, and nothing else, is reported
            assert r.result == "open" and r.probe.src.startswith("10.10.210.") and r.probe.dst.startswith(
                "10.10.110."), r
        proc = invoke("lab.verify")
        assert proc.returncode == 2
        assert "UNEXPECTED" in proc.stdout
    finally:
        for h, ruleset in saved.items():
            lab.exec_in_host(h, ["nft", "-f", "-"], input="flush ruleset\n" + ruleset)

    # lab.up notices the hand edit and puts the generated ruleset back.
    assert lab.up().changes == {"firewall": 1}
    assert lab_verify.run(lab).unexpected == []


# --------------------------------------------------------------------------- faults


def test_host_fault_shows_in_status_and_verify(lab: Lab) -> None:
    proc = invoke("lab.fault", "--host", "gj-db-kj-01", "--down")
    assert proc.returncode == 0, proc.stderr
    try:
        status = {h.name: h for h in lab.status().hosts}
        down = status["gj-db-kj-01"]
        assert (down.running, down.reachable, down.fault) == (False, False, "host down")
        assert all(h.running and h.reachable for n, h in status.items() if n != "gj-db-kj-01")
        assert invoke("lab.status").returncode == 3
        report = lab_verify.run(lab)
        assert report.unexpected and all(involves(r, "gj-db-kj-01") for r in report.unexpected)
        assert report.faults == {"hosts": ["gj-db-kj-01"]}
    finally:
        lab.host_up("gj-db-kj-01")
    assert lab.status().all_up


def test_link_faults_show_in_status_and_verify(lab: Lab) -> None:
    lab.link("dr-link-a", up=False)
    try:
        links = {r.site: r.links for r in lab.status(probe=False).routers}
        assert links["gwangju"]["dr-link-a"] == "down" and links["jeonju"]["dr-link-a"] == "down"
        assert links["gwangju"]["dr-link-b"] == "up"
        report = lab_verify.run(lab)
        assert report.unexpected == []  # DR-03: the second link carries the replication
        assert report.faults == {"links": ["dr-link-a"]}
        lab.link("dr-link-b", up=False)
        report = lab_verify.run(lab)
        cross = [r for r in report.unexpected if r.probe.expect_open]
        assert cross, "cutting both links went unnoticed"
        sites = {r.probe.src[:5] != r.probe.dst[:5] for r in cross}
        assert sites == {True}  # only cross-site flows fail
    finally:
        lab.link("dr-link-a", up=True)
        lab.link("dr-link-b", up=True)
    assert lab.status(probe=False).routers[0].links == {"dr-link-a": "up", "dr-link-b": "up"}
    assert lab_verify.run(lab).unexpected == []  # the routes over the restored links are back


def test_site_fault_shows_in_status_and_verify(lab: Lab) -> None:
    lab.site("jeonju", up=False)
    try:
        status = lab.status()
        for h in status.hosts:
            if h.site == "jeonju":
                assert not h.running and not h.reachable and h.fault == "site down"
            else:
                assert h.running and h.reachable
        report = lab_verify.run(lab)
        assert report.unexpected
        assert all("10.20." in r.probe.src + r.probe.dst or "jeonju" in r.probe.label(r.probe.source)
                   + r.probe.label(r.probe.destination) for r in report.unexpected)
    finally:
        lab.site("jeonju", up=True)
    assert lab.status().all_up
    assert lab_verify.run(lab).unexpected == []


def test_fault_arguments_are_checked() -> None:
    assert invoke("lab.fault", "--host", "gj-ntp-01").returncode == 1
    proc = invoke("lab.fault", "--link", "no-such-link", "--cut")
    assert proc.returncode == 1 and "no inter-site link 'no-such-link'" in proc.stderr


# --------------------------------------------------------------------------- failure and down


def _recorded(lab: Lab) -> tuple[list[Proc], set[int], set[int]]:
    procs = [p for r in lab.state.data["hosts"].values() for k in ("init", "wrapper")
             if (p := Proc.from_json(r.get(k))) is not None]
    netns = {i for i in (system.netns_inode(n) for n in lab.plan.namespaces()) if i is not None}
    mnt = {i for p in procs if (i := system.ns_inode_of(p.pid, "mnt")) is not None}
    return procs, netns, mnt


def _assert_nothing_left(lab: Lab, procs: list[Proc], netns: set[int], mnt: set[int]) -> None:
    assert lab.leftovers() == []
    assert not any(p.alive() for p in procs)
    assert system.processes_in("net", netns) == []
    assert system.processes_in("mnt", mnt - {system.ns_inode_of(os.getpid(), "mnt")}) == []
    assert not any(n.startswith("ddc-") for n in system.netns_list())
    links = {link["ifname"] for link in system.ip_json(None, "link", "show")}
    assert not links & set(lab.plan.root_devices())
    state = str(lab.cfg.state)
    assert [m for m, _ in system.mounts() if m.startswith(state)] == []


def test_a_failure_in_the_middle_of_up_is_finished_by_up_and_removed_by_down(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    lab.down()
    real = hosts.start_init
    started: list[str] = []

    def flaky(name: str, *args: object, **kwargs: object) -> object:
        started.append(name)
        if len(started) == 7:
            raise LabError(f"injected failure while starting {name}")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hosts, "start_init", flaky)
    with pytest.raises(LabError, match="injected failure"):
        lab.up()
    assert any(p.alive() for p in _recorded(lab)[0])  # half built
    monkeypatch.setattr(hosts, "start_init", real)
    report = lab.up()  # finishes it
    assert report.changes.get("hosts started", 0) > 0
    assert lab.status().all_up

    monkeypatch.setattr(hosts, "start_init", flaky)
    started.clear()
    lab.down()
    with pytest.raises(LabError, match="injected failure"):
        lab.up()
    procs, netns, mnt = _recorded(lab)
    lab.down()  # removes the half-built lab
    _assert_nothing_left(lab, procs, netns, mnt)
    monkeypatch.setattr(hosts, "start_init", real)
    lab.up()
    assert lab.status().all_up


def test_down_leaves_nothing_behind_and_up_comes_back(lab: Lab) -> None:
    procs, netns, mnt = _recorded(lab)
    assert procs and netns and mnt
    proc = invoke("lab.down")
    assert proc.returncode == 0, proc.stderr
    _assert_nothing_left(lab, procs, netns, mnt)
    assert invoke("lab.status").returncode == 3
    assert invoke("lab.verify").returncode == 3  # nothing to verify against
    proc = invoke("lab.up")
    assert proc.returncode == 0, proc.stderr
    assert lab.status().all_up
