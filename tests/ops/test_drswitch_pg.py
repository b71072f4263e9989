"""dr.switchover, dr.failover and dr.failback against real PostgreSQL 15: two local clusters.

The commands' own shell steps (:class:`dualdc.ops.drswitch.SshNode`: read the state, fence,
stop, read the control file, promote, create slots, re-clone with pg_basebackup) run on two
throw-away clusters of this machine's PostgreSQL, on Unix sockets only, standing in for
gj-db-kj-01 and jj-db-kj-01. Only the transport differs from the lab (a local shell rather than
SSH) and the standby's connection string (a socket rather than TLS to a replication address).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dualdc.databases import slot_name
from dualdc.loader import load_environment
from dualdc.ops import drstate
from dualdc.ops.drswitch import Options, Pair, SshNode

BIN = Path("/usr/lib/postgresql/15/bin")
GJ, JJ = "gj-db-kj-01", "jj-db-kj-01"
PORTS = {GJ: 55431, JJ: 55432}

pytestmark = pytest.mark.skipif(
    not (BIN / "postgres").exists() or os.geteuid() != 0 or shutil.which("runuser") is None,
    reason="needs PostgreSQL 15 server binaries and root (runuser to postgres)",
)


def _pg(*argv: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                          timeout=120, check=check, **kw)


class Local:
    """Two clusters in ``root``: data in root/HOST, socket in root/HOST-sock, settings in root/HOST-etc."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.down: set[str] = set()

    def data(self, host: str) -> Path:
        return self.root / host

    def sock(self, host: str) -> str:
        """Outside the data folder: a clone copies none of the other cluster's socket lock files."""
        return str(self.root / f"{host}-sock")

    def run(self, host: str, command: str) -> tuple[int, str, str]:
        if host not in PORTS:  # the backup host: no pgBackRest repository here
            return 1, "", "no such host here"
        if host in self.down:  # its site is down: as ssh says when it cannot connect
            return 255, "", "ssh: connect to host: No route to host"
        env = {**os.environ, "PGPORT": str(PORTS[host]), "PGHOST": self.sock(host)}
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=120, env=env,
                              check=False)
        return done.returncode, done.stdout, done.stderr

    def sql(self, host: str, sql: str) -> str:
        code, out, err = self.run(host, f"runuser -u postgres -- psql -XAtq -d postgres -c \"{sql}\"")
        assert code == 0, err
        return out.strip()

    def own_conf(self, host: str) -> None:
        """Its configuration outside the data folder, as Debian keeps it in /etc (a clone copies none)."""
        etc = self.root / f"{host}-etc"
        conf = etc / "conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        Path(self.sock(host)).mkdir(exist_ok=True)
        (etc / "postgresql.conf").write_text(
            f"hba_file = '{etc}/pg_hba.conf'\nident_file = '{etc}/pg_ident.conf'\n"
            "include_dir = 'conf.d'\n",
            encoding="utf-8")
        (etc / "pg_hba.conf").write_text("local all all trust\nlocal replication all trust\n",
                                         encoding="utf-8")
        (etc / "pg_ident.conf").write_text("", encoding="utf-8")
        (conf / "00-local.conf").write_text(
            f"port = {PORTS[host]}\nlisten_addresses = ''\n"
            f"unix_socket_directories = '{self.sock(host)}'\n"
            "wal_level = replica\nhot_standby = on\nwal_keep_size = 0\n", encoding="utf-8")
        subprocess.run(["chown", "-R", "postgres:postgres", str(self.data(host)), str(etc), self.sock(host)],
                       check=True)


