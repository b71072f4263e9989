"""Who is primary now: ``.state/<env>/primaries.json``, written by the DR commands.

The model says where each host database's primary *should* run (``database.hosts``). After
``dr.switchover`` or ``dr.failover`` the primary runs elsewhere until the model is changed or
the pair is switched back. This file, beside the lock, the audit log and the drift-ack
ledger's state, records that fact so that:

- the inventory (``dualdc_postgresql``) describes the pair as it runs: a converge configures
  the new primary as primary and the old one as its standby, and never demotes the new one;
- a host the DR commands *fenced* (an old primary that must never take writes again until it
  is rebuilt as a standby) is described as such, and the roles leave it stopped;
- ``invoke drift`` reports the difference against the model's intended primary as drift, with
  the one change to the model that settles it;
- a DR command interrupted half way finds, on its next run, the phase it reached (``pending``).

The file is replaced atomically (a temporary file, fsync, rename), so a crash leaves the old or
the new version, never a torn one. A service missing from the file runs where the model says.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dualdc.base.paths import ops_state
from dualdc.databases import PRIMARIES_CACHE, current_primary, model_placements
from dualdc.model import Service, Topology

#: Set in a topology's cache once the state file is applied to it.
APPLIED = "dr_primaries_applied"

STATE_NAME = "primaries.json"
MAX_BYTES = 1024 * 1024


class Pending(BaseModel):
    """A DR operation that started and has not finished (what a re-run resumes)."""

    model_config = ConfigDict(extra="forbid")

    operation: str = Field(description="switchover, failover or failback.")
    source: str = Field(description="The host that was primary when the operation started.")
    target: str = Field(description="The host becoming primary (switchover, failover) or rebuilt (failback).")
    phase: str = Field(description="The last phase completed, e.g. fenced, caught-up, promoted.")
    started: dt.datetime = Field(description="When the operation started (UTC).")
    fence_lsn: str | None = Field(
        default=None, description="The old primary's last WAL position, once fenced."
    )


class ServiceState(BaseModel):
    """Where one host database's primary runs, as the DR commands left it."""

    model_config = ConfigDict(extra="forbid")

    primary: str = Field(description="The host that is primary now.")
    site: str = Field(description="The site of that host.")
    since: dt.datetime = Field(description="When it became primary (UTC).")
    by: str = Field(description="The command that made it primary: switchover or failover.")
    fenced: list[str] = Field(
        default_factory=list,
        description="Old primaries fenced and not yet rebuilt as standbys (dr.failback rebuilds them).",
    )
    data_loss_window: str | None = Field(
        default=None, description="failover: the WAL the promoted standby had not received, if known."
    )
    pending: Pending | None = Field(default=None, description="An operation not finished yet.")


