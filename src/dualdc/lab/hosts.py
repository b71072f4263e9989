"""The lab hosts: an overlay root, their own namespaces, an init, sshd; and running commands in them.

Each host is a small container made from plain util-linux tools:

- its network namespace ``ddc-h-<host>`` (made by :mod:`dualdc.lab.network`);
- an *init*: ``nsenter --net … unshare --pid --fork --mount --uts --ipc --kill-child``
  running a shell that sets the hostname, mounts the host's overlay root (lower = the
  cached base image, upper/work = ``<state>/hosts/<host>/``), ``/proc``, ``/sys``, a
  minimal ``/dev``, ``/run``, and then ``exec chroot <root> tini -- sleep infinity``.
  tini is PID 1 of the host: it reaps orphans, and when it dies the kernel ends every
  process of the host. The mounts exist only in the host's mount namespace: nothing of
  a host is mounted in the machine's own mount table.
- sshd, started the Debian way (``/usr/sbin/sshd``, which daemonises and writes
  ``/run/sshd.pid`` inside the host), so ``/etc/init.d/ssh restart`` works on a host.

The lab records the init's pid and start time; a host is stopped by ending that pid
(after a grace period with SIGTERM to the host's processes), never by a process name.

:func:`exec_in_host` runs a command inside a host (all its namespaces, chrooted into its
root), the way the roles' tests and the drift tests reach into a host without SSH.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dualdc.lab import system
from dualdc.lab.errors import LabError
from dualdc.lab.system import Proc

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READY_TIMEOUT = 20.0
SSHD_TIMEOUT = 10.0
STOP_GRACE = 3.0

INIT_SCRIPT = r"""
set -eu
host=$1 lower=$2 upper=$3 work=$4 root=$5 mirror=$6
echo "$host" > /proc/sys/kernel/hostname
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount -t tmpfs -o mode=755,size=1m,nosuid,noexec dev "$root/dev"
for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $node
  mknod -m 666 "$root/dev/$1" c "$2" "$3"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev shm "$root/dev/shm"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o mode=755,size=64m,nosuid,nodev run "$root/run"
mkdir -p "$root/run/sshd" "$root/run/lock"
chmod 1777 "$root/run/lock"
if [ -n "$mirror" ] && [ -d "$mirror" ]; then
  mkdir -p "$root$mirror"
  mount --bind "$mirror" "$root$mirror"
  mount -o remount,bind,ro "$root$mirror"
fi
echo ready
exec chroot "$root" /usr/bin/tini -- /bin/sleep infinity >/dev/null
"""


@dataclass(frozen=True)
class HostPaths:
    top: Path

    @property
    def upper(self) -> Path:
        return self.top / "upper"

    @property
    def work(self) -> Path:
        return self.top / "work"

    @property
    def root(self) -> Path:
        return self.top / "root"

    @property
    def log(self) -> Path:
        return self.top / "init.log"


def start_init(name: str, netns: str, lower: Path, paths: HostPaths, mirror: str | None) -> tuple[Proc, Proc]:
    """Start a host's init; returns (wrapper, init). Raises if the host does not come up."""
    for d in (paths.upper, paths.work, paths.root):
        d.mkdir(parents=True, exist_ok=True)
    argv = system.in_netns(netns, [
        "unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts", "--ipc", "--propagation", "private",
        "--", "/bin/sh", "-c", INIT_SCRIPT, "dualdc-lab-init", name, str(lower), str(paths.upper),
        str(paths.work), str(paths.root), mirror or ""])
    with paths.log.open("w") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                start_new_session=True, close_fds=True)
    assert proc.stdout is not None
    wrapper = Proc.of(proc.pid)
    ready = b""
    deadline = time.monotonic() + READY_TIMEOUT
    while b"\n" not in ready and time.monotonic() < deadline:
        rlist, _, _ = select.select([proc.stdout], [], [], 0.2)
        if rlist:
            chunk = os.read(proc.stdout.fileno(), 64)
            if not chunk:
                break
            ready += chunk
        elif proc.poll() is not None:
            break
    proc.stdout.close()
    if ready.strip() != b"ready" or wrapper is None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        detail = paths.log.read_text(errors="replace").strip()[-800:] if paths.log.exists() else ""
        raise LabError(f"host {name} did not start: {detail or 'no output'}")
    init = None
    for _ in range(100):
        kids = system.children(proc.pid)
        if kids:
            init = Proc.of(kids[0])
            break
        time.sleep(0.01)
    if init is None:
        proc.kill()
        raise LabError(f"host {name} did not start: its init process is missing")
    # "ready" is printed just before the exec into the chroot: wait for it to happen.
    deadline = time.monotonic() + READY_TIMEOUT
    while not overlay_mounted(init):
        if time.monotonic() > deadline or not init.alive():
            proc.kill()
            raise LabError(f"host {name} did not start: its init never entered its root")
        time.sleep(0.005)
    # The wrapper stays (unshare waits for its child); it is reaped when it exits.
    _detach(proc)
    return wrapper, init


