"""Show a run: live progress while it runs (rich, on stderr) and the report after it."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dualdc.ansible.results import RunResult, Status, TaskResult
from dualdc.base.redact import scrub


class LiveProgress:
    """Progress of a run: one line per changed, failed or unreachable task, and a bar per host count.

    Use as a context manager and pass :meth:`event` as the run's ``on_event``.
    """

    def __init__(self, console: Console, title: str, hosts: int) -> None:
        self.console = console
        self.title = title
        self.hosts = hosts
        self._done: set[str] = set()
        self._counts = {s: 0 for s in Status}
        self._task = ""
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TextColumn("{task.completed}/{task.total} hosts"), TimeElapsedColumn(),
                                  console=console, transient=True)
        self._bar = self._progress.add_task(title, total=hosts)

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _describe(self) -> str:
        c = self._counts
        return (f"{self.title}: {c[Status.OK]} ok, {c[Status.CHANGED]} changed, {c[Status.FAILED]} failed, "
                f"{c[Status.UNREACHABLE]} unreachable — {self._task}")[:160]

    def event(self, event: dict[str, Any], result: TaskResult | None) -> None:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind == "playbook_on_task_start":
            role = data.get("role")
            self._task = f"{role} : {data.get('task', '')}" if role else str(data.get("task", ""))
        if kind == "playbook_on_stats":
            self._progress.update(self._bar, completed=self.hosts)
        if result is not None:
            self._counts[result.status] += 1
            label = f"{result.role} : {result.task}" if result.role else result.task
            if result.status is Status.CHANGED:
                what = f" ({result.target})" if result.target else ""
                self.console.print(f"[yellow]changed[/] {result.host}  {label}{what}", markup=True,
                                   highlight=False)
            elif result.status is Status.FAILED and not result.ignored:
                self.console.print(f"[red]failed[/]  {result.host}  {label}: {scrub(result.msg)[:300]}",
                                   markup=True, highlight=False)
            elif result.status is Status.UNREACHABLE:
                self.console.print(f"[red]unreachable[/] {result.host}: {scrub(result.msg)[:300]}",
                                   markup=True, highlight=False)
        self._progress.update(self._bar, description=self._describe())


def text_report(result: RunResult, show_diff: bool = True) -> str:
    """The report for people."""
    mode = "check (nothing changed)" if result.check else "apply"
    where = f" site {result.site}" if result.site else ""
    lines = [f"converge {result.env}{where}: {mode}, {len(result.hosts)} host(s), {result.seconds:.1f} s "
             f"(forks {result.options.forks}, strategy {result.options.strategy}, "
             f"pipelining {'on' if result.options.pipelining else 'off'})"]
    if result.error:
        lines += ["", "the run did not complete:", result.error]
    if result.hosts:
        width = max(len(h) for h in result.hosts)
        lines += ["", f"{'host':<{width}}  {'ok':>4} {'changed':>7} {'failed':>6} {'unreach':>7} "
                      f"{'skipped':>7}"]
        for host in sorted(result.hosts):
            s = result.hosts[host]
            lines.append(f"{host:<{width}}  {s.ok:>4} {s.changed:>7} {s.failed:>6} {s.unreachable:>7} "
                         f"{s.skipped:>7}")
    verb = "would change" if result.check else "changed"
    changed = result.changed_tasks
    if changed:
        lines += ["", f"{len(changed)} task(s) {verb}:"]
        for t in changed:
            label = f"{t.role} : {t.task}" if t.role else t.task
            lines.append(f"  {t.host}  {label}" + (f"  [{t.target}]" if t.target else ""))
            if show_diff:
                for d in t.diff:
                    lines += ["    " + line for line in d.unified.rstrip("\n").splitlines()]
    failed = [t for t in result.tasks if t.status in (Status.FAILED, Status.UNREACHABLE) and not t.ignored]
    if failed:
        lines += ["", f"{len(failed)} failure(s):"]
        for t in failed:
            label = f"{t.role} : {t.task}" if t.role else t.task
            lines.append(f"  {t.host}  {label}: {t.status.value}: {t.msg}")
    skipped = [t for t in result.check_mode_skipped if not t.handler]
    handlers = [t for t in result.check_mode_skipped if t.handler]
    if skipped:
        lines += ["", f"{len(skipped)} task(s) not evaluated in check mode:"]
        for t in skipped:
            label = f"{t.role} : {t.task}" if t.role else t.task
            lines.append(f"  {t.host}  {label}  ({t.skip_reason})")
    if handlers:
        lines += ["", f"{len(handlers)} handler(s) would run after the changes above (not run in check mode)"]
    verdict = {0: "clean", 2: "drift" if result.check else "failed tasks",
               3: "not everything could be verified"}
    lines += ["", f"result: {verdict.get(int(result.exit_code()), '?')} (exit {int(result.exit_code())}); "
                  f"artifacts: {result.artifacts_dir}"]
    return scrub("\n".join(lines)) + "\n"


def json_report(result: RunResult) -> str:
    """The report for machines: :meth:`RunResult.to_dict` as JSON."""
    return scrub(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str)) + "\n"
