"""invoke compliance without a lab: a collector stand-in serves each host's observations."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from dualdc.compliance.catalogue import load_catalogue
from dualdc.compliance.checks import Outcome
from dualdc.compliance.report import render
from dualdc.compliance.run import ComplianceReport, context, run_compliance
from dualdc.loader import load_environment
from dualdc.model import Topology

PASSWD = [
    ["root", "x", "0", "0", "root", "/root", "/bin/bash"],
    ["daemon", "x", "1", "1", "daemon", "/usr/sbin", "/usr/sbin/nologin"],
]


def healthy(topology: Topology, host: str) -> dict[str, Any]:
    """What a converged host shows (as the roles write it), built from the catalogue's own checks."""
    ctx = context(topology, topology.host(host))
    v = ctx.values
    cat = load_catalogue()
    stat: dict[str, Any] = {}
    for control in cat.controls:
        for check in control.checks:
            if check.kind == "file_mode":
                p = check.params
                stat[p["path"]] = {
                    "exists": True,
                    "mode": p["max_mode"],
                    "owner": p.get("owner", "root"),
                    "group": p.get("group") or "root",
                }
    sysctls = {
        check.params["key"]: check.params["value"]
        for c in cat.controls
        for check in c.checks
        if check.kind == "sysctl"
    }
    modules = [
        check.params["module"].replace("-", "_")
        for c in cat.controls
        for check in c.checks
        if check.kind == "module_off"
    ]
    admins = [
        [name, "x", str(1000 + i), str(1000 + i), "", f"/home/{name}", "/bin/bash"]
        for i, name in enumerate(v["admins"])
    ]
    return {
        "stat": stat,
        "content": {
            "/etc/pam.d/common-password": "password requisite pam_pwquality.so\n",
            "/etc/security/pwquality.conf": f"minlen = {v['password_min_length']}\n"
            f"minclass = {v['password_min_classes']}\nenforce_for_root\n",
            "/etc/pam.d/common-auth": "auth required pam_faillock.so preauth\n",
            "/etc/security/faillock.conf": f"deny = {v['lockout_attempts']}\n",
            "/etc/pam.d/su": f"auth required pam_wheel.so use_uid group={v['su_group']}\n",
            "/etc/login.defs": f"PASS_MAX_DAYS {v['password_max_days']}\n"
            f"PASS_MIN_DAYS {v['password_min_days']}\n"
            f"PASS_WARN_AGE {v['password_warn_days']}\nUMASK 027\nENCRYPT_METHOD YESCRYPT\n"
            "YESCRYPT_COST_FACTOR 8\n",
            "/etc/pam.d/common-session": "session optional pam_umask.so\n",
            "/etc/profile.d/dualdc-tmout.sh": f"    TMOUT={v['idle_timeout_seconds']}\nreadonly TMOUT\n",
            "/etc/profile": 'PATH="/usr/local/bin:/usr/bin:/bin"\n',
            "/etc/apt/sources.list.d/dualdc.sources": f"Types: deb\nURIs: {v['apt_mirror']}\n",
            "/etc/apt/sources.list": "# set by dualdc\n",
            "/etc/issue.net": "JB Financial Group (JB금융그룹) - authorised use only.\n",
            "/etc/security/limits.d/dualdc-core.conf": "*\thard\tcore\t0\n",
            "/etc/rsyslog.d/50-dualdc-forward.conf": '*.* action(type="omfwd" target="10.0.0.1")\n',
            "/etc/audit/rules.d/50-dualdc.rules": "-w /etc/shadow -p wa -k identity\n",
            "/etc/cron.d/dualdc-aide": "15 4 * * * root /usr/local/sbin/dualdc-aide-check\n",
        },
        "sshd": {
            "permitrootlogin": v["sshd_permit_root_login"],
            "passwordauthentication": "no",
            "maxstartups": "10:30:60",
            "persourcemaxstartups": "5",
            "persourcenetblocksize": "32:128",
            "kexalgorithms": "curve25519-sha256",
            "ciphers": "aes256-gcm@openssh.com",
            "macs": "hmac-sha2-512-etm@openssh.com",
            "maxauthtries": "3",
            "logingracetime": "30",
            "maxsessions": "10",
            "permitemptypasswords": "no",
            "hostbasedauthentication": "no",
            "ignorerhosts": "yes",
            "permituserenvironment": "no",
            "loglevel": "VERBOSE",
            "usepam": "yes",
            "clientaliveinterval": "300",
            "x11forwarding": "no",
            "banner": "/etc/issue.net",
        },
        "sysctl_files": sysctls,
        "sysctl_live": dict(sysctls),
        "modprobe": {"install": {m: "/bin/false" for m in modules}, "blacklist": modules},
        "loaded_modules": [],
        "packages": ["openssh-server", "acct"],
        "passwd": PASSWD + admins,
        "group_members": {"root": [], v["su_group"]: list(v["su_members"])},
        "group_gids": ["0", "1", *(a[3] for a in admins)],
        "homes": {a[0]: {"exists": True, "owner": a[0], "mode": "0750", "path": a[5]} for a in admins},
        "home_files": [],
        "world_writable": [],
        "unowned": [],
        "suid": ["/usr/bin/su"],
        "dev_regular": [],
        "scanned": 12000,
        "aide": {"database": True, "changes": [], "database_time": 1},
        "acct": {"file": True, "active": True, "size": 640},
        "nft": "table inet dualdc {\n chain input {\n"
        " type filter hook input priority filter; policy drop;\n }\n}",
    }


