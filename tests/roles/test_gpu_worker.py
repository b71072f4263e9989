"""The gpu_worker role: in the lab it renders and checks its files, applies nothing and says so;
it installs packages only from the internal GPU mirror, and never on the lab twin.

The lab runs are real ansible-playbook runs of the role on this machine (a local connection)
with the render folder in tmp_path: nothing outside it is written.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dualdc.loader import load_environment

from .conftest import ROLES, ROOT, Renderer

BIN = Path(sys.executable).parent


def _play(tmp_path: Path, extra: dict[str, Any], check: bool = False) -> tuple[int, list[dict[str, Any]]]:
    """Run the role on localhost as a lab host (ansible-runner); its rc and its tasks' results."""
    import ansible_runner

    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "gpu_worker", "hosts": "localhost", "gather_facts": False, "connection": "local",
        "roles": [{"role": str(ROLES / "gpu_worker")}],
    }]), encoding="utf-8")
    variables = {"dualdc_lab": True, "gpu_worker_render_dir": str(tmp_path / "rendered"),
                 "dualdc_mirrors": {"apt": "file:///srv/dualdc-mirror", "apt_suite": "bookworm",
                                    "registry": "registry.lab.jbfg.example:5000", "kubernetes_apt": None,
                                    "gpu_apt": None},
                 "ansible_managed": "Managed by dualdc", "ansible_python_interpreter": sys.executable,
                 **extra}
    (tmp_path / "runner").mkdir(exist_ok=True)
    run = ansible_runner.run(
        private_data_dir=str(tmp_path / "runner"), playbook=str(playbook), inventory="localhost,",
        extravars=variables, cmdline="--check" if check else None, quiet=True,
        envvars={"PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_ROLES_PATH": str(ROLES)},
    )
    outcome = {"runner_on_ok": "ok", "runner_on_skipped": "skipped", "runner_on_failed": "failed"}
    tasks: list[dict[str, Any]] = []
    for event in run.events:
        kind = outcome.get(event.get("event", ""))
        if kind is None:
            continue
        data = event["event_data"]
        res = data.get("res") or {}
        if isinstance(res, dict) and res.get("results"):  # a loop: changed if any item changed
            res = {**res, "changed": any(r.get("changed") for r in res["results"])}
        tasks.append({"name": data["task"], "status": kind, "changed": bool(res.get("changed")),
                      "msg": res.get("msg", "")})
    return run.rc, tasks


def test_the_lab_renders_checks_and_applies_nothing_and_says_so(tmp_path: Path) -> None:
    rc, tasks = _play(tmp_path, {})
    assert rc == 0, tasks
    rendered = tmp_path / "rendered"
    dropin = rendered / "etc/containerd/conf.d/90-dualdc-nvidia.toml"
    config = tomllib.loads(dropin.read_text(encoding="utf-8"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["enable_cdi"] is True and cri["cdi_spec_dirs"] == ["/etc/cdi"]
    nvidia = cri["containerd"]["runtimes"]["nvidia"]["options"]
    assert nvidia["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    modules = (rendered / "etc/modules-load.d/dualdc-gpu.conf").read_text(encoding="utf-8").split()
    assert {"nvidia", "nvidia_uvm"} <= set(modules)
    blacklist = rendered / "etc/modprobe.d/dualdc-gpu-blacklist.conf"
    assert "blacklist nouveau" in blacklist.read_text(encoding="utf-8")
    labels = (rendered / "etc/dualdc/gpu-node-labels").read_text(encoding="utf-8").splitlines()[-1]
    assert set(labels.split(",")) == {"nvidia.com/gpu.present=true", "dualdc.jbfg.example/zone=ai"}
    by_name = {t["name"]: t for t in tasks}
    # nothing that would act on the machine ran, and no package source was written
    for name in ("Load the GPU driver's modules now", "Generate the CDI specification of the host's GPUs",
                 "Install the GPU driver and the NVIDIA container toolkit"):
        assert by_name[name]["status"] == "skipped", name
    assert not (rendered / "etc/apt").exists()
    said = by_name["Say what the lab renders and checks but does not apply"]["msg"]
    assert "NOT applied" in said and str(rendered) in said and "gpu_apt is not set" in said
    # idempotent: a second run changes nothing
    rc, tasks = _play(tmp_path, {})
    assert rc == 0 and not [t["name"] for t in tasks if t["changed"]]


def test_a_gpu_mirror_in_the_lab_is_rendered_but_nothing_is_installed(tmp_path: Path) -> None:
    mirrors = {"apt": "file:///srv/dualdc-mirror", "apt_suite": "bookworm", "registry": "r.jbfg.example:5000",
               "kubernetes_apt": None, "gpu_apt": "http://mirror.infra.jbfg.example/nvidia/deb"}
    rc, tasks = _play(tmp_path, {"dualdc_mirrors": mirrors})
    assert rc == 0, tasks
    sources = (tmp_path / "rendered/etc/apt/sources.list.d/dualdc-gpu.sources").read_text(encoding="utf-8")
    assert "URIs: http://mirror.infra.jbfg.example/nvidia/deb" in sources
    by_name = {t["name"]: t for t in tasks}
    assert by_name["Install the GPU driver and the NVIDIA container toolkit"]["status"] == "skipped"
    assert by_name["Find the internal GPU mirror's keyring"]["status"] == "skipped"


def test_a_toml_the_runtime_cannot_read_is_refused(tmp_path: Path) -> None:
    rc, tasks = _play(tmp_path, {"gpu_worker_runtime_binary": 'nvidia"\nbroken'})
    assert rc != 0
    failed = [t for t in tasks if t["status"] == "failed"]
    assert [t["name"] for t in failed] == ["Declare the NVIDIA runtime and CDI for containerd"]
    assert not (tmp_path / "rendered/etc/containerd/conf.d/90-dualdc-nvidia.toml").exists()


def test_production_installs_only_from_the_internal_mirror(renderer: Renderer) -> None:
    """In production the role applies (no render folder) and its packages come from gpu_apt."""
    from dualdc import inventory

    prod = Renderer(inventory.build(load_environment("production")))
    host = next(h.name for h in load_environment("production").hosts if h.role.value == "gpu_worker")
    assert prod.var("gpu_worker", host, "gpu_worker_apply") is True
    assert prod.var("gpu_worker", host, "_gpu_worker_root") == ""
    repo = prod.var("gpu_worker", host, "gpu_worker_apt_repository")
    assert repo.startswith("http://mirror.infra.jbfg.example/")
    sources = prod.render("gpu_worker", "gpu.sources.j2", host)
    assert f"URIs: {repo}" in sources and "Signed-By: /usr/share/keyrings/dualdc-gpu.gpg" in sources
    lab_host = next(h.name for h in load_environment("lab").hosts if h.role.value == "gpu_worker")
    assert renderer.var("gpu_worker", lab_host, "gpu_worker_apply") is False
    assert renderer.var("gpu_worker", lab_host, "gpu_worker_apt_repository") is None


@pytest.mark.parametrize("env", ["lab", "production"])
def test_the_playbook_gives_gpu_workers_the_role_and_cluster_nodes_the_runtime(env: str) -> None:
    play = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text(encoding="utf-8"))[0]
    conditions = {t["ansible.builtin.include_role"]["name"]: t["when"] for t in play["tasks"]}
    assert conditions["gpu_worker"] == "'role_gpu_worker' in group_names"
    assert "role_gpu_worker" in conditions["container_runtime"] and "dualdc_cluster" in conditions["k8s_node"]
