"""The ``jbfg.dualdc`` Ansible collection, assembled from the repository's own files.

Git keeps one copy of every role and plugin, where the repository uses them from its root
(``roles/``, ``plugins/``, ``src/dualdc/ansible/*_plugins``); ``collection/`` holds only
what is the collection's own (``galaxy.yml``, ``meta/runtime.yml``, README, licence).
:func:`plan` maps each source file to its place in the collection's layout, and
:func:`assemble` writes that tree to ``build/ansible_collections/jbfg/dualdc``, where
``ansible-galaxy collection build`` packs it and ``ansible-test`` can check it.

The mapping is by folder, so a role or a plugin added to the repository is in the next
build without touching this file:

================================================  =======================================
repository                                        collection
================================================  =======================================
``collection/**``                                 ``./**``
``roles/<role>/**`` (but ``library/``)            ``roles/<role>/**``
``roles/<role>/library/<module>.py``              ``plugins/modules/<module>.py``
``plugins/<type>/<plugin>.py``                    ``plugins/<type>/<plugin>.py``
``src/dualdc/ansible/callback_plugins/<x>.py``    ``plugins/callback/<x>.py``
``src/dualdc/ansible/strategy_plugins/<x>.py``    ``plugins/strategy/<x>.py``
``playbooks/<name>.yml``                          ``playbooks/<name>.yml``
================================================  =======================================

Collection roles cannot carry plugins (ansible-core loads ``library/`` only for roles
outside a collection), so role modules move to ``plugins/modules``; the roles call them by
short name, which resolves in the role's own collection first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "jbfg"
NAME = "dualdc"
FQCN = f"{NAMESPACE}.{NAME}"
#: Files never packed: caches and editor leftovers.
SKIPPED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".retry", ".swp", "~")
#: Plugin folders of the repository's Python package → the collection's plugin type.
PACKAGE_PLUGINS = {
    Path("src/dualdc/ansible/callback_plugins"): "callback",
    Path("src/dualdc/ansible/strategy_plugins"): "strategy",
}


class CollectionError(Exception):
    """The repository cannot be packed as the collection (two files for one place, no galaxy.yml)."""


@dataclass(frozen=True)
class Entry:
    """One file of the collection and the repository file it is."""

    source: Path
    """Repository file, relative to the repository root."""
    target: Path
    """Place in the collection, relative to its root."""


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not SKIPPED_PARTS.intersection(p.parts)
        and not p.name.endswith(SKIPPED_SUFFIXES)
    )


def plan(root: Path = ROOT) -> list[Entry]:
    """Every file of the collection, in target order; raises when two sources claim one target."""
    entries: list[Entry] = []
    for path in _files(root / "collection"):
        entries.append(Entry(path.relative_to(root), path.relative_to(root / "collection")))
    roles = sorted(p for p in (root / "roles").iterdir() if p.is_dir()) if (root / "roles").is_dir() else []
    for role in roles:
        for path in _files(role):
            inside = path.relative_to(role)
            if inside.parts[0] == "library":
                if path.suffix == ".py" and len(inside.parts) == 2:
                    entries.append(Entry(path.relative_to(root), Path("plugins/modules") / path.name))
                continue
            entries.append(Entry(path.relative_to(root), Path("roles") / role.name / inside))
    for path in _files(root / "plugins"):
        if path.suffix == ".py":
            entries.append(Entry(path.relative_to(root), path.relative_to(root)))
    for folder, kind in PACKAGE_PLUGINS.items():
        for path in _files(root / folder):
            if path.suffix == ".py" and path.name != "__init__.py":
                entries.append(Entry(path.relative_to(root), Path("plugins") / kind / path.name))
    for path in sorted((root / "playbooks").glob("*.yml")):
        entries.append(Entry(path.relative_to(root), Path("playbooks") / path.name))
    claimed: dict[Path, Path] = {}
    clashes = []
    for entry in entries:
        if entry.target in claimed:
            clashes.append(f"{entry.target}: from both {claimed[entry.target]} and {entry.source}")
        claimed[entry.target] = entry.source
    if clashes:
        raise CollectionError("two repository files map to one collection file:\n  " + "\n  ".join(clashes))
    if Path("galaxy.yml") not in claimed:
        raise CollectionError(f"{root / 'collection' / 'galaxy.yml'} is missing")
    return sorted(entries, key=lambda e: e.target.as_posix())


def galaxy(root: Path = ROOT) -> dict[str, object]:
    """The collection's ``galaxy.yml``."""
    data = yaml.safe_load((root / "collection" / "galaxy.yml").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise CollectionError("collection/galaxy.yml: expected a mapping")
    return data


def tree(out: Path) -> Path:
    """Where :func:`assemble` puts the collection under ``out``."""
    return out / "ansible_collections" / NAMESPACE / NAME


def assemble(out: Path, root: Path = ROOT) -> Path:
    """Write the collection tree under ``out`` (replacing an older one); returns its root."""
    entries = plan(root)
    dest = tree(out)
    if dest.exists():
        shutil.rmtree(dest)
    for entry in entries:
        target = dest / entry.target
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / entry.source, target)
    return dest


