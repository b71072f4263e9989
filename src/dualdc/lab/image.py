"""The base image: a minimal Debian root filesystem made with debootstrap, cached per recipe.

The cache key is the suite, the architecture, the package list and the recipe version, so
changing any of them builds a new image next to the old one (hosts whose overlay was made
on another image are rebuilt fresh). The image is built in a temporary directory and
renamed into place only when complete: an interrupted build never leaves a half image.

The image is made for the lab, not for one host: it has no SSH host keys, no machine id
and no apt sources (each host gets its own at first boot).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from dualdc.lab import system
from dualdc.lab.config import LabConfig, find_mirror
from dualdc.lab.errors import LabError

RECIPE_VERSION = "1"
Progress = Callable[[str], None]


def arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def image_key(suite: str, packages: tuple[str, ...]) -> str:
    text = "\n".join([RECIPE_VERSION, suite, arch(), *sorted(set(packages))])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_dir(cfg: LabConfig) -> Path:
    return cfg.cache / "base" / f"{cfg.suite}-{arch()}-{image_key(cfg.suite, cfg.packages)}"


def cached_rootfs(cfg: LabConfig) -> Path | None:
    """The cached root filesystem for this recipe, if complete."""
    root = image_dir(cfg)
    if (root / "image.json").is_file() and (root / "rootfs" / "usr" / "sbin" / "sshd").exists():
        return root / "rootfs"
    return None


def remove_tree(path: Path) -> None:
    """Remove a directory tree, first unmounting anything mounted below it (never crossing into a mount)."""
    if not path.exists():
        return
    real = str(path.resolve())
    below = sorted((m for m, _ in system.mounts() if m == real or m.startswith(real + "/")),
                   key=len, reverse=True)
    for mount in below:
        system.run(["umount", "-l", mount], check=False)
    if any(m == real or m.startswith(real + "/") for m, _ in system.mounts()):
        raise LabError(f"cannot remove {path}: something is still mounted below it")
    shutil.rmtree(path)


def _clean_stale_builds(base: Path) -> None:
    if not base.is_dir():
        return
    for entry in base.iterdir():
        if entry.name.startswith(".build-"):
            pid = entry.name.rsplit("-", 1)[-1]
            if pid.isdigit() and Path(f"/proc/{pid}").exists() and int(pid) != os.getpid():
                continue  # another build in progress
            remove_tree(entry)


def ensure_base(cfg: LabConfig, progress: Progress) -> tuple[Path, bool]:
    """The cached base root filesystem, building it first if needed. Returns (rootfs, built)."""
    found = cached_rootfs(cfg)
    if found is not None:
        return found, False
    system.require_environment(system.DEBOOTSTRAP)
    mirror, keyring = find_mirror(cfg.suite)
    target = image_dir(cfg)
    base = target.parent
    base.mkdir(parents=True, exist_ok=True)
    _clean_stale_builds(base)
    build = base / f".build-{target.name}-{os.getpid()}"
    rootfs = build / "rootfs"
    rootfs.mkdir(parents=True)
    argv = ["debootstrap", "--variant=minbase", f"--include={','.join(cfg.packages)}", f"--arch={arch()}"]
    if keyring is not None:
        argv.append(f"--keyring={keyring}")
    argv += [cfg.suite, str(rootfs), mirror]
    progress(f"debootstrap {cfg.suite} from {mirror} ({len(cfg.packages)} extra packages)")
    started = time.monotonic()
    log = build / "debootstrap.log"
    try:
        with log.open("w") as out, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                    text=True, stdin=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                if line.startswith(("I: Retrieving", "I: Unpacking", "I: Configuring", "I: Installing")):
                    progress(f"debootstrap: {line[3:].strip()}")
            code = proc.wait()
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-10:])
            raise LabError(f"debootstrap failed ({code}) with mirror {mirror}:\n{tail}")
        _finish_image(rootfs)
        (build / "image.json").write_text(json.dumps({
            "suite": cfg.suite, "arch": arch(), "packages": sorted(cfg.packages), "mirror": mirror,
            "recipe": RECIPE_VERSION, "built_seconds": round(time.monotonic() - started, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2) + "\n")
        if target.exists():
            remove_tree(target)
        build.rename(target)
    except BaseException:
        remove_tree(build)
        raise
    return target / "rootfs", True


def prune(cfg: LabConfig) -> int:
    """Delete cached base images other than the current recipe's (no host may use them). A count."""
    base, keep = image_dir(cfg).parent, image_dir(cfg).name
    removed = 0
    if base.is_dir():
        for entry in base.iterdir():
            if entry.is_dir() and entry.name != keep and not entry.name.startswith(".build-"):
                remove_tree(entry)
                removed += 1
    return removed


def _finish_image(rootfs: Path) -> None:
    """Make the debootstrapped tree a lab image: nothing host-specific, no downloaded packages."""
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    for deb in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    lists = rootfs / "var" / "lib" / "apt" / "lists"
    if lists.is_dir():
        for entry in lists.iterdir():
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
    (rootfs / "etc" / "apt" / "sources.list").write_text("# set per host by the dualdc lab at first boot\n")
    (rootfs / "etc" / "resolv.conf").unlink(missing_ok=True)
    (rootfs / "etc" / "resolv.conf").write_text("# the lab has no DNS; hosts use /etc/hosts\n")
    (rootfs / "etc" / "machine-id").unlink(missing_ok=True)
    (rootfs / "etc" / "hostname").write_text("localhost\n")