@pytest.fixture
def pair_dirs() -> Any:
    # not under pytest's tmp_path: its parents are root's alone, and the clusters run as postgres
    root = Path(tempfile.mkdtemp(prefix="dualdc-pg-"))
    subprocess.run(["chown", "postgres:postgres", str(root)], check=True)
    local = Local(root)
    _pg(str(BIN / "initdb"), "-D", str(local.data(GJ)), "--auth=trust", "--data-checksums", "-U", "postgres")
    local.own_conf(GJ)
    ctl = (f"runuser -u postgres -- {BIN}/pg_ctl -D {root}/{{host}} -l {root}/{{host}}.log -w "
           f"-o '-c config_file={root}/{{host}}-etc/postgresql.conf'")
    node = SshNode(local.run, data=f"{root}/{{host}}", conf=f"{root}/{{host}}-etc", ctl=ctl)
    node.start(GJ)
    local.sql(GJ, f"SELECT pg_create_physical_replication_slot('{slot_name(JJ)}', true)")
    local.sql(GJ, "CREATE TABLE ledger (id int PRIMARY KEY, amount int)")
    local.sql(GJ, "INSERT INTO ledger SELECT g, g FROM generate_series(1, 100) g")
    _pg(str(BIN / "pg_basebackup"), "-d", f"host={local.sock(GJ)} port={PORTS[GJ]} user=postgres",
        "-D", str(local.data(JJ)), "-X", "stream", "-S", slot_name(JJ))
    local.own_conf(JJ)
    node.fence(JJ, f"# {JJ} is a standby of {GJ};\nprimary_conninfo = 'host={local.sock(GJ)} "
                   f"port={PORTS[GJ]} user=postgres application_name={slot_name(JJ)}'\n"
                   f"primary_slot_name = '{slot_name(JJ)}'\n")
    node.start(JJ)
    try:
        yield local, node
    finally:
        for host in (GJ, JJ):
            local.run(host, f"runuser -u postgres -- {BIN}/pg_ctl -D {local.data(host)} -m immediate stop")
        os.environ.get("DUALDC_KEEP_PG") or shutil.rmtree(root, ignore_errors=True)


class LocalPair(Pair):
    """The real Pair, with a standby's connection string to the other cluster's socket."""

    sockets: ClassVar[dict[str, str]] = {}

    def standby_conf(self, host: str, operation: str) -> tuple[str, str, str]:
        primary = self.primary()
        slot = slot_name(host)
        conninfo = f"host={self.sockets[primary]} port={PORTS[primary]} user=postgres"
        conf = (f"# dualdc dr.{operation}: {host} is a standby of {primary}; test\n"
                f"primary_conninfo = '{conninfo} application_name={slot}'\nprimary_slot_name = '{slot}'\n"
                "recovery_target_timeline = 'latest'\nsynchronous_standby_names = ''\n")
        return conf, conninfo, slot


def _pair(local: Local, node: SshNode, state_root: Path) -> Pair:
    topology = load_environment("lab")
    state = drstate.load_and_apply(topology, state_root)
    svc = topology.service("kj-core-banking")
    LocalPair.sockets = {h: local.sock(h) for h in (GJ, JJ)}
    return LocalPair(topology, svc, node, state, save=lambda s: drstate.save(s, state_root),
                     progress=lambda m: None,
                     options=Options(poll=0.1, catchup_timeout=30, stream_timeout=60))


def _writable(local: Local, host: str) -> bool:
    code, out, _ = local.run(host, "runuser -u postgres -- psql -XAtq -d postgres -c 'SELECT txid_current()'")
    return code == 0 and out.strip().isdigit()


def test_switchover_and_back_on_real_postgresql(pair_dirs: Any, tmp_path: Path) -> None:
    local, node = pair_dirs
    assert node.facts(GJ).state == "writable" and node.facts(JJ).state == "recovery"
    outcome = _pair(local, node, tmp_path / "state").switchover("jeonju")
    assert outcome.changed and outcome.loss_bytes == 0, outcome.message
    assert _writable(local, JJ) and not _writable(local, GJ)
    assert node.facts(JJ).timeline == 2
    assert local.sql(JJ, "SELECT count(*) FROM ledger") == "100"  # nothing acknowledged was lost
    local.sql(JJ, "INSERT INTO ledger VALUES (101, 101)")
    query = f"SELECT state FROM pg_stat_replication WHERE application_name = '{slot_name(GJ)}'"
    streaming = local.sql(JJ, query)
    assert streaming == "streaming"  # the old primary follows the new one, no rewind needed
    back = _pair(local, node, tmp_path / "state").switchover("gwangju")
    assert back.changed, back.message
    assert _writable(local, GJ) and not _writable(local, JJ)
    assert local.sql(GJ, "SELECT count(*) FROM ledger") == "101"
    assert drstate.load("lab", tmp_path / "state").services == {}


