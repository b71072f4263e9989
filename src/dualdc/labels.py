"""The label and annotation names the model's values are published under (Kubernetes objects).

They are part of the model's contract, not of one layer: the stacks put them on what they
declare, and the policy checks that the model's values fit them (META-01).
"""

from __future__ import annotations

#: The label and annotation domain of everything the stacks declare.
LABEL_DOMAIN = "dualdc.jbfg.example"


def label(key: str) -> str:
    """``dualdc.jbfg.example/<key>``."""
    return f"{LABEL_DOMAIN}/{key}"


LABEL_TENANT = label("tenant")
LABEL_ZONE = label("zone")
LABEL_SITE = label("site")
LABEL_CLUSTER = label("cluster")
LABEL_ENVIRONMENT = label("environment")
LABEL_SERVICE = label("service")
"""On a namespace of its own service, and on that service's pods (the selector flows use)."""
LABEL_DATABASE = label("database")
LABEL_FLOW = label("flow")
LABEL_PLATFORM = label("platform")
LABEL_ROLE = label("dr-role")
ANNOTATION_PURPOSE = label("purpose")
ANNOTATION_PSA_EXCEPTION = label("pod-security-exception")
ANNOTATION_SOURCE = label("source")

#: Label the API server sets on every namespace (immutable): what namespaceSelectors match.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
#: Label CloudNativePG puts on every instance pod of a Cluster.
CNPG_CLUSTER_LABEL = "cnpg.io/cluster"

COMMON_LABELS = {
    "app.kubernetes.io/managed-by": "pulumi",
    "app.kubernetes.io/part-of": "dualdc",
}