def tool(name: str) -> str:
    """An Ansible command-line tool: the one next to this Python (the venv's), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def _run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a tool; its output on success, a :class:`CollectionError` with its output on failure."""
    try:
        done = subprocess.run(args, cwd=cwd, env=env, check=False, capture_output=True, text=True)
    except OSError as exc:
        raise CollectionError(f"cannot run {args[0]}: {exc}") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        what = " ".join([Path(args[0]).name, *args[1:3]])
        raise CollectionError(f"{what} failed (exit {done.returncode}):\n{output}")
    return done.stdout


def build(out: Path, root: Path = ROOT) -> Path:
    """Assemble the collection under ``out`` and build its tarball there; returns the tarball."""
    dest = assemble(out, root)
    info = galaxy(root)
    tarball = out / f"{NAMESPACE}-{NAME}-{info['version']}.tar.gz"
    _run([tool("ansible-galaxy"), "collection", "build", "--force", "--output-path", str(out), str(dest)])
    if not tarball.is_file():
        raise CollectionError(f"ansible-galaxy built no {tarball}")
    return tarball


def install(tarball: Path, collections_path: Path) -> Path:
    """Install the tarball offline into ``collections_path``; returns the installed collection."""
    _run([tool("ansible-galaxy"), "collection", "install", "--offline", "--force",
          "-p", str(collections_path), str(tarball)], cwd=collections_path)
    return tree(collections_path)


#: ansible-test sanity tests that cannot run here, and why. Each of them runs in a virtual
#: environment of pinned tools that ansible-test creates by downloading pip's bootstrap
#: script from ci-files.testing.ansible.com, which an air-gapped machine cannot reach.
#: (``pslint`` skips itself where PowerShell is missing; the collection has no PowerShell.)
SANITY_SKIPPED = {
    test: "needs ansible-test's own virtual environment, bootstrapped from ci-files.testing.ansible.com"
    for test in ("ansible-doc", "changelog", "import", "pep8", "pylint", "runtime-metadata",
                 "validate-modules", "yamllint")
}


def sanity(collection: Path, python: str = "3.11") -> str:
    """``ansible-test sanity`` on an installed or assembled collection (every offline test)."""
    if collection.parts[-3:] != ("ansible_collections", NAMESPACE, NAME):
        raise CollectionError(f"{collection}: ansible-test needs the collection at "
                              f"ansible_collections/{NAMESPACE}/{NAME}")
    args = [tool("ansible-test"), "sanity", "--python", python, "--color", "no"]
    for test in sorted(SANITY_SKIPPED):
        args += ["--skip-test", test]
    env = dict(os.environ)
    # shellcheck and the other tools of the venv, for the tests that call them.
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return _run(args, cwd=collection, env=env)


EE_DEFINITION = "execution-environment.yml"
#: Inputs the execution environment's definition names, staged from the repository's builds.
EE_INPUTS = Path("build/ee-inputs")


def ee_context(context: Path, root: Path = ROOT) -> Path:
    """Build the collection and dualdc's wheel, stage them, run ``ansible-builder create``.

    Returns the build context (``Containerfile`` and ``_build/``), which ``podman build``
    turns into the image.
    """
    inputs = root / EE_INPUTS
    if inputs.exists():
        shutil.rmtree(inputs)
    (inputs / "collections").mkdir(parents=True)
    (inputs / "wheels").mkdir(parents=True)
    tarball = build(root / "build" / "collection", root)
    shutil.copy2(tarball, inputs / "collections" / f"{NAMESPACE}-{NAME}.tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
          "--wheel-dir", str(inputs / "wheels"), str(root)])
    if context.exists():
        shutil.rmtree(context)
    _run([tool("ansible-builder"), "create", "--file", str(root / EE_DEFINITION), "--context", str(context),
          "--output-filename", "Containerfile"], cwd=root)
    return context
