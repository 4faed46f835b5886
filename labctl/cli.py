"""labctl: validate, inspect, deploy and check the lab (a thin layer over ansible-runner)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from labctl import __version__, catalog, project
from labctl import inventory as inventory_loader
from labctl.model import Lab
from labctl.validate import validate as validate_lab

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
sim_app = typer.Typer(
    help="The simulated lab: ten containers named after the machines.", no_args_is_help=True
)
app.add_typer(sim_app, name="sim")

console = Console()
err = Console(stderr=True)


class State:
    sim: bool = False
    inventories: list[Path] = []  # noqa: RUF012 - set once by the callback


state = State()

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
TargetArg = Annotated[str, typer.Argument(help="A host, a group, or 'all'.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"labctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    sim: Annotated[
        bool, typer.Option("--sim", help="Work on the simulated lab (after `labctl sim up`).")
    ] = False,
    inventory: Annotated[
        list[Path] | None,
        typer.Option("--inventory", "-i", help="Inventory source(s) instead of the project's."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    state.sim = sim
    state.inventories = inventory or []


def _root() -> Path:
    try:
        return project.root()
    except project.ProjectError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _sources(root: Path) -> list[Path]:
    try:
        return project.inventory_sources(root, sim=state.sim, extra=state.inventories)
    except project.ProjectError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _lab(root: Path) -> Lab:
    return inventory_loader.load(_sources(root))


@app.command()
def validate(as_json: JsonOpt = False) -> None:
    """Check the inventory offline (no host is contacted); exit 1 when anything is wrong."""
    started = time.perf_counter()
    problems = validate_lab(_lab(_root()))
    elapsed = time.perf_counter() - started
    if as_json:
        console.print_json(json.dumps({"ok": not problems, "problems": [asdict(p) for p in problems]}))
    elif problems:
        table = Table("host", "variable", "problem", title=f"{len(problems)} inventory problem(s)")
        for p in problems:
            table.add_row(p.host, p.variable, p.message)
        err.print(table)
    else:
        console.print(f"[green]inventory is valid[/green] ({elapsed:.2f}s)")
    raise typer.Exit(1 if problems else 0)


@app.command()
def services(
    host: Annotated[str | None, typer.Option(help="Only the services on this host.")] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The placement table of docs/architecture.md.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The service catalog: every service instance derived from the inventory."""
    lab = _lab(_root())
    if markdown:
        print(catalog.placement_markdown(lab), end="")
        return
    instances = [i for i in catalog.instances(lab) if host in (None, i.host)]
    if as_json:
        console.print_json(json.dumps([i.as_dict() for i in instances]))
        return
    table = Table("service", "host", "stack", "address", "ports", "health", "image", title="labctl services")
    for i in instances:
        ports = ", ".join(f"{k}={v}" for k, v in i.ports.items())
        table.add_row(i.service, i.host, i.stack, i.address, ports, i.health_url or "-", i.image)
    console.print(table)


def _progress(done: dict[str, int]) -> Any:
    def show(host: str, task: str, outcome: str) -> None:
        if outcome == "play":
            console.print(f"[bold]{task}[/bold]")
            return
        done[host] = done.get(host, 0) + 1
        colour = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}.get(
            outcome, "dim"
        )
        if outcome in ("changed", "failed", "unreachable"):
            console.print(f"  [{colour}]{outcome:>11}[/{colour}] {host:<11} {task}")

    return show


def _in_deploy_order(names: Any) -> list[str]:
    """Hosts in tier order (the order of a deploy); the control machine and unknown names last."""
    try:
        return _lab(_root()).ordered(list(names))
    except Exception:  # an inventory that cannot be read still gets its summary
        return sorted(names)


def _summary(result: Any, title: str) -> None:
    table = Table("host", "ok", "changed", "failed", "unreachable", "skipped", "status", title=title)
    for name in _in_deploy_order(result.hosts):
        h = result.hosts[name]
        colour = {"ok": "green", "changed": "yellow", "incomplete": "magenta"}.get(h.status, "red")
        table.add_row(
            name,
            str(h.ok),
            str(h.changed),
            str(h.failed),
            str(h.unreachable),
            str(h.skipped),
            f"[{colour}]{h.status}[/{colour}]",
        )
    console.print(table)
    for name in sorted(result.hosts):
        for error in result.hosts[name].errors:
            err.print(f"[red]{name}[/red]: {error}")
    incomplete = sorted(n for n, h in result.hosts.items() if h.status == "incomplete")
    if incomplete:
        err.print(
            f"[magenta]incomplete:[/magenta] {', '.join(incomplete)} did not get every tier "
            "(a whole tier failed, so the later tiers were not deployed)"
        )
    for error in result.errors:
        err.print(f"[red]error:[/red] {error}")


