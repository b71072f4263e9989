"""Tasks of the stacks layer: render (offline, like ``helm template``) and preview (Pulumi engine)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from dualdc import cli
from dualdc.base.redact import clean
from dualdc.model import Layer, Topology
from dualdc.tasks import options

# dualdc.render and dualdc.pulumi bring in Pulumi (about 0.3 s): the tasks import them when
# they run, so every other command starts without it.


def _site(topology: Topology, site: str) -> str | None:
    if not site:
        return None
    known = sorted(s.name for s in topology.sites)
    if site not in known:
        raise cli.input_error(f"--site {site!r} is not a site of {topology.environment.name!r} "
                              f"(sites: {', '.join(known)})")
    return site


@task(help={"env": options.HELP["env"],
            "site": "Render only this site's stack (default: both site stacks and the replication stack).",
            "out": "Output folder (default: build/render).",
            "topology": "Render this topology folder instead of an environment (its stacks' "
                        "Pulumi.<stack>.yaml must exist under stacks/)."})
def render_(c: Context, env: str = "", site: str = "", out: str = "", topology: str = "") -> None:
    """Write every Kubernetes object the stacks declare as YAML, validated offline; exit 2 if invalid.

    Runs the stack programs under Pulumi's mock runtime (no CLI, no cluster, no secret) and
    writes build/render/<project>/<stack>/, one file per object, byte-identical across runs.
    """
    from dualdc import render  # noqa: PLC0415
    from dualdc.stacks.validation import UnsupportedVersion  # noqa: PLC0415

    loaded = cli.load(env or None, topology or None)
    out_root = Path(out) if out else render.RENDER_ROOT
    if out_root.exists() and not out_root.is_dir():
        raise cli.input_error(f"--out {cli.shown_path(out_root)} is not a folder: give a folder to write "
                              "the rendered objects into (it is created if missing)")
    try:
        targets = render.stack_targets(loaded, _site(loaded, site))
        stacks = []
        for target in targets:
            cli.console.print(f"rendering {target.label} ...")
            stack = render.collect(target, loaded)
            render.validate(stack, loaded)
            path = render.write(stack, loaded, out_root)
            stacks.append(stack)
            cli.console.print(f"  {len(stack.objects)} objects -> {path} ({stack.seconds:.2f} s)")
            for warning in stack.warnings:
                cli.console.print(f"  warning: {warning}", soft_wrap=True)
    except render.RenderError as exc:
        raise Exit(clean("error: cannot render the stacks:\n" + "\n".join(exc.problems)),
                   code=cli.ExitCode.INPUT) from None
    except OSError as exc:
        raise cli.input_error(f"cannot write under {cli.shown_path(out_root)}: {exc.strerror or exc}") \
            from None
    except UnsupportedVersion as exc:
        raise Exit(f"error: cannot validate the rendered objects: {exc}", code=cli.ExitCode.UNVERIFIED) \
            from None
    invalid = [(s, p, errs) for s in stacks for p, errs in sorted(s.invalid.items())]
    if invalid:
        lines = [f"{s.target.label}: {p}: {e}" for s, p, errs in invalid for e in errs]
        raise Exit(f"error: {len(invalid)} rendered object(s) fail schema validation:\n" + "\n".join(lines),
                   code=cli.ExitCode.FINDINGS)
    total = sum(len(s.objects) for s in stacks)
    cli.console.print(f"rendered {total} valid objects in {len(stacks)} stack(s) under {out_root}")


@task(help={"env": "Environment under inventories/ (default: lab; the lab has no Kubernetes API).",
            "site": "Preview only this site's stack (default: both site stacks, then the replication stack).",
            "backend": options.HELP["backend"],
            "expect_no_changes": "Exit 2 when a stack would change (a drift check)."})
def preview(c: Context, env: str | None = None, site: str = "", backend: str = "",
            expect_no_changes: bool = False) -> None:
    """Show what `pulumi up` would change, stack by stack, with the Automation API.

    Needs the pulumi CLI and its Kubernetes plugin (installed from files; exit 1 with how to
    install them where missing) and PULUMI_CONFIG_PASSPHRASE.
    """
    env = options.env_of(c, env)
    from dualdc import render  # noqa: PLC0415
    from dualdc.pulumi import Operation, PulumiFailed, PulumiUnavailable, StackRunner  # noqa: PLC0415

    topology = cli.load(env)
    if Layer.STACKS not in topology.environment.layers:
        raise cli.input_error(f"environment {env!r} has no 'stacks' layer")
    if topology.environment.lab:
        raise cli.input_error(f"environment {env!r} is the lab twin: it has no Kubernetes API to preview "
                              f"against. Use 'invoke render --env {env}' to see the manifests.")
    try:
        targets = render.stack_targets(topology, _site(topology, site))
    except render.RenderError as exc:
        raise cli.input_error("\n".join(exc.problems)) from None
    changed = []
    for target in targets:
        cli.console.print(f"previewing {target.label} ...")
        try:
            runner = StackRunner(target, env, backend or None, on_output=lambda line: print(line, end=""))
            outcome = runner.run(Operation.PREVIEW)
        except PulumiUnavailable as exc:
            raise cli.input_error(str(exc)) from None
        except PulumiFailed as exc:
            raise Exit(f"error: pulumi preview of {target.label} failed:\n{exc}", code=cli.ExitCode.INPUT) \
                from None
        summary = ", ".join(f"{op} {n}" for op, n in sorted(outcome.changes.items())) or "no resources"
        cli.console.print(f"  {target.label}: {summary}")
        if outcome.changed:
            changed.append(target.label)
    if expect_no_changes and changed:
        raise Exit(f"changes pending in: {', '.join(changed)}", code=cli.ExitCode.FINDINGS)
