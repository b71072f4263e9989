"""Developer tasks: the test suite, linters, benchmarks."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from dualdc.base.paths import project_root

ROOT = project_root()


@task(help={"quick": "Skip the lab tests (they need root and build namespaces).",
            "k": "Only tests matching this pytest -k expression.",
            "x": "Stop at the first failure."})
def test(c: Context, quick: bool = False, k: str = "", x: bool = False) -> None:
    """Run the whole test suite (pytest); exit non-zero on failure or when no test ran."""
    args = [sys.executable, "-m", "pytest"]
    if quick:
        args += ["-m", "not lab"]
    if k:
        args += ["-k", k]
    if x:
        args.append("-x")
    c.run(" ".join(_quote(a) for a in args), pty=False)


@task
def lint(c: Context) -> None:
    """Run ruff, mypy (strict on src/) and ansible-lint (production profile)."""
    c.run(f"{sys.executable} -m ruff check src tests tasks.py benchmarks plugins")
    c.run(f"{sys.executable} -m mypy")
    if (ROOT / "roles").is_dir() and any((ROOT / "roles").iterdir()):
        c.run(f"{Path(sys.executable).parent / 'ansible-lint'}")


@task(help={"only": "Only this benchmark (dr: bench_dr.py), else those whose file name holds the text."})
def bench(c: Context, only: str = "") -> None:
    """Run every benchmark in benchmarks/ and print its figures."""
    files = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    named = [f for f in files if f.stem in (only, f"bench_{only}")]  # --only dr is not also drift
    files = named or [f for f in files if only in f.name]
    if not files:
        print("no benchmark matched", file=sys.stderr)
        sys.exit(1)
    for file in files:
        print(f"== {file.stem}", flush=True)
        c.run(f"{sys.executable} {_quote(str(file))}")


def _quote(text: str) -> str:
    return shlex.quote(text)
