"""The typed topology: one source of truth per environment (DESIGN §2).

Every entity is a pydantic model with ``extra="forbid"`` and a description on every
field. Entities refer to each other by name; :class:`Topology` resolves every reference
after field validation and raises :class:`ReferenceErrors` listing every dangling one at
once, each naming both ends.

Checks that judge a *valid* topology against regulation or structure (overlaps, unique
VLANs, distance, capacity …) are not here: they are findings of :mod:`dualdc.policy`.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$"),
    Field(description="A lower-case DNS-label name: letters, digits and '-', 2 to 40 characters."),
]
Port = Annotated[int, Field(ge=1, le=65535, description="A TCP or UDP port number.")]

# --------------------------------------------------------------------------- string shapes
# Every string of the model has a shape: topology files arrive through pull requests and
# their strings end up in host files, Kubernetes objects and reports. The patterns are in
# the JSON schema too, so an editor flags a bad value first.

#: No control characters (newlines, tabs, NUL, DEL, the Unicode line separators) anywhere.
_ONE_LINE = r"[^\x00-\x1f\x7f\u0085\u2028\u2029]"
#: ... and no leading or trailing space either (first and last character are visible).
_VISIBLE = r"[^\x00-\x20\x7f\u0085\u2028\u2029]"


#: Free text: descriptions, reasons (one line: they reach annotations and reports).
Text = Annotated[
    str,
    StringConstraints(pattern=rf"^{_ONE_LINE}*$", max_length=2000),
    Field(description="One line of free text, at most 2000 characters, no control characters."),
]
#: A short human label: a city, a display name, an approval reference.
Label = Annotated[
    str,
    StringConstraints(pattern=rf"^{_ONE_LINE}*$", max_length=200),
    Field(description="One line, at most 200 characters, no control characters."),
]
#: A kernel network device name: what ``ip link`` accepts (IFNAMSIZ: 15 bytes; no '/', no
#: whitespace; never '.' or '..'), restricted further to what the networkd files and their
#: file names can carry without quoting.
IfName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9._-]{0,14}$"),
    Field(description="A network device name: a lower-case letter, then letters, digits, '.', '_' or '-'; "
                      "15 characters at most (the kernel's limit)."),
]
#: A directory group name (RBAC subjects): one line, no surrounding space.
GroupName = Annotated[
    str,
    StringConstraints(pattern=rf"^{_VISIBLE}({_ONE_LINE}{{0,126}}{_VISIBLE})?$"),
    Field(description="A directory group: 1 to 128 characters, no control characters, no surrounding space."),
]
#: A POSIX login name (useradd's portable set).
UserName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$"),
    Field(description="A login name: lower-case letters, digits, '_' and '-', at most 32 characters."),
]
_HOST_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOST_PORT_RE = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*(:[0-9]{{1,5}})?$")


def _host_port(value: str) -> str:
    host, _, port = value.partition(":")
    if len(host) > 253:
        raise ValueError("the host name is longer than 253 characters")
    if port and not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is not between 1 and 65535")
    return value


#: ``host[:port]`` of a registry: a DNS name or an IPv4 address, lower case, and a port.
HostPort = Annotated[
    str,
    StringConstraints(pattern=HOST_PORT_RE.pattern),
    AfterValidator(_host_port),
    Field(description="host[:port]: a lower-case DNS name or IPv4 address, then optionally ':' and a port."),
]
URL_SCHEMES = ("http", "https", "file")
_URL_PATTERN = r"^(https?|file)://[^\x00-\x20\x7f\"'`<>\\{}|^]+$"


def _mirror_url(value: str) -> str:
    """An apt repository URL, parsed: http(s) with a host (no user or password in it), or file:///path."""
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in URL_SCHEMES:
        raise ValueError(f"the scheme must be one of {', '.join(URL_SCHEMES)}")
    if parsed.query or parsed.fragment:
        raise ValueError("a mirror URL has no query ('?') or fragment ('#')")
    if parsed.scheme == "file":
        if parsed.netloc or not parsed.path.startswith("/"):
            raise ValueError("a file URL is file:///absolute/path")
        return value
    if parsed.username is not None or parsed.password is not None:
        raise ValueError("a mirror URL carries no user or password (credentials never go in the topology)")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError("the port is not a number between 0 and 65535") from None
    host = parsed.hostname or ""
    if not HOST_PORT_RE.match(host) or port == 0:
        raise ValueError(f"{host!r} is not a host name or IPv4 address")
    return value


MirrorUrl = Annotated[
    str,
    StringConstraints(pattern=_URL_PATTERN, max_length=2048),
    AfterValidator(_mirror_url),
    Field(description="An http://, https:// or file:/// URL without credentials, spaces, quotes or braces."),
]


def _normalise_words(value: Any) -> Any:
    """Strip, collapse inner whitespace and casefold, so 'Carrier-A ' and 'carrier-a' are one."""
    return " ".join(value.split()).casefold() if isinstance(value, str) else value


#: A name compared between entities (carriers, routes): normalised before it is kept.
Normalised = Annotated[
    str,
    BeforeValidator(_normalise_words),
    StringConstraints(pattern=rf"^{_VISIBLE}({_ONE_LINE}{{0,198}}{_VISIBLE})?$"),
    Field(description="One line of at most 200 characters; kept stripped, single-spaced and case-folded."),
]
#: A rule parameter's text value.
ParamText = Annotated[str, StringConstraints(pattern=rf"^{_ONE_LINE}*$", max_length=4096)]


class Zone(StrEnum):
    """The kind of network a segment belongs to. The internet is outside every zone."""

    DMZ = "dmz"
    INTERNAL = "internal"
    EXTERNAL = "external"
    MGMT = "mgmt"
    REPLICATION = "replication"
    BACKUP = "backup"
    DEV = "dev"
    AI = "ai"
    """AI 분석망: analytics and model serving (the Gwangju AI hub); only pseudonymised or anonymised
    data flows in (AI-01), results leave only over declared publishing flows (AI-02)."""


class DataClass(StrEnum):
    """What a flow carries, or what a service holds (the 신용정보법's classes of data)."""

    PERSONAL = "personal"
    """개인(신용)정보: identifies a person."""
    PSEUDONYMISED = "pseudonymised"
    """가명정보: re-identifiable only with additional information kept apart."""
    ANONYMISED = "anonymised"
    """익명정보: no longer relates to an identifiable person."""
    NONE = "none"
    """No data about customers (control traffic, telemetry, time, logs of the platform itself)."""


