"""Structural JSON schemas of the custom resources the stacks declare.

The Kubernetes OpenAPI schemas (kubernetes-validate) cover built-in kinds only. For the
CloudNativePG and Velero kinds these schemas check the fields the stacks use, with their
types, and reject any other field (a typo is an error, not a silently ignored key). They
follow CloudNativePG 1.24+ (``postgresql.cnpg.io/v1``) and Velero 1.12+ (``velero.io/v1``);
they are not the upstream CRDs.
"""

from __future__ import annotations

from typing import Any

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$"


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


STRING = {"type": "string", "minLength": 1}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
NAME = {"type": "string", "pattern": DNS_LABEL, "maxLength": 63}
SECRET_KEY_REF = _obj({"name": NAME, "key": STRING}, ["name", "key"])
RESOURCES = _obj({
    "requests": _obj({"cpu": {"type": "string", "pattern": QUANTITY},
                      "memory": {"type": "string", "pattern": QUANTITY}}),
    "limits": _obj({"cpu": {"type": "string", "pattern": QUANTITY},
                    "memory": {"type": "string", "pattern": QUANTITY}}),
})


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **_obj({
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _obj({"name": NAME, "namespace": NAME, "labels": STRING_MAP,
                              "annotations": STRING_MAP}, ["name", "namespace"]),
            "spec": spec,
        }, ["apiVersion", "kind", "metadata", "spec"]),
    }


EXTERNAL_CLUSTER = _obj({
    "name": NAME,
    "connectionParameters": _obj({
        "host": STRING, "port": {"type": "string", "pattern": r"^[0-9]+$"}, "user": STRING,
        "dbname": STRING, "sslmode": {"enum": ["require", "verify-ca", "verify-full"]},
    }, ["host", "user", "dbname"]),
    "password": SECRET_KEY_REF,
}, ["name", "connectionParameters"])

CNPG_CLUSTER = _resource("postgresql.cnpg.io/v1", "Cluster", _obj({
    "instances": {"type": "integer", "minimum": 1, "maximum": 9},
    "imageName": STRING,
    "inheritedMetadata": _obj({"labels": STRING_MAP, "annotations": STRING_MAP}),
    "storage": _obj({"size": {"type": "string", "pattern": QUANTITY}}, ["size"]),
    "resources": RESOURCES,
    "postgresql": _obj({"pg_hba": {"type": "array", "items": STRING}}),
    "bootstrap": {
        "oneOf": [
            _obj({"initdb": _obj({"database": STRING, "owner": STRING})}, ["initdb"]),
            _obj({"pg_basebackup": _obj({"source": NAME}, ["source"])}, ["pg_basebackup"]),
        ],
    },
    "replica": _obj({"enabled": {"type": "boolean"}, "source": NAME}, ["enabled", "source"]),
    "managed": _obj({
        "roles": {"type": "array", "items": _obj({
            "name": {"type": "string", "pattern": r"^[a-z_][a-z0-9_]*$"},
            "ensure": {"enum": ["present", "absent"]},
            "login": {"type": "boolean"},
            "replication": {"type": "boolean"},
            "passwordSecret": _obj({"name": NAME}, ["name"]),
        }, ["name"])},
        "services": _obj({"additional": {"type": "array", "items": _obj({
            "selectorType": {"enum": ["rw", "ro", "r"]},
            "serviceTemplate": _obj({
                "metadata": _obj({"name": NAME, "labels": STRING_MAP, "annotations": STRING_MAP}, ["name"]),
                "spec": _obj({"type": {"enum": ["ClusterIP", "LoadBalancer"]},
                              "externalTrafficPolicy": {"enum": ["Local", "Cluster"]}}),
            }, ["metadata"]),
        }, ["selectorType", "serviceTemplate"])}}),
    }),
    "externalClusters": {"type": "array", "items": EXTERNAL_CLUSTER},
}, ["instances", "storage", "bootstrap"]))

VELERO_SCHEDULE = _resource("velero.io/v1", "Schedule", _obj({
    "schedule": {"type": "string", "pattern": r"^\S+ \S+ \S+ \S+ \S+$"},
    "useOwnerReferencesInBackup": {"type": "boolean"},
    "paused": {"type": "boolean"},
    "template": _obj({
        "includedNamespaces": {"type": "array", "items": NAME, "minItems": 1},
        "storageLocation": NAME,
        "ttl": {"type": "string", "pattern": r"^[0-9]+h[0-9]+m[0-9]+s$"},
        "defaultVolumesToFsBackup": {"type": "boolean"},
        "snapshotVolumes": {"type": "boolean"},
    }, ["includedNamespaces", "storageLocation", "ttl"]),
}, ["schedule", "template"]))

VELERO_BSL = _resource("velero.io/v1", "BackupStorageLocation", _obj({
    "provider": STRING,
    "objectStorage": _obj({"bucket": STRING, "prefix": STRING, "caCert": STRING}, ["bucket"]),
    "config": STRING_MAP,
    "credential": SECRET_KEY_REF,
    "accessMode": {"enum": ["ReadWrite", "ReadOnly"]},
    "default": {"type": "boolean"},
}, ["provider", "objectStorage"]))

#: Schema of each custom kind the stacks declare, by (apiVersion, kind).
CUSTOM_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("postgresql.cnpg.io/v1", "Cluster"): CNPG_CLUSTER,
    ("velero.io/v1", "Schedule"): VELERO_SCHEDULE,
    ("velero.io/v1", "BackupStorageLocation"): VELERO_BSL,
}
