"""`invoke validate` and `invoke schema` as a user runs them: every exit code and format.

Exit codes (DESIGN §6): 0 clean, 1 input error, 2 findings. These tests run the real
command in a subprocess from the repository root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize("env", ["lab", "production"])
def test_committed_environments_exit_0(env):
    done = invoke("validate", "--env", env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{env}: passed" in done.stdout


def test_validate_ends_at_once_only_when_it_is_the_runs_only_task(lab):
    """validate ends its process without freeing the model (cli.finish) only when alone: the
    report is whole and the exit code kept, and a task after it on the same line still runs."""
    lab.add_flow("web-to-core", "segment:jj-jbbank-dmz", "segment:jj-jbbank-internal", [8443])
    lab.save()
    alone = invoke("validate", "--topology", str(lab.folder), "--format", "json")
    assert alone.returncode == 2 and json.loads(alone.stdout)["passed"] is False  # flushed, whole
    both = invoke("validate", "--env", "lab", "schema", "--check")
    assert both.returncode == 0, both.stdout + both.stderr
    assert "lab: passed" in both.stdout and "topology.schema.json is up to date" in both.stderr
    failing_first = invoke("validate", "--topology", str(lab.folder), "schema", "--check")
    assert failing_first.returncode == 2 and "up to date" not in failing_first.stderr  # Exit stops the run


def test_a_closed_stdout_is_one_line_on_stderr_not_a_traceback():
    """`invoke validate | head` whose reader has gone: exit 1 with one line, never a traceback."""
    with subprocess.Popen([sys.executable, "-m", "invoke", "validate", "--env", "lab"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # no reader left: the report's write meets EPIPE
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "standard output was closed before the report was written out (broken pipe)" in err


def _text_line(path: Path, text: str, after: str | None = None) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    start = 0 if after is None else next(i for i, line in enumerate(lines) if after in line)
    return next(i for i, line in enumerate(lines[start:], start=start) if text in line) + 1


def test_break_overlapping_cidrs(lab):
    lab.find("segments", "jj-jbbank-internal")["cidr"] = "10.20.110.0/25"
    lab.find("segments", "jj-jbbank-internal")["gateway"] = "10.20.110.1"
    lab.save()
    done = invoke("validate", "--topology", str(lab.folder))
    line = _text_line(lab.folder / "network.yaml", "cidr: 10.20.110.0/25")
    assert done.returncode == 2
    assert "IP-01" in done.stdout and f"network.yaml:{line}:" in done.stdout
    assert "segment:jj-jbbank-internal" in done.stdout


def test_break_dmz_flowing_straight_into_internal(lab):
    lab.add_flow("web-to-core", "segment:jj-jbbank-dmz", "segment:jj-jbbank-internal", [8443])
    lab.save()
    done = invoke("validate", "--topology", str(lab.folder), "--format", "json")
    assert done.returncode == 2
    found = [f for f in json.loads(done.stdout)["findings"] if f["rule"] == "NS-01"]
    assert [f["target"] for f in found] == ["flow:web-to-core"]
    assert found[0]["location"]["file"].endswith("services.yaml")
    line = _text_line(lab.folder / "services.yaml", "destination: segment:jj-jb", after="name: web-to-core")
    assert found[0]["location"]["line"] == line


def test_break_tier1_without_replica_at_the_other_site(lab):
    lab.find("services", "jb-core-banking")["clusters"] = ["jeonju-core"]
    lab.save()
    done = invoke("validate", "--topology", str(lab.folder), "--format", "sarif")
    assert done.returncode == 2
    results = json.loads(done.stdout)["runs"][0]["results"]
    dr01 = [r for r in results if r["ruleId"] == "DR-01"]
    assert [r["properties"]["target"] for r in dr01] == ["service:jb-core-banking"]
    region = dr01[0]["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == _text_line(lab.folder / "services.yaml", "- jeonju-core",
                                             after="name: jb-core-banking")


def test_break_flow_between_the_banks_internal_segments(lab):
    lab.add_flow("kj-to-jb", "segment:gj-kjbank-internal", "segment:gj-jbbank-internal", [5432])
    lab.save()
    done = invoke("validate", "--topology", str(lab.folder), "--format", "junit")
    assert done.returncode == 2
    suite = ET.fromstring(done.stdout)
    case = next(c for c in suite.iter("testcase") if c.get("name").startswith("TEN-01 "))
    (failure,) = case.findall("failure")
    line = _text_line(lab.folder / "services.yaml", "destination: segment:gj-jbbank-internal",
                      after="name: kj-to-jb")
    assert failure.get("message").startswith("flow:kj-to-jb: ")
    assert f"services.yaml:{line}:" in failure.text


def test_bad_input_host_of_an_undeclared_tenant_exits_1_with_file_and_line(lab):
    lab.find("hosts", "gj-db-kj-01")["tenant"] = "kbank"
    lab.save()
    done = invoke("validate", "--topology", str(lab.folder))
    assert done.returncode == 1, done.stdout + done.stderr
    line = _text_line(lab.folder / "hosts.yaml", "tenant: kbank")
    assert f"hosts.yaml:{line}:" in done.stderr + done.stdout
    assert "tenant 'kbank', which is not declared" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout


def test_bad_input_bank_host_in_the_other_banks_segment_is_ten01(lab):
    iface = next(i for i in lab.find("hosts", "jj-db-jb-01")["interfaces"] if i["name"] == "eth1")
    iface["segment"], iface["address"] = "jj-kjbank-internal", "10.20.110.99"
    lab.save()
    done = invoke("validate", "--topology", str(lab.folder), "--format", "json")
    assert done.returncode == 2, done.stdout + done.stderr
    found = [(f["rule"], f["target"]) for f in json.loads(done.stdout)["findings"] if f["rule"] == "TEN-01"]
    assert ("TEN-01", "host:jj-db-jb-01") in found
    assert "Traceback" not in done.stderr


HOSTILE = {
    "billion-laughs": "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    "python-object": "environment: !!python/object/apply:os.system ['touch /tmp/dualdc-cli-pwned']\n",
    "deep-nesting": "sites: " + "[" * 5000 + "]" * 5000 + "\n",
    "binary": "\x00\x01\x02\x7f garbage \ufffe",
    "broken-syntax": "sites:\n  - name: x\n   bad: indentation\n",
    "many-problems": "hosts:\n" + "".join(f"- name: h{i}\n  colour: red\n" for i in range(5000)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_gets_a_one_screen_error_and_exit_1_within_seconds(tmp_path, case):
    (tmp_path / "topology.yaml").write_text(HOSTILE[case], encoding="utf-8", errors="surrogatepass")
    started = time.monotonic()
    done = invoke("validate", "--topology", str(tmp_path))
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: ")
    assert len(done.stderr.splitlines()) <= 45
    assert "Traceback" not in done.stderr
    assert not Path("/tmp/dualdc-cli-pwned").exists()


def test_huge_input_is_refused_by_size(tmp_path):
    with (tmp_path / "huge.yaml").open("w") as out:
        out.write("flows:\n")
        out.truncate(65 * 1024 * 1024)  # sparse: past the 64 MiB limit without writing it
    done = invoke("validate", "--topology", str(tmp_path))
    assert done.returncode == 1 and "size limit" in done.stderr


def test_policy_override_errors_exit_1_with_file_and_line(lab):
    lab.env["policy"] = {"DR-01": {"max_rto": 60}}
    lab.save()
    done = invoke("validate", "--topology", str(lab.folder))
    assert done.returncode == 1
    line = _text_line(lab.folder / "environment.yaml", "max_rto:")
    assert f"environment.yaml:{line}:" in done.stderr and "unknown parameter of DR-01" in done.stderr


def test_output_file_and_every_format(lab, tmp_path):
    for fmt, check in (("text", lambda t: "lab: passed" in t), ("json", lambda t: json.loads(t)["passed"]),
                       ("sarif", lambda t: json.loads(t)["version"] == "2.1.0"),
                       ("junit", lambda t: ET.fromstring(t).get("failures") == "0")):
        out = tmp_path / f"report.{fmt}"
        done = invoke("validate", "--env", "lab", "--format", fmt, "--output", str(out))
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""
        assert check(out.read_text(encoding="utf-8")), fmt


def test_advisories_pass_unless_fail_on_says_otherwise(lab):
    site = lab.find("sites", "jeonju")
    site["latitude"], site["longitude"] = 35.23, 126.85
    lab.save()
    assert invoke("validate", "--topology", str(lab.folder)).returncode == 0
    strict = invoke("validate", "--topology", str(lab.folder), "--fail-on", "advisory")
    assert strict.returncode == 2 and "DR-02" in strict.stdout


@pytest.mark.parametrize("args", [
    ("--format", "yaml"), ("--fail-on", "sometimes"), ("--env", "lab", "--topology", "inventories/lab"),
    ("--env", "no-such-env"), ("--env", "../etc"),
])
def test_usage_errors_exit_1(args):
    done = invoke("validate", *args)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_list_rules():
    done = invoke("validate", "--list-rules")
    assert done.returncode == 0
    for rule in ("NS-01", "TEN-01", "PW-01", "STR-01", "WV-02"):
        assert rule in done.stderr


def test_schema_check_passes_on_the_committed_schema():
    done = invoke("schema", "--check")
    assert done.returncode == 0, done.stderr


def test_schema_check_fails_when_stale(tmp_path, monkeypatch):
    from dualdc.tasks import model as model_tasks

    monkeypatch.setattr(model_tasks, "ROOT", tmp_path)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "topology.schema.json").write_text("{}\n")
    with pytest.raises(Exit) as err:
        model_tasks.schema_(Context(), check=True)
    assert err.value.code == 2
    model_tasks.schema_(Context())  # writes it
    model_tasks.schema_(Context(), check=True)  # and now it is current


def test_break_the_ai_zone_three_ways_each_found_with_its_rule_file_and_line(copy_env):
    """Issue 20's three breaks, through the command: personal data into ai (AI-01), an AI endpoint
    whose model version moved past its approval (AI-03) and an expired exemption (EXM-01)."""
    prod = copy_env("production")
    prod.find("flows", "kj-pseudonymiser-to-ai")["data"] = "personal"
    prod.find("institutions", "genai-provider")["model_version"] = "2.2"
    exm = prod.find("exemptions", "genai-sandbox")
    exm["approved_on"], exm["expires"] = "2023-06-30", "2024-06-29"
    prod.save()
    done = invoke("validate", "--topology", str(prod.folder), "--format", "sarif")
    assert done.returncode == 2
    results = json.loads(done.stdout)["runs"][0]["results"]
    ai_file = prod.folder / "ai.yaml"

    def where(rule: str, target: str) -> tuple[str, int]:
        found = [r for r in results if r["ruleId"] == rule and r["properties"]["target"] == target]
        assert len(found) == 1, (rule, target, [r["ruleId"] for r in results])
        physical = found[0]["locations"][0]["physicalLocation"]
        return Path(physical["artifactLocation"]["uri"]).name, physical["region"]["startLine"]

    assert where("AI-01", "flow:kj-pseudonymiser-to-ai") == (
        "ai.yaml", _text_line(ai_file, "data: personal", after="name: kj-pseudonymiser-to-ai"))
    assert where("AI-03", "flow:genai-gateway-to-provider") == (
        "ai.yaml", _text_line(ai_file, "model_version: '2.2'", after="name: genai-provider"))
    assert where("EXM-01", "exemption:genai-sandbox") == (
        "ai.yaml", _text_line(ai_file, "expires: '2024-06-29'", after="name: genai-sandbox"))
    text = invoke("validate", "--topology", str(prod.folder))
    assert text.returncode == 2 and "AI-01" in text.stdout and "EXM-01" in text.stdout
