"""Benchmark: DR drills on the lab twin, every host database, with the figures issue 17 asks for.

Needs a lab twin whose host databases are deployed (``invoke lab.up`` then ``invoke deploy
--env lab --yes``); it says so and exits 3 otherwise. Each drill leaves the lab as it found it
(faults healed, failback done, primaries switched back to where the model says).

- ``dr.drill --scenario planned --all``: the planned switchover time per service (fence to the
  first acknowledged commit at the new primary) with its lost commits (must be 0);
- ``dr.drill --scenario site-down --all``: the site-down RTO per service (fault to the first
  acknowledged commit at the new primary; target 60 s on the lab, against the 3-hour limit),
  the acknowledged commits an asynchronous pair lost and their window (the RPO window under the
  synthetic load), and the failback time (rebuilding the old primary as a standby);
- ``dr.restore-test``: the time to verify, restore and compare each database's latest backup
  (an incremental backup is taken first, so it holds the drills' tables); a failed check is
  printed with its detail.

The evidence records go to a temporary folder; the figures are printed as one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from dualdc.lab import load_lab
from dualdc.lab.config import ssh_dir
from dualdc.loader import load_environment

ROOT = Path(__file__).resolve().parents[1]


def invoke(folder: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DUALDC_EVIDENCE_DIR": folder}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=3600, check=False)


def records(folder: str, pattern: str) -> list[dict[str, Any]]:
    found = sorted((Path(folder) / "lab" / "dr").glob(pattern))
    return [json.loads(p.read_text(encoding="utf-8")) for p in found]


def main() -> int:
    if not (ssh_dir("lab") / "config").is_file():  # what lab.up writes, wherever the state lives
        print("bench_dr: the lab twin is not up (invoke lab.up, then invoke deploy --env lab --yes)",
              file=sys.stderr)
        return 3
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dr-") as folder:
        for scenario in ("planned", "site-down"):
            done = invoke(folder, "dr.drill", "--env", "lab", "--scenario", scenario, "--all")
            sys.stderr.write(done.stderr[-2000:])
            for rec in records(folder, f"*-drill-{scenario}.json"):
                for m in rec["measures"]:
                    key = f"{scenario} {m['service']}"
                    figures[key] = {"rto_s": m["rto_seconds"], "lost_commits": m["rpo_lost_commits"],
                                    "loss_window_s": m["rpo_window_seconds"], "met": m["met"]}
                for p in rec["phases"]:
                    if p["name"].startswith(("failback ", "switch back ")):
                        figures.setdefault(f"{scenario} phases", {})[p["name"]] = p["seconds"]
                figures[f"{scenario} passed"] = rec["passed"]
            figures[f"{scenario} exit"] = done.returncode
        # a backup that holds the drills' tables, as the scheduler's next one would (the latest
        # one is the deploy's, from before the drills created them)
        topology = load_environment("lab")
        lab = load_lab("lab")
        for svc in topology.host_databases():
            repo = topology.repository_host(svc)
            if repo is not None:
                lab.exec_in_host(repo.name, ["runuser", "-u", "postgres", "--", "pgbackrest",
                                             f"--stanza={svc.name}", "--type=incr", "backup"], timeout=600)
        done = invoke(folder, "dr.restore-test", "--env", "lab")
        if done.returncode:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-2000:])
        for rec in records(folder, "*-restore-test.json"):
            for m in rec["measures"]:
                figures[f"restore-test {m['service']}"] = {"seconds": m["seconds"], "passed": m["met"]}
            for check in rec["checks"]:
                if not check["passed"]:
                    figures.setdefault("restore-test failed checks", []).append(
                        f"{check['service']}: {check['name']}: {check['detail']}")
        figures["restore-test exit"] = done.returncode
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
