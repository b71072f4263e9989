"""``invoke dr.status``: the health of every host database's DR, from PostgreSQL and pgBackRest.

For each host database (``database.platform: hosts``) it reads, over SSH:

- on each of its hosts, PostgreSQL's own views: ``pg_is_in_recovery()``,
  ``pg_stat_replication`` (each standby's state and replay lag, on the primary),
  ``pg_replication_slots`` (the WAL each slot retains), ``pg_stat_wal_receiver`` (on a
  standby) and ``pg_stat_archiver`` (WAL archiving into pgBackRest);
- on its repository host, ``pgbackrest info --output=json`` (the last full and the last
  backup of any type, their age and size).

Each figure is compared with the model: who is primary against ``database.hosts``, every
standby streaming with a replay lag within the service's RPO, archiving not failing, and
the backups no older than ``backup.full_every_hours`` (full) and ``incr_every_hours`` (any
type) plus a grace for the scheduler. Exit 0 healthy, 2 a target missed, 3 something could
not be read (a host down or unreachable), 1 bad input.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from dualdc.databases import current_placements, current_primary, slot_name
from dualdc.lab.config import ssh_dir
from dualdc.model import Layer, Service, Topology
from dualdc.reports.drift import CheckedTarget, DriftItem, LayerReport, LayerStatus, TargetStatus

#: Minutes a backup may be late before it counts as missed (the scheduler checks every 10).
GRACE_MINUTES = 20
SSH_TIMEOUT = 20

STATUS_SQL = """SELECT json_build_object(
 'in_recovery', pg_is_in_recovery(),
 'now', extract(epoch from clock_timestamp()),
 'replication', (SELECT coalesce(json_agg(json_build_object(
     'name', application_name, 'state', state, 'sync_state', sync_state,
     'lag_bytes', CASE WHEN pg_is_in_recovery() THEN NULL
                       ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END,
     'replay_lag_s', extract(epoch from replay_lag))), '[]'::json) FROM pg_stat_replication),
 'slots', (SELECT coalesce(json_agg(json_build_object(
     'name', slot_name, 'active', active,
     'retained_bytes', CASE WHEN pg_is_in_recovery() THEN NULL
                            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END)), '[]'::json)
     FROM pg_replication_slots),
 'receiver', (SELECT json_build_object('status', status, 'sender', sender_host) FROM pg_stat_wal_receiver),
 'archiver', (SELECT json_build_object(
     'archived_count', archived_count, 'failed_count', failed_count,
     'last_archived', extract(epoch from last_archived_time),
     'last_failed', extract(epoch from last_failed_time)) FROM pg_stat_archiver))"""

#: Runs a shell command on a host; returns (exit code, stdout, stderr). Exit 255: unreachable.
Runner = Callable[[str, str], tuple[int, str, str]]


def ssh_runner(topology: Topology) -> Runner:
    """Run commands over SSH: the lab's own ssh config on the lab twin, else ssh_user@mgmt address."""
    env = topology.environment

    def run(host: str, command: str) -> tuple[int, str, str]:
        base = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        if env.lab:
            argv = [*base, "-F", str(ssh_dir(env.name) / "config"), host, command]
        else:
            address = topology.management_address(topology.host(host))
            argv = [*base, f"{env.ssh_user}@{address}", command]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=SSH_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 255, "", str(exc)
        return done.returncode, done.stdout, done.stderr

    return run


@dataclass
class Standby:
    host: str
    site: str
    state: str
    """streaming, catching up, down, or unknown (its primary could not be read)."""
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    slot_retained_bytes: int | None = None
    sync_state: str | None = None


@dataclass
class Backups:
    host: str
    site: str
    last_full_age_hours: float | None = None
    last_full_size_bytes: int | None = None
    last_any_type: str | None = None
    last_any_age_hours: float | None = None
    last_any_size_bytes: int | None = None
    count: int = 0


@dataclass
class DatabaseStatus:
    service: str
    tenant: str
    rpo_minutes: int
    primary_host: str
    primary_site: str
    primary_state: str = "unknown"
    """up (writable), read-only (in recovery), down, or unreachable."""
    standbys: list[Standby] = field(default_factory=list)
    archive_failing: bool | None = None
    archive_lag_seconds: float | None = None
    backups: Backups | None = None
    problems: list[str] = field(default_factory=list)
    """Targets missed (exit 2)."""
    misses: list[tuple[str, str | None, str]] = field(default_factory=list)
    """The same as (check, host, message): the data drift layer's stable ids."""
    unreachable: list[str] = field(default_factory=list)
    """What could not be read (exit 3)."""


