"""Packaging tasks: the ``jbfg.dualdc`` Ansible collection and the execution environment."""

from __future__ import annotations

import tempfile
from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from dualdc import cli
from dualdc import collection as coll


def _fail(exc: coll.CollectionError | OSError) -> Exception:
    """Exit 1 with one readable message (a file the build cannot write, a tool that failed)."""
    if isinstance(exc, OSError):
        return cli.input_error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    return cli.input_error(str(exc))


@task(help={
    "out": "Folder for the assembled tree (ansible_collections/jbfg/dualdc) and the tarball "
           "(default: build/collection).",
    "sanity": "Then install the tarball into a temporary folder and run ansible-test sanity on it "
              "(the tests that run offline; docs/collection.md says which are skipped and why).",
})
def collection(c: Context, out: str = "build/collection", sanity: bool = False) -> None:
    """Build the jbfg.dualdc collection tarball from the repository's roles and plugins.

    Exit 0: built (and, with --sanity, sane); 1: the repository cannot be packed or a check failed.
    """
    target = Path(out).resolve()
    try:
        tarball = coll.build(target)
        print(f"built {tarball}")
        if sanity:
            with tempfile.TemporaryDirectory(prefix="dualdc-sanity-") as tmp:
                installed = coll.install(tarball, Path(tmp))
                print(coll.sanity(installed), end="")
            skipped = ", ".join(sorted(coll.SANITY_SKIPPED))
            print(f"ansible-test sanity passed; skipped (no network for their tool venvs): {skipped}")
    except (coll.CollectionError, OSError) as exc:
        raise _fail(exc) from None


@task(help={"context": "Folder for the build context (default: build/ee)."})
def ee(c: Context, context: str = "build/ee") -> None:
    """Build the execution environment's context (ansible-builder create): collection, wheel, Containerfile.

    Then, where podman exists: podman build -t dualdc-ee:VERSION -f build/ee/Containerfile build/ee
    Exit 0: the context is ready; 1: a step failed (its output says which).
    """
    try:
        where = coll.ee_context(Path(context).resolve())
    except (coll.CollectionError, OSError) as exc:
        raise _fail(exc) from None
    print(f"build context: {where}\n"
          f"build it with: podman build -t dualdc-ee:{coll.galaxy()['version']} "
          f"-f {where / 'Containerfile'} {where}")
