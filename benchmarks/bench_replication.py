"""Benchmark: PostgreSQL streaming replication between the lab's sites.

Needs a lab twin whose host databases are deployed (``invoke lab.up`` then ``invoke deploy
--env lab --yes``); it says so and exits 3 otherwise. It changes nothing the model declares:
it writes rows into a scratch table of the primaries and builds a throw-away copy of a
primary on its standby host, which it removes.

- **lag under load**: for ``SECONDS`` seconds a steady synthetic write load (one short
  transaction every ``1/RATE`` s, each inserting a 1 KiB row) runs at each primary while
  ``pg_stat_replication`` is sampled every 0.2 s; the replay lag in seconds and bytes, as
  PostgreSQL reports it for the DR standby, gives a median and a 99th percentile;
- **standby from scratch**: the time ``pg_basebackup`` takes to copy the primary to the
  standby host over the replication flow (TLS, the standby's own credentials), into a
  scratch folder: the bulk of building a standby.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from typing import Any

from dualdc.lab import LabError, load_lab

SECONDS = 30
RATE = 50  # transactions per second per primary
DATABASES = {
    "kj-core-banking": ("gj-db-kj-01", "jj-db-kj-01"),
    "jb-core-banking": ("jj-db-jb-01", "gj-db-jb-01"),
}


_LAB: list[Any] = []


def exec_in_host(host: str, argv: list[str], timeout: float = 120) -> Any:
    """Run a command in a lab host (the lab is loaded once: sampling runs every 0.2 s)."""
    if not _LAB:
        _LAB.append(load_lab("lab"))
    return _LAB[0].exec_in_host(host, argv, timeout=timeout)


def psql(host: str, sql: str) -> str:
    done = exec_in_host(
        host, ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]
    )
    return str(done.stdout).strip()


def load(host: str, stop: threading.Event) -> int:
    """Insert rows at RATE per second until stopped; returns how many were committed."""
    script = (
        f'i=0; while [ $i -lt {SECONDS * RATE} ]; do echo "INSERT INTO dualdc_bench (payload) '
        f"VALUES (repeat('x', 1024));\"; i=$((i+1)); sleep {1 / RATE:.3f}; done"
    )
    exec_in_host(
        host, ["sh", "-c", f"({script}) | runuser -u postgres -- psql -XAtq >/dev/null"], timeout=SECONDS * 4
    )
    stop.set()
    return SECONDS * RATE


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def lag_under_load(primary: str, standby: str) -> tuple[list[float], list[int]]:
    slot = "standby_" + standby.replace("-", "_")
    psql(primary, "CREATE TABLE IF NOT EXISTS dualdc_bench (id bigserial PRIMARY KEY, payload text)")
    stop = threading.Event()
    writer = threading.Thread(target=load, args=(primary, stop), daemon=True)
    writer.start()
    seconds: list[float] = []
    lag_bytes: list[int] = []
    while not stop.is_set():
        row = psql(
            primary,
            "SELECT coalesce(extract(epoch from replay_lag), 0), "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) "
            f"FROM pg_stat_replication WHERE application_name = '{slot}'",
        )
        if row:
            lag_s, lag_b = row.split("|")
            seconds.append(float(lag_s))
            lag_bytes.append(int(float(lag_b)))
        time.sleep(0.2)
    writer.join()
    psql(primary, "DROP TABLE dualdc_bench")
    return seconds, lag_bytes


def build_time(primary: str, standby: str) -> float:
    folder = "/var/lib/postgresql/dualdc-bench-clone"
    conninfo = exec_in_host(
        standby,
        [
            "sh",
            "-c",
            'sed -n "s/^primary_conninfo = \'\\(.*\\) application_name.*/\\1/p" '
            "/etc/postgresql/15/main/conf.d/10-dualdc.conf",
        ],
    ).stdout.strip()
    exec_in_host(standby, ["rm", "-rf", folder])
    started = time.monotonic()
    exec_in_host(
        standby,
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "/usr/lib/postgresql/15/bin/pg_basebackup",
            "-d",
            conninfo,
            "-D",
            folder,
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-password",
        ],
        timeout=900,
    )
    took = time.monotonic() - started
    size = exec_in_host(standby, ["du", "-sh", folder]).stdout.split()[0]
    exec_in_host(standby, ["rm", "-rf", folder])
    print(f"  standby from scratch ({primary} -> {standby}, {size}): {took:.1f} s")
    return took


def main() -> int:
    try:
        for _, standby in DATABASES.values():
            if psql(standby, "SELECT pg_is_in_recovery()") != "t":
                print(
                    f"{standby} is not a standby: deploy the lab's databases first (invoke deploy --env lab)"
                )
                return 3
    except (LabError, OSError) as exc:
        print(
            f"the lab's databases are not running ({exc}): invoke lab.up, then invoke deploy --env lab --yes"
        )
        return 3
    print(
        f"replication lag under a steady write load ({RATE} tx/s of 1 KiB rows for {SECONDS} s per primary):"
    )
    for service, (primary, standby) in DATABASES.items():
        seconds, lag_bytes = lag_under_load(primary, standby)
        print(
            f"  {service} {primary} -> {standby}: {len(seconds)} samples; replay lag median "
            f"{statistics.median(seconds) * 1000:.1f} ms, p99 {percentile(seconds, 0.99) * 1000:.1f} ms; "
            f"bytes median {statistics.median(lag_bytes):.0f}, p99 {percentile(lag_bytes, 0.99):.0f}"
        )
    for primary, standby in DATABASES.values():
        build_time(primary, standby)
    return 0


if __name__ == "__main__":
    sys.exit(main())
