"""The postgresql and backup roles' inputs and files, rendered for the lab's hosts (no lab needed)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from dualdc.loader import load_environment

from .conftest import Renderer

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _hba_lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_only_db_and_backup_hosts_of_host_databases_get_database_vars(lab_inventory: dict[str, Any]) -> None:
    hostvars = lab_inventory["hostvars"]
    with_pg = sorted(h for h, v in hostvars.items() if v["dualdc_postgresql"])
    with_repo = sorted(h for h, v in hostvars.items() if v["dualdc_pgbackrest"])
    assert with_pg == ["gj-db-jb-01", "gj-db-kj-01", "jj-db-jb-01", "jj-db-kj-01"]
    assert with_repo == ["gj-backup-01", "jj-backup-01"]
    kj = hostvars["jj-db-kj-01"]["dualdc_postgresql"]
    assert (kj["role"], kj["primary"]["name"]) == ("standby", "gj-db-kj-01")
    assert kj["slot"] == "standby_jj_db_kj_01"
    assert hostvars["gj-db-kj-01"]["dualdc_postgresql"]["role"] == "primary"
    # backups land at the other site
    assert hostvars["gj-db-kj-01"]["dualdc_postgresql"]["repository"]["name"] == "jj-backup-01"
    (stanza,) = hostvars["gj-backup-01"]["dualdc_pgbackrest"]["stanzas"]
    assert stanza["name"] == "jb-core-banking" and stanza["retention_days"] == 35


def test_pg_hba_has_one_line_per_allowed_endpoint_and_never_the_other_bank(
    renderer: Renderer, lab_inventory: dict[str, Any]
) -> None:
    lines = _hba_lines(renderer.render("postgresql", "pg_hba.conf.j2", "gj-db-kj-01"))
    assert lines[:2] == [["local", "all", "postgres", "peer"], ["local", "all", "all", "peer"]]
    remote = lines[2:]
    assert all(line[0] == "hostssl" and line[-1] == "scram-sha-256" for line in remote), remote
    # the peer standby, by its address in Kwangju Bank's own replication segment at Jeonju
    assert ["hostssl", "replication", "repl_kj_core_banking", "10.20.41.19/32", "scram-sha-256"] in remote
    assert not any("0.0.0.0/0" in line or "jb" in " ".join(line) for line in remote), remote
    jb_addresses = {i["address"] for h in ("gj-db-jb-01", "jj-db-jb-01")
                    for i in lab_inventory["hostvars"][h]["dualdc_interfaces"]}
    assert not any(line[3].split("/")[0] in jb_addresses for line in remote)
    replication = [line for line in remote if line[1] == "replication"]
    assert [line[2] for line in replication] == ["repl_kj_core_banking"]


def test_standby_streams_from_the_primary_over_tls_with_its_slot(renderer: Renderer) -> None:
    text = renderer.render("postgresql", "10-dualdc.conf.j2", "jj-db-kj-01")
    conninfo = re.search(r"^primary_conninfo = '(.*)'$", text, re.M)
    assert conninfo is not None
    # the primary's address in the bank's own replication segment (the contract of issues 14 and 16)
    assert "host=10.10.41.19" in conninfo.group(1) and "sslmode=verify-full" in conninfo.group(1)
    assert "password" not in conninfo.group(1).replace("passfile", "")
    assert "primary_slot_name = 'standby_jj_db_kj_01'" in text
    primary = renderer.render("postgresql", "10-dualdc.conf.j2", "gj-db-kj-01")
    assert "primary_conninfo" not in primary
    assert "archive_command = 'pgbackrest --stanza=kj-core-banking archive-push %p'" in primary
    assert "synchronous_standby_names = ''" in primary


def test_synchronous_mode_names_the_dr_standby(renderer: Renderer, lab_inventory: dict[str, Any]) -> None:
    database = dict(lab_inventory["hostvars"]["gj-db-kj-01"]["dualdc_postgresql"],
                    replication_mode="remote_apply")
    text = renderer.render("postgresql", "10-dualdc.conf.j2", "gj-db-kj-01",
                           overrides={"dualdc_postgresql": database})
    assert "synchronous_standby_names = 'ANY 1 (standby_jj_db_kj_01)'" in text
    assert "synchronous_commit = remote_apply" in text


def test_the_repository_lets_each_database_host_reach_only_its_own_stanza(renderer: Renderer) -> None:
    text = renderer.render("backup", "pgbackrest.conf.j2", "jj-backup-01")
    auth = sorted(line for line in text.splitlines() if line.startswith("tls-server-auth="))
    assert auth == ["tls-server-auth=gj-db-kj-01=kj-core-banking",
                    "tls-server-auth=jj-db-kj-01=kj-core-banking"]
    assert "[kj-core-banking]" in text and "[jb-core-banking]" not in text
    assert "repo1-retention-full=35" in text and "repo1-retention-full-type=time" in text


@pytest.mark.skipif(not (PG_BIN / "postgres").is_file(), reason="PostgreSQL 15 is not installed here")
def test_the_rendered_settings_load_in_postgresql_15(renderer: Renderer) -> None:
    """initdb a scratch cluster and ask postgres -C for the settings the role's files set."""
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user to run initdb as")
    with tempfile.TemporaryDirectory(prefix="dualdc-pg-") as scratch:  # pytest's tmp_path is root-only
        top = Path(scratch)
        shutil.chown(top, user.pw_uid, user.pw_gid)
        _load_settings(renderer, top / "data", user)


