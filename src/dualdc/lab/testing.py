"""pytest plugin: a running lab for tests that need one (registered in ``tests/conftest.py``).

Use the session fixture ``lab`` in a test marked ``lab``::

    @pytest.mark.lab
    def test_chrony_runs(lab):
        lab.exec_in_host("gj-ntp-01", ["chronyc", "tracking"])

For the whole session the fixture holds the machine-wide lab lock (so another session,
``invoke lab.up`` or ``lab.down`` elsewhere on the machine waits), brings the lab up, and
at the end puts it back as it found it: taken down if it was down, healed (``up``) if it
was up. Subprocesses of the session (``invoke lab.*``, ``ansible``) inherit the lock.
Tests that inject faults must undo them (or call ``lab.up()``) before they end.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest

from dualdc.lab.core import Lab, load_lab
from dualdc.lab.lock import LabLock

ENV = "lab"


def lab_available() -> str | None:
    """Why the lab cannot run here, or None."""
    if sys.platform != "linux":
        return "the lab needs Linux"
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("debootstrap", "nft", "ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (run ./scripts/bootstrap.sh as root)"
    return None


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The running lab twin of ``inventories/lab`` (session-wide, under the lab lock)."""
    reason = lab_available()
    if reason:
        pytest.skip(reason)
    the_lab = load_lab(ENV)
    lock = LabLock(the_lab.cfg.lock, on_wait=lambda msg: sys.stderr.write(f"\n{msg}\n"))
    lock.acquire()
    try:
        was_up = the_lab.status(probe=False).any_up
        the_lab.up()
        yield the_lab
        if was_up:
            the_lab.up()
        else:
            the_lab.down()
    finally:
        lock.release()