_detached: list[subprocess.Popen[bytes]] = []


def _detach(proc: subprocess.Popen[bytes]) -> None:
    """Keep a reference so Python does not warn; the object is polled (reaped) later."""
    _detached.append(proc)
    for p in list(_detached):
        if p.poll() is not None:
            _detached.remove(p)


def reap() -> None:
    for p in list(_detached):
        if p.poll() is not None:
            _detached.remove(p)


def host_processes(init: Proc) -> list[int]:
    """Every live process of a host (those in its PID namespace), init included."""
    inode = system.ns_inode_of(init.pid, "pid")
    if inode is None:
        return []
    return system.processes_in("pid", {inode})


def stop_init(name: str, wrapper: Proc | None, init: Proc | None, grace: float = STOP_GRACE) -> bool:
    """Stop a host: SIGTERM its processes, then SIGKILL its init (the kernel ends the rest)."""
    stopped = False
    if init is not None and init.alive():
        others = [p for p in host_processes(init) if p != init.pid]
        procs = [q for q in (Proc.of(p) for p in others) if q is not None]
        for q in procs:
            q.kill(signal.SIGTERM)
        system.wait_gone(procs, grace)
        init.kill(signal.SIGKILL)
        if not system.wait_gone([init], 10):
            raise LabError(f"host {name}: its init (pid {init.pid}) did not end")
        stopped = True
    if wrapper is not None and wrapper.alive():
        wrapper.kill(signal.SIGKILL)
        system.wait_gone([wrapper], 5)
        stopped = True
    reap()
    return stopped


def overlay_mounted(init: Proc) -> bool:
    """Whether the host's init runs chrooted in an overlay root (its ``/`` is an overlay mount)."""
    try:
        lines = Path(f"/proc/{init.pid}/mountinfo").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        left, _, right = line.partition(" - ")
        cols = left.split()
        if len(cols) > 4 and cols[4] == "/" and right.split()[:1] == ["overlay"]:
            return True
    return False


def nsenter_argv(init: Proc, root: Path, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """``argv`` run inside a host: its namespaces, then ``chroot`` into its overlay root.

    The chroot happens *inside* the host's mount namespace (where the overlay is mounted),
    so the command can never see the controller's root filesystem instead.
    """
    variables = {"PATH": HOST_PATH, "HOME": "/root", "LANG": "C.UTF-8", "USER": "root", "LOGNAME": "root",
                 "TERM": "dumb", **(env or {})}
    return ["nsenter", "-t", str(init.pid), "-m", "-u", "-i", "-n", "-p", "--",
            "chroot", str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in variables.items()), *argv]


