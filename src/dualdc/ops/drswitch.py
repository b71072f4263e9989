"""``dr.switchover``, ``dr.failover`` and ``dr.failback``: who is primary, decided by a command.

Each works on one host database (``database.platform: hosts``) through :class:`Node`, the
handful of things done on a database host over SSH (read PostgreSQL's state, stop, start,
fence, promote, re-clone); the tests drive the same logic through a simulated pair.

The invariant every step keeps: **never two writable primaries**. A primary is fenced (stopped,
with a ``standby.signal`` so that nothing can restart it writable) *before* any standby is
promoted; a host that cannot be reached is recorded as fenced in the state file (a converge
leaves it stopped) and the roles' start guard (``dualdc-pg-guard``) brings it up read-only if
it returns on an older timeline than a member's. The order is also what makes an interrupted
run resumable: each step is decided from what the hosts say now, not from what a previous run
meant to do, so running the command again finishes the job or says what state the pair is in.

- **switchover** (planned, zero loss): refuse unless the primary is writable, the target a
  streaming standby within the lag bound; fence the primary (a fast shutdown: sessions are
  refused, nothing acknowledged is lost; the shutdown checkpoint is the last WAL), wait until
  the target has replayed it, promote the target, give it a slot for the old primary, and
  start the old primary as its standby (a clean shutdown that the target replayed needs no
  ``pg_rewind``). If the target does not catch up in time the fence is lifted and nothing
  changed.
- **failover** (unplanned): fence the old primary if it can be reached at all, promote the
  standby, record the old primary as fenced, report the data-loss window (the WAL the new
  primary never received against the last position the old primary was known to have: its
  own control file when readable, else the newest WAL segment in the pgBackRest repository).
- **failback**: rebuild each fenced host (or any member that does not stream) as a standby of
  the current primary by a fresh clone (``pg_basebackup`` over the replication segments).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dualdc.databases import (
    PRIMARIES_CACHE,
    current_placements,
    current_primary,
    fenced_hosts,
    postgresql_vars,
    slot_name,
)
from dualdc.model import Service, Topology
from dualdc.ops import drstate
from dualdc.ops.drstatus import Runner

PG_DATA = "/var/lib/postgresql/{v}/main"
PG_CONF = "/etc/postgresql/{v}/main"
PG_BIN = "/usr/lib/postgresql/{v}/bin"
DR_CONF = "conf.d/20-dualdc-dr.conf"

FACTS_SQL = """SELECT json_build_object(
 'in_recovery', pg_is_in_recovery(),
 'lsn', CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END,
 'receive_lsn', pg_last_wal_receive_lsn()::text,
 'timeline', CASE WHEN pg_is_in_recovery()
     THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                   (SELECT timeline_id FROM pg_control_checkpoint()))
     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
 'senders', (SELECT coalesce(json_agg(json_build_object('name', application_name, 'state', state,
     'replay_lsn', replay_lsn::text, 'lag_bytes', CASE WHEN pg_is_in_recovery() THEN NULL
     ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END,
     'replay_lag_s', extract(epoch from replay_lag))), '[]'::json) FROM pg_stat_replication),
 'slots', (SELECT coalesce(json_agg(slot_name), '[]'::json) FROM pg_replication_slots))"""


class DrError(Exception):
    """A refusal or a failure, with the exit code (DESIGN §6) and what state the pair is in."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def lsn_int(lsn: str | None) -> int | None:
    """'0/3000148' -> its byte position."""
    if not lsn:
        return None
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_str(pos: int) -> str:
    return f"{pos >> 32:X}/{pos & 0xFFFFFFFF:X}"


@dataclass
class Facts:
    """What a database host says about itself now."""

    host: str
    state: str
    """writable, recovery, stopped (PostgreSQL not running) or unreachable (no SSH)."""
    lsn: int | None = None
    receive_lsn: int | None = None
    timeline: int | None = None
    senders: dict[str, dict[str, Any]] = field(default_factory=dict)
    slots: list[str] = field(default_factory=list)
    detail: str = ""


class Node(Protocol):
    """The operations on one database host (SSH in production and the lab, simulated in tests)."""

    def facts(self, host: str) -> Facts: ...
    def stop(self, host: str) -> None: ...
    def start(self, host: str) -> None: ...
    def fence(self, host: str, conf: str) -> None: ...
    def unfence(self, host: str) -> None: ...
    def checkpoint(self, host: str) -> tuple[int | None, int | None, str]: ...
    def promote(self, host: str) -> None: ...
    def create_slot(self, host: str, slot: str) -> None: ...
    def drop_slot(self, host: str, slot: str) -> None: ...
    def reclone(self, host: str, conninfo: str, slot: str, conf: str) -> None: ...
    def archived_lsn(self, repo_host: str, stanza: str) -> int | None: ...


