"""Operations: what ``invoke deploy`` and ``invoke drift`` do, and the guard rails around them.

- :mod:`dualdc.ops.lock`: one deploy or drift run per environment at a time.
- :mod:`dualdc.ops.audit`: every run appends one JSON line to ``.state/<env>/audit.jsonl``.
- :mod:`dualdc.ops.run`: a run = lock + signal handling + audit record, as one context manager.
- :mod:`dualdc.ops.ack`: the drift-acknowledgement ledger ``inventories/<env>/drift-ack.yaml``.
- :mod:`dualdc.ops.drift` and :mod:`dualdc.ops.deploy`: the orchestration across the layers.
"""

from __future__ import annotations
