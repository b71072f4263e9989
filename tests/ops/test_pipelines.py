"""The GitOps pipelines are linted, and every `invoke` command they run exists with the flags used.

Linters (offline, from the dev extra): check-jsonschema with its vendored GitHub Actions workflow and
GitLab CI schemas, and ShellCheck over every shell step. The invoke commands are parsed by invoke's
own parser against the Collection in tasks.py.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke.exceptions import ParseError
from invoke.parser import Parser, ParserContext

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GITLAB = ROOT / ".gitlab-ci.yml"
#: Actions GHES bundles in its local `actions` organisation; nothing else may be used (air-gapped).
ALLOWED_ACTIONS = {"actions/checkout", "actions/upload-artifact"}


def tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    which = shutil.which(name)
    if which is None:
        pytest.fail(f"{name} is missing: pip install -e '.[dev]' (the dev extra carries it)")
    return which


def schema_check(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against one of its vendored schemas (offline)."""
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load(path: Path) -> Any:
    # yaml.safe_load reads the GitHub `on:` key as True (YAML 1.1); normalise it.
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and True in data:
        data["on"] = data.pop(True)
    return data


def github_scripts() -> list[tuple[str, str]]:
    found = []
    for path in WORKFLOWS:
        for job_name, job in load(path)["jobs"].items():
            for index, step in enumerate(job.get("steps", [])):
                if "run" in step:
                    found.append((f"{path.name}:{job_name}:{index}", step["run"]))
    return found


def gitlab_scripts() -> list[tuple[str, str]]:
    data = load(GITLAB)
    found = []
    for name, job in data.items():
        if not isinstance(job, dict):
            continue
        for key in ("before_script", "script", "after_script"):
            lines = job.get(key)
            if isinstance(lines, list):
                found.append((f".gitlab-ci.yml:{name}:{key}", "\n".join(lines)))
    return found


def invoke_commands(script: str) -> list[list[str]]:
    """The argv after each `invoke` in a shell script (up to a shell operator)."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        for i, token in enumerate(tokens):
            if token == "invoke" or token.endswith("/invoke"):
                argv = []
                for arg in tokens[i + 1 :]:
                    if arg in ("&&", "||", ";", "|", ">", ">>") or arg.endswith(";"):
                        break
                    argv.append(arg)
                commands.append(argv)
    return commands


def test_the_pipelines_are_there() -> None:
    assert {p.name for p in WORKFLOWS} >= {"pr.yml", "deploy.yml", "nightly-drift.yml"}
    assert GITLAB.is_file()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_github_workflows_pass_the_schema(path: Path) -> None:
    done = schema_check("vendor.github-workflows", path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_gitlab_ci_passes_the_schema() -> None:
    done = schema_check("vendor.gitlab-ci", GITLAB)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_linter_rejects_a_broken_pipeline(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        (ROOT / ".github/workflows/deploy.yml").read_text(encoding="utf-8").replace("runs-on:", "run-on:"),
        encoding="utf-8",
    )
    done = schema_check("vendor.github-workflows", broken)
    assert done.returncode == 1 and "runs-on" in done.stdout
    broken.write_text(
        GITLAB.read_text(encoding="utf-8").replace("when: manual", "when: sometimes"), encoding="utf-8"
    )
    done = schema_check("vendor.gitlab-ci", broken)
    assert done.returncode == 1 and "sometimes" in done.stdout


@pytest.mark.parametrize(("where", "script"), github_scripts() + gitlab_scripts(), ids=lambda v: str(v)[:60])
def test_shell_steps_pass_shellcheck(where: str, script: str, tmp_path: Path) -> None:
    # ${{ ... }} is substituted by GitHub before the shell runs: stand in a plain word.
    text = "set -e\n" + re.sub(r"\$\{\{[^}]*\}\}", "expr", script)
    path = tmp_path / "step.sh"
    path.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [tool("shellcheck"), "--shell=bash", "--severity=style", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{where}:\n{done.stdout}"


def _collection() -> Any:
    spec = importlib.util.spec_from_file_location("dualdc_root_tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ns


def test_every_invoke_command_exists_with_its_flags() -> None:
    ns = _collection()
    parser = Parser(contexts=ns.to_contexts(), initial=ParserContext())
    commands = [
        (where, argv)
        for where, script in github_scripts() + gitlab_scripts()
        for argv in invoke_commands(script)
    ]
    assert len(commands) >= 10
    called = set()
    for where, argv in commands:
        try:
            parsed = parser.parse_argv(argv)
        except ParseError as exc:
            pytest.fail(f"{where}: invoke {shlex.join(argv)}: {exc}")
        tasks = [ctx for ctx in parsed if ctx.name]
        assert tasks, f"{where}: {argv} names no task"
        for ctx in tasks:
            called.add(ctx.name)
            for arg in ctx.args.values():
                if arg.kind is str and arg.got_value:
                    assert arg.value, f"{where}: --{arg.name} has an empty value"
    assert called >= {"validate", "render", "deploy", "drift", "comment", "lint", "test"}


def test_format_values_are_known() -> None:
    known = {"text", "json", "markdown", "junit", "sarif"}
    for where, script in github_scripts() + gitlab_scripts():
        for argv in invoke_commands(script):
            for i, arg in enumerate(argv[:-1]):
                if arg == "--format":
                    assert argv[i + 1] in known, f"{where}: --format {argv[i + 1]}"


def test_air_gapped_self_hosted_and_gated() -> None:
    for path in WORKFLOWS:
        data = load(path)
        for name, job in data["jobs"].items():
            runs_on = job["runs-on"]
            assert "self-hosted" in runs_on, f"{path.name}:{name} must run on the DC's self-hosted runners"
            for step in job.get("steps", []):
                if "uses" in step:
                    action = step["uses"].split("@")[0]
                    assert action in ALLOWED_ACTIONS, f"{path.name}:{name} uses {action} (not on the mirror)"
    deploy = load(ROOT / ".github/workflows/deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["jobs"]["deploy"]["environment"] == "production"  # required reviewers gate it
    assert deploy["concurrency"]["cancel-in-progress"] is False
    nightly = load(ROOT / ".github/workflows/nightly-drift.yml")
    assert nightly["on"]["schedule"]
    uploads = [s for s in nightly["jobs"]["drift"]["steps"] if s.get("uses", "").startswith("actions/upload")]
    assert uploads and uploads[0]["if"] == "always()"  # the report is kept when drift fails the job
    pr = load(ROOT / ".github/workflows/pr.yml")
    assert "pull_request" in pr["on"] and "pull_request_target" not in pr["on"]
    gitlab = load(GITLAB)
    assert "include" not in gitlab and "image" not in gitlab.get("default", {})
    deploy_job = gitlab["deploy-production"]
    assert deploy_job["environment"]["name"] == "production"
    assert deploy_job["rules"][0]["when"] == "manual" and deploy_job["rules"][0]["allow_failure"] is False
    assert gitlab["drift-nightly"]["artifacts"]["when"] == "always"
    assert gitlab["drift-nightly"]["artifacts"]["reports"]["junit"] == "build/drift/drift.xml"
