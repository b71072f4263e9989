"""The lab twin: both sites' hosts and segments on one Linux machine (``invoke lab.*``).

Public API for other areas (roles tests, drift tests):

- :func:`exec_in_host` — run a command inside a lab host (its namespaces, chrooted into
  its root), without SSH: ``exec_in_host("gj-ntp-01", ["chronyc", "tracking"])``;
- :class:`Lab` (``Lab(topology)``) — ``up()``, ``down()``, ``status()``, faults;
- :class:`LabLock` — the machine-wide lock every lab user holds while it changes the lab;
- :mod:`dualdc.lab.testing` — a pytest plugin with a session fixture ``lab`` giving a
  running lab.

See ``docs/lab.md``.
"""

from __future__ import annotations

from dualdc.lab.config import LabConfig, known_hosts_path, private_key_path, state_dir
from dualdc.lab.core import Lab, LabStatus, Progress, UpReport, exec_in_host, load_lab
from dualdc.lab.errors import LabError
from dualdc.lab.lock import LabLock

__all__ = [
    "Lab",
    "LabConfig",
    "LabError",
    "LabLock",
    "LabStatus",
    "Progress",
    "UpReport",
    "exec_in_host",
    "known_hosts_path",
    "load_lab",
    "private_key_path",
    "state_dir",
]
