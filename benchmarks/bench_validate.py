"""Benchmark: load + validate a synthetic two-site topology of production scale and beyond.

The topology has 10,000 hosts, 2,000 segments and 50,000 flows (plus the clusters and
services they imply), written as YAML into a temporary folder split over several files,
the way an environment is. It is built to pass every rule, so every rule runs its full
course. The timed part is what ``invoke validate`` does: load (parse, merge, validate,
resolve references) and run the policy pack. Printed: wall time per phase, peak RSS of
the process and the peak of Python allocations (tracemalloc, measured in a second run,
because tracing slows Python down several times).

Target on the 2-core reference machine: at most 2 s and 1 GiB.
"""

# The generator's small helpers take the fields of one YAML entry positionally, as written.
# ruff: noqa: PLR0917

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from dualdc.loader import load_topology
from dualdc.policy import run_policy

SITES = (("gwangju", "gj", 0, 35.2255, 126.8436), ("jeonju", "jj", 64, 35.8753, 127.0723))
BANKS = 142  # bank tenants; with 'group' that is 143 tenants
BANK_ZONES = ("mgmt", "internal", "dmz", "external", "replication", "backup", "dev")
GROUP_ZONES = ("mgmt", "internal", "external", "replication", "backup", "dev")
HOSTS = 10_000  # the reference size: BANKS and FLOWS are its counts, scaled for other sizes
MAX_HOSTS = 20_000  # where the address plan ends
WORKERS = 20  # per bank and site
DBS = 12  # per bank and site
FLOWS = 50_000
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchmarkKeyBenchmarkKeyBenchmarkKey0 bench@example"


def _bank(i: int) -> str:
    return f"b{i:03d}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str) -> None:
        self.lines.append(text)

    def save(self, path: Path) -> None:
        path.write_text("\n".join(self.lines) + "\n", encoding="utf-8")


