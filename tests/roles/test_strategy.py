"""The dualdc_free strategy's own parts: the compiled-template cache and the warm-up before forks.

That the strategy runs playbooks with the same results as Ansible's free and linear strategies
is tested end to end in test_runner.py (a real playbook through ansible-runner) and on the lab.
"""

from __future__ import annotations

import gc
import json
import marshal
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import CodeType

import pytest
from ansible._internal._templating._jinja_bits import AnsibleEnvironment
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader
from ansible.template import Templar, trust_as_template

from dualdc.ansible import PlaybookRun, run_playbook
from dualdc.ansible.strategy_plugins import dualdc_free
from dualdc.ansible.strategy_plugins.dualdc_free import CompiledTemplates

TEMPLATES = [
    "{{ name | upper }} has {{ ports | length }} ports: {{ ports | join(',') }}",
    "{% if name is match('gj-') %} True {% else %} False {% endif %}",
    "{{ ports | map('int') | select('gt', 100) | list | to_json }}",
    "{{ 'constant' | upper }} {{ name }}",
]
VARIABLES = {"name": "gj-log-01", "ports": [22, 514, 123]}


def render_all(variables: dict[str, object]) -> list[object]:
    templar = Templar(loader=DataLoader(), variables=variables)
    return [templar.template(trust_as_template(text)) for text in TEMPLATES]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[CompiledTemplates]:
    cache = CompiledTemplates(str(tmp_path / "jinja"))
    remove = cache.install()
    try:
        yield cache
    finally:
        remove()


def test_cached_templates_render_as_ansible_renders_them(tmp_path: Path) -> None:
    expected = render_all(VARIABLES)
    other = {"name": "jj-ntp-01", "ports": [123]}
    expected_other = render_all(other)
    original = AnsibleEnvironment.compile
    cache = CompiledTemplates(str(tmp_path / "jinja"))
    remove = cache.install()
    try:
        assert AnsibleEnvironment.compile is not original
        assert render_all(VARIABLES) == expected  # compiled and stored
        stored = {p.name for p in (tmp_path / "jinja").iterdir()}
        assert len(stored) >= len(TEMPLATES) and not any(n.startswith(".part-") for n in stored)
        # Another process of the run (an empty memory) loads them from disk, with its own variables.
        cache.memory.clear()
        assert render_all(other) == expected_other
        assert len(cache.memory) >= len(TEMPLATES)
    finally:
        remove()
    assert AnsibleEnvironment.compile is original


def test_the_key_follows_every_setting_that_shapes_the_code(cache: CompiledTemplates) -> None:
    env = AnsibleEnvironment()
    text = "<< name >> {{ name }}"
    same = cache.key(env, text, None, None, False)
    assert cache.key(AnsibleEnvironment(), text, None, None, False) == same
    assert cache.key(env, text + " ", None, None, False) != same
    assert cache.key(env, text, "sshd_config.j2", None, False) != same
    assert cache.key(env.overlay(variable_start_string="<<", variable_end_string=">>"), text, None, None,
                     False) != same
    assert cache.key(env.overlay(trim_blocks=not env.trim_blocks), text, None, None, False) != same
    # Delimiters overridden in a template's header (#jinja2:) compile to other code: the overlay
    # reads `<< name >>` as the expression and `{{ name }}` as text, the default the other way round.
    overlay = env.overlay(variable_start_string="<<", variable_end_string=">>")
    overlaid, default = overlay.compile(text, raw=True), env.compile(text, raw=True)
    assert overlaid != default
    assert "yield ' {{ name }}'" in overlaid and "yield '<< name >> '" in default


def test_a_damaged_entry_is_compiled_again(cache: CompiledTemplates) -> None:
    expected = render_all(VARIABLES)
    for entry in Path(cache.directory).iterdir():
        entry.write_bytes(b"not marshalled code")
    cache.memory.clear()
    assert render_all(VARIABLES) == expected
    # ... and stored again, whole.
    for entry in Path(cache.directory).iterdir():
        assert isinstance(marshal.loads(entry.read_bytes()), CodeType)


def test_an_unwritable_cache_still_compiles(tmp_path: Path) -> None:
    expected = render_all(VARIABLES)
    blocked = tmp_path / "file"
    blocked.write_text("a file where the directory would be")
    cache = CompiledTemplates(str(blocked / "jinja"))
    remove = cache.install()
    try:
        assert render_all(VARIABLES) == expected
        cache.memory.clear()
        assert render_all(VARIABLES) == expected
        assert blocked.is_file()
    finally:
        remove()


def test_warm_up_loads_the_jinja_plugins_before_any_fork() -> None:
    try:
        dualdc_free.warm_caches()
        loaded = {plugin.ansible_name for plugin in filter_loader.all()}
        assert {"ansible.builtin.to_json", "ansible.builtin.regex_replace"} <= loaded
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs at least 2 CPUs to see pinning")
def test_no_process_of_the_run_is_pinned_to_a_cpu(tmp_path: Path) -> None:
    """Mitogen's own policy would pin the multiplexer to CPU 0 and its children to the others."""
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    (tmp_path / "hosts.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "playbooks" / "cpus.yml").write_text(PLAYBOOK)
    result = run_playbook(PlaybookRun(env="fixture", root=tmp_path, playbook="playbooks/cpus.yml",
                                      inventory="hosts.ini", strategy="dualdc_free"))
    assert result.exit_code() == 0, result.error
    events = [json.loads(p.read_text()) for p in (result.artifacts_dir / "job_events").glob("*.json")]
    outputs = [e["event_data"]["res"]["stdout"] for e in events
               if e["event"] == "runner_on_ok" and e["event_data"].get("task") == "Read the CPUs"]
    allowed = {int(cpu) for cpu in os.sched_getaffinity(0)}
    assert outputs == [" ".join(str(cpu) for cpu in sorted(allowed))]


PLAYBOOK = """
- name: Where the module runs
  hosts: all
  gather_facts: false
  tasks:
    - name: Read the CPUs
      ansible.builtin.command:
        argv: ["python3", "-c", "import os; print(*sorted(os.sched_getaffinity(0)))"]
      changed_when: false
"""
