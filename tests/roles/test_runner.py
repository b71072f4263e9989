"""The ansible-runner wrapper on a real (local) playbook: results, diffs, check mode, secrets, artifacts.

The playbook runs against ``localhost`` with the local connection on files in a temporary
directory, so the wrapper's whole path (ansible-runner, the events, the skip-reason
callback, the artifacts) is exercised without the lab.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dualdc.ansible import PlaybookRun, RunError, RunResult, Status, json_report, run_playbook, text_report
from dualdc.ansible.runner import _RunGuard
from dualdc.base.proc import running
from dualdc.cli import ExitCode

SECRET = "s3cr3t-value-never-written"

PLAYBOOK = """
- name: Fixture play
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the managed file
      ansible.builtin.copy:
        content: "{{{{ wanted }}}}\\n"
        dest: "{work}/managed.txt"
        mode: "0644"
      notify: Say the file changed

    - name: Use a secret
      ansible.builtin.command: "echo {secret}"
      no_log: true
      changed_when: false

    - name: Run a command
      ansible.builtin.command: "true"
      changed_when: false

    - name: Never run
      ansible.builtin.debug:
        msg: never
      when: false

    - name: Fail when asked
      ansible.builtin.fail:
        msg: asked to fail
      when: fail_now | default(false) | bool

  handlers:
    - name: Say the file changed
      ansible.builtin.debug:
        msg: changed
      when: not ansible_check_mode
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root with an ansible.cfg, a local inventory and the fixture playbook."""
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "inventories" / "fixture").mkdir(parents=True)
    (tmp_path / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    (tmp_path / "inventories" / "fixture" / "hosts.ini").write_text(
        f"[local]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        "[local:vars]\nwanted=first\n")
    (tmp_path / "playbooks" / "fixture.yml").write_text(PLAYBOOK.format(work=tmp_path, secret=SECRET))
    return tmp_path


def run_with(project: Path, **kwargs: object) -> RunResult:
    options = {"env": "fixture", "root": project, "playbook": "playbooks/fixture.yml",
               "inventory": "inventories/fixture/hosts.ini", **kwargs}
    return run_playbook(PlaybookRun(**options))  # type: ignore[arg-type]


run = run_with


@pytest.mark.parametrize("strategy", ["dualdc_free", "free", "linear"])
def test_check_then_apply_then_check(project: Path, monkeypatch: pytest.MonkeyPatch, strategy: str) -> None:
    """Every strategy the wrapper offers gives the same results (dualdc_free runs over Mitogen)."""
    monkeypatch.setenv("DUALDC_TEST_TOKEN", SECRET)  # a secret in the caller's environment
    run = functools.partial(run_with, strategy=strategy)
    check = run(project, check=True)
    assert check.exit_code() == ExitCode.FINDINGS
    assert not (project / "managed.txt").exists()
    changed = check.changed_tasks
    assert [t.task for t in changed] == ["Write the managed file"]
    assert changed[0].target == f"{project}/managed.txt"
    assert "+first" in changed[0].diff[0].unified
    not_evaluated = {t.task: t for t in check.check_mode_skipped}
    assert set(not_evaluated) == {"Use a secret", "Run a command", "Say the file changed"}
    assert not_evaluated["Say the file changed"].handler
    assert not_evaluated["Run a command"].skip_reason == "Command would have run if not in check mode"
    # no_log hides even why a task was skipped: such a task counts as not evaluated.
    assert not_evaluated["Use a secret"].skip_reason == "reason hidden by no_log"
    never = next(t for t in check.tasks if t.task == "Never run")
    assert never.status is Status.SKIPPED and not never.check_mode_skipped

    apply = run(project)
    assert apply.exit_code() == ExitCode.CLEAN
    assert (project / "managed.txt").read_text() == "first\n"
    assert apply.hosts["localhost"].changed == 1 and apply.hosts["localhost"].failed == 0

    clean = run(project, check=True)
    assert clean.exit_code() == ExitCode.CLEAN and not clean.changed_tasks

    # Tampering shows as a diff from the live file to the wanted one.
    (project / "managed.txt").write_text("tampered\n")
    drift = run(project, check=True)
    diff = drift.changed_tasks[0].diff[0].unified
    assert "-tampered" in diff and "+first" in diff

    # Nothing secret anywhere: not in the results, the reports or the artifacts.
    for result in (check, apply, clean, drift):
        assert SECRET not in json_report(result) and SECRET not in text_report(result)
        for path in result.artifacts_dir.rglob("*"):
            if path.is_file():
                assert SECRET not in path.read_text(errors="replace"), path


def test_artifacts_keep_the_awx_layout(project: Path) -> None:
    result = run(project)
    art = result.artifacts_dir
    assert art.parent == project / ".state" / "fixture" / "artifacts"
    assert art.name == result.ident
    for name in ("stdout", "rc", "status", "command", "dualdc_skips.jsonl"):
        assert (art / name).is_file(), name
    assert (art / "rc").read_text().strip() == "0" and (art / "status").read_text().strip() == "successful"
    events = [json.loads(p.read_text()) for p in (art / "job_events").glob("*.json")]
    assert any(e["event"] == "playbook_on_stats" for e in events)
    command = json.loads((art / "command").read_text())
    assert all(k.startswith("ANSIBLE_") or k in {"PATH", "HOME", "LANG", "LC_ALL", "USER", "PYTHONPATH",
                                                 "DUALDC_SKIPS_FILE"} for k in command["env"])
    env = command["env"]
    assert env["ANSIBLE_STRATEGY"] == "dualdc_free" and env["ANSIBLE_PIPELINING"] == "True"
    assert env["ANSIBLE_STRATEGY_PLUGINS"].endswith("dualdc/ansible/strategy_plugins")


def test_host_key_checking_stays_on_under_ansible_runner(project: Path) -> None:
    """ansible-runner would set ANSIBLE_HOST_KEY_CHECKING=False; the run Ansible really got keeps it on."""
    result = run(project)
    command = json.loads((result.artifacts_dir / "command").read_text())
    assert command["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"


def test_failed_task_and_unreachable_host_set_the_exit_code(project: Path) -> None:
    failed = run(project, extravars={"fail_now": True})
    assert failed.exit_code() == ExitCode.FINDINGS
    assert failed.failed_hosts == ["localhost"]
    assert failed.failed_tasks[0].msg == "asked to fail"
    inv = project / "inventories" / "fixture" / "hosts.ini"
    inv.write_text(inv.read_text() + "[far]\nnowhere ansible_host=192.0.2.1 ansible_connection=ssh "
                   "wanted=x ansible_ssh_common_args='-o ConnectTimeout=2'\n")
    unreachable = run(project, limit="nowhere")
    assert unreachable.unreachable_hosts == ["nowhere"]
    assert unreachable.exit_code() == ExitCode.UNVERIFIED


def test_options_are_checked_before_running(project: Path) -> None:
    with pytest.raises(RunError, match="strategy"):
        run(project, strategy="fastest")
    with pytest.raises(RunError, match="forks"):
        run(project, forks=0)
    with pytest.raises(RunError, match="no environment"):
        run_playbook(PlaybookRun(env="nowhere", root=project, playbook="playbooks/fixture.yml"))
    with pytest.raises(RunError, match="no playbook"):
        run_playbook(PlaybookRun(env="fixture", root=project, inventory="inventories/fixture/hosts.ini"))
    assert not (project / ".state").exists()


def test_site_and_limit_combine_into_one_pattern() -> None:
    assert PlaybookRun(env="lab", site="gwangju").host_pattern() == "site_gwangju"
    assert PlaybookRun(env="lab", site="gwangju", limit="role_ntp").host_pattern() == "site_gwangju:&role_ntp"
    assert PlaybookRun(env="lab").host_pattern() is None


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "xml"], "--format must be text or json"),
    (["--site", "busan"], "unknown site 'busan'"),
    (["--env", "nowhere"], "no such environment"),
    (["--strategy", "fastest"], "strategy must be one of"),
])
def test_converge_rejects_bad_input_with_exit_1(args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "invoke", "converge", *args], capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode == 1, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_a_service_change_reads_as_a_diff_naming_the_service() -> None:
    from dualdc.ansible.results import Collector

    # The result shape of ansible.builtin.service on an init-script host (the sysvinit module).
    event = {"event": "runner_on_ok", "event_data": {
        "host": "gj-ntp-01", "task": "Keep chronyd running", "role": "time_sync",
        "resolved_action": "ansible.builtin.service", "task_uuid": "u1",
        "res": {"name": "chrony", "changed": True,
                "status": {"enabled": {"changed": False}, "started": {"changed": True}},
                "invocation": {"module_args": {"name": "chrony", "state": "started", "enabled": None}}}}}
    collector = Collector(check=True)
    result = collector.handle(event)
    assert result is not None and result.status is Status.CHANGED and result.target == "chrony"
    (diff,) = result.diff
    assert diff.before_header == "service chrony (live)"
    assert "-service chrony: stopped" in diff.unified and "+service chrony: running" in diff.unified


NO_LOG_PLAYBOOK = """
- name: Secret play
  hosts: all
  gather_facts: false
  tasks:
    - name: Keep a secret in a file
      ansible.builtin.copy:
        content: "{secret}\\n"
        dest: "{work}/secret.txt"
        mode: "0600"
      no_log: true
