"""The lab twin's tasks: ``lab.up``, ``lab.down``, ``lab.status``, ``lab.verify``, ``lab.fault``.

They need root on Linux (namespaces, bridges, mounts). ``up``, ``down`` and ``fault`` hold
the machine-wide lab lock for their duration; ``status`` and ``verify`` only read.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from dualdc import cli
from dualdc.lab import Lab, LabError, LabLock, load_lab, system
from dualdc.lab import core as lab_core
from dualdc.lab import verify as lab_verify
from dualdc.tasks import options

ENV_HELP = "Environment under inventories/ (default: lab; it must have environment.lab: true)."


class RichProgress(lab_core.Progress):
    """Lab progress on stderr: one bar per phase."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task: Any = None
        self.name = ""

    def _finish(self) -> None:
        if self.task is not None:
            total = self.bar.tasks[-1].total or 1
            self.bar.update(self.task, completed=total, total=total, description=self.name)

    def phase(self, text: str, total: int | None = None) -> None:
        self._finish()
        self.name = text
        self.task = self.bar.add_task(text, total=total)

    def advance(self, text: str = "") -> None:
        if self.task is not None:
            self.bar.update(self.task, advance=1, description=f"{self.name}: {text}" if text else self.name)

    def note(self, text: str) -> None:
        if self.task is not None and text.startswith("debootstrap:"):
            self.bar.update(self.task, description=f"base image: {text[len('debootstrap: '):][:60]}")
            return
        self.bar.console.print(f"  {text}")


@contextmanager
def _progress() -> Iterator[RichProgress]:
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=cli.console, transient=False)
    with bar:
        yield RichProgress(bar)


def _lab(env: str, progress: lab_core.Progress | None = None) -> Lab:
    """The lab of an environment, after checking this machine can run it (Linux, root, tools)."""
    try:
        system.require_environment()
        return load_lab(env, progress=progress)
    except LabError as exc:
        raise Exit(f"error: {exc}", code=exc.code) from None


@contextmanager
def _guard() -> Iterator[None]:
    try:
        yield
    except LabError as exc:
        raise Exit(f"error: {exc}", code=exc.code) from None


def _locked(lab: Lab) -> LabLock:
    return LabLock(lab.cfg.lock, on_wait=cli.console.print)


@task(help={"env": ENV_HELP})
def up(c: Context, env: str | None = None) -> None:
    """Build the lab twin (or finish or repair it): base image, bridges, routers, firewall, hosts with sshd.

    Idempotent: a second run changes nothing. Faults injected with lab.fault are healed.
    """
    env = options.env_of(c, env)
    with _guard(), _progress() as progress:
        lab = _lab(env, progress)
        with _locked(lab):
            report = lab.up()
    summary = ", ".join(f"{n} {k}" for k, n in sorted(report.changes.items())) or "nothing to change"
    image = " (base image built)" if report.base_built else ""
    cli.console.print(f"lab {env} is up: {len(lab.plan.hosts)} hosts, {len(lab.plan.routers)} sites; "
                      f"{summary}{image} in {report.seconds:.1f}s")
    cli.console.print(f"ssh: ssh -F {lab.cfg.ssh / 'config'} <host>; "
                      f"ansible: ansible -i inventories/{env} all -m ping")


@task(help={"env": ENV_HELP,
            "purge": "Also delete the hosts' disks (overlay upper dirs) and the lab's SSH keys."})
def down(c: Context, env: str | None = None, purge: bool = False) -> None:
    """Remove every namespace, bridge, veth, mount and process the lab made (and nothing else)."""
    env = options.env_of(c, env)
    with _guard(), _progress() as progress:
        lab = _lab(env, progress)
        with _locked(lab):
            report = lab.down(purge=purge)
    removed = ", ".join(f"{n} {k}" for k, n in report.removed.items() if n) or "nothing was running"
    if report.leftovers:
        raise Exit("error: lab.down left these behind:\n  " + "\n  ".join(report.leftovers), code=3)
    cli.console.print(f"lab {env} is down: {removed}")


def _status_table(status: lab_core.LabStatus) -> Table:
    table = Table(title=f"lab {status.env}")
    for col in ("host", "site", "mgmt address", "running", "sshd", "reachable", "fault"):
        table.add_column(col)
    for h in status.hosts:
        table.add_row(h.name, h.site, h.address, "up" if h.running else "down", "yes" if h.sshd else "no",
                      "yes" if h.reachable else "no", h.fault or "")
    return table


@task(help={"env": ENV_HELP, "format": "Output: 'text' (tables) or 'json'.",
            "output": options.HELP["output"]})