def test_failover_then_failback_on_real_postgresql(pair_dirs: Any, tmp_path: Path) -> None:
    local, node = pair_dirs
    outcome = _pair(local, node, tmp_path / "state").failover("jeonju")
    assert outcome.changed and outcome.fenced == [GJ]
    assert _writable(local, JJ) and not _writable(local, GJ)
    assert (local.data(GJ) / "standby.signal").exists()  # fenced: it can only come up read-only
    local.sql(JJ, "INSERT INTO ledger VALUES (500, 500)")
    rebuilt = _pair(local, node, tmp_path / "state").failback()
    assert rebuilt.changed and rebuilt.fenced == [], rebuilt.message
    assert not _writable(local, GJ)
    state = drstate.load("lab", tmp_path / "state").services["kj-core-banking"]
    assert state.primary == JJ and state.fenced == []
    assert local.sql(GJ, "SELECT count(*) FROM ledger WHERE id = 500") == "1"


def _guard_script(local: Local, host: str, peer: str) -> str:
    """The role's start guard (roles/postgresql/templates/dualdc-pg-guard.j2) for a local cluster."""
    import jinja2

    root = Path(__file__).resolve().parents[2]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(root / "roles/postgresql/templates"),
                             keep_trailing_newline=True, autoescape=False)
    env.filters["comment"] = lambda text: f"# {text}"
    return env.get_template("dualdc-pg-guard.j2").render(
        ansible_managed="Ansible managed", _postgresql_data_dir=str(local.data(host)),
        _postgresql_marker=str(local.root / f"{host}.marker"), _postgresql_bin=str(BIN),
        _postgresql_tls_dir=str(local.root), postgresql_database={
            "service": "kj-core-banking", "port": PORTS[peer], "replication_user": "repl_kj_core_banking",
            "peers": [{"name": peer, "address": local.sock(peer)}]})


def test_the_start_guard_keeps_a_superseded_old_primary_read_only(pair_dirs: Any, tmp_path: Path) -> None:
    """A lost site returns after a failover: its old primary, which nothing could fence, starts read-only."""
    local, node = pair_dirs
    local.sql(GJ, "CREATE ROLE repl_kj_core_banking LOGIN REPLICATION")
    # the site is lost: its primary dies where it stands (no fence reaches it)
    local.run(GJ, f"runuser -u postgres -- {BIN}/pg_ctl -D {local.data(GJ)} -m immediate stop")
    (local.root / f"{GJ}.marker").write_text("dualdc\n", encoding="utf-8")
    node.promote(JJ)
    assert node.facts(JJ).timeline == 2
    assert not (local.data(GJ) / "standby.signal").exists()
    # the site comes back: the guard runs before PostgreSQL
    script = tmp_path / "guard.sh"
    script.write_text(_guard_script(local, GJ, JJ), encoding="utf-8")
    code, _, err = local.run(GJ, f"sh {script}")
    assert code == 0
    assert "superseded, starting read-only" in err
    assert (local.data(GJ) / "standby.signal").exists()
    node.start(GJ)
    assert node.facts(GJ).state == "recovery" and not _writable(local, GJ)
    assert _writable(local, JJ)
    # and a primary that was not superseded starts as it was: the guard leaves it alone
    (local.root / f"{JJ}.marker").write_text("dualdc\n", encoding="utf-8")
    mine = tmp_path / "guard-jj.sh"
    mine.write_text(_guard_script(local, JJ, GJ), encoding="utf-8")
    code, _, err = local.run(JJ, f"sh {mine}")
    assert code == 0 and "superseded" not in err


