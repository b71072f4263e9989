"""The layer interface: drift and deploy go through the registered layers, knowing none by name."""

from __future__ import annotations

import pytest

from dualdc.loader import load_environment
from dualdc.model import Layer, Topology
from dualdc.ops import layer as layers
from dualdc.ops.ack import Ledger
from dualdc.ops.deploy import DeployError, DeploySpec, deploy, new_report
from dualdc.ops.drift import DriftRun, run_drift
from dualdc.reports.drift import LayerReport, LayerStatus


class FakeModel(layers.OpsLayer):
    kind = Layer.MODEL

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def check(self, spec: layers.CheckSpec) -> layers.Checked:
        self.seen.append(spec.sites)
        return layers.Checked(LayerReport(layer=Layer.MODEL, status=LayerStatus.CLEAN, note="fake"))


class Unavailable(layers.OpsLayer):
    kind = Layer.STACKS
    per_site = True

    def prepare(self, topology: Topology) -> None:
        raise layers.LayerUnavailable("the fake stacks cannot be applied here")


def test_the_registry_holds_every_layer_once_in_order() -> None:
    kinds = [registered.kind for registered in layers.registered()]
    assert kinds == [Layer.MODEL, Layer.HOSTS, Layer.STACKS, Layer.DATA, Layer.LAB]


def test_an_environment_has_the_layers_it_declares_and_can_check() -> None:
    lab = load_environment("lab")
    production = load_environment("production")
    order = (Layer.MODEL, Layer.HOSTS, Layer.STACKS, Layer.DATA, Layer.LAB)
    declared = [k for k in order if k in lab.environment.layers]
    assert [x.kind for x in layers.environment_layers(lab)] == declared
    # the reachability probe exists only on the lab twin
    assert Layer.LAB not in [x.kind for x in layers.environment_layers(production)]
    assert [x.kind for x in layers.environment_layers(lab, {Layer.HOSTS})] == [Layer.HOSTS]


def test_drift_checks_whatever_layer_is_registered_under_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeModel()
    layers.registered()
    monkeypatch.setitem(layers._REGISTRY, Layer.MODEL, fake)
    topology = load_environment("lab")
    report = run_drift(DriftRun(topology=topology, ledger=Ledger([], [], ""), layers={Layer.MODEL}))
    assert [x.note for x in report.layers] == ["fake"]
    assert fake.seen == [topology.deploy_order()]


def test_a_layer_that_cannot_be_applied_stops_the_deploy_before_the_plan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    layers.registered()
    monkeypatch.setitem(layers._REGISTRY, Layer.STACKS, Unavailable())
    topology = load_environment("lab")
    report = new_report(topology, None, plan_only=False)
    with pytest.raises(DeployError, match="the fake stacks cannot be applied here"):
        deploy(DeploySpec(topology=topology, ledger=Ledger([], [], ""), yes=True), report)
    assert report.plan is None and report.applied == []
