"""What the stacks declare, counted and checked against the model."""

from __future__ import annotations

import ipaddress
from collections import Counter
from typing import Any

from dualdc.model import ReplicationKind, Service, Topology

SERVICE = "dualdc.jbfg.example/service"
TENANT = "dualdc.jbfg.example/tenant"


def namespace_of(svc: Service) -> str:
    return svc.name if svc.own_namespace else f"{svc.tenant}-{svc.zone.value}"


def expected_namespaces(topology: Topology, cluster: str) -> set[str]:
    c = topology.cluster(cluster)
    found = {f"{t}-{c.zone.value}" for t in c.tenants}
    return found | {namespace_of(s) for s in topology.services if cluster in s.clusters}


def test_site_stacks_declare_the_model_per_cluster(rendered: Any) -> None:
    topo = rendered.topology
    for site in topo.sites:
        label = f"dualdc-site/{site.name}"
        objects = [(c, o) for stack, c, o in rendered.objects("dualdc-site") if stack == label]
        assert {c for c, _ in objects} == {c.name for c in topo.clusters_at(site.name)}, label
        for cluster in topo.clusters_at(site.name):
            mine = [o for c, o in objects if c == cluster.name]
            kinds = Counter(o["kind"] for o in mine)
            namespaces = expected_namespaces(topo, cluster.name)
            assert {o["metadata"]["name"] for o in mine if o["kind"] == "Namespace"} == namespaces
            assert kinds["ResourceQuota"] == kinds["LimitRange"] == len(namespaces)
            bindings = 0
            for ns in namespaces:
                tenant = next(o for o in mine if o["kind"] == "Namespace"
                              and o["metadata"]["name"] == ns)["metadata"]["labels"][TENANT]
                t = topo.tenant(tenant)
                bindings += bool(t.admin_groups) + bool(t.viewer_groups)
            assert kinds["RoleBinding"] == bindings
            assert kinds["NetworkPolicy"] >= 2 * len(namespaces)
            assert set(kinds) == {"Namespace", "ResourceQuota", "LimitRange", "RoleBinding", "NetworkPolicy"}


