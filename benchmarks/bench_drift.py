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

Prints both times and the ratio; the target is a ratio of at least 3.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from dualdc.lab import LabLock, load_lab
from dualdc.lab.testing import lab_available

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = ROOT / "build" / "bench-drift"
TARGET_RATIO = 3.0

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


def run(argv: list[str], **kwargs: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    return time.monotonic() - t0, done


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
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
