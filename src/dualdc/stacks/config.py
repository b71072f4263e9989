"""Stack configuration: what ``Pulumi.<stack>.yaml`` says, read through Pulumi's config.

Keys (namespace ``dualdc-site:`` or ``dualdc-replication:``):

- ``environment``: the topology under ``inventories/``; ``DUALDC_ENV`` in the environment
  overrides it (``invoke render|preview --env`` set it), so one committed stack file serves
  every environment's backend.
- ``site`` (site stack): the site whose clusters the stack declares.
- ``kubeContexts``: optional map cluster name -> kubeconfig context; default: the
  cluster's ``kube_context``, else its name. ``kubeconfig``: optional kubeconfig path
  (default: ``KUBECONFIG`` or ``~/.kube/config``).
- ``cnpgOperatorNamespace`` (site), ``veleroNamespace``, ``backupBucket``,
  ``loadBalancerIpAnnotation`` (replication): optional, with the defaults below.
- Secrets (replication), only ever as Pulumi config secrets (``pulumi config set --secret
  --path``): ``replicationPasswords.<service>`` and
  ``objectStoreCredentials.<site>.accessKeyId`` / ``.secretAccessKey``.

Under ``invoke render`` (config ``render: true``) no secret is read: each becomes a
placeholder marked secret, which the renderer redacts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime.config import get_config

from dualdc.model import Topology
from dualdc.stacks.dr import LOAD_BALANCER_IP_ANNOTATION, VELERO_NAMESPACE
from dualdc.stacks.errors import StackError
from dualdc.stacks.segmentation import CNPG_OPERATOR_NAMESPACE

SITE_PROJECT = "dualdc-site"
REPLICATION_PROJECT = "dualdc-replication"
ENV_OVERRIDE = "DUALDC_ENV"
#: Placeholder of a secret under ``invoke render`` (never the real value).
RENDER_SECRET = "<secret: set with pulumi config set --secret>"  # noqa: S105 - a placeholder


@dataclass(frozen=True)
class StackConfig:
    project: str
    environment: str
    site: str | None
    kube_contexts: dict[str, str]
    kubeconfig: str | None
    render: bool
    options: dict[str, str]

    def kube_context(self, topology: Topology, cluster: str) -> str:
        """The kubeconfig context of a cluster."""
        if cluster in self.kube_contexts:
            return self.kube_contexts[cluster]
        return topology.cluster(cluster).kube_context or cluster

    def option(self, key: str) -> str:
        return self.options[key]


DEFAULTS = {
    SITE_PROJECT: {"cnpgOperatorNamespace": CNPG_OPERATOR_NAMESPACE},
    REPLICATION_PROJECT: {
        "veleroNamespace": VELERO_NAMESPACE,
        "backupBucket": "dualdc-velero",
        "loadBalancerIpAnnotation": LOAD_BALANCER_IP_ANNOTATION,
    },
}


def read(project: str) -> StackConfig:
    """Read a stack's configuration; raise :class:`StackError` naming each bad key."""
    cfg = pulumi.Config(project)
    problems = []
    render = cfg.get_bool("render") or False
    # Under render the renderer sets the environment in config; otherwise DUALDC_ENV wins.
    environment = cfg.get("environment")
    if not render:
        environment = os.environ.get(ENV_OVERRIDE) or environment
    if not environment:
        problems.append(f"{project}:environment is not set (and {ENV_OVERRIDE} is not either)")
    site = cfg.get("site") if project == SITE_PROJECT else None
    if project == SITE_PROJECT and not site:
        problems.append(f"{project}:site is not set: name the site this stack declares")
    contexts = _string_map(cfg, project, "kubeContexts", problems)
    options = {}
    for key, default in DEFAULTS[project].items():
        options[key] = cfg.get(key) or default
    if problems:
        raise StackError(problems)
    assert environment is not None
    return StackConfig(project, environment, site, contexts, cfg.get("kubeconfig"), render, options)


def _string_map(cfg: pulumi.Config, project: str, key: str, problems: list[str]) -> dict[str, str]:
    try:
        value = cfg.get_object(key)
    except pulumi.ConfigTypeError:
        problems.append(f"{project}:{key} must be a map of cluster name to context name")
        return {}
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        problems.append(f"{project}:{key} must be a map of cluster name to context name")
        return {}
    return {str(k): v for k, v in value.items()}


class Secrets:
    """Secret config values, read once each, wrapped as Pulumi secrets, never shown.

    Missing ones are collected; :meth:`check` raises one :class:`StackError` listing the
    ``pulumi config set --secret`` command for each.
    """

    def __init__(self, config: StackConfig, stack: str) -> None:
        self.config = config
        self.stack = stack
        self.missing: list[str] = []

    def value(self, key: str, *path: str) -> pulumi.Output[str]:
        dotted = ".".join((key, *path))
        if self.config.render:
            return pulumi.Output.secret(RENDER_SECRET)
        raw = get_config(f"{self.config.project}:{key}")
        found: Any = None
        if raw is not None:
            try:
                found = json.loads(raw) if path else raw
            except ValueError:
                found = None
            for part in path:
                found = found.get(part) if isinstance(found, dict) else None
        if not isinstance(found, str) or not found:
            self.missing.append(
                f"secret {self.config.project}:{dotted} is not set: run "
                f"pulumi config set --secret --path '{dotted}' --stack {self.stack} (in stacks/"
                f"{self.config.project.removeprefix('dualdc-')}/; the value is read from the prompt)")
            return pulumi.Output.secret("")
        return pulumi.Output.secret(found)

    def check(self) -> None:
        if self.missing:
            raise StackError(self.missing)
