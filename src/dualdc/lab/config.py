"""Where the lab keeps things and what it builds from: paths, the Debian mirror, the base packages.

Every setting has a default and an environment variable to override it (tests and the
benchmark use them to point the lab at temporary directories):

=========================  =====================================  ==================================
variable                   default                                what
=========================  =====================================  ==================================
``DUALDC_LAB_STATE_DIR``   ``<project>/.state/<env>/lab``         keys, known_hosts, overlay uppers
``DUALDC_LAB_CACHE_DIR``   ``/var/cache/dualdc/lab``              cached debootstrap base images
``DUALDC_LAB_MIRROR``      read from ``/etc/apt/sources.list*``   Debian mirror for debootstrap
``DUALDC_LAB_INFRA_CIDR``  ``100.64.254.0/24``                    controller and uplink /30 links
``DUALDC_LAB_LOCK``        ``/run/lock/dualdc-lab.lock``          the machine-wide lab lock
=========================  =====================================  ==================================
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from dualdc.base.paths import lab_known_hosts, lab_private_key, lab_state
from dualdc.lab.errors import LabError

#: Packages baked into the base image, on top of debootstrap's minbase. The roles install
#: nothing at converge time in the lab (the sites are air-gapped): what they need is here.
BASE_PACKAGES: tuple[str, ...] = (
    "openssh-server",
    "nftables",
    "chrony",
    "auditd",
    "rsyslog",
    "logrotate",
    "sudo",
    "python3",
    "python3-apt",
    "containerd",
    "iproute2",
    "procps",
    "libpam-runtime",
    "libpam-modules",
    "kmod",
    "tini",
    "iputils-ping",
    "ca-certificates",
    # the db and backup hosts' DR stack (PostgreSQL streaming replication, pgBackRest), and
    # cron for the scheduled backups: baked in so nothing downloads at converge
    "postgresql-15",
    "postgresql-client-15",
    "pgbackrest",
    "cron",
    "openssl",
)

DEFAULT_CACHE_DIR = Path("/var/cache/dualdc/lab")
DEFAULT_INFRA_CIDR = "100.64.254.0/24"
DEFAULT_LOCK = Path("/run/lock/dualdc-lab.lock")
#: Addresses standing for "the internet" in each site's edge namespace (RFC 2544 range).
DEFAULT_INTERNET_CIDR = "198.18.0.0/24"
APT_SOURCE_FILES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


state_dir = lab_state
private_key_path = lab_private_key
known_hosts_path = lab_known_hosts


def ssh_dir(env: str) -> Path:
    """The folder of the lab's key, known_hosts and ssh_config."""
    return lab_private_key(env).parent


@dataclass(frozen=True)
class AptSource:
    """One Debian repository entry read from the machine's apt configuration."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None
    file: str


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
            continue
        if raw[0] in " \t" and key:
            current[key] += "\n" + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if sep:
            key = name.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def read_apt_sources(paths: tuple[Path, ...] = APT_SOURCE_FILES) -> list[AptSource]:
    """Every ``deb`` entry of the one-line ``*.list`` and deb822 ``*.sources`` files apt reads."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    found: list[AptSource] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if file.suffix == ".sources":
            for st in _deb822_stanzas(text):
                if st.get("enabled", "yes").lower() == "no" or "deb" not in st.get("types", "").split():
                    continue
                signed = st.get("signed-by")
                if signed and "\n" in signed:  # an inline key block, not a path
                    signed = None
                for uri in st.get("uris", "").split():
                    found.append(AptSource(uri, tuple(st.get("suites", "").split()),
                                           tuple(st.get("components", "").split()), signed, str(file)))
            continue
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line.startswith("deb "):
                continue
            options = re.search(r"\[([^\]]*)\]", line)
            signed = None
            if options:
                for opt in options.group(1).split():
                    if opt.startswith("signed-by="):
                        signed = opt.split("=", 1)[1]
            parts = (line.replace(options.group(0), " ") if options else line).split()
            if len(parts) >= 3:
                found.append(AptSource(parts[1], (parts[2],), tuple(parts[3:]), signed, str(file)))
    return found


def find_mirror(suite: str, sources: list[AptSource] | None = None) -> tuple[str, Path | None]:
    """The mirror URI (and keyring) serving ``suite``'s ``main``, from the machine's apt sources."""
    override = os.environ.get("DUALDC_LAB_MIRROR")
    if override:
        return override, DEFAULT_KEYRING if DEFAULT_KEYRING.is_file() else None
    for src in sources if sources is not None else read_apt_sources():
        if suite in src.suites and "main" in src.components and src.uri.split(":", 1)[0] in (
                "http", "https", "file", "ftp"):
            keyring = Path(src.signed_by) if src.signed_by else DEFAULT_KEYRING
            return src.uri, keyring if keyring.is_file() else None
    raise LabError(
        f"no apt source for Debian {suite!r} (component main) in /etc/apt/sources.list or "
        "/etc/apt/sources.list.d/; add one, or set DUALDC_LAB_MIRROR to the mirror's URL")


@dataclass(frozen=True)
class LabConfig:
    """Resolved settings of one lab run."""

    env: str
    state: Path
    cache: Path
    infra: ipaddress.IPv4Network
    internet: ipaddress.IPv4Network
    lock: Path
    suite: str = "bookworm"
    packages: tuple[str, ...] = field(default=BASE_PACKAGES)

    @classmethod
    def load(cls, env: str, suite: str = "bookworm") -> LabConfig:
        try:
            infra = ipaddress.IPv4Network(os.environ.get("DUALDC_LAB_INFRA_CIDR", DEFAULT_INFRA_CIDR))
        except ValueError as exc:
            raise LabError(f"DUALDC_LAB_INFRA_CIDR is not an IPv4 network: {exc}") from None
        return cls(
            env=env,
            state=state_dir(env),
            cache=Path(os.environ.get("DUALDC_LAB_CACHE_DIR", str(DEFAULT_CACHE_DIR))).resolve(),
            infra=infra,
            internet=ipaddress.IPv4Network(DEFAULT_INTERNET_CIDR),
            lock=Path(os.environ.get("DUALDC_LAB_LOCK", str(DEFAULT_LOCK))),
            suite=suite,
        )

    @property
    def ssh(self) -> Path:
        return self.state / "ssh"

    @property
    def private_key(self) -> Path:
        return self.ssh / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    @property
    def state_file(self) -> Path:
        return self.state / "state.json"

    def host_dir(self, host: str) -> Path:
        return self.state / "hosts" / host

