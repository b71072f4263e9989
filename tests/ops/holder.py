"""A process that holds an environment's lock the way ``invoke deploy`` does (for test_run.py).

usage: holder.py STATE_ROOT MODE
  wait      hold the lock inside guarded_run until a signal arrives
  deferred  like wait, but inside deferred_interrupts, polling cancel_requested like ansible-runner
  crash     take the lock, then die without cleaning up (os._exit)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from dualdc.ops.lock import EnvironmentLock
from dualdc.ops.run import Interrupted, deferred_interrupts, guarded_run
from dualdc.reports.header import Outcome

root, mode = Path(sys.argv[1]), sys.argv[2]

if mode == "crash":
    EnvironmentLock("lab", "invoke deploy --env lab", root).acquire()
    print("ready", flush=True)
    os._exit(7)

try:
    with guarded_run("lab", "deploy", "invoke deploy --env lab", ["gwangju", "jeonju"],
                     options={"yes": True}, root=root) as run:
        run.plan = {"hosts": 24}
        if mode == "deferred":
            with deferred_interrupts() as cancelled:
                print("ready", flush=True)
                deadline = time.monotonic() + 30
                while not cancelled() and time.monotonic() < deadline:
                    time.sleep(0.05)
                print("cancel seen" if cancelled() else "timeout", flush=True)
        else:
            print("ready", flush=True)
            time.sleep(30)
        run.finish(Outcome.SUCCESS, 0, "done")
except Interrupted as exc:
    print(f"interrupted {exc.signal_name}", flush=True)
    sys.exit(exc.exit_code)
