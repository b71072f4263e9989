"""invoke render: deterministic output, stable names, offline schema validation, exit codes."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke.context import Context
from invoke.exceptions import Exit

from dualdc import cli, render
from dualdc.loader import load_environment, load_topology
from dualdc.model import Topology
from dualdc.stacks import validation
from dualdc.tasks import stacks as stacks_tasks

ROOT = Path(__file__).resolve().parents[2]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_renders_are_byte_identical(lab: Topology, tmp_path: Path) -> None:
    render.render(lab, out_root=tmp_path / "a")
    render.render(load_environment("lab"), out_root=tmp_path / "b")
    first, second = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert len(first) > 50
    assert first == second


def test_render_removes_stale_files(lab: Topology, tmp_path: Path) -> None:
    render.render(lab, site="gwangju", out_root=tmp_path)
    stale = tmp_path / "dualdc-site" / "gwangju" / "gwangju-core" / "_cluster" / "namespace-retired.yaml"
    stale.write_text("kind: Namespace\n")
    before = tree(tmp_path)
    render.render(lab, site="gwangju", out_root=tmp_path)
    assert not stale.exists()
    assert tree(tmp_path) == {k: v for k, v in before.items() if not k.endswith("namespace-retired.yaml")}
    assert not [p for p in tmp_path.rglob(".*") if p.name.startswith(".gwangju")], "no staging folder left"


def _shuffled_copy(src: Path, dst: Path, seed: int) -> None:
    """The environment's YAML with every entity list (and cluster tenant lists) shuffled."""
    rng = random.Random(seed)
    dst.mkdir(parents=True)
    for file in sorted(src.glob("*.yaml")):
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
        for key, value in data.items():
            if isinstance(value, list):
                rng.shuffle(value)
                for item in value:
                    if key == "clusters":
                        rng.shuffle(item["tenants"])
                    if key == "services":
                        rng.shuffle(item.get("clusters", []))
        (dst / f"{rng.randrange(10**6):06d}-{file.name}").write_text(
            yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.mark.parametrize("env", ["lab", "production"])
def test_names_and_output_do_not_depend_on_yaml_order(env: str, tmp_path: Path) -> None:
    src = ROOT / "inventories" / env
    if not any(src.glob("*.yaml")):
        pytest.skip(f"inventories/{env} has no topology yet")
    reference = render.render(load_environment(env), out_root=tmp_path / "ref")
    _shuffled_copy(src, tmp_path / "shuffled" / env, seed=7)
    shuffled_topology = load_topology(tmp_path / "shuffled" / env)
    shuffled = render.render(shuffled_topology, out_root=tmp_path / "out")
    names = {s.target.label: sorted(o.resource_name for o in s.objects) for s in reference}
    assert names == {s.target.label: sorted(o.resource_name for o in s.objects) for s in shuffled}
    assert tree(tmp_path / "ref") == tree(tmp_path / "out")


def _first(rendered: Any, kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(o for _, _, o in rendered.objects() if o["kind"] == kind))


@pytest.mark.parametrize("kind", ["NetworkPolicy", "Namespace", "ResourceQuota", "RoleBinding", "LimitRange",
                                  "Cluster", "Schedule", "BackupStorageLocation", "Secret"])
def test_every_rendered_kind_is_valid_and_a_broken_one_is_caught(rendered_lab: Any, kind: str,
                                                                 request: pytest.FixtureRequest) -> None:
    # the lab's databases run on hosts: its CloudNativePG Clusters are production's
    rendered = request.getfixturevalue("rendered_production") if kind == "Cluster" else rendered_lab
    obj = _first(rendered, kind)
    assert validation.errors(obj, "1.30") == []
    broken = copy.deepcopy(obj)
    target = broken.get("spec", broken)
    target["unexpectedField"] = True
    assert any("unexpectedField" in e for e in validation.errors(broken, "1.30"))


def test_wrong_types_are_caught() -> None:
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "x", "namespace": "y"},
              "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": 10}}]}]}}
    assert validation.errors(policy, "1.30")
    cluster = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
               "metadata": {"name": "a", "namespace": "b"},
               "spec": {"instances": "two", "storage": {"size": "1Gi"}, "bootstrap": {"initdb": {}}}}
    assert any(e.startswith("spec.instances") for e in validation.errors(cluster, "1.30"))
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"}}
    assert validation.errors(unknown, "1.30") == ["example.com/v1 Widget: no schema to validate against"]