def test_restore_test_on_real_postgresql_and_pgbackrest() -> None:
    """dr.restore-test's steps on a local pgBackRest repository of a local primary."""
    if shutil.which("pgbackrest") is None:
        pytest.skip("needs pgbackrest")
    from dualdc.ops import drrestore
    from dualdc.ops.drdrill import SETUP_SQL

    root = Path(tempfile.mkdtemp(prefix="dualdc-pgbr-"))
    subprocess.run(["chown", "postgres:postgres", str(root)], check=True)
    local = Local(root)
    stanza = "kj-core-banking"
    conf = root / "pgbackrest.conf"
    try:
        _pg(str(BIN / "initdb"), "-D", str(local.data(GJ)), "--auth=trust", "--data-checksums",
            "-U", "postgres")
        local.own_conf(GJ)
        conf.write_text(f"[global]\nrepo1-path={root}/repo\nlog-path={root}\nlock-path={root}/lock\n"
                        f"log-level-file=off\nstart-fast=y\n[{stanza}]\npg1-path={local.data(GJ)}\n"
                        f"pg1-port={PORTS[GJ]}\npg1-socket-path={local.sock(GJ)}\n", encoding="utf-8")
        with (root / f"{GJ}-etc" / "conf.d" / "00-local.conf").open("a", encoding="utf-8") as f:
            f.write(f"archive_mode = on\narchive_command = 'pgbackrest --config={conf} --stanza={stanza} "
                    "archive-push %p'\n")
        (root / "repo").mkdir()
        subprocess.run(["chown", "-R", "postgres:postgres", str(root)], check=True)
        ctl = (f"runuser -u postgres -- {BIN}/pg_ctl -D {root}/{{host}} -l {root}/{{host}}.log -w "
               f"-o '-c config_file={root}/{{host}}-etc/postgresql.conf'")
        node = SshNode(local.run, data=f"{root}/{{host}}", conf=f"{root}/{{host}}-etc", ctl=ctl)
        node.start(GJ)
        code, _, err = local.run(GJ, "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d postgres "
                                     "<<'SQL'\n"
                                     f"{SETUP_SQL}\nINSERT INTO transfers VALUES (1, 1, 2, 5);\n"
                                     "UPDATE accounts SET balance = balance - 5 WHERE id = 1;\n"
                                     "UPDATE accounts SET balance = balance + 5 WHERE id = 2;\nSQL")
        assert code == 0, err
        for step in ("stanza-create", "backup --type=full"):
            code, _, err = local.run(GJ, f"runuser -u postgres -- pgbackrest --config={conf} "
                                         f"--stanza={stanza} {step}")
            assert code == 0, err

        def runner(host: str, command: str) -> tuple[int, str, str]:
            # the repository host is this machine; its default configuration is the one above
            os.environ["PGBACKREST_CONFIG"] = str(conf)
            try:
                return local.run(GJ, command)
            finally:
                del os.environ["PGBACKREST_CONFIG"]

        topology = load_environment("lab")
        res = drrestore.restore_test(topology, topology.service(stanza), runner, lambda m: None,
                                     scratch=str(root / "scratch"), repo_path=str(root / "repo"))
        checks = {c["name"]: (c["passed"], c["detail"]) for c in res.checks}
        assert checks["transfers-match-source"][0], checks
        assert checks["balances-sum"][0], checks
        assert checks["pgbackrest-verify"][0], checks
        assert res.backup and res.passed
        assert not (root / "scratch" / stanza).exists()  # the scratch instance is gone
        assert _writable(local, GJ)  # the source was only read
    finally:
        local.run(GJ, f"runuser -u postgres -- {BIN}/pg_ctl -D {local.data(GJ)} -m immediate stop")
        local.run(GJ, f"runuser -u postgres -- {BIN}/pg_ctl -D {root}/scratch/{stanza} -m immediate stop")
        os.environ.get("DUALDC_KEEP_PG") or shutil.rmtree(root, ignore_errors=True)