#: The data classes that may enter the ``ai`` zone (AI-01).
AI_ADMISSIBLE = frozenset({DataClass.PSEUDONYMISED, DataClass.ANONYMISED})


@dataclass(frozen=True)
class ZoneTraits:
    """What a zone kind means to every layer: read from :data:`ZONE_TRAITS`, never special-cased.

    The policy's default exposed and protected zones (NS-01, NS-02), the management addresses
    the hosts accept SSH from, where replication and backups run, the diagrams' colours and
    what ``lab.verify`` probes as forbidden (exposed → protected, one bank's protected segments
    → another's, anything → an admin zone on SSH) all come from here.
    """

    exposed: bool = False
    """Reachable from outside, like the internet (NS-01/NS-02 default ``exposed_zones``)."""
    protected: bool = False
    """Nothing exposed may reach it (NS-01/NS-02 default ``protected_zones``)."""
    admin: bool = False
    """Management: bastions, SSH sources of every host, the hosts' management addresses."""
    replication: bool = False
    """Carries the databases' replication between the sites (DB-02, the DR stacks, the lab routes)."""
    backup: bool = False
    """Holds the backup services and repositories (the DR stacks' backup targets)."""
    institutions: bool = False
    """Where links to outside institutions land (the only zone a flow to one may cross)."""
    analytics: bool = False
    """AI analytics (AI 분석망): admits pseudonymised or anonymised data only (AI-01 to AI-04's
    default ``ai_zones``, ``lab.verify``'s AI probes)."""
    colour: tuple[str, str] = ("#ffffff", "#333333")
    """The diagrams' (fill, stroke)."""


#: One row per zone kind. A new zone kind is one member of :class:`Zone` and one row here.
ZONE_TRAITS: dict[str, ZoneTraits] = {
    "dmz": ZoneTraits(exposed=True, colour=("#fde2c8", "#d9822b")),
    "internal": ZoneTraits(protected=True, colour=("#d6e6fb", "#2b6cd9")),
    "external": ZoneTraits(institutions=True, colour=("#eadcf8", "#7b3fc4")),
    "mgmt": ZoneTraits(admin=True, colour=("#e6e6e6", "#666666")),
    "replication": ZoneTraits(replication=True, colour=("#d3f2ee", "#1d8f80")),
    "backup": ZoneTraits(backup=True, colour=("#f3e6d3", "#8a5a1f")),
    "dev": ZoneTraits(colour=("#dff5d8", "#3d8b2f")),
    "ai": ZoneTraits(analytics=True, colour=("#fbd9ec", "#c2378a")),
}


def zone_traits(zone: Zone | str) -> ZoneTraits:
    """The traits of a zone kind (every :class:`Zone` has a row: checked when the model is imported)."""
    return ZONE_TRAITS[str(zone)]


@functools.cache
def zones_where(trait: str) -> tuple[Zone, ...]:
    """The zone kinds with a trait set, e.g. ``zones_where("admin")``, in declaration order.

    Computed once per trait (the table is constant): the flow expansion asks for every flow."""
    return tuple(z for z in Zone if getattr(zone_traits(z), trait))


_UNDESCRIBED = sorted({z.value for z in Zone} ^ set(ZONE_TRAITS))
if _UNDESCRIBED:  # pragma: no cover - a programming error, caught by any test that imports the model
    raise RuntimeError(f"zone kinds and ZONE_TRAITS disagree on {_UNDESCRIBED}: one row per zone kind")


class TenantKind(StrEnum):
    BANK = "bank"
    SHARED = "shared"


class HostRole(StrEnum):
    K8S_CONTROL_PLANE = "k8s_control_plane"
    K8S_WORKER = "k8s_worker"
    DB = "db"
    BASTION = "bastion"
    NTP = "ntp"
    LOG = "log"
    BACKUP = "backup"
    RELAY = "relay"
    WEB = "web"
    GATEWAY = "gateway"
    APP = "app"
    GPU_WORKER = "gpu_worker"
    """A GPU node of the ``ai`` zone: a Kubernetes worker of an AI cluster when it names one."""


K8S_ROLES = frozenset({HostRole.K8S_CONTROL_PLANE, HostRole.K8S_WORKER})
#: Roles whose hosts run a cluster's workloads (a service on a cluster is reached through them).
WORKER_ROLES = frozenset({HostRole.K8S_WORKER, HostRole.GPU_WORKER})
#: Roles of hosts that may be nodes of a cluster.
NODE_ROLES = K8S_ROLES | WORKER_ROLES


class InstitutionKind(StrEnum):
    """What an outside institution is: AI-03 watches flows to ``ai`` and ``saas``."""

    FINANCIAL = "financial"
    """Clearing houses, card networks, other banks (금융결제원, 카드사 …)."""
    AI = "ai"
    """An outside AI service (a generative model behind an API)."""
    SAAS = "saas"
    """Software as a service."""
    OTHER = "other"


class ExemptionKind(StrEnum):
    """The regulator-facing ground of an exemption."""

    SANDBOX = "sandbox"
    """혁신금융서비스 지정 (regulatory sandbox), as the 2024-08-13 roadmap opens it for generative AI."""
    EXCEPTION = "exception"
    """A 전자금융감독규정 시행세칙 제2조의2 exception to network separation."""


class DrMode(StrEnum):
    ACTIVE_ACTIVE = "active-active"
    ACTIVE_STANDBY = "active-standby"
    BACKUP_RESTORE = "backup-restore"


class ReplicationKind(StrEnum):
    CNPG = "cnpg"
    VELERO = "velero"
    STORAGE = "storage"


class DatabasePlatform(StrEnum):
    """Where a database runs: on bare-metal ``db`` hosts, or in a cluster (CloudNativePG)."""

    HOSTS = "hosts"
    CNPG = "cnpg"


class ReplicationMode(StrEnum):
    """How a host database's primary waits for its standbys at the DR peer.

    ``remote_write`` and ``remote_apply`` are PostgreSQL's ``synchronous_commit`` levels: a
    commit returns once the synchronous standby has written (resp. applied) its WAL.
    """

    ASYNC = "async"
    REMOTE_WRITE = "remote_write"
    REMOTE_APPLY = "remote_apply"


SYNCHRONOUS_MODES = frozenset({ReplicationMode.REMOTE_WRITE, ReplicationMode.REMOTE_APPLY})


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class Layer(StrEnum):
    """The layers an environment has; ``deploy`` and ``drift`` act on exactly these."""

    MODEL = "model"
    HOSTS = "hosts"
    STACKS = "stacks"
    LAB = "lab"
    DATA = "data"
    """The host databases' replication and backups against the model (``invoke dr.status``'s checks)."""


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    ADVISORY = "advisory"


