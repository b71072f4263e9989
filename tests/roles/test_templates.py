"""The files the roles write, rendered from the lab model and checked with the real tools.

Expected values come from the topology (through :mod:`dualdc.inventory` or the model
itself) or from the regulation, never from the templates; each file type is checked with
the program that reads it where that program exists here (nft, sshd, tomllib, yaml).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dualdc.loader import load_environment
from dualdc.model import HostRole

from .conftest import K8S_ROLES, ROLES, Renderer, needs_root

LAB = load_environment("lab")
HOSTS = [h.name for h in LAB.hosts]
K8S_HOSTS = [h.name for h in LAB.hosts if h.role.value in K8S_ROLES]


def _templates(role: str) -> list[str]:
    return sorted(p.name for p in (ROLES / role / "templates").glob("*.j2"))


# --------------------------------------------------------------------------- every template


@pytest.mark.parametrize(
    "role",
    ["base", "time_sync", "firewall", "audit", "network", "container_runtime", "k8s_node", "gpu_worker"],
)
def test_every_template_starts_with_the_managed_comment(renderer: Renderer, role: str) -> None:
    host = "gj-core-wk-01"  # a k8s worker: every role applies to it
    item = {
        "file": "x",
        "iface": {
            "name": "eth9",
            "members": ["eno1"],
            "vlan": 10,
            "segment": "s",
            "parent": "eth0",
            "zone": "internal",
            "address": "10.0.0.2",
            "prefix": 24,
            "cidr": "10.0.0.0/24",
            "gateway": "10.0.0.1",
        },
        "member": "eno1",
    }
    for template in _templates(role):
        text = renderer.render(
            role,
            template,
            host,
            item=item if role == "network" else "docker.io",
            _audit_privileged=["/usr/bin/sudo"],
        )
        lines = text.splitlines()
        if lines[0].startswith("#!"):
            lines = lines[1:]
        assert lines[1] == "# " + renderer.managed, f"{role}/{template} does not start with ansible_managed"


# --------------------------------------------------------------------------- firewall


def _nft_check(ruleset: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "--net", "--", "nft", "-c", "-f", "/dev/stdin"],
        input=ruleset,
        text=True,
        capture_output=True,
        check=False,
    )


@needs_root
@pytest.mark.parametrize("host", HOSTS)
def test_firewall_ruleset_loads_and_allows_exactly_the_model(
    renderer: Renderer, lab_inventory: dict[str, Any], host: str
) -> None:
    ruleset = renderer.render("firewall", "table.nft.j2", host)
    check = _nft_check(ruleset)
    assert check.returncode == 0, check.stderr
    # As the kernel lists it, loaded in a scratch namespace.
    listed = subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", "nft -f /dev/stdin && nft -s list table inet dualdc"],
        input=ruleset,
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    assert "type filter hook input priority filter; policy drop;" in listed
    hv = lab_inventory["hostvars"][host]
    ssh_set = re.search(r"set ssh_sources \{.*?elements = \{ (.*?) \}", listed, re.S)
    assert ssh_set is not None
    listed_sources = {str(ipaddress.ip_network(s.strip())) for s in ssh_set.group(1).split(",")}
    assert listed_sources == {
        str(ipaddress.ip_network(s)) for s in hv["dualdc_ssh_sources"] + hv["dualdc_controller_networks"]
    }
    accepts = [
        line.strip() for line in listed.splitlines() if line.strip().endswith('"') and " accept " in line
    ]
    by_comment = {re.search(r'comment "(.*)"', line).group(1): line for line in accepts}  # type: ignore[union-attr]
    for rule in hv["dualdc_firewall_rules"]:
        line = by_comment[rule["name"]]
        for source in rule["sources"]:
            net = ipaddress.ip_network(source)
            shown = str(net.network_address) if net.prefixlen == 32 else str(net)
            assert shown in line, (rule["name"], source, line)
        daddr = line[line.index(" daddr ") :]
        for destination in rule["destinations"]:
            assert destination.removesuffix("/32") in daddr, (rule["name"], destination, line)
        for port in rule["ports"]:
            assert re.search(rf"\b{port}\b", line), (rule["name"], port, line)
        assert line.split()[line.split().index("dport") - 1] == rule["protocol"] or not rule["ports"]
    # Nothing accepted besides the model's flows, the controller's SSH, ICMP and the stateful
    # basics; SSH from outside the mgmt segments and bastions is dropped before any flow.
    flow_names = {r["name"] for r in hv["dualdc_firewall_rules"]}
    controller = {"ssh from the controller"} if hv["dualdc_controller_networks"] else set()
    assert set(by_comment) - flow_names == controller
    ssh_drop = listed.index("tcp dport 22 ip saddr != @ssh_sources drop")
    assert all(listed.index(line) > ssh_drop for line in accepts if 'comment "ssh' not in line)


def test_forward_is_dropped_except_on_kubernetes_nodes(renderer: Renderer) -> None:
    for host in LAB.hosts:
        ruleset = renderer.render("firewall", "table.nft.j2", host.name)
        forward = ruleset[ruleset.index("chain forward") :]
        if host.role.value in K8S_ROLES:
            assert "policy accept;" in forward and "drop" in forward, host.name
        else:
            assert "policy drop;" in forward, host.name


def _ns(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True)


def _routes_through(a: str) -> bool:
    """Whether a TCP SYN from ``a`` reaches 10.99.2.2 (through the node): it answers with a reset."""
    probe = "echo > /dev/tcp/10.99.2.2/9"
    out = subprocess.run(["ip", "netns", "exec", a, "timeout", "3", "bash", "-c", probe],
                         capture_output=True, text=True, check=False)
    return "refused" in out.stderr


@needs_root
def test_a_kubernetes_node_never_routes_between_its_segments(renderer: Renderer) -> None:
    """A worker in two tenants' segments, forwarding on (as Kubernetes needs): the table stops
    a client of one segment from using it as a router into the other."""
    tag = f"ddt{os.getpid() % 100000}"
    node, a, b = f"{tag}n", f"{tag}a", f"{tag}b"
    try:
        for ns in (node, a, b):
            _ns("ip", "netns", "add", ns)
        # The worker's eth1 and eth2 (kjbank and jbbank internal) and a client in each segment.
        for side, dev, net in ((a, "eth1", "10.99.1"), (b, "eth2", "10.99.2")):
            _ns("ip", "link", "add", dev, "netns", node, "type", "veth", "peer", "name", "eth0",
                "netns", side)
            _ns("ip", "-n", node, "addr", "add", f"{net}.1/24", "dev", dev)
            _ns("ip", "-n", side, "addr", "add", f"{net}.2/24", "dev", "eth0")
            _ns("ip", "-n", node, "link", "set", dev, "up")
            _ns("ip", "-n", side, "link", "set", "eth0", "up")
            _ns("ip", "-n", side, "route", "add", "default", "via", f"{net}.1")
        _ns("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        assert _routes_through(a)  # without the table the worker routes
        ruleset = renderer.render("firewall", "table.nft.j2", "gj-core-wk-01")
        subprocess.run(["ip", "netns", "exec", node, "nft", "-f", "/dev/stdin"], input=ruleset, text=True,
                       check=True)
        assert not _routes_through(a)
    finally:
        for ns in (node, a, b):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


# --------------------------------------------------------------------------- sshd


@pytest.fixture(scope="module")
def host_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("sshd") / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@needs_root
@pytest.mark.skipif(
    not Path("/usr/sbin/sshd").exists(), reason="sshd is not installed (bootstrap installs it)"
)
@pytest.mark.parametrize("host", ["gj-bastion-01", "jj-db-kj-01"])
def test_sshd_config_is_valid_and_hardened(
    renderer: Renderer, host_key: Path, tmp_path: Path, host: str
) -> None:
    config = tmp_path / "sshd_config"
    config.write_text(renderer.render("base", "sshd_config.j2", host))
    # sshd's own reading of the file (-T prints the effective settings); in a private mount
    # namespace, for the /run/sshd directory it insists on.
    script = 'mount -t tmpfs tmpfs /run && mkdir /run/sshd && exec /usr/sbin/sshd "$@"'
    out = subprocess.run(
        [
            "unshare",
            "--mount",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            "-T",
            "-f",
            str(config),
            "-h",
            str(host_key),
            "-C",
            "user=root,host=x,addr=10.10.10.11",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    eff = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        eff[key] = value
    assert eff["passwordauthentication"] == "no"
    assert eff["kbdinteractiveauthentication"] == "no"
    assert eff["permitemptypasswords"] == "no"
    assert eff["permitrootlogin"] == "without-password"  # root by key only
    assert eff["authenticationmethods"] == "publickey"
    assert eff["banner"] == "/etc/issue.net"
    assert int(eff["maxauthtries"]) <= LAB.environment.access.lockout_attempts
    weak = re.compile(
        r"cbc|arcfour|3des|md5|sha1(?!-)|hmac-sha1|diffie-hellman-group1-|group14-sha1|ssh-rsa(,|$)"
    )
    for key in ("ciphers", "macs", "kexalgorithms", "hostkeyalgorithms", "pubkeyacceptedalgorithms"):
        assert not weak.search(eff[key]), (key, eff[key])
    assert eff["allowtcpforwarding"] == ("yes" if host == "gj-bastion-01" else "no")
    assert eff["x11forwarding"] == "no"


def test_sudoers_grants_only_the_models_sudo_admins(renderer: Renderer, tmp_path: Path) -> None:
    admins = [
        {"name": "ops-kim", "ssh_public_key": "ssh-ed25519 AAAA k", "sudo": True},
        {"name": "ops-lee", "ssh_public_key": "ssh-ed25519 AAAA l", "sudo": False},
    ]
    text = renderer.render("base", "sudoers.j2", "gj-ntp-01", overrides={"dualdc_admins": admins})
    grants = [line for line in text.splitlines() if line and not line.startswith(("#", "Defaults"))]
    assert grants == ["ops-kim\tALL=(ALL:ALL) NOPASSWD: ALL"]
    if shutil.which("visudo"):
        path = tmp_path / "sudoers"
        path.write_text(text)
        assert subprocess.run(["visudo", "-cf", str(path)], capture_output=True, check=False).returncode == 0


# --------------------------------------------------------------------------- PW-01


def test_lockout_and_idle_timeout_follow_the_model(renderer: Renderer) -> None:
    access = LAB.environment.access
    faillock = renderer.render("base", "faillock.conf.j2", "gj-ntp-01")
    settings = dict(re.findall(r"^(\w+) = (\S+)$", faillock, re.M))
    assert int(settings["deny"]) == access.lockout_attempts <= 5
    assert int(settings["unlock_time"]) == access.lockout_seconds
    auth = renderer.render("base", "common-auth.j2", "gj-ntp-01")
    modules = [
        line.split()[-1] if "faillock" not in line else " ".join(line.split()[-2:])
        for line in auth.splitlines()
        if line.startswith("auth")
    ]
    assert modules[0] == "pam_faillock.so preauth" and "pam_faillock.so authfail" in modules
    tmout = renderer.render("base", "tmout.sh.j2", "gj-ntp-01")
    out = subprocess.run(
        ["bash", "-c", tmout + '\necho "$TMOUT"; readonly -p | grep -c TMOUT'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(access.idle_timeout_seconds), "1"]
    never = renderer.render(
        "base",
        "faillock.conf.j2",
        "gj-ntp-01",
        overrides={"dualdc_access": {"lockout_attempts": 3, "lockout_seconds": 0, "idle_timeout_seconds": 0}},
    )
    assert "unlock_time = never" in never and "deny = 3" in never


# --------------------------------------------------------------------------- NTP-01


def _servers(text: str) -> set[str]:
    return set(re.findall(r"^server (\S+) iburst$", text, re.M))


def test_every_host_syncs_to_the_same_sources_at_both_sites(renderer: Renderer) -> None:
    sources = {str(LAB.management_address(LAB.host(n))) for n in LAB.environment.time_sources}
    ntp_hosts = {h.name for h in LAB.hosts if h.role is HostRole.NTP}
    for host in LAB.hosts:
        text = renderer.render("time_sync", "chrony.conf.j2", host.name)
        own = {str(i.address) for i in host.interfaces}
        assert _servers(text) == sources - own, host.name
        if host.name in ntp_hosts:
            allowed = set(re.findall(r"^allow (\S+)$", text, re.M))
            clients = {str(s.cidr) for s in LAB.segments if s.zone.value == "mgmt"}
            assert clients <= allowed and "local stratum" in text
        else:
            assert "port 0" in text and "allow" not in text


@pytest.mark.skipif(
    not shutil.which("chronyd"), reason="chronyd is not installed here (the lab tests run it)"
)
def test_chrony_config_parses(renderer: Renderer, tmp_path: Path) -> None:
    path = tmp_path / "chrony.conf"
    path.write_text(renderer.render("time_sync", "chrony.conf.j2", "gj-ntp-01"))
    assert (
        subprocess.run(["chronyd", "-p", "-f", str(path)], capture_output=True, check=False).returncode == 0
    )


def test_chronyd_leaves_the_clock_alone_only_in_the_lab(renderer: Renderer) -> None:
    assert "-x" in renderer.render("time_sync", "chrony.default.j2", "gj-ntp-01")
    prod = renderer.render("time_sync", "chrony.default.j2", "gj-ntp-01", overrides={"dualdc_lab": False})
    assert "-x" not in prod


# --------------------------------------------------------------------------- audit and LOG-01


def test_logs_go_to_the_sites_log_hosts_and_never_back_to_themselves(renderer: Renderer) -> None:
    for host in LAB.hosts:
        text = renderer.render("audit", "forward.conf.j2", host.name)
        targets = set(re.findall(r'target="([^"]+)"', text))
        log_hosts = {
            str(LAB.management_address(h)) for h in LAB.hosts_at(host.site) if h.role is HostRole.LOG
        }
        own = {str(i.address) for i in host.interfaces}
        assert targets == log_hosts - own, host.name


def test_log_hosts_keep_logs_as_long_as_log01_asks(renderer: Renderer) -> None:
    retention = LAB.environment.log_retention
    text = renderer.render("audit", "logrotate.j2", "gj-log-01")
    blocks = dict(re.findall(r"^(\S+) \{(.*?)^\}", text, re.M | re.S))
    access = next(v for k, v in blocks.items() if k.endswith("access.log"))
    personal = next(v for k, v in blocks.items() if k.endswith("personal-data.log"))
    assert f"rotate {retention.access_log_days}" in access and "daily" in access
    assert f"rotate {retention.personal_data_log_days}" in personal and "daily" in personal
    assert retention.access_log_days >= 365 and retention.personal_data_log_days >= 730  # LOG-01
    if shutil.which("logrotate"):
        assert (
            subprocess.run(
                ["logrotate", "--debug", "/dev/stdin"],
                input=text,
                text=True,
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )


def test_audit_rules_have_the_shape_auditctl_reads(renderer: Renderer) -> None:
    text = renderer.render(
        "audit", "dualdc.rules.j2", "gj-ntp-01", _audit_privileged=["/usr/bin/sudo", "/usr/bin/su"]
    )
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in rules:
        assert re.match(
            r"^(-a always,exit( -F \S+)+( -S \S+)?( -F \S+)* -k [a-z-]+|-w /\S+ -p wa -k [a-z-]+|"
            r"-b \d+|-f [012]|--backlog_wait_time \d+|-e [012])$",
            line,
        ), line
    assert "-a always,exit -F path=/usr/bin/sudo -F perm=x -F auid!=unset -k privileged" in rules
    for path in ("/etc/passwd", "/etc/shadow", "/etc/sudoers", "/etc/ssh/sshd_config"):
        assert any(r.startswith(f"-w {path} ") for r in rules), path


# --------------------------------------------------------------------------- network


def _files(renderer: Renderer, host: str, interfaces: list[dict[str, Any]], primary: str) -> dict[str, str]:
    overrides = {"dualdc_interfaces": interfaces, "dualdc_primary_interface": primary}
    files = renderer.var("network", host, "_network_files", overrides)
    return {f["file"]: renderer.render("network", f["template"], host, overrides, item=f) for f in files}


def _iface(
    name: str,
    address: str,
    cidr: str,
    vlan: int,
    zone: str,
    *,
    members: list[str] | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    net = ipaddress.ip_network(cidr)
    return {
        "name": name,
        "segment": f"seg-{vlan}",
        "zone": zone,
        "tenant": "group",
        "address": address,
        "prefix": net.prefixlen,
        "cidr": cidr,
        "gateway": str(net.network_address + 1),
        "vlan": vlan,
        "members": members or [],
        "parent": parent,
    }


def _ini(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
        else:
            key, _, value = line.partition("=")
            sections[current].append((key, value))
    return sections


def test_lacp_bond_with_vlan_subinterfaces(renderer: Renderer) -> None:
    interfaces = [
        _iface("bond0", "10.10.10.50", "10.10.10.0/24", 10, "mgmt", members=["eno1", "eno2"]),
        _iface("bond0.110", "10.10.110.50", "10.10.110.0/24", 110, "internal", parent="bond0"),
        _iface("ens5.400", "10.10.40.50", "10.10.40.0/24", 400, "replication", parent="ens5"),
    ]
    files = _files(renderer, "gj-db-kj-01", interfaces, primary="bond0.110")
    assert set(files) == {
        "10-dualdc-bond0.netdev",
        "20-dualdc-eno1.network",
        "20-dualdc-eno2.network",
        "30-dualdc-bond0.110.netdev",
        "30-dualdc-ens5.400.netdev",
        "40-dualdc-bond0.network",
        "40-dualdc-bond0.110.network",
        "40-dualdc-ens5.400.network",
        "40-dualdc-ens5.network",
    }
    bond = _ini(files["10-dualdc-bond0.netdev"])
    assert ("Kind", "bond") in bond["NetDev"] and ("Mode", "802.3ad") in bond["Bond"]
    for member in ("eno1", "eno2"):
        net = _ini(files[f"20-dualdc-{member}.network"])
        assert net["Match"] == [("Name", member)] and net["Network"] == [("Bond", "bond0")]
    vlan = _ini(files["30-dualdc-bond0.110.netdev"])
    assert ("Kind", "vlan") in vlan["NetDev"] and vlan["VLAN"] == [("Id", "110")]
    parent = _ini(files["40-dualdc-bond0.network"])
    assert ("VLAN", "bond0.110") in parent["Network"] and ("Address", "10.10.10.50/24") in parent["Network"]
    assert not any(k == "Gateway" for k, _ in parent["Network"])  # default route on the primary only
    bare = _ini(files["40-dualdc-ens5.network"])
    assert ("VLAN", "ens5.400") in bare["Network"] and not any(k == "Address" for k, _ in bare["Network"])
    primary = _ini(files["40-dualdc-bond0.110.network"])
    assert ("Gateway", "10.10.110.1") in primary["Network"]


def test_lab_interfaces_render_plain_networks_with_one_default_route(
    renderer: Renderer, lab_inventory: dict[str, Any]
) -> None:
    for host in LAB.hosts:
        hv = lab_inventory["hostvars"][host.name]
        files = _files(renderer, host.name, hv["dualdc_interfaces"], hv["dualdc_primary_interface"])
        assert set(files) == {f"40-dualdc-{i.name}.network" for i in host.interfaces}
        gateways = [k for text in files.values() for k, _ in _ini(text).get("Network", []) if k == "Gateway"]
        assert len(gateways) == 1, host.name


# --------------------------------------------------------------------------- k8s nodes


def test_containerd_uses_systemd_cgroups_and_the_internal_mirror(renderer: Renderer) -> None:
    config = tomllib.loads(renderer.render("container_runtime", "config.toml.j2", "gj-core-wk-01"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"
    mirror = LAB.environment.mirrors.registry
    for registry in ("docker.io", "registry.k8s.io"):
        hosts = tomllib.loads(
            renderer.render("container_runtime", "hosts.toml.j2", "gj-core-wk-01", item=registry)
        )
        assert hosts["server"] == f"https://{mirror}"  # no fallback to the internet
        assert list(hosts["host"]) == [f"https://{mirror}"]


@pytest.mark.parametrize("host", K8S_HOSTS)
def test_kubelet_config(renderer: Renderer, host: str) -> None:
    config = yaml.safe_load(renderer.render("k8s_node", "kubelet-config.yaml.j2", host))
    cluster = LAB.cluster(LAB.host(host).cluster or "")
    assert config["kind"] == "KubeletConfiguration" and config["cgroupDriver"] == "systemd"
    assert config["clusterDNS"] == [str(cluster.service_cidr.network_address + 10)]
    assert config["authentication"]["anonymous"]["enabled"] is False and config["readOnlyPort"] == 0
    assert config["failSwapOn"] is True


def test_sysctls_file_lists_every_value(renderer: Renderer) -> None:
    text = renderer.render("k8s_node", "sysctl.conf.j2", "gj-core-wk-01")
    values = dict(re.findall(r"^(\S+) = (\S+)$", text, re.M))
    assert values["net.ipv4.ip_forward"] == "1" and values["net.bridge.bridge-nf-call-iptables"] == "1"


# --------------------------------------------------------------------------- production


@pytest.fixture(scope="module")
def production() -> tuple[Any, Renderer]:
    from dualdc import inventory

    topology = load_environment("production")
    return topology, Renderer(inventory.build(topology))


@needs_root
def test_production_rulesets_all_load(production: tuple[Any, Renderer]) -> None:
    topology, prod = production
    rulesets = [prod.render("firewall", "table.nft.j2", h.name) for h in topology.hosts]
    script = "for f in \"$@\"; do nft -c -f \"$f\" || { echo \"$f\"; exit 1; }; done"
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for host, text in zip(topology.hosts, rulesets, strict=True):
            path = Path(tmp) / f"{host.name}.nft"
            path.write_text(text)
            paths.append(str(path))
        argv = ["unshare", "--net", "--", "sh", "-c", script, "sh", *paths]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_production_bonds_and_vlans_render_consistently(production: tuple[Any, Renderer]) -> None:
    topology, prod = production
    for host in topology.hosts:
        hv = prod.hostvars[host.name]
        files = _files(prod, host.name, hv["dualdc_interfaces"], hv["dualdc_primary_interface"])
        netdevs = {name: _ini(text) for name, text in files.items() if name.endswith(".netdev")}
        networks = {name: _ini(text) for name, text in files.items() if name.endswith(".network")}
        for iface in host.interfaces:
            if iface.members:
                bond = netdevs[f"10-dualdc-{iface.name}.netdev"]
                assert ("Mode", "802.3ad") in bond["Bond"], host.name
                for member in iface.members:
                    assert ("Bond", iface.name) in networks[f"20-dualdc-{member}.network"]["Network"]
            if iface.parent:
                vlan = netdevs[f"30-dualdc-{iface.name}.netdev"]
                assert vlan["VLAN"] == [("Id", str(topology.segment(iface.segment).vlan))], host.name
                assert ("VLAN", iface.name) in networks[f"40-dualdc-{iface.parent}.network"]["Network"]
            own = networks[f"40-dualdc-{iface.name}.network"]["Network"]
            prefix = topology.segment(iface.segment).cidr.prefixlen
            assert ("Address", f"{iface.address}/{prefix}") in own, host.name
        gateways = [v for n in networks.values() for k, v in n.get("Network", []) if k == "Gateway"]
        assert len(gateways) == 1, host.name
