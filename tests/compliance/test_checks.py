"""Every checker on a passing and a failing observation (no host needed)."""

from __future__ import annotations

from typing import Any

import pytest

from dualdc.compliance.checks import CHECKS, Context, Outcome, parse_config

CTX = Context(
    host="gj-db-kj-01",
    role="db",
    lab=False,
    values={
        "lockout_attempts": 5,
        "idle_timeout_seconds": 600,
        "password_min_length": 10,
        "su_group": "dualdc-su",
        "su_members": ["ops-kim"],
        "root_group_members": [],
        "admins": ["ops-kim", "ops-lee"],
        "apt_mirror": "http://mirror.jbfg.example/debian",
    },
)
LAB = Context(host="gj-db-kj-01", role="db", lab=True, values=CTX.values)


def judge(kind: str, params: dict[str, Any], obs: dict[str, Any], ctx: Context = CTX) -> Any:
    spec = CHECKS[kind]
    return spec.judge(spec.params.model_validate(params), obs, ctx)


def stat(mode: str, owner: str = "root", group: str = "root") -> dict[str, Any]:
    return {"exists": True, "mode": mode, "owner": owner, "group": group, "uid": 0, "gid": 0}


PASSWD = [
    ["root", "x", "0", "0", "root", "/root", "/bin/bash"],
    ["daemon", "x", "1", "1", "daemon", "/usr/sbin", "/usr/sbin/nologin"],
    ["ops-kim", "x", "1000", "1000", "", "/home/ops-kim", "/bin/bash"],
]

# kind, params, a passing observation, a failing one, text the failing evidence shows
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], str]] = [
    (
        "file_mode",
        {"path": "/etc/shadow", "max_mode": "0640", "group": "shadow"},
        {"stat": {"/etc/shadow": stat("0640", group="shadow")}},
        {"stat": {"/etc/shadow": stat("0644", group="shadow")}},
        "0644",
    ),
    (
        "files_absent",
        {"paths": ["/etc/hosts.equiv"], "home_files": [".rhosts"]},
        {"stat": {"/etc/hosts.equiv": {"exists": False}}, "home_files": []},
        {"stat": {"/etc/hosts.equiv": {"exists": False}}, "home_files": ["/home/ops-kim/.rhosts"]},
        ".rhosts",
    ),
    (
        "file_contains",
        {
            "path": "/etc/profile.d/dualdc-tmout.sh",
            "pattern": r"^\s*TMOUT=${idle_timeout_seconds}$",
            "what": "TMOUT",
        },
        {"content": {"/etc/profile.d/dualdc-tmout.sh": "    TMOUT=600\nreadonly TMOUT\n"}},
        {"content": {"/etc/profile.d/dualdc-tmout.sh": "    TMOUT=6000\n"}},
        "no line matches",
    ),
    (
        "config_value",
        {"path": "/etc/security/faillock.conf", "key": "deny", "max": "$lockout_attempts", "min": 1},
        {"content": {"/etc/security/faillock.conf": "# lockout\ndeny = 5\n"}},
        {"content": {"/etc/security/faillock.conf": "deny = 10\n"}},
        "deny 10",
    ),
    (
        "pam",
        {
            "path": "/etc/pam.d/su",
            "type": "auth",
            "module": "pam_wheel.so",
            "control": "required",
            "args": ["use_uid", "group=${su_group}"],
        },
        {
            "content": {
                "/etc/pam.d/su": "auth sufficient pam_rootok.so\n"
                "auth required pam_wheel.so use_uid group=dualdc-su\n"
            }
        },
        {"content": {"/etc/pam.d/su": "auth sufficient pam_rootok.so\n# auth required pam_wheel.so\n"}},
        "no auth line with pam_wheel.so",
    ),
    (
        "sshd",
        {"option": "maxstartups", "equals": "10:30:60"},
        {"sshd": {"maxstartups": "10:30:60"}},
        {"sshd": {"maxstartups": "10:30:100"}},
        "10:30:100",
    ),
    (
        "sysctl",
        {"key": "net.ipv4.conf.all.rp_filter", "value": "1"},
        {
            "sysctl_files": {"net.ipv4.conf.all.rp_filter": "1"},
            "sysctl_live": {"net.ipv4.conf.all.rp_filter": "1"},
        },
        {
            "sysctl_files": {"net.ipv4.conf.all.rp_filter": "1"},
            "sysctl_live": {"net.ipv4.conf.all.rp_filter": "0"},
        },
        "live 0",
    ),
    (
        "module_off",
        {"module": "usb-storage"},
        {
            "modprobe": {"install": {"usb_storage": "/bin/false"}, "blacklist": ["usb_storage"]},
            "loaded_modules": [],
        },
        {"modprobe": {"install": {}, "blacklist": ["usb_storage"]}, "loaded_modules": []},
        "install (not set)",
    ),
    (
        "accounts",
        {"rule": "uid0_only_root"},
        {"passwd": PASSWD},
        {"passwd": [*PASSWD, ["toor", "x", "0", "0", "", "/root", "/bin/sh"]]},
        "toor",
    ),
    (
        "group",
        {"group": "$su_group", "members_from": "$su_members"},
        {"group_members": {"dualdc-su": ["ops-kim"]}},
        {"group_members": {"dualdc-su": ["ops-kim", "mallory"]}},
        "mallory",
    ),
    (
        "scan",
        {"rule": "world_writable"},
        {"world_writable": [], "scanned": 9000},
        {"world_writable": ["/etc/cron.d/evil"], "scanned": 9000},
        "/etc/cron.d/evil",
    ),
    (
        "suid",
        {"allowed": ["/usr/bin/su"]},
        {"suid": ["/usr/bin/su"]},
        {"suid": ["/usr/bin/su", "/tmp/sh"]},
        "/tmp/sh",
    ),
    (
        "packages",
        {"absent": ["telnetd"], "present": ["openssh-server"]},
        {"packages": ["openssh-server"]},
        {"packages": ["openssh-server", "telnetd"]},
        "installed: telnetd",
    ),
    (
        "aide",
        {},
        {"aide": {"database": True, "changes": [], "database_time": 1}},
        {"aide": {"database": True, "changes": ["changed: /usr/bin/ls"]}},
        "/usr/bin/ls",
    ),
    (
        "acct",
        {},
        {"acct": {"file": True, "active": True, "size": 640}},
        {"acct": {"file": True, "active": False, "size": 0}},
        "accounting is off",
    ),
    (
        "nft_table",
        {},
        {
            "nft": "table inet dualdc {\n chain input {\n"
            " type filter hook input priority filter; policy drop;\n }\n}"
        },
        {"nft": ""},
        "not loaded",
    ),
]


