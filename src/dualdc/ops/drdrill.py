"""``dr.drill``: rehearse a site takeover end to end, measure RTO and RPO, check consistency.

The drill, per scenario:

- **planned**: a synthetic banking workload writes to every chosen primary; ``dr.switchover``
  moves each to its DR peer; the switchover time is measured (fence to the first acknowledged
  commit at the new primary) and no acknowledged commit may be missing; then it switches back.
- **site-down**: the workload runs; the primary's site is taken down with ``lab.fault --site``;
  ``dr.failover`` promotes the standby at the DR peer; **RTO** is the time from the fault to the
  first acknowledged commit at the new primary, **RPO** the acknowledged commits missing there
  (and the time window they span); the site is restored, ``dr.failback`` rebuilds the old
  primary as a standby and a switchover puts the primary back where the model says.
- **link-cut**: both inter-site links are cut with ``lab.fault --link``; the old primary is
  still reachable from the controller and is fenced before the standby is promoted; then as
  site-down.

The workload: per service a ``dualdc_drill`` database with accounts (equal opening balances) and
transfers; each transfer moves money between two accounts in one statement (both updates and the
transfer row, or nothing) and is recorded on the controller when PostgreSQL acknowledges its
commit. Its client reconnects to whichever member accepts writes. A poller asks every member,
several times a second, whether it accepts a write (``txid_current()`` fails in recovery):
two members accepting writes at the same time fail the drill.

After recovery it checks the balances still sum to the opening total, that every account's
balance equals its opening balance plus its transfers (no transfer half applied), and that every
pair is protected again (each standby streaming). Each figure is compared with the service's
``rto_minutes`` and ``rpo_minutes``; a miss exits 2. The record goes to the evidence folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import random
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dualdc.databases import current_placements, current_primary, slot_name
from dualdc.lab.config import ssh_dir
from dualdc.model import Service, Topology
from dualdc.ops.drswitch import Pair

DB = "dualdc_drill"
ACCOUNTS = 50
OPENING = 1_000_000
SCENARIOS = ("planned", "site-down", "link-cut")

SETUP_SQL = f"""SELECT 'CREATE DATABASE {DB}'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{DB}')
\\gexec
\\c {DB}
DROP TABLE IF EXISTS transfers;
DROP TABLE IF EXISTS accounts;
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE transfers (id bigint PRIMARY KEY, src int NOT NULL, dst int NOT NULL, amount bigint NOT NULL,
                        at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO accounts SELECT g, {OPENING} FROM generate_series(1, {ACCOUNTS}) g;
"""  # noqa: S608 (constants of this module)

CHECK_SQL = f"""SELECT json_build_object(
 'total', (SELECT sum(balance) FROM accounts),
 'accounts', (SELECT count(*) FROM accounts),
 'half', (SELECT count(*) FROM accounts a WHERE a.balance <> {OPENING}
           + coalesce((SELECT sum(amount) FROM transfers t WHERE t.dst = a.id), 0)
           - coalesce((SELECT sum(amount) FROM transfers t WHERE t.src = a.id), 0)),
 'ids', (SELECT coalesce(json_agg(id ORDER BY id), '[]'::json) FROM transfers))"""  # noqa: S608


def ssh_argv(topology: Topology, host: str) -> list[str]:
    """ssh to a host as dr.status does, with keep-alives so a lost host is noticed within seconds."""
    base = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "ServerAliveInterval=1",
            "-o", "ServerAliveCountMax=2"]
    env = topology.environment
    if env.lab:
        return [*base, "-F", str(ssh_dir(env.name) / "config"), host]
    return [*base, f"{env.ssh_user}@{topology.management_address(topology.host(host))}"]


class Session:
    """A psql session on a host over SSH: statements in, lines out, with a time limit per answer."""

    def __init__(self, argv: list[str], database: str = DB) -> None:
        self.proc = subprocess.Popen(
            # stdbuf: psql's answers reach the pipe line by line, not when its buffer fills
            [*argv, f"runuser -u postgres -- stdbuf -oL psql -XAtq -v ON_ERROR_STOP=0 -d {database}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
        )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)
        self.pending = b""

    def ask(self, sql: str, timeout: float) -> list[str] | None:
        """The lines printed for ``sql`` (None: the session died or did not answer in time).

        Read from the pipe itself (never through a buffered reader, whose buffer select cannot see).
        """
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{sql};\n\\echo __end__\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.pending:
                raw, self.pending = self.pending.split(b"\n", 1)
                line = raw.decode("utf-8", errors="replace")
                if line == "__end__":
                    return lines
                lines.append(line)
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.pending += chunk

    def close(self) -> None:
        try:
            self.sel.close()
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@dataclass
class Ack:
    id: int
    host: str
    at: float


@dataclass
class Workload:
    """One service's transfers; acknowledged commits are recorded here, on the controller."""

    topology: Topology
    svc: Service
    interval: float = 0.02
    acks: list[Ack] = field(default_factory=list)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    rto: float | None = None
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(int(time.time() * 1000) * 1000))

    def run(self) -> None:
        members = [h for _, h, _ in current_placements(self.topology, self.svc)]
        rng = random.Random(self.svc.name)  # noqa: S311 (synthetic load, not crypto)
        host = current_primary(self.topology, self.svc)
        # on a refusal or a timeout, the next member after the one that failed
        order = itertools.cycle(members[members.index(host) + 1:] + members[:members.index(host) + 1])
        session: Session | None = None
        while not self.stop.is_set():
            if session is None:
                session = Session(ssh_argv(self.topology, host))
            tid = next(self.ids)
            src, dst = rng.sample(range(1, ACCOUNTS + 1), 2)
            amount = rng.randint(1, 500)
            sql = (f"WITH d AS (UPDATE accounts SET balance = balance - {amount} WHERE id = {src} "  # noqa: S608
                   "RETURNING 1), "
                   f"c AS (UPDATE accounts SET balance = balance + {amount} WHERE id = {dst} RETURNING 1) "
                   f"INSERT INTO transfers (id, src, dst, amount) SELECT {tid}, {src}, {dst}, {amount} "
                   f"FROM d, c RETURNING 'ack:' || id")
            out = session.ask(sql, timeout=3.0)
            if out is not None and f"ack:{tid}" in out:
                self.acks.append(Ack(tid, host, time.time()))
                time.sleep(self.interval)
                continue
            self.failures += 1
            session.close()
            session = None
            host = next(order)
            time.sleep(0.05)
        if session is not None:
            session.close()