def _run(playbook: str, target: str | None, **kwargs: Any) -> Any:
    from labctl import runner

    root = _root()
    return runner.run_playbook(
        root, playbook, _sources(root), limit=None if target in (None, "all") else target, **kwargs
    )


def _result_json(result: Any) -> str:
    return json.dumps(
        {
            "ok": result.succeeded,
            "rc": result.rc,
            "hosts": {n: {**asdict(h), "status": h.status} for n, h in sorted(result.hosts.items())},
            "errors": result.errors,
        }
    )


@app.command()
def deploy(
    target: TargetArg = "all",
    check: Annotated[bool, typer.Option("--check", help="Dry run: report what would change.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show file differences.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy the platform (site.yml) to a host, a group or all, in dependency order."""
    started = time.perf_counter()
    done: dict[str, int] = {}
    result = _run("site.yml", target, check=check, diff=diff, progress=None if as_json else _progress(done))
    for host_result in result.hosts.values():
        # The last play of playbooks/deploy.yml marks machines that went through every tier.
        host_result.incomplete = not host_result.facts.get("labctl_deployed")
    if as_json:
        console.print_json(_result_json(result))
    else:
        mode = " (check mode)" if check else ""
        _summary(result, f"labctl deploy {target}{mode}: {time.perf_counter() - started:.0f}s")
    raise typer.Exit(0 if result.succeeded else 1)


@app.command()
def health(target: TargetArg = "all", as_json: JsonOpt = False) -> None:
    """Check reachability, the Docker engine and every catalog service on the machines."""
    result = _run("playbooks/health.yml", target)
    reports = {n: h.facts.get("labctl_health_report") for n, h in sorted(result.hosts.items())}
    if as_json:
        console.print_json(json.dumps({"ok": result.succeeded, "hosts": reports, "errors": result.errors}))
        raise typer.Exit(0 if result.succeeded else 1)
    table = Table("host", "check", "ok", "detail", title=f"labctl health {target}")
    for name in _in_deploy_order(result.hosts):
        host_result = result.hosts[name]
        report = reports.get(name)
        if host_result.unreachable or not report:
            table.add_row(name, "reachable", "[red]no[/red]", "; ".join(host_result.errors)[:120])
            continue
        table.add_row(name, "reachable", "[green]yes[/green]", "")
        for check in report["checks"]:
            mark = "[green]yes[/green]" if check["ok"] else "[red]no[/red]"
            table.add_row("", check["check"], mark, str(check["detail"])[:120])
    console.print(table)
    for error in result.errors:
        err.print(f"[red]error:[/red] {error}")
    raise typer.Exit(0 if result.succeeded else 1)


@sim_app.command("up")
def sim_up(as_json: JsonOpt = False) -> None:
    """Build the images (cached) and start the ten simulated machines; write their inventory."""
    result = _sim_run("present", as_json)
    if result.succeeded and not as_json:
        console.print("[green]simulated lab is up[/green]: use `labctl --sim deploy all`")


@sim_app.command("down")
def sim_down(as_json: JsonOpt = False) -> None:
    """Remove the simulated machines, their volumes, network and inventory (images stay cached)."""
    _sim_run("absent", as_json)


def _sim_run(sim_state: str, as_json: bool) -> Any:
    from labctl import runner

    root = _root()
    started = time.perf_counter()
    result = runner.run_playbook(
        root, "playbooks/sim.yml", [root / "inventory" / "hosts.yml"], extravars={"sim_lab_state": sim_state}
    )
    if as_json:
        console.print_json(_result_json(result))
    else:
        _summary(
            result,
            f"labctl sim {'up' if sim_state == 'present' else 'down'}: {time.perf_counter() - started:.0f}s",
        )
    if not result.succeeded:
        raise typer.Exit(1)
    return result


@sim_app.command("status")
def sim_status(as_json: JsonOpt = False) -> None:
    """The simulated machines: container state, address, systemd and Docker engine."""
    from labctl import sim

    machines = sim.machines()
    if as_json:
        console.print_json(json.dumps([asdict(m) for m in machines]))
    else:
        table = Table("machine", "container", "state", "address", "systemd", "docker", title="simulated lab")
        for m in machines:
            table.add_row(m.name, m.container, m.state, m.address, m.systemd, m.docker)
        console.print(table if machines else "the simulated lab is not up (`labctl sim up`)")
    running = [m for m in machines if m.state == "running"]
    raise typer.Exit(0 if machines and len(running) == len(machines) else 1)
