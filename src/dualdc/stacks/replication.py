"""Components of the replication stack: replicated databases and cross-site backups."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from dualdc.labels import COMMON_LABELS, LABEL_SITE
from dualdc.stacks.dr import (
    REPLICATION_ROLE,
    BackupTarget,
    DatabaseSide,
    NamespaceBackup,
    credentials_secret_name,
    schedule_spec,
    storage_location_name,
    storage_location_spec,
)


@dataclass(frozen=True)
class ReplicatedDatabaseArgs:
    """The two sides of one service's database and the replication role's password."""

    sides: list[DatabaseSide]
    providers: dict[str, k8s.Provider]
    """Provider of each cluster, by cluster name."""
    password: pulumi.Output[str]


class ReplicatedDatabase(pulumi.ComponentResource):
    """A CloudNativePG Cluster at the primary site and its replica Cluster at the peer site."""

    TYPE = "dualdc:replication:ReplicatedDatabase"

    def __init__(self, name: str, args: ReplicatedDatabaseArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        self.clusters: dict[str, k8s.apiextensions.CustomResource] = {}
        for side in args.sides:
            provider = args.providers[side.cluster]
            secret = k8s.core.v1.Secret(
                f"{name}/{side.role}/replication-secret",
                metadata={"name": side.password_secret, "namespace": side.namespace, "labels": side.labels},
                type="kubernetes.io/basic-auth",
                string_data={"username": REPLICATION_ROLE, "password": args.password},
                opts=pulumi.ResourceOptions(parent=self, provider=provider),
            )
            self.clusters[side.role] = k8s.apiextensions.CustomResource(
                f"{name}/{side.role}",
                api_version="postgresql.cnpg.io/v1",
                kind="Cluster",
                metadata={"name": side.name, "namespace": side.namespace, "labels": side.labels},
                spec=side.spec,
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[secret]),
            )
        self.register_outputs({})


@dataclass(frozen=True)
class BackupLocationArgs:
    """An object store at the target site, as one cluster's Velero reaches it."""

    target: BackupTarget
    provider: k8s.Provider
    namespace: str
    bucket: str
    prefix: str
    credentials: pulumi.Output[str]
    """Velero's AWS-style credentials file for the object store (a secret)."""


class BackupLocation(pulumi.ComponentResource):
    """A Velero BackupStorageLocation at another site, with its credentials Secret."""

    TYPE = "dualdc:replication:BackupLocation"

    def __init__(self, name: str, args: BackupLocationArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        labels = {**COMMON_LABELS, LABEL_SITE: args.target.site}
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        secret = k8s.core.v1.Secret(
            f"{name}/credentials",
            metadata={"name": credentials_secret_name(args.target.site), "namespace": args.namespace,
                      "labels": labels},
            type="Opaque",
            string_data={"cloud": args.credentials},
            opts=child,
        )
        self.location = k8s.apiextensions.CustomResource(
            name,
            api_version="velero.io/v1",
            kind="BackupStorageLocation",
            metadata={"name": storage_location_name(args.target.site), "namespace": args.namespace,
                      "labels": labels},
            spec=storage_location_spec(args.target, args.bucket, args.prefix),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[secret]),
        )
        self.register_outputs({})


@dataclass(frozen=True)
class BackupScheduleArgs:
    backup: NamespaceBackup
    provider: k8s.Provider
    namespace: str
    location: BackupLocation


class BackupSchedule(pulumi.ComponentResource):
    """A Velero Schedule backing one namespace up to another site (BK-01)."""

    TYPE = "dualdc:replication:BackupSchedule"

    def __init__(self, name: str, args: BackupScheduleArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, None, opts)
        backup = args.backup
        k8s.apiextensions.CustomResource(
            name,
            api_version="velero.io/v1",
            kind="Schedule",
            metadata={"name": backup.name, "namespace": args.namespace,
                      "labels": {**COMMON_LABELS, LABEL_SITE: backup.site},
                      "annotations": {"dualdc.jbfg.example/services": ",".join(backup.services)}},
            spec=schedule_spec(backup),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[args.location]),
        )
        self.register_outputs({})