@dataclass
class Poller:
    """Asks every member of each database whether it accepts a write, several times a second."""

    topology: Topology
    services: list[Service]
    interval: float = 0.25
    stop: threading.Event = field(default_factory=threading.Event)
    samples: int = 0
    violations: list[str] = field(default_factory=list)

    def run(self) -> None:
        sessions: dict[str, Session | None] = {}
        members = {s.name: [h for _, h, _ in current_placements(self.topology, s)] for s in self.services}
        while not self.stop.is_set():
            for name, hosts in members.items():
                writable = []
                for host in hosts:
                    if sessions.get(host) is None:
                        sessions[host] = Session(ssh_argv(self.topology, host), database="postgres")
                    session = sessions[host]
                    assert session is not None
                    out = session.ask("SELECT 'w:' || txid_current()", timeout=2.0)
                    if out is None:
                        session.close()
                        sessions[host] = None
                    elif any(line.startswith("w:") for line in out):
                        writable.append(host)
                self.samples += 1
                if len(writable) > 1:
                    self.violations.append(f"{dt.datetime.now(dt.UTC):%H:%M:%S.%f} {name}: "
                                           f"{', '.join(writable)} both accept writes")
            self.stop.wait(self.interval)
        for session in sessions.values():
            if session is not None:
                session.close()