class Source(BaseModel):
    """Where an entity was declared: file, 1-based line and column."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(description="Path of the YAML file, relative to the working directory.")
    line: int = Field(description="1-based line.")
    column: int = Field(description="1-based column.")


#: Key of ``__pydantic_private__`` under which :func:`set_positions` keeps an entity's YAML mapping.
_POSITIONS = "_dualdc_positions"


def _positions(entity: BaseModel) -> Any:
    private = entity.__pydantic_private__
    return None if private is None else private.get(_POSITIONS)


def set_positions(entity: BaseModel, raw: Any) -> None:
    """Record the parsed YAML mapping an entity was built from (the loader calls this).

    ``raw`` is a :class:`dualdc.loader.PosDict`: it knows where it, its keys and its values
    stood. It lives in the instance's ``__pydantic_private__`` slot rather than in a
    declared ``PrivateAttr``: pydantic runs Python code per instance for declared private
    attributes, which costs seconds on a topology of 100,000 entities.
    """
    private = entity.__pydantic_private__
    if private is None:
        object.__setattr__(entity, "__pydantic_private__", {_POSITIONS: raw})
    else:
        private[_POSITIONS] = raw


def _source(pos: tuple[str, int, int]) -> Source:
    return Source(file=pos[0], line=pos[1], column=pos[2])


class Entity(BaseModel):
    """Base of every topology entity."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False, validate_default=True)

    @property
    def location(self) -> Source | None:
        """Where the entity was declared, once loaded from YAML."""
        raw = _positions(self)
        return None if raw is None else _source(raw.pos)

    def field_location(self, field: str) -> Source | None:
        """Where one field of this entity was written, falling back to the entity's own location.

        ``field`` may be dotted to reach into a plain mapping field (``policy.NS-01.max_days``);
        a nested key is located where the key stands, a top-level field where its value does.
        """
        raw = _positions(self)
        if raw is None:
            return None
        node: Any = raw
        found: tuple[str, int, int] | None = None
        for depth, part in enumerate(field.split(".")):
            positions = getattr(node, "key_pos" if depth else "value_pos", None)
            if positions is None or part not in node:
                break
            found = positions.get(part, found)
            node = node[part]
        return _source(found) if found else _source(raw.pos)


def entity_in(annotation: Any) -> type[Entity] | None:
    """The entity class a field's annotation holds (``Site``, ``list[Site]``, ``Site | None`` …), if any.

    For tools that walk the model's fields (the unsafe-strings test, the fuzz benchmark).
    """
    if isinstance(annotation, type) and issubclass(annotation, Entity):
        return annotation
    for arg in get_args(annotation):
        found = entity_in(arg)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- environment


class Mirrors(Entity):
    apt: MirrorUrl = Field(description="URL of the internal Debian mirror the hosts install from.")
    apt_suite: str = Field(default="bookworm", pattern=r"^[a-z][a-z0-9.-]{0,31}$",
                           description="Debian suite the mirror serves.")
    registry: HostPort = Field(description="host[:port] of the internal OCI registry mirror for containerd.")
    kubernetes_apt: MirrorUrl | None = Field(
        default=None, description="URL of the internal Kubernetes package repository; none disables it."
    )
    gpu_apt: MirrorUrl | None = Field(
        default=None,
        description="URL of the internal mirror of the GPU driver and NVIDIA container toolkit packages "
                    "(gpu_worker hosts); none: those packages are not installed.",
    )


class AccessPolicy(Entity):
    lockout_attempts: int = Field(ge=1, le=100, description="Failed logins before an account locks (PW-01).")
    lockout_seconds: int = Field(ge=0, description="How long a locked account stays locked; 0 = until reset.")
    idle_timeout_seconds: int = Field(ge=0, description="Idle shell session timeout; 0 means none (PW-01).")


class LogRetention(Entity):
    access_log_days: int = Field(ge=0, description="Retention of access logs on the log hosts (LOG-01).")
    personal_data_log_days: int = Field(
        ge=0, description="Retention of personal-data access logs on the log hosts (LOG-01)."
    )


class Pki(Entity):
    ca_name: str = Field(
        min_length=1,
        description="Name of the internal CA that signs the hosts' TLS certificates "
                    "(PostgreSQL, pgBackRest).",
    )
    directory: str = Field(
        min_length=1,
        description="Folder on the controller (relative to the repository, or absolute) holding ca.crt "
                    "and, per "
                    "host, HOST.crt and HOST.key; a key is copied only to its own host. The lab makes it at "
                    "lab.up.",
    )


class Admin(Entity):
    name: Name = Field(description="Login name of the administrator.")
    ssh_public_key: str = Field(
        pattern=(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}"
                 rf"( {_ONE_LINE}*)?$"),
        max_length=16384,
        description="OpenSSH public key line: type, base64 key, and a comment without control characters.",
    )
    sudo: bool = Field(default=True, description="Whether the admin may use sudo.")


class Environment(Entity):
    name: Name = Field(description="Environment name; equals the folder name under inventories/.")
    description: Text = Field(default="", description="Free text.")
    lab: bool = Field(default=False, description="True for the lab twin built on one Linux machine.")
    layers: list[Layer] = Field(min_length=1, description="Layers this environment has.")
    deploy_order: list[Name] = Field(min_length=1, description="Sites in the order deploy touches them.")
    time_sources: list[Name] = Field(min_length=1, description="Names of the ntp hosts every host syncs to.")
    mirrors: Mirrors = Field(description="Internal package and image mirrors (air-gapped).")
    access: AccessPolicy = Field(description="Login lockout and idle timeout (PW-01).")
    log_retention: LogRetention = Field(description="Log retention on the log hosts (LOG-01).")
    admins: list[Admin] = Field(default_factory=list, description="Administrators with SSH access.")
    ssh_user: UserName = Field(default="root", description="User Ansible connects as.")
    pki: Pki | None = Field(
        default=None, description="The internal CA of the hosts' TLS certificates; needed by host databases."
    )
    kubernetes_version: str = Field(
        default="1.30", pattern=r"^1\.\d+$", description="Default Kubernetes minor version of clusters."
    )
    policy: dict[str, dict[str, int | float | ParamText | bool]] = Field(
        default_factory=dict, description="Rule parameter overrides: {rule id: {parameter: value}}."
    )
    today: dt.date | None = Field(
        default=None,
        description="Pin the evaluation date. Honoured only by the test suite (DUALDC_ALLOW_PINNED_TODAY=1) "
                    "and always reported; otherwise waivers are judged against the real date.",
    )


