"""Benchmark: the host roles on the 24-host lab twin through dualdc.ansible.

Times, on a lab brought up and converged first:

- ``invoke converge --env lab`` (a converge with nothing to change);
- ``invoke converge --env lab --check`` (the hosts' drift check) with the wrapper's defaults;
- the same check with Ansible's stock settings through the wrapper (forks 5, linear, no
  pipelining), to show what the defaults buy.

Needs root (the lab); holds the machine-wide lab lock throughout. Prints the figures only.
"""

from __future__ import annotations

import sys
import time

from dualdc.ansible import PlaybookRun, run_playbook
from dualdc.lab import LabLock, load_lab
from dualdc.lab.testing import lab_available


def timed(label: str, run: PlaybookRun) -> float:
    t0 = time.monotonic()
    result = run_playbook(run)
    seconds = time.monotonic() - t0
    changed = len(result.changed_tasks)
    print(f"{label}: {seconds:.1f} s (exit {int(result.exit_code())}, {len(result.hosts)} hosts, "
          f"{changed} task(s) changed, {len(result.tasks)} task results)", flush=True)
    return seconds


def main() -> int:
    reason = lab_available()
    if reason:
        print(f"bench_hosts: skipped: {reason}")
        return 0
    lab = load_lab("lab")
    with LabLock(lab.cfg.lock, on_wait=lambda msg: print(msg, file=sys.stderr, flush=True)):
        lab.up()
        timed("first converge (whatever the lab held)", PlaybookRun(env="lab"))
        timed("converge, nothing to change (invoke converge --env lab)", PlaybookRun(env="lab"))
        fast = timed("check (invoke converge --env lab --check)", PlaybookRun(env="lab", check=True))
        stock = timed("check with stock settings (forks 5, linear, no pipelining)",
                      PlaybookRun(env="lab", check=True, forks=5, strategy="linear", pipelining=False))
    print(f"check: defaults {fast:.1f} s vs stock settings {stock:.1f} s = {stock / fast:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