def run_sql(topology: Topology, host: str, sql: str, database: str = "postgres", timeout: float = 60) -> str:
    argv = [*ssh_argv(topology, host), f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {database}"]
    done = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{host}: psql failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def lab_fault(env: str, *args: str) -> None:
    """``invoke lab.fault`` (the lab's own fault injection) in a child process."""
    done = subprocess.run([sys.executable, "-m", "invoke", "lab.fault", "--env", env, *args],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"lab.fault {' '.join(args)}: {(done.stderr or done.stdout).strip()[-400:]}")


def wait_replayed(topology: Topology, svc: Service, timeout: float = 60) -> None:
    """Until every standby of ``svc`` replays its primary's current position."""
    primary = current_primary(topology, svc)
    lsn = run_sql(topology, primary, "SELECT pg_current_wal_lsn()").strip()
    deadline = time.monotonic() + timeout
    for _, host, role in current_placements(topology, svc):
        if role != "standby":
            continue
        while True:
            got = run_sql(topology, host, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn").strip()
            if got == "t":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host} did not replay {lsn} of {primary} within {timeout:g} s")
            time.sleep(0.2)


def protected(topology: Topology, svc: Service) -> tuple[bool, str]:
    """Whether every standby of ``svc`` streams from its current primary."""
    primary = current_primary(topology, svc)
    out = run_sql(topology, primary, "SELECT application_name || '=' || state FROM pg_stat_replication")
    states = dict(line.split("=", 1) for line in out.split() if "=" in line)
    missing = [h for _, h, r in current_placements(topology, svc)
               if r == "standby" and states.get(slot_name(h)) != "streaming"]
    return (not missing, f"{primary} streams to every standby" if not missing
            else f"not streaming from {primary}: {', '.join(missing)}")


Say = Callable[[str], None]


def consistency(topology: Topology, svc: Service, acks: list[Ack]) -> dict[str, Any]:
    """The checks after recovery, at the current primary."""
    import json  # noqa: PLC0415

    primary = current_primary(topology, svc)
    raw = json.loads(run_sql(topology, primary, CHECK_SQL, database=DB).strip().splitlines()[-1])
    present = set(raw["ids"])
    lost = [a for a in acks if a.id not in present]
    window = (max(a.at for a in lost) - min(a.at for a in lost)) if len(lost) > 1 else 0.0
    return {"total": int(raw["total"]), "expected_total": ACCOUNTS * OPENING, "half": int(raw["half"]),
            "lost": len(lost), "lost_window": round(window, 3), "acked": len(acks), "rows": len(present),
            "primary": primary}


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class DrillResult:
    """What a drill measured and checked, before it becomes an evidence record."""

    scenario: str
    phases: list[dict[str, Any]] = field(default_factory=list)
    measures: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def phase(self, name: str, start: float, detail: str = "") -> None:
        end = time.time()
        self.phases.append({"name": name, "start": _iso(start), "end": _iso(end),
                            "seconds": round(end - start, 3), "detail": detail})

    def check(self, name: str, service: str | None, passed: bool, detail: str) -> None:
        self.checks.append({"name": name, "service": service, "passed": passed, "detail": detail})

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks) and all(m["met"] for m in self.measures)


def first_ack_at(acks: list[Ack], host: str, after: float) -> float | None:
    return next((a.at for a in acks if a.host == host and a.at >= after), None)


def drill(topology: Topology, services: list[Service], scenario: str, pairs: Callable[[Service], Pair],
          say: Say, *, warmup: float = 3.0, settle: float = 3.0, rto_limit: float = 120.0) -> DrillResult:
    """Run one drill on the lab twin; see the module's description."""
    env = topology.environment.name
    result = DrillResult(scenario)
    t = time.time()
    for svc in services:
        run_sql(topology, current_primary(topology, svc), SETUP_SQL)
        wait_replayed(topology, svc)
    result.phase("setup", t, f"{ACCOUNTS} accounts of {OPENING} in {DB} on every primary, "
                 "replayed by every standby")
    poller = Poller(topology, services)
    poll_thread = threading.Thread(target=poller.run, name="dr-poller", daemon=True)
    poll_thread.start()
    loads = {s.name: Workload(topology, s) for s in services}
    threads = [threading.Thread(target=w.run, name=f"load-{n}", daemon=True) for n, w in loads.items()]
    for th in threads:
        th.start()
    try:
        time.sleep(warmup)
        groups: dict[str, list[Service]] = {}
        for svc in services:
            groups.setdefault(topology.host(current_primary(topology, svc)).site, []).append(svc)
        for site, group in groups.items():
            peer = topology.dr_peer(site)
            _takeover(topology, env, site, peer, group, scenario=scenario, pairs=pairs, loads=loads,
                      result=result, say=say, settle=settle, rto_limit=rto_limit)
    finally:
        for w in loads.values():
            w.stop.set()
        poller.stop.set()
        for th in threads:
            th.join(timeout=15)
        poll_thread.join(timeout=15)
    result.check("never-two-writable", None, not poller.violations,
                 f"{poller.samples} polls of every member" + (f"; {'; '.join(poller.violations[:5])}"
                                                               if poller.violations else ""))
    return result


