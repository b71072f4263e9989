"""``lab.verify``: the reachability matrix, with real connections between lab hosts.

What is probed (:func:`plan_probes`, pure and deterministic):

- **declared**: every connection of :func:`dualdc.flows.connections` — from a host in
  the source (a host of the segment, the named host, or the site's edge for the
  internet) to a host the destination lands on (:func:`dualdc.flows.inbound_to_host`),
  on every port of the flow. Expected: open.
- **forbidden**: DMZ to internal; one bank's internal network to the other's; the AI zone's
  paths (:meth:`Planner.ai_zone`: every host of a service holding personal data to every AI
  host, the AI zone back into internal outside its publishing flows, one bank's AI segment to
  the other's); every
  database host of one bank to every address of every database host of another bank, at
  both sites, on every TCP port the model declares anywhere (and the fallback ports), from
  the source's address in the destination's zone (bank-db); anything
  to a management address from outside the management segment (only the bastion, inside
  it, may SSH); the controller to a non-management address; and a deterministic sample
  of other segment pairs. Each on a port the destination really serves to someone (so
  the only reason to fail is the firewall), never on a port a flow allows. Expected:
  blocked.

How (:func:`run`): a listener (:mod:`dualdc.lab.probe`) starts *inside* each
destination host — all its namespaces, its own Python — bound to the lab addresses to
probe, then each source host runs its connections, bound to its source address, so the
packets take the path the model gives them (through the router when the segments
differ, under the hosts' own firewalls too). A port already served on the host (sshd on
22) is probed as it is. Each connection has a time limit; listeners stop when verify
ends or at their deadline.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import select
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from dualdc.flows import Connection, connections, inbound_to_host, service_segment
from dualdc.lab import hosts, probe, system
from dualdc.lab.errors import LabError
from dualdc.lab.plan import HostPlan, LabPlan
from dualdc.model import WORKER_ROLES, DataClass, HostRole, Protocol, Segment, Topology, zone_traits

CONNECT_TIMEOUT = 2.0
#: Seconds the second try of a declared flow that timed out waits.
RETRY_TIMEOUT = 6.0
LISTEN_DEADLINE = 60.0
SAMPLE_SIZE = 16
SAMPLE_SEED = "dualdc-lab-verify"
FALLBACK_PORTS = (22, 443, 5432, 8443, 9000)

Place = tuple[str, str]
"""Where a probe end runs: ("host", name), ("edge", site) or ("controller", site)."""


@dataclass(frozen=True)
class Probe:
    id: str
    kind: str
    """``declared`` (expected open) or ``forbidden`` (expected blocked)."""
    category: str
    reason: str
    source: Place
    src: str
    destination: Place
    dst: str
    proto: str
    port: int

    @property
    def expect_open(self) -> bool:
        return self.kind == "declared"

    def label(self, place: Place) -> str:
        kind, name = place
        return name if kind == "host" else f"{kind}:{name}"


@dataclass
class Result:
    probe: Probe
    result: str
    ok: bool
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self.probe)
        data["source"] = self.probe.label(self.probe.source)
        data["destination"] = self.probe.label(self.probe.destination)
        data.update(result=self.result, ok=self.ok, expected="open" if self.probe.expect_open else "blocked",
                    note=self.note)
        return data


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    faults: dict[str, list[str]] = field(default_factory=dict)

    @property
    def unexpected(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": {"probes": len(self.results), "unexpected": len(self.unexpected),
                        "declared": sum(r.probe.kind == "declared" for r in self.results),
                        "forbidden": sum(r.probe.kind == "forbidden" for r in self.results),
                        "seconds": round(self.seconds, 2)},
            "results": [r.to_json() for r in self.results],
            "skipped": self.skipped,
            "faults": self.faults,
        }


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Address:
    place: Place
    address: ipaddress.IPv4Address
    segment: str | None


def _allowed(conns: list[Connection], src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, proto: str,
             port: int) -> list[str]:
    """Flows that allow this exact packet (the oracle for forbidden probes)."""
    return sorted({c.flow.name for c in conns
                   if c.flow.protocol.value == proto and (not c.ports or port in c.ports)
                   and any(src in n for n in c.source.networks)
                   and any(dst in n for n in c.destination.networks)})


class Planner:
    def __init__(self, topology: Topology, plan: LabPlan) -> None:
        self.topology = topology
        self.plan = plan
        self.conns = connections(topology)
        self.probes: dict[tuple[Any, ...], Probe] = {}
        self.skipped: list[str] = []
        self.seg_hosts: dict[str, list[HostPlan]] = {}
        for h in sorted(plan.hosts.values(), key=lambda h: h.name):
            for n in h.nics:
                self.seg_hosts.setdefault(n.segment, []).append(h)

    def addr(self, host: HostPlan, segment: str) -> Address:
        nic = next(n for n in host.nics if n.segment == segment)
        return Address(("host", host.name), nic.address, segment)

    def add(self, kind: str, category: str, reason: str, src: Address, dst: Address, *, proto: str,
            port: int) -> None:
        if src.place == dst.place:
            return
        key = (kind, src.place, str(src.address), dst.place, str(dst.address), proto, port)
        if key in self.probes:
            return
        pid = f"p{len(self.probes):04d}"
        self.probes[key] = Probe(pid, kind, category, reason, src.place, str(src.address), dst.place,
                                 str(dst.address), proto, port)

    # -- declared

    def destinations(self, conn: Connection) -> list[Address]:
        dst = conn.destination
        if dst.segment is None:  # an institution or the internet: the edge of the source's site
            site = conn.source.site
            sites = [site] if site else list(self.plan.edges)
            found = []
            for s in sites:
                edge = self.plan.edges[s]
                for inst, address, net in edge.institution_addresses:
                    if any(net.overlaps(n) for n in dst.networks) and dst.node == f"institution:{inst}":
                        found.append(Address(("edge", s), address, None))
                if dst.node == "internet":
                    found.append(Address(("edge", s), edge.internet_address, None))
            return found[:1]
        candidates = [h for h in self.seg_hosts.get(dst.segment, [])
                      if self._stands_for(h, dst.segment, dst.networks)]
        if dst.host:
            candidates = [h for h in candidates if h.name == dst.host]
        landed = [h for h in candidates
                  if conn in inbound_to_host(self.topology, self.topology.host(h.name))]
        chosen = (landed or candidates)[:1]
        return [self.addr(h, dst.segment) for h in chosen]

    def sources(self, conn: Connection, dst: Address) -> list[Address]:
        src = conn.source
        if src.segment is None:  # the internet or an institution: the edge of the destination's site
            site = conn.destination.site
            if site is None:
                return []
            edge = self.plan.edges[site]
            if src.node == "internet":
                return [Address(("edge", site), edge.internet_address, None)]
            for inst, address, _net in edge.institution_addresses:
                if src.node == f"institution:{inst}":
                    return [Address(("edge", site), address, None)]
            return []
        candidates = [h for h in self.seg_hosts.get(src.segment, [])
                      if ("host", h.name) != dst.place and self._stands_for(h, src.segment, src.networks)]
        if src.host:
            candidates = [h for h in candidates if h.name == src.host]
        # Prefer a source that is not itself in the destination's segment (the path then
        # crosses the router, as it does for every host of the segment without that leg).
        candidates.sort(key=lambda h: (dst.segment is not None and dst.segment != src.segment
                                       and any(n.segment == dst.segment for n in h.nics), h.name))
        return [self.addr(h, src.segment) for h in candidates[:1]]

    @staticmethod
    def _stands_for(host: HostPlan, segment: str, networks: tuple[ipaddress.IPv4Network, ...]) -> bool:
        """Whether the host's address in the segment is one of the end's (exact) addresses."""
        address = next(n.address for n in host.nics if n.segment == segment)
        return any(address in n for n in networks)

    def declared(self) -> None:
        for conn in self.conns:
            label = f"{conn.source.node} -> {conn.destination.node}"
            dsts = self.destinations(conn)
            if not dsts:
                self.skipped.append(f"flow {conn.flow.name}: no lab host or edge stands for "
                                    f"{conn.destination.node}")
                continue
            srcs = self.sources(conn, dsts[0])
            if not srcs:
                self.skipped.append(f"flow {conn.flow.name}: no lab host stands for {conn.source.node} "
                                    f"({label})")
                continue
            ports = list(conn.ports) or [40000]
            for port in ports:
                self.add("declared", "flow", f"flow {conn.flow.name}", srcs[0], dsts[0],
                         proto=conn.flow.protocol.value, port=port)

    # -- forbidden

    def served_ports(self, dst: ipaddress.IPv4Address) -> list[int]:
        """Ports some flow lets someone reach on this address (the destination "serves" them)."""
        ports = {p for c in self.conns if c.flow.protocol is Protocol.TCP
                 and any(dst in n for n in c.destination.networks) for p in c.ports}
        return sorted(ports)

    def forbid(self, category: str, reason: str, src: Address, dst: Address,
               ports: Iterable[int] = ()) -> None:
        candidates = [*ports, *self.served_ports(dst.address), *FALLBACK_PORTS]
        for port in dict.fromkeys(candidates):
            if not _allowed(self.conns, src.address, dst.address, "tcp", port):
                self.add("forbidden", category, reason, src, dst, proto="tcp", port=port)
                return

    def pick(self, segment: str, avoid: str | None = None) -> Address | None:
        hosts_in = self.seg_hosts.get(segment, [])
        ordered = sorted(hosts_in, key=lambda h: (any(n.segment == avoid for n in h.nics), h.name))
        return self.addr(ordered[0], segment) if ordered else None

    def pair(self, category: str, src_seg: str, dst_seg: str, ports: Iterable[int] = ()) -> None:
        dst = self.pick(dst_seg, avoid=src_seg)
        src = self.pick(src_seg, avoid=dst_seg)
        if src is None or dst is None or src.place == dst.place:
            return
        self.forbid(category, f"{src_seg} -> {dst_seg}", src, dst, ports)

    def forbidden(self) -> None:
        # what is forbidden follows the zones' traits (dualdc.model.ZONE_TRAITS): exposed →
        # protected, one bank's protected segments → another's, and SSH into an admin zone
        segs = self.topology.segments
        exposed = [s for s in segs if zone_traits(s.zone).exposed]
        protected = [s for s in segs if zone_traits(s.zone).protected]
        admin = [s for s in segs if zone_traits(s.zone).admin]
        for dmz in exposed:
            for internal in protected:
                self.pair("dmz-to-internal", dmz.name, internal.name)
        banks = [t.name for t in self.topology.tenants if t.kind.value == "bank"]
        for a in protected:
            for b in protected:
                if a.tenant in banks and b.tenant in banks and a.tenant != b.tenant:
                    self.pair("bank-to-bank", a.name, b.name)
        self.bank_databases(banks)
        analytics = [s for s in segs if zone_traits(s.zone).analytics]
        self.ai_zone(analytics, protected, banks)
        for mgmt in admin:
            for other in segs:
                if not zone_traits(other.zone).admin:
                    self.pair("to-mgmt", other.name, mgmt.name, ports=(22,))
            for other in admin:  # the other site's bastion (or any host there)
                if other.name != mgmt.name:
                    self.pair("to-mgmt", other.name, mgmt.name, ports=(22,))
        for site, router in self.plan.routers.items():
            for seg in self.topology.segments_at(site):
                if zone_traits(seg.zone).admin:
                    continue
                dst = self.pick(seg.name)
                if dst is not None:
                    src = Address(("controller", site), router.controller_peer, None)
                    self.add("forbidden", "controller", f"controller -> {seg.name} (only mgmt SSH)", src, dst,
                             proto="tcp", port=22)
                    break
        pairs = [(a.name, b.name) for a in segs for b in segs if a.name != b.name]
        rng = random.Random(SAMPLE_SEED)  # noqa: S311 - a reproducible sample, not a secret
        for src_name, dst_name in rng.sample(pairs, min(SAMPLE_SIZE, len(pairs))):
            self.pair("sample", src_name, dst_name)

    def bank_databases(self, banks: list[str]) -> None:
        """One bank's database hosts never reach another bank's, on any address or port."""
        ports = sorted({p for c in self.conns if c.flow.protocol is Protocol.TCP for p in c.ports}
                       | set(FALLBACK_PORTS))
        dbs = [h for h in self.topology.hosts if h.role is HostRole.DB and h.tenant in banks
               and h.name in self.plan.hosts]
        zone_of = {s.name: s.zone for s in self.topology.segments}
        for a in dbs:
            for b in dbs:
                if a.tenant == b.tenant:
                    continue
                src_host, dst_host = self.plan.hosts[a.name], self.plan.hosts[b.name]
                for nic in dst_host.nics:
                    if any(n.segment == nic.segment for n in src_host.nics):
                        # No router stands between two hosts of one segment (the shared mgmt
                        # segment): only their own firewalls part them, which a lab without a
                        # converge lacks; the roles' lab test checks those firewalls.
                        self.skipped.append(f"{a.name} -> {b.name} in {nic.segment}: same segment, "
                                            "separated by the hosts' own firewalls only")
                        continue
                    same_zone = [n for n in src_host.nics if zone_of[n.segment] is zone_of[nic.segment]]
                    src = self.addr(src_host, (same_zone or src_host.nics)[0].segment)
                    dst = self.addr(dst_host, nic.segment)
                    reason = f"{a.name} ({a.tenant}) -> {b.name} ({b.tenant})"
                    for port in ports:
                        if not _allowed(self.conns, src.address, dst.address, "tcp", port):
                            self.add("forbidden", "bank-db", reason, src, dst, proto="tcp", port=port)

    def ai_zone(self, ai: list[Segment], internal: list[Segment], banks: list[str]) -> None:
        """The AI zone (AI 분석망): what AI-01, AI-02 and AI-04 promise, with real connections.

        - ``personal-to-ai``: every lab host standing for a service that holds personal data
          (its declared hosts, database hosts and cluster nodes; not a pseudonymisation
          service), from its address in the service's segment, to every AI host's AI address,
          on every port the AI host serves and on 22, where no flow allows it. A pseudonymiser
          sharing its nodes with such a service (pods of one cluster) shares their addresses
          too: the flows allow those addresses, so only the pods' NetworkPolicies tell them
          apart, and those ports are not probed.
        - ``ai-to-internal``: from each AI segment to each internal segment, on a port the
          destination serves that no flow (the publishing flows included) allows.
        - ``ai-bank-to-bank``: one bank's AI segment to another bank's.
        """
        ai_names = {s.name for s in ai}
        ai_hosts = [(h, n) for s in ai for h in self.seg_hosts.get(s.name, []) for n in h.nics
                    if n.segment == s.name]
        for svc in self.topology.services:
            if (svc.data_held is not DataClass.PERSONAL or svc.pseudonymiser
                    or zone_traits(svc.zone).analytics):
                continue
            for site in self.topology.service_sites(svc):
                segment = service_segment(self.topology, svc.name, site)
                if segment is None or segment in ai_names:
                    continue
                for src_host in self.seg_hosts.get(segment, []):
                    if not self._serves(src_host, svc.name, segment):
                        continue
                    src = self.addr(src_host, segment)
                    for dst_host, nic in ai_hosts:
                        dst = Address(("host", dst_host.name), nic.address, nic.segment)
                        for port in sorted({22, *self.served_ports(nic.address)}):
                            if not _allowed(self.conns, src.address, dst.address, "tcp", port):
                                self.add("forbidden", "personal-to-ai",
                                         f"{svc.name} (personal data) on {src_host.name} -> {dst_host.name}",
                                         src, dst, proto="tcp", port=port)
        for a in ai:
            for b in internal:
                self.pair("ai-to-internal", a.name, b.name)
            for b in ai:
                if a.tenant in banks and b.tenant in banks and a.tenant != b.tenant:
                    self.pair("ai-bank-to-bank", a.name, b.name)

    def _serves(self, host: HostPlan, service: str, segment: str) -> bool:
        """Whether a lab host stands for a service in a segment (a declared host or a node of it)."""
        svc = self.topology.service(service)
        model = self.topology.host(host.name)
        if host.name in svc.hosts:
            return True
        if svc.database is not None and host.name in {h for _, h, _ in svc.database.placements()}:
            return True
        return model.cluster in svc.clusters and model.role in WORKER_ROLES and any(
            n.segment == segment for n in host.nics)

    def controller(self) -> None:
        for site, router in self.plan.routers.items():
            for seg in self.topology.segments_at(site):
                if zone_traits(seg.zone).admin:
                    dst = self.pick(seg.name)
                    if dst is not None:
                        src = Address(("controller", site), router.controller_peer, None)
                        self.add("declared", "controller", f"controller SSH to {seg.name}", src, dst,
                                 proto="tcp", port=22)


def plan_probes(topology: Topology, plan: LabPlan) -> tuple[list[Probe], list[str]]:
    """Every probe of the matrix (declared first), and what could not be probed, with why."""
    planner = Planner(topology, plan)
    planner.declared()
    planner.controller()
    planner.forbidden()
    return list(planner.probes.values()), planner.skipped


# --------------------------------------------------------------------------- running


class Runner:
    """Runs the probe program in lab places and collects its JSON lines."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.token = os.urandom(8).hex()

    def argv(self, place: Place) -> list[str] | None:
        kind, name = place
        script = ["-c", probe.SOURCE]
        if kind == "host":
            try:
                init = self.lab.running_init(name)
            except LabError:
                return None
            root = self.lab.host_paths(name).root
            if not hosts.overlay_mounted(init):
                return None
            return hosts.nsenter_argv(init, root, ["python3", *script])
        if kind == "edge":
            ns = self.lab.plan.edges[name].netns
            return system.in_netns(ns, [sys.executable, *script]) if system.netns_exists(ns) else None
        return [sys.executable, *script]

    def start_listener(self, place: Place, binds: list[tuple[str, str, int]]) -> tuple[Any, dict[Any, str]]:
        argv = self.argv(place)
        if argv is None:
            return None, {}
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"mode": "listen", "token": self.token, "deadline": LISTEN_DEADLINE,
                                     "binds": [list(b) for b in binds]}) + "\n")
        proc.stdin.flush()
        ready = _readline(proc, 15.0)
        if not ready:
            _stop(proc)
            return None, {}
        status = {(a, p, int(n)): s for a, p, n, s in json.loads(ready)["ready"]}
        return proc, status

    def run_clients(
        self, place: Place, probes: list[dict[str, Any]], timeout: float = CONNECT_TIMEOUT
    ) -> dict[str, str]:
        argv = self.argv(place)
        if argv is None:
            return {}
        job = json.dumps({"mode": "connect", "timeout": timeout, "probes": probes}) + "\n"
        try:
            proc = subprocess.run(argv, input=job, capture_output=True, text=True,
                                  timeout=timeout * (len(probes) // 64 + 2) + 20, check=False)
        except subprocess.TimeoutExpired:
            return {}
        found = {}
        for line in proc.stdout.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            found[item["id"]] = item["result"]
        return found


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    rlist, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if rlist else ""


def _stop(proc: subprocess.Popen[str]) -> None:
    """End a listener: close its stdin (it exits), else kill it by its pid."""
    try:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, OSError):
        proc.kill()
        proc.wait(timeout=5)
    finally:
        if proc.stdout:
            proc.stdout.close()


def run(lab: Any) -> Report:
    """Probe the whole matrix against the running lab."""
    started = time.monotonic()
    lab.refresh()
    probes, skipped = plan_probes(lab.topology, lab.plan)
    report = Report(skipped=list(skipped),
                    faults={k: list(v) for k, v in lab.state.faults.items() if v})
    runner = Runner(lab)
    binds: dict[Place, set[tuple[str, str, int]]] = {}
    for p in probes:
        binds.setdefault(p.destination, set()).add((p.dst, p.proto, p.port))
    listeners: dict[Place, Any] = {}
    bind_status: dict[tuple[Place, str, str, int], str] = {}
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            started_listeners = dict(zip(
                binds, pool.map(lambda pl: runner.start_listener(pl, sorted(binds[pl])), binds), strict=True))
        for place, (proc, status) in started_listeners.items():
            if proc is not None:
                listeners[place] = proc
            for (a, p, n), s in status.items():
                bind_status[(place, a, p, n)] = s
        jobs: dict[Place, list[dict[str, Any]]] = {}
        for p in probes:
            st = bind_status.get((p.destination, p.dst, p.proto, p.port))
            if st not in ("bound", "in-use"):
                continue
            token = runner.token if st == "bound" else ""
            jobs.setdefault(p.source, []).append({"id": p.id, "src": p.src, "dst": p.dst, "proto": p.proto,
                                                  "port": p.port, "token": token})
        with ThreadPoolExecutor(max_workers=32) as pool:
            outcomes: dict[str, str] = {}
            for found in pool.map(lambda item: runner.run_clients(item[0], item[1]), jobs.items()):
                outcomes.update(found)
            # A declared flow that timed out is tried once more with a longer wait: on a busy
            # machine a lab host can be slow to answer, and only an answer proves the flow open.
            # (A forbidden pair that timed out is already the expected result.)
            slow = {p.id for p in probes if p.expect_open and outcomes.get(p.id) == "timeout"}
            again = {place: [j for j in js if j["id"] in slow] for place, js in jobs.items()}
            again = {place: js for place, js in again.items() if js}
            for found in pool.map(lambda item: runner.run_clients(item[0], item[1], RETRY_TIMEOUT),
                                  again.items()):
                outcomes.update(found)
    finally:
        for proc in listeners.values():
            _stop(proc)
    for p in probes:
        st = bind_status.get((p.destination, p.dst, p.proto, p.port))
        if p.destination not in listeners and st is None:
            result, note = "not run", f"destination {p.label(p.destination)} is not running"
        elif st not in ("bound", "in-use"):
            result, note = "not run", f"no listener on {p.dst}:{p.port}/{p.proto} ({st})"
        elif p.id not in outcomes:
            result, note = "not run", f"source {p.label(p.source)} is not running"
        else:
            result, note = outcomes[p.id], "existing listener" if st == "in-use" else ""
        ok = (result == "open") if p.expect_open else result in ("timeout", "refused", "unreachable")
        report.results.append(Result(p, result, ok, note))
    report.seconds = time.monotonic() - started
    return report
