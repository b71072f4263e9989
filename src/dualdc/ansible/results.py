"""Structured results of a playbook run, collected from ansible-runner's events.

The shape is a contract other code reads (``invoke converge``, ``deploy`` and ``drift``);
keep it stable and extend it only with new fields:

- :class:`RunResult` — one run: ``rc``, ``status``, ``hosts`` (name → :class:`HostSummary`),
  ``tasks`` (a list of :class:`TaskResult`), ``artifacts_dir``, timing and the options used;
- :class:`HostSummary` — Ansible's recap for one host: ok, changed, failed, unreachable,
  skipped, rescued, ignored;
- :class:`TaskResult` — one task on one host: status (``ok``, ``changed``, ``failed``,
  ``unreachable``, ``skipped``), the diffs (:class:`Diff`), the message, what it acted on
  (``target``: a file or service name) and whether it was skipped because of check mode
  (``check_mode_skipped``: the drift report lists these as not evaluated).

No secret reaches these objects: Ansible censors every result of a ``no_log`` task before
the events are written (such tasks keep their name and status only), task arguments are
never read, and everything is passed through :func:`dualdc.base.redact.scrub` on output.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dualdc.base.exitcodes import ExitCode, decide

#: A diff longer than this is cut (the full text stays in the run's artifacts).
MAX_DIFF_CHARS = 20_000
MAX_MSG_CHARS = 2_000
SERVICE_ACTIONS = frozenset({"service", "sysvinit", "systemd", "systemd_service"})


class Status(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Diff:
    """One difference a task found: what it is about, and a unified diff (live → model)."""

    before_header: str
    after_header: str
    unified: str

    @classmethod
    def from_ansible(cls, raw: dict[str, Any], target: str | None) -> Diff | None:
        """A diff from a module's ``diff`` (before/after, or ``prepared`` text)."""
        if not isinstance(raw, dict):
            return None
        name = target or ""
        before_header = str(raw.get("before_header") or name or "before")
        after_header = str(raw.get("after_header") or name or "after")
        if "prepared" in raw:
            text = str(raw["prepared"])
        elif "before" in raw or "after" in raw:
            before, after = _text(raw.get("before")), _text(raw.get("after"))
            if before == after:
                return None
            text = "".join(difflib.unified_diff(
                before.splitlines(keepends=True), after.splitlines(keepends=True),
                fromfile=before_header, tofile=after_header))
        else:
            return None
        if len(text) > MAX_DIFF_CHARS:
            text = text[:MAX_DIFF_CHARS] + "\n[... diff cut; the full text is in the run's artifacts]\n"
        return cls(before_header, after_header, text)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value if value.endswith("\n") or not value else value + "\n"
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


