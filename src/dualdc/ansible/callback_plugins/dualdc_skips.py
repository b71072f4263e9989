"""Ansible callback: record what ansible-runner's events leave out, for :mod:`dualdc.ansible`.

- ansible-runner's events leave the result out of a skipped task's event, so the reason a
  task was skipped (a false ``when``, or check mode) is lost there.
- For a ``no_log`` task, ansible-runner replaces the whole result by ``{"censored": …}``
  once ansible-core (2.19 on) keeps ``_ansible_no_log`` in the result it hands callbacks,
  so whether the task changed (in check mode: would change, i.e. drift) is lost too.

This notification callback writes one JSON line per skipped task and host, and one per
censored result with only its ``changed`` flag, to the file named by ``DUALDC_SKIPS_FILE``
(the run's artifacts directory); :mod:`dualdc.ansible.results` joins them to the events by
task uuid and host. Only names, reasons and that flag are written, never a task's arguments
or results. It is enabled by the wrapper only.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from ansible.playbook.handler import Handler
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: dualdc_skips
type: notification
short_description: Record why tasks were skipped (for dualdc's ansible-runner wrapper)
description:
  - Writes one JSON line per skipped task and host to the file in DUALDC_SKIPS_FILE.
requirements:
  - DUALDC_SKIPS_FILE set in the environment (the wrapper sets it)
"""


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "dualdc_skips"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("DUALDC_SKIPS_FILE", "")
        self._lock = threading.Lock()

    def _write(self, record: dict[str, Any]) -> None:
        if not self._path:
            return
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock, open(self._path, "a", encoding="utf-8") as handle:
            handle.write(line)

    def _record(self, result: Any) -> None:
        res = result._result if isinstance(result._result, dict) else {}
        parts = [res] + [r for r in res.get("results") or [] if isinstance(r, dict)]
        reasons = " ".join(str(part.get(k, "")) for part in parts for k in ("msg", "false_condition"))
        record = {
            "host": result._host.get_name(),
            "task_uuid": str(result._task._uuid),
            "task": result._task.get_name(),
            "skip_reason": str(res.get("skip_reason", "")),
            "false_condition": next((str(p["false_condition"]) for p in parts if p.get("false_condition")),
                                    ""),
            "msg": str(res.get("msg", ""))[:500],
            "handler": isinstance(result._task, Handler),
            # Whether check mode made the task skip.
            "check_mode": "check mode" in reasons or "ansible_check_mode" in reasons,
            # no_log hides why a task was skipped (Ansible passes callbacks a censored result).
            "censored": "censored" in res,
        }
        self._write(record)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result)

    def v2_runner_on_ok(self, result: Any) -> None:
        res = result._result if isinstance(result._result, dict) else {}
        if "censored" not in res:
            return
        self._write({
            "host": result._host.get_name(),
            "task_uuid": str(result._task._uuid),
            "task": result._task.get_name(),
            "kind": "censored",
            "changed": bool(res.get("changed")),
        })