def status(c: Context, env: str | None = None, format: str = "text", output: str = "") -> None:
    """Show each lab host (running, sshd, reachable over SSH from here), the routers and the links.

    Exit 0 when everything is up, 3 when some host or link is not (a fault or a half-built lab).
    """
    env = options.env_of(c, env)
    if format not in ("text", "json"):
        raise cli.input_error(f"--format must be text or json, not {format!r}")
    lab = _lab(env)
    with _guard():
        st = lab.status()
    if format == "json":
        cli.write_output(json.dumps(st.to_json(), indent=2), output or None)
    else:
        text_console = Console(record=True, width=120, file=io.StringIO())
        text_console.print(_status_table(st))
        routers = Table(title="routers and inter-site links")
        for col in ("site", "present", "forwarding", "firewall", "links", "fault"):
            routers.add_column(col)
        for r in st.routers:
            routers.add_row(r.site, "yes" if r.present else "no", "yes" if r.forwarding else "no",
                            "loaded" if r.firewall else "missing",
                            ", ".join(f"{k}: {v}" for k, v in r.links.items()), r.fault or "")
        text_console.print(routers)
        cli.write_output(text_console.export_text(), output or None)
    if not st.all_up:
        raise Exit(code=cli.ExitCode.UNVERIFIED)


lab_ns = Collection("lab")
lab_ns.add_task(up)
lab_ns.add_task(down)
lab_ns.add_task(status)


def _verify_text(report: lab_verify.Report) -> str:
    table = Table(title="lab reachability matrix (router firewall and hosts, real connections)")
    for col in ("", "kind", "category", "why", "from", "to", "port", "expected", "result", "note"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        p = r.probe
        table.add_row("ok" if r.ok else "UNEXPECTED", p.kind, p.category, p.reason,
                      f"{p.label(p.source)} {p.src}", f"{p.label(p.destination)} {p.dst}",
                      f"{p.port}/{p.proto}", "open" if p.expect_open else "blocked", r.result, r.note)
    out = Console(record=True, width=200, file=io.StringIO())
    out.print(table)
    for line in report.skipped:
        out.print(f"not probed: {line}")
    for kind, names in report.faults.items():
        out.print(f"fault in effect: {kind} {', '.join(names)} (lab.fault; lab.up heals)")
    summary = report.to_json()["summary"]
    out.print(f"{summary['probes']} probes ({summary['declared']} declared, "
              f"{summary['forbidden']} forbidden), {summary['unexpected']} unexpected, "
              f"in {summary['seconds']}s")
    return out.export_text()


@task(help={"env": ENV_HELP, "format": "Output: 'text' (table) or 'json'.",
            "output": options.HELP["output"]})
def verify(c: Context, env: str | None = None, format: str = "text", output: str = "") -> None:
    """Probe the reachability matrix with real TCP/UDP connections between lab hosts.

    Every declared flow must connect; forbidden pairs (DMZ to internal, bank to bank, personal-data
    holders to the AI zone, the AI zone back into internal outside its publishing flows, anything to
    mgmt but the bastion, a sample of other pairs) must not. Exit 0 when every result is as
    expected, 2 when any is not (including probes that could not run because of a fault).
    """
    env = options.env_of(c, env)
    if format not in ("text", "json"):
        raise cli.input_error(f"--format must be text or json, not {format!r}")
    lab = _lab(env)
    with _guard():
        system.require_environment()
        try:
            lab.require_running()
        except LabError as exc:
            raise Exit(f"error: {exc}", code=cli.ExitCode.UNVERIFIED) from None
        with cli.console.status("probing the lab (listeners in each destination host, then connections)"):
            report = lab_verify.run(lab)
    if format == "json":
        cli.write_output(json.dumps(report.to_json(), indent=2), output or None)
    else:
        cli.write_output(_verify_text(report), output or None)
    if report.unexpected:
        raise Exit(code=cli.ExitCode.FINDINGS)


@task(help={"env": ENV_HELP,
            "host": "Take this host down (--down) or up (--up): its processes end, its links go down.",
            "link": "Cut (--cut) or restore (--restore) this inter-site link, e.g. dr-link-a.",
            "site": "Take a whole site down (--down) or up (--up): its hosts, router and links (DR drill).",
            "down": "With --host or --site: take it down.",
            "up": "With --host or --site: bring it back.",
            "cut": "With --link: cut it.",
            "restore": "With --link: restore it."})
def fault(c: Context, env: str | None = None, *, host: str = "", link: str = "", site: str = "",
          down: bool = False, up: bool = False, cut: bool = False, restore: bool = False) -> None:
    """Inject or clear a fault: a host down/up, an inter-site link cut/restored, a site down/up.

    Faults show in lab.status and lab.verify; lab.up heals them all.
    """
    env = options.env_of(c, env)
    targets = [t for t in (host, link, site) if t]
    if len(targets) != 1:
        raise cli.input_error("give exactly one of --host, --link or --site")
    if link:
        if cut == restore:
            raise cli.input_error("with --link give exactly one of --cut or --restore")
        if down or up:
            raise cli.input_error("--down/--up go with --host or --site; a link takes --cut or --restore")
    elif down == up:
        raise cli.input_error("give exactly one of --down or --up")
    elif cut or restore:
        raise cli.input_error("--cut/--restore go with --link")
    lab = _lab(env)
    with _guard(), _locked(lab):
        system.require_environment()
        if host:
            (lab.host_up if up else lab.host_down)(host)
            cli.console.print(f"host {host} is {'up' if up else 'down'}")
        elif link:
            lab.link(link, up=restore)
            cli.console.print(f"link {link} is {'restored' if restore else 'cut'}")
        else:
            lab.site(site, up=up)
            cli.console.print(f"site {site} is {'up' if up else 'down'}")


lab_ns.add_task(verify)
lab_ns.add_task(fault)