def collector(topology: Topology, broken: dict[str, Any] | None = None, down: str = "") -> Any:
    def collect(host: str, argument: str) -> tuple[int, str, str]:
        json.loads(argument)  # the needs reach the host as JSON
        if host == down:
            return 255, "", "ssh: connect to host: No route to host"
        obs = healthy(topology, host)
        for key, value in ((broken or {}).get(host) or {}).items():
            if isinstance(value, dict) and isinstance(obs.get(key), dict):
                obs[key] = {**obs[key], **value}
            else:
                obs[key] = value
        return 0, json.dumps(obs), ""

    return collect


@pytest.fixture(scope="module")
def lab() -> Topology:
    return load_environment("lab")


def sites(t: Topology) -> list[str]:
    return [s.name for s in t.sites]


def test_every_host_passes_when_healthy(lab: Topology) -> None:
    report = run_compliance(lab, sites(lab), collect=collector(lab))
    assert len(report.hosts) == len(lab.hosts)
    assert report.exit_code() == 0
    counts = report.counts()
    assert counts["fail"] == counts["error"] == counts["unreachable"] == 0
    # log hosts keep their own logs: HB-80 does not apply to them
    log = next(h for h in report.hosts if h.role == "log")
    assert next(c for c in log.controls if c.control == "HB-80").outcome is Outcome.NOT_APPLICABLE


# one break per category, as the lab test makes them on a live host
BREAKS = [
    ("files", {"world_writable": ["/usr/local/bin/open"]}, "HB-28", "U-15"),
    (
        "files",
        {"stat": {"/etc/shadow": {"exists": True, "mode": "0644", "owner": "root", "group": "shadow"}}},
        "HB-21",
        "U-08",
    ),
    (
        "accounts",
        {"passwd": [*PASSWD, ["toor", "x", "0", "0", "", "/root", "/usr/sbin/nologin"]]},
        "HB-05",
        "U-44",
    ),
    ("kernel", {"modprobe": {"install": {}, "blacklist": []}}, "HB-60", "CIS 3.2.1"),
    ("integrity", {"aide": {"database": True, "changes": ["changed: /usr/bin/ls"]}}, "HB-90", "CIS 6.1.1"),
    ("ssh", {"sshd": {"maxstartups": "100"}}, "HB-70", "CIS 5.1.18"),
]


@pytest.mark.parametrize(("category", "change", "control", "item"), BREAKS, ids=[b[2] for b in BREAKS])
def test_one_broken_control_fails_naming_host_control_and_item(
    lab: Topology, category: str, change: dict[str, Any], control: str, item: str
) -> None:
    host = lab.hosts[3].name
    report = run_compliance(lab, sites(lab), collect=collector(lab, {host: change}))
    assert report.exit_code() == 2
    failed = [(h.host, c.control) for h in report.hosts for c in h.controls if c.outcome is Outcome.FAIL]
    assert (host, control) in failed
    assert all(h == host for h, _ in failed)
    assert next(c for c in load_catalogue().controls if c.id == control).category.value == category
    text = render(report, "text", "en")
    line = next(line for line in text.splitlines() if control in line)
    assert "FAIL" in line and item in line
    ko = render(report, "text", "ko")
    assert "취약" in next(line for line in ko.splitlines() if control in line)


