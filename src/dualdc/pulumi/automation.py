"""Drive the stacks through Pulumi's Automation API with a self-managed backend.

- **Backend.** Default: a local file backend per environment,
  ``file://<repo>/.state/<env>/pulumi`` (gitignored). For CI in the data centers an
  S3-compatible bucket, e.g.
  ``s3://dualdc-pulumi?endpoint=objects.dc.example:9000&s3ForcePathStyle=true``, is given by
  ``DUALDC_PULUMI_BACKEND`` (or ``--backend``). Never the Pulumi Cloud service.
- **Secrets.** The passphrase secrets provider; the passphrase comes only from the
  environment (``PULUMI_CONFIG_PASSPHRASE`` or ``PULUMI_CONFIG_PASSPHRASE_FILE``) and is
  never printed: engine output passes through :func:`dualdc.base.redact.scrub`.
- **Air gap.** The ``pulumi`` CLI and the Kubernetes resource plugin must be installed
  from files; where either is missing every operation stops with
  :class:`PulumiUnavailable` saying how to install it (exit 1). Nothing is faked.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path

from pulumi import automation as auto
from pulumi.automation.errors import CommandError, InvalidVersionError

from dualdc.base.paths import project_state
from dualdc.base.redact import scrub, shown
from dualdc.render import StackTarget
from dualdc.stacks.config import ENV_OVERRIDE

BACKEND_ENV = "DUALDC_PULUMI_BACKEND"
PASSPHRASE_ENV = "PULUMI_CONFIG_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
PASSPHRASE_FILE_ENV = "PULUMI_CONFIG_PASSPHRASE_FILE"  # noqa: S105 - a variable name
ALLOWED_SCHEMES = ("file://", "s3://")


def kubernetes_plugin_version() -> str:
    """The Kubernetes resource plugin version matching the installed pulumi-kubernetes SDK."""
    return importlib.metadata.version("pulumi_kubernetes")


def install_help() -> str:
    version = kubernetes_plugin_version()
    return (
        "How to install it on an air-gapped machine:\n"
        "  1. On a machine with internet access, download the official Pulumi CLI release tarball for "
        "linux-x64 (pulumi-v3.<minor>.<patch>-linux-x64.tar.gz, from github.com/pulumi/pulumi/releases), "
        "check its SHA-256 against the release's checksums file, and copy it in (or take it from the "
        "internal mirror).\n"
        "  2. Unpack it and put the binaries on PATH, e.g.: tar -xzf pulumi-v*-linux-x64.tar.gz -C /opt && "
        "ln -s /opt/pulumi/pulumi /usr/local/bin/pulumi\n"
        f"  3. Install the Kubernetes provider plugin from its file the same way: pulumi plugin install "
        f"resource kubernetes v{version} --file pulumi-resource-kubernetes-v{version}-linux-amd64.tar.gz\n"
        "  'invoke render' needs none of this: it runs the stack programs under Pulumi's mock runtime.")


class PulumiUnavailable(Exception):
    """The Pulumi CLI, its Kubernetes plugin, the passphrase or the backend is missing (exit 1)."""


class PulumiFailed(Exception):
    """The engine ran and failed; the message is its (scrubbed) error output."""


class Operation(StrEnum):
    PREVIEW = "preview"
    UP = "up"
    REFRESH = "refresh"
    DESTROY = "destroy"


def find_cli() -> str:
    """The path of the ``pulumi`` CLI, or :class:`PulumiUnavailable` with install instructions."""
    found = shutil.which("pulumi")
    if found is None:
        raise PulumiUnavailable("the pulumi CLI is not installed (no 'pulumi' on PATH).\n" + install_help())
    return found


def backend_url(environment: str, override: str | None = None, state_root: Path | None = None) -> str:
    """The state backend of an environment: ``--backend``, ``DUALDC_PULUMI_BACKEND``, else a local dir."""
    url = override or os.environ.get(BACKEND_ENV)
    if url:
        if not url.startswith(ALLOWED_SCHEMES):
            raise PulumiUnavailable(f"backend {shown(url, 120)} is not self-managed: use file://<dir> or "
                                    "s3://<bucket>?endpoint=<host:port>&s3ForcePathStyle=true")
        if "@" in urllib.parse.urlsplit(url).netloc:
            raise PulumiUnavailable(f"backend {shown(url, 120)} carries credentials in its URL: give them "
                                    "through the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                    "for s3://), never on the command line")
        return url
    return (project_state(environment, state_root) / "pulumi").resolve().as_uri()


def check_passphrase(environ: dict[str, str] | None = None) -> None:
    """The passphrase provider needs the passphrase from the environment (never from a prompt)."""
    env = os.environ if environ is None else environ
    if env.get(PASSPHRASE_ENV):
        return
    file = env.get(PASSPHRASE_FILE_ENV)
    if file:
        if Path(file).is_file():
            return
        raise PulumiUnavailable(f"{PASSPHRASE_FILE_ENV} names {file}, which is not a readable file")
    raise PulumiUnavailable(f"set {PASSPHRASE_ENV} (or {PASSPHRASE_FILE_ENV}) to the stacks' secrets "
                            "passphrase; it is never read from a prompt or a file in the repository")


@dataclass(frozen=True)
class Outcome:
    """What one operation did (or, for preview, would do)."""

    stack: str
    operation: Operation
    changes: dict[str, int]
    """Resource operation -> count (``same``, ``create``, ``update``, ``delete``, ``replace``...)."""

    @property
    def changed(self) -> bool:
        return any(count for op, count in self.changes.items() if op != "same")


class StackRunner:
    """One stack of one environment, through a LocalWorkspace on its project folder."""

    def __init__(self, target: StackTarget, environment: str, backend: str | None = None,
                 on_output: Callable[[str], None] | None = None) -> None:
        self.target = target
        self.environment = environment
        self.backend = backend_url(environment, backend)
        self.on_output = on_output

    def env_vars(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {
            "PULUMI_BACKEND_URL": self.backend,
            ENV_OVERRIDE: self.environment,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": os.environ.get(
                "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", ""),
            # the language host runs the program with the python of this virtualenv
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        }

    def _stack(self) -> auto.Stack:
        find_cli()
        check_passphrase()
        if self.backend.startswith("file://"):
            Path(self.backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        env_vars = {k: v for k, v in self.env_vars().items() if v}
        try:
            command = auto.PulumiCommand()
        except (OSError, subprocess.CalledProcessError, InvalidVersionError) as exc:
            raise PulumiUnavailable(f"the pulumi CLI cannot be used: {exc}\n" + install_help()) from None
        opts = auto.LocalWorkspaceOptions(work_dir=str(self.target.folder), env_vars=env_vars,
                                          secrets_provider="passphrase", pulumi_command=command)
        try:
            stack = auto.create_or_select_stack(self.target.stack, work_dir=str(self.target.folder),
                                                opts=opts)
            self._check_plugin(stack.workspace)
        except CommandError as exc:
            raise PulumiFailed(scrub(str(exc))) from None
        return stack

    @staticmethod
    def _check_plugin(workspace: auto.Workspace) -> None:
        version = kubernetes_plugin_version()
        installed = {(p.name, p.kind, (p.version or "").lstrip("v")) for p in workspace.list_plugins()}
        if ("kubernetes", "resource", version) not in installed:
            raise PulumiUnavailable(
                f"the Kubernetes resource plugin v{version} is not installed, and nothing is downloaded at "
                f"run time.\n" + install_help())

    def _output(self, line: str) -> None:
        if self.on_output is not None:
            self.on_output(scrub(line))

    def run(self, operation: Operation, expect_no_changes: bool = False) -> Outcome:
        """Run one operation; raise :class:`PulumiUnavailable` or :class:`PulumiFailed`."""
        stack = self._stack()
        try:
            if operation is Operation.PREVIEW:
                result = stack.preview(on_output=self._output, diff=True, expect_no_changes=expect_no_changes)
                changes = dict(result.change_summary)
            elif operation is Operation.UP:
                up = stack.up(on_output=self._output, diff=True)
                changes = dict(up.summary.resource_changes or {})
            elif operation is Operation.REFRESH:
                refreshed = stack.refresh(on_output=self._output, expect_no_changes=expect_no_changes)
                changes = dict(refreshed.summary.resource_changes or {})
            else:
                destroyed = stack.destroy(on_output=self._output)
                changes = dict(destroyed.summary.resource_changes or {})
        except CommandError as exc:
            raise PulumiFailed(scrub(str(exc))) from None
        return Outcome(self.target.label, operation, {_op(k): int(v) for k, v in changes.items()})


def _op(key: object) -> str:
    """An engine operation name (``create``...), whether it arrives as a string or an OpType."""
    return str(key.value) if isinstance(key, Enum) else str(key)
