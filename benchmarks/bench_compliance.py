"""Benchmark: ``invoke compliance`` against ``invoke drift`` on the lab twin (issue 18's target).

On a lab brought up and converged first, times the compliance run over every lab host (the
collector on each host: files, ``sshd -T``, a walk of the root file system, ``aide --check``)
and the drift run (the model, the hosts in check mode, the lab probe), as an engineer types
them. Target: compliance takes no longer than drift. Needs root (the lab); holds the lab lock
while the commands run (they take it themselves). Prints the figures only.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from dualdc.lab.testing import lab_available
from dualdc.loader import load_environment

ROOT = Path(__file__).resolve().parents[1]


def timed(label: str, *args: str) -> float:
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    seconds = time.monotonic() - t0
    print(f"{label}: {seconds:.1f} s (exit {done.returncode})", flush=True)
    return seconds


def main() -> int:
    reason = lab_available()
    if reason:
        print(f"bench_compliance: skipped: {reason}")
        return 0
    hosts = len(load_environment("lab").hosts)
    timed("converge first (invoke converge --env lab)", "converge", "--env", "lab")
    compliance = timed(f"invoke compliance --env lab ({hosts} hosts)", "compliance", "--env", "lab",
                       "--format", "json", "--output", str(ROOT / "build" / "bench-compliance.json"))
    drift = timed("invoke drift --env lab", "drift", "--env", "lab", "--format", "json",
                  "--output", str(ROOT / "build" / "bench-drift.json"))
    verdict = "within" if compliance <= drift else "OVER"
    print(f"compliance {compliance:.1f} s vs drift {drift:.1f} s: {verdict} the target (compliance <= drift)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
