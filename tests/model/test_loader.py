"""The loader: safe YAML, merged files, and one readable problem per mistake (file:line:column)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dualdc import cli
from dualdc.loader import LoadProblem, TopologyError, load_environment, load_topology, parse_yaml


def _problems(folder: Path) -> list[LoadProblem]:
    with pytest.raises(TopologyError) as err:
        load_topology(folder)
    return err.value.problems


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _line(path: Path, text: str, after: str | None = None) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    start = 0 if after is None else next(i for i, line in enumerate(lines) if after in line)
    return next(i for i, line in enumerate(lines[start:], start=start) if text in line) + 1


def test_both_environments_load():
    lab = load_environment("lab")
    assert {s.name for s in lab.sites} == {"gwangju", "jeonju"}
    # Both sites carry the same 12 hosts; Gwangju adds its AI zone's GPU workers (one per bank).
    gpu = [h for h in lab.hosts if h.role.value == "gpu_worker"]
    banks = [t.name for t in lab.tenants if t.kind.value == "bank"]
    assert sorted(h.tenant for h in gpu) == sorted(banks) and {h.site for h in gpu} == {"gwangju"}
    assert all(len([h for h in lab.hosts_at(site) if h not in gpu]) == 12 for site in ("gwangju", "jeonju"))
    assert len(lab.hosts) == 24 + len(gpu)
    prod = load_environment("production")
    assert len(prod.hosts) >= 60
    assert {t.name for t in prod.tenants} == {"kjbank", "jbbank", "group"}
    assert all(len(prod.clusters_at(site)) >= 2 for site in ("gwangju", "jeonju"))
    assert len(prod.services) >= 12 and len(prod.flows) >= 40 and prod.waivers
    assert len(prod.links) == 2


def test_production_covers_what_the_issue_asks_for():
    prod = load_environment("production")
    by_name = {s.name: s for s in prod.services}
    assert by_name["kj-core-banking"].tier == by_name["jb-core-banking"].tier == 1
    assert by_name["kj-internet-banking"].zone.value == by_name["jb-internet-banking"].zone.value == "dmz"
    assert by_name["payment-gateway"].zone.value == "external"
    assert any(f.source == "service:payment-gateway" and f.destination == "institution:kftc"
               for f in prod.flows)
    assert {"kj-card-services", "jb-card-services", "group-mail", "group-hr", "siem"} <= set(by_name)
    zones_used = {(s.site, s.tenant, s.zone.value) for s in prod.segments}
    for site in ("gwangju", "jeonju"):
        for zone in ("dmz", "internal", "external", "mgmt", "replication", "backup", "dev"):
            assert any((site, t, zone) in zones_used for t in ("kjbank", "jbbank", "group")), (site, zone)
    # fictional addresses: private inside, documentation ranges outside
    for seg in prod.segments:
        assert seg.cidr.is_private, seg.name
    for inst in prod.institutions:
        assert all(str(c).startswith("203.0.113.") for c in inst.cidrs)


def test_dangling_reference_names_both_ends(lab):
    hosts = lab.folder / "hosts.yaml"
    _edit(hosts, "    segment: gj-group-mgmt\n    address: 10.10.10.12",
          "    segment: gj-nope\n    address: 10.10.10.12")
    problems = _problems(lab.folder)
    assert len(problems) == 1
    problem = problems[0]
    assert problem.file.endswith("hosts.yaml")
    assert problem.line == _line(hosts, "segment: gj-nope")
    assert "host 'gj-ntp-01'" in problem.message and "segment 'gj-nope'" in problem.message
    assert problem.path.startswith("hosts[gj-ntp-01].interfaces")


def test_dangling_flow_end_and_waiver_free_reference(lab):
    services = lab.folder / "services.yaml"
    _edit(services, "destination: institution:kftc", "destination: institution:kfct")
    (problem,) = _problems(lab.folder)
    assert problem.line == _line(services, "institution:kfct")
    assert "flow 'pg-to-kftc' refers to institution 'kfct'" in problem.message
    assert "kftc" in problem.message.split("known:")[1]


def test_duplicate_keys_are_refused_with_both_lines(lab):
    hosts = lab.folder / "hosts.yaml"
    _edit(hosts, "  role: ntp\n", "  role: ntp\n  role: log\n")
    (problem,) = _problems(lab.folder)
    first = _line(hosts, "role: ntp")
    assert (problem.line, problem.message) == (first + 1, f"duplicate key 'role' (first at line {first})")


@pytest.mark.parametrize("text, expected", [
    ("a: &x 1\nb: *x\n", "anchors and aliases are not allowed"),
    ("a: !!python/object/apply:os.system ['touch /tmp/dualdc-pwned']\n", "is not allowed in a topology"),
    ("a: !!binary aGVsbG8=\n", "is not allowed in a topology"),
    ("<<: {a: 1}\n", "merge keys ('<<') are not allowed"),
    ("? [a, b]\n: 1\n", "a mapping key must be a plain value"),
    ("a: 1\n---\nb: 2\n", "exactly one YAML document"),
    ("a: [1, 2\n", "invalid YAML"),
    ("a:\n  - b\n c: d\n", "invalid YAML"),
    ("[" * 200 + "]" * 200, "nested more than 64 levels deep"),
    ("a: !!int twelve\n", "invalid int value"),
])
def test_unsafe_or_broken_yaml_is_refused(text, expected):
    with pytest.raises(TopologyError) as err:
        parse_yaml(text.encode(), "x.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("x.yaml:")
    assert not Path("/tmp/dualdc-pwned").exists()


def test_plain_scalars_are_typed_like_pyyaml_safe_load():
    import yaml

    text = "a: 1\nb: yes\nc: '2'\nd: 2026-12-31\ne: 0x1f\nf: 1.5\ng: ~\nh: ''\ni: [1, x]\nj: 1:20\n"
    assert parse_yaml(text, "x.yaml") == yaml.safe_load(text)


def test_billion_laughs_is_refused_fast(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1},*a{i - 1}]"
              for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    problems = _problems(tmp_path)
    assert time.monotonic() - started < 2
    assert problems[0].message == "anchors and aliases are not allowed in a topology"


def test_size_limit(lab):
    with pytest.raises(TopologyError) as err:
        load_topology(lab.folder, max_bytes=4096)
    assert "exceeds the size limit of 4096 bytes" in str(err.value)


def test_unknown_field_is_located_at_its_key(lab):
    network = lab.folder / "network.yaml"
    _edit(network, "  vlan: 110\n", "  vlan: 110\n  colour:\n    red: true\n")
    (problem,) = _problems(lab.folder)
    assert problem.line == _line(network, "colour:")
    assert problem.path == "segments[gj-kjbank-internal].colour"
    assert "unknown field" in problem.message


def test_wrong_types_and_bad_networks_are_all_reported_at_once(lab):
    network = lab.folder / "network.yaml"
    _edit(network, "  vlan: 110\n", "  vlan: ten\n")
    _edit(network, "  cidr: 10.10.120.0/24", "  cidr: 10.10.120.0/33")
    _edit(network, "  cidr: 10.10.130.0/24", "  cidr: 10.10.130.1/24")
    hosts = lab.folder / "hosts.yaml"
    _edit(hosts, "  cpu: 4\n", "  cpu: many\n")
    problems = _problems(lab.folder)
    found = {(Path(p.file).name, p.line, p.path) for p in problems}
    assert found == {
        ("network.yaml", _line(network, "vlan: ten"), "segments[gj-kjbank-internal].vlan"),
        ("network.yaml", _line(network, "10.10.120.0/33"), "segments[gj-jbbank-internal].cidr"),
        ("network.yaml", _line(network, "10.10.130.1/24"), "segments[gj-group-internal].cidr"),
        ("hosts.yaml", _line(hosts, "cpu: many"), "hosts[gj-bastion-01].cpu"),
    }
    assert problems == sorted(problems)
    vlan = next(p for p in problems if p.path.endswith("vlan"))
    assert "valid integer" in vlan.message and "'ten'" in vlan.message


def test_missing_required_field(lab):
    hosts = lab.folder / "hosts.yaml"
    _edit(hosts, "  rack: R01\n", "")
    (problem,) = _problems(lab.folder)
    assert problem.path == "hosts[gj-bastion-01].rack"
    assert problem.message == "required field is missing"
    assert problem.line == _line(hosts, "name: gj-bastion-01")


def test_cross_field_rules_of_the_model(lab):
    hosts = lab.folder / "hosts.yaml"
    _edit(hosts, "  cluster: gwangju-core\n", "")  # a control-plane host without a cluster
    services = lab.folder / "services.yaml"
    _edit(services, "  - velero\n", "")  # kj-core-banking keeps its backup: fine
    _edit(services, "  hosts:\n  - gj-extgw-01\n  - jj-extgw-01\n", "")  # payment-gateway runs nowhere
    problems = _problems(lab.folder)
    messages = {p.path.split(".")[0]: p.message for p in problems}
    assert "a k8s_control_plane host needs a cluster" in messages["hosts[gj-core-cp-01]"]
    assert "a service runs somewhere" in messages["services[payment-gateway]"]


def test_files_of_an_environment_are_merged(lab):
    hosts = lab.folder / "hosts.yaml"
    text = hosts.read_text(encoding="utf-8")
    head, tail = text.split("- name: jj-bastion-01\n", 1)
    hosts.write_text(head, encoding="utf-8")
    (lab.folder / "hosts-jeonju.yml").write_text("hosts:\n- name: jj-bastion-01\n" + tail, encoding="utf-8")
    topology = load_topology(lab.folder)
    assert sorted(h.name for h in topology.hosts) == sorted(h.name for h in load_environment("lab").hosts)
    jj = topology.host("jj-bastion-01")
    assert jj.location is not None and jj.location.file.endswith("hosts-jeonju.yml") and jj.location.line == 2
    assert topology.cluster("jeonju-core").location.file.endswith("hosts-jeonju.yml")


def test_environment_declared_twice(lab):
    (lab.folder / "more.yaml").write_text("environment:\n  name: lab\n", encoding="utf-8")
    (problem,) = _problems(lab.folder)
    assert problem.file.endswith("more.yaml") and problem.line == 1
    first = _line(lab.folder / "environment.yaml", "environment:")
    assert problem.message.startswith("declared again (first in ")
    assert problem.message.endswith(f"environment.yaml:{first})")


def test_environment_missing(lab):
    (lab.folder / "environment.yaml").write_text("sites: []\n", encoding="utf-8")
    problems = _problems(lab.folder)
    assert [p.path for p in problems] == ["environment"]


def test_unknown_section_and_section_of_the_wrong_shape(lab):
    (lab.folder / "extra.yaml").write_text("# extra\nserverz:\n- a\nflows: {a: 1}\n", encoding="utf-8")
    problems = _problems(lab.folder)
    assert {(Path(p.file).name, p.line, p.path) for p in problems} == {
        ("extra.yaml", 2, "serverz"), ("extra.yaml", 4, "flows")}


def test_document_that_is_not_a_mapping(lab):
    (lab.folder / "list.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    (problem,) = _problems(lab.folder)
    assert problem.file.endswith("list.yaml") and "expected a mapping of sections" in problem.message


def test_problems_in_several_files_are_reported_together_and_sorted(lab):
    (lab.folder / "broken.yaml").write_text("flows: [\n", encoding="utf-8")
    _edit(lab.folder / "hosts.yaml", "  role: ntp\n", "  role: ntp\n  role: ntp\n")
    problems = _problems(lab.folder)
    assert [Path(p.file).name for p in problems] == ["broken.yaml", "hosts.yaml"]


def test_invalid_utf8(tmp_path):
    (tmp_path / "bad.yaml").write_bytes(b"sites:\n- name: \xc3\x28\n")
    (problem,) = _problems(tmp_path)
    assert problem.file.endswith("bad.yaml") and "invalid YAML" in problem.message


@pytest.mark.parametrize("name", ["../lab", ".hidden", "", "nope"])
def test_bad_environment_names(name):
    with pytest.raises(TopologyError):
        load_environment(name)


def test_missing_folder_and_empty_folder(tmp_path):
    assert "no such file or folder" in str(_problems(tmp_path / "absent")[0])
    assert "no *.yaml files" in str(_problems(tmp_path)[0])


def test_many_problems_fit_one_screen(lab):
    hosts = "\n".join(f"- name: h{i:03d}\n  colour: red" for i in range(300))
    (lab.folder / "t.yaml").write_text("hosts:\n" + hosts + "\n", encoding="utf-8")
    with pytest.raises(TopologyError) as err:
        load_topology(lab.folder)
    assert len(err.value.problems) > 300
    text = cli.format_problems(err.value)
    assert len(text.splitlines()) <= cli.MAX_PROBLEMS_SHOWN + 2
    assert text.splitlines()[-1].startswith("... and ")


# --------------------------------------------------------------------------- DR peers


def test_a_site_without_dr_peer_is_refused_with_file_and_line(lab):
    env = lab.folder / "environment.yaml"
    _edit(env, "  dr_peer: gwangju\n", "")
    problems = _problems(lab.folder)
    messages = sorted(p.message for p in problems)
    assert any("site 'jeonju' names no dr_peer" in m for m in messages)
    # gwangju's peer no longer names it back
    assert any("site 'gwangju' names 'jeonju' as its dr_peer but 'jeonju' names None" in m for m in messages)
    assert all(p.file.endswith("environment.yaml") for p in problems)
    assert {p.line for p in problems} == {_line(env, "- name: jeonju"), _line(env, "dr_peer: jeonju")}


def test_a_third_site_without_a_peer_is_refused(lab):
    env = lab.folder / "environment.yaml"
    _edit(env, "tenants:\n", "- name: seoul\n  city: Seoul\n  latitude: 37.5\n  longitude: 127.0\n"
                             "  racks: 1\n  power_feeds: 1\n  uplinks: 1\ntenants:\n")
    (problem,) = _problems(lab.folder)
    assert "site 'seoul' names no dr_peer" in problem.message
    assert "nothing picks 'the other site' by position" in problem.message
    assert problem.line == _line(env, "- name: seoul")


def test_dr_peers_are_mutual_and_never_the_site_itself(lab):
    env = lab.folder / "environment.yaml"
    _edit(env, "  dr_peer: gwangju\n", "  dr_peer: jeonju\n")
    messages = sorted(p.message for p in _problems(lab.folder))
    assert any("site 'jeonju' names itself as its dr_peer" in m for m in messages)
    assert any("DR peers are mutual" in m for m in messages)


def test_peer_site_follows_dr_peer_not_the_order_of_sites(lab):
    env = lab.folder / "environment.yaml"
    text = env.read_text(encoding="utf-8")
    gwangju = text[text.index("- name: gwangju\n"):text.index("- name: jeonju\n")]
    jeonju = text[text.index("- name: jeonju\n"):text.index("tenants:\n")]
    env.write_text(text.replace(gwangju + jeonju, jeonju + gwangju), encoding="utf-8")
    topo = load_topology(lab.folder)
    assert [s.name for s in topo.sites] == ["jeonju", "gwangju"]
    assert topo.dr_peer("gwangju") == "jeonju" and topo.dr_peer("jeonju") == "gwangju"
