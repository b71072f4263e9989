"""Tasks of the model layer: validate, schema, inventory."""

from __future__ import annotations

import json
import time

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from rich.table import Table

from dualdc import cli, inventory, schema
from dualdc.base.files import write_atomic
from dualdc.base.paths import project_root
from dualdc.loader import TopologyError
from dualdc.model import Severity
from dualdc.policy import RULES, iter_rules, run_policy
from dualdc.reports import validate as reports
from dualdc.tasks import options

ROOT = project_root()


@task(help={
    "env": options.HELP["env"],
    "topology": "Validate this topology folder or file instead of an environment.",
    "format": "Report format: text (tables by severity), json, sarif (code scanning) or junit (CI).",
    "output": options.HELP["output"],
    "fail_on": "Lowest severity that fails the run (exit 2): error (default), warning or advisory.",
    "list_rules": "List the rules with their severity, source and parameters, and exit.",
})
def validate(c: Context, *, env: str | None = None, topology: str | None = None, format: str = "text",
             output: str = "",
             fail_on: str = "error", list_rules: bool = False) -> None:
    """Check a topology against the policy pack (DESIGN §4) and the structural checks.

    Exit 0 when no finding fails, 1 on an input error (the topology or its policy overrides
    are invalid), 2 when a finding at --fail-on or worse is not waived. Warnings and
    advisories are reported but pass by default.
    """
    if format not in reports.FORMATS:
        raise cli.input_error(f"--format must be one of {', '.join(reports.FORMATS)}, not {format!r}")
    try:
        threshold = Severity(fail_on)
    except ValueError:
        raise cli.input_error(f"--fail-on must be error, warning or advisory, not {fail_on!r}") from None
    if list_rules:
        _print_rules()
        return
    started = time.perf_counter()
    loaded = cli.load(env, topology)
    cli.console.print(f"loaded {loaded.environment.name}: {len(loaded.hosts)} hosts, {len(loaded.segments)} "
                      f"segments, {len(loaded.flows)} flows; checking the rules", soft_wrap=True)
    try:
        report = run_policy(loaded)
    except TopologyError as exc:
        raise Exit(cli.format_problems(exc), code=cli.ExitCode.INPUT) from None
    if output:
        cli.output_target(output)  # refuse a bad --output before the work, not after
    text = reports.render(report, format, threshold, root=ROOT)
    cli.write_output(text, output or None)
    code = reports.exit_code(report, threshold)
    counts = report.counts()
    cli.console.print(
        f"{loaded.environment.name}: {len(report.failing(threshold))} failing finding(s) "
        f"({counts['error']} errors, {counts['warning']} warnings, {counts['advisory']} advisories, "
        f"{counts['waived']} waived) in {time.perf_counter() - started:.1f} s", soft_wrap=True)
    cli.finish("validate", code)


def _print_rules() -> None:
    table = Table(title="dualdc policy rules", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("severity")
    table.add_column("rule")
    table.add_column("source [edition; verification]")
    table.add_column("DORA / PCI DSS 4.0")
    table.add_column("parameters (defaults)")
    for rule in iter_rules():
        params = "\n".join(f"{n}={p.default!r}" for n, p in sorted(rule.params.items()))
        refs = "\n".join(f"{name} {ref}" for name, ref in (("DORA", rule.dora), ("PCI", rule.pci_dss)) if ref)
        table.add_row(rule.id, rule.severity.value, rule.title, rule.citation, refs or "-", params)
    cli.console.print(table)
    unverified = sum(not r.verified for r in iter_rules())
    cli.console.print(f"{unverified} of {len(RULES)} citations are unverified: not checked against the "
                      "text of the edition they name (전자금융감독규정 and 시행세칙 as rewritten "
                      "with effect from "
                      "2025-02-05); article numbers may have moved.", soft_wrap=True)


@task(help={"check": "Do not write: exit 2 when the committed schema differs from the model's."})
def schema_(c: Context, check: bool = False) -> None:
    """Write the topology's JSON Schema to schemas/topology.schema.json (for editors)."""
    path = ROOT / schema.SCHEMA_PATH
    text = schema.render()
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    if check:
        if current != text:
            raise Exit(f"{schema.SCHEMA_PATH} is stale: run 'invoke schema' and commit it",
                       code=cli.ExitCode.FINDINGS)
        cli.console.print(f"{schema.SCHEMA_PATH} is up to date")
        return
    if current == text:
        cli.console.print(f"{schema.SCHEMA_PATH} is up to date")
        return
    write_atomic(path, text)
    cli.console.print(f"wrote {schema.SCHEMA_PATH}")


@task(help={"env": options.HELP["env"],
            "fmt": "Output: 'graph' (as ansible-inventory --graph) or 'json'."})
def inventory_(c: Context, env: str | None = None, fmt: str = "graph") -> None:
    """Print the Ansible inventory built from an environment's topology."""
    env = options.env_of(c, env)
    if fmt not in ("graph", "json"):
        raise cli.input_error(f"--fmt must be graph or json, not {fmt!r}")
    topology = cli.load(env)
    try:
        built = inventory.build(topology)
    except (KeyError, ValueError) as exc:
        # what ansible-inventory reports as a parse error of the source, said readably
        raise cli.input_error(f"cannot build the inventory of {topology.environment.name}: "
                              f"{exc.args[0] if exc.args else exc}") from None
    if fmt == "json":
        cli.write_output(json.dumps(built, indent=2, sort_keys=True), None)
        return
    lines = ["@all:"]
    for group, hosts in built["groups"].items():
        lines.append(f"  |--@{group}:")
        lines += [f"  |  |--{host}" for host in sorted(hosts)]
    cli.write_output("\n".join(lines), None)