"""


def test_a_no_log_task_that_would_change_is_drift_without_showing_why(project: Path) -> None:
    """ansible-runner hands a no_log result on as ``{"censored": …}`` alone (ansible-core 2.19 keeps
    ``_ansible_no_log`` in it); whether the task changed comes from dualdc's callback instead."""
    (project / "playbooks" / "secret.yml").write_text(NO_LOG_PLAYBOOK.format(work=project, secret=SECRET))
    (project / "secret.txt").write_text("tampered\n")
    drift = run(project, check=True, playbook="playbooks/secret.yml")
    assert drift.exit_code() == ExitCode.FINDINGS
    assert [(t.host, t.task, t.status) for t in drift.changed_tasks] == [
        ("localhost", "Keep a secret in a file", Status.CHANGED)]
    assert drift.changed_tasks[0].diff == [] and drift.changed_tasks[0].target is None
    assert (project / "secret.txt").read_text() == "tampered\n"
    run(project, playbook="playbooks/secret.yml")
    clean = run(project, check=True, playbook="playbooks/secret.yml")
    assert clean.exit_code() == ExitCode.CLEAN and not clean.changed_tasks
    for result in (drift, clean):
        assert SECRET not in json_report(result) and SECRET not in text_report(result)
        for path in result.artifacts_dir.rglob("*"):
            if path.is_file():
                assert SECRET not in path.read_text(errors="replace"), path