def test_unbundled_kubernetes_version_cannot_be_validated() -> None:
    with pytest.raises(validation.UnsupportedVersion, match=r"1\.99"):
        validation.errors({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, "1.99")
    assert "1.30" in validation.supported_versions()


def _run_render(monkeypatch: pytest.MonkeyPatch, topology: Topology, out: Path, **kw: Any) -> None:
    monkeypatch.setattr(cli, "load", lambda env=None, topology_path=None: topology)
    stacks_tasks.render_(Context(), env=topology.environment.name, out=str(out), **kw)


def test_render_task_exits_2_on_an_invalid_object(monkeypatch: pytest.MonkeyPatch, lab: Topology,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dualdc.stacks import segmentation

    original = segmentation.PolicySpec.spec

    def broken(self: segmentation.PolicySpec) -> dict[str, Any]:
        body = original(self)
        if self.name == "default-deny":
            body["policyTypos"] = ["Ingress"]
        return body

    monkeypatch.setattr(segmentation.PolicySpec, "spec", broken)
    with pytest.raises(Exit) as exc:
        _run_render(monkeypatch, lab, tmp_path, site="gwangju")
    assert exc.value.code == cli.ExitCode.FINDINGS
    assert "networkpolicy-default-deny.yaml" in str(exc.value.message)
    assert "policyTypos" in str(exc.value.message)


def test_render_task_exits_3_when_the_version_has_no_schema(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    topology = load_environment("lab")
    topology.environment.kubernetes_version = "1.99"
    with pytest.raises(Exit) as exc:
        _run_render(monkeypatch, topology, tmp_path, site="jeonju")
    assert exc.value.code == cli.ExitCode.UNVERIFIED
    assert "1.99" in str(exc.value.message)


def test_render_task_exits_1_on_an_unknown_site(monkeypatch: pytest.MonkeyPatch, lab: Topology,
                                                tmp_path: Path) -> None:
    with pytest.raises(Exit) as exc:
        _run_render(monkeypatch, lab, tmp_path, site="seoul")
    assert exc.value.code == cli.ExitCode.INPUT
    assert "seoul" in str(exc.value.message)


def test_missing_stack_config_is_an_input_error(lab: Topology, tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    for project in ("site", "replication"):
        (stacks / project).mkdir(parents=True)
        for name in ("Pulumi.yaml", "__main__.py"):
            (stacks / project / name).write_bytes((ROOT / "stacks" / project / name).read_bytes())
    with pytest.raises(render.RenderError, match=r"Pulumi\.gwangju\.yaml: missing"):
        render.render(lab, site="gwangju", out_root=tmp_path / "out", stacks_root=stacks)


def test_summary_names_contexts_and_schemas(rendered_lab: Any) -> None:
    summary = yaml.safe_load((rendered_lab.out / "dualdc-site" / "gwangju" / render.SUMMARY).read_text())
    assert summary["environment"] == "lab"
    assert summary["clusters"]["gwangju-core"]["kubeContext"] == "gwangju-core"
    schemas = summary["validatedWith"]["networking.k8s.io/v1 NetworkPolicy"]
    assert schemas == ["kubernetes 1.30 OpenAPI (strict)"]
    assert summary["invalid"] == {}


def test_validation_works_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schemas are read from the installed package; no connection is ever attempted."""
    import socket

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("validation tried to open a network connection")

    for cached in (validation._registry, validation._builtin_validator, validation._custom_validator):
        cached.cache_clear()
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "x", "namespace": "y"},
              "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}}
    for minor in validation.supported_versions():
        assert validation.errors(policy, minor) == []


def test_committed_stack_config_holds_no_plain_secret() -> None:
    """Secret config keys may only hold encrypted values (``secure: v1:...``) in the repository."""
    secretish = ("password", "secret", "credential", "token", "accesskey", "passphrase")

    def walk(key: str, value: Any) -> list[str]:
        if isinstance(value, dict):
            if set(value) == {"secure"}:
                return []
            return [p for k, v in value.items() for p in walk(f"{key}.{k}", v)]
        return [key] if any(word in key.lower().replace("-", "") for word in secretish) else []

    files = sorted((ROOT / "stacks").glob("*/Pulumi.*.yaml"))
    assert len(files) >= 4
    for file in files:
        config = (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("config") or {}
        plain = [p for k, v in config.items() for p in walk(k, v)]
        assert plain == [], f"{file.name}: plain-text secret config {plain}"