class PrimaryState(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(default=1, description="Format version of this file.")
    environment: str = Field(description="Environment the file is for.")
    services: dict[str, ServiceState] = Field(
        default_factory=dict, description="Per service with a host database: where its primary runs now."
    )


class StateError(Exception):
    """The state file cannot be read or written (exit 1 with the file named)."""


def state_path(env: str, root: Path | None = None) -> Path:
    return ops_state(env, root) / STATE_NAME


def load(env: str, root: Path | None = None) -> PrimaryState:
    """The environment's state (empty when the file does not exist)."""
    path = state_path(env, root)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return PrimaryState(environment=env)
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise StateError(f"{path}: larger than {MAX_BYTES} bytes; not a primaries file")
    try:
        state = PrimaryState.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise StateError(f"{path}: {where}: {first['msg']}") from None
    if state.environment != env:
        raise StateError(f"{path}: written for environment {state.environment!r}, not {env!r}")
    return state


def save(state: PrimaryState, root: Path | None = None) -> Path:
    """Replace the file atomically; returns its path."""
    path = state_path(state.environment, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATE_NAME}.{os.getpid()}.tmp")
    data = (state.model_dump_json(indent=2) + "\n").encode("utf-8")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StateError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return path


def check_against(topology: Topology, state: PrimaryState) -> list[str]:
    """Problems of a state file against the topology (a host that left the database, ...)."""
    problems = []
    by_name = {s.name: s for s in topology.host_databases()}
    for name, entry in state.services.items():
        svc = by_name.get(name)
        if svc is None:
            problems.append(f"{name}: no host database of that name in {topology.environment.name}")
            continue
        members = {h for _, h, _ in model_placements(svc)}
        for host in [entry.primary, *entry.fenced]:
            if host not in members:
                known = ", ".join(sorted(members))
                problems.append(f"{name}: {host} is not one of the database's hosts ({known})")
    return problems


def apply(topology: Topology, state: PrimaryState) -> None:
    """Make the topology's database helpers (and so the inventory) follow the state file.

    Raises :class:`StateError` when the file names a host or service the model no longer has:
    better no converge than one that guesses who is primary.
    """
    problems = check_against(topology, state)
    if problems:
        raise StateError(
            f"{state_path(state.environment)}: does not fit the model: " + "; ".join(problems)
        )
    topology.cache[PRIMARIES_CACHE] = {
        name: {"primary": entry.primary, "fenced": list(entry.fenced)}
        for name, entry in state.services.items()
    }
    for key in [k for k in topology.cache if k.startswith("database_") or k == "inventory_layers"]:
        del topology.cache[key]
    topology.cache[APPLIED] = True


def ensure_applied(topology: Topology, root: Path | None = None) -> None:
    """:func:`load_and_apply` once per loaded topology (the inventory of every run follows it)."""
    if not topology.cache.get(APPLIED):
        load_and_apply(topology, root)


def load_and_apply(topology: Topology, root: Path | None = None) -> PrimaryState:
    """:func:`load` the environment's file and :func:`apply` it; returns the state."""
    state = load(topology.environment.name, root)
    apply(topology, state)
    return state


def model_change(topology: Topology, svc: Service, primary: str) -> str:
    """The one change to the model that makes ``primary`` the intended primary of ``svc``."""
    db = svc.database
    assert db is not None
    site = topology.host(primary).site
    before = db.primary_host
    old_site = svc.primary_site
    parts = [f"services[{svc.name}]:"]
    if site != old_site:
        parts.append(f"primary_site: {site};")
    parts.append(f"database.hosts.{site}.primary: {primary} (and {before} into "
                 f"database.hosts.{topology.host(before).site if before else old_site}.standbys)")
    return " ".join(parts)


def drift(topology: Topology, state: PrimaryState) -> list[dict[str, Any]]:
    """Each service whose primary is not the model's: what differs and the model change that settles it.

    Items are plain dicts (check, host, message, change) so the data layer can turn them into
    drift items with stable ids ``data:SERVICE/primary-moved/HOST`` and
    ``data:SERVICE/fenced/HOST``.
    """
    found: list[dict[str, Any]] = []
    by_name = {s.name: s for s in topology.host_databases()}
    for name, entry in sorted(state.services.items()):
        svc = by_name.get(name)
        if svc is None or svc.database is None:
            continue
        intended = svc.database.primary_host
        if entry.primary != intended:
            found.append({
                "service": name, "check": "primary-moved", "host": entry.primary,
                "message": (f"{entry.primary} at {entry.site} is primary since "
                            f"{entry.since:%Y-%m-%d %H:%M} UTC ({entry.by}); the model says {intended}"),
                "change": model_change(topology, svc, entry.primary)
                          + f"  — or switch back: invoke dr.switchover --service {name} "
                          f"--to {svc.primary_site}",
            })
        for host in entry.fenced:
            found.append({
                "service": name, "check": "fenced", "host": host,
                "message": f"{host} is fenced (the old primary, not yet a standby of {entry.primary})",
                "change": f"invoke dr.failback --env {topology.environment.name} --service {name}",
            })
        if entry.pending is not None:
            p = entry.pending
            found.append({
                "service": name, "check": "pending", "host": p.target,
                "message": f"{p.operation} of {name} stopped after phase {p.phase!r} "
                           f"({p.source} -> {p.target})",
                "change": f"invoke dr.{p.operation} --env {topology.environment.name} --service {name} "
                          "(re-run to finish it)",
            })
    return found


def record_primary(state: PrimaryState, svc: Service, topology: Topology, primary: str, *, by: str,
                   fenced: list[str], window: str | None = None) -> None:
    """Set ``svc``'s primary (dropping the entry when it is back where the model says, unfenced)."""
    entry = ServiceState(primary=primary, site=topology.host(primary).site,
                         since=dt.datetime.now(dt.UTC).replace(microsecond=0), by=by,
                         fenced=sorted(set(fenced)), data_loss_window=window)
    assert svc.database is not None
    if primary == svc.database.primary_host and not entry.fenced:
        state.services.pop(svc.name, None)
    else:
        state.services[svc.name] = entry


def summary(topology: Topology) -> dict[str, str]:
    """service -> its current primary host (after :func:`apply`)."""
    return {s.name: current_primary(topology, s) for s in topology.host_databases()}


def dumps(state: PrimaryState) -> str:
    return json.dumps(state.model_dump(mode="json"), indent=2, ensure_ascii=False)
