"""Benchmark: ``invoke render --env production`` end to end, in one process.

Timed: loading the topology, running both site stacks and the replication stack under
Pulumi's mock runtime, validating every object offline against the Kubernetes OpenAPI
schema (and the CRD schemas), and writing the YAML files. The first run includes the
one-time costs (imports are outside the timing; schema files are read on first use);
the further runs show the steady state. Printed: wall time per run, objects per stack,
and the best and first figure against the target.

Target on the 2-core reference machine: at most 5 s for production.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from dualdc import render
from dualdc.loader import load_environment

TARGET_SECONDS = 5.0


def run_once(env: str, out: Path) -> tuple[float, list[render.RenderedStack]]:
    started = time.perf_counter()
    topology = load_environment(env)
    stacks = render.render(topology, out_root=out)
    return time.perf_counter() - started, stacks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="production", help="environment to render (default: production)")
    parser.add_argument("--runs", type=int, default=3, help="number of timed runs (default: 3)")
    args = parser.parse_args()
    if not any((Path("inventories") / args.env).glob("*.yaml")):
        print(f"inventories/{args.env} has no topology", file=sys.stderr)
        return 1
    times = []
    with tempfile.TemporaryDirectory(prefix="dualdc-bench-render-") as tmp:
        for i in range(args.runs):
            seconds, stacks = run_once(args.env, Path(tmp) / str(i))
            times.append(seconds)
            invalid = sum(len(s.invalid) for s in stacks)
            detail = ", ".join(f"{s.target.label} {len(s.objects)} objects ({s.seconds:.2f} s)"
                               for s in stacks)
            print(f"run {i + 1}: {seconds:.2f} s  [{detail}]  invalid: {invalid}")
    first, best = times[0], min(times)
    verdict = "within" if first <= TARGET_SECONDS else "OVER"
    median = statistics.median(times)
    print(f"render --env {args.env}: first {first:.2f} s, best {best:.2f} s, median {median:.2f} s "
          f"({verdict} the {TARGET_SECONDS:.0f} s target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
