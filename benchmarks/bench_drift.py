"""Benchmark: `invoke drift` over the 24-host lab twin vs stock `ansible-playbook --check --diff`.

Stock is `ansible-playbook -i inventories/lab --check --diff playbooks/site.yml` from the repository
root with Ansible's defaults (forks 5, the linear strategy, no pipelining: ansible.cfg sets none of
them but pipelining=False). `invoke drift` runs the same playbook through dualdc.ansible with forks
for every host, one run per site at the same time, and the dualdc_free strategy (the free strategy
over Mitogen's persistent interpreters, with the controller's plugin caches warmed before workers
fork); it also runs the model layer, renders the stacks and probes the lab's reachability.

Before timing, the lab is brought up and converged, then a few hosts are tampered with; both runs
must report the identical set of drifted (host, task) pairs. Afterwards the tampered hosts are
converged back. Needs root (the lab); holds the machine-wide lab lock throughout.

Prints both times and the ratio; the target is a ratio of at least 3. Then the controller's
side of the check-mode run: the CPU seconds of `invoke drift` and its children (from `wait4`),
per host and per task result (counted in the runs' job events), and the arithmetic for a nightly
drift of 10,000 hosts within one hour: cores, controllers of 2 cores, AWX execution nodes of 4.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dualdc.ansible.runner import recent_runs
from dualdc.lab import LabLock, load_lab
from dualdc.lab.testing import lab_available

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = ROOT / "build" / "bench-drift"
TARGET_RATIO = 3.0
#: The estate the controller arithmetic extrapolates to, and the share of each core a nightly run may use.
SCALE_HOSTS = 10_000
CORE_USE = 0.8
RESULT_EVENTS = {"runner_on_ok", "runner_on_skipped", "runner_on_failed", "runner_on_unreachable"}

#: (host, shell command run inside it) — each changes something a role manages.
TAMPER = [
    ("gj-log-01", "echo 'PermitUserEnvironment yes' >> /etc/ssh/sshd_config"),
    ("jj-ntp-01", "echo 'server 192.0.2.123 iburst' >> /etc/chrony/chrony.conf"),
    ("gj-dmz-wk-01", "echo 'Welcome, friend.' > /etc/issue"),
    ("jj-db-jb-01", "echo 'Storage=volatile' >> /etc/systemd/journald.conf.d/50-dualdc.conf"),
]

TASK_HEADER = re.compile(r"^(TASK|RUNNING HANDLER) \[(.+?)\] \*+")
CHANGED = re.compile(r"^changed: \[([^\]]+)\]")


def stock_pairs(output: str) -> set[tuple[str, str]]:
    """(host, task) pairs reported 'changed' by the default callback (handlers left out, as drift does)."""
    pairs: set[tuple[str, str]] = set()
    task: str | None = None
    for line in output.splitlines():
        header = TASK_HEADER.match(line)
        if header:
            task = header.group(2) if header.group(1) == "TASK" else None
            continue
        changed = CHANGED.match(line)
        if changed and task is not None:
            pairs.add((changed.group(1).split(" -> ")[0], task))
    return pairs


def drift_pairs(report: dict[str, object]) -> set[tuple[str, str]]:
    pairs = set()
    for layer in report["layers"]:  # type: ignore[attr-defined]
        if layer["layer"] == "hosts":
            for item in layer["items"]:
                pairs.add((item["host"], item["task"]))
    return pairs


def stock_env() -> dict[str, str]:
    """The caller's environment without any ANSIBLE_* override: Ansible's defaults and ansible.cfg only."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}


#: CPU seconds (user + system) of the last command :func:`run` ran, with its waited-for children.
LAST_CPU: list[float] = [0.0]


