"""Benchmark: the 24-host lab twin — cold up (with debootstrap), warm up, memory of the running lab.

Needs root (it builds the lab). It holds the machine-wide lab lock throughout, takes the
regular lab down first and puts it back as it was at the end.

- **cold up**: the base-image cache and the lab state point at fresh temporary
  directories (``DUALDC_LAB_CACHE_DIR``, ``DUALDC_LAB_STATE_DIR``), so ``lab.up`` runs
  debootstrap (packages from the machine's apt mirror) and builds every host from nothing.
- **warm up, fresh hosts**: the image is cached; state (keys, overlay uppers) is new.
- **warm up, existing hosts**: ``lab.down`` then ``lab.up`` again (the usual restart).
- **no-op up**: ``lab.up`` on a running lab (idempotence: nothing to change).
- **memory**: proportional set size (PSS, from ``/proc/<pid>/smaps_rollup``) of every lab
  process — hosts' inits and daemons, the ``unshare`` wrappers — plus what the hosts keep
  in tmpfs (``/run``, ``/dev``, ``/dev/shm``); kernel objects (namespaces, veths, bridges)
  are not counted there and are shown separately as the drop of MemAvailable, which other
  work on the machine makes noisy.
- **verify**: one full ``lab.verify`` run.

Targets on the 2-core reference machine: cold ≤ 180 s, warm ≤ 20 s, memory ≤ 2 GiB.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dualdc.lab import Lab, LabLock, load_lab, system
from dualdc.lab import verify as lab_verify

GIB = 1024**3


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def lab_memory(lab: Lab) -> tuple[int, int, int]:
    """(PSS of lab processes in KiB, tmpfs in the hosts in KiB, number of processes)."""
    inodes = {i for i in (system.netns_inode(n) for n in lab.plan.namespaces()) if i is not None}
    pids = set(system.processes_in("net", inodes))
    tmpfs = 0
    for record in lab.state.data["hosts"].values():
        for key in ("init", "wrapper"):
            proc = system.Proc.from_json(record.get(key))
            if proc is not None and proc.alive():
                pids.add(proc.pid)
        init = system.Proc.from_json(record.get("init"))
        if init is not None and init.alive():
            for mount in ("run", "dev", "dev/shm"):
                try:
                    st = os.statvfs(f"/proc/{init.pid}/root/{mount}")
                except OSError:
                    continue
                tmpfs += (st.f_blocks - st.f_bfree) * st.f_frsize // 1024
    return sum(pss_kib(p) for p in pids), tmpfs, len(pids)


def timed(label: str, fn: object) -> float:
    started = time.monotonic()
    fn()  # type: ignore[operator]
    seconds = time.monotonic() - started
    print(f"{label:<34} {seconds:7.1f} s", flush=True)
    return seconds


def main() -> int:
    if os.geteuid() != 0:
        print("bench_lab: needs root (it builds the lab twin); skipped")
        return 0
    regular = load_lab("lab")
    with LabLock(regular.cfg.lock, on_wait=lambda m: print(m, file=sys.stderr)):
        was_up = regular.status(probe=False).any_up
        regular.down()
        tmp = Path(tempfile.mkdtemp(prefix="dualdc-bench-lab-", dir="/var/tmp"))
        saved = {k: os.environ.get(k) for k in ("DUALDC_LAB_CACHE_DIR", "DUALDC_LAB_STATE_DIR")}
        os.environ["DUALDC_LAB_CACHE_DIR"] = str(tmp / "cache")
        os.environ["DUALDC_LAB_STATE_DIR"] = str(tmp / "state")
        current: Lab | None = None
        try:
            lab = current = load_lab("lab")
            assert lab.cfg.cache == (tmp / "cache").resolve()
            cold = timed("cold lab.up (with debootstrap)", lab.up)
            avail_up = mem_available_kib()
            pss, tmpfs, nprocs = lab_memory(lab)
            report = lab_verify.run(lab)
            print(f"{'lab.verify':<34} {report.seconds:7.1f} s   ({len(report.results)} probes, "
                  f"{len(report.unexpected)} unexpected)")
            lab.down()
            avail_down = mem_available_kib()
            os.environ["DUALDC_LAB_STATE_DIR"] = str(tmp / "state2")
            fresh = current = load_lab("lab")
            warm_fresh = timed("warm lab.up (cached image, new hosts)", fresh.up)
            fresh.down()
            warm = timed("warm lab.up (existing hosts)", fresh.up)
            noop = timed("lab.up again (nothing to change)", fresh.up)
            fresh.down()
            current = None
        finally:
            if current is not None:  # interrupted: take down what the temporary state made
                current.down()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            shutil.rmtree(tmp, ignore_errors=True)
            if was_up:
                regular.up()
    total = (pss + tmpfs) * 1024
    print(f"{'memory: lab processes (PSS)':<34} {pss / 1024:7.1f} MiB ({nprocs} processes)")
    print(f"{'memory: hosts tmpfs':<34} {tmpfs / 1024:7.1f} MiB")
    print(f"{'memory: total':<34} {total / GIB:7.3f} GiB   (target <= 2 GiB)")
    drop = (avail_down - avail_up) / 1024
    print(f"{'MemAvailable drop while up':<34} {drop:7.1f} MiB (incl. kernel objects; noisy)")
    slowest = max(warm, warm_fresh)
    print(f"targets: cold {cold:.0f}s <= 180s: {'ok' if cold <= 180 else 'MISSED'}; "
          f"warm {slowest:.1f}s <= 20s: {'ok' if slowest <= 20 else 'MISSED'}; "
          f"memory {total / GIB:.2f} GiB <= 2 GiB: {'ok' if total <= 2 * GIB else 'MISSED'}; "
          f"no-op up {noop:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