class SshNode:
    """:class:`Node` over SSH: commands run as root on the host, PostgreSQL's as ``postgres``."""

    def __init__(self, runner: Runner, version: int = 15, *, data: str | None = None, conf: str | None = None,
                 ctl: str | None = None) -> None:
        """``data``, ``conf`` and ``ctl`` (a command taking status, stop -m fast, start) may name
        ``{host}``; by default Debian's cluster ``main`` of ``version``, managed with pg_ctlcluster."""
        self.run = runner
        self.v = version
        self.data_t = data or PG_DATA.format(v=version)
        self.conf_t = conf or PG_CONF.format(v=version)
        self.ctl_t = ctl or f"pg_ctlcluster {version} main"
        self.bin = PG_BIN.format(v=version)

    def _data(self, host: str) -> str:
        return self.data_t.format(host=host)

    def _conf(self, host: str) -> str:
        return self.conf_t.format(host=host)

    def _ctl(self, host: str) -> str:
        return self.ctl_t.format(host=host)

    def _do(self, host: str, command: str, what: str) -> str:
        code, out, err = self.run(host, command)
        if code == 255:
            raise DrError(f"{host}: unreachable over SSH while trying to {what}", code=3)
        if code != 0:
            said = next((ln.strip() for ln in reversed((err or out).splitlines()) if ln.strip()), "no output")
            raise DrError(f"{host}: could not {what}: {said[:300]}", code=2)
        return out

    def _psql(self, host: str, sql: str) -> tuple[int, str, str]:
        return self.run(host, f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 <<'SQL'\n{sql};\nSQL")

    def facts(self, host: str) -> Facts:
        code, out, err = self._psql(host, FACTS_SQL)
        if code == 255:
            return Facts(host, "unreachable", detail=err.strip()[:200])
        if code != 0:
            status, _, _ = self.run(host, f"{self._ctl(host)} status >/dev/null 2>&1; echo $?")
            state = "stopped" if status != 255 else "unreachable"
            return Facts(host, state, detail=(err or out).strip()[-200:])
        try:
            raw = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return Facts(host, "stopped", detail=f"unexpected answer from psql: {out[:200]!r}")
        return Facts(
            host, "recovery" if raw["in_recovery"] else "writable", lsn_int(raw["lsn"]),
            lsn_int(raw.get("receive_lsn")), raw.get("timeline"),
            {s["name"]: s for s in raw.get("senders") or []}, list(raw.get("slots") or []),
        )

    def stop(self, host: str) -> None:
        ctl = self._ctl(host)
        self._do(host, f"{ctl} status >/dev/null 2>&1 || exit 0; {ctl} stop -m fast", "stop PostgreSQL")

    def start(self, host: str) -> None:
        ctl = self._ctl(host)
        self._do(host, f"{ctl} status >/dev/null 2>&1 && exit 0; {ctl} start", "start PostgreSQL")

    def fence(self, host: str, conf: str) -> None:
        data, target = self._data(host), f"{self._conf(host)}/{DR_CONF}"
        self._do(host, (
            f"install -o postgres -g postgres -m 0600 /dev/null {data}/standby.signal && "
            f"cat > {target}.tmp <<'DUALDC_EOF'\n{conf}DUALDC_EOF\n"
            f"chown postgres:postgres {target}.tmp && chmod 0644 {target}.tmp && "
            f"mv {target}.tmp {target}"), "fence it (standby.signal)")

    def unfence(self, host: str) -> None:
        self._do(host, f"rm -f {self._data(host)}/standby.signal {self._conf(host)}/{DR_CONF}",
                 "lift its fence")

    def checkpoint(self, host: str) -> tuple[int | None, int | None, str]:
        out = self._do(host, f"{self.bin}/pg_controldata {self._data(host)}", "read its control file")
        loc = re.search(r"Latest checkpoint location:\s+(\S+)", out)
        tli = re.search(r"Latest checkpoint's TimeLineID:\s+(\d+)", out)
        state = re.search(r"Database cluster state:\s+(.+)", out)
        return (lsn_int(loc.group(1)) if loc else None, int(tli.group(1)) if tli else None,
                state.group(1).strip() if state else "")

    def promote(self, host: str) -> None:
        code, out, err = self._psql(host, "SELECT pg_promote(true, 60)")
        if code != 0 or out.strip().splitlines()[-1:] != ["t"]:
            raise DrError(f"{host}: promotion failed: {(err or out).strip()[-300:]}", code=2)

    def create_slot(self, host: str, slot: str) -> None:
        code, _, err = self._psql(host, (
            f"SELECT pg_create_physical_replication_slot('{slot}', true) "  # noqa: S608 (a slot name of ours)
            f"WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}')"))
        if code != 0:
            raise DrError(f"{host}: could not create the slot {slot}: {err.strip()[-300:]}", code=2)

    def drop_slot(self, host: str, slot: str) -> None:
        self._psql(host, f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "  # noqa: S608
                         f"WHERE slot_name = '{slot}' AND NOT active")

    def reclone(self, host: str, conninfo: str, slot: str, conf: str) -> None:
        self.stop(host)
        self._do(host, (
            f"find {self._data(host)} -mindepth 1 -delete && "
            f"runuser -u postgres -- {self.bin}/pg_basebackup -d {shlex.quote(conninfo)} "
            f"-D {self._data(host)} "
            f"-X stream -S {slot} --checkpoint=fast --no-password"),
            "clone it from the primary (pg_basebackup)")
        self.fence(host, conf)
        self.start(host)

    def archived_lsn(self, repo_host: str, stanza: str) -> int | None:
        code, out, _ = self.run(repo_host,
                                f"runuser -u postgres -- pgbackrest --stanza={stanza} --output=json info")
        if code != 0:
            return None
        try:
            archives = json.loads(out)[0].get("archive") or []
        except (ValueError, IndexError, AttributeError):
            return None
        newest = max((a.get("max") or "" for a in archives), default="")
        if len(newest) != 24:
            return None
        # a segment name: timeline, log, segment (16 MiB): the segment's end is the newest known position
        log, seg = int(newest[8:16], 16), int(newest[16:24], 16)
        return (log << 32) + (seg + 1) * (16 << 20)


Progress = Callable[[str], None]


@dataclass
class Outcome:
    """What a command did for one service (the audit record's and the evidence's input)."""

    service: str
    operation: str
    source: str
    target: str
    changed: bool
    message: str
    phases: list[dict[str, Any]] = field(default_factory=list)
    loss_bytes: int | None = None
    loss_window: str | None = None
    fenced: list[str] = field(default_factory=list)


@dataclass
class Options:
    max_lag_bytes: int = 16 << 20
    max_lag_seconds: float = 30.0
    catchup_timeout: float = 60.0
    stream_timeout: float = 60.0
    poll: float = 0.2


class Pair:
    """One service's database hosts, as they run now, and the DR steps on them."""

    def __init__(self, topology: Topology, svc: Service, node: Node, state: drstate.PrimaryState, *,
                 save: Callable[[drstate.PrimaryState], Any], progress: Progress, options: Options) -> None:
        self.topology, self.svc, self.node, self.state = topology, svc, node, state
        self.save, self.say, self.opt = save, progress, options
        assert svc.database is not None
        self.version = svc.database.version
        self.phases: list[dict[str, Any]] = []

    # --- helpers -----------------------------------------------------------------------------
    def primary(self) -> str:
        return current_primary(self.topology, self.svc)

    def members(self) -> list[str]:
        return [h for _, h, _ in current_placements(self.topology, self.svc)]

    def at_site(self, site: str) -> str:
        found = [h for s, h, _ in current_placements(self.topology, self.svc) if s == site]
        if not found:
            sites = sorted({s for s, _, _ in current_placements(self.topology, self.svc)})
            raise DrError(f"{self.svc.name} is not replicated to {site}: its hosts are at "
                          f"{', '.join(sites)}", code=1)
        return sorted(found)[0]

    def phase(self, name: str, started: float, **extra: Any) -> None:
        end = time.time()
        self.phases.append({"phase": name, "start": _iso(started), "end": _iso(end),
                            "seconds": round(end - started, 3), **extra})

    def _apply(self, primary: str, fenced: list[str]) -> None:
        """Make the topology's view (and so :func:`postgresql_vars`) follow a new primary."""
        primaries = dict(self.topology.cache.get(PRIMARIES_CACHE, {}))
        primaries[self.svc.name] = {"primary": primary, "fenced": list(fenced)}
        self.topology.cache[PRIMARIES_CACHE] = primaries
        for key in [k for k in self.topology.cache if k.startswith("database_")]:
            del self.topology.cache[key]

    def standby_conf(self, host: str, operation: str) -> tuple[str, str, str]:
        """(conf file text, primary conninfo, slot) of ``host`` as a standby of the current primary."""
        hv = postgresql_vars(self.topology, self.topology.host(host))
        assert hv is not None and hv["role"] == "standby"
        address = hv["primary"]["address"]
        if not address:
            raise DrError(f"no declared tcp/5432 flow from {host} to {hv['primary']['name']}: the model "
                          "must let the old primary stream from the new one", code=1)
        tls = f"{PG_CONF.format(v=self.version)}/tls"
        conninfo = (f"host={address} port={hv['port']} user={hv['replication_user']} sslmode=verify-full "
                    f"sslrootcert={tls}/ca.crt passfile=/var/lib/postgresql/.pgpass")
        conf = (f"# dualdc dr.{operation} {_iso(time.time())}: {host} is a standby of "
                f"{hv['primary']['name']}; the next converge writes the same into 10-dualdc.conf\n"
                f"primary_conninfo = '{conninfo} application_name={hv['slot']}'\n"
                f"primary_slot_name = '{hv['slot']}'\n"
                f"restore_command = 'pgbackrest --stanza={hv['stanza']} archive-get %f \"%p\"'\n"
                "recovery_target_timeline = 'latest'\n"
                "synchronous_standby_names = ''\n")
        return conf, conninfo, str(hv["slot"])

    def record(self, primary: str, by: str, fenced: list[str], window: str | None = None,
               pending: drstate.Pending | None = None) -> None:
        drstate.record_primary(self.state, self.svc, self.topology, primary, by=by, fenced=fenced,
                               window=window)
        if pending is not None:
            entry = self.state.services.get(self.svc.name)
            if entry is None:
                entry = drstate.ServiceState(primary=primary, site=self.topology.host(primary).site,
                                             since=dt.datetime.now(dt.UTC).replace(microsecond=0), by=by)
                self.state.services[self.svc.name] = entry
            entry.pending = pending
        self._apply(primary, fenced)
        self.save(self.state)

    def wait_streaming(self, primary: str, standby: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            facts = self.node.facts(primary)
            sender = facts.senders.get(slot_name(standby))
            if sender is not None and sender.get("state") == "streaming":
                return True
            time.sleep(self.opt.poll)
        return False

    # --- switchover ----------------------------------------------------------------------------
    def switchover(self, to_site: str) -> Outcome:
        source = self.primary()
        target = self.at_site(to_site)
        name = self.svc.name
        if target == source:
            return self._finish_rejoin(source, "switchover")
        self.say(f"{name}: switchover {source} -> {target}: checking both")
        t0 = time.time()
        src, tgt = self.node.facts(source), self.node.facts(target)
        if tgt.state == "unreachable":
            raise DrError(f"{name}: refused, nothing changed: {target} is unreachable ({tgt.detail})", code=3)
        if src.state == "unreachable":
            raise DrError(f"{name}: refused, nothing changed: the primary {source} is unreachable; if its "
                          f"site is lost, use dr.failover", code=3)
        if src.state in ("stopped", "recovery") and tgt.state == "writable":
            # a previous run promoted the target and stopped before recording it
            self.say(f"{name}: {target} was already promoted by an interrupted run; recording it")
            self.record(target, "switchover", [source])
            outcome = self._finish_rejoin(target, "switchover", source=source)
            outcome.changed = True
            return outcome
        resumed = src.state == "stopped" and tgt.state == "recovery"
        if not resumed:
            if src.state != "writable":
                raise DrError(f"{name}: refused, nothing changed: {source} is {src.state}, not a writable "
                              "primary", code=2)
            if tgt.state != "recovery":
                raise DrError(f"{name}: refused, nothing changed: {target} is {tgt.state}, not a standby",
                              code=2)
            sender = src.senders.get(slot_name(target))
            if sender is None or sender.get("state") != "streaming":
                raise DrError(f"{name}: refused, nothing changed: {target} does not stream from {source}",
                              code=2)
            lag_b = sender.get("lag_bytes")
            lag_s = sender.get("replay_lag_s")
            if lag_b is not None and int(lag_b) > self.opt.max_lag_bytes:
                raise DrError(f"{name}: refused, nothing changed: {target} lags {int(lag_b)} bytes behind "
                              f"(bound {self.opt.max_lag_bytes})", code=2)
            if lag_s is not None and float(lag_s) > self.opt.max_lag_seconds:
                raise DrError(f"{name}: refused, nothing changed: {target} replays {float(lag_s):.1f} s "
                              f"behind (bound {self.opt.max_lag_seconds:g} s)", code=2)
        self.phase("checks", t0)
        # 1. fence the primary: a clean shutdown ends with a checkpoint the standby receives
        t1 = time.time()
        self.record(source, "switchover", fenced_hosts(self.topology, self.svc),
                    pending=drstate.Pending(operation="switchover", source=source, target=target,
                                            phase="fencing", started=dt.datetime.now(dt.UTC)))
        self._apply(target, [])
        conf, _, _ = self.standby_conf(source, "switchover")
        self._apply(source, [])
        self.say(f"{name}: fencing {source} (fast shutdown; new sessions are refused)")
        self.node.fence(source, conf)
        self.node.stop(source)
        fence_lsn, _, cluster_state = self.node.checkpoint(source)
        if fence_lsn is None or "shut down" not in cluster_state:
            raise DrError(f"{name}: {source} did not shut down cleanly "
                          f"({cluster_state or 'no control data'}); it stays fenced; "
                          f"run dr.failover to promote {target}", code=2)
        self.phase("fence", t1, lsn=lsn_str(fence_lsn))
        # 2. wait for the standby to replay the shutdown checkpoint
        t2 = time.time()
        self.say(f"{name}: waiting for {target} to replay {lsn_str(fence_lsn)}")
        deadline = time.monotonic() + self.opt.catchup_timeout
        while True:
            tgt = self.node.facts(target)
            if tgt.lsn is not None and tgt.lsn > fence_lsn:
                break
            if time.monotonic() > deadline:
                self.say(f"{name}: {target} did not catch up; lifting the fence of {source}")
                self.node.unfence(source)
                self.node.start(source)
                self.record(source, "switchover", fenced_hosts(self.topology, self.svc))
                raise DrError(f"{name}: refused: {target} did not replay {lsn_str(fence_lsn)} within "
                              f"{self.opt.catchup_timeout:g} s; {source} is primary again, nothing changed",
                              code=2)
            time.sleep(self.opt.poll)
        self.phase("catch-up", t2, lsn=lsn_str(tgt.lsn or 0))
        # 3. promote; the old primary is recorded fenced until it streams from the new one
        t3 = time.time()
        self.say(f"{name}: promoting {target}")
        self.node.promote(target)
        self.record(target, "switchover", [source],
                    pending=drstate.Pending(operation="switchover", source=source, target=target,
                                            phase="promoted", started=dt.datetime.now(dt.UTC),
                                            fence_lsn=lsn_str(fence_lsn)))
        self.phase("promote", t3)
        outcome = self._finish_rejoin(target, "switchover", source=source)
        outcome.changed = True
        outcome.message = f"{name}: {target} is primary; {source} streams from it; 0 bytes lost"
        outcome.loss_bytes = 0
        return outcome

    def _finish_rejoin(self, primary: str, operation: str, source: str | None = None) -> Outcome:
        """The old primary (or any fenced, stopped member) starts as a standby of ``primary``."""
        name = self.svc.name
        done = []
        for host in self.members():
            if host == primary:
                continue
            t = time.time()
            facts = self.node.facts(host)
            if facts.state == "writable":
                raise DrError(f"{name}: {host} is writable while {primary} is primary: fence it now "
                              f"(invoke dr.failover --service {name} "
                              f"--to {self.topology.host(primary).site})",
                              code=2)
            conf, _, slot = self.standby_conf(host, operation)
            self.node.create_slot(primary, slot)
            if facts.state == "stopped":
                self.say(f"{name}: starting {host} as a standby of {primary}")
                self.node.fence(host, conf)
                self.node.start(host)
            if self.wait_streaming(primary, host, self.opt.stream_timeout):
                self.node.drop_slot(host, slot_name(primary))
                done.append(host)
                self.phase(f"rejoin {host}", t)
            else:
                self.say(f"{name}: {host} does not stream from {primary}; run dr.failback to rebuild it")
        still = [h for h in self.members() if h != primary and h not in done]
        self.record(primary, operation, still)
        return Outcome(name, operation, source or primary, primary, False,
                       f"{name}: {primary} is primary" + (f"; not streaming: {', '.join(still)}" if still else
                                                         "; every standby streams"),
                       self.phases, fenced=still)

    # --- failover ------------------------------------------------------------------------------
    def failover(self, to_site: str) -> Outcome:
        name = self.svc.name
        source = self.primary()
        target = self.at_site(to_site)
        if target == source:
            tgt = self.node.facts(target)
            if tgt.state == "writable":
                return Outcome(name, "failover", source, target, False,
                               f"{name}: {target} is already primary", self.phases,
                               fenced=fenced_hosts(self.topology, self.svc))
        t0 = time.time()
        tgt = self.node.facts(target)
        if tgt.state not in ("recovery", "writable"):
            raise DrError(f"{name}: refused, nothing changed: {target} is {tgt.state}; nothing to promote",
                          code=3 if tgt.state == "unreachable" else 2)
        src = self.node.facts(source) if source != target else Facts(source, "writable")
        self.phase("checks", t0)
        t1 = time.time()
        known = src.lsn if src.state == "writable" else None
        self.record(source, "failover", fenced_hosts(self.topology, self.svc),
                    pending=drstate.Pending(operation="failover", source=source, target=target,
                                            phase="fencing", started=dt.datetime.now(dt.UTC)))
        self._apply(target, [])
        conf, _, _ = self.standby_conf(source, "failover")
        self._apply(source, [])
        fence_note = ""
        if src.state in ("writable", "recovery", "stopped"):
            self.say(f"{name}: fencing {source} before promoting {target}")
            self.node.fence(source, conf)
            self.node.stop(source)
            try:
                lsn, _, _ = self.node.checkpoint(source)
                known = max(known or 0, lsn or 0) or None
            except DrError:
                pass
            fence_note = "stopped, standby.signal written"
        else:
            fence_note = ("unreachable: recorded fenced (a converge leaves it stopped; its start guard "
                          "brings it up read-only on an older timeline)")
            self.say(f"{name}: {source} is unreachable; {fence_note}")
        self.phase("fence", t1, note=fence_note)
        repo = self.topology.repository_host(self.svc)
        archived = self.node.archived_lsn(repo.name, name) if repo is not None else None
        known = max(known or 0, archived or 0) or None
        t2 = time.time()
        received = tgt.receive_lsn or tgt.lsn
        if tgt.state == "recovery":
            self.say(f"{name}: promoting {target}")
            self.node.promote(target)
        self.record(target, "failover", [source])
        self.phase("promote", t2)
        loss = None if known is None or received is None else max(0, known - received)
        window = (f"received {lsn_str(received)}; last known of {source} {lsn_str(known)}"
                  if known is not None and received is not None
                  else "unknown: no position of the old primary")
        lost = f"{loss} bytes" if loss is not None else "unknown"
        self.record(target, "failover", [source], window=window)
        return Outcome(name, "failover", source, target, True,
                       f"{name}: {target} is primary; {source} fenced; data-loss window: "
                       f"{lost} ({window})",
                       self.phases, loss_bytes=loss, loss_window=window, fenced=[source])

    # --- failback ------------------------------------------------------------------------------
    def failback(self) -> Outcome:
        name = self.svc.name
        primary = self.primary()
        pf = self.node.facts(primary)
        if pf.state != "writable":
            raise DrError(f"{name}: the primary {primary} is {pf.state}; nothing to rebuild from",
                          code=3 if pf.state == "unreachable" else 2)
        rebuilt, skipped = [], []
        for host in self.members():
            if host == primary:
                continue
            t = time.time()
            facts = self.node.facts(host)
            sender = pf.senders.get(slot_name(host))
            if facts.state == "recovery" and sender is not None and sender.get("state") == "streaming":
                continue
            if facts.state == "unreachable":
                skipped.append(host)
                self.say(f"{name}: {host} is unreachable; it stays fenced")
                continue
            conf, conninfo, slot = self.standby_conf(host, "failback")
            self.node.create_slot(primary, slot)
            self.say(f"{name}: rebuilding {host} as a standby of {primary} (fresh clone)")
            self.node.reclone(host, conninfo, slot, conf)
            if not self.wait_streaming(primary, host, self.opt.stream_timeout):
                raise DrError(f"{name}: {host} was cloned but does not stream from {primary}; "
                              "it stays fenced", code=2)
            rebuilt.append(host)
            self.phase(f"rebuild {host}", t)
        self.record(primary, self.state.services[name].by if name in self.state.services else "failback",
                    skipped)
        return Outcome(name, "failback", primary, primary, bool(rebuilt),
                       f"{name}: rebuilt {', '.join(rebuilt) or 'nothing'}"
                       + (f"; still fenced (unreachable): {', '.join(skipped)}" if skipped else
                          "; every standby streams"),
                       self.phases, fenced=skipped)


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