# --------------------------------------------------------------------------- physical


class Site(Entity):
    name: Name = Field(description="Site name, e.g. gwangju or jeonju.")
    description: Text = Field(default="", description="Free text.")
    city: Label = Field(description="City the data center is in.")
    latitude: float = Field(ge=-90, le=90, description="Latitude in degrees (DR-02 distance).")
    longitude: float = Field(ge=-180, le=180, description="Longitude in degrees (DR-02 distance).")
    racks: int = Field(ge=1, description="Number of racks.")
    power_feeds: int = Field(ge=1, description="Independent utility power feeds.")
    uplinks: int = Field(ge=1, description="Internet/WAN uplinks.")
    dr_peer: Name | None = Field(
        default=None,
        description="The site that takes over when this one is lost; symmetric, and required as soon "
                    "as there is more than one site (nothing picks 'the other site' by position).",
    )


class Tenant(Entity):
    name: Name = Field(description="kjbank, jbbank or group.")
    kind: TenantKind = Field(description="bank, or shared for group services.")
    display_name: Label = Field(description="Human name, e.g. 광주은행.")
    admin_groups: list[GroupName] = Field(default_factory=list,
                                          description="Directory groups with admin rights.")
    viewer_groups: list[GroupName] = Field(default_factory=list,
                                           description="Directory groups with read rights.")


class Segment(Entity):
    name: Name = Field(description="Segment name.")
    site: Name = Field(description="Site the segment is at.")
    tenant: Name = Field(description="Tenant owning the segment.")
    zone: Zone = Field(description="Zone of the segment.")
    vlan: int = Field(ge=1, le=4094, description="802.1Q VLAN id, unique per site.")
    cidr: ipaddress.IPv4Network = Field(description="IPv4 network of the segment.")
    gateway: ipaddress.IPv4Address = Field(description="Default gateway, inside the CIDR.")


class Interface(Entity):
    name: str = Field(pattern=r"^[a-z][a-z0-9.]{0,14}$", description="Device name on the host, e.g. bond0.")
    segment: Name = Field(description="Segment the interface is attached to.")
    address: ipaddress.IPv4Address = Field(description="IPv4 address in the segment.")
    members: list[IfName] = Field(default_factory=list,
                                  description="Bond members (LACP); empty if not a bond.")
    parent: IfName | None = Field(
        default=None, description="Parent device of a VLAN sub-interface (tagged with the segment's VLAN)."
    )

    @model_validator(mode="after")
    def _bond_or_vlan(self) -> Interface:
        if self.members and self.parent:
            raise ValueError("an interface is either a bond (members) or a VLAN sub-interface (parent)")
        return self


class Host(Entity):
    name: Name = Field(description="Host name.")
    site: Name = Field(description="Site the host is at.")
    rack: str = Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,30}[A-Za-z0-9])?$",
                      description="Rack label: letters, digits, '.', '_' and '-', at most 32 characters.")
    role: HostRole = Field(description="What the host does.")
    tenant: Name = Field(
        default="group",
        description="Tenant owning the host: a bank's host stays that bank's endpoint even in a group "
                    "segment (TEN-01 judges endpoints, not segments).")
    cluster: Name | None = Field(default=None, description="Kubernetes cluster the host is a node of.")
    cpu: int = Field(ge=1, description="CPU cores.")
    memory_gib: int = Field(ge=1, description="Memory in GiB.")
    bmc: ipaddress.IPv4Address | None = Field(default=None, description="BMC address (in a mgmt segment).")
    interfaces: list[Interface] = Field(min_length=1, description="Network interfaces.")
    time_sources: list[Name] | None = Field(
        default=None, description="Override of the environment's time sources (NTP-01 flags any)."
    )

    @model_validator(mode="after")
    def _unique_interfaces(self) -> Host:
        names = [i.name for i in self.interfaces]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"interface names repeat: {', '.join(dupes)}")
        if self.role in K8S_ROLES and self.cluster is None:
            raise ValueError(f"a {self.role.value} host needs a cluster")
        return self


class Cluster(Entity):
    name: Name = Field(description="Cluster name.")
    site: Name = Field(description="Site the cluster runs at.")
    zone: Zone = Field(description="Zone the cluster sits in.")
    tenants: list[Name] = Field(min_length=1, description="Tenants with namespaces on the cluster.")
    kubernetes_version: str | None = Field(
        default=None, pattern=r"^1\.\d+$", description="Kubernetes minor version; default: environment's."
    )
    pod_cidr: ipaddress.IPv4Network = Field(description="Pod network.")
    service_cidr: ipaddress.IPv4Network = Field(description="Service network.")
    kube_context: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,252}$",
                                     description="kubeconfig context; default: the name.")


class DatabaseHosts(Entity):
    """The hosts of a host database at one site."""

    primary: Name | None = Field(
        default=None, description="The primary host; only at the service's primary site."
    )
    standbys: list[Name] = Field(
        default_factory=list,
        description="Standby hosts: an optional local one at the primary site, the DR standbys at its peer.",
    )


