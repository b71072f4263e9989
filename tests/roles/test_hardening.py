"""What the hardening and base roles write satisfies the catalogue's own checks (no lab).

Each file is rendered for a host as the role writes it and handed to the same checkers
``invoke compliance`` runs on a live host, so the role and the catalogue cannot drift apart.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dualdc.compliance.catalogue import load_catalogue
from dualdc.compliance.checks import CHECKS, Outcome
from dualdc.compliance.run import context
from dualdc.loader import load_environment

from .conftest import Renderer, needs_root
from .test_templates import host_key  # noqa: F401 (fixture)

LAB = load_environment("lab")
HOSTS = ["gj-bastion-01", "jj-db-kj-01", "gj-log-01"]


def observed(renderer: Renderer, host: str) -> dict[str, Any]:
    """The files the roles write on ``host``, shaped as the collector reports them."""
    content = {
        "/etc/security/pwquality.conf": renderer.render("hardening", "pwquality.conf.j2", host),
        "/etc/pam.d/common-password": renderer.render("hardening", "common-password.j2", host),
        "/etc/pam.d/su": renderer.render("hardening", "su.j2", host),
        "/etc/security/limits.d/dualdc-core.conf": renderer.render("hardening", "core.conf.j2", host),
        "/etc/security/faillock.conf": renderer.render("base", "faillock.conf.j2", host),
        "/etc/pam.d/common-auth": renderer.render("base", "common-auth.j2", host),
        "/etc/profile.d/dualdc-tmout.sh": renderer.render("base", "tmout.sh.j2", host),
        "/etc/cron.d/dualdc-aide": renderer.render("integrity", "cron.j2", host),
    }
    defs = renderer.var("hardening", host, "_hardening_login_defs")
    content["/etc/login.defs"] = "".join(f"{k}\t{v}\n" for k, v in defs.items())  # as lineinfile leaves it
    sysctls = {}
    for line in renderer.render("hardening", "sysctl.conf.j2", host).splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            sysctls[key.strip()] = value.strip()
    install, blacklist = {}, []
    for line in renderer.render("hardening", "modprobe.conf.j2", host).splitlines():
        words = line.split()
        if words[:1] == ["install"]:
            install[words[1].replace("-", "_")] = words[2]
        elif words[:1] == ["blacklist"]:
            blacklist.append(words[1].replace("-", "_"))
    return {
        "content": content,
        "sysctl_files": sysctls,
        "sysctl_live": dict(sysctls),
        "modprobe": {"install": install, "blacklist": blacklist},
        "loaded_modules": [],
    }


@pytest.mark.parametrize("host", HOSTS)
def test_the_written_files_pass_the_catalogues_checks(renderer: Renderer, host: str) -> None:
    obs = observed(renderer, host)
    ctx = context(LAB, LAB.host(host))
    ctx.lab = False  # as on a real host: every kernel parameter is judged live
    judged = 0
    for control in load_catalogue().controls:
        for check in control.checks:
            spec = CHECKS[check.kind]
            params = spec.params.model_validate(check.params)
            path = getattr(params, "path", None)
            if check.kind in ("sysctl", "module_off") or (path in obs["content"]):
                verdict = spec.judge(params, obs, ctx)
                assert verdict.outcome is Outcome.PASS, (control.id, verdict)
                judged += 1
    assert judged >= 40


def test_every_kernel_parameter_and_module_of_the_catalogue_is_written(renderer: Renderer) -> None:
    obs = observed(renderer, "gj-log-01")
    checks = [c for control in load_catalogue().controls for c in control.checks]
    wanted = {c.params["key"] for c in checks if c.kind == "sysctl"}
    assert wanted <= set(obs["sysctl_files"])
    modules = {c.params["module"].replace("-", "_") for c in checks if c.kind == "module_off"}
    assert modules <= set(obs["modprobe"]["blacklist"])


def test_the_lab_sets_only_its_own_kernel_parameters_live(renderer: Renderer) -> None:
    keys = renderer.var("hardening", "gj-log-01", "_hardening_live_keys")
    assert keys and all(k.startswith("net.") for k in keys)
    real = renderer.var("hardening", "gj-log-01", "_hardening_live_keys", {"dualdc_lab": False})
    assert set(real) == set(renderer.var("hardening", "gj-log-01", "hardening_sysctls"))


def test_password_policy_follows_the_model(renderer: Renderer) -> None:
    access = {
        **LAB.environment.access.model_dump(mode="json"),
        "password_min_length": 14,
        "password_max_days": 60,
    }
    text = renderer.render("hardening", "pwquality.conf.j2", "gj-log-01", {"dualdc_access": access})
    assert re.search(r"^minlen = 14$", text, re.MULTILINE)
    defs = renderer.var("hardening", "gj-log-01", "_hardening_login_defs", {"dualdc_access": access})
    assert str(defs["PASS_MAX_DAYS"]) == "60" and defs["UMASK"] == "027"


@needs_root
@pytest.mark.parametrize("host", ["gj-bastion-01", "jj-db-kj-01"])
def test_sshd_as_written_passes_every_ssh_check(
    renderer: Renderer,
    host_key: Path,  # noqa: F811 (the fixture of test_templates)
    tmp_path: Path,
    host: str,
) -> None:
    config = tmp_path / "sshd_config"
    config.write_text(renderer.render("base", "sshd_config.j2", host))
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
    eff: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        eff[key] = value if key not in eff else eff[key] + " " + value
    ctx = context(LAB, LAB.host(host))
    judged = 0
    for control in load_catalogue().controls:
        for check in control.checks:
            if check.kind == "sshd":
                spec = CHECKS["sshd"]
                verdict = spec.judge(spec.params.model_validate(check.params), {"sshd": eff}, ctx)
                assert verdict.outcome is Outcome.PASS, (control.id, verdict)
                judged += 1
    assert judged >= 15


def test_only_differing_parameters_are_set_live_and_missing_ones_are_left_alone(renderer: Renderer) -> None:
    keys = renderer.var("hardening", "gj-log-01", "_hardening_live_keys")
    wanted = renderer.var("hardening", "gj-log-01", "hardening_sysctls")
    lines = [str(wanted[k]) for k in keys]
    lines[0] = "7" if lines[0] != "7" else "8"  # one differs
    lines[1] = "-"  # one this namespace lacks
    diff = renderer.var("hardening", "gj-log-01", "_hardening_live_diff",
                        {"_hardening_live": {"stdout_lines": lines}})
    assert diff == [f"{keys[0]}={wanted[keys[0]]}"]
    same = renderer.var("hardening", "gj-log-01", "_hardening_live_diff",
                        {"_hardening_live": {"stdout_lines": [str(wanted[k]) for k in keys]}})
    assert same == []
