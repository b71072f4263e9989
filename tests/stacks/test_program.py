"""The stack programs under ``pulumi.runtime.set_mocks``, set before the program is imported.

Each test runs in a fresh context (Pulumi's settings are context variables), sets the
mocks and the stack config, then imports ``stacks/<project>/__main__.py``.
"""

from __future__ import annotations

import contextvars
import importlib.util
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from dualdc.stacks.programs import StackProgramError

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


def run_program(project: str, stack: str, config: dict[str, str], secret_keys: list[str] | None = None,
                mocks: Recorder | None = None) -> Recorder:
    """Set the mocks, then import the program (which declares its resources on import)."""
    mocks = mocks or Recorder()

    def work() -> Recorder:
        pulumi.runtime.set_mocks(mocks, project=f"dualdc-{project}", stack=stack, preview=False)
        pulumi.runtime.set_all_config(config, secret_keys or [])

        @pulumi.runtime.test
        def program() -> None:
            spec = importlib.util.spec_from_file_location(f"dualdc_stack_{project}_{stack}",
                                                          ROOT / "stacks" / project / "__main__.py")
            assert spec is not None and spec.loader is not None
            spec.loader.exec_module(importlib.util.module_from_spec(spec))

        program()
        return mocks

    return contextvars.Context().run(work)


def test_site_program_declares_components_with_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUALDC_ENV", raising=False)
    mocks = run_program("site", "jeonju", {"dualdc-site:environment": "lab", "dualdc-site:site": "jeonju"})
    types = {r.typ for r in mocks.resources}
    assert {"dualdc:site:ClusterBaseline", "dualdc:site:TenantNamespace", "pulumi:providers:kubernetes",
            "kubernetes:core/v1:Namespace", "kubernetes:networking.k8s.io/v1:NetworkPolicy"} <= types
    providers = [r for r in mocks.resources if r.typ == "pulumi:providers:kubernetes"]
    assert sorted(r.inputs["context"] for r in providers) == ["jeonju-core", "jeonju-dmz"]
    # every Kubernetes object goes through one of the site's cluster providers
    for res in mocks.resources:
        if res.typ.startswith("kubernetes:"):
            assert res.provider and "::k8s-jeonju-" in res.provider, res.name


def test_kube_contexts_come_from_stack_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUALDC_ENV", raising=False)
    mocks = run_program("site", "gwangju", {
        "dualdc-site:environment": "lab", "dualdc-site:site": "gwangju",
        "dualdc-site:kubeContexts": json.dumps({"gwangju-core": "admin@gj-core"})})
    contexts = {r.name: r.inputs["context"] for r in mocks.resources
                if r.typ == "pulumi:providers:kubernetes"}
    assert contexts == {"k8s-gwangju-core": "admin@gj-core", "k8s-gwangju-dmz": "gwangju-dmz"}


def test_environment_variable_overrides_the_stack_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUALDC_ENV", "no-such-env")
    with pytest.raises(StackProgramError, match="no-such-env"):
        run_program("site", "gwangju", {"dualdc-site:environment": "lab", "dualdc-site:site": "gwangju"})


def test_unknown_site_stops_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUALDC_ENV", raising=False)
    with pytest.raises(StackProgramError, match="seoul"):
        run_program("site", "seoul", {"dualdc-site:environment": "lab", "dualdc-site:site": "seoul"})


def test_replication_secrets_are_pulumi_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The program passes secret config on as secrets only: the value never appears in the clear."""
    monkeypatch.delenv("DUALDC_ENV", raising=False)
    password = "r3plication-Pa55-for-test"
    key_secret = "object-store-key-for-test"
    config = {
        "dualdc-replication:environment": "production",
        "dualdc-replication:replicationPasswords": json.dumps(
            {s: password for s in ("kj-card-services", "jb-card-services", "group-hr")}),
        "dualdc-replication:objectStoreCredentials": json.dumps(
            {s: {"accessKeyId": "AKIATEST", "secretAccessKey": key_secret} for s in ("gwangju", "jeonju")}),
    }
    secret_keys = ["dualdc-replication:replicationPasswords", "dualdc-replication:objectStoreCredentials"]
    # production: its three cnpg databases (the core-banking ones run on hosts, not in a cluster)
    mocks = run_program("replication", "production", config, secret_keys)
    secrets = [r for r in mocks.resources if r.typ == "kubernetes:core/v1:Secret"]
    # a password per database side, and an object-store key per Velero backup location (one per
    # cluster whose workloads back up to another site: both core clusters and Gwangju's AI cluster)
    locations = [r for r in mocks.resources if (r.inputs or {}).get("kind") == "BackupStorageLocation"]
    assert len(locations) == 3
    assert len(secrets) == 3 * 2 + len(locations)
    for res in secrets:
        data = res.inputs["stringData"]
        assert data.get(SECRET_SIG_KEY), f"{res.name}: stringData is not marked secret"
        value = data["value"]
        assert password in value.values() or any(key_secret in v for v in value.values())
    for res in mocks.resources:
        if res.typ == "kubernetes:core/v1:Secret":
            continue
        assert password not in json.dumps(res.inputs) and key_secret not in json.dumps(res.inputs), res.name


def test_missing_secrets_stop_the_program_before_any_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUALDC_ENV", raising=False)
    mocks = Recorder()
    with pytest.raises(StackProgramError) as exc:
        run_program("replication", "production", {"dualdc-replication:environment": "production"},
                    mocks=mocks)
    assert mocks.resources == [], "nothing is declared when a secret is missing"
    text = str(exc.value)
    assert ("pulumi config set --secret --path 'replicationPasswords.kj-card-services' --stack production"
            in text)
    assert "objectStoreCredentials.jeonju.secretAccessKey" in text