@dataclass
class DrStatus:
    environment: str
    databases: list[DatabaseStatus]

    @property
    def exit_code(self) -> int:
        if any(d.unreachable for d in self.databases):
            return 3
        if any(d.problems for d in self.databases):
            return 2
        return 0


def _psql(runner: Runner, host: str) -> tuple[dict[str, Any] | None, str | None]:
    code, out, err = runner(
        host, f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 <<'SQL'\n{STATUS_SQL};\nSQL"
    )
    if code == 255:
        return None, f"{host}: unreachable over SSH ({err.strip()[:200] or 'no answer'})"
    if code != 0:
        # the last line: what psql said (an SSH login banner may come before it on stderr)
        said = next(
            (line.strip() for line in reversed((err or out).splitlines()) if line.strip()), "no output"
        )
        return None, f"{host}: PostgreSQL does not answer ({said[:200]})"
    try:
        return json.loads(out.strip().splitlines()[-1]), None
    except (ValueError, IndexError):
        return None, f"{host}: unexpected answer from psql: {out.strip()[:200]!r}"


def _backups(
    runner: Runner, topology: Topology, svc: Service, now: float
) -> tuple[Backups | None, str | None]:
    repo = topology.repository_host(svc)
    if repo is None:
        return None, None
    code, out, err = runner(
        repo.name, f"runuser -u postgres -- pgbackrest --stanza={svc.name} --output=json info"
    )
    if code == 255:
        return None, f"{repo.name}: unreachable over SSH ({err.strip()[:200] or 'no answer'})"
    found = Backups(repo.name, repo.site)
    try:
        stanzas = json.loads(out) if code == 0 else None
    except ValueError:
        stanzas = None
    if not stanzas:
        return found, None
    backups = sorted(stanzas[0].get("backup", []), key=lambda b: b["timestamp"]["stop"])
    found.count = len(backups)
    fulls = [b for b in backups if b.get("type") == "full"]
    if fulls:
        found.last_full_age_hours = round((now - fulls[-1]["timestamp"]["stop"]) / 3600, 2)
        found.last_full_size_bytes = fulls[-1].get("info", {}).get("size")
    if backups:
        found.last_any_type = backups[-1].get("type")
        found.last_any_age_hours = round((now - backups[-1]["timestamp"]["stop"]) / 3600, 2)
        found.last_any_size_bytes = backups[-1].get("info", {}).get("size")
    return found, None


