"""Invoke's defaults live in one place (``ns.configure``); an option's shared help is said once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from invoke.config import Config
from invoke.context import Context

from dualdc.tasks import options

ROOT = Path(__file__).resolve().parents[1]


def test_the_collection_carries_the_defaults() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import tasks  # the repository's tasks.py
    finally:
        sys.path.remove(str(ROOT))
    assert tasks.ns.configuration()["dualdc"]["env"] == "lab"


def test_env_comes_from_the_configuration_unless_given() -> None:
    configured = Context(Config(overrides={"dualdc": {"env": "production"}}))
    assert options.env_of(configured, None) == "production"
    assert options.env_of(configured, "lab") == "lab"
    assert options.env_of(configured, "") == ""  # an empty --env is still refused by the task
    assert options.env_of(Context(), None) == "lab"


def test_a_configured_environment_reaches_the_task() -> None:
    # INVOKE_DUALDC_ENV overrides dualdc.env as Invoke's own configuration does
    environ = {"PATH": "/usr/bin:/bin", "INVOKE_DUALDC_ENV": "production"}
    done = subprocess.run([sys.executable, "-m", "invoke", "inventory"], cwd=ROOT, capture_output=True,
                          text=True, check=False, env=environ)
    assert done.returncode == 0, done.stderr
    lab = subprocess.run([sys.executable, "-m", "invoke", "inventory"], cwd=ROOT, capture_output=True,
                         text=True, check=False, env={"PATH": "/usr/bin:/bin"})
    assert lab.returncode == 0 and lab.stdout != done.stdout
    assert lab.stdout.count("|--") < done.stdout.count("|--")  # the lab is the smaller environment


def test_the_shared_help_is_what_invoke_shows_for_each_task_that_has_the_option() -> None:
    # (Invoke consumes a task's help dict when it parses the task, so ask it the way people do)
    shown = {}
    for name in ("drift", "deploy", "converge"):
        done = subprocess.run([sys.executable, "-m", "invoke", "--help", name], cwd=ROOT, capture_output=True,
                              text=True, check=False, env={"PATH": "/usr/bin:/bin", "COLUMNS": "400"})
        assert done.returncode == 0, done.stderr
        shown[name] = " ".join(done.stdout.split())
    for name, text in shown.items():
        assert options.HELP["env"] in text, name
    assert options.HELP["output"] in shown["drift"] and options.HELP["output"] in shown["deploy"]
