"""Bring the lab up, take it down, report its status, inject faults.

:class:`Lab` ties the pieces together for one topology. Every public operation is
idempotent and resumable: ``up`` converges whatever exists (nothing, a half-built lab, a
lab with faults) to the full lab and reports how many changes it made; ``down`` removes
what the state file says the lab made (and the plan's own names), then checks that
nothing is left. Callers hold :class:`dualdc.lab.lock.LabLock` around ``up``, ``down``
and ``fault`` (the Invoke tasks and the pytest fixture do).
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dualdc.base.files import write_atomic
from dualdc.base.paths import lab_connection
from dualdc.lab import firewall, hosts, image, network, pki, ssh, system
from dualdc.lab.config import LabConfig
from dualdc.lab.errors import LabError
from dualdc.lab.plan import FABRIC_NS, HostPlan, LabPlan, build
from dualdc.lab.state import LabState
from dualdc.lab.system import Proc
from dualdc.loader import TopologyError, load_environment, load_topology
from dualdc.model import Topology

WORKERS = 6


class Progress:
    """Progress callbacks; the Invoke tasks show them with rich, tests ignore them."""

    def phase(self, text: str, total: int | None = None) -> None:
        """A new phase starts (with ``total`` steps, if counted)."""

    def advance(self, text: str = "") -> None:
        """One step of the current phase is done."""

    def note(self, text: str) -> None:
        """A line worth keeping in the output."""


@dataclass
class UpReport:
    changes: dict[str, int] = field(default_factory=dict)
    base_built: bool = False
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.changes.values())

    def add(self, key: str, n: int) -> None:
        if n:
            self.changes[key] = self.changes.get(key, 0) + n


@dataclass
class HostStatus:
    name: str
    site: str
    address: str
    running: bool
    sshd: bool
    reachable: bool
    fault: str | None
    pid: int | None


@dataclass
class RouterStatus:
    site: str
    present: bool
    forwarding: bool
    firewall: bool
    links: dict[str, str]
    fault: str | None


@dataclass
class LabStatus:
    env: str
    hosts: list[HostStatus]
    routers: list[RouterStatus]
    faults: dict[str, list[str]]

    @property
    def all_up(self) -> bool:
        return all(h.running and h.reachable for h in self.hosts) and all(
            r.present and r.firewall and all(v == "up" for v in r.links.values()) for r in self.routers)

    @property
    def any_up(self) -> bool:
        return any(h.running for h in self.hosts) or any(r.present for r in self.routers)

    def to_json(self) -> dict[str, Any]:
        return {"env": self.env, "all_up": self.all_up, "hosts": [asdict(h) for h in self.hosts],
                "routers": [asdict(r) for r in self.routers], "faults": self.faults}


@dataclass
class DownReport:
    removed: dict[str, int] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)


def ssh_banner(address: str, timeout: float = 2.0) -> bool:
    """Whether an SSH server answers on ``address``:22 from the controller (reads its banner)."""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


class Lab:
    """The lab twin of one topology on this machine."""

    def __init__(self, topology: Topology, cfg: LabConfig | None = None,
                 progress: Progress | None = None) -> None:
        env = topology.environment.name
        if not topology.environment.lab:
            raise LabError(f"environment {env!r} is not a lab environment (environment.lab is false)")
        self.topology = topology
        self.cfg = cfg or LabConfig.load(env, topology.environment.mirrors.apt_suite)
        self.plan: LabPlan = build(topology, self.cfg.infra, self.cfg.internet)
        self.progress = progress or Progress()
        self.state = LabState(self.cfg.state_file)

    # ------------------------------------------------------------------ helpers

    def refresh(self) -> None:
        """Re-read the state file (another process may have changed the lab since)."""
        self.state = LabState(self.cfg.state_file)

    def _init(self, name: str) -> Proc | None:
        return Proc.from_json(self.state.host(name).get("init"))

    def running_init(self, name: str) -> Proc:
        """The init of a running host, or :class:`LabError`."""
        if name not in self.plan.hosts:
            raise LabError(f"no host {name!r} in environment {self.plan.env!r}")
        init = self._init(name)
        if init is None or not init.alive():
            self.refresh()  # another process may have restarted it
            init = self._init(name)
        if init is None or not init.alive():
            raise LabError(f"host {name} is not running (run 'invoke lab.up')")
        return init

    def exec_in_host(self, name: str, argv: list[str], *, input: str | None = None, timeout: float = 120,
                     check: bool = True, env: dict[str, str] | None = None) -> Any:
        """Run ``argv`` inside a host (its namespaces, chrooted into its root); a CompletedProcess."""
        init = self.running_init(name)
        return hosts.run_in(init, self.host_paths(name).root, name, argv, input=input, timeout=timeout,
                            check=check, env=env)

    def host_paths(self, name: str) -> hosts.HostPaths:
        return hosts.HostPaths(self.cfg.host_dir(name))

    def _hosts_file(self) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for h in sorted(self.plan.hosts.values(), key=lambda h: h.name):
            lines.append(f"{h.mgmt_address}\t{h.name}")
        return "\n".join(lines) + "\n"

    def _apt_line(self) -> str:
        mirrors = self.topology.environment.mirrors
        return (f"# dualdc lab: the environment's internal mirror (mirrors.apt); packages the roles need\n"
                f"# are baked into the lab's base image, so nothing is fetched at converge time.\n"
                f"deb [trusted=yes] {mirrors.apt} {mirrors.apt_suite} main\n")

    def _mirror_path(self) -> str | None:
        url = self.topology.environment.mirrors.apt
        return url[len("file://"):] if url.startswith("file://") else None

    # ------------------------------------------------------------------ up

    def up(self) -> UpReport:
        started = time.monotonic()
        self.refresh()
        system.require_environment()
        report = UpReport()
        plan = self.plan
        network.check_root_routes(plan)
        self.progress.phase("base image")
        rootfs, built = image.ensure_base(self.cfg, self.progress.note)
        report.base_built = built
        base_key = image.image_key(self.cfg.suite, self.cfg.packages)
        self.state.data["env"] = plan.env
        self.state.data["base"] = {"key": base_key, "rootfs": str(rootfs)}
        # Write-ahead: the names about to be made are recorded before they exist.
        self.state.data["devices"] = plan.names()  # the short kernel names → what they stand for
        self.state.remember("namespaces", plan.namespaces())
        self.state.remember("root_devices", plan.root_devices())

        self.progress.phase("network", total=5)
        report.add("namespaces", network.ensure_netns(plan.namespaces()))
        routers = {r.netns for r in plan.routers.values()}
        for ns in plan.namespaces():
            system.sysctl(ns, network.ROUTER_SYSCTLS if ns in routers else network.HOST_SYSCTLS)
        self.progress.advance("namespaces")
        report.add("links", network.ensure_fabric(plan, plan.hosts.values(), plan.routers.values()))
        self.progress.advance("bridges")
        report.add("links", network.ensure_wiring(plan))
        for router in plan.routers.values():
            report.add("routes", network.ensure_router_network(plan, router))
            report.add("routes", network.ensure_edge_network(plan.edges[router.site], router))
        self.progress.advance("routers")
        report.add("routes", network.ensure_controller(plan))
        self.progress.advance("controller")
        for router in plan.routers.values():
            report.add("firewall", self.apply_firewall(router.site))
        self.progress.advance("firewall")

        report.add("ssh keys", ssh.ensure_keypair(self.cfg.private_key, f"dualdc-lab-{plan.env}"))
        report.add("pki", pki.ensure_lab_pki(self.topology))
        public = ssh.public_key(self.cfg.private_key)
        self.progress.phase("hosts", total=len(plan.hosts))
        keys: dict[str, str] = {}
        errors: list[str] = []

        def one(host: HostPlan) -> None:
            try:
                changed, key = self.ensure_host(host, rootfs, base_key, public)
                keys[host.name] = key
                for kind, n in changed.items():
                    report.add(kind, n)
            except LabError as exc:
                errors.append(str(exc))
            self.progress.advance(host.name)

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            list(pool.map(one, sorted(plan.hosts.values(), key=lambda h: h.name)))
        hosts.reap()
        if errors:
            raise LabError("some hosts did not come up (run lab.up again to finish, lab.down to remove):\n  "
                           + "\n  ".join(errors[:10]))
        entries = {name: ([name, *(str(n.address) for n in plan.hosts[name].nics)], key)
                   for name, key in keys.items()}
        report.add("known_hosts", ssh.write_if_changed(self.cfg.known_hosts, ssh.known_hosts_text(entries)))
        ssh.write_if_changed(self.cfg.ssh / "config", ssh.ssh_config_text(
            self.cfg.private_key, self.cfg.known_hosts,
            {h.name: str(h.mgmt_address) for h in plan.hosts.values()}, self.topology.environment.ssh_user))
        self.publish_connection()
        for kind in ("hosts", "links", "sites"):
            for name in list(self.state.faults.get(kind, [])):
                self.state.set_fault(kind, name, False)
        self.state.save()
        report.seconds = time.monotonic() - started
        return report

    def publish_connection(self) -> None:
        """Publish what the inventory needs to reach the hosts (:func:`publish_connection`)."""
        publish_connection(self.plan, self.cfg)

    def apply_firewall(self, site: str) -> int:
        """Load the site router's ruleset unless exactly it is loaded already. 1 if loaded."""
        router = self.plan.routers[site]
        text = firewall.ruleset(self.topology, router)
        want = hashlib.sha256(text.encode()).hexdigest()
        recorded = self.state.data.setdefault("firewall", {}).get(site, {})
        current = self.firewall_fingerprint(site)
        if recorded.get("ruleset") == want and current is not None and recorded.get("loaded") == current:
            return 0
        system.run(system.in_netns(router.netns, ["nft", "-f", "-"]), input=text)
        self.state.data["firewall"][site] = {"ruleset": want, "loaded": self.firewall_fingerprint(site)}
        self.state.save()
        return 1

    def firewall_fingerprint(self, site: str) -> str | None:
        """A hash of the router's loaded table (without counters), or None if not loaded."""
        router = self.plan.routers[site]
        if not system.netns_exists(router.netns):
            return None
        argv = ["nft", "-s", "list", "table", "inet", firewall.TABLE]
        proc = system.run(system.in_netns(router.netns, argv), check=False)
        if proc.returncode != 0:
            return None
        return hashlib.sha256(proc.stdout.encode()).hexdigest()

    def ensure_host(self, host: HostPlan, rootfs: Path, base_key: str,
                    public_key: str) -> tuple[dict[str, int], str]:
        """One host up: network, init, files, sshd. Returns (changes by kind, host key line)."""
        changes: dict[str, int] = {}
        paths = self.host_paths(host.name)
        record = self.state.host(host.name)
        init = Proc.from_json(record.get("init"))
        running = init is not None and init.alive()
        moved = init is not None and system.ns_inode_of(init.pid, "net") != system.netns_inode(host.netns)
        if running and moved:
            # Its namespace was deleted and made again under it: restart the host in the new one.
            hosts.stop_init(host.name, Proc.from_json(record.get("wrapper")), init)
            running = False
        if not running and record.get("base") not in (None, base_key) and paths.upper.exists():
            # The overlay was made on another base image: start this host fresh.
            self.progress.note(f"{host.name}: base image changed, starting from a fresh root")
            image.remove_tree(paths.upper)
            image.remove_tree(paths.work)
        changes["host network"] = network.ensure_host_network(host)
        if not running:
            wrapper, init = hosts.start_init(host.name, host.netns, rootfs, paths, self._mirror_path())
            self.state.set_host(host.name, wrapper=wrapper.to_json(), init=init.to_json(), base=base_key,
                                netns=host.netns)
            changes["hosts started"] = 1
        assert init is not None
        changed, key = hosts.provision(init, paths.root, host.name, hosts_file=self._hosts_file(),
                                       apt_line=self._apt_line(), authorized_key=public_key)
        changes["host files"] = int(changed)
        changes["sshd started"] = int(hosts.start_sshd(init, paths.root, host.name))
        if changes.get("hosts started"):
            changes["services started"] = hosts.start_services(init, paths.root, host.name)
        return changes, key

    # ------------------------------------------------------------------ down

    def down(self, purge: bool = False) -> DownReport:
        system.require_environment()
        self.refresh()
        report = DownReport()
        plan = self.plan
        names = list(dict.fromkeys([*self.state.data.get("namespaces", []), *plan.namespaces()]))
        self.progress.phase("hosts", total=len(self.state.data.get("hosts", {})))
        stopped = 0
        for name, record in sorted(self.state.data.get("hosts", {}).items()):
            init, wrapper = Proc.from_json(record.get("init")), Proc.from_json(record.get("wrapper"))
            stopped += int(hosts.stop_init(name, wrapper, init))
            self.state.set_host(name, init=None, wrapper=None)
            self.progress.advance(name)
        report.removed["hosts stopped"] = stopped
        # Anything else still running inside a lab namespace (probes, shells) ends too.
        inodes = {i for i in (system.netns_inode(n) for n in names) if i is not None}
        stray = [q for q in (Proc.of(p) for p in system.processes_in("net", inodes)) if q is not None]
        for q in stray:
            q.kill(9)
        system.wait_gone(stray, 5)
        report.removed["other processes"] = len(stray)
        self.progress.phase("network")
        devices = list(dict.fromkeys([*self.state.data.get("root_devices", []), *plan.root_devices()]))
        existing = {link["ifname"] for link in system.ip_json(None, "link", "show")}
        gone_devs = [d for d in devices if d in existing]
        system.ip_batch(None, [f"link del {d}" for d in gone_devs])
        report.removed["root devices"] = len(gone_devs)
        self.state.forget("root_devices", devices)
        removed_ns = sum(network.delete_netns(n) for n in names)
        report.removed["namespaces"] = removed_ns
        self.state.forget("namespaces", names)
        self.state.data["firewall"] = {}
        self.state.data["faults"] = {"hosts": [], "links": [], "sites": []}
        self.state.save()
        lab_connection(self.plan.env).unlink(missing_ok=True)  # nothing to connect to any more
        hosts.reap()
        report.leftovers = self.leftovers(names, devices)
        if purge:
            self.progress.phase("purge")
            for name in self.state.data.get("hosts", {}):
                image.remove_tree(self.cfg.host_dir(name))
            image.remove_tree(self.cfg.state / "hosts")
            image.remove_tree(self.cfg.ssh)
            report.removed["unused base images"] = image.prune(self.cfg)
            self.state.data["hosts"] = {}
            self.state.save()
        return report

    def leftovers(self, names: list[str] | None = None, devices: list[str] | None = None) -> list[str]:
        """What of the lab still exists: namespaces, root devices, processes, mounts."""
        names = names if names is not None else self.plan.namespaces()
        devices = devices if devices is not None else self.plan.root_devices()
        found = [f"namespace {n}" for n in names if system.netns_exists(n)]
        links = {link["ifname"] for link in system.ip_json(None, "link", "show")}
        found += [f"device {d}" for d in devices if d in links]
        for name, record in self.state.data.get("hosts", {}).items():
            for key in ("init", "wrapper"):
                proc = Proc.from_json(record.get(key))
                if proc is not None and proc.alive():
                    found.append(f"process {proc.pid} ({name} {key})")
        state = str(self.cfg.state.resolve())
        found += [f"mount {m}" for m, _ in system.mounts() if m.startswith(state + "/")]
        return found

    # ------------------------------------------------------------------ status

    def status(self, probe: bool = True) -> LabStatus:
        self.refresh()
        plan = self.plan
        faults = self.state.faults
        down_sites = set(faults.get("sites", []))
        down_hosts = set(faults.get("hosts", []))

        def host_status(h: HostPlan) -> HostStatus:
            init = self._init(h.name)
            running = init is not None and init.alive()
            sshd = running and init is not None and hosts.sshd_listening(init)
            reachable = probe and system.netns_exists(h.netns) and ssh_banner(str(h.mgmt_address))
            fault = ("site down" if h.site in down_sites else "host down" if h.name in down_hosts else None)
            return HostStatus(h.name, h.site, str(h.mgmt_address), running, sshd, reachable, fault,
                              init.pid if running and init else None)

        with ThreadPoolExecutor(max_workers=12) as pool:
            ordered = sorted(plan.hosts.values(), key=lambda h: (h.site, h.name))
            host_list = list(pool.map(host_status, ordered))
        routers = []
        for r in plan.routers.values():
            present = system.netns_exists(r.netns)
            links: dict[str, str] = {}
            forwarding = False
            loaded = False
            if present:
                snap = network.Snapshot.read(r.netns, routes=False)
                for end in r.links:
                    info = snap.links.get(end.dev, {})
                    flags = info.get("flags", [])
                    links[end.link] = ("up" if "UP" in flags and "LOWER_UP" in flags
                                       else "down" if info else "missing")
                forwarding = system.read_sysctl(r.netns, "net.ipv4.ip_forward") == "1"
                loaded = self.firewall_fingerprint(r.site) is not None
            else:
                links = {end.link: "missing" for end in r.links}
            routers.append(RouterStatus(r.site, present, forwarding, loaded, links,
                                        "site down" if r.site in down_sites else None))
        return LabStatus(plan.env, host_list, routers, {k: list(v) for k, v in faults.items()})

    # ------------------------------------------------------------------ faults

    def require_running(self) -> None:
        """Raise unless the lab's fabric and routers exist."""
        self._require_running()

    def _require_running(self) -> None:
        self.refresh()
        needed = (FABRIC_NS, *(r.netns for r in self.plan.routers.values()))
        if not all(system.netns_exists(n) for n in needed):
            raise LabError("the lab is not up (run 'invoke lab.up')")

    def host_down(self, name: str) -> None:
        self._require_running()
        host = self._host(name)
        self._stop_host(host)
        self.state.set_fault("hosts", name, True)

    def _stop_host(self, host: HostPlan) -> None:
        record = self.state.host(host.name)
        hosts.stop_init(host.name, Proc.from_json(record.get("wrapper")), Proc.from_json(record.get("init")))
        self.state.set_host(host.name, init=None, wrapper=None)
        network.set_host_links(host, up=False)

    def host_up(self, name: str) -> None:
        self._require_running()
        host = self._host(name)
        rootfs = image.cached_rootfs(self.cfg)
        if rootfs is None:
            raise LabError("the base image is missing from the cache (run 'invoke lab.up')")
        if host.site in self.state.faults.get("sites", []):
            raise LabError(f"site {host.site} is down; bring it up with --site {host.site} --up")
        self.ensure_host(host, rootfs, image.image_key(self.cfg.suite, self.cfg.packages),
                         ssh.public_key(self.cfg.private_key))
        self.state.set_fault("hosts", name, False)

    def link(self, name: str, up: bool) -> None:
        self._require_running()
        if name not in {link.name for link in self.topology.links}:
            known = ", ".join(link.name for link in self.topology.links) or "none"
            raise LabError(f"no inter-site link {name!r} (links: {known})")
        for router in self.plan.routers.values():
            if up and router.site in self.state.faults.get("sites", []):
                continue
            network.set_router_links(router, up, [name])
        self.state.set_fault("links", name, not up)
        self._ensure_routes()

    def _ensure_routes(self) -> None:
        """Put back the routes a device going down took with it, for the links not cut."""
        cut = set(self.state.faults.get("links", []))
        down = set(self.state.faults.get("sites", []))
        for router in self.plan.routers.values():
            if router.site not in down:
                network.ensure_router_network(self.plan, router,
                                              links_up={e.link: e.link not in cut for e in router.links})

    def site(self, name: str, up: bool) -> None:
        self._require_running()
        if name not in self.plan.routers:
            raise LabError(f"no site {name!r} (sites: {', '.join(self.plan.routers)})")
        router = self.plan.routers[name]
        if not up:
            for host in self.plan.host_sites(name):
                self._stop_host(host)
            network.set_router_links(router, False)
            system.ip_batch(None, [f"link set {router.controller_dev} down"])
            self.state.set_fault("sites", name, True)
            return
        cut = set(self.state.faults.get("links", []))
        network.set_router_links(router, True)
        network.set_router_links(router, False, list(cut))
        self.state.set_fault("sites", name, False)
        self._ensure_routes()
        system.ip_batch(None, [f"link set {router.controller_dev} up"])
        network.ensure_controller(self.plan)
        rootfs = image.cached_rootfs(self.cfg)
        if rootfs is None:
            raise LabError("the base image is missing from the cache (run 'invoke lab.up')")
        key = image.image_key(self.cfg.suite, self.cfg.packages)
        public = ssh.public_key(self.cfg.private_key)
        down_hosts = set(self.state.faults.get("hosts", []))
        for host in self.plan.host_sites(name):
            if host.name not in down_hosts:
                self.ensure_host(host, rootfs, key, public)

    def _host(self, name: str) -> HostPlan:
        if name not in self.plan.hosts:
            raise LabError(f"no host {name!r} in environment {self.plan.env!r}")
        return self.plan.hosts[name]