def test_an_unreachable_host_is_exit_3_and_a_failure_wins(lab: Topology) -> None:
    down = lab.hosts[0].name
    report = run_compliance(lab, sites(lab), collect=collector(lab, down=down))
    assert report.exit_code() == 3
    assert [h.host for h in report.hosts if not h.reachable] == [down]
    other = lab.hosts[1].name
    both = run_compliance(
        lab, sites(lab), collect=collector(lab, {other: {"world_writable": ["/x"]}}, down=down)
    )
    assert both.exit_code() == 2


def waivers(copy_: Any) -> list[dict[str, Any]]:
    """The copy's waivers list (made in the environment's file when the topology has none)."""
    try:
        return copy_.section("waivers")  # type: ignore[no-any-return]
    except KeyError:
        copy_.files[copy_.file_of("environment")]["waivers"] = []
        return copy_.section("waivers")  # type: ignore[no-any-return]


def test_a_current_waiver_for_the_host_waives_and_an_expired_one_does_not(topology_copy: Any) -> None:
    base = topology_copy.load()
    host = base.hosts[2].name
    today = base.today()
    waivers(topology_copy).append(
        {
            "rule": "HB-21",
            "target": f"host:{host}",
            "reason": "vendor agent needs read access until replaced",
            "approval": "정보보호위원회 2025-07",
            "expires": (today + dt.timedelta(days=30)).isoformat(),
        }
    )
    waived = topology_copy.load()
    broken = {
        host: {"stat": {"/etc/shadow": {"exists": True, "mode": "0644", "owner": "root", "group": "shadow"}}}
    }
    report = run_compliance(waived, sites(waived), collect=collector(waived, broken))
    result = next(c for h in report.hosts if h.host == host for c in h.controls if c.control == "HB-21")
    assert result.outcome is Outcome.WAIVED and "정보보호위원회 2025-07" in (result.waiver or "")
    assert report.exit_code() == 0
    waivers(topology_copy)[-1]["expires"] = (today - dt.timedelta(days=1)).isoformat()
    expired = topology_copy.load()
    assert run_compliance(expired, sites(expired), collect=collector(expired, broken)).exit_code() == 2


def test_the_policy_accepts_a_control_waiver_and_refuses_an_unknown_id(topology_copy: Any) -> None:
    today = topology_copy.load().today()
    entry = {
        "rule": "HB-21",
        "target": "host:gj-db-kj-01",
        "reason": "vendor agent needs read access",
        "approval": "정보보호위원회 2025-07",
        "expires": (today + dt.timedelta(days=30)).isoformat(),
    }
    waivers(topology_copy).append(copy.deepcopy(entry))
    assert not [f for f in topology_copy.report().findings if f.rule == "WV-02" and "HB-21" in f.target]
    waivers(topology_copy)[-1]["rule"] = "HB-99"
    with pytest.raises(Exception, match="unknown rule id 'HB-99'"):
        topology_copy.report()


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "junit"])
@pytest.mark.parametrize("lang", ["ko", "en"])
def test_every_format_and_language_renders_the_evidence(lab: Topology, fmt: str, lang: str) -> None:
    host = lab.hosts[5].name
    report = run_compliance(lab, sites(lab), collect=collector(lab, {host: {"suid": ["/tmp/rootshell"]}}))
    text = render(report, fmt, lang)
    assert "/tmp/rootshell" in text
    if fmt == "json":
        data = json.loads(text)
        assert data["exit_code"] == 2 and ComplianceReport.model_validate(
            {k: v for k, v in data.items() if k not in ("counts", "exit_code")}
        )
    if fmt == "junit":
        root = ET.fromstring(text)
        assert sum(int(s.get("failures", 0)) for s in root) == 1
    if fmt == "markdown":
        assert ("U-13" in text) and (("취약" in text) if lang == "ko" else ("FAIL" in text))