def _takeover(topology: Topology, env: str, site: str, peer: str, group: list[Service], *, scenario: str,
              pairs: Callable[[Service], Pair], loads: dict[str, Workload], result: DrillResult, say: Say,
              settle: float, rto_limit: float) -> None:
    old = {s.name: current_primary(topology, s) for s in group}
    names = ", ".join(s.name for s in group)
    t_fault = time.time()
    if scenario == "site-down":
        say(f"drill: taking site {site} down (lab.fault --site {site} --down)")
        lab_fault(env, "--site", site, "--down")
    elif scenario == "link-cut":
        links = [link.name for link in topology.links]
        say(f"drill: cutting every inter-site link ({', '.join(links)})")
        for link in links:
            lab_fault(env, "--link", link, "--cut")
    result.phase(f"fault {site}" if scenario != "planned" else "fault (none: planned)", t_fault,
                 scenario if scenario != "planned" else "no fault")
    t_cmd = time.time()
    for svc in group:
        pair = pairs(svc)
        outcome = pair.switchover(peer) if scenario == "planned" else pair.failover(peer)
        say(outcome.message)
        for ph in outcome.phases:
            result.phases.append({"name": f"{outcome.operation} {svc.name}: {ph['phase']}",
                                  "start": ph["start"], "end": ph["end"], "seconds": ph["seconds"],
                                  "detail": ""})
    result.phase(f"{'switchover' if scenario == 'planned' else 'failover'} {names}", t_cmd)
    # RTO: the first acknowledged commit at the new primary
    for svc in group:
        new = current_primary(topology, svc)
        deadline = time.monotonic() + rto_limit
        while first_ack_at(loads[svc.name].acks, new, t_fault) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        first = first_ack_at(loads[svc.name].acks, new, t_fault)
        result.phase(f"first commit {svc.name} at {new}", t_fault,
                     "" if first else f"no acknowledged commit within {rto_limit:g} s")
        loads[svc.name].rto = None if first is None else round(first - t_fault, 3)
    time.sleep(settle)
    for svc in group:
        load = loads[svc.name]
        acks = list(load.acks)
        found = consistency(topology, svc, acks)
        rto = load.rto
        rpo_s = svc.rpo_minutes * 60
        lost_ok = found["lost"] == 0 if scenario == "planned" else found["lost_window"] <= rpo_s
        rto_ok = rto is not None and rto <= svc.rto_minutes * 60
        result.measures.append({
            "service": svc.name, "tier": svc.tier, "rto_seconds": rto,
            "rto_target_seconds": svc.rto_minutes * 60,
            "rpo_lost_commits": found["lost"], "rpo_window_seconds": found["lost_window"],
            "rpo_target_seconds": svc.rpo_minutes * 60, "met": rto_ok and lost_ok,
            "seconds": rto if scenario == "planned" else None,
        })
        result.check("balances-sum", svc.name, found["total"] == found["expected_total"],
                     f"{found['total']} = {found['expected_total']} at {found['primary']}")
        result.check("no-half-transfer", svc.name, found["half"] == 0,
                     f"{found['half']} account(s) whose balance does not match its transfers")
        if scenario == "planned":
            result.check("zero-loss", svc.name, found["lost"] == 0,
                         f"{found['lost']} of {found['acked']} acknowledged commits missing")
        result.notes.append(f"{svc.name}: {found['acked']} acknowledged transfers, {found['rows']} rows at "
                            f"{found['primary']}, {found['lost']} lost, {load.failures} refused or timed out")
    # restore the site or the links, rebuild the old primaries, put the primaries back
    t_restore = time.time()
    if scenario == "site-down":
        say(f"drill: bringing site {site} back")
        lab_fault(env, "--site", site, "--up")
    elif scenario == "link-cut":
        for link in [link.name for link in topology.links]:
            lab_fault(env, "--link", link, "--restore")
    result.phase(f"restore {site}" if scenario != "planned" else "restore (none)", t_restore)
    for svc in group:
        pair = pairs(svc)
        t_fb = time.time()
        if scenario != "planned":
            say(pair.failback().message)
            result.phase(f"failback {svc.name}", t_fb)
            t_fb = time.time()
        say(pair.switchover(site).message)
        result.phase(f"switch back {svc.name} to {old[svc.name]}", t_fb)
        ok, detail = protected(topology, svc)
        back = current_primary(topology, svc) == old[svc.name]
        result.check("pair-protected", svc.name, ok and back, detail)
