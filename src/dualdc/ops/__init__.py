"""Operations: what ``invoke deploy`` and ``invoke drift`` do, and the guard rails around them.

- :mod:`dualdc.ops.lock`: one deploy or drift run per environment at a time.
- :mod:`dualdc.ops.audit`: every run appends one JSON line to ``.state/<env>/audit.jsonl``.
- :mod:`dualdc.ops.run`: a run = lock + signal handling + audit record, as one context manager.
- :mod:`dualdc.ops.ack`: the drift-acknowledgement ledger ``inventories/<env>/drift-ack.yaml``.
- :mod:`dualdc.ops.drift` and :mod:`dualdc.ops.deploy`: the orchestration across the layers.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Per-environment state that is never committed (gitignored).
STATE_ROOT = Path(".state")
#: Where the lock and the audit log live instead of ``.state`` (e.g. a volume the operations hosts share).
STATE_ENV = "DUALDC_OPS_STATE_DIR"


def state_dir(env: str, root: Path | None = None) -> Path:
    """``.state/<env>/`` (or ``$DUALDC_OPS_STATE_DIR/<env>/``); the loader validated the name."""
    if root is None:
        override = os.environ.get(STATE_ENV)
        root = Path(override) if override else STATE_ROOT
    return root / env
