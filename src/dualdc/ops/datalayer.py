"""The data layer for drift: the host databases' replication and backups against the model.

The checks themselves are ``invoke dr.status``'s (:func:`dualdc.ops.drstatus.data_layer`);
this module makes them one of the environment's layers. Nothing is applied here: the hosts
layer converges the database hosts.
"""

from __future__ import annotations

from dualdc.model import Layer, Topology
from dualdc.ops.drstatus import data_layer
from dualdc.ops.layer import Checked, CheckSpec, OpsLayer, register


class DataLayer(OpsLayer):
    """Replication and backups of the host databases (``database.platform: hosts``)."""

    kind = Layer.DATA

    def declared(self, topology: Topology) -> bool:
        return super().declared(topology) and bool(topology.host_databases())

    def note(self, spec: CheckSpec) -> str:
        return "data: replication and backups of the host databases (PostgreSQL, pgBackRest)"

    def check(self, spec: CheckSpec) -> Checked:
        return Checked(data_layer(spec.topology, spec.sites))


register(DataLayer())