def test_every_checker_has_a_case() -> None:
    assert {case[0] for case in CASES} == set(CHECKS)


@pytest.mark.parametrize(("kind", "params", "good", "bad", "shown"), CASES, ids=[c[0] for c in CASES])
def test_checker_passes_and_fails(
    kind: str, params: dict[str, Any], good: dict[str, Any], bad: dict[str, Any], shown: str
) -> None:
    passed = judge(kind, params, good)
    assert passed.outcome is Outcome.PASS, passed
    failed = judge(kind, params, bad)
    assert failed.outcome is Outcome.FAIL, failed
    assert shown in failed.evidence


@pytest.mark.parametrize("rule", ["unique_uids", "shadowed", "groups_exist", "logins_in_model", "homes"])
def test_account_rules_pass_and_fail(rule: str) -> None:
    good = {
        "passwd": PASSWD,
        "group_gids": ["0", "1", "1000"],
        "homes": {"ops-kim": {"exists": True, "owner": "ops-kim", "mode": "0750", "path": "/home/ops-kim"}},
    }
    assert judge("accounts", {"rule": rule}, good).outcome is Outcome.PASS
    broken = {
        "unique_uids": {
            **good,
            "passwd": [*PASSWD, ["twin", "x", "1000", "1000", "", "/home/twin", "/usr/sbin/nologin"]],
        },
        "shadowed": {**good, "passwd": [["root", "$6$abc", "0", "0", "", "/root", "/bin/bash"]]},
        "groups_exist": {**good, "group_gids": ["0", "1"]},
        "logins_in_model": {
            **good,
            "passwd": [*PASSWD, ["eve", "x", "1001", "1000", "", "/home/eve", "/bin/sh"]],
        },
        "homes": {
            **good,
            "homes": {
                "ops-kim": {"exists": True, "owner": "ops-kim", "mode": "0777", "path": "/home/ops-kim"}
            },
        },
    }[rule]
    assert judge("accounts", {"rule": rule}, broken).outcome is Outcome.FAIL


def test_the_lab_does_not_judge_the_shared_kernel() -> None:
    obs = {"sysctl_files": {"kernel.kptr_restrict": "2"}, "sysctl_live": {"kernel.kptr_restrict": "0"}}
    assert judge("sysctl", {"key": "kernel.kptr_restrict", "value": "2"}, obs, LAB).outcome is Outcome.PASS
    assert judge("sysctl", {"key": "kernel.kptr_restrict", "value": "2"}, obs, CTX).outcome is Outcome.FAIL
    missing = {"sysctl_files": {}, "sysctl_live": {"kernel.kptr_restrict": "2"}}
    assert (
        judge("sysctl", {"key": "kernel.kptr_restrict", "value": "2"}, missing, LAB).outcome is Outcome.FAIL
    )
    loaded = {
        "modprobe": {"install": {"dccp": "/bin/false"}, "blacklist": ["dccp"]},
        "loaded_modules": ["dccp"],
    }
    assert judge("module_off", {"module": "dccp"}, loaded, LAB).outcome is Outcome.PASS
    assert judge("module_off", {"module": "dccp"}, loaded, CTX).outcome is Outcome.FAIL


def test_config_files_of_both_shapes_parse() -> None:
    assert parse_config("PASS_MAX_DAYS\t90\n#UMASK 022\nUMASK 027\n") == {
        "PASS_MAX_DAYS": "90",
        "UMASK": "027",
    }
    assert parse_config("minlen = 10\nenforce_for_root\n") == {"minlen": "10", "enforce_for_root": ""}