def database_status(topology: Topology, svc: Service, runner: Runner) -> DatabaseStatus:
    db, backup = svc.database, svc.backup
    assert db is not None and db.primary_host is not None
    primary = current_primary(topology, svc)
    status = DatabaseStatus(svc.name, svc.tenant, svc.rpo_minutes, primary, topology.host(primary).site)
    rpo_seconds = svc.rpo_minutes * 60
    facts, problem = _psql(runner, primary)
    now = time.time()
    if facts is None:
        status.primary_state = "unreachable" if problem and "SSH" in problem else "down"
        (status.unreachable if status.primary_state == "unreachable" else status.problems).append(
            problem or primary
        )
    else:
        now = float(facts["now"])
        status.primary_state = "read-only" if facts["in_recovery"] else "up"
        if facts["in_recovery"]:
            _miss(
                status,
                "primary-read-only",
                primary,
                f"{primary} is in recovery: the model's primary is not writable",
            )
        archiver = facts.get("archiver") or {}
        if archiver.get("last_archived"):
            status.archive_lag_seconds = round(now - archiver["last_archived"], 1)
        failed, archived = archiver.get("last_failed"), archiver.get("last_archived")
        status.archive_failing = bool(failed and (archived is None or failed > archived))
        if status.archive_failing:
            _miss(status, "archive-failing", primary, f"{primary}: WAL archiving into pgBackRest fails")
    senders = {r["name"]: r for r in (facts or {}).get("replication", [])}
    slots = {s["name"]: s for s in (facts or {}).get("slots", [])}
    for site, host, role in current_placements(topology, svc):
        if role != "standby":
            continue
        standby = Standby(host, site, "unknown")
        status.standbys.append(standby)
        slot = slots.get(slot_name(host))
        if slot is not None and slot.get("retained_bytes") is not None:
            standby.slot_retained_bytes = int(slot["retained_bytes"])
        elif facts is not None:
            _miss(status, "slot-missing", host, f"{primary} has no replication slot for {host}")
        sender = senders.get(slot_name(host))
        if sender is not None:
            standby.state = "streaming" if sender["state"] == "streaming" else "catching up"
            standby.sync_state = sender.get("sync_state")
            standby.lag_bytes = int(sender["lag_bytes"]) if sender.get("lag_bytes") is not None else None
            lag = sender.get("replay_lag_s")
            standby.lag_seconds = (
                round(float(lag), 3) if lag is not None else (0.0 if standby.lag_bytes == 0 else None)
            )
        own, problem = _psql(runner, host)
        if own is None:
            if "SSH" in (problem or ""):
                status.unreachable.append(problem or host)
                standby.state = "unreachable" if sender is None else standby.state
            elif sender is None:
                standby.state = "down"
                _miss(status, "standby-down", host, problem or f"{host} is down")
            continue
        if not own["in_recovery"]:
            _miss(
                status, "standby-writable", host, f"{host} is writable: two writable primaries for {svc.name}"
            )
        if sender is None and facts is not None:
            standby.state = "down"
            receiver = own.get("receiver") or {}
            _miss(
                status,
                "standby-not-streaming",
                host,
                f"{host} does not stream from {primary} "
                f"(receiver: {receiver.get('status') or 'not running'})",
            )
        if standby.lag_seconds is not None and standby.lag_seconds > rpo_seconds:
            _miss(
                status,
                "lag-over-rpo",
                host,
                f"{host} replays {standby.lag_seconds:.0f} s behind; the RPO is {svc.rpo_minutes} min",
            )
    if backup is not None:
        found, problem = _backups(runner, topology, svc, now)
        status.backups = found
        if problem:
            status.unreachable.append(problem)
        elif found is not None:
            grace = GRACE_MINUTES / 60
            if found.last_full_age_hours is None:
                _miss(status, "no-full-backup", found.host, f"no full backup of {svc.name} on {found.host}")
            elif found.last_full_age_hours > backup.full_every_hours + grace:
                _miss(
                    status,
                    "full-backup-old",
                    found.host,
                    f"the last full backup on {found.host} is {found.last_full_age_hours:.1f} h "
                    f"old; one is due every {backup.full_every_hours} h",
                )
            if (
                found.last_any_age_hours is not None
                and found.last_any_age_hours > backup.incr_every_hours + grace
            ):
                _miss(
                    status,
                    "backup-old",
                    found.host,
                    f"the last backup on {found.host} is {found.last_any_age_hours:.1f} h old; "
                    f"one is due every {backup.incr_every_hours} h",
                )
    return status


def _miss(status: DatabaseStatus, check: str, host: str | None, message: str) -> None:
    status.problems.append(message)
    status.misses.append((check, host, message))


class LabDown(Exception):
    """The environment is the lab twin and it is not up."""


def dr_status(topology: Topology, service: str | None = None, runner: Runner | None = None) -> DrStatus:
    """The DR status of every host database (or of one service's).

    Raises :class:`LabDown` when the environment is the lab twin and it was never brought up
    (there is nothing to connect to).
    """
    env = topology.environment
    if runner is None and env.lab and not (ssh_dir(env.name) / "config").is_file():
        raise LabDown(
            f"the lab twin of {env.name!r} is not up (no SSH config in {ssh_dir(env.name)}): "
            "run invoke lab.up, then invoke deploy"
        )
    run = runner or ssh_runner(topology)
    services = [s for s in topology.host_databases() if service is None or s.name == service]
    return DrStatus(topology.environment.name, [database_status(topology, s, run) for s in services])


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:g} {unit}"


def render_text(report: DrStatus) -> str:
    lines = []
    for d in report.databases:
        lines.append(
            f"{d.service} ({d.tenant}): primary {d.primary_host} at {d.primary_site}: {d.primary_state}; "
            f"RPO {d.rpo_minutes} min"
        )
        for s in d.standbys:
            lines.append(
                f"  standby {s.host} at {s.site}: {s.state}; lag {_fmt_bytes(s.lag_bytes)}, "
                f"{_fmt(s.lag_seconds, 's')}; slot retains {_fmt_bytes(s.slot_retained_bytes)}"
            )
        archive = "failing" if d.archive_failing else "ok" if d.archive_failing is False else "-"
        lines.append(f"  WAL archive: {archive}, last archived {_fmt(d.archive_lag_seconds, 's')} ago")
        if d.backups is not None:
            b = d.backups
            lines.append(
                f"  backups on {b.host} at {b.site}: {b.count}; last full {_fmt(b.last_full_age_hours, 'h')} "
                f"ago ({_fmt_bytes(b.last_full_size_bytes)}), last {b.last_any_type or '-'} "
                f"{_fmt(b.last_any_age_hours, 'h')} ago ({_fmt_bytes(b.last_any_size_bytes)})"
            )
        for p in d.unreachable:
            lines.append(f"  UNREACHABLE {p}")
        for p in d.problems:
            lines.append(f"  MISSED {p}")
    verdict = {0: "healthy", 2: "a target is missed", 3: "something could not be read"}[report.exit_code]
    lines.append(f"{report.environment}: {len(report.databases)} database(s): {verdict}")
    return "\n".join(lines) + "\n"