SLEEPER = """
- name: Sleeper play
  hosts: all
  gather_facts: false
  tasks:
    - name: Sleep long enough to be cancelled
      ansible.builtin.command: "sleep {seconds} {marker}"
      changed_when: false
"""


def _processes_with(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{entry.name}: {cmdline[:100]}")
    return found


@pytest.mark.parametrize("how", ["cancel", "timeout"])
@pytest.mark.parametrize("strategy", ["dualdc_free", "linear"])
def test_a_cancelled_or_timed_out_run_leaves_no_process(project: Path, how: str, strategy: str) -> None:
    """ansible-core 2.19 starts each worker in a session of its own, so killing the playbook's
    process group alone would leave the worker and its task's command running."""
    marker = f"9{uuid.uuid4().int % 10**8}"  # a distinct argument of `sleep`, to find its process by
    (project / "playbooks" / "sleeper.yml").write_text(SLEEPER.format(seconds=300, marker=marker))
    t0 = time.monotonic()
    started: list[float] = []

    def cancel() -> bool:
        if not started and _processes_with(f"sleep 300 {marker}"):
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] > 1

    options: dict[str, object] = {"cancel": cancel} if how == "cancel" else {"timeout": 15}
    result = run(project, playbook="playbooks/sleeper.yml", strategy=strategy, **options)
    assert time.monotonic() - t0 < 120
    if how == "cancel":
        assert started, "the task's command never started"
        assert result.status == "canceled"
    else:
        assert result.status == "timeout"
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []


#: A stand-in for ansible-playbook that, on SIGTERM, forks one more "worker" (same command line,
#: a session of its own) and dies at once: the worker is in no snapshot taken before the signal
#: and is re-parented to init, as a worker the strategy forks while the playbook stops would be.
LATE_WORKER = r"""
import os, pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def on_term(signum, frame):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        time.sleep(120)
        os._exit(0)
    out.write_text(str(pid))
    os._exit(0)
signal.signal(signal.SIGTERM, on_term)
out.with_suffix(".ready").write_text("ready")
time.sleep(120)
"""


def test_a_worker_forked_while_the_playbook_stops_is_ended_too(tmp_path: Path) -> None:
    """The cancel ends what the run started even when it escapes the process tree: found again
    by the run's own command line (this is a real process tree, not a mock of ansible-playbook)."""
    guard = _RunGuard(lambda: True, None)
    worker_file = tmp_path / "worker.pid"
    playbook = subprocess.Popen([sys.executable, "-c", LATE_WORKER, str(worker_file)])
    worker = 0
    try:
        deadline = time.monotonic() + 30
        while not worker_file.with_suffix(".ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert guard() is True  # cancelled: the guard ends the tree now
        assert playbook.wait(timeout=30) == 0
        worker = int(worker_file.read_text())
        assert worker in guard.ended
        deadline = time.monotonic() + 10
        while running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(worker), "the late worker outlived the cancel"
    finally:
        if playbook.poll() is None:
            playbook.kill()
            playbook.wait(timeout=30)
        if worker and running(worker):
            os.kill(worker, signal.SIGKILL)
