"""Run the host roles (``playbooks/site.yml``) through ansible-runner: ``dualdc.ansible``.

This package is ``dualdc.ansible``; inside it, ``import ansible`` still means Ansible itself
(absolute imports), so it shadows nothing.

Public API (stable; ``deploy`` and ``drift`` build on it)::

    from dualdc.ansible import PlaybookRun, run_playbook

    result = run_playbook(PlaybookRun(env="lab", site="gwangju", check=True))
    result.exit_code()            # 0 clean, 2 drift / failed task, 3 unreachable or incomplete
    result.hosts["gj-ntp-01"]     # HostSummary(ok, changed, failed, unreachable, skipped, ...)
    result.changed_tasks          # [TaskResult(host, task, role, action, status, diff, target, ...)]
    result.check_mode_skipped     # tasks a check run could not evaluate
    result.artifacts_dir          # .state/<env>/artifacts/<ident>/ (AWX layout)

See :mod:`dualdc.ansible.results` for the shapes and ``docs/roles.md`` for the roles.
"""

from __future__ import annotations

from dualdc.ansible.report import LiveProgress, json_report, text_report
from dualdc.ansible.results import Diff, HostSummary, RunOptions, RunResult, Status, TaskResult
from dualdc.ansible.runner import (
    PlaybookRun,
    RunError,
    artifacts_root,
    recent_runs,
    run_playbook,
)

__all__ = [
    "Diff",
    "HostSummary",
    "LiveProgress",
    "PlaybookRun",
    "RunError",
    "RunOptions",
    "RunResult",
    "Status",
    "TaskResult",
    "artifacts_root",
    "json_report",
    "recent_runs",
    "run_playbook",
    "text_report",
]