def test_planned_drill_on_real_postgresql(pair_dirs: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """dr.drill --scenario planned, end to end on the two local clusters: workload, poller, switchover
    and back, RTO, zero loss, consistency, protection (only ssh is replaced by a local shell)."""
    from dualdc.ops import drdrill

    local, node = pair_dirs

    def argv(topology: Any, host: str) -> list[str]:
        return ["env", f"PGPORT={PORTS[host]}", f"PGHOST={local.sock(host)}", "sh", "-c"]

    monkeypatch.setattr(drdrill, "ssh_argv", argv)
    topology = load_environment("lab")
    state = drstate.load_and_apply(topology, tmp_path / "state")
    svc = topology.service("kj-core-banking")
    LocalPair.sockets = {h: local.sock(h) for h in (GJ, JJ)}

    def pair(s: Any) -> Pair:
        return LocalPair(topology, s, node, state, save=lambda st: drstate.save(st, tmp_path / "state"),
                         progress=lambda m: None,
                         options=Options(poll=0.1, catchup_timeout=30, stream_timeout=60))

    result = drdrill.drill(topology, [svc], "planned", pair, lambda m: None, warmup=2.0, settle=2.0)
    checks = {c["name"]: c for c in result.checks}
    assert all(c["passed"] for c in result.checks), result.checks
    assert set(checks) == {"balances-sum", "no-half-transfer", "zero-loss", "pair-protected",
                           "never-two-writable"}
    measure = result.measures[0]
    print("planned drill on local clusters:", measure, result.notes)
    assert measure["met"] and measure["rpo_lost_commits"] == 0
    assert 0 < measure["rto_seconds"] < 60
    assert "0 lost" in result.notes[0] and "acknowledged transfers" in result.notes[0]
    acked = int(result.notes[0].split(": ", 1)[1].split(" ", 1)[0])
    assert acked > 20, result.notes  # the workload really ran
    assert drstate.load("lab", tmp_path / "state").services == {}  # switched back where the model says
    assert _writable(local, GJ) and not _writable(local, JJ)


def test_site_down_drill_on_real_postgresql(pair_dirs: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """dr.drill --scenario site-down on the two local clusters: the primary dies where it stands and
    cannot be reached; failover; the site returns through the start guard (read-only); failback
    re-clones it; switch back. The poller runs throughout."""
    from dualdc.ops import drdrill

    local, node = pair_dirs
    local.sql(GJ, "CREATE ROLE repl_kj_core_banking LOGIN REPLICATION")
    (local.root / f"{GJ}.marker").write_text("dualdc\n", encoding="utf-8")
    guard = tmp_path / "guard.sh"
    guard.write_text(_guard_script(local, GJ, JJ), encoding="utf-8")

    def argv(topology: Any, host: str) -> list[str]:
        if host in local.down:
            return ["sh", "-c", "exit 255", "--"]
        return ["env", f"PGPORT={PORTS[host]}", f"PGHOST={local.sock(host)}", "sh", "-c"]

    def fault(env: str, *args: str) -> None:
        assert args[:2] == ("--site", "gwangju")
        if args[2] == "--down":
            local.run(GJ, f"runuser -u postgres -- {BIN}/pg_ctl -D {local.data(GJ)} -m immediate stop")
            local.down.add(GJ)
        else:  # the host boots: the guard, then PostgreSQL (the lab's init does the same)
            local.down.discard(GJ)
            code, _, err = local.run(GJ, f"sh {guard}")
            assert code == 0 and "superseded" in err, err
            node.start(GJ)

    monkeypatch.setattr(drdrill, "ssh_argv", argv)
    monkeypatch.setattr(drdrill, "lab_fault", fault)
    topology = load_environment("lab")
    state = drstate.load_and_apply(topology, tmp_path / "state")
    svc = topology.service("kj-core-banking")
    LocalPair.sockets = {h: local.sock(h) for h in (GJ, JJ)}

    def pair(s: Any) -> Pair:
        return LocalPair(topology, s, node, state, save=lambda st: drstate.save(st, tmp_path / "state"),
                         progress=lambda m: None,
                         options=Options(poll=0.1, catchup_timeout=30, stream_timeout=60))

    result = drdrill.drill(topology, [svc], "site-down", pair, lambda m: None, warmup=2.0, settle=2.0)
    print("site-down drill on local clusters:", result.measures, result.notes,
          [(p["name"], p["seconds"]) for p in result.phases])
    assert all(c["passed"] for c in result.checks), result.checks
    assert {c["name"] for c in result.checks} == {"balances-sum", "no-half-transfer", "pair-protected",
                                                  "never-two-writable"}
    measure = result.measures[0]
    assert measure["met"] and 0 < measure["rto_seconds"] < 60
    assert drstate.load("lab", tmp_path / "state").services == {}
    assert _writable(local, GJ) and not _writable(local, JJ)
