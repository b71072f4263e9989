"""Benchmark: how the cost of what a user runs grows with the estate (validate, inventory, render).

For each size (1,000, 2,500, 5,000 and 10,000 hosts by default) the synthetic two-site
topology of ``bench_validate.py`` is written to a temporary folder, and the real commands
run as their own processes, exactly as a user types them:

- ``invoke validate --topology DIR``;
- ``ansible-inventory -i DIR --list --export`` (the inventory as set: group variables once on
  their group, each host's own variables on the host: the output no larger than it needs to
  be), ``ansible-inventory -i DIR --list`` (every host's variables merged, so every value of
  ``all`` or of a group is printed once per host: in this synthetic estate the mgmt networks
  and SSH sources grow with the number of banks, which grows with the number of hosts, so
  this output grows faster than linearly by construction) and ``ansible-inventory -i DIR
  --graph`` (only the inventory's parse: what every ``ansible-playbook`` run pays before its
  first task);
- ``invoke render --topology DIR`` (every cluster's Kubernetes objects, offline), run from a
  scratch folder holding a copy of ``stacks/`` with a replication stack config for the
  synthetic environment.

Printed for each: CPU seconds (user + system of the process and its children, from
``wait4``, as ``/usr/bin/time`` reports them), peak RSS, output size, the load average when it
ran, and per command the growth exponent fitted by least squares on log(CPU) against
log(hosts): 1 is linear, 2 quadratic. Targets: exponent <= 1.15 for each command; at 10,000
hosts validate <= 2 s and inventory <= 5 s, both <= 1 GiB. 20,000 hosts (where the generator's
address plan ends) runs each command only where memory allows: its peak, extrapolated from the
two sizes before it, must fit in 80 % of the memory available then; otherwise the line says
"skipped" with both figures. The exponent is fitted on the sizes that ran.

Then the phases at the largest size up to 10,000 hosts, each timed in CPU seconds inside a
process of its own, the floor marked: for validate, start-up and imports, libyaml's events
read through PyYAML doing nothing with them (the parser alone on the same bytes: the floor),
dualdc's builder over those events, pydantic's validation, the flows' expansion, the rules
and the report; for the inventory, dualdc's part of ``ansible-inventory --graph`` (loading
the topology, building groups and variables) and ansible-core's own (its start-up,
``add_host``/``set_variable``, which walk and tag every value with its origin, and the rest of
the command: the floor). The machine is shared: run it rarely.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_validate import generate

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SIZES = (1_000, 2_500, 5_000, 10_000, 20_000)
COMMANDS = ("validate", "inventory", "inventory-merged", "inventory-parse", "render")
TARGET_EXPONENT = 1.15
MARKER = ROOT / "inventories" / "lab" / "inventory.dualdc.yml"


@dataclass
class Measure:
    command: str
    hosts: int
    cpu: float
    wall: float
    rss_mib: float
    output_mib: float
    load: float
    code: int


def _run(command: str, args: list[str], hosts: int, cwd: Path) -> Measure:
    """Run one command as a process of its own; CPU and peak RSS from its rusage."""
    env = {**os.environ, "ANSIBLE_DEPRECATION_WARNINGS": "False", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        size = out.tell()
    if proc.returncode:
        print(f"  {command} at {hosts} hosts exited {proc.returncode}: {err.decode(errors='replace')[-600:]}",
              file=sys.stderr)
    return Measure(command, hosts, usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024,
                   size / 2**20, load, proc.returncode)


def _available_mib() -> float:
    """MemAvailable of /proc/meminfo, in MiB."""
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _expected_peak(points: list[Measure], hosts: int) -> float | None:
    """The peak RSS at ``hosts`` extrapolated from the last two sizes (None before two ran)."""
    if len(points) < 2:
        return None
    a, b = points[-2], points[-1]
    growth = math.log(b.rss_mib / a.rss_mib) / math.log(b.hosts / a.hosts) if b.rss_mib > a.rss_mib else 1.0
    return float(b.rss_mib * (hosts / b.hosts) ** max(growth, 1.0))


def _exponent(points: list[Measure]) -> float:
    """Least-squares slope of log(cpu) on log(hosts)."""
    xs = [math.log(p.hosts) for p in points]
    ys = [math.log(p.cpu) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def _scratch_stacks(work: Path) -> Path:
    """A working folder for ``invoke render``: stacks/ with a replication config for 'bench'."""
    cwd = work / "cwd"
    shutil.copytree(ROOT / "stacks", cwd / "stacks", ignore=shutil.ignore_patterns("__pycache__"))
    production = (ROOT / "stacks" / "replication" / "Pulumi.production.yaml").read_text(encoding="utf-8")
    (cwd / "stacks" / "replication" / "Pulumi.bench.yaml").write_text(
        production.replace("environment: production", "environment: bench"), encoding="utf-8")
    return cwd


#: Run in a process of its own, on the topology folder in argv[1]: each validate phase's CPU seconds, as JSON.
_VALIDATE_PHASES = r"""
import json, sys, time
cpu = time.process_time
t0 = cpu()
import yaml
from dualdc import cli, flows, loader
from dualdc.model import Severity, Topology
from dualdc.policy import run_policy
from dualdc.reports import validate as reports
out = {"Python start-up and imports (PyYAML, pydantic, the model)": cpu() - t0}
files = loader.topology_files(__import__("pathlib").Path(sys.argv[1]))
raw = [(f.name, f.read_bytes()) for f in files]
with loader.gc_paused():
    t = cpu()
    for _, data in raw:
        events = yaml.CSafeLoader(data)
        while events.get_event() is not None:
            pass
        events.dispose()
    out["libyaml events (PyYAML, nothing built)"] = cpu() - t
    t = cpu()
    docs = [(name, loader.parse_yaml(data, name)) for name, data in raw]
    out["dualdc's builder over those events"] = cpu() - t - out["libyaml events (PyYAML, nothing built)"]
    merged, _ = loader._merge(docs)
    t = cpu()
    topology = Topology.model_validate(merged)
    out["pydantic validation"] = cpu() - t
    t = cpu()
    loader._attach_sources(topology, merged)
    flows.connections(topology)
    out["flows expanded"] = cpu() - t
    t = cpu()
    report = run_policy(topology)
    out["the rules"] = cpu() - t
    t = cpu()
    reports.render(report, "text", Severity.ERROR, root=None)
    out["the text report"] = cpu() - t
