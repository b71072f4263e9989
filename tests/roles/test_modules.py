"""The roles' own modules, run the way Ansible runs them, in a scratch network namespace.

``dualdc_nft_table`` (firewall) and ``dualdc_sysctl`` (k8s_node) act on the kernel of the
network namespace they run in; here that is a namespace made for the test, so the
machine's own firewall and settings are never touched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROLES, Renderer, needs_root

NFT_MODULE = ROLES / "firewall" / "library" / "dualdc_nft_table.py"
SYSCTL_MODULE = ROLES / "k8s_node" / "library" / "dualdc_sysctl.py"
SSH_SOURCES = ["10.10.10.0/24", "10.20.10.0/24"]

pytestmark = needs_root


def run_module(
    netns: str,
    module: Path,
    args: dict[str, Any],
    tmp_path: Path,
    *,
    check: bool = False,
    ssh_connection: str | None = None,
) -> dict[str, Any]:
    """Run a module as Ansible does (a JSON args file), in the namespace; its JSON result."""
    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": True}}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(payload))
    env = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    if ssh_connection:
        env.append(f"SSH_CONNECTION={ssh_connection}")
    out = subprocess.run(
        ["ip", "netns", "exec", netns, *env, sys.executable, str(module), str(args_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def nft(netns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *args], capture_output=True, text=True, check=True
    ).stdout


def nft_args(renderer: Renderer, host: str) -> dict[str, Any]:
    return {
        "content": renderer.render("firewall", "table.nft.j2", host),
        "table": "dualdc",
        "ssh_sources": SSH_SOURCES,
        "ssh_port": 22,
    }


def test_nft_table_applies_once_and_reports_tampering(renderer: Renderer, netns: str, tmp_path: Path) -> None:
    args = nft_args(renderer, "gj-log-01")
    # Check mode on an empty namespace: the whole table would be added, nothing is.
    first = run_module(netns, NFT_MODULE, args, tmp_path, check=True)
    assert first["changed"] is True and first["diff"]["before"] == ""
    assert first["diff"]["after"].startswith("table inet dualdc {")
    assert nft(netns, "list", "tables") == ""
    applied = run_module(netns, NFT_MODULE, args, tmp_path)
    assert applied["changed"] is True
    live = nft(netns, "-s", "list", "table", "inet", "dualdc")
    assert 'comment "gj-syslog"' in live and "policy drop" in live
    again = run_module(netns, NFT_MODULE, args, tmp_path)
    assert again["changed"] is False
    # A rule added by hand is drift: check mode names it and leaves it; apply removes it.
    nft(netns, "add", "rule", "inet", "dualdc", "input", "tcp", "dport", "4444", "accept")
    drift = run_module(netns, NFT_MODULE, args, tmp_path, check=True)
    assert drift["changed"] is True
    assert "tcp dport 4444 accept" in drift["diff"]["before"] and "4444" not in drift["diff"]["after"]
    assert "nft table inet dualdc" in drift["diff"]["before_header"]
    assert "4444" in nft(netns, "list", "table", "inet", "dualdc")
    fixed = run_module(netns, NFT_MODULE, args, tmp_path)
    assert fixed["changed"] is True and "4444" not in nft(netns, "list", "table", "inet", "dualdc")


def test_nft_table_leaves_other_tables_alone(renderer: Renderer, netns: str, tmp_path: Path) -> None:
    nft(netns, "add", "table", "inet", "cni")
    nft(netns, "add", "chain", "inet", "cni", "pods", "{ type filter hook forward priority 0; }")
    run_module(netns, NFT_MODULE, nft_args(renderer, "gj-core-wk-01"), tmp_path)
    assert "table inet cni" in nft(netns, "list", "tables")


def test_nft_guard_refuses_to_lock_out_the_ssh_client(renderer: Renderer, netns: str, tmp_path: Path) -> None:
    args = nft_args(renderer, "gj-ntp-01")
    outside = "192.0.2.7 51234 10.10.10.12 22"
    refused = run_module(netns, NFT_MODULE, args, tmp_path, ssh_connection=outside)
    assert refused.get("failed") is True and "lock this connection out" in refused["msg"]
    assert "192.0.2.7" in refused["msg"]
    assert nft(netns, "list", "tables") == ""  # nothing applied
    inside = "10.10.10.11 51234 10.10.10.12 22"
    assert run_module(netns, NFT_MODULE, args, tmp_path, ssh_connection=inside)["changed"] is True
    # Once the live table equals the model's, nothing is applied, so nothing is guarded.
    assert run_module(netns, NFT_MODULE, args, tmp_path, ssh_connection=outside)["changed"] is False


def test_nft_guard_checks_where_ssh_is_accepted_not_only_allowed(renderer: Renderer, netns: str,
                                                                  tmp_path: Path) -> None:
    # A mgmt address that no SSH flow accepts (only the bastion's is): still refused.
    args = {**nft_args(renderer, "gj-ntp-01"), "ssh_accepted": ["10.10.10.11/32"]}
    refused = run_module(netns, NFT_MODULE, args, tmp_path, ssh_connection="10.10.10.50 40000 10.10.10.12 22")
    assert refused.get("failed") is True and "10.10.10.11/32" in refused["msg"]
    assert nft(netns, "list", "tables") == ""
    bastion = "10.10.10.11 40000 10.10.10.12 22"
    accepted = run_module(netns, NFT_MODULE, args, tmp_path, ssh_connection=bastion)
    assert accepted["changed"] is True


def test_nft_invalid_ruleset_changes_nothing(netns: str, tmp_path: Path) -> None:
    bad = {
        "content": "table inet dualdc {\n chain input { type filter hook input priority 0; policy drop;\n"
        " ip saddr 10.0.0.0/33 accept\n }\n}\n",
        "table": "dualdc",
        "ssh_guard": False,
    }
    result = run_module(netns, NFT_MODULE, bad, tmp_path)
    assert result.get("failed") is True and "does not load" in result["msg"]
    assert nft(netns, "list", "tables") == ""


def _forward(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "cat", "/proc/sys/net/ipv4/ip_forward"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_sysctl_checks_applies_and_respects_prefixes(netns: str, tmp_path: Path) -> None:
    assert _forward(netns) == "0"  # a new namespace does not forward
    values = {"net.ipv4.ip_forward": 1, "kernel.panic": 10, "net.bridge.no-such-key": 1}
    args = {"values": values, "prefixes": ["net."]}
    check = run_module(netns, SYSCTL_MODULE, args, tmp_path, check=True)
    assert check["changed"] is True and check["changed_keys"] == ["net.ipv4.ip_forward"]
    assert check["diff"]["before"] == "net.ipv4.ip_forward = 0\n"
    assert check["not_applied"] == ["kernel.panic"] and check["missing"] == ["net.bridge.no-such-key"]
    assert _forward(netns) == "0"
    applied = run_module(netns, SYSCTL_MODULE, args, tmp_path)
    assert applied["changed"] is True and _forward(netns) == "1"
    assert run_module(netns, SYSCTL_MODULE, args, tmp_path)["changed"] is False


@pytest.mark.parametrize("module", [NFT_MODULE, SYSCTL_MODULE])
def test_modules_document_themselves(module: Path) -> None:
    import yaml

    namespace: dict[str, Any] = {}
    source = module.read_text()
    for name in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
        start = source.index(f'{name} = r"""') + len(f'{name} = r"""')
        namespace[name] = source[start : source.index('"""', start)]
    doc = yaml.safe_load(namespace["DOCUMENTATION"])
    assert doc["module"] == module.stem and doc["options"]
    assert all(opt.get("description") for opt in doc["options"].values())
