"""The stacks layer of drift: engine step events become per-resource, per-property drift items; the lab
renders; a missing Pulumi CLI is reported, never skipped.

The pulumi CLI cannot be installed here, so the preview itself cannot run: the events below are built
with the Automation API's own parser (EngineEvent.from_json) from the engine's documented event shape,
which is what a real preview streams to ``on_event``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pulumi.automation import EngineEvent

from dualdc.loader import load_environment, load_topology
from dualdc.model import Layer
from dualdc.ops import stacklayer
from dualdc.reports.drift import LayerStatus, TargetStatus

STACK = "dualdc-site.gwangju"
LABEL = 'metadata.labels["pod-security.kubernetes.io/enforce"]'
PREFIX = "urn:pulumi:gwangju::dualdc-site::dualdc:site:Cluster$kubernetes:core/v1:Namespace::"


def step(op: str, urn: str, rtype: str = "kubernetes:core/v1:Namespace", **extra: object) -> EngineEvent:
    return EngineEvent.from_json(
        {
            "sequence": 1,
            "timestamp": 0,
            "resourcePreEvent": {"metadata": {"op": op, "urn": urn, "type": rtype, "provider": "", **extra}},
        }
    )


def test_update_create_delete_become_items_and_unchanged_steps_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "passphrase-canary-99")
    collector = stacklayer.PreviewCollector(STACK, "gwangju")
    events = [
        step(
            "same",
            "urn:pulumi:gwangju::dualdc-site::pulumi:pulumi:Stack::dualdc-site-gwangju",
            rtype="pulumi:pulumi:Stack",
        ),
        step("refresh", PREFIX + "kjbank-internal"),
        step("same", PREFIX + "jbbank-internal"),
        step(
            "update",
            PREFIX + "kjbank-internal",
            old={"outputs": {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}},
            new={"inputs": {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}},
            diffs=["metadata"],
            detailedDiff={LABEL: {"diffKind": "update"}},
        ),
        step(
            "create",
            "urn:pulumi:gwangju::dualdc-site::kubernetes:networking.k8s.io/v1:NetworkPolicy::default-deny",
            rtype="kubernetes:networking.k8s.io/v1:NetworkPolicy",
        ),
        step("delete", PREFIX + "stray", old={"outputs": {"data": "passphrase-canary-99"}}),
        step("create-replacement", PREFIX + "ns-r"),
        step(
            "replace",
            PREFIX + "ns-r",
            diffs=["metadata"],
            detailedDiff={"metadata.name": {"diffKind": "update-replace"}},
        ),
        step("delete-replaced", PREFIX + "ns-r"),
    ]
    for event in events:
        collector(event)
    ids = [item.id for item in collector.items]
    assert ids == [
        f"stack:{STACK}/kubernetes:core/v1:Namespace::kjbank-internal/" + LABEL,
        f"stack:{STACK}/kubernetes:networking.k8s.io/v1:NetworkPolicy::default-deny",
        f"stack:{STACK}/kubernetes:core/v1:Namespace::stray",
        f"stack:{STACK}/kubernetes:core/v1:Namespace::ns-r/metadata.name",
    ]
    label = collector.items[0]
    assert label.property == LABEL
    assert label.resource == "kubernetes:core/v1:Namespace::kjbank-internal" and label.site == "gwangju"
    assert "'privileged'" in label.diff and "'restricted'" in label.diff
    assert "would be created" in collector.items[1].summary
    assert "not declared" in collector.items[2].summary
    assert "update-replace" in collector.items[3].summary
    assert all("passphrase-canary-99" not in item.model_dump_json() for item in collector.items)
    assert collector.counts["same"] == 2 and collector.counts["update"] == 1


def test_property_paths() -> None:
    parsed = stacklayer.property_path('spec.ingress[0].from[2]["a.b/c"]')
    assert parsed == ["spec", "ingress", 0, "from", 2, "a.b/c"]
    assert stacklayer.property_path('metadata["x\\"y"]') == ["metadata", 'x"y']


def test_lab_stacks_are_rendered_and_said_so(tmp_path: Path) -> None:
    layer = stacklayer.drift_layer(load_environment("lab"), "gwangju", out_root=tmp_path)
    assert layer.status is LayerStatus.NOT_COMPARED
    assert "no Kubernetes API" in layer.note and "rendered" in layer.note
    assert [t.name for t in layer.checked] == [STACK]
    target = layer.checked[0]
    assert target.status is TargetStatus.CLEAN and target.counts["objects"] > 0
    assert target.detail.startswith("rendered only")
    assert list(tmp_path.rglob("*.yaml"))


@pytest.mark.skipif(shutil.which("pulumi") is not None, reason="the pulumi CLI is installed here")
def test_missing_pulumi_cli_is_not_a_silent_skip(tmp_path: Path) -> None:
    env = tmp_path / "dc"
    env.mkdir()
    for source in Path("inventories/lab").glob("*.yaml"):
        text = source.read_text(encoding="utf-8").replace("  lab: true\n", "  lab: false\n")
        (env / source.name).write_text(text, encoding="utf-8")
    topology = load_topology(env)
    assert stacklayer.has_kubernetes_api(topology)
    layer = stacklayer.drift_layer(topology, None, out_root=tmp_path / "render")
    assert layer.status is LayerStatus.UNVERIFIED
    assert {t.status for t in layer.checked} == {TargetStatus.NOT_CHECKED}
    assert len(layer.checked) == 3  # both site stacks and the replication stack
    assert all(
        "pulumi CLI is not installed" in t.detail and "How to install" in t.detail for t in layer.checked
    )
    assert all(t.layer is Layer.STACKS for t in layer.checked)
