"""``dr.restore-test``: restore the latest backup into a scratch instance and check it against the source.

On the database's repository (backup) host, at the other site:

1. ``pgbackrest verify`` (the backup's own verification: every file of every backup and the WAL
   archive against their checksums) and ``pgbackrest info`` (the latest backup's label);
2. ``pgbackrest restore`` of that backup into a scratch folder, with a configuration of its own
   that names only the local repository (read only: a restore never writes to it), recovery to
   the end of the backup (``--type=immediate``) and a ``restore_command`` that reads the archive;
3. a scratch PostgreSQL on that folder, on a Unix socket only, with ``archive_mode=off`` (it can
   never push WAL into the repository) and no TCP listener (nothing can reach it);
4. the workload's tables (``dualdc_drill``) compared with the running primary: the restored
   transfers must be exactly the primary's transfers up to the newest restored one (row count
   and an md5 of their rows), and the restored balances must still sum to the opening total;
5. the scratch instance is stopped and its folder removed, whatever happened.

The running databases are only read (one query on the primary); nothing is written anywhere but
the scratch folder.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from dualdc.databases import current_primary
from dualdc.model import Service, Topology
from dualdc.ops.drdrill import ACCOUNTS, DB, OPENING
from dualdc.ops.drstatus import Runner

SCRATCH = "/var/lib/postgresql/dualdc-restore-test"
PORT = 5499
REPO = "/var/lib/pgbackrest"

DIGEST_SQL = ("SELECT json_build_object('rows', count(*), 'max', max(id), 'md5', "
              "md5(coalesce(string_agg(id || ':' || src || ':' || dst || ':' || amount, ',' "
              "ORDER BY id), '')), "
              "'total', (SELECT sum(balance) FROM accounts)) FROM transfers{where}")


@dataclass
class RestoreResult:
    service: str
    repo_host: str
    backup: str | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def phase(self, name: str, start: float, detail: str = "") -> None:
        end = time.time()
        from dualdc.ops.drdrill import _iso  # noqa: PLC0415

        self.phases.append({"name": name, "start": _iso(start), "end": _iso(end),
                            "seconds": round(end - start, 3), "detail": detail})

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append({"name": name, "service": self.service, "passed": passed, "detail": detail})

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)


class RestoreError(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _run(runner: Runner, host: str, command: str, what: str, timeout_ok: bool = False) -> str:
    code, out, err = runner(host, command)
    if code == 255:
        raise RestoreError(f"{host}: unreachable over SSH while trying to {what}", code=3)
    if code != 0 and not timeout_ok:
        said = next((ln.strip() for ln in reversed((err or out).splitlines()) if ln.strip()), "no output")
        raise RestoreError(f"{host}: could not {what}: {said[:400]}")
    return out


def restore_test(topology: Topology, svc: Service, runner: Runner, say: Any, *, scratch: str = SCRATCH,
                 repo_path: str = REPO) -> RestoreResult:
    repo = topology.repository_host(svc)
    if repo is None or svc.database is None:
        raise RestoreError(f"{svc.name} has no pgBackRest repository (no backup in the model)", code=1)
    v = svc.database.version
    bin_dir = f"/usr/lib/postgresql/{v}/bin"
    stanza = svc.name
    res = RestoreResult(svc.name, repo.name)
    t0 = time.time()
    data, conf = f"{scratch}/{stanza}", f"{scratch}/{stanza}.conf"
    pg = "runuser -u postgres -- "
    try:
        t = time.time()
        say(f"{svc.name}: pgbackrest verify on {repo.name}")
        out = _run(runner, repo.name, f"{pg}pgbackrest --stanza={stanza} --output=json info",
                   "read the backups")
        backups = (json.loads(out)[0].get("backup") or []) if out.strip() else []
        if not backups:
            raise RestoreError(f"{svc.name}: no backup in the repository on {repo.name}")
        res.backup = backups[-1]["label"]
        code, vout, verr = runner(repo.name, f"{pg}pgbackrest --stanza={stanza} verify")
        res.check("pgbackrest-verify", code == 0,
                  (verr or vout).strip()[-300:] or "backups and archive verified")
        res.phase("verify", t, f"latest backup {res.backup}")
        t = time.time()
        say(f"{svc.name}: restoring {res.backup} into {data} on {repo.name}")
        restore_cmd = f"pgbackrest --config={conf} --stanza={stanza} archive-get %f \"%p\""
        setup = (
            f"test -x {bin_dir}/postgres || "
            f"{{ echo 'the PostgreSQL {v} server is not installed here' >&2; exit 1; }}; "
            f"{pg}{bin_dir}/pg_ctl -D {data} -m immediate stop >/dev/null 2>&1; "
            f"rm -rf {data} {conf} && install -d -o postgres -g postgres -m 0700 {scratch} {data} && "
            f"printf '[global]\\nrepo1-path={repo_path}\\nlog-level-console=warn\\nlog-level-file=off\\n"
            f"[{stanza}]\\npg1-path={data}\\n' > {conf} && chown postgres:postgres {conf} && "
            f"{pg}pgbackrest --config={conf} --stanza={stanza} --set={res.backup} --type=immediate "
            f"--target-action=promote "
            f"{shlex.quote('--recovery-option=restore_command=' + restore_cmd)} restore"
        )
        _run(runner, repo.name, setup, "restore the backup into the scratch folder")
        res.phase("restore", t, f"{res.backup} into {data}")
        t = time.time()
        start = (
            f"cd {data} && printf \"listen_addresses = ''\\nport = {PORT}\\n"
            f"unix_socket_directories = '{data}'\\n"
            f"archive_mode = off\\nhot_standby = off\\nshared_buffers = 32MB\\n\" > postgresql.conf && "
            f"printf 'local all postgres peer\\n' > pg_hba.conf && : > pg_ident.conf && "
            f"chown postgres:postgres postgresql.conf pg_hba.conf pg_ident.conf && "
            f"{pg}{bin_dir}/pg_ctl -D {data} -l {data}/restore-test.log -w -t 300 start"
        )
        _run(runner, repo.name, start, "start the scratch instance")
        # wait until recovery has ended (promoted)
        deadline = time.monotonic() + 300
        while True:
            # refused while it recovers (hot_standby is off): asked again until it is promoted
            code, out, _ = runner(repo.name, f"{pg}psql -XAtq -h {data} -p {PORT} -d postgres -c "
                                  "'SELECT pg_is_in_recovery()'")
            if code == 255:
                raise RestoreError(f"{repo.name}: unreachable over SSH", code=3)
            if code == 0 and out.strip().endswith("f"):
                break
            if time.monotonic() > deadline:
                raise RestoreError(f"{svc.name}: the scratch instance did not finish recovery in 300 s")
            time.sleep(0.5)
        res.phase("start", t, f"scratch instance on {repo.name}, socket only, archive_mode=off")
        t = time.time()
        has_db = _run(runner, repo.name, f"{pg}psql -XAtq -h {data} -p {PORT} -d postgres -c "  # noqa: S608
                      f"\"SELECT 1 FROM pg_database WHERE datname = '{DB}'\"", "list the databases").strip()
        if has_db != "1":
            res.check("workload-tables", False, f"the backup has no {DB} database: run dr.drill first")
        else:
            digest = shlex.quote(DIGEST_SQL.format(where=""))
            restored = json.loads(_run(runner, repo.name, f"{pg}psql -XAtq -h {data} -p {PORT} -d {DB} -c "
                                       f"{digest}", "digest the restored tables"))
            upto = restored["max"] or 0
            source_host = current_primary(topology, svc)
            src = json.loads(_run(runner, source_host, f"{pg}psql -XAtq -d {DB} -c "
                                  f"{shlex.quote(DIGEST_SQL.format(where=f' WHERE id <= {upto}'))}",
                                  "digest the source tables"))
            same = restored["rows"] == src["rows"] and restored["md5"] == src["md5"]
            res.check("transfers-match-source", same,
                      f"{restored['rows']} transfers up to id {upto}: md5 {restored['md5']} restored, "
                      f"{src['md5']} at {source_host}")
            res.check("balances-sum", int(restored["total"] or 0) == ACCOUNTS * OPENING,
                      f"{restored['total']} = {ACCOUNTS * OPENING}")
        res.phase("compare", t)
    finally:
        t = time.time()
        runner(repo.name,
               f"{pg}{bin_dir}/pg_ctl -D {data} -m fast stop >/dev/null 2>&1; rm -rf {data} {conf}")
        res.phase("cleanup", t, "scratch instance stopped and removed")
    res.seconds = round(time.time() - t0, 3)
    return res