@dataclass
class HostSummary:
    """Ansible's recap line for one host."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class TaskResult:
    """One task on one host."""

    host: str
    task: str
    role: str | None
    action: str
    status: Status
    changed: bool
    diff: list[Diff] = field(default_factory=list)
    msg: str = ""
    target: str | None = None
    """What the task acted on: a file (dest/path) or a service name, when the result says."""
    check_mode_skipped: bool = False
    """Skipped because of check mode: not evaluated by a check run."""
    skip_reason: str = ""
    handler: bool = False
    ignored: bool = False
    """A failure the task ignores (``ignore_errors``); not counted as failed on the host."""
    duration: float | None = None


@dataclass
class RunOptions:
    """How a run is made (recorded in the result)."""

    forks: int
    strategy: str
    pipelining: bool
    check: bool
    diff: bool
    limit: str | None


@dataclass
class RunResult:
    """One ansible-runner run of the site playbook."""

    env: str
    ident: str
    rc: int
    status: str
    """ansible-runner's status: successful, failed, timeout, canceled."""
    artifacts_dir: Path
    options: RunOptions
    started: str
    seconds: float
    hosts: dict[str, HostSummary] = field(default_factory=dict)
    tasks: list[TaskResult] = field(default_factory=list)
    site: str | None = None
    error: str = ""
    """Why the run did not complete (an Ansible error before any host ran), if it did not."""

    # -- views ------------------------------------------------------------------------------

    @property
    def check(self) -> bool:
        return self.options.check

    @property
    def changed_tasks(self) -> list[TaskResult]:
        return [t for t in self.tasks if t.status is Status.CHANGED]

    @property
    def failed_tasks(self) -> list[TaskResult]:
        return [t for t in self.tasks if t.status is Status.FAILED and not t.ignored]

    @property
    def check_mode_skipped(self) -> list[TaskResult]:
        """Tasks a check run could not evaluate (skipped because of check mode)."""
        return [t for t in self.tasks if t.check_mode_skipped]

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, s in self.hosts.items() if s.failed)

    @property
    def unreachable_hosts(self) -> list[str]:
        return sorted(h for h, s in self.hosts.items() if s.unreachable)

    @property
    def changed_hosts(self) -> list[str]:
        return sorted(h for h, s in self.hosts.items() if s.changed)

    @property
    def completed(self) -> bool:
        """The play ran to its recap (every host has a summary)."""
        return bool(self.hosts) and not self.error

    def exit_code(self) -> ExitCode:
        """DESIGN §6: 0 clean; 2 drift (check) or a failed task; 3 unreachable or incomplete."""
        failed = bool(self.failed_hosts or self.failed_tasks)
        return decide(incomplete=bool(self.unreachable_hosts) or not self.completed,
                      findings=failed or bool(self.check and self.changed_hosts))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``invoke converge --format json``)."""
        data = asdict(self)
        data["artifacts_dir"] = str(self.artifacts_dir)
        data["check"] = self.check
        data["exit_code"] = int(self.exit_code())
        data["summary"] = {
            "hosts": len(self.hosts),
            "changed_hosts": self.changed_hosts,
            "failed_hosts": self.failed_hosts,
            "unreachable_hosts": self.unreachable_hosts,
            "changed_tasks": len(self.changed_tasks),
            "failed_tasks": len(self.failed_tasks),
            "check_mode_skipped": len(self.check_mode_skipped),
        }
        return data


# --------------------------------------------------------------------------- collection


def _short_action(action: str) -> str:
    return action.rsplit(".", 1)[-1]


def _target(res: dict[str, Any], action: str) -> str | None:
    """The file or service a result is about (from the result, else the module's arguments)."""
    invocation: dict[str, Any] = res.get("invocation") or {}
    if not isinstance(invocation, dict):
        invocation = {}
    args: dict[str, Any] = invocation.get("module_args") or invocation
    if not isinstance(args, dict):
        args = {}
    for source in (res, args):
        for key in ("dest", "path"):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    if _short_action(action) in SERVICE_ACTIONS:
        for source in (res, args):
            name = source.get("name")
            if isinstance(name, str) and name:
                return name
    return None


def _service_diff(res: dict[str, Any], target: str | None) -> Diff | None:
    """A diff for a service whose state changed (service modules return none).

    Built from the result only: the state asked for (``state``, from the result or the
    module's arguments) and, for init scripts, which aspect changed (``status.started``,
    ``status.enabled``); the live state is the opposite of what was asked.
    """
    if not target:
        return None
    invocation = res.get("invocation") if isinstance(res.get("invocation"), dict) else {}
    args = (invocation or {}).get("module_args") or {}
    state = res.get("state") or args.get("state")
    enabled = args.get("enabled") if isinstance(args, dict) else None
    aspects: dict[str, Any] = res.get("status") or {}
    if not isinstance(aspects, dict):
        aspects = {}
    before, after = [], []
    run_aspect = aspects.get("started") or aspects.get("stopped") or {}
    run_changed = not aspects or "ActiveState" in aspects or bool(run_aspect.get("changed"))
    if state in ("started", "running", "stopped") and run_changed:
        want = "stopped" if state == "stopped" else "running"
        before.append(f"service {target}: {'running' if want == 'stopped' else 'stopped'}\n")
        after.append(f"service {target}: {want}\n")
    if isinstance(enabled, bool) and bool((aspects.get("enabled") or {}).get("changed")):
        before.append(f"service {target} enabled at boot: {'no' if enabled else 'yes'}\n")
        after.append(f"service {target} enabled at boot: {'yes' if enabled else 'no'}\n")
    if not after:
        return None
    raw = {"before_header": f"service {target} (live)", "after_header": f"service {target} (model)",
           "before": "".join(before), "after": "".join(after)}
    return Diff.from_ansible(raw, target)


def _diffs(res: dict[str, Any], target: str | None, action: str, changed: bool) -> list[Diff]:
    found: list[Diff] = []
    raw = res.get("diff")
    items = raw if isinstance(raw, list) else [raw] if raw else []
    for item in items:
        diff = Diff.from_ansible(item, target)
        if diff is not None:
            found.append(diff)
    for sub in res.get("results") or []:
        if isinstance(sub, dict) and sub.get("changed"):
            found.extend(_diffs(sub, _target(sub, action) or target, action, True))
    if not found and changed and _short_action(action) in SERVICE_ACTIONS:
        diff = _service_diff(res, target)
        if diff is not None:
            found.append(diff)
    return found


def _msg(res: dict[str, Any]) -> str:
    if res.get("censored"):
        return str(res["censored"])
    msg = res.get("msg")
    if not msg and res.get("results"):
        msgs = [str(r.get("msg")) for r in res["results"]
                if isinstance(r, dict) and r.get("failed") and r.get("msg")]
        msg = "; ".join(msgs)
    if not msg and res.get("stderr"):
        msg = res.get("stderr")
    text = msg if isinstance(msg, str) else json.dumps(msg, default=str) if msg else ""
    return text[:MAX_MSG_CHARS]


def _is_check_mode_skip(record: dict[str, Any], check: bool) -> bool:
    if not check:
        return False
    if record.get("check_mode") or record.get("censored"):
        return True  # a no_log task's reason is hidden: it counts as not evaluated
    text = " ".join(str(record.get(k, "")) for k in ("msg", "false_condition", "skip_reason"))
    return "check mode" in text or "ansible_check_mode" in text


class Collector:
    """Turns runner events (as the event handler receives them) into task results."""

    def __init__(self, check: bool) -> None:
        self.check = check
        self.tasks: list[TaskResult] = []
        self.hosts: dict[str, HostSummary] = {}
        self._skipped: dict[tuple[str, str], TaskResult] = {}
        self._censored: dict[tuple[str, str], TaskResult] = {}
        self.errors: list[str] = []

    def handle(self, event: dict[str, Any]) -> TaskResult | None:
        """Record one event; returns the task result it made, if any."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_stats":
            self._stats(data)
            return None
        if kind == "error" or (kind == "verbose" and "ERROR!" in str(event.get("stdout", ""))):
            self.errors.append(str(event.get("stdout", "")).strip())
            return None
        kinds: dict[str, Status | None] = {"runner_on_ok": None, "runner_on_failed": Status.FAILED,
                                           "runner_on_skipped": Status.SKIPPED,
                                           "runner_on_unreachable": Status.UNREACHABLE}
        if kind not in kinds:
            return None
        status = kinds[kind]
        res = data.get("res") or {}
        if not isinstance(res, dict):
            res = {}
        action = str(data.get("resolved_action") or data.get("task_action") or "")
        changed = bool(res.get("changed")) and status is not Status.SKIPPED
        if status is None:
            status = Status.CHANGED if changed else Status.OK
        target = None if res.get("censored") else _target(res, action)
        diffs = [] if res.get("censored") else _diffs(res, target, action, changed)
        if target is None and diffs and diffs[0].after_header.startswith("/"):
            target = diffs[0].after_header
        result = TaskResult(
            host=str(data.get("host", "")),
            task=str(data.get("task", "")),
            role=data.get("role") or None,
            action=action,
            status=status,
            changed=changed,
            diff=diffs,
            msg=_msg(res) if status is not Status.OK else "",
            target=target,
            ignored=bool(data.get("ignore_errors")),
            duration=data.get("duration"),
        )
        if (status is Status.OK and self.check and res.get("skipped")
                and "check mode" in str(res.get("msg", ""))):
            result.check_mode_skipped = True
        self.tasks.append(result)
        if status is Status.SKIPPED:
            self._skipped[(str(data.get("task_uuid", "")), result.host)] = result
        elif res.get("censored"):
            self._censored[(str(data.get("task_uuid", "")), result.host)] = result
        return result

    def _stats(self, data: dict[str, Any]) -> None:
        keys = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
                "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
        for stat, attr in keys.items():
            for host, count in (data.get(stat) or {}).items():
                summary = self.hosts.setdefault(host, HostSummary())
                setattr(summary, attr, int(count))
        for host in data.get("processed") or {}:
            self.hosts.setdefault(host, HostSummary())

    def add_skip_reasons(self, path: Path) -> None:
        """Join what the dualdc_skips callback wrote (one JSON line each): skip reasons, and
        whether a censored (``no_log``) task changed, which ansible-runner's event leaves out."""
        if not path.is_file():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = (str(record.get("task_uuid", "")), str(record.get("host", "")))
            if record.get("kind") == "censored":
                censored = self._censored.get(key)
                if censored is not None and record.get("changed") is True and not censored.changed:
                    censored.changed = True
                    if censored.status is Status.OK:
                        censored.status = Status.CHANGED
                continue
            result = self._skipped.get(key)
            if result is None:
                continue
            result.skip_reason = str(record.get("false_condition") or record.get("msg")
                                     or record.get("skip_reason")
                                     or ("reason hidden by no_log" if record.get("censored") else ""))
            result.handler = bool(record.get("handler"))
            result.check_mode_skipped = _is_check_mode_skip(record, self.check)