class Database(Entity):
    platform: DatabasePlatform | None = Field(
        default=None,
        description="'hosts' (bare-metal db hosts, PostgreSQL streaming replication) or 'cnpg' "
                    "(CloudNativePG in the service's clusters); default: hosts for a tier-1 service, "
                    "else cnpg.",
    )
    instances: int = Field(
        default=3, ge=1, le=9, description="cnpg: PostgreSQL instances at the primary site."
    )
    storage_gib: int | None = Field(default=None, ge=1, description="cnpg: storage per instance (required).")
    postgres_version: int | None = Field(
        default=None, ge=13, le=17,
        description="PostgreSQL major version; default: 15 on hosts (Debian 12), 16 for cnpg.",
    )
    hosts: dict[Name, DatabaseHosts] = Field(
        default_factory=dict,
        description="hosts: per site, its primary and standby hosts (the primary site and its DR peer).",
    )
    replication_mode: ReplicationMode = Field(
        default=ReplicationMode.ASYNC,
        description="hosts: async, or synchronous to the peer (remote_write, remote_apply); RPO 0 needs "
                    "synchronous (DB-03).",
    )

    @property
    def version(self) -> int:
        """The PostgreSQL major version, defaulted by platform."""
        if self.postgres_version is not None:
            return self.postgres_version
        return 15 if self.platform is DatabasePlatform.HOSTS else 16

    def placements(self) -> list[tuple[str, str, str]]:
        """(site, host, 'primary' or 'standby') of a host database, primary first."""
        found = [(site, at.primary, "primary") for site, at in self.hosts.items() if at.primary]
        found += [(site, h, "standby") for site, at in self.hosts.items() for h in at.standbys]
        return found

    @property
    def primary_host(self) -> str | None:
        return next((h for _, h, role in self.placements() if role == "primary"), None)

    def check_platform(self) -> None:
        """Raise ValueError if the fields do not fit the (resolved) platform."""
        if self.platform is DatabasePlatform.CNPG:
            if self.hosts:
                raise ValueError("a 'cnpg' database runs in the service's clusters; 'hosts' is for "
                                 "platform 'hosts'")
            if self.storage_gib is None:
                raise ValueError("a 'cnpg' database needs storage_gib")
        elif self.platform is DatabasePlatform.HOSTS:
            primaries = [h for _, h, role in self.placements() if role == "primary"]
            if len(primaries) != 1:
                raise ValueError(f"a 'hosts' database names exactly one primary host, found "
                                 f"{len(primaries)} ({', '.join(primaries) or 'none'})")
            # Judged by value, not by presence, so that a dumped topology loads again.
            default_instances = type(self).model_fields["instances"].default
            if self.storage_gib is not None or self.instances != default_instances:
                raise ValueError("storage_gib and instances are cnpg settings; a 'hosts' database "
                                 "uses its hosts' disks")


class Backup(Entity):
    target_site: Name | None = Field(
        default=None, description="Site the backups land at (BK-01: the other site); default: the DR peer."
    )
    retention_days: int = Field(ge=1, description="How long backups are kept.")
    repository_host: Name | None = Field(
        default=None,
        description="hosts databases: the backup host holding the pgBackRest repository; default: the "
                    "first backup host at the target site by name.",
    )
    full_every_hours: int = Field(
        default=168, ge=1, le=24 * 31, description="hosts databases: a full backup at least this often."
    )
    diff_every_hours: int = Field(
        default=24, ge=1, le=24 * 31,
        description="hosts databases: a differential backup at least this often.",
    )
    incr_every_hours: int = Field(
        default=1, ge=1, le=24 * 31, description="hosts databases: an incremental backup at least this often."
    )


