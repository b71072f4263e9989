"""The two stack programs; ``stacks/<name>/__main__.py`` only calls one of these.

A program loads the environment's topology (``inventories/<env>/`` of the repository the
stack folder is in) and builds components. Bad input stops it with a
:class:`StackProgramError` (a ``pulumi.RunError``: the engine prints the problems, no
traceback). :data:`PRELOADED` lets ``invoke render`` and the tests hand over a topology
they already loaded.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path

import pulumi

from dualdc.loader import TopologyError, format_problems, load_environment
from dualdc.model import Topology
from dualdc.stacks import config as stack_config
from dualdc.stacks.dr import (
    backup_target,
    database_sides,
    namespace_backups,
    replication_addresses,
)
from dualdc.stacks.errors import StackError
from dualdc.stacks.naming import replicated_databases
from dualdc.stacks.replication import (
    BackupLocation,
    BackupLocationArgs,
    BackupSchedule,
    BackupScheduleArgs,
    ReplicatedDatabase,
    ReplicatedDatabaseArgs,
)
from dualdc.stacks.site import ClusterBaseline, ClusterBaselineArgs, kubernetes_provider, plan_cluster

#: A topology already loaded for the environment being run (render, tests).
PRELOADED: ContextVar[Topology | None] = ContextVar("dualdc_preloaded_topology", default=None)


class StackProgramError(pulumi.RunError):
    """The program cannot run on this input; the message lists every problem."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


def _topology(environment: str, inventories: Path) -> Topology:
    preloaded = PRELOADED.get()
    if preloaded is not None:
        if preloaded.environment.name != environment:
            raise StackProgramError(
                f"the preloaded topology is {preloaded.environment.name!r}, the stack asks for "
                f"{environment!r}",
                [f"environment mismatch: {preloaded.environment.name} != {environment}"])
        return preloaded
    try:
        return load_environment(environment, root=inventories)
    except TopologyError as exc:
        raise StackProgramError(format_problems(exc), [str(p) for p in exc.problems]) from None


def _fail(exc: StackError) -> StackProgramError:
    text = "error: the topology cannot be turned into this stack:\n" + "\n".join(exc.problems)
    return StackProgramError(text, exc.problems)


def site_program(inventories: Path) -> None:
    """The site stack: every cluster of the stack's site, its namespaces and their policies."""
    try:
        cfg = stack_config.read(stack_config.SITE_PROJECT)
        topology = _topology(cfg.environment, inventories)
        assert cfg.site is not None
        sites = sorted(s.name for s in topology.sites)
        if cfg.site not in sites:
            raise StackError([f"{cfg.project}:site is {cfg.site!r}, which environment "
                              f"{topology.environment.name!r} does not declare (sites: {', '.join(sites)})"])
        clusters = sorted(c.name for c in topology.clusters_at(cfg.site))
        plans = {name: plan_cluster(topology, name, cfg.option("cnpgOperatorNamespace")) for name in clusters}
        for name in clusters:
            ClusterBaseline(name, ClusterBaselineArgs(
                name, cfg.kube_context(topology, name), plans[name], cfg.kubeconfig))
    except StackError as exc:
        raise _fail(exc) from None
    pulumi.export("environment", topology.environment.name)
    pulumi.export("site", cfg.site)
    pulumi.export("clusters", clusters)


def _credentials_file(secrets: stack_config.Secrets, site: str) -> pulumi.Output[str]:
    """Velero's AWS-style credentials file for the object store at a site, as a secret."""
    key_id = secrets.value("objectStoreCredentials", site, "accessKeyId")
    key = secrets.value("objectStoreCredentials", site, "secretAccessKey")
    text = pulumi.Output.all(key_id, key).apply(
        lambda keys: f"[default]\naws_access_key_id={keys[0]}\naws_secret_access_key={keys[1]}\n")
    return pulumi.Output.secret(text)


def replication_program(inventories: Path) -> None:
    """The replication stack: replica databases and cross-site backups of one environment."""
    try:
        cfg = stack_config.read(stack_config.REPLICATION_PROJECT)
        topology = _topology(cfg.environment, inventories)
        secrets = stack_config.Secrets(cfg, pulumi.get_stack())
        registry = topology.environment.mirrors.registry
        databases = replicated_databases(topology)
        endpoints = replication_addresses(topology)
        annotation = cfg.option("loadBalancerIpAnnotation")
        sides = {svc.name: database_sides(topology, svc, registry, endpoints, annotation)
                 for svc in databases}
        passwords = {svc.name: secrets.value("replicationPasswords", svc.name) for svc in databases}
        plan = namespace_backups(topology)
        backups = plan.backups
        targets = {key: backup_target(topology, *key)
                   for key in sorted({(b.cluster, b.target_site) for b in backups})}
        credentials = {site: _credentials_file(secrets, site) for site in sorted({s for _, s in targets})}
        secrets.check()
        for note in plan.skipped:
            pulumi.log.warn(note)
        # Everything is derived and checked: only now are resources declared.
        used = sorted({side.cluster for pair in sides.values() for side in pair} | {c for c, _ in targets})
        providers = {name: kubernetes_provider(name, cfg.kube_context(topology, name), cfg.kubeconfig)
                     for name in used}
        for svc in databases:
            ReplicatedDatabase(svc.name,
                               ReplicatedDatabaseArgs(sides[svc.name], providers, passwords[svc.name]))
        velero = cfg.option("veleroNamespace")
        locations: dict[tuple[str, str], BackupLocation] = {}
        for (cluster, site), target in sorted(targets.items()):
            locations[(cluster, site)] = BackupLocation(
                f"{cluster}/backup-location/{site}",
                BackupLocationArgs(target, providers[cluster], velero, cfg.option("backupBucket"),
                                   f"{topology.environment.name}/{cluster}", credentials[site]))
        for backup in backups:
            BackupSchedule(f"{backup.cluster}/backup/{backup.name}", BackupScheduleArgs(
                backup, providers[backup.cluster], velero, locations[(backup.cluster, backup.target_site)]))
    except StackError as exc:
        raise _fail(exc) from None
    pulumi.export("environment", topology.environment.name)
    pulumi.export("databases", [s.name for s in databases])
    pulumi.export("backupSchedules", [f"{b.cluster}/{b.name}" for b in backups])