def run(argv: list[str], **kwargs: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` from the repository root; its wall time, and its CPU seconds in LAST_CPU."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=err, **kwargs)  # type: ignore[call-overload]
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(argv, proc.returncode, out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    return time.monotonic() - t0, done


def task_results(since: float) -> dict[str, int]:
    """Task results per host in the check-mode runs (artifacts) that started after ``since``."""
    found: dict[str, int] = {}
    for run_dir in recent_runs("lab", ROOT):
        if "-check-" not in run_dir.name or run_dir.stat().st_mtime < since:
            continue
        for event_file in (run_dir / "job_events").glob("*.json"):
            event = json.loads(event_file.read_text(encoding="utf-8"))
            host = event.get("event_data", {}).get("host")
            if host and event.get("event") in RESULT_EVENTS:
                found[host] = found.get(host, 0) + 1
    return found


def print_controller_cost(cpu: float, results: dict[str, int]) -> None:
    """The controller's CPU per host and task, and what a nightly drift of 10,000 hosts needs."""
    hosts = len(results)
    tasks = sum(results.values()) / hosts
    per_host = cpu / hosts
    print(f"controller CPU of invoke drift: {cpu:.1f} s (user + system of it and its children: "
          "ansible-playbook, its workers, ssh; the model and stacks layers included, so an upper bound)")
    print(f"  per host: {cpu:.1f} / {hosts} = {per_host:.2f} s; per host and task: {per_host:.2f} / "
          f"{tasks:.1f} task results a host = {per_host / tasks:.3f} s")
    total = per_host * SCALE_HOSTS
    cores = total / (3600 * CORE_USE)
    print(f"  at {SCALE_HOSTS:,} hosts: {total:,.0f} CPU s; within one hour at {CORE_USE:.0%} of each core: "
          f"{cores:.1f} cores = {math.ceil(cores / 2)} controllers of 2 cores or "
          f"{math.ceil(cores / 4)} AWX execution nodes of 4 cores")


def main() -> int:
    reason = lab_available()
    if reason:
        print(f"bench_drift: skipped: {reason}")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    lab = load_lab("lab")
    lock = LabLock(lab.cfg.lock, on_wait=lambda msg: print(msg, file=sys.stderr, flush=True))
    lock.acquire()
    try:
        print("lab: up", flush=True)
        lab.up()
        print("lab: converging every host (the baseline)", flush=True)
        seconds, done = run([str(BIN / "invoke"), "converge", "--env", "lab"])
        print(f"  converge: exit {done.returncode} in {seconds:.0f} s", flush=True)
        for host, command in TAMPER:
            lab.exec_in_host(host, ["sh", "-c", command])
        print(f"tampered: {', '.join(h for h, _ in TAMPER)}", flush=True)
        try:
            report_file = OUT / "drift.json"
            started = time.time()
            ours, done = run(
                [
                    str(BIN / "invoke"),
                    "drift",
                    "--env",
                    "lab",
                    "--format",
                    "json",
                    "--output",
                    str(report_file),
                ]
            )
            if done.returncode not in (0, 2, 3) or not report_file.exists():
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            report = json.loads(report_file.read_text(encoding="utf-8"))
            print(f"invoke drift: {ours:.1f} s (exit {done.returncode})", flush=True)
            drift_cpu, results = LAST_CPU[0], task_results(started)
            stock, done = run(
                [
                    str(BIN / "ansible-playbook"),
                    "-i",
                    "inventories/lab",
                    "--check",
                    "--diff",
                    "playbooks/site.yml",
                ],
                env=stock_env(),
            )
            (OUT / "stock.out").write_text(done.stdout, encoding="utf-8")
            print(
                f"stock ansible-playbook --check --diff: {stock:.1f} s (exit {done.returncode})", flush=True
            )
        finally:
            hosts = ",".join(h for h, _ in TAMPER)
            seconds, fixed = run([str(BIN / "invoke"), "converge", "--env", "lab", "--limit", hosts])
            print(f"restored {hosts}: exit {fixed.returncode} in {seconds:.0f} s", flush=True)
    finally:
        lock.release()

    mine, theirs = drift_pairs(report), stock_pairs(done.stdout)
    tampered = {h for h, _ in TAMPER}
    print(
        f"drifted (host, task) pairs: invoke drift {len(mine)}, stock {len(theirs)}; "
        f"hosts: {', '.join(sorted({h for h, _ in mine}))}"
    )
    if mine != theirs:
        for host, task in sorted(mine - theirs):
            print(f"  only in invoke drift: {host}: {task}")
        for host, task in sorted(theirs - mine):
            print(f"  only in stock: {host}: {task}")
    same = mine == theirs and bool(mine) and {h for h, _ in mine} >= tampered
    ratio = stock / ours
    print(
        f"stock {stock:.1f} s / invoke drift {ours:.1f} s = ratio {ratio:.2f} "
        f"(target >= {TARGET_RATIO:.0f}); identical drift: {'yes' if same else 'NO'}"
    )
    if results:
        print_controller_cost(drift_cpu, results)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
