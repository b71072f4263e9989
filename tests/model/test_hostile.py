"""Every hostile example of issue 12: exit 1 with one readable screen (or the named rule, exit 2).

Most run the tasks in-process (a traceback would fail the test as an unexpected exception);
the ones about hanging or what reaches a terminal run the real command in a subprocess.
The property fuzz of the loader is in test_fuzz.py; here are the hand-made cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from dualdc.base import redact
from dualdc.loader import TopologyError, load_topology
from dualdc.tasks import model as model_tasks
from dualdc.tasks import stacks as stacks_tasks

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "{{ lookup('pipe', 'touch /tmp/dualdc-canary') }}"
SCREEN = 40  # lines


def _exit_of(call: Callable[[], Any]) -> Exit:
    with pytest.raises(Exit) as err:
        call()
    return err.value


def _one_screen(exc: Exit) -> str:
    message = str(exc.message or "")
    assert message.startswith("error: "), message
    assert "Traceback" not in message
    lines = message.splitlines()
    assert len(lines) <= SCREEN and all(len(line) <= 420 for line in lines), message[:2000]
    return message


def validate(lab: Any, **kwargs: Any) -> Exit:
    lab.save()
    return _exit_of(lambda: model_tasks.validate(Context(), topology=str(lab.folder), **kwargs))


def _host_iface(lab: Any, kind: str) -> dict[str, Any]:
    """An interface of the first host, made a bond (members) or a VLAN sub-interface (parent)."""
    iface: dict[str, Any] = lab.section("hosts")[0]["interfaces"][0]
    iface.pop("members", None)
    iface.pop("parent", None)
    iface[kind] = ["eno1"] if kind == "members" else "eno1"
    return iface


# --------------------------------------------------------------------------- strings that were code


@pytest.mark.parametrize(("where", "value"), [
    ("rack", TEMPLATE),
    ("ssh_user", TEMPLATE),
    ("mirrors.apt", "http://mirror.infra.jbfg.example/" + TEMPLATE),
    ("mirrors.registry", TEMPLATE),
    ("mirrors.kubernetes_apt", TEMPLATE),
    ("members", TEMPLATE),
    ("parent", TEMPLATE),
    # lines injected into host files
    ("mirrors.apt", "http://mirror.infra.jbfg.example/debian\nTrusted: yes"),
    ("mirrors.registry", 'registry.infra.jbfg.example"]\n[host."https://evil.example'),
    ("members", "eno1\n[Network]\nDHCP=yes"),
    ("members", "../../etc/cron.d/x"),
    ("parent", "../../../etc/passwd"),
    ("parent", ".."),
    ("members", "a-name-longer-than-15"),
    ("rack", "A01\nB02"),
    ("ssh_public_key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICgd x\ncommand=\"sh\" ssh-ed25519 AAAA"),
])
def test_strings_that_would_become_code_or_lines_are_refused(lab, where, value):
    env = lab.env
    if where in ("rack",):
        lab.section("hosts")[0]["rack"] = value
    elif where == "ssh_user":
        env["ssh_user"] = value
    elif where.startswith("mirrors."):
        env["mirrors"][where.split(".")[1]] = value
    elif where == "members":
        _host_iface(lab, "members")["members"][0] = value
    elif where == "parent":
        _host_iface(lab, "parent")["parent"] = value
    elif where == "ssh_public_key":
        env["admins"][0]["ssh_public_key"] = value
    message = _one_screen(validate(lab))
    assert "the topology is invalid" in message
    assert where.split(".")[-1] in message
    assert "\nTrusted: yes" not in message and "\n[Network]" not in message


def test_carriers_are_normalised_in_the_model(lab):
    lab.section("links")[0]["carrier"] = "  Carrier-A  "
    lab.save()
    assert load_topology(lab.folder).links[0].carrier == "carrier-a"


# --------------------------------------------------------------------------- dangerous but well-formed


@pytest.mark.parametrize(("edit", "rule"), [
    (lambda lab: lab.find("tenants", "kjbank")["admin_groups"].append("system:authenticated"), "RBAC-01"),
    (lambda lab: lab.env["mirrors"].__setitem__("registry", "docker.io"), "AIR-01"),
    (lambda lab: lab.section("links")[1].__setitem__("carrier", "Carrier-A "), "DR-03"),
])
def test_dangerous_values_fail_their_rule_with_exit_2(lab, edit, rule, capsys):
    edit(lab)
    exc = validate(lab)
    assert exc.code == 2
    assert rule in capsys.readouterr().out


def test_a_300000_character_purpose_is_exit_1_and_not_echoed(lab):
    lab.section("flows")[0]["purpose"] = "x" * 300_000
    message = _one_screen(validate(lab))
    assert "purpose" in message and "x" * 200 not in message


# --------------------------------------------------------------------------- secrets and long values


def test_a_password_looking_value_is_not_printed_back(lab):
    lab.env["ssh_user"] = "password=Sup3r-Secret-99"
    lab.section("hosts")[0]["rack"] = "root:$6$saltsalt$Ab0cDefGhijKlmnOpqrStuvWxyz0123456789:19000"
    message = _one_screen(validate(lab))
    assert "Sup3r-Secret-99" not in message
    assert "Ab0cDefGhijKlmnOpqrStuvWxyz" not in message
    assert redact.MASK in message


def test_the_environments_secret_variables_are_masked(lab, monkeypatch):
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "correct-horse-battery")
    lab.section("hosts")[0]["rack"] = "x correct-horse-battery"
    message = _one_screen(validate(lab))
    assert "correct-horse-battery" not in message and redact.MASK in message


@pytest.mark.parametrize("digits", [5000, 4000])
def test_a_huge_number_is_not_echoed_whole(lab, digits):
    text = lab.folder / "environment.yaml"
    lab.save()
    body = text.read_text(encoding="utf-8")
    number = "7" * digits
    text.write_text(body.replace("lockout_attempts: 5", f"lockout_attempts: {number}"), encoding="utf-8")
    exc = _exit_of(lambda: model_tasks.validate(Context(), topology=str(lab.folder)))
    message = _one_screen(exc)
    assert "lockout_attempts" in message or "invalid int" in message
    assert "7" * 200 not in message


def test_a_shadow_file_is_not_read_and_its_lines_not_printed(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.write_text("root:$6$saltsalt$hashhashhashhashhashhash:19000:0:99999:7:::\n", encoding="utf-8")
    message = _one_screen(_exit_of(lambda: model_tasks.validate(Context(), topology=str(shadow))))
    assert "hashhash" not in message and "not a topology" in message
    as_yaml = tmp_path / "shadow.yaml"
    as_yaml.write_text("root: $6$saltsalt$hashhashhashhashhashhash:19000:0:99999:7:::\n"
                       "daemon: '*:19000:0:99999:7:::'\n", encoding="utf-8")
    message = _one_screen(_exit_of(lambda: model_tasks.validate(Context(), topology=str(as_yaml))))
    assert "hashhash" not in message and "19000:0:99999" not in message


def test_redaction_shapes():
    text = ("url https://ci:hunter2-pw@registry.example/x and $y$j9T$abcdefghijkl$mnopqrstuvwx; "
            "password: 'letmein123' -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n"
            "-----END OPENSSH PRIVATE KEY----- token=ghp_abcdefghijklmnopqrstuvwxyz0123456789")
    scrubbed = redact.scrub(text, environ={})
    for secret in ("hunter2-pw", "abcdefghijkl$mnop", "letmein123", "b3BlbnNzaC1rZXk", "ghp_abcdef"):
        assert secret not in scrubbed
    assert "https://ci:" in scrubbed and "registry.example/x" in scrubbed
    assert redact.scrub("PasswordAuthentication no", environ={}) == "PasswordAuthentication no"
    assert redact.shown(10**5000).startswith("<an integer of about 50")
    assert len(redact.shorten("y" * 5000)) < 120


# --------------------------------------------------------------------------- the command line


def test_an_empty_env_is_an_error():
    message = _one_screen(_exit_of(lambda: model_tasks.validate(Context(), env="")))
    assert "--env" in message
    message = _one_screen(_exit_of(lambda: model_tasks.inventory_(Context(), env="")))
    assert "--env" in message


def test_inventory_errors_are_readable():
    message = _one_screen(_exit_of(lambda: model_tasks.inventory_(Context(), env="no-such-env")))
    assert "no such environment" in message


@pytest.mark.parametrize("kind", ["loop", "dangling", "device-link", "device", "folder-entry-fifo"])
def test_topology_paths_that_are_not_regular_files(tmp_path, kind):
    if kind == "loop":
        target = tmp_path / "self.yaml"
        target.symlink_to(target)
        expected = "symbolic link loop"
    elif kind == "dangling":
        target = tmp_path / "gone.yaml"
        target.symlink_to(tmp_path / "nowhere.yaml")
        expected = "dangling symbolic link"
    elif kind == "device-link":
        target = tmp_path / "zero.yaml"
        target.symlink_to("/dev/zero")
        expected = "a device"
    elif kind == "device":
        target = Path("/dev/zero")
        expected = "not a topology"
    else:
        target = tmp_path / "env"
        target.mkdir()
        os.mkfifo(target / "pipe.yaml")
        expected = "named pipe"
    message = _one_screen(_exit_of(lambda: model_tasks.validate(Context(), topology=str(target))))
    assert expected in message


def test_a_fifo_does_not_hang_the_command(tmp_path):
    fifo = tmp_path / "topology.yaml"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "invoke", "validate", "--topology", str(fifo)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "named pipe" in done.stderr and "Traceback" not in done.stderr


def test_the_size_bound_is_counted_not_trusted(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * 4096 + b"\n")
    with pytest.raises(TopologyError, match="size limit of 1000 bytes"):
        load_topology(big, max_bytes=1000)


def test_output_writes_through_a_symlink_and_keeps_it(tmp_path, capsys):
    target = tmp_path / "report.txt"
    target.write_text("old", encoding="utf-8")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    model_tasks.validate(Context(), env="lab", output=str(link))
    assert link.is_symlink() and "lab: passed" in target.read_text(encoding="utf-8")


@pytest.mark.parametrize("output", ["/dev/null", "folder"])
def test_output_refuses_what_is_not_a_regular_file(tmp_path, output):
    if output == "folder":
        output = str(tmp_path)
    message = _one_screen(_exit_of(lambda: model_tasks.validate(Context(), env="lab", output=output)))
    assert "not a regular file" in message
    assert Path("/dev/null").is_char_device()


def test_output_onto_dev_stdout_is_refused_not_replaced():
    done = subprocess.run([sys.executable, "-m", "invoke", "validate", "--env", "lab",
                           "--output", "/dev/stdout"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1 and "not a regular file" in done.stderr and "Traceback" not in done.stderr
    assert Path("/dev/stdout").is_symlink()


def test_render_out_onto_a_file(tmp_path):
    file = tmp_path / "a-file"
    file.write_text("x", encoding="utf-8")
    message = _one_screen(_exit_of(lambda: stacks_tasks.render_(Context(), env="lab", out=str(file))))
    assert "is not a folder" in message


def test_preview_backend_with_a_password_is_refused_without_printing_it():
    done = subprocess.run([sys.executable, "-m", "invoke", "preview", "--env", "production", "--backend",
                           "https://user:Pa55-w0rd-xyz@host.example/x"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    assert "Pa55-w0rd-xyz" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: backend ")


def test_a_self_managed_backend_with_credentials_in_its_url_is_refused():
    url = "s3://ops:Pa55-w0rd-xyz@state-bucket?endpoint=minio.infra.jbfg.example:9000"
    message = _one_screen(_exit_of(lambda: stacks_tasks.preview(Context(), env="production", backend=url)))
    assert "carries credentials" in message and "Pa55-w0rd-xyz" not in message


def test_inventory_build_failures_are_readable_in_the_task_and_in_ansible_inventory(monkeypatch, tmp_path):
    # The inventory no longer reads the lab's settings (DUALDC_LAB_INFRA_CIDR): it reads what lab.up
    # published, so a failure to build it is now that file being unreadable.
    state = tmp_path / "lab-state"
    state.mkdir()
    (state / "connection.json").write_text("{not json", encoding="utf-8")
    monkeypatch.setenv("DUALDC_LAB_STATE_DIR", str(state))
    message = _one_screen(_exit_of(lambda: model_tasks.inventory_(Context(), env="lab")))
    assert "cannot build the inventory of lab" in message
    assert "connection.json" in message and "lab.up" in message
    done = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i", "inventories/lab",
                           "--graph"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "DUALDC_LAB_STATE_DIR": str(state),
                               "ANSIBLE_DEPRECATION_WARNINGS": "False"})
    assert done.returncode != 0 and "connection.json" in done.stderr
    assert "Traceback" not in done.stderr
