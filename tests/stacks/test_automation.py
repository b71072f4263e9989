"""The Automation API wrapper: self-managed backend, passphrase, and the missing-CLI path.

Tests marked ``pulumi_cli`` drive the real engine and skip (with the reason) where the
``pulumi`` CLI is not installed; the others prove what happens without it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from dualdc import cli
from dualdc.loader import load_environment
from dualdc.model import Topology
from dualdc.pulumi import (
    Operation,
    PulumiFailed,
    PulumiUnavailable,
    StackRunner,
    backend_url,
    check_passphrase,
)
from dualdc.pulumi.automation import kubernetes_plugin_version
from dualdc.render import StackTarget
from dualdc.tasks import stacks as stacks_tasks

ROOT = Path(__file__).resolve().parents[2]
SITE = StackTarget(ROOT / "stacks" / "site", "dualdc-site", "gwangju")


@pytest.fixture
def no_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH without pulumi, wherever the tests run."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "not-used-because-the-cli-is-missing")


@pytest.mark.parametrize("operation", list(Operation))
@pytest.mark.usefixtures("no_cli")
def test_every_operation_stops_with_install_help_without_the_cli(operation: Operation,
                                                                 tmp_path: Path) -> None:
    state = tmp_path / "state"
    runner = StackRunner(SITE, "production", backend=state.as_uri())
    with pytest.raises(PulumiUnavailable) as exc:
        runner.run(operation)
    text = str(exc.value)
    assert "pulumi CLI is not installed" in text
    assert "tarball" in text and "internal mirror" in text
    assert f"pulumi plugin install resource kubernetes v{kubernetes_plugin_version()} --file" in text
    assert not state.exists(), "nothing is created when the CLI is missing"


@pytest.mark.usefixtures("no_cli")
def test_preview_task_exits_1_with_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    topology = load_environment("lab")
    topology.environment.lab = False  # stands in for a real environment: preview gets past the lab check
    monkeypatch.setattr(cli, "load", lambda env=None, topology_path=None: topology)
    with pytest.raises(Exit) as exc:
        stacks_tasks.preview(Context(), env="lab", site="jeonju")
    assert exc.value.code == cli.ExitCode.INPUT
    assert "pulumi CLI is not installed" in str(exc.value.message)


def test_preview_refuses_the_lab_and_points_to_render(lab: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "load", lambda env=None, topology_path=None: lab)
    with pytest.raises(Exit) as exc:
        stacks_tasks.preview(Context(), env="lab")
    assert exc.value.code == cli.ExitCode.INPUT
    assert "invoke render --env lab" in str(exc.value.message)


def test_backend_defaults_to_a_local_state_dir_per_environment(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.delenv("DUALDC_PULUMI_BACKEND", raising=False)
    url = backend_url("production", state_root=tmp_path / ".state")
    assert url == (tmp_path / ".state" / "production" / "pulumi").as_uri()
    assert backend_url("lab", state_root=tmp_path) != backend_url("production", state_root=tmp_path)


def test_backend_may_be_an_s3_compatible_bucket_but_not_a_saas(monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = "s3://dualdc-pulumi?endpoint=objects.dc.example:9000&s3ForcePathStyle=true"
    monkeypatch.setenv("DUALDC_PULUMI_BACKEND", bucket)
    assert backend_url("production") == bucket
    with pytest.raises(PulumiUnavailable, match="not self-managed"):
        backend_url("production", "https://api.pulumi.com")


def test_passphrase_comes_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(PulumiUnavailable, match="PULUMI_CONFIG_PASSPHRASE"):
        check_passphrase({})
    check_passphrase({"PULUMI_CONFIG_PASSPHRASE": "x" * 16})
    with pytest.raises(PulumiUnavailable, match="not a readable file"):
        check_passphrase({"PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "absent")})
    (tmp_path / "pass").write_text("secret-passphrase\n")
    check_passphrase({"PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "pass")})


def test_engine_environment_names_the_backend_and_environment(tmp_path: Path) -> None:
    runner = StackRunner(SITE, "production", backend=(tmp_path / "s").as_uri())
    env = runner.env_vars()
    assert env["PULUMI_BACKEND_URL"] == (tmp_path / "s").as_uri()
    assert env["DUALDC_ENV"] == "production"
    assert "PULUMI_CONFIG_PASSPHRASE" not in env, "the passphrase is inherited, never copied"


# --------------------------------------------------------------------------- with the real CLI


def _copy_tree(tmp_path: Path) -> Path:
    """The site project and the lab topology in a scratch repository (the committed files stay intact)."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "stacks" / "site", repo / "stacks" / "site")
    shutil.copytree(ROOT / "inventories" / "lab", repo / "inventories" / "lab")
    return repo


@pytest.mark.pulumi_cli
def test_preview_runs_through_the_real_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("pulumi") is None:
        pytest.skip("the pulumi CLI is not installed here (no registry carries it; see docs/stacks.md)")
    repo = _copy_tree(tmp_path)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster: {server: 'https://127.0.0.1:9'}\n"
        "contexts:\n- name: gwangju-core\n  context: {cluster: none, user: none}\n"
        "- name: gwangju-dmz\n  context: {cluster: none, user: none}\n"
        "users:\n- name: none\n  user: {token: none}\ncurrent-context: gwangju-core\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-passphrase-for-a-scratch-stack")
    state = tmp_path / "state"
    target = StackTarget(repo / "stacks" / "site", "dualdc-site", "gwangju")
    runner = StackRunner(target, "lab", backend=state.as_uri())
    try:
        outcome = runner.run(Operation.PREVIEW)
    except PulumiUnavailable as exc:
        pytest.skip(f"the engine is installed but not usable offline here: {exc}")
    except PulumiFailed as exc:
        # The scratch kubeconfig points nowhere: the engine may refuse to preview against it.
        assert "unreachable" in str(exc) or "connect" in str(exc), exc
        outcome = None
    assert any(state.rglob("gwangju.json*")), "the stack lives in the self-managed file backend"
    assert "encryptionsalt" in (target.folder / "Pulumi.gwangju.yaml").read_text()
    if outcome is not None:
        assert outcome.changes.get("create", 0) > 0
