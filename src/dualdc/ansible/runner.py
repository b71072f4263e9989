"""Run the site playbook through ansible-runner and collect a :class:`RunResult`.

A run keeps its artifacts the way AWX does: ``.state/<env>/artifacts/<ident>/`` holds
``job_events/``, ``stdout``, ``rc``, ``status`` and ``command`` (plus ``dualdc_skips.jsonl``,
the reasons tasks were skipped). The ``command`` file's environment is reduced to the
variables that steer Ansible before the run starts, so no credential of the caller's
environment is kept there.

Speed: the defaults are ``forks`` = every host at once, the ``dualdc_free`` strategy (Ansible's
free strategy over Mitogen's persistent interpreters, with the controller's plugin caches
warmed before workers fork: see ``strategy_plugins/dualdc_free.py``), pipelining and SSH
connection reuse for the stock strategies; the playbook gathers no facts (the roles read only
the model's hostvars). Stock ``ansible-playbook -i inventories/<env> playbooks/site.yml`` runs
the same playbook with Ansible's own defaults.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
import yaml
from ansible_runner.utils import signal_handler

from dualdc.ansible.results import Collector, RunOptions, RunResult, TaskResult
from dualdc.base.files import write_atomic
from dualdc.base.paths import STATE_NAME, project_root, project_state
from dualdc.base.proc import all_parents, cmdline, running, start_time
from dualdc.base.redact import scrub
from dualdc.inventory import layers, static
from dualdc.model import Topology

PACKAGE_DIR = Path(__file__).resolve().parent
CALLBACK_DIR = PACKAGE_DIR / "callback_plugins"
STRATEGY_DIR = PACKAGE_DIR / "strategy_plugins"
SKIPS_FILE = "dualdc_skips.jsonl"
#: Artifact directories kept per environment (older ones are removed by ansible-runner).
KEEP_ARTIFACTS = 40
#: dualdc_free (the default): see strategy_plugins/dualdc_free.py; free and linear: Ansible's own.
STRATEGIES = ("dualdc_free", "free", "linear")
#: Environment variables kept (with their values) in the artifacts' ``command`` file.
KEPT_ENV = re.compile(r"^(ANSIBLE_[A-Z0-9_]+|DUALDC_SKIPS_FILE|PATH|LANG|LC_ALL|PYTHONPATH|HOME|USER)$")


class RunError(Exception):
    """The run could not be started (bad options, missing playbook or inventory)."""


@dataclass
class PlaybookRun:
    """What to run, and how. Every option has a fast default."""

    env: str
    site: str | None = None
    limit: str | None = None
    """An extra host pattern (a host, a group), intersected with the site's hosts."""
    check: bool = False
    diff: bool = True
    forks: int = 50
    strategy: str = "dualdc_free"
    pipelining: bool = True
    ssh_control_persist: int = 120
    """Seconds an idle SSH master connection stays up between tasks (and runs)."""
    timeout: int | None = None
    """Cancel the run after this many seconds."""
    playbook: str = "playbooks/site.yml"
    """Relative to ``root``."""
    inventory: str | None = None
    """Relative to ``root``; default ``inventories/<env>`` (the inventory plugin loads the topology)."""
    built_inventory: dict[str, Any] | None = None
    """The inventory already built from the loaded topology (:func:`dualdc.inventory.layers`): the
    run hands it to Ansible as a static inventory in its artifacts, so the topology is not loaded
    again inside Ansible. Ignored when ``inventory`` is given."""
    extravars: dict[str, Any] = field(default_factory=dict)
    root: Path = field(default_factory=project_root)
    cancel: Callable[[], bool] | None = None
    """Polled while the run goes; True cancels it and ends the playbook's processes. Given, the
    caller's SIGINT/SIGTERM handlers are left alone; not given, those signals cancel the run."""
    state_root: Path | None = None
    """Default: ``<root>/.state``."""

    @classmethod
    def of(cls, topology: Topology, **options: Any) -> PlaybookRun:
        """A run of ``topology``'s environment handed the inventory built from it (built once per topology).

        The way dualdc's own runs start: Ansible gets a static inventory instead of loading the
        topology again through the inventory plugin, one model load per run.
        """
        built = topology.cache.get("inventory_layers")
        if built is None:
            built = topology.cache["inventory_layers"] = layers(topology)
        return cls(env=topology.environment.name, built_inventory=built, **options)

    def host_pattern(self) -> str | None:
        parts = []
        if self.site:
            parts.append(f"site_{self.site.replace('-', '_')}")
        if self.limit:
            parts.append(self.limit)
        if not parts:
            return None
        return ":&".join(parts) if len(parts) > 1 else parts[0]

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise RunError(f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.strategy == "dualdc_free" and importlib.util.find_spec("ansible_mitogen") is None:
            raise RunError("the dualdc_free strategy needs Mitogen, which is not installed: run "
                           "./scripts/bootstrap.sh (it installs mitogen into .venv), or choose "
                           "--strategy free")
        if self.forks < 1:
            raise RunError(f"forks must be at least 1, not {self.forks}")
        if not (self.root / self.playbook).is_file():
            raise RunError(f"no playbook {self.playbook} under {self.root}")
        if self.inventory is not None:
            if not (self.root / self.inventory).exists():
                raise RunError(f"no inventory {self.inventory} under {self.root}")
        elif not (self.root / "inventories" / self.env / "inventory.dualdc.yml").is_file():
            raise RunError(f"no environment {self.env!r}: "
                           f"inventories/{self.env}/inventory.dualdc.yml is missing")

    def stock_command(self) -> str:
        """The equivalent ``ansible-playbook`` command line (for people; the run uses the runner)."""
        args = ["ansible-playbook", "-i", self.inventory or f"inventories/{self.env}", self.playbook,
                "--forks", str(self.forks)]
        pattern = self.host_pattern()
        if pattern:
            args += ["--limit", pattern]
        if self.check:
            args.append("--check")
        if self.diff:
            args.append("--diff")
        env = f"ANSIBLE_STRATEGY={self.strategy} ANSIBLE_PIPELINING={self.pipelining} "
        if self.strategy == "dualdc_free":
            env = f"ANSIBLE_STRATEGY_PLUGINS={STRATEGY_DIR} " + env
        return env + " ".join(shlex.quote(a) for a in args)


EventSink = Callable[[dict[str, Any], TaskResult | None], None]


def _ident(check: bool) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{'check' if check else 'apply'}-{uuid.uuid4().hex[:6]}"


def _tool_dir() -> Path:
    """The folder of this Python's console scripts (the virtualenv's bin/)."""
    return Path(sys.executable).parent


def _tool_path() -> str:
    """PATH for the run: this Python's console scripts (the virtualenv's bin/) first.

    ansible-runner looks ``ansible-playbook`` up on the PATH it is given, so an unactivated
    ``.venv/bin/invoke`` still runs the virtualenv's Ansible.
    """
    path = os.pathsep.join([str(_tool_dir()), os.environ.get("PATH", os.defpath)])
    if shutil.which("ansible-playbook", path=path) is None:
        raise RunError("ansible-playbook is not installed: run ./scripts/bootstrap.sh "
                       "(it installs ansible-core into .venv)")
    return path


def _envvars(run: PlaybookRun, skips_file: Path) -> dict[str, str]:
    ssh_args = (f"-o ControlMaster=auto -o ControlPersist={run.ssh_control_persist}s "
                "-o PreferredAuthentications=publickey")
    return {
        "ANSIBLE_CONFIG": str(run.root / "ansible.cfg"),
        # ansible-runner turns host key checking off unless told otherwise, and ssh keeps the first
        # StrictHostKeyChecking it is given: keep it on, as ansible.cfg and the lab's known_hosts want.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_STRATEGY": run.strategy,
        "ANSIBLE_PIPELINING": "True" if run.pipelining else "False",
        "ANSIBLE_SSH_ARGS": ssh_args,
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
        "ANSIBLE_STRATEGY_PLUGINS": str(STRATEGY_DIR),
        "ANSIBLE_CALLBACKS_ENABLED": "dualdc_skips",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        "DUALDC_SKIPS_FILE": str(skips_file),
        "PATH": _tool_path(),
    }


def _scrub_command_file(artifacts: Path) -> None:
    """Keep only Ansible's own variables in the ``command`` artifact (it holds the whole environment)."""
    path = artifacts / "command"
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        path.unlink(missing_ok=True)
        return
    env = data.get("env") or {}
    data["env"] = {k: scrub(str(v)) for k, v in env.items() if KEPT_ENV.match(k)}
    write_atomic(path, json.dumps(data, ensure_ascii=False), mode=0o600)


class _UnsafeDumper(yaml.SafeDumper):
    """Writes every string with Ansible's ``!unsafe`` tag: data that is never templated."""


def _unsafe_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("!unsafe", value, style="'")


_UnsafeDumper.add_representer(str, _unsafe_str)


def write_unsafe_extravars(extravars: dict[str, Any], path: Path) -> None:
    """Write extra variables for ``-e @path`` with every string marked ``!unsafe``.

    Ansible trusts an extra-vars file as templates; extra variables are data (addresses,
    names), so each string is tagged and a ``{{ ... }}`` in one is passed on literally.
    """
    text = yaml.dump(extravars, Dumper=_UnsafeDumper, allow_unicode=True, sort_keys=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


class _InventoryDumper(yaml.SafeDumper):
    """Ansible's YAML inventory, each mapping of variables ``!unsafe`` (:func:`write_static_inventory`)."""


class _Variables(dict[str, Any]):
    """A mapping of variables: written with the ``!unsafe`` tag."""


def _unsafe_mapping(dumper: yaml.SafeDumper, value: _Variables) -> yaml.Node:
    return dumper.represent_mapping("!unsafe", dict(value))


_InventoryDumper.add_representer(_Variables, _unsafe_mapping)


def write_static_inventory(built: dict[str, Any], path: Path) -> Path:
    """Write an inventory built by :func:`dualdc.inventory.layers` as Ansible's YAML inventory.

    Every mapping of variables is tagged ``!unsafe``, which Ansible carries down to every value
    in it (the inventory plugin's values are never trusted as templates): nothing of the model is ever a
    template. (Tagging each string instead would lose its quotes: Ansible resolves an
    ``!unsafe`` scalar's type again, and ``'1.30'`` would come back as the number 1.3.) The
    file stays in the run's artifacts (0600).
    """
    shape = static(built)["all"]
    shape["vars"] = _Variables(shape["vars"])
    shape["hosts"] = {name: _Variables(own) for name, own in shape["hosts"].items()}
    for group in shape["children"].values():
        group["vars"] = _Variables(group["vars"])
    text = yaml.dump({"all": shape}, Dumper=_InventoryDumper, allow_unicode=True, sort_keys=False)
    return write_atomic(path, text, mode=0o600)


def _children(pid: int, parents: dict[int, int]) -> set[int]:
    return {child for child, parent in parents.items() if parent == pid}


def _descendants(roots: set[int], parents: dict[int, int]) -> list[int]:
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(_children(pid, parents))
    return found


#: Rounds of SIGKILL and search for what is left of a cancelled run (0.2 s apart).
SWEEPS = 10


class _RunGuard:
    """The cancel callback ansible-runner polls: the caller's cancel, or the run's time limit.

    When either fires, it ends the playbook's whole process tree itself. ansible-runner alone
    kills only the ``ansible-playbook`` process group, and since ansible-core 2.19 each worker
    process starts a session of its own (``os.setsid``), so the workers, and the SSH and
    Mitogen processes under them, would run on with their tasks after a cancel.
    """

    def __init__(self, cancel: Callable[[], bool] | None, timeout: int | None) -> None:
        self.cancel = cancel
        self.deadline = time.monotonic() + timeout if timeout else None
        self.before = _children(os.getpid(), all_parents())
        self.timed_out = False
        self.ended: list[int] = []

    def __call__(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
        if not self.timed_out and not (self.cancel is not None and self.cancel()):
            return False
        if not self.ended:
            self.end_tree()
        return True

    def end_tree(self) -> None:
        parents = all_parents()
        roots = _children(os.getpid(), parents) - self.before
        # The run's own command lines (unique: they name its artifacts folder). A worker forks
        # with its parent's command line; one forked while the playbook takes its SIGTERM is in
        # no snapshot of the tree, starts a session of its own, and is re-parented to init when
        # the playbook dies: it is found again by that command line.
        marks = {line for pid in roots if (line := cmdline(pid)) is not None}
        tree = _descendants(roots, parents)
        # each process known with its start time, so a pid the kernel hands out again is never hit
        known = {pid: start_time(pid) for pid in tree}
        # the playbook first (its own handler passes SIGTERM to the workers), then everything left
        for pid in roots:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(running(pid) for pid in tree):
            time.sleep(0.1)
        for _ in range(SWEEPS):
            for pid in tree:
                if start_time(pid) == known[pid]:
                    _signal(pid, signal.SIGKILL)
            time.sleep(0.2)
            parents = all_parents()
            strays = {pid for pid in parents if pid not in self.before and cmdline(pid) in marks}
            tree = [pid for pid in _descendants(strays | set(tree), parents)
                    if running(pid) and known.setdefault(pid, start_time(pid)) == start_time(pid)]
            if not tree:
                break
        self.ended = sorted(known)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def run_playbook(run: PlaybookRun, on_event: EventSink | None = None) -> RunResult:
    """Run the playbook; stream each event to ``on_event``; return the collected result.

    Raises :class:`RunError` when the run cannot start. A run that starts always returns a
    result, whatever happens on the hosts (see :meth:`RunResult.exit_code`).
    """
    run.validate()
    state = project_state(run.env, run.state_root or run.root / STATE_NAME)
    state.mkdir(parents=True, exist_ok=True)
    ident = _ident(run.check)
    artifacts = state / "artifacts" / ident
    artifacts.mkdir(parents=True, mode=0o700)
    skips_file = artifacts / SKIPS_FILE
    collector = Collector(run.check)

    def handle(event: dict[str, Any]) -> bool:
        result = collector.handle(event)
        if on_event is not None:
            on_event(event, result)
        return True

    def on_status(data: dict[str, Any], runner_config: Any = None) -> None:
        if data.get("status") == "running":
            _scrub_command_file(artifacts)

    inventory_path = str(run.root / (run.inventory or f"inventories/{run.env}"))
    envvars = _envvars(run, skips_file)
    if run.inventory is None and run.built_inventory is not None:
        inventory_path = str(write_static_inventory(run.built_inventory, artifacts / "inventory.yml"))
        envvars["ANSIBLE_INVENTORY_ENABLED"] = "yaml"
    flags = ["--check" if run.check else "", "--diff" if run.diff else ""]
    if run.extravars:
        extravars_file = artifacts / "extravars.yml"
        write_unsafe_extravars(run.extravars, extravars_file)
        flags.append("-e " + shlex.quote("@" + str(extravars_file)))
    cmdline = " ".join(a for a in flags if a)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    options = RunOptions(forks=run.forks, strategy=run.strategy, pipelining=run.pipelining, check=run.check,
                         diff=run.diff, limit=run.host_pattern())
    kwargs: dict[str, Any] = {
        "private_data_dir": str(state),
        "project_dir": str(run.root),
        "playbook": str(run.root / run.playbook),
        "inventory": inventory_path,
        "ident": ident,
        "forks": run.forks,
        "envvars": envvars,
        "quiet": True,
        "suppress_env_files": True,
        "rotate_artifacts": KEEP_ARTIFACTS,
        "event_handler": handle,
        "status_handler": on_status,
    }
    if cmdline:
        kwargs["cmdline"] = cmdline
    if run.host_pattern():
        kwargs["limit"] = run.host_pattern()
    # with no cancel of the caller's, SIGINT/SIGTERM cancel the run, as ansible-runner's own default
    guard = _RunGuard(run.cancel if run.cancel is not None else signal_handler(), run.timeout)
    kwargs["cancel_callback"] = guard
    try:
        runner = ansible_runner.run(**{k: v for k, v in kwargs.items() if v is not None})
    finally:
        _scrub_command_file(artifacts)
    collector.add_skip_reasons(artifacts / SKIPS_FILE)
    error = ""
    if not collector.hosts:
        error = _first_error(artifacts) or f"ansible-runner ended with status {runner.status} and no recap"
    return RunResult(
        env=run.env,
        ident=ident,
        rc=int(runner.rc if runner.rc is not None else -1),
        status="timeout" if guard.timed_out else str(runner.status),
        artifacts_dir=artifacts,
        options=options,
        started=started.isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - t0, 2),
        hosts=collector.hosts,
        tasks=collector.tasks,
        site=run.site,
        error=error,
    )


def _first_error(artifacts: Path) -> str:
    """The first error line Ansible printed (e.g. an inventory that does not load)."""
    stdout = artifacts / "stdout"
    if not stdout.is_file():
        return ""
    lines = stdout.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        if "ERROR!" in line:
            return scrub("\n".join(lines[i:i + 12]).strip())
    return ""


def artifacts_root(env: str, root: Path | None = None) -> Path:
    """Where the runs of an environment keep their artifacts."""
    return project_state(env, None if root is None else root / STATE_NAME) / "artifacts"


def recent_runs(env: str, root: Path | None = None) -> list[Path]:
    """Artifact directories of an environment, newest first."""
    base = artifacts_root(env, root)
    if not base.is_dir():
        return []
    return sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)


__all__ = ["PlaybookRun", "RunError", "artifacts_root", "recent_runs", "run_playbook"]