def _load_settings(renderer: Renderer, data: Path, user: pwd.struct_passwd) -> None:
    data.mkdir()
    shutil.chown(data, user.pw_uid, user.pw_gid)

    def as_postgres(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True,
                              timeout=120, check=False, env={**os.environ, "LC_ALL": "C"})

    done = as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "--data-checksums")
    assert done.returncode == 0, done.stderr
    conf = data / "conf.d"
    conf.mkdir()
    for name in ("00-dualdc-restart.conf", "10-dualdc.conf"):
        (conf / name).write_text(renderer.render("postgresql", f"{name}.j2", "jj-db-kj-01"), encoding="utf-8")
    with (data / "postgresql.conf").open("a", encoding="utf-8") as out:
        out.write("include_dir = 'conf.d'\n")
    shutil.chown(conf, user.pw_uid, user.pw_gid)
    for path in conf.iterdir():
        shutil.chown(path, user.pw_uid, user.pw_gid)
    for name, expected in (("wal_level", "replica"), ("archive_mode", "on"), ("ssl", "on"),
                           ("password_encryption", "scram-sha-256"),
                           ("primary_slot_name", "standby_jj_db_kj_01")):
        shown = as_postgres(str(PG_BIN / "postgres"), "-D", str(data), "-C", name)
        assert (shown.returncode, shown.stdout.strip()) == (0, expected), (name, shown.stderr)


def test_database_hosts_converge_after_every_site_in_deploy() -> None:
    from dualdc.ops.drift import database_hosts

    assert database_hosts(load_environment("lab")) == [
        "gj-backup-01", "gj-db-jb-01", "gj-db-kj-01", "jj-backup-01", "jj-db-jb-01", "jj-db-kj-01"]
    assert len(database_hosts(load_environment("production"))) == 8 + 2


def test_an_unreachable_repository_fails_a_wal_push_fast(renderer: Renderer) -> None:
    """archive-push gives up on a repository it cannot reach within seconds (PostgreSQL keeps the
    segment and retries), so a restart of the primary is not held by its archiver."""
    text = renderer.render("postgresql", "pgbackrest.conf.j2", "gj-db-kj-01")
    section = text.split("[global:archive-push]\n", 1)[1].split("\n[", 1)[0]
    assert "io-timeout=5" in section.splitlines()