def test_namespaces_are_labelled_and_restricted(rendered: Any) -> None:
    topo = rendered.topology
    for _, cluster, obj in rendered.objects("dualdc-site"):
        if obj["kind"] != "Namespace":
            continue
        labels = obj["metadata"]["labels"]
        c = topo.cluster(cluster)
        assert labels["dualdc.jbfg.example/site"] == c.site
        assert labels["dualdc.jbfg.example/tenant"] in c.tenants or any(
            namespace_of(s) == obj["metadata"]["name"] for s in topo.services if cluster in s.clusters)
        assert labels["dualdc.jbfg.example/zone"]
        version = c.kubernetes_version or topo.environment.kubernetes_version
        for mode in ("audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
            assert labels[f"pod-security.kubernetes.io/{mode}-version"] == f"v{version}"
        annotations = obj["metadata"].get("annotations") or {}
        exception = annotations.get("dualdc.jbfg.example/pod-security-exception")
        assert labels["pod-security.kubernetes.io/enforce"] == ("baseline" if exception else "restricted")


def test_quotas_cover_the_services_placed_in_each_namespace(rendered: Any) -> None:
    topo = rendered.topology
    for _, cluster, obj in rendered.objects("dualdc-site"):
        if obj["kind"] != "ResourceQuota":
            continue
        ns = obj["metadata"]["namespace"]
        placed = [s for s in topo.services if cluster in s.clusters and namespace_of(s) == ns]
        hard = obj["spec"]["hard"]
        cpu = hard["requests.cpu"]
        cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
        assert cores >= sum(s.cpu for s in placed)
        assert int(hard["requests.memory"].removesuffix("Gi")) >= sum(s.memory_gib for s in placed)
        assert hard["services.nodeports"] == "0"


def test_rolebindings_grant_only_the_namespace_tenants_groups(rendered: Any) -> None:
    topo = rendered.topology
    tenants = {}
    for _, cluster, obj in rendered.objects("dualdc-site"):
        if obj["kind"] == "Namespace":
            tenants[(cluster, obj["metadata"]["name"])] = obj["metadata"]["labels"][TENANT]
    for _, cluster, obj in rendered.objects("dualdc-site"):
        if obj["kind"] != "RoleBinding":
            continue
        tenant = topo.tenant(tenants[(cluster, obj["metadata"]["namespace"])])
        groups = {s["name"] for s in obj["subjects"]}
        by_role = {"admin": set(tenant.admin_groups), "view": set(tenant.viewer_groups)}
        expected = by_role[obj["roleRef"]["name"]]
        assert groups == expected


def test_every_replicated_database_has_a_primary_and_a_replica_at_the_peer_site(rendered: Any) -> None:
    topo = rendered.topology
    clusters = [(c, o) for _, c, o in rendered.objects("dualdc-replication") if o["kind"] == "Cluster"]
    services = [s for s in topo.services if s.database and ReplicationKind.CNPG in s.replication]
    assert len(clusters) == 2 * len(services)
    for svc in services:
        mine = [(c, o) for c, o in clusters if o["metadata"]["labels"][SERVICE] == svc.name]
        primary = [(c, o) for c, o in mine if "replica" not in o["spec"]]
        replica = [(c, o) for c, o in mine if o["spec"].get("replica", {}).get("enabled") is True]
        assert len(primary) == len(replica) == 1, svc.name
        (pc, p), (rc, r) = primary[0], replica[0]
        assert topo.cluster(pc).site == svc.primary_site
        assert topo.cluster(rc).site == topo.dr_peer(svc.primary_site)
        assert r["spec"]["bootstrap"]["pg_basebackup"]["source"] == r["spec"]["replica"]["source"]
        source = next(e for e in r["spec"]["externalClusters"] if e["name"] == r["spec"]["replica"]["source"])
        host = ipaddress.IPv4Address(source["connectionParameters"]["host"])
        lb = p["spec"]["managed"]["services"]["additional"][0]["serviceTemplate"]["metadata"]["annotations"]
        assert str(host) in lb.values(), "the replica connects to the primary's published address"
        segment = next(s for s in topo.segments if host in s.cidr)
        assert segment.site == svc.primary_site and segment.zone.value == "replication"
        assert all(host != i.address for h in topo.hosts for i in h.interfaces)
        for side in (p, r):
            assert side["metadata"]["namespace"] == namespace_of(svc)
            assert side["spec"]["instances"] == svc.database.instances
            assert side["spec"]["postgresql"]["pg_hba"], "the primary admits the replica's networks"


def test_every_tier1_service_survives_the_loss_of_its_site(rendered: Any) -> None:
    """A replica Cluster or a Velero backup at the other site; or the service runs there too."""
    topo = rendered.topology
    objs = rendered.objects("dualdc-replication")
    locations = {(c, o["metadata"]["name"]): o for _, c, o in objs if o["kind"] == "BackupStorageLocation"}
    for svc in topo.services:
        if svc.tier != 1 or not svc.clusters:
            continue
        other = topo.dr_peer(svc.primary_site)
        replica = any(o["kind"] == "Cluster" and o["metadata"]["labels"][SERVICE] == svc.name
                      and o["spec"].get("replica", {}).get("enabled") and topo.cluster(c).site == other
                      for _, c, o in objs)
        backed_up = False
        for _, cluster, obj in objs:
            if obj["kind"] != "Schedule":
                continue
            if namespace_of(svc) not in obj["spec"]["template"]["includedNamespaces"]:
                continue
            if cluster not in svc.clusters or topo.cluster(cluster).site != svc.primary_site:
                continue
            bsl = locations[(cluster, obj["spec"]["template"]["storageLocation"])]
            url = bsl["spec"]["config"]["s3Url"]
            address = ipaddress.IPv4Address(url.split("//")[1].rsplit(":", 1)[0])
            landing = next(s for s in topo.segments if address in s.cidr)
            backed_up = backed_up or landing.site == other
        runs_there = any(topo.cluster(c).site == other for c in svc.clusters) and not svc.database
        assert replica or backed_up or runs_there, f"tier-1 {svc.name} has nothing at {other}"
        if svc.database and ReplicationKind.CNPG in svc.replication:
            assert replica, svc.name
        if ReplicationKind.VELERO in svc.replication:
            assert backed_up, svc.name


def test_backups_run_at_least_as_often_as_the_rpo_and_keep_the_retention(rendered: Any) -> None:
    topo = rendered.topology
    for _, cluster, obj in rendered.objects("dualdc-replication"):
        if obj["kind"] != "Schedule":
            continue
        names = obj["metadata"]["annotations"]["dualdc.jbfg.example/services"].split(",")
        services = [topo.service(n) for n in names]
        minute, hour, *_ = obj["spec"]["schedule"].split()
        if minute.startswith("*/"):
            interval = int(minute[2:])
        elif hour.startswith("*/"):
            interval = 60 * int(hour[2:])
        else:
            interval = 1440
        assert interval <= max(5, min(s.rpo_minutes for s in services))
        hours = int(obj["spec"]["template"]["ttl"].split("h")[0])
        # retention_days of the services; 30 days (documented default) for a tier-1 one without a backup
        assert hours == 24 * max(s.backup.retention_days if s.backup else 30 for s in services)
        target = obj["spec"]["template"]["storageLocation"].removeprefix("dualdc-")
        assert topo.cluster(cluster).site != target


def test_no_secret_value_is_rendered(rendered: Any) -> None:
    for path in rendered.files():
        text = path.read_text(encoding="utf-8")
        assert "<secret:" not in text
    for _, _, obj in rendered.objects("dualdc-replication"):
        if obj["kind"] == "Secret":
            assert set(obj["stringData"].values()) == {"(redacted: a Pulumi config secret)"}


def test_a_pod_security_waiver_relaxes_enforce_only_and_says_why(lab: Topology, tmp_path: Any) -> None:
    import datetime as dt

    from dualdc import render
    from dualdc.model import Waiver

    topo = lab.model_copy(deep=True)
    topo.environment.today = dt.date(2026, 1, 1)
    topo.waivers = [
        Waiver(rule="PSA-01", target="service:kj-core-banking", reason="vendor agent needs NET_ADMIN for now",
               approval="ISC-2026-007", expires=dt.date(2026, 6, 30)),
        Waiver(rule="PSA-01", target="namespace:jbbank-internal", reason="expired exception, no longer valid",
               approval="ISC-2025-001", expires=dt.date(2025, 12, 31)),
    ]
    render.render(topo, site="gwangju", out_root=tmp_path)
    ns_dir = tmp_path / "dualdc-site" / "gwangju" / "gwangju-core" / "_cluster"
    import yaml

    waived = yaml.safe_load((ns_dir / "namespace-kj-core-banking.yaml").read_text())["metadata"]
    assert waived["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    assert waived["labels"]["pod-security.kubernetes.io/warn"] == "restricted"
    note = waived["annotations"]["dualdc.jbfg.example/pod-security-exception"]
    assert "ISC-2026-007" in note and "2026-06-30" in note and "NET_ADMIN" in note
    expired = yaml.safe_load((ns_dir / "namespace-jbbank-internal.yaml").read_text())["metadata"]
    assert expired["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "annotations" not in expired
