"""Lock, audit and signal handling of guarded runs, with real processes and real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dualdc.ops import audit
from dualdc.ops.lock import (
    EnvironmentLock,
    LockHeldError,
    LockRecord,
    current_host,
    current_user,
    lock_holder,
)
from dualdc.ops.run import guarded_run
from dualdc.reports.header import Outcome

HOLDER = Path(__file__).with_name("holder.py")


class Holder:
    """holder.py in a child process, started and waited for by pid."""

    def __init__(self, root: Path, mode: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HOLDER), str(root), mode],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        err = self.proc.stderr.read() if self.proc.stderr and not line else ""
        assert line == "ready", f"holder did not start: {line!r} {err}"

    def signal(self, signum: int) -> tuple[int, str]:
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out + err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def holder_factory(tmp_path: Path):
    started: list[Holder] = []

    def start(mode: str) -> Holder:
        holder = Holder(tmp_path, mode)
        started.append(holder)
        return holder

    yield start
    for holder in started:
        holder.kill()


def test_second_run_is_refused_and_told_who_holds_the_lock(tmp_path: Path, holder_factory) -> None:
    holder = holder_factory("wait")
    with pytest.raises(LockHeldError) as refused, guarded_run("lab", "drift", "invoke drift --env lab",
                                                              ["gwangju"], root=tmp_path):
        pytest.fail("the block must not run while another run holds the lock")
    message = str(refused.value)
    assert f"{current_user()}@{current_host()}" in message
    assert f"pid {holder.proc.pid}" in message
    assert "invoke deploy --env lab" in message
    holder_record = lock_holder("lab", tmp_path)
    assert holder_record is not None and holder_record.pid == holder.proc.pid
    records = audit.read("lab", tmp_path)
    assert [(r.command, r.result, r.exit_code) for r in records] == [("drift", Outcome.REFUSED, 1)]
    assert f"pid {holder.proc.pid}" in records[0].message


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_releases_the_lock_and_records_interrupted(tmp_path: Path, holder_factory, signum: int,
                                                          code: int) -> None:
    holder = holder_factory("wait")
    returncode, output = holder.signal(signum)
    assert returncode == code, output
    assert f"interrupted {signal.Signals(signum).name}" in output
    records = audit.read("lab", tmp_path)
    assert len(records) == 1
    record = records[0]
    assert record.result is Outcome.INTERRUPTED and record.exit_code == code
    assert record.pid == holder.proc.pid and record.plan == {"hosts": 24}
    assert lock_holder("lab", tmp_path) is None
    # The lock is free and not even reported as stale: the run cleaned up.
    lock = EnvironmentLock("lab", "invoke deploy --env lab", tmp_path)
    assert lock.acquire() == []
    lock.release()


def test_deferred_interrupt_lets_the_child_cancel_first(tmp_path: Path, holder_factory) -> None:
    holder = holder_factory("deferred")
    returncode, output = holder.signal(signal.SIGTERM)
    assert "cancel seen" in output and "interrupted SIGTERM" in output
    assert returncode == 143
    assert audit.read("lab", tmp_path)[-1].result is Outcome.INTERRUPTED


@pytest.mark.parametrize("mode", ["crash", "kill"])
def test_stale_lock_is_detected_and_taken_over(tmp_path: Path, holder_factory, mode: str) -> None:
    holder = holder_factory("crash" if mode == "crash" else "wait")
    dead_pid = holder.proc.pid
    if mode == "kill":
        holder.proc.kill()
    holder.proc.communicate(timeout=30)
    recorded = (tmp_path / "lab" / "lock").read_text(encoding="utf-8")
    assert LockRecord.model_validate_json(recorded).pid == dead_pid  # the dead run's record is left
    assert lock_holder("lab", tmp_path) is None  # ... but nobody holds the lock
    with guarded_run("lab", "deploy", "invoke deploy --env lab", ["gwangju"], root=tmp_path) as run:
        assert len(run.notes) == 1
        assert "stale lock" in run.notes[0] and f"pid {dead_pid}" in run.notes[0]
        assert "that process is gone" in run.notes[0]
        holder_record = lock_holder("lab", tmp_path)
        assert holder_record is not None and holder_record.pid == os.getpid()
        run.finish(Outcome.SUCCESS, 0, "ok")
    assert audit.read("lab", tmp_path)[-1].notes == run.notes


def test_lock_record_of_a_dead_or_foreign_process() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    base = {"environment": "lab", "user": "ops", "host": current_host(), "pid": dead.pid,
            "command": "invoke drift", "started": "2025-01-01T00:00:00Z"}
    assert LockRecord.model_validate(base).process_alive() is False
    assert LockRecord.model_validate({**base, "pid": os.getpid()}).process_alive() is True
    # The same pid number, started at another time: a re-used pid is not the holder.
    assert LockRecord.model_validate({**base, "pid": os.getpid(), "pid_start": 1}).process_alive() is False
    assert LockRecord.model_validate({**base, "host": "elsewhere.example"}).process_alive() is None


def test_audit_record_has_every_field_and_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "canary-passphrase-7f3a9"
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", secret)
    with pytest.raises(RuntimeError), guarded_run(
        "lab", "deploy", "invoke deploy --env lab", ["gwangju", "jeonju"],
        options={"yes": True, "site": None}, root=tmp_path,
    ) as run:
        run.plan = {"sites": {"gwangju": {"changed": 3}}}
        run.applied.append("gwangju:hosts")
        run.not_applied.append("jeonju:hosts")
        raise RuntimeError(f"stack update failed with passphrase {secret}")
    raw = (tmp_path / "lab" / "audit.jsonl").read_text(encoding="utf-8")
    assert secret not in raw
    assert raw.count("\n") == 1
    line = json.loads(raw)
    assert set(line) >= {"time", "finished", "duration_seconds", "user", "host", "git", "environment",
                         "sites", "plan", "result", "exit_code"}
    assert line["result"] == "error" and line["exit_code"] == 1
    assert line["sites"] == ["gwangju", "jeonju"]
    assert line["applied"] == ["gwangju:hosts"] and line["not_applied"] == ["jeonju:hosts"]
    assert line["plan"] == {"sites": {"gwangju": {"changed": 3}}}
    assert line["user"] == current_user() and line["host"] == current_host()
    assert "********" in line["message"]
    assert line["duration_seconds"] >= 0
    # This checkout is a git repository: the commit is recorded.
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert line["git"]["commit"] == head and isinstance(line["git"]["dirty"], bool)


def test_exit_code_of_the_block_becomes_the_result(tmp_path: Path) -> None:
    class Stop(Exception):
        code = 2

    with pytest.raises(Stop), guarded_run("lab", "drift", "invoke drift --env lab", ["gwangju"],
                                          root=tmp_path):
        raise Stop("drift found")
    assert audit.read("lab", tmp_path)[-1].result is Outcome.DRIFT


def test_git_state_clean_and_dirty(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert audit.git_state(tmp_path).commit is None
    (tmp_path / "a.yaml").write_text("a: 1\n", encoding="utf-8")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    subprocess.run(["git", "-C", str(tmp_path), "add", "a.yaml"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-qm", "a"], check=True, env=env)
    state = audit.git_state(tmp_path)
    assert state.commit is not None and len(state.commit) == 40 and state.dirty is False
    (tmp_path / "b.yaml").write_text("b: 1\n", encoding="utf-8")  # untracked topology files count
    assert audit.git_state(tmp_path).dirty is True


def test_signal_handlers_are_restored_after_the_run(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with guarded_run("lab", "drift", "invoke drift", ["gwangju"], root=tmp_path):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