def run_in(init: Proc, root: Path, name: str, argv: list[str], *, input: str | None = None,
           timeout: float = 120, check: bool = True,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command inside a running host; refuses unless its overlay root is mounted."""
    if not init.alive():
        raise LabError(f"host {name} is not running")
    if system.ns_inode_of(init.pid, "mnt") == system.ns_inode_of(os.getpid(), "mnt") or not overlay_mounted(
            init):
        raise LabError(f"host {name}: its root filesystem is not mounted (pid {init.pid}); refusing to run")
    return system.run(nsenter_argv(init, root, argv, env), input=input, timeout=timeout, check=check)


def sshd_listening(init: Proc) -> bool:
    return system.tcp_listening(init.pid, 22)


def start_sshd(init: Proc, root: Path, name: str) -> bool:
    """Start sshd in a host unless something already listens on port 22 there. True if started."""
    if sshd_listening(init):
        return False
    proc = run_in(init, root, name, ["/usr/sbin/sshd"], check=False, timeout=30)
    if proc.returncode != 0:
        raise LabError(f"host {name}: sshd did not start: {proc.stderr.strip()[-500:]}")
    deadline = time.monotonic() + SSHD_TIMEOUT
    while not sshd_listening(init):
        if time.monotonic() > deadline:
            raise LabError(f"host {name}: sshd started but does not listen on port 22")
        time.sleep(0.02)
    return True


#: Daemons a converge set up, restarted when a host's init starts again (a host or site fault
#: healed, lab.up after lab.down): each with the file that says the roles configured it.
#: A marker given as ``path:text`` counts only when the file holds that text (the package ships
#: the file too; the role's version names dualdc in its first line).
SERVICES = (
    # time and logs first: every host's time_sync and audit roles keep them running
    ("chrony", "/etc/chrony/chrony.conf:dualdc"),
    ("rsyslog", "/etc/init.d/rsyslog"),          # installed by the audit role (Debian ships a unit only)
    # an old primary superseded while its site was down comes up read-only (dr.failover)
    ("dualdc-pg-guard", "/var/lib/postgresql/.dualdc-15-main"),
    ("postgresql", "/var/lib/postgresql/.dualdc-15-main"),
    ("dualdc-pgbackrest", "/etc/init.d/dualdc-pgbackrest"),
    ("cron", "/etc/cron.d/dualdc-pgbackrest"),
)


def services_script(root: str = "") -> str:
    """The shell script that starts each configured daemon (paths under ``root``, for tests)."""
    def configured(marker: str) -> str:
        path, _, text = marker.partition(":")
        return f"grep -qsF {text} {root}{path}" if text else f"[ -e {root}{path} ]"

    return "n=0\n" + "".join(
        f"if {configured(marker)} && [ -x {root}/etc/init.d/{service} ]; then "
        f"{root}/etc/init.d/{service} start >/dev/null 2>&1 && n=$((n+1)); fi\n"
        for service, marker in SERVICES) + "echo $n\n"


def start_services(init: Proc, root: Path, name: str) -> int:
    """Start the configured daemons of a freshly started host; how many were started."""
    proc = run_in(init, root, name, ["sh", "-c", services_script()], check=False, timeout=120)
    try:
        return int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


def provision_script(name: str, hosts_file: str, apt_line: str, authorized_key: str) -> str:
    """Idempotent first-boot and every-boot setup inside a host; prints its host key last."""
    def heredoc(path: str, text: str) -> str:
        return f"cat > {path} <<'DUALDC_EOF'\n{text.rstrip()}\nDUALDC_EOF\n"

    return (
        "set -eu\numask 022\nchanged=0\n"
        "if [ ! -f /etc/dualdc-lab/host ]; then\n"
        "  mkdir -p /etc/dualdc-lab\n"
        + heredoc("/etc/hostname", name)
        + heredoc("/etc/hosts", hosts_file)
        + heredoc("/etc/apt/sources.list", apt_line)
        + "  rm -f /etc/machine-id\n"
        "  od -An -N16 -tx1 /dev/urandom | tr -d ' \\n' > /etc/machine-id; echo >> /etc/machine-id\n"
        + heredoc("/etc/dualdc-lab/host", f"{name}\n")
        + "  changed=1\nfi\n"
        "if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then\n"
        "  rm -f /etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key.pub\n"
        "  ssh-keygen -q -t ed25519 -N '' -C root@" + name + " -f /etc/ssh/ssh_host_ed25519_key\n"
        "  changed=1\nfi\n"
        "if [ ! -f /etc/ssh/sshd_config.d/00-dualdc-lab.conf ]; then\n"
        + heredoc("/etc/ssh/sshd_config.d/00-dualdc-lab.conf",
                  "# dualdc lab: this host's own key, generated at its first boot\n"
                  "HostKey /etc/ssh/ssh_host_ed25519_key")
        + "  changed=1\nfi\n"
        "mkdir -p -m 700 /root/.ssh\n"
        "touch /root/.ssh/authorized_keys\nchmod 600 /root/.ssh/authorized_keys\n"
        f"if ! grep -qxF '{authorized_key}' /root/.ssh/authorized_keys; then\n"
        f"  echo '{authorized_key}' >> /root/.ssh/authorized_keys\n  changed=1\nfi\n"
        'echo "changed=$changed"\n'
        "cat /etc/ssh/ssh_host_ed25519_key.pub\n"
    )


def provision(init: Proc, root: Path, name: str, *, hosts_file: str, apt_line: str,
              authorized_key: str) -> tuple[bool, str]:
    """Run :func:`provision_script` in a host; returns (changed, host public key line)."""
    out = run_in(init, root, name, ["/bin/sh", "-s"],
                 input=provision_script(name, hosts_file, apt_line, authorized_key)).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[-2].startswith("changed="):
        raise LabError(f"host {name}: unexpected provisioning output: {out[-300:]!r}")
    return lines[-2] == "changed=1", lines[-1].strip()