class Service(Entity):
    name: Name = Field(description="Service name.")
    description: Text = Field(default="", description="Free text.")
    tenant: Name = Field(
        description="Tenant running the service; a service of a shared tenant is a group service, the only "
                    "kind of endpoint that may stand between two banks (TEN-01).")
    zone: Zone = Field(description="Zone the service sits in.")
    tier: int = Field(ge=1, le=3, description="1 = 핵심업무 (core business).")
    primary_site: Name = Field(description="Site that serves in normal operation.")
    dr_mode: DrMode = Field(description="How the service survives the loss of its primary site.")
    rto_minutes: int = Field(ge=0, description="Recovery time objective.")
    rpo_minutes: int = Field(ge=0, description="Recovery point objective.")
    replication: list[ReplicationKind] = Field(default_factory=list, description="Replication mechanisms.")
    clusters: list[Name] = Field(default_factory=list, description="Clusters the service runs on.")
    hosts: list[Name] = Field(default_factory=list, description="Bare-metal hosts the service runs on.")
    own_namespace: bool = Field(default=False, description="Give the service its own namespace.")
    relay: bool = Field(default=False, description="A declared relay into internal (NS-01).")
    personal_data: bool = Field(default=False, description="Processes personal data (LOG-01).")
    holds: DataClass | None = Field(
        default=None,
        description="The most sensitive class of data the service holds (personal, pseudonymised, anonymised "
                    "or none); required in the ai zone (AI-01). personal_data: true means personal.")
    pseudonymiser: bool = Field(
        default=False,
        description="A declared pseudonymisation service in internal: the only source of data flows into the "
                    "ai zone (AI-01), a relay-like hop.")
    cpu: float = Field(ge=0, allow_inf_nan=False,
                       description="CPU cores needed to run it at one site (CAP-01).")
    memory_gib: float = Field(ge=0, allow_inf_nan=False,
                              description="Memory needed to run it at one site (CAP-01).")
    ports: list[Port] = Field(default_factory=list, description="Ports the service listens on.")
    database: Database | None = Field(
        default=None, description="PostgreSQL database: on db hosts (streaming replication) or CloudNativePG."
    )
    backup: Backup | None = Field(
        default=None, description="Backups: pgBackRest for a hosts database, Velero for cluster workloads."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Service:
        if not self.clusters and not self.hosts:
            raise ValueError("a service runs somewhere: give clusters or hosts")
        db = self.database
        if db is not None:
            if db.platform is None:
                db.platform = DatabasePlatform.HOSTS if self.tier == 1 else DatabasePlatform.CNPG
            db.check_platform()
        cnpg = db is not None and db.platform is DatabasePlatform.CNPG
        if ReplicationKind.CNPG in self.replication and not cnpg:
            raise ValueError("replication 'cnpg' needs a database on platform 'cnpg'")
        if ReplicationKind.VELERO in self.replication and self.backup is None:
            raise ValueError("replication 'velero' needs a backup")
        if self.dr_mode is DrMode.BACKUP_RESTORE and self.backup is None:
            raise ValueError("dr_mode 'backup-restore' needs a backup")
        if self.personal_data and self.holds not in (None, DataClass.PERSONAL):
            raise ValueError(f"personal_data: true means the service holds personal data, not "
                             f"{self.holds.value!r}")
        if self.pseudonymiser and self.zone is not Zone.INTERNAL:
            raise ValueError("a pseudonymisation service (pseudonymiser: true) sits in the internal zone")
        return self

    @property
    def data_held(self) -> DataClass | None:
        """What the service holds: ``holds``, else personal when ``personal_data`` says so."""
        if self.holds is not None:
            return self.holds
        return DataClass.PERSONAL if self.personal_data else None


class Institution(Entity):
    name: Name = Field(description="Outside institution, e.g. kftc.")
    display_name: Label = Field(description="Human name, e.g. 금융결제원.")
    cidrs: list[ipaddress.IPv4Network] = Field(min_length=1, description="Its networks we connect to.")
    ports: list[Port] = Field(min_length=1, description="Ports it is reached on (EXT-01).")
    kind: InstitutionKind = Field(
        default=InstitutionKind.FINANCIAL,
        description="financial (default), ai (an outside AI service), saas or other; flows from the ai zone "
                    "to ai or saas need an exemption (AI-03).")
    endpoint: HostPort | None = Field(
        default=None,
        description="ai/saas: the service's endpoint (host[:port]) our side connects to (AI-03).")
    model: Label | None = Field(default=None, description="ai: the model used at the endpoint (AI-03).")
    model_version: Label | None = Field(
        default=None, description="ai: the model version in use; a new version needs a new approval (AI-03).")

    @model_validator(mode="after")
    def _ai_service(self) -> Institution:
        if self.kind is InstitutionKind.AI and (self.endpoint is None or self.model is None
                                                or self.model_version is None):
            raise ValueError("an institution of kind 'ai' names its endpoint, model and model_version")
        return self


ENDPOINT_RE = re.compile(r"^(internet|(segment|service|host|institution):[a-z][a-z0-9-]*[a-z0-9])$")
EndpointRef = Annotated[
    str,
    StringConstraints(pattern=ENDPOINT_RE.pattern),
    Field(description="'internet', or 'segment:NAME', 'service:NAME', 'host:NAME', 'institution:NAME'."),
]


class Flow(Entity):
    name: Name = Field(description="Flow name.")
    source: EndpointRef = Field(description="Who opens the connection.")
    destination: EndpointRef = Field(description="Who listens.")
    protocol: Protocol = Field(default=Protocol.TCP, description="tcp or udp.")
    ports: list[Port] | Literal["any"] = Field(description="Destination ports, or 'any' (EXT-01 flags it).")
    purpose: Text = Field(default="", description="Why the flow exists (NS-03).")
    cross_site: bool = Field(default=False, description="Connects the two sites (else paired per site).")
    data: DataClass | None = Field(
        default=None,
        description="What the flow carries: personal, pseudonymised, anonymised or none; declared by every "
                    "flow that carries data out of internal (DATA-01) and every flow into ai (AI-01).")
    publishes_results: bool = Field(
        default=False,
        description="A declared result-publishing flow from the ai zone into internal, on named ports the "
                    "destination service declares (AI-02).")


class LinkEnd(Entity):
    site: Name = Field(description="Site of this end.")
    address: ipaddress.IPv4Address = Field(description="Router address of this end on the link network.")


class Link(Entity):
    name: Name = Field(description="Inter-site link name.")
    carrier: Normalised = Field(description="Carrier providing the circuit (compared case- and space-blind).")
    path: Normalised = Field(
        description="Physical route; independent links have distinct paths (compared case- and space-blind)."
    )
    bandwidth_gbps: float = Field(gt=0, allow_inf_nan=False, description="Capacity.")
    network: ipaddress.IPv4Network = Field(description="Point-to-point network of the link.")
    ends: list[LinkEnd] = Field(min_length=2, max_length=2, description="The two ends.")


class Waiver(Entity):
    rule: str = Field(pattern=r"^[A-Z]{2,4}-\d{2}$", description="Rule id waived, e.g. DR-01.")
    target: str = Field(pattern=r"^[a-z]+:[^\x00-\x20\x7f]{1,200}$",
                        description="Finding target, e.g. 'service:jb-card'.")
    reason: Text = Field(min_length=10, description="Why the waiver is acceptable.")
    approval: Label = Field(min_length=3, description="정보보호위원회 resolution reference.")
    expires: dt.date = Field(description="Last day the waiver holds.")


class ApprovedAiService(Entity):
    """What a sandbox approval is tied to: one endpoint, one model, one version."""

    endpoint: HostPort = Field(description="The approved endpoint (host[:port]) of the outside AI service.")
    model: Label = Field(min_length=1, description="The approved model.")
    model_version: Label = Field(
        min_length=1, description="The approved model version; a new one needs a new approval.")


class Exemption(Entity):
    """A regulator-facing departure from a provision: a sandbox designation or a 시행세칙 제2조의2
    exception. Waivers silence one finding; an exemption is what the regulator approved."""

    name: Name = Field(description="Exemption name.")
    kind: ExemptionKind = Field(description="sandbox (혁신금융서비스 지정) or exception (시행세칙 제2조의2).")
    provision: Label = Field(
        min_length=3,
        description="The provision departed from, with its edition, e.g. "
                    "'전자금융감독규정 제15조 제1항 제3호 (2025-02-05)'.")
    provision_edition: dt.date = Field(
        description="The edition (date) of the text the provision is cited from; EXM-01 warns when a newer "
                    "edition has replaced it (articles may have moved).")
    flows: list[Name] = Field(default_factory=list, description="Scope: the flows the exemption covers.")
    services: list[Name] = Field(default_factory=list,
                                 description="Scope: the services the exemption covers.")
    approval: Label = Field(min_length=3, description="Approval reference (FSC designation or 정보보호위원회 "
                                                      "resolution).")
    approved_on: dt.date = Field(description="Date of the approval.")
    risk_assessment: Label = Field(min_length=3, description="Reference of the self risk assessment "
                                                             "(자체 위험성 평가).")
    alternative_controls: list[Label] = Field(
        min_length=1, description="The alternative controls (정보보호 통제, 별표7) applied instead.")
    expires: dt.date = Field(description="Last day the exemption holds.")
    ai_service: ApprovedAiService | None = Field(
        default=None,
        description="For an outside AI service: the approved endpoint, model and model version.")

    @model_validator(mode="after")
    def _scoped(self) -> Exemption:
        if not self.flows and not self.services:
            raise ValueError("an exemption's scope names at least one flow or service")
        if self.expires < self.approved_on:
            raise ValueError("an exemption expires after it was approved")
        return self


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class Problem:
    """One reference problem: where (a field path inside the topology) and what."""

    loc: tuple[str | int, ...]
    message: str


class ReferenceErrors(Exception):
    """Raised by :class:`Topology` with every dangling reference found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} reference problem(s)")
        self.problems = problems


#: Set to ``1`` (tests only) to let ``environment.today`` pin the evaluation date.
PINNED_TODAY_ENV = "DUALDC_ALLOW_PINNED_TODAY"


def today_pin_allowed() -> bool:
    """Whether ``environment.today`` is honoured (only under the test suite)."""
    return os.environ.get(PINNED_TODAY_ENV) == "1"


ENTITY_LISTS: tuple[str, ...] = (
    "sites",
    "tenants",
    "segments",
    "hosts",
    "clusters",
    "services",
    "institutions",
    "flows",
    "links",
    "waivers",
    "exemptions",
)


class Topology(Entity):
    """An environment: the merge of every YAML file in ``inventories/<env>/``."""

    environment: Environment = Field(description="Settings of the environment.")
    sites: list[Site] = Field(min_length=1, description="Data center sites.")
    tenants: list[Tenant] = Field(min_length=1, description="Tenants.")
    segments: list[Segment] = Field(default_factory=list, description="Network segments.")
    hosts: list[Host] = Field(default_factory=list, description="Bare-metal hosts.")
    clusters: list[Cluster] = Field(default_factory=list, description="Kubernetes clusters.")
    services: list[Service] = Field(default_factory=list, description="Services the banks run.")
    institutions: list[Institution] = Field(default_factory=list, description="Outside institutions.")
    flows: list[Flow] = Field(default_factory=list, description="Allowed connections; the rest is denied.")
    links: list[Link] = Field(default_factory=list, description="Inter-site replication links.")
    waivers: list[Waiver] = Field(default_factory=list, description="Approved exceptions to rules.")
    exemptions: list[Exemption] = Field(
        default_factory=list,
        description="Regulator-facing exemptions: sandbox designations and 시행세칙 제2조의2 exceptions "
                    "(EXM-01).")

    _index: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _cache: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def cache(self) -> dict[str, Any]:
        """Derived data computed once per loaded topology (e.g. expanded flows)."""
        private = self.__pydantic_private__  # not self._cache: pydantic's __getattr__ is slow
        assert private is not None
        return private["_cache"]  # type: ignore[no-any-return]

    # -- lookups ----------------------------------------------------------------------

    def _table(self, kind: str) -> dict[str, Any]:
        # Straight from the private slot: ``self._index`` goes through pydantic's
        # ``__getattr__``, slow enough to matter for 100,000 lookups.
        private = self.__pydantic_private__
        assert private is not None
        return private["_index"][kind]  # type: ignore[no-any-return]

    def site(self, name: str) -> Site:
        return self._table("sites")[name]  # type: ignore[no-any-return]

    def tenant(self, name: str) -> Tenant:
        return self._table("tenants")[name]  # type: ignore[no-any-return]

    def segment(self, name: str) -> Segment:
        return self._table("segments")[name]  # type: ignore[no-any-return]

    def host(self, name: str) -> Host:
        return self._table("hosts")[name]  # type: ignore[no-any-return]

    def cluster(self, name: str) -> Cluster:
        return self._table("clusters")[name]  # type: ignore[no-any-return]

    def service(self, name: str) -> Service:
        return self._table("services")[name]  # type: ignore[no-any-return]

    def institution(self, name: str) -> Institution:
        return self._table("institutions")[name]  # type: ignore[no-any-return]

    def exemption(self, name: str) -> Exemption:
        return self._table("exemptions")[name]  # type: ignore[no-any-return]

    def flow(self, name: str) -> Flow:
        return self._table("flows")[name]  # type: ignore[no-any-return]

    def segments_at(self, site: str) -> list[Segment]:
        return [s for s in self.segments if s.site == site]

    def _hosts_by(self, field: str) -> dict[str | None, list[Host]]:
        """Hosts grouped by ``site`` or ``cluster``, built once (rebuilt if ``hosts`` changes length
        or is replaced), so per-site and per-cluster lookups do not scan every host."""
        key = f"model.hosts_by_{field}"
        hosts = self.hosts
        found = self.cache.get(key)
        if found is None or found[0] is not hosts or found[1] != len(hosts):
            index: dict[str | None, list[Host]] = {}
            for host in hosts:
                index.setdefault(getattr(host, field), []).append(host)
            found = self.cache[key] = (hosts, len(hosts), index)
        index = found[2]
        return index

    def hosts_at(self, site: str) -> list[Host]:
        return list(self._hosts_by("site").get(site, ()))

    def clusters_at(self, site: str) -> list[Cluster]:
        return [c for c in self.clusters if c.site == site]

    def cluster_hosts(self, cluster: str) -> list[Host]:
        return list(self._hosts_by("cluster").get(cluster, ()))

    def deploy_order(self) -> list[str]:
        """The sites in deploy order: ``environment.deploy_order``, then any it leaves out (sorted)."""
        declared = {s.name for s in self.sites}
        order = [s for s in self.environment.deploy_order if s in declared]
        return order + sorted(declared - set(order))

    def dr_peer(self, site: str) -> str:
        """The site's declared DR peer (``Site.dr_peer``); KeyError if it names none."""
        peer = self.site(site).dr_peer
        if peer is None:
            raise KeyError(f"site {site!r} names no dr_peer")
        return peer

    def backup_site(self, service: Service) -> str | None:
        """Where a service's backups land: ``backup.target_site``, else its primary's DR peer."""
        if service.backup is None:
            return None
        if service.backup.target_site is not None:
            return service.backup.target_site
        return self.site(service.primary_site).dr_peer

    def host_databases(self) -> list[Service]:
        """Services whose database runs on hosts (``platform: hosts``), by name."""
        return sorted((s for s in self.services if s.database is not None
                       and s.database.platform is DatabasePlatform.HOSTS), key=lambda s: s.name)

    def repository_host(self, service: Service) -> Host | None:
        """The backup host holding a host database's pgBackRest repository, if any."""
        if service.backup is None:
            return None
        if service.backup.repository_host is not None:
            return self.host(service.backup.repository_host)
        site = self.backup_site(service)
        found = sorted((h for h in self.hosts_at(site) if h.role is HostRole.BACKUP),
                       key=lambda h: h.name) if site is not None else []
        return found[0] if found else None

    def management_address(self, host: Host) -> ipaddress.IPv4Address:
        """The address Ansible and the lab reach a host on: its first mgmt-zone interface."""
        for iface in host.interfaces:
            if zone_traits(self.segment(iface.segment).zone).admin:
                return iface.address
        return host.interfaces[0].address

    def service_sites(self, service: Service) -> list[str]:
        """Sites the service runs at, primary first."""
        sites = {self.cluster(c).site for c in service.clusters} | {self.host(h).site for h in service.hosts}
        return sorted(sites, key=lambda s: (s != service.primary_site, s))

    def today(self) -> dt.date:
        """The date waivers are judged against: the real one.

        ``environment.today`` pins it only when :data:`PINNED_TODAY_ENV` is ``1`` (the test
        suite sets it); a topology cannot move its own clock. Rule WV-03 reports the pin.
        """
        pinned = self.environment.today
        if pinned is not None and today_pin_allowed():
            return pinned
        return dt.date.today()

    def iter_entities(self) -> Iterator[tuple[str, Entity]]:
        """Every named entity as ('kind:name', entity)."""
        for key in ENTITY_LISTS:
            kind = key[:-1]
            for item in getattr(self, key):
                name = getattr(item, "name", None)
                if name is None:
                    name = f"{item.rule}@{item.target}"
                yield f"{kind}:{name}", item

    # -- reference resolution ------------------------------------------------------------

    def _check_peers(self, problems: list[Problem], sites: dict[str, Any]) -> None:
        """Every site names its DR peer when there are several; peers are mutual."""
        for i, site in enumerate(self.sites):
            loc: tuple[str | int, ...] = ("sites", i, "dr_peer")
            peer = site.dr_peer
            if peer is None:
                if len(sites) > 1:
                    problems.append(Problem(("sites", i), (
                        f"site {site.name!r} names no dr_peer; with several sites each one names its DR "
                        "peer explicitly (nothing picks 'the other site' by position)")))
            elif peer == site.name:
                problems.append(Problem(loc, f"site {site.name!r} names itself as its dr_peer"))
            elif peer not in sites:
                known = ", ".join(sorted(sites)[:8])
                problems.append(Problem(loc, f"site {site.name!r} refers to site {peer!r} as its dr_peer, "
                                             f"which is not declared (known: {known})"))
            elif sites[peer].dr_peer != site.name:
                problems.append(Problem(loc, (
                    f"site {site.name!r} names {peer!r} as its dr_peer but {peer!r} names "
                    f"{sites[peer].dr_peer!r}; DR peers are mutual")))

    @model_validator(mode="after")
    def _resolve(self) -> Topology:
        index: dict[str, dict[str, Any]] = {}
        for key in ENTITY_LISTS:
            if key == "waivers":
                continue
            table: dict[str, Any] = {}
            for item in getattr(self, key):
                table.setdefault(item.name, item)  # duplicates are findings (STR-01)
            index[key] = table
        self._index = index
        problems: list[Problem] = []

        def need(kind: str, name: str | None, loc: tuple[str | int, ...], owner: str) -> None:
            if name is not None and name not in index[kind]:
                known = ", ".join(sorted(index[kind])[:8]) or "none declared"
                problems.append(
                    Problem(loc, f"{owner} refers to {kind[:-1]} {name!r}, which is not declared "
                                 f"(known: {known})")
                )

        env = self.environment
        self._check_peers(problems, index["sites"])
        for i, name in enumerate(env.deploy_order):
            need("sites", name, ("environment", "deploy_order", i), "environment")
        for i, name in enumerate(env.time_sources):
            need("hosts", name, ("environment", "time_sources", i), "environment")
        for i, seg in enumerate(self.segments):
            owner = f"segment {seg.name!r}"
            need("sites", seg.site, ("segments", i, "site"), owner)
            need("tenants", seg.tenant, ("segments", i, "tenant"), owner)
        sites, tenants, clusters, segments = (index[k] for k in ("sites", "tenants", "clusters", "segments"))
        for i, host in enumerate(self.hosts):
            # membership first: this loop and the flows' run 100,000s of times on a big topology
            if (host.site in sites and host.tenant in tenants
                    and (host.cluster is None or host.cluster in clusters)
                    and all(iface.segment in segments for iface in host.interfaces)
                    and not host.time_sources):
                continue
            owner = f"host {host.name!r}"
            need("sites", host.site, ("hosts", i, "site"), owner)
            need("tenants", host.tenant, ("hosts", i, "tenant"), owner)
            need("clusters", host.cluster, ("hosts", i, "cluster"), owner)
            for j, iface in enumerate(host.interfaces):
                need("segments", iface.segment, ("hosts", i, "interfaces", j, "segment"), owner)
            for j, ts in enumerate(host.time_sources or []):
                need("hosts", ts, ("hosts", i, "time_sources", j), owner)
        for i, cl in enumerate(self.clusters):
            owner = f"cluster {cl.name!r}"
            need("sites", cl.site, ("clusters", i, "site"), owner)
            for j, t in enumerate(cl.tenants):
                need("tenants", t, ("clusters", i, "tenants", j), owner)
        for i, svc in enumerate(self.services):
            owner = f"service {svc.name!r}"
            need("tenants", svc.tenant, ("services", i, "tenant"), owner)
            need("sites", svc.primary_site, ("services", i, "primary_site"), owner)
            for j, c in enumerate(svc.clusters):
                need("clusters", c, ("services", i, "clusters", j), owner)
            for j, h in enumerate(svc.hosts):
                need("hosts", h, ("services", i, "hosts", j), owner)
            if svc.backup is not None:
                need("sites", svc.backup.target_site, ("services", i, "backup", "target_site"), owner)
                need("hosts", svc.backup.repository_host, ("services", i, "backup", "repository_host"), owner)
            if svc.database is not None:
                for site, at in svc.database.hosts.items():
                    loc: tuple[str | int, ...] = ("services", i, "database", "hosts", site)
                    need("sites", site, loc, f"the database of {owner}")
                    need("hosts", at.primary, (*loc, "primary"), f"the database of {owner}")
                    for j, h in enumerate(at.standbys):
                        need("hosts", h, (*loc, "standbys", j), f"the database of {owner}")
        for i, flow in enumerate(self.flows):
            for end, ref in (("source", flow.source), ("destination", flow.destination)):
                if ref != "internet":
                    kind, _, name = ref.partition(":")
                    if name not in index[kind + "s"]:
                        need(kind + "s", name, ("flows", i, end), f"flow {flow.name!r}")
        for i, link in enumerate(self.links):
            for j, link_end in enumerate(link.ends):
                need("sites", link_end.site, ("links", i, "ends", j, "site"), f"link {link.name!r}")
        for i, exm in enumerate(self.exemptions):
            for j, f in enumerate(exm.flows):
                need("flows", f, ("exemptions", i, "flows", j), f"exemption {exm.name!r}")
            for j, svc_name in enumerate(exm.services):
                need("services", svc_name, ("exemptions", i, "services", j), f"exemption {exm.name!r}")
        if not problems:
            # Every site a service runs at needs its (site, tenant, zone) segment.
            placed = {(s.site, s.tenant, s.zone) for s in self.segments}
            for i, svc in enumerate(self.services):
                for site in self.service_sites(svc):
                    if (site, svc.tenant, svc.zone) not in placed:
                        problems.append(Problem(("services", i, "zone"), (
                            f"service {svc.name!r} runs at {site} but no segment there is for tenant "
                            f"{svc.tenant!r} in zone {svc.zone.value!r}")))
        if problems:
            raise ReferenceErrors(problems)
        return self