def load_lab(env: str = "lab", topology_path: str | None = None, progress: Progress | None = None) -> Lab:
    """A :class:`Lab` for an environment (raises :class:`LabError` for a bad topology)."""
    try:
        topology = load_topology(Path(topology_path)) if topology_path else load_environment(env)
    except TopologyError as exc:
        raise LabError(f"the topology is invalid:\n{exc}") from None
    return Lab(topology, progress=progress)



def publish_connection(plan: LabPlan, cfg: LabConfig) -> Path:
    """Write what the inventory needs to reach the lab's hosts (:func:`dualdc.base.paths.lab_connection`).

    The controller's networks (its links to the site routers), the SSH key and the known-hosts
    file: the inventory reads them from there and never imports the lab.
    """
    data = {
        "environment": plan.env,
        "controller_networks": [f"{r.controller_peer}/32" for r in plan.routers.values()],
        "private_key": str(cfg.private_key),
        "known_hosts": str(cfg.known_hosts),
    }
    return write_atomic(lab_connection(plan.env), json.dumps(data, indent=2) + "\n")

def exec_in_host(name: str, argv: list[str], *, env: str = "lab", input: str | None = None,
                 timeout: float = 120, check: bool = True,
                 environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside lab host ``name`` of environment ``env`` and return the result.

    The command runs in all the host's namespaces (network, mount, UTS, PID, IPC),
    chrooted into its root, as root, with a clean environment (``PATH``, ``HOME``,
    ``LANG`` plus ``environ``). Raises :class:`LabError` if the host is not running or,
    with ``check``, if the command fails (the message carries its stderr). No lock is
    taken: reading or running things in a host does not change the lab's layout.
    """
    lab = load_lab(env)
    result: subprocess.CompletedProcess[str] = lab.exec_in_host(
        name, argv, input=input, timeout=timeout, check=check, env=environ)
    return result