print(json.dumps(out))
"""

#: ``ansible-inventory --graph`` in this process, dualdc's phases timed apart from ansible-core's.
_INVENTORY_PHASES = r"""
import contextlib, io, json, sys, time
cpu = time.process_time
t0 = cpu()
from ansible.cli.inventory import InventoryCLI
import dualdc.inventory, dualdc.loader
spent = {"dualdc: loading the topology": 0.0, "dualdc: groups and variables": 0.0}
def timed(module, name, label):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        t = cpu()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += cpu() - t
    setattr(module, name, wrapper)
timed(dualdc.loader, "load_topology", "dualdc: loading the topology")
timed(dualdc.inventory, "layers", "dualdc: groups and variables")
with contextlib.redirect_stdout(io.StringIO()):
    try:
        InventoryCLI.cli_executor(["ansible-inventory", "-i", sys.argv[1], "--graph"])
    except SystemExit:
        pass
total = cpu() - t0
spent[sys.argv[2]] = total - sum(spent.values())
print(json.dumps(spent))
"""


#: The names of the floors: the YAML parser's events alone, ansible-core's share of the parse.
_YAML_EVENTS = "libyaml events (PyYAML, nothing built)"
_ANSIBLE_CORE = "ansible-core (start-up, add_host, set_variable's tagging, the graph)"


def _phases(code: str, folder: Path, cwd: Path) -> dict[str, float]:
    env = {**os.environ, "ANSIBLE_DEPRECATION_WARNINGS": "False", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    done = subprocess.run([sys.executable, "-c", code, str(folder), _ANSIBLE_CORE], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode:
        print(f"  phases failed: {done.stderr[-600:]}", file=sys.stderr)
        return {}
    phases: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return phases


def _print_floors(folder: Path, hosts: int, cwd: Path, measured: dict[str, list[Measure]]) -> None:
    """The phases of validate and of the inventory's parse at ``hosts``, floors marked."""
    whole = {m.command: m.cpu for ms in measured.values() for m in ms if m.hosts == hosts}
    for title, code, floor_keys in (("validate", _VALIDATE_PHASES, (_YAML_EVENTS,)),
                                    ("inventory-parse", _INVENTORY_PHASES, (_ANSIBLE_CORE,))):
        phases = _phases(code, folder, cwd)
        if not phases:
            continue
        print(f"{title} at {hosts} hosts, by phase (CPU s, one process; whole command "
              f"{whole.get(title, float('nan')):.2f} s):")
        for name, seconds in phases.items():
            mark = "  (floor)" if name in floor_keys else ""
            print(f"  {name:<72} {seconds:6.2f}{mark}")
        floor = sum(v for k, v in phases.items() if k in floor_keys)
        print(f"  {'floor: what no change of dualdc removes':<72} {floor:6.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="host counts, comma-separated (default: 1000,2500,5000,10000,20000)")
    parser.add_argument("--only", default=",".join(COMMANDS),
                        help=f"commands to time, comma-separated (default: {','.join(COMMANDS)})")
    parser.add_argument("--no-floors", action="store_true", help="skip the phases and floors at 10,000 hosts")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    commands = [c for c in args.only.split(",") if c]
    if unknown := set(commands) - set(COMMANDS):
        parser.error(f"unknown command(s) {', '.join(sorted(unknown))}; known: {', '.join(COMMANDS)}")
    invoke = [str(BIN / "invoke"), "--search-root", str(ROOT)]
    results: dict[str, list[Measure]] = {c: [] for c in commands}
    print(f"{'command':<16} {'hosts':>6} {'CPU s':>8} {'wall s':>8} {'peak MiB':>9} {'out MiB':>8} "
          f"{'load':>5}")
    with tempfile.TemporaryDirectory(prefix="dualdc-bench-scale-") as tmp:
        work = Path(tmp)
        cwd = _scratch_stacks(work)
        for hosts in sizes:
            folder = work / f"t{hosts}"
            folder.mkdir()
            generate(folder, hosts)
            shutil.copy(MARKER, folder / MARKER.name)
            runs = {
                "validate": [*invoke, "validate", "--topology", str(folder)],
                "inventory": [str(BIN / "ansible-inventory"), "-i", str(folder), "--list", "--export"],
                "inventory-merged": [str(BIN / "ansible-inventory"), "-i", str(folder), "--list"],
                "inventory-parse": [str(BIN / "ansible-inventory"), "-i", str(folder), "--graph"],
                "render": [*invoke, "render", "--topology", str(folder),
                           "--out", str(work / f"render{hosts}")],
            }
            for command in commands:
                expected = _expected_peak(results[command], hosts)
                available = _available_mib()
                if expected is not None and expected > 0.8 * available:
                    print(f"{command:<16} {hosts:>6}  skipped: expected peak {expected:,.0f} MiB, "
                          f"{available:,.0f} MiB available", flush=True)
                    continue
                m = _run(command, runs[command], hosts, cwd)
                results[command].append(m)
                failed = "" if m.code == 0 else f"  (exit {m.code})"
                print(f"{command:<16} {hosts:>6} {m.cpu:8.2f} {m.wall:8.2f} {m.rss_mib:9.0f} "
                      f"{m.output_mib:8.1f} {m.load:5.1f}{failed}", flush=True)
            shutil.rmtree(work / f"render{hosts}", ignore_errors=True)
            if hosts == max((h for h in sizes if h <= 10_000), default=None) and not args.no_floors:
                _print_floors(folder, hosts, cwd, results)
            shutil.rmtree(folder)
    if len(sizes) >= 2:
        print(f"growth exponent of CPU seconds in the number of hosts (target <= {TARGET_EXPONENT}):")
        for command, points in results.items():
            if len(points) < 2:
                continue
            k = _exponent(points)
            verdict = "within" if k <= TARGET_EXPONENT else "OVER"
            print(f"  {command:<16} {k:5.2f}  ({verdict})")
    return 1 if any(m.code for ms in results.values() for m in ms) else 0


if __name__ == "__main__":
    sys.exit(main())