def generate(folder: Path, hosts: int = HOSTS) -> dict[str, int]:
    """Write the synthetic topology into ``folder``; return its entity counts.

    ``hosts`` scales the estate: the number of banks and of flows grow with it (at 10,000
    hosts: 142 banks, 2,000 segments, 50,000 flows), so every kind of entity grows linearly.
    """
    if not 2 * len(SITES) * (8 + 1 + WORKERS + DBS + 2) <= hosts <= MAX_HOSTS:
        # the address plan (one /24 per segment, each cluster's pod /22 in 172.16.0.0-172.27.255.255
        # and service /24 in 172.28.0.0/14: 768 clusters) ends there
        raise ValueError(f"the synthetic topology has between 172 and {MAX_HOSTS} hosts, not {hosts}")
    banks = min(round(BANKS * hosts / HOSTS), (hosts // len(SITES) - 8) // (1 + WORKERS + DBS + 2))
    flows_wanted = FLOWS * hosts // HOSTS
    counts = {"hosts": 0, "segments": 0, "flows": 0, "clusters": 0, "services": 0}
    tenants = [("group", "shared")] + [(_bank(i), "bank") for i in range(banks)]

    env = _Writer()
    env.add("environment:")
    env.add("  name: bench\n  layers: [model]\n  deploy_order: [gwangju, jeonju]")
    env.add("  time_sources: [gj-ntp-01, jj-ntp-01]")
    # internal mirrors (AIR-01: the air gap)
    env.add("  mirrors: {apt: 'http://mirror.bench.jbfg.example/debian',\n"
            "            registry: 'registry.bench.jbfg.example:5000'}")
    env.add("  access: {lockout_attempts: 5, lockout_seconds: 900, idle_timeout_seconds: 600}")
    env.add("  log_retention: {access_log_days: 400, personal_data_log_days: 800}")
    env.add(f"  admins:\n  - name: ops-bench\n    ssh_public_key: {KEY}")
    env.add("sites:")
    for name, _, _, lat, lon in SITES:
        env.add(
            f"- name: {name}\n  city: {name.title()}\n  latitude: {lat}\n  longitude: {lon}\n"
            "  racks: 400\n  power_feeds: 2\n  uplinks: 2\n"
            f"  dr_peer: {'jeonju' if name == 'gwangju' else 'gwangju'}"
        )
    env.add("tenants:")
    for name, kind in tenants:
        env.add(f"- name: {name}\n  kind: {kind}\n  display_name: Tenant {name}")
    env.add("institutions:\n- name: kftc\n  display_name: KFTC\n  cidrs: [203.0.113.0/28]\n  ports: [5001]")
    env.add("links:")
    for i, carrier in enumerate(("carrier-a", "carrier-b")):
        env.add(
            f"- name: dr-link-{i}\n  carrier: {carrier}\n  path: route-{i}\n  bandwidth_gbps: 100\n"
            f"  network: 192.168.255.{4 * i}/30\n  ends:\n"
            f"  - site: gwangju\n    address: 192.168.255.{4 * i + 1}\n"
            f"  - site: jeonju\n    address: 192.168.255.{4 * i + 2}"
        )
    env.save(folder / "environment.yaml")

    # ---- segments: one per (site, tenant, zone); /24 each inside the site's /10
    net = _Writer()
    net.add("segments:")
    seg_net: dict[str, str] = {}
    for site, prefix, base, _, _ in SITES:
        k = 0
        for tenant, _kind in tenants:
            zones = GROUP_ZONES if tenant == "group" else BANK_ZONES
            for zone in zones:
                second, third = base + k // 256, k % 256
                name = f"{prefix}-{tenant}-{zone}"
                seg_net[name] = f"10.{second}.{third}"
                net.add(
                    f"- name: {name}\n  site: {site}\n  tenant: {tenant}\n  zone: {zone}\n"
                    f"  vlan: {k + 2}\n  cidr: 10.{second}.{third}.0/24\n  gateway: 10.{second}.{third}.1"
                )
                k += 1
                counts["segments"] += 1
    net.save(folder / "network.yaml")

    # ---- hosts and clusters
    hw = _Writer()
    hw.add("hosts:")
    next_addr: dict[str, int] = {}

    def address(segment: str) -> str:
        n = next_addr.get(segment, 10)
        next_addr[segment] = n + 1
        return f"{seg_net[segment]}.{n}"

    def host(
        name: str,
        site: str,
        prefix: str,
        tenant: str,
        role: str,
        data: list[str],
        cluster: str | None = None,
        cpu: int = 16,
        mem: int = 64,
    ) -> None:
        mgmt = f"{prefix}-{tenant}-mgmt"
        lines = [
            f"- name: {name}",
            f"  site: {site}",
            f"  rack: R{counts['hosts'] % 400:03d}",
            f"  role: {role}",
            f"  tenant: {tenant}",
        ]
        if cluster:
            lines.append(f"  cluster: {cluster}")
        lines += [
            f"  cpu: {cpu}",
            f"  memory_gib: {mem}",
            f"  bmc: {address(mgmt)}",
            "  interfaces:",
            f"  - name: eth0\n    segment: {mgmt}\n    address: {address(mgmt)}",
        ]
        for n, seg in enumerate(data, start=1):
            lines.append(f"  - name: eth{n}\n    segment: {seg}\n    address: {address(seg)}")
        hw.add("\n".join(lines))
        counts["hosts"] += 1

    clusters = _Writer()
    clusters.add("clusters:")
    workers: dict[tuple[str, str], list[str]] = {}
    dbs: dict[tuple[str, str], list[str]] = {}
    for s_index, (site, prefix, _base, _, _) in enumerate(SITES):
        for role, count in (("ntp", 1), ("log", 2), ("bastion", 1), ("backup", 2)):
            for i in range(1, count + 1):
                data = [f"{prefix}-group-backup"] if role == "backup" else [f"{prefix}-group-internal"]
                host(f"{prefix}-{role}-{i:02d}", site, prefix, "group", role, data)
        for i in range(1, 3):
            host(f"{prefix}-extgw-{i:02d}", site, prefix, "group", "gateway", [f"{prefix}-group-external"])
        # group application servers fill the estate up to exactly ``hosts`` hosts
        per_bank = 1 + WORKERS + DBS + 2
        fill = (hosts - len(SITES) * (banks * per_bank + 8)) // len(SITES)
        for i in range(1, fill + 1):
            host(f"{prefix}-app-{i:03d}", site, prefix, "group", "app", [f"{prefix}-group-internal"])
        for b in range(banks):
            t = _bank(b)
            c_index = s_index * banks + b
            cname = f"{prefix}-{t}-k8s"
            clusters.add(
                f"- name: {cname}\n  site: {site}\n  zone: internal\n  tenants: [{t}]\n"
                f"  pod_cidr: 172.{16 + (c_index * 4) // 256}.{(c_index * 4) % 256}.0/22\n"
                f"  service_cidr: 172.{28 + c_index // 256}.{c_index % 256}.0/24"
            )
            counts["clusters"] += 1
            host(
                f"{prefix}-{t}-cp-01",
                site,
                prefix,
                t,
                "k8s_control_plane",
                [f"{prefix}-{t}-internal"],
                cluster=cname,
                cpu=8,
                mem=32,
            )
            workers[(site, t)] = []
            for i in range(1, WORKERS + 1):
                name = f"{prefix}-{t}-wk-{i:02d}"
                workers[(site, t)].append(name)
                host(
                    name,
                    site,
                    prefix,
                    t,
                    "k8s_worker",
                    [f"{prefix}-{t}-internal", f"{prefix}-{t}-replication"],
                    cluster=cname,
                    cpu=32,
                    mem=128,
                )
            dbs[(site, t)] = []
            for i in range(1, DBS + 1):
                name = f"{prefix}-{t}-db-{i:02d}"
                dbs[(site, t)].append(name)
                host(name, site, prefix, t, "db", [f"{prefix}-{t}-internal", f"{prefix}-{t}-replication"])
            host(f"{prefix}-{t}-web-01", site, prefix, t, "web", [f"{prefix}-{t}-dmz"], cpu=8, mem=32)
            host(f"{prefix}-{t}-dev-01", site, prefix, t, "app", [f"{prefix}-{t}-dev"], cpu=8, mem=32)
    hw.lines.extend(clusters.lines)
    hw.save(folder / "hosts.yaml")

    # ---- services
    sv = _Writer()
    sv.add("services:")

    def service(
        name: str,
        tenant: str,
        zone: str,
        tier: int,
        primary: str,
        ports: list[int],
        clusters_: list[str] | None = None,
        hosts_: list[str] | None = None,
        extra: str = "",
    ) -> None:
        place = (
            f"  clusters: [{', '.join(clusters_)}]" if clusters_ else f"  hosts: [{', '.join(hosts_ or [])}]"
        )
        sv.add(
            f"- name: {name}\n  tenant: {tenant}\n  zone: {zone}\n  tier: {tier}\n  primary_site: {primary}\n"
            f"  dr_mode: active-active\n  rto_minutes: 60\n  rpo_minutes: 5\n{place}\n"
            f"  cpu: 4\n  memory_gib: 8\n  ports: [{', '.join(map(str, ports))}]{extra}"
        )
        counts["services"] += 1

    service("ntp", "group", "mgmt", 2, "gwangju", [123], hosts_=["gj-ntp-01", "jj-ntp-01"])
    service("siem", "group", "internal", 2, "gwangju", [6514], hosts_=["gj-log-01", "jj-log-01"])
    service(
        "payment-gateway",
        "group",
        "external",
        1,
        "gwangju",
        [7001],
        hosts_=["gj-extgw-01", "gj-extgw-02", "jj-extgw-01", "jj-extgw-02"],
    )
    for b in range(banks):
        t = _bank(b)
        primary = SITES[b % 2][0]
        both = [f"gj-{t}-k8s", f"jj-{t}-k8s"]
        service(
            f"{t}-core",
            t,
            "internal",
            1,
            primary,
            [8443],
            clusters_=both,
            extra=f"\n  backup: {{target_site: {SITES[(b + 1) % 2][0]}, retention_days: 35}}"
            "\n  replication: [velero]",
        )
        service(f"{t}-api", t, "internal", 2, primary, [9443], clusters_=both, extra="\n  relay: true")
        service(f"{t}-web", t, "dmz", 2, primary, [443], hosts_=[f"gj-{t}-web-01", f"jj-{t}-web-01"])
    sv.save(folder / "services.yaml")

    # ---- flows
    fw = _Writer()
    fw.add("flows:")

    def flow(
        name: str, src: str, dst: str, ports: list[int], purpose: str, proto: str = "tcp", cross: bool = False
    ) -> None:
        fw.add(
            f"- name: {name}\n  source: {src}\n  destination: {dst}\n  protocol: {proto}\n"
            f"  ports: [{', '.join(map(str, ports))}]\n  purpose: {purpose}"
            + ("\n  cross_site: true" if cross else "")
        )
        counts["flows"] += 1

    flow("pg-to-kftc", "service:payment-gateway", "institution:kftc", [5001], "Clearing with KFTC")
    for _site, prefix, _base, _, _ in SITES:
        flow(
            f"{prefix}-bastion-ssh",
            f"host:{prefix}-bastion-01",
            f"segment:{prefix}-group-mgmt",
            [22],
            "Administrators reach group hosts",
        )
        flow(
            f"{prefix}-group-ntp",
            f"segment:{prefix}-group-mgmt",
            "service:ntp",
            [123],
            "Time sync",
            proto="udp",
            cross=True,
        )
        flow(
            f"{prefix}-group-log",
            f"segment:{prefix}-group-mgmt",
            f"host:{prefix}-log-01",
            [6514],
            "Host logs to the site log host",
        )
    for b in range(banks):
        t = _bank(b)
        flow(f"{t}-internet-web", "internet", f"service:{t}-web", [443], "Customers reach the web tier")
        flow(f"{t}-web-api", f"service:{t}-web", f"service:{t}-api", [9443], "Web tier calls the API relay")
        flow(f"{t}-api-core", f"service:{t}-api", f"service:{t}-core", [8443], "Relay calls core")
        flow(f"{t}-core-siem", f"service:{t}-core", "service:siem", [6514], "Audit logs to the SIEM")
        flow(f"{t}-core-pg", f"service:{t}-core", "service:payment-gateway", [7001], "Interbank transfers")
        for _site, prefix, _base, _, _ in SITES:
            flow(
                f"{prefix}-{t}-ntp",
                f"segment:{prefix}-{t}-mgmt",
                "service:ntp",
                [123],
                "Time sync",
                proto="udp",
                cross=True,
            )
            flow(
                f"{prefix}-{t}-log",
                f"segment:{prefix}-{t}-mgmt",
                f"host:{prefix}-log-01",
                [6514],
                "Host logs to the site log host",
            )
            flow(
                f"{prefix}-{t}-ssh",
                f"host:{prefix}-bastion-01",
                f"segment:{prefix}-{t}-mgmt",
                [22],
                "Administrators reach hosts through the bastion",
            )
            flow(
                f"{prefix}-{t}-k8s-api",
                f"segment:{prefix}-{t}-internal",
                f"host:{prefix}-{t}-cp-01",
                [6443],
                "Nodes reach the API server",
            )
            flow(
                f"{prefix}-{t}-replication",
                f"segment:{prefix}-{t}-replication",
                f"segment:{'jj' if prefix == 'gj' else 'gj'}-{t}-replication",
                [5432],
                "Database replication to the peer site",
                cross=True,
            )
        target = SITES[(b + 1) % 2][1]  # the prefix of the core service's backup site
        for _site, prefix, _base, _, _ in SITES:
            flow(
                f"{prefix}-{t}-backup",
                f"segment:{prefix}-{t}-internal",
                f"host:{target}-backup-01",
                [9000],
                "Velero backups to the other site's object store",
                cross=prefix != target,
            )
    # fill up with worker -> database flows inside each bank and site (the bulk of a real estate)
    i = 0
    pairs = [(site, prefix, _bank(b)) for site, prefix, *_ in SITES for b in range(banks)]
    while counts["flows"] < flows_wanted:
        site, prefix, t = pairs[i % len(pairs)]
        n = i // len(pairs)
        w = workers[(site, t)][n % WORKERS]
        d = dbs[(site, t)][(n // WORKERS) % DBS]
        flow(
            f"{prefix}-{t}-app-{n:03d}",
            f"host:{w}",
            f"host:{d}",
            [5432 + n % 50],
            "Application pods reach their database",
        )
        i += 1
    fw.save(folder / "flows.yaml")
    return counts


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="write the topology into this folder and keep it")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the traced second run")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="dualdc-bench-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        counts = generate(folder)
        size = sum(p.stat().st_size for p in folder.glob("*.yaml"))
        print(
            f"topology: {counts['hosts']} hosts, {counts['segments']} segments, {counts['flows']} flows, "
            f"{counts['clusters']} clusters, {counts['services']} services; {size / 2**20:.1f} MiB of YAML"
        )
        gc.collect()
        rss_before = _rss_mib()
        t0, c0 = time.perf_counter(), time.process_time()
        topology = load_topology(folder)
        t1, c1 = time.perf_counter(), time.process_time()
        report = run_policy(topology)
        t2, c2 = time.perf_counter(), time.process_time()
        failing = [f for f in report.findings if not f.waived]
        print(f"load:     {t1 - t0:6.2f} s wall, {c1 - c0:6.2f} s CPU")
        print(f"validate: {t2 - t1:6.2f} s wall, {c2 - c1:6.2f} s CPU  ({len(report.findings)} findings, "
              f"{len(failing)} failing)")
        print(f"total:    {t2 - t0:6.2f} s wall, {c2 - c0:6.2f} s CPU  (target <= 2 s; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        print(f"peak RSS: {_rss_mib():6.0f} MiB (before loading: {rss_before:.0f} MiB; target <= 1024 MiB)")
        for finding in failing[:5]:
            print(
                f"  unexpected finding: {finding.rule} {finding.target}: {finding.message}", file=sys.stderr
            )
        if not args.no_tracemalloc:
            del topology, report
            gc.collect()
            tracemalloc.start()
            topology = load_topology(folder)
            report = run_policy(topology)
            _current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"peak Python allocations (tracemalloc): {peak / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
