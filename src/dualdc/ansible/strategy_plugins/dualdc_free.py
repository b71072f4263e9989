"""Ansible strategy ``dualdc_free``: the free strategy over Mitogen, with warm caches in every worker.

Why. On a controller with few cores, a check of the site playbook is CPU-bound, and two costs
dominate it (measured with py-spy on the lab twin):

- **On the hosts**, every module run starts a Python interpreter and imports Ansible's module
  utilities from a fresh AnsiballZ zip (no bytecode cache), about 0.3 CPU-s a module. Mitogen
  (``mitogen_free``) keeps one interpreter per host over the same SSH connection, with the
  module utilities imported once.
- **On the controller**, Ansible forks a worker process for every task on every host. Each
  worker inherits the parent's caches as they were at the fork, and the parent never loads
  Jinja's filter and test plugins itself, so every worker imported and wrapped all of them
  again the first time a task used one. Loading them once in the parent, before the first
  fork, hands every worker a warm cache. ``gc.freeze()`` then moves the parent's objects out
  of the collector's reach, so workers neither scan them nor copy their pages on write.
- **Also on the controller**, every worker compiled each Jinja template of its task (the
  arguments, the ``when`` conditions, the role's template files) from scratch, although the
  same task on the other hosts had just compiled the same text. Jinja's own answer to this is
  a bytecode cache: compiled code is marshalled to a file and loaded instead of compiled
  again. Ansible uses no bytecode cache, and ``from_string`` would bypass one; this strategy
  keeps one for the run in Ansible's private local temporary directory (mode 0700, removed
  when the run ends), keyed by the template text and every environment setting that shapes
  the compiled code. Rendering still happens in every worker, with that host's variables.

Mitogen also pins processes to CPUs (``ansible_mitogen.affinity``). Its policy was tuned on a
16-thread machine: below 4 cores it keeps CPU 0 for the connection multiplexer and pins the
top-level process, every worker and their SSH children to the remaining core, which on a
2-core controller leaves half the machine idle while the run queue is long, and puts the
runs of both sites on the same core. This strategy leaves placement to the kernel's
scheduler (Mitogen's own no-op ``Policy``).

The tasks, their order, their conditions, check and diff mode and the results are those of
Ansible's own free strategy: this changes how tasks are carried out, never which. It is
enabled by dualdc's ansible-runner wrapper (``ANSIBLE_STRATEGY_PLUGINS``); stock
``ansible-playbook`` runs keep Ansible's defaults.
"""

from __future__ import annotations

import gc
import hashlib
import marshal
import os
import tempfile
from collections.abc import Callable
from types import CodeType
from typing import Any

import ansible_mitogen.affinity
import ansible_mitogen.loaders
import ansible_mitogen.strategy
from ansible import constants as C

# ansible-core 2.19 moved its Jinja environment behind the private templating engine; the class
# is still the one every template of a run compiles through (the public ``Templar`` wraps it).
from ansible._internal._templating._jinja_bits import AnsibleEnvironment
from ansible.plugins.loader import filter_loader, test_loader

DOCUMENTATION = r"""
name: dualdc_free
short_description: The free strategy over Mitogen, with plugin caches warmed before workers fork
description:
  - Runs like Ansible's free strategy (each host at its own pace) through Mitogen's connection
    multiplexer, and loads the Jinja filter and test plugins once in the controller so that
    every forked worker inherits them.
requirements:
  - mitogen (ansible_mitogen) importable by the controller's Python
"""

_Free: Any = ansible_mitogen.loaders.strategy_loader.get("free", class_only=True)


def warm_caches() -> None:
    """Load what every worker would otherwise load for itself, then freeze the parent's heap."""
    for loader in (filter_loader, test_loader):
        # Jinja2Loader builds its table of every builtin and legacy plugin on first use.
        for _plugin in loader.all():
            pass
    gc.collect()
    gc.freeze()


def _settings(env: Any) -> tuple[object, ...]:
    """Every setting of a Jinja environment that shapes the code it compiles a template to."""
    finalize = env.finalize
    return (
        type(env).__module__, type(env).__qualname__, env.code_generator_class.__qualname__,
        env.block_start_string, env.block_end_string, env.variable_start_string, env.variable_end_string,
        env.comment_start_string, env.comment_end_string, env.line_statement_prefix,
        env.line_comment_prefix, env.trim_blocks, env.lstrip_blocks, env.newline_sequence,
        env.keep_trailing_newline, tuple(sorted(env.extensions)), env.optimized, env.is_async,
        "callable" if callable(env.autoescape) else bool(env.autoescape),
        None if finalize is None else getattr(finalize, "__qualname__", type(finalize).__qualname__),
    )


class CompiledTemplates:
    """A bytecode cache for templates compiled from strings, shared by the run's processes.

    Each entry is one file (the compiled code, marshalled) named by a digest of the template's
    text, name and file name and of the environment's settings; it is written to a temporary
    name and renamed, so a reader sees a whole entry or none. Anything unexpected falls back to
    compiling, as Ansible would.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.memory: dict[str, CodeType] = {}

    def key(self, env: Any, source: str, name: str | None, filename: str | None, defer_init: bool) -> str:
        digest = hashlib.sha256(repr((_settings(env), name, filename, defer_init)).encode())
        digest.update(source.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def load(self, key: str) -> CodeType | None:
        code = self.memory.get(key)
        if code is not None:
            return code
        try:
            with open(os.path.join(self.directory, key), "rb") as handle:
                # Our own entries, in the run's private directory (mode 0700), as Jinja's bytecode cache.
                loaded = marshal.load(handle)  # noqa: S302
        except (OSError, EOFError, ValueError, TypeError):
            return None
        if isinstance(loaded, CodeType):
            self.memory[key] = loaded
            return loaded
        return None

    def store(self, key: str, code: CodeType) -> None:
        self.memory[key] = code
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".part-")
            with os.fdopen(fd, "wb") as handle:
                marshal.dump(code, handle)
            os.replace(tmp, os.path.join(self.directory, key))
        except OSError:
            return

    def install(self) -> Callable[[], None]:
        """Route AnsibleEnvironment.compile through the cache; return the function that undoes it."""
        original = AnsibleEnvironment.compile
        cache = self

        # Jinja's Environment.compile signature, positional parameters and all.
        def compile(env: Any, source: Any, name: str | None = None, filename: str | None = None,  # noqa: PLR0917
                    raw: bool = False, defer_init: bool = False) -> Any:
            if raw or not isinstance(source, str):
                return original(env, source, name, filename, raw, defer_init)
            key = cache.key(env, source, name, filename, defer_init)
            code = cache.load(key)
            if code is None:
                code = original(env, source, name, filename, raw, defer_init)
                if isinstance(code, CodeType):
                    cache.store(key, code)
            return code

        AnsibleEnvironment.compile = compile

        def remove() -> None:
            AnsibleEnvironment.compile = original

        return remove


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Free):  # type: ignore[misc]
    def run(self, iterator: Any, play_context: Any, result: int = 0) -> Any:
        # Before Mitogen's worker model starts (it asks the policy where to run each process).
        ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()
        remove = CompiledTemplates(os.path.join(C.DEFAULT_LOCAL_TMP, "dualdc-jinja")).install()
        try:
            warm_caches()
            return super().run(iterator, play_context)
        finally:
            remove()