def render_json(report: DrStatus) -> str:
    return (
        json.dumps(
            {
                "environment": report.environment,
                "exit_code": report.exit_code,
                "databases": [asdict(d) for d in report.databases],
            },
            indent=2,
        )
        + "\n"
    )


def render_markdown(report: DrStatus) -> str:
    rows = [
        "| database | primary | standby | state | lag | slot retains | last full | last backup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in report.databases:
        b = d.backups
        full = _fmt(b.last_full_age_hours if b else None, "h")
        last = _fmt(b.last_any_age_hours if b else None, "h")
        for s in d.standbys or [Standby("-", "-", "-")]:
            lag = f"{_fmt_bytes(s.lag_bytes)}, {_fmt(s.lag_seconds, 's')}"
            rows.append(
                f"| {d.service} | {d.primary_host} ({d.primary_state}) | {s.host} ({s.site}) | {s.state} | "
                f"{lag} | {_fmt_bytes(s.slot_retained_bytes)} | {full} | {last} |"
            )
    problems = [f"- **{d.service}**: {p}" for d in report.databases for p in d.unreachable + d.problems]
    return (
        "\n".join(
            [f"## DR status of {report.environment}", "", *rows, "", *(problems or ["All targets met."])]
        )
        + "\n"
    )


def data_layer(topology: Topology, sites: list[str], runner: Runner | None = None) -> LayerReport:
    """``invoke drift``'s data layer: each host database of these sites against the model.

    A database is checked when its primary site is among ``sites``. Each missed target is an
    item with a stable id, ``data:SERVICE/CHECK[/HOST]`` (e.g. ``data:kj-core-banking/
    standby-not-streaming/jj-db-kj-01``), which drift-ack entries can name; what could not
    be read leaves the database unverified.
    """
    layer = LayerReport(layer=Layer.DATA, status=LayerStatus.CLEAN)
    from dualdc.ops import drstate  # noqa: PLC0415 (drstate imports this module's neighbours)

    try:
        state = drstate.load_and_apply(topology)
    except drstate.StateError as exc:
        layer.status = LayerStatus.UNVERIFIED
        layer.note = str(exc)
        return layer
    moved = drstate.drift(topology, state)
    for entry in moved:
        svc_name = entry["service"]
        host = entry["host"]
        site = topology.host(host).site
        layer.items.append(
            DriftItem.found(Layer.DATA, f"data:{svc_name}/{entry['check']}/{host}", svc_name,
                            f"{entry['message']}; settle it: {entry['change']}",
                            site=site, host=host, diff=entry["change"])
        )
    try:
        report = dr_status(topology, runner=runner)
    except LabDown as exc:
        layer.status = LayerStatus.UNVERIFIED
        layer.note = str(exc)
        for svc in topology.host_databases():
            if svc.primary_site in sites:
                layer.checked.append(
                    CheckedTarget(
                        layer=Layer.DATA,
                        name=svc.name,
                        site=svc.primary_site,
                        status=TargetStatus.UNREACHABLE,
                        detail=str(exc),
                    )
                )
        return layer
    for d in report.databases:
        if d.primary_site not in sites:
            continue
        status = (
            TargetStatus.UNREACHABLE
            if d.unreachable
            else TargetStatus.DRIFT
            if d.misses
            else TargetStatus.CLEAN
        )
        layer.checked.append(
            CheckedTarget(
                layer=Layer.DATA,
                name=d.service,
                site=d.primary_site,
                status=status,
                detail="; ".join(d.unreachable),
            )
        )
        for check, host, message in d.misses:
            site = topology.host(host).site if host in {h.name for h in topology.hosts} else d.primary_site
            layer.items.append(
                DriftItem.found(Layer.DATA, f"data:{d.service}/{check}" + (f"/{host}" if host else ""),
                                d.service, message, site=site, host=host)
            )
    if any(t.status is TargetStatus.UNREACHABLE for t in layer.checked):
        layer.status = LayerStatus.UNVERIFIED
    elif layer.items:
        layer.status = LayerStatus.DRIFT
    layer.note = f"{len(layer.checked)} database(s): PostgreSQL's views and pgBackRest against the model"
    return layer
