"""Dangerous but well-formed values: RBAC-01 (system groups), AIR-01 (air gap), META-01 (object limits).

The model gives every string a shape; these rules judge values that have the right shape
and are still wrong for a bank: a RoleBinding to every authenticated identity, a registry
on the internet, an annotation the API server refuses.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterator, Sequence

from dualdc.labels import ANNOTATION_PSA_EXCEPTION, ANNOTATION_PURPOSE
from dualdc.model import Entity, Severity
from dualdc.policy.engine import Context, Finding, Param, ParamValue, rule
from dualdc.policy.rules.common import split

ERROR = Severity.ERROR


def _prefixes(params: dict[str, ParamValue]) -> dict[str, str]:
    if not split(params["forbidden_prefixes"]):
        return {"forbidden_prefixes": "expected a comma-separated list of group prefixes, found none"}
    return {}


@rule(
    "RBAC-01",
    title="Tenant groups are directory groups, never Kubernetes system groups or wildcards",
    severity=ERROR,
    source="전자금융감독규정 제13조 (접근통제, edition 2025-02-05; article unverified); Kubernetes RBAC docs",
    params={
        "forbidden_prefixes": Param("system:", "Group name prefixes Kubernetes reserves (comma-separated)."),
    },
    waivable=False,
    param_check=_prefixes,
    edition="감독규정 2025-02-05; Kubernetes 1.30 RBAC documentation",
    verified=False,
    dora="Art. 9",
    pci_dss="7.2",
)
def rbac01(ctx: Context) -> Iterator[Finding]:
    """A tenant's ``admin_groups`` and ``viewer_groups`` name directory groups only.

    The stacks bind each group to ``admin`` or ``view`` in the tenant's namespaces. A group
    starting with a ``forbidden_prefixes`` entry (``system:authenticated``,
    ``system:serviceaccounts``, ``system:masters`` …) would grant that to every identity of
    the cluster, and a ``*`` or ``?`` is not a group at all but reads as a wildcard: both
    are refused and cannot be waived.
    """
    prefixes = tuple(p.casefold() for p in split(ctx.params["forbidden_prefixes"]))
    for tenant in ctx.topology.tenants:
        for field_name in ("admin_groups", "viewer_groups"):
            for group in getattr(tenant, field_name):
                why = None
                if group.casefold().startswith(prefixes):
                    why = "is a Kubernetes system group: it would bind every identity that holds it"
                elif "*" in group or "?" in group:
                    why = "contains a wildcard: RBAC binds names, and a wildcard reads as 'everyone'"
                if why:
                    yield ctx.finding(
                        f"tenant:{tenant.name}",
                        f"{field_name[:-1].replace('_', ' ')} {group!r} of {tenant.name} {why}",
                        tenant,
                        field_name,
                    )


def _suffix_check(params: dict[str, ParamValue]) -> dict[str, str]:
    wrong = [d for d in split(params["allowed_domains"]) if not re.fullmatch(r"\.?[a-z0-9.-]+", d)]
    if wrong or not split(params["allowed_domains"]):
        return {"allowed_domains": f"expected a comma-separated list of domain suffixes like .jbfg.example, "
                                   f"found {params['allowed_domains']!r}"}
    return {}


def _internal(host: str, suffixes: list[str], private_ok: bool) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return any(host == s.lstrip(".") or host.endswith("." + s.lstrip(".")) for s in suffixes)
    return private_ok and address.is_private and not address.is_loopback


@rule(
    "AIR-01",
    title="Every registry, mirror and package repository is internal (air gap)",
    severity=ERROR,
    source="전자금융감독규정 제15조①3 (망분리, edition 2025-02-05); 망분리 개선 로드맵 (2024-08-13)",
    params={
        "allowed_domains": Param(".jbfg.example", "Domain suffixes of internal hosts (comma-separated)."),
        "allow_file_urls": Param(True, "Accept file:/// mirrors (a local copy, as the lab twin uses)."),
        "allow_private_addresses": Param(True, "Accept hosts given as private (RFC 1918) addresses."),
    },
    param_check=_suffix_check,
    edition="감독규정 2025-02-05; 망분리 개선 로드맵 2024-08-13",
    verified=False,
    dora="Art. 9",
)
def air01(ctx: Context) -> Iterator[Finding]:
    """Every registry, mirror and package repository the hosts use is internal.

    The banks' networks are cut off from the internet by law: the containerd registry
    mirror (``mirrors.registry``), the Debian mirror (``mirrors.apt``) and the Kubernetes
    repository (``mirrors.kubernetes_apt``) must be hosts under ``allowed_domains``, private
    addresses (``allow_private_addresses``) or local ``file:///`` copies
    (``allow_file_urls``). ``docker.io`` or a public mirror quietly breaks the air gap.
    """
    env = ctx.topology.environment
    suffixes = split(ctx.params["allowed_domains"])
    private_ok = ctx.get_bool("allow_private_addresses")
    mirrors = env.mirrors
    checked: list[tuple[str, str, str]] = [("registry", mirrors.registry.partition(":")[0], mirrors.registry)]
    for name in ("apt", "kubernetes_apt"):
        url = getattr(mirrors, name)
        if url is None:
            continue
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "file":
            if not ctx.get_bool("allow_file_urls"):
                yield ctx.finding(f"environment:{env.name}", f"mirrors.{name} {url!r} is a local file URL, "
                                  "which allow_file_urls refuses", mirrors, name)
            continue
        checked.append((name, parsed.hostname or "", url))
    for name, host, value in checked:
        if not _internal(host, suffixes, private_ok):
            yield ctx.finding(
                f"environment:{env.name}",
                f"mirrors.{name} {value!r} is not internal: its host {host!r} is outside "
                f"{', '.join(suffixes)}{' and not a private address' if private_ok else ''} (air gap)",
                mirrors,
                name,
            )


LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@rule(
    "META-01",
    title="Annotations and labels the stacks derive stay within Kubernetes' limits",
    severity=ERROR,
    source="Kubernetes API validation (ValidateAnnotations: 256 KiB total; label values: 63 characters)",
    params={
        "max_annotation_bytes": Param(262144, "Largest total size of an object's annotations."),
        "max_label_chars": Param(63, "Longest label value."),
    },
    waivable=False,
    edition="Kubernetes 1.30 API validation",
    verified=True,
)
def meta01(ctx: Context) -> Iterator[Finding]:
    """What the stacks put into labels and annotations is accepted by the API server.

    A flow's ``purpose`` becomes the annotation of its NetworkPolicies, and a Pod Security
    waiver's reason and approval the annotation of its namespace: the API server refuses an
    object whose annotations (keys and values, UTF-8) exceed ``max_annotation_bytes``
    (256 KiB), so ``render`` would pass and ``pulumi up`` fail halfway. Label values (the
    names of the environment, sites, tenants, clusters, services and flows) are at most
    ``max_label_chars`` characters of letters, digits, ``-``, ``_`` and ``.``.
    """
    topo = ctx.topology
    limit = ctx.get_int("max_annotation_bytes")
    for flow in topo.flows:
        size = len(ANNOTATION_PURPOSE.encode()) + len(flow.purpose.encode())
        if flow.purpose and size > limit:
            yield ctx.finding(f"flow:{flow.name}",
                              f"the purpose of {flow.name} makes a {size}-byte annotation; "
                              f"Kubernetes accepts at most {limit} bytes per object", flow, "purpose")
    for waiver in topo.waivers:
        text = f"{waiver.rule} {waiver.target}: {waiver.reason} (approval {waiver.approval})"
        size = len(ANNOTATION_PSA_EXCEPTION.encode()) + len(text.encode())
        if size > limit:
            yield ctx.finding(f"waiver:{waiver.rule}@{waiver.target}",
                              f"the waiver's reason makes a {size}-byte annotation; "
                              f"Kubernetes accepts at most {limit} bytes per object", waiver, "reason")
    max_chars = ctx.get_int("max_label_chars")
    named: list[tuple[str, Sequence[Entity]]] = [
        ("environment", [topo.environment]), ("site", topo.sites), ("tenant", topo.tenants),
        ("cluster", topo.clusters), ("service", topo.services), ("flow", topo.flows)]
    for kind, entities in named:
        for entity in entities:
            value = str(getattr(entity, "name", ""))
            if len(value) > max_chars or not LABEL_VALUE.match(value):
                yield ctx.finding(f"{kind}:{value}", f"{kind} name {value!r} is not a valid label value "
                                  f"(at most {max_chars} letters, digits, '-', '_' or '.')", entity, "name")
