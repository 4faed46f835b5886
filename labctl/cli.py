"""labctl: set up, validate, inspect, deploy and check the lab (a thin layer over ansible-runner)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from labctl import __version__, catalog, project
from labctl import firewall as firewall_lib
from labctl import gpu as gpu_lib
from labctl import health as health_lib
from labctl import inventory as inventory_loader
from labctl import vault as vault_lib
from labctl.model import Lab
from labctl.validate import notes as validation_notes
from labctl.validate import validate as validate_lab

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
sim_app = typer.Typer(
    help="The simulated lab: one container per machine, reached over SSH like the real ones.",
    no_args_is_help=True,
)
app.add_typer(sim_app, name="sim")
models_app = typer.Typer(
    help="The models labctl plan places on the inference machines.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
db_app = typer.Typer(
    help="The PostgreSQL primary and its replicas: promote a replica, rejoin a machine as a replica.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(
    help="The gateway's virtual keys: per-person or per-program keys with models, rates and budgets.",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

console = Console()
err = Console(stderr=True)

# labctl validated the inventory (same code, same files) before it starts a playbook.
VALIDATED = {"labctl_inventory_validated": True}
# Commands that pass unknown options on to ansible-playbook (-e, --tags, --limit, -v, ...).
PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


class State:
    sim: bool = False
    inventories: list[Path] = []  # noqa: RUF012 - set once by the callback


state = State()

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
SimOpt = Annotated[bool, typer.Option("--sim", help="Work on the simulated lab (after `labctl sim up`).")]
TargetArg = Annotated[str, typer.Argument(help="A machine, a group, an Ansible host pattern, or 'all'.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"labctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    sim: SimOpt = False,
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


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _root() -> Path:
    try:
        root = project.root()
    except project.ProjectError as exc:
        raise _fail(str(exc)) from exc
    # labctl reads inventories with the project's Ansible settings, as its playbooks do.
    os.environ.setdefault("ANSIBLE_CONFIG", str(root / "ansible.cfg"))
    return root


def _target(root: Path, sim: bool) -> project.Target:
    try:
        return project.target(root, sim=sim or state.sim, extra=state.inventories)
    except project.ProjectError as exc:
        raise _fail(str(exc)) from exc


def _lab(target: project.Target) -> Lab:
    try:
        password = vault_lib.password(target.env)
        return inventory_loader.load(target.sources, vault_password=password)
    except (inventory_loader.InventoryError, vault_lib.VaultError) as exc:
        raise _fail(str(exc)) from exc


def _problems(lab: Lab, **options: bool) -> list[Any]:
    """Validation, with a variable that cannot be read (a vault the password does not open) as a
    message instead of a traceback."""
    try:
        return validate_lab(lab, **options)
    except (inventory_loader.InventoryError, vault_lib.VaultError) as exc:
        raise _fail(str(exc)) from exc


def _checked_lab(
    target: project.Target, *, secrets: bool = True, decrypted: bool = False, as_json: bool = False
) -> Lab:
    """The inventory, refused (exit 1, every problem named) when validation finds anything.
    `decrypted`: the command hands secrets to machines, so vaulted values must be readable."""
    lab = _lab(target)
    problems = _problems(lab, secrets=secrets, decrypted=decrypted)
    for note in validation_notes(lab):
        err.print(f"[yellow]note:[/yellow] {note}")
    if problems:
        raise _refuse(problems, as_json)
    return lab


def _refuse(problems: list[Any], as_json: bool, what: str = "inventory problem(s)") -> typer.Exit:
    """Every problem named (host, variable, what is wrong); exit 1."""
    if as_json:
        print(json.dumps({"ok": False, "problems": [asdict(p) for p in problems]}))
        return typer.Exit(1)
    table = Table("host", "variable", "problem", title=f"{len(problems)} {what}; nothing was touched")
    for p in problems:
        table.add_row(p.host, p.variable, p.message)
    err.print(table)
    return typer.Exit(1)


@app.command()
def validate(as_json: JsonOpt = False, sim: SimOpt = False) -> None:
    """Check the inventory offline (no machine is contacted); exit 1 when anything is wrong."""
    started = time.perf_counter()
    lab = _lab(_target(_root(), sim))
    problems = _problems(lab)
    notes = validation_notes(lab)
    elapsed = time.perf_counter() - started
    if as_json:
        print(json.dumps({"ok": not problems, "problems": [asdict(p) for p in problems], "notes": notes}))
    else:
        for note in notes:
            err.print(f"[yellow]note:[/yellow] {note}")
        if problems:
            table = Table("host", "variable", "problem", title=f"{len(problems)} inventory problem(s)")
            for p in problems:
                table.add_row(p.host, p.variable, p.message)
            err.print(table)
        else:
            console.print(f"[green]inventory is valid[/green] ({elapsed:.2f}s)")
    raise typer.Exit(1 if problems else 0)


@app.command()
def services(
    host: Annotated[str | None, typer.Option(help="Only the services on this machine.")] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The placement table of docs/architecture.md.")
    ] = False,
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """The service catalog: every service instance derived from the inventory."""
    lab = _checked_lab(_target(_root(), sim), secrets=False, as_json=as_json)
    if markdown:
        print(catalog.placement_markdown(lab), end="")
        return
    instances = [i for i in catalog.instances(lab) if host in (None, i.host)]
    if as_json:
        print(json.dumps([i.as_dict() for i in instances]))
        return
    table = Table(
        "service", "host", "tier", "listens on", "ports", "health", "image", title="labctl services"
    )
    for i in instances:
        ports = ", ".join(f"{k}={v}" for k, v in i.ports.items())
        where = "host network" if i.network == "host" else i.bind_address
        table.add_row(i.service, i.host, i.tier, where, ports, i.health_url or "-", i.image)
    console.print(table)


@app.command()
def plan(as_json: JsonOpt = False, sim: SimOpt = False) -> None:
    """Where each model runs: per GPU machine its models, VRAM used / total and headroom.

    A placement that over-commits a machine or cannot be met is refused (exit 1), each problem
    naming the model and the machine; `labctl validate` refuses it too."""
    from labctl import models, schema

    lab = _lab(_target(_root(), sim))
    problems = _problems(lab, secrets=False)
    try:
        settings = schema.platform(lab, lab.anchor or "")
    except ValueError:  # malformed settings: validation named them
        raise _refuse(problems, as_json) from None
    placing = set(models.problems(lab, settings))
    others = [p for p in problems if p not in placing]
    if others:
        raise _refuse(others, as_json)
    placement = models.plan(lab, settings)
    if as_json:
        print(json.dumps({"ok": not problems, **placement.as_dict()}))
        raise typer.Exit(1 if problems else 0)
    table = Table(title="labctl plan (VRAM, GiB)")
    for column in ("machine", "GPUs", "used / total", "headroom"):
        table.add_column(column)
    table.add_column("model", no_wrap=True)
    table.add_column("GiB", justify="right")
    table.add_column("backend")
    for node in placement.nodes:
        used = placement.used_gb(node.name)
        headroom = node.vram_gb - used
        colour = "red" if headroom < 0 else "yellow" if headroom < 0.1 * node.vram_gb else "green"
        first = [
            node.name,
            f"{node.cards}x {node.gpu.removeprefix('GeForce ')}",
            f"{used:g} / {node.vram_gb:g}",
            f"[{colour}]{headroom:.1f}[/{colour}]",
        ]
        standin = lab.var(node.name, "labctl_inference_standin", None)
        rows = [
            (d.model, f"{d.vram_gb:g}", f"{d.backend} -> {standin} (stand-in)" if standin else d.backend)
            for d in placement.on(node.name)
        ] or [("-", "", "")]
        for number, row in enumerate(rows):
            table.add_row(
                *(first if number == 0 else ["", "", "", ""]), *row, end_section=number == len(rows) - 1
            )
    console.print(table)
    if problems:
        raise _refuse(problems, False, "placement problem(s)")


@app.command()
def init(
    rotate: Annotated[
        list[str] | None, typer.Option("--rotate", help="Generate this secret anew (repeatable).")
    ] = None,
    given: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Store a secret you provide (an API token), read from the terminal without echo or "
            "from standard input (repeatable on a terminal).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """Generate every secret the catalog declares into the inventory's ansible-vault file.

    Existing secrets are kept; `--rotate NAME` replaces one and names the stacks to redeploy.
    Secrets you provide (catalog form `provided`, such as a Hugging Face token) stay empty until
    `--set NAME`. The vault password is created on first use (see `labctl/vault.py` for where it
    lives)."""
    target = _target(_root(), sim)
    changes, created = _init(target, rotate or [], _provided(given or []))
    if as_json:
        print(json.dumps({"vault": str(target.vault_file), "changes": [asdict(c) for c in changes]}))
        return
    if created:
        console.print(
            f"created the vault password in [bold]{created}[/bold] (mode 0600): back it up; "
            "without it the vault cannot be read"
        )
    table = Table("secret", "action", "used by", title=f"secrets in {target.vault_file}")
    for change in changes:
        table.add_row(change.name, change.action, ", ".join(change.services))
    console.print(table)
    rotated = [c for c in changes if c.action == "rotated"]
    if rotated:
        lab = _lab(target)
        names = {c.name for c in rotated}
        using = [i for i in catalog.instances(lab) if names & set(i.secrets)]
        hosts = sorted({i.host for i in using})
        where: dict[str, list[str]] = {}
        for instance in using:
            where.setdefault(instance.service, []).append(instance.host)
        stacks = "; ".join(f"{service} on {', '.join(on)}" for service, on in where.items())
        console.print(
            f"redeploy to apply: {stacks or 'no stack'} -- "
            f"`labctl{' --sim' if target.sim else ''} deploy {','.join(hosts) or 'all'}`"
        )


def _provided(names: list[str]) -> dict[str, str]:
    """The values of secrets the owner gives: typed without echo, or one value on standard input."""
    if not names:
        return {}
    if not sys.stdin.isatty():
        if len(names) > 1:
            raise _fail("give one --set NAME at a time when the value comes on standard input")
        return {names[0]: sys.stdin.read().strip()}
    return {name: typer.prompt(f"{name}", hide_input=True) for name in names}


def _init(
    target: project.Target, rotate: list[str], provided: dict[str, str] | None = None
) -> tuple[list[vault_lib.Change], Path | None]:
    lab = _checked_lab(target, secrets=False)
    try:
        password, created = vault_lib.ensure_password(target.env)
        declared = catalog.declared_secrets(lab)
        return vault_lib.init(target.vault_file, declared, password, rotate, provided), created
    except vault_lib.VaultError as exc:
        raise _fail(str(exc)) from exc


class LiveProgress:
    """The current play and task with a live count of machines through the task, above a line per
    change or failure as it happens."""

    def __init__(self, lab: Lab, run_hosts: list[str], tiers: list[str]) -> None:
        self.lab = lab
        self.run_hosts = run_hosts
        self.tiers = tiers
        self.play_name = ""
        self.play_hosts: list[str] = []
        self.task_name = ""
        self.done: set[str] = set()
        self.changed = 0
        self.failed: set[str] = set()
        self.live = Live(Text(""), console=console, refresh_per_second=4, transient=True)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def _hosts_of(self, pattern: str) -> list[str]:
        if pattern.startswith("labctl_tier_"):
            tier = int(pattern.rsplit("_", 1)[1])
            return [h for h in self.run_hosts if tier in catalog.host_tiers(self.lab, h)]
        named = set(self.lab.match(pattern))
        return [h for h in self.run_hosts if h in named]

    def play(self, name: str, pattern: str) -> None:
        label = name
        if pattern.startswith("labctl_tier_"):
            index = int(pattern.rsplit("_", 1)[1]) - 1
            label = f"{name} ({self.tiers[index]})" if index < len(self.tiers) else name
        self.play_name = label
        self.play_hosts = [h for h in self._hosts_of(pattern) if h not in self.failed]
        if self.play_hosts:
            self.live.console.print(f"[bold]{label}[/bold] [dim]({len(self.play_hosts)} machines)[/dim]")
        self.task("")

    def task(self, name: str) -> None:
        self.task_name = name
        self.done = set()
        self._draw()

    def result(self, host: str, task: str, outcome: str, message: str = "") -> None:
        self.done.add(host)
        if outcome == "changed":
            self.changed += 1
        if outcome in ("failed", "unreachable"):
            self.failed.add(host)
        if outcome in ("changed", "failed", "unreachable"):
            colour = {"changed": "yellow"}.get(outcome, "red")
            detail = f": {message.splitlines()[0][:100]}" if message else ""
            self.live.console.print(f"  [{colour}]{outcome:>11}[/{colour}] {host:<11} {task}{detail}")
        self._draw()

    def _draw(self) -> None:
        total = len(self.play_hosts) or 1
        line = Text.assemble(
            (f"{self.play_name}", "bold"),
            f"  {self.task_name}  ",
            (f"{len(self.done)}/{total} machines", "cyan"),
            f"  changed {self.changed}",
            (f"  failed {len(self.failed)}" if self.failed else "", "red"),
        )
        self.live.update(line)


def _run_hosts(lab: Lab, target: str) -> list[str]:
    """The managed machines a target names, or a clear refusal (exit 2)."""
    hosts = lab.match(target)
    managed = set(lab.managed)
    chosen = [h for h in lab.managed if h in hosts]
    if chosen:
        return chosen
    if hosts:
        others = ", ".join(sorted(hosts))
        raise _fail(f"'{target}' names {others}, which labctl does not manage (not in group 'lab')")
    if target in lab.groups:
        raise _fail(f"group '{target}' has no machine")
    known = ", ".join(sorted(managed))
    raise _fail(f"no machine or group '{target}' in the inventory (machines: {known})")


def _extra(ctx: typer.Context) -> tuple[list[str], str | None]:
    """Arguments for ansible-playbook, with any --limit/-l taken out (labctl combines it with the target)."""
    args = list(ctx.args)
    limit = None
    for flag in ("--limit", "-l"):
        while flag in args:
            index = args.index(flag)
            limit = args[index + 1] if index + 1 < len(args) else None
            del args[index : index + 2]
    for arg in list(args):
        if arg.startswith("--limit="):
            limit = arg.split("=", 1)[1]
            args.remove(arg)
    if "--sim" in args:
        args.remove("--sim")
        state.sim = True
    return args, limit


def _playbook_run(
    ctx: typer.Context, target: str, sim: bool, as_json: bool, *, decrypted: bool
) -> tuple[Path, project.Target, Lab, list[str], list[str]]:
    """What a playbook command needs: the project, its inventory (validated), the machines the
    target names (with any --limit) and the arguments that go on to ansible-playbook."""
    extra, limit = _extra(ctx)
    root = _root()
    tgt = _target(root, sim)
    lab = _checked_lab(tgt, decrypted=decrypted, as_json=as_json)
    hosts = _run_hosts(lab, target if not limit else f"{target}:&{limit}")
    return root, tgt, lab, hosts, extra


def _run(
    root: Path,
    tgt: project.Target,
    playbook: str,
    hosts: list[str],
    extra: list[str],
    progress: Any = None,
    **extravars: Any,
) -> Any:
    """A playbook on `hosts` of the target's inventory, which labctl has validated."""
    from labctl import runner

    return runner.run_playbook(
        root,
        playbook,
        tgt.sources,
        limit=",".join(hosts),
        extravars={**VALIDATED, **extravars},
        extra_args=extra,
        env=tgt.env,
        progress=progress,
    )


def _summary(result: Any, lab: Lab | None, title: str) -> None:
    table = Table("host", "ok", "changed", "failed", "unreachable", "skipped", "status", title=title)
    names = lab.ordered(list(result.hosts)) if lab else sorted(result.hosts)
    for name in names:
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
    for name in names:
        for error in result.hosts[name].errors:
            err.print(f"[red]{name}[/red]: {error}")
    incomplete = [n for n in names if result.hosts[n].status == "incomplete"]
    if incomplete:
        err.print(
            f"[magenta]incomplete:[/magenta] {', '.join(incomplete)} did not get every tier "
            "(every machine of an earlier tier failed, so the later tiers were not deployed)"
        )
    for error in result.errors:
        err.print(f"[red]error:[/red] {error}")


def _result_json(result: Any, **extra: Any) -> str:
    return json.dumps(
        {
            "ok": extra.pop("ok", result.succeeded),
            "rc": result.rc,
            "hosts": {n: {**asdict(h), "status": h.status} for n, h in sorted(result.hosts.items())},
            "errors": result.errors,
            **extra,
        }
    )


def _deploy(
    root: Path,
    tgt: project.Target,
    lab: Lab,
    hosts: list[str],
    target: str,
    *,
    check: bool = False,
    diff: bool = False,
    extra: list[str] | None = None,
    as_json: bool = False,
) -> tuple[bool, str]:
    """Deploy the machines (site.yml), then refresh what the other machines derive from them;
    print the outcome (unless as_json). Whether both went through, and the outcome as JSON."""
    from labctl import runner

    started = time.perf_counter()
    common: dict[str, Any] = {"check": check, "diff": diff, "extra_args": extra or [], "env": tgt.env}
    refresh: Any = None
    with _progress(lab, hosts, catalog.tiers(lab), quiet=as_json) as progress:
        result = runner.run_playbook(
            root,
            "site.yml",
            tgt.sources,
            limit=",".join(hosts),
            extravars=VALIDATED,
            progress=progress,
            **common,
        )
        for host_result in result.hosts.values():
            # The last play of playbooks/deploy.yml marks machines that went through every tier.
            host_result.incomplete = not host_result.facts.get("labctl_deployed")
        # Where the deployed machines' /etc/hosts block did not change, the other machines' (the
        # same block, written by the last deploy) needs no rewrite either. Unknown (a run limited
        # by tags) counts as changed.
        names_changed = any(h.facts.get("common_hosts_block_changed", True) for h in result.hosts.values())
        others = catalog.consumers(lab, hosts, names_changed=names_changed)
        if others and result.succeeded:
            refresh = runner.run_playbook(
                root,
                "playbooks/refresh.yml",
                tgt.sources,
                limit=",".join(others),
                extravars={**VALIDATED, "labctl_changed_hosts": hosts},
                progress=progress,
                **common,
            )
    stale = (
        sorted(n for n, h in refresh.hosts.items() if h.status not in ("ok", "changed")) if refresh else []
    )
    ok = result.succeeded and (refresh is None or refresh.succeeded)
    refreshed = {n: h.status for n, h in sorted(refresh.hosts.items())} if refresh else {}
    errors = refresh.errors if refresh else []
    # Why a machine was not refreshed (the task that failed there and its message).
    unrefreshed = {n: refresh.hosts[n].errors for n in stale} if refresh else {}
    payload = _result_json(
        result, ok=ok, refreshed=refreshed, refresh_errors=errors, refresh_failures=unrefreshed
    )
    if not as_json:
        mode = " (check mode)" if check else ""
        _summary(result, lab, f"labctl deploy {target}{mode}: {time.perf_counter() - started:.0f}s")
        if refresh is not None:
            done = [n for n in lab.ordered(list(refresh.hosts)) if n not in stale]
            console.print(f"refreshed what {len(done)} other machine(s) derive from the inventory")
            for name in stale:
                errors = "; ".join(refresh.hosts[name].errors)[:200]
                err.print(
                    f"[red]{name} not refreshed[/red] ({refresh.hosts[name].status}: {errors}): it does "
                    f"not know about {', '.join(hosts)} yet; `labctl deploy {name}` when it is back"
                )
            for error in refresh.errors:
                err.print(f"[red]error:[/red] {error}")
    return ok, payload


@app.command(context_settings=PASSTHROUGH)
def deploy(
    ctx: typer.Context,
    target: TargetArg = "all",
    check: Annotated[bool, typer.Option("--check", help="Dry run: report what would change.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show file differences.")] = False,
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """Deploy the platform (site.yml) to machines, in dependency order.

    Deploying some machines also re-renders what the other machines derive from the inventory
    (/etc/hosts, and stacks that consume the deployed machines' services). Other options go to
    ansible-playbook: -e, --tags, --limit, -v, ..."""
    root, tgt, lab, hosts, extra = _playbook_run(ctx, target, sim, as_json, decrypted=True)
    ok, payload = _deploy(root, tgt, lab, hosts, target, check=check, diff=diff, extra=extra, as_json=as_json)
    if as_json:
        print(payload)
    raise typer.Exit(0 if ok else 1)


class _Quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(lab: Lab, hosts: list[str], tiers: list[str], *, quiet: bool) -> Any:
    return _Quiet() if quiet else LiveProgress(lab, hosts, tiers)


@app.command(context_settings=PASSTHROUGH)
def health(
    ctx: typer.Context, target: TargetArg = "all", as_json: JsonOpt = False, sim: SimOpt = False
) -> None:
    """Is every machine what the catalog and its last deploy say? Engine, stacks, files,
    containers and endpoints, one call per machine: healthy, unhealthy, drifted or unreachable."""
    started = time.perf_counter()
    from labctl import runner

    root, tgt, lab, hosts, extra = _playbook_run(ctx, target, sim, as_json, decrypted=False)
    result = runner.run_playbook(
        root,
        "playbooks/health.yml",
        tgt.sources,
        limit=",".join(hosts),
        extra_args=extra,
        env=tgt.env,
        extravars={
            **VALIDATED,
            "labctl_health_judge": False,
            "labctl_health_args": {
                name: {
                    "base_dir": lab.var(name, "labctl_base_dir"),
                    "endpoints": health_lib.endpoints(catalog.host_stacks(lab, name)),
                    "gpu": gpu_lib.probe_spec(
                        lab.var(name, "gpu", None),
                        bool(lab.var(name, "gpu_facts_check", lab.var(name, "labctl_gpu_passthrough", True))),
                    ),
                    "firewall": firewall_lib.probe_spec(lab, name),
                }
                for name in hosts
            },
        },
    )
    heal = f"labctl{' --sim' if tgt.sim else ''} deploy"
    reports: dict[str, Any] = {}
    for name in hosts:
        host_result = result.hosts.get(name)
        probe = host_result.facts.get("labctl_health_probe") if host_result else None
        report = health_lib.judge(probe, catalog.host_stacks(lab, name), name) if probe else None
        if host_result is None or host_result.unreachable or not report:
            why = "; ".join(host_result.errors)[:300] if host_result else "did not run"
            reports[name] = {
                "ok": False,
                "status": "unreachable",
                "checks": [{"check": "reachable", "ok": False, "detail": why, "kind": "engine"}],
            }
        else:
            reports[name] = dict(report)
        if not reports[name]["ok"] and reports[name]["status"] != "unreachable":
            reports[name]["heal"] = f"{heal} {name}"
            # A deploy stops at the GPU preflight while the driver does not answer: the driver first.
            if any(c["check"] == "GPU" and not c["ok"] for c in reports[name]["checks"]):
                reports[name]["heal_first"] = (
                    "bring its GPU driver back (the vendor's tool must list the declared cards; "
                    "often a reboot or a driver reinstall)"
                )
    ok = all(r["ok"] for r in reports.values()) and not result.errors
    elapsed = time.perf_counter() - started
    if as_json:
        print(json.dumps({"ok": ok, "seconds": round(elapsed, 2), "hosts": reports, "errors": result.errors}))
        raise typer.Exit(0 if ok else 1)
    table = Table("host", "status", "check", "detail", title=f"labctl health {target}: {elapsed:.1f}s")
    colours = {"healthy": "green", "unhealthy": "red", "drifted": "magenta", "unreachable": "red"}
    for name in hosts:
        report = reports[name]
        status = f"[{colours[report['status']]}]{report['status']}[/{colours[report['status']]}]"
        failing = [c for c in report["checks"] if not c["ok"]]
        if not failing:
            table.add_row(name, status, f"{len(report['checks'])} checks", "")
            continue
        for index, check in enumerate(failing):
            table.add_row(
                name if index == 0 else "",
                status if index == 0 else "",
                check["check"],
                str(check["detail"])[:110],
            )
    console.print(table)
    for name in hosts:
        if reports[name].get("heal"):
            first = f"{reports[name]['heal_first']}, then " if reports[name].get("heal_first") else ""
            err.print(f"[magenta]{name}[/magenta]: {first}heal with `{reports[name]['heal']}`")
    for error in result.errors:
        err.print(f"[red]error:[/red] {error}")
    raise typer.Exit(0 if ok else 1)


# What `labctl backup` backs up on a machine: the services whose data it keeps there.
BACKED_UP = ("postgres",)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    return f"{count:.1f}TiB"


@app.command(context_settings=PASSTHROUGH)
def backup(
    ctx: typer.Context,
    target: TargetArg = "all",
    kind: Annotated[
        str, typer.Option("--type", help="auto (full when the newest full one is old), full, diff or incr.")
    ] = "auto",
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """Back up now what the machines keep (the PostgreSQL primary: a pgBackRest base backup into
    the repository on the NAS, and a logical dump of every database), and report the newest
    backup: its size, how long it took and its age. The same job runs nightly from a timer."""

    if kind not in ("auto", "full", "diff", "incr"):
        raise _fail(f"--type must be auto, full, diff or incr, not '{kind}'")
    root, tgt, lab, hosts, extra = _playbook_run(ctx, target, sim, as_json, decrypted=True)
    keeping = {host for service in BACKED_UP for host in catalog.placed_on(lab, service)}
    wanted = [h for h in hosts if h in keeping]
    if not wanted:
        if as_json:
            print(json.dumps({"ok": True, "backups": {}}))
        else:
            console.print(f"nothing to back up on {target} (labctl backs up: {', '.join(BACKED_UP)})")
        raise typer.Exit(0)
    started = time.perf_counter()
    with _progress(lab, wanted, catalog.tiers(lab), quiet=as_json) as progress:
        result = _run(root, tgt, "playbooks/backup.yml", wanted, extra, progress, postgres_backup_type=kind)
    done = [n for n in wanted if n in result.hosts]
    reports = {n: result.hosts[n].facts.get("postgres_backup_report", {}) for n in done}
    if as_json:
        print(_result_json(result, backups=reports))
        raise typer.Exit(0 if result.succeeded else 1)
    _summary(result, lab, f"labctl backup {target}: {time.perf_counter() - started:.0f}s")
    table = Table("host", "what", "newest", "type", "database", "in repository", "took", "age", "dumps")
    now = time.time()
    for name, report in reports.items():
        for what, done in report.items():
            newest = done["newest"]
            table.add_row(
                name,
                what,
                newest["label"],
                newest["type"],
                _size(newest["database_bytes"]),
                _size(newest["repository_bytes"]),
                f"{newest['seconds']}s",
                _age(now - newest["stop"]),
                f"{len(done['dumps'])} ({_size(sum(d['bytes'] for d in done['dumps'].values()))})",
            )
    console.print(table)
    raise typer.Exit(0 if result.succeeded else 1)


RESTORE_TIME_HELP = 'Point in time to recover to, e.g. "2026-12-01 08:00:00+00" (default: the latest).'


@app.command(context_settings=PASSTHROUGH)
def restore(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="The machine that runs the PostgreSQL primary.")],
    at: Annotated[str, typer.Option("--time", help=RESTORE_TIME_HELP)] = "",
    force: Annotated[bool, typer.Option("--force", help="Stop a running primary, replace its data.")] = False,
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """Restore the PostgreSQL primary from the pgBackRest repository, to the latest archived
    state or to a point in time, verify every database reads back whole, then clone the
    replicas anew. A running primary is left alone without --force."""

    root, tgt, lab, hosts, extra = _playbook_run(ctx, target, sim, as_json, decrypted=True)
    primaries = catalog.placed_on(lab, "postgres")
    if len(hosts) != 1 or hosts[0] not in primaries:
        where = ", ".join(primaries) or "no machine"
        raise _fail(f"'{target}' is not the PostgreSQL primary's machine (the catalog places it on {where})")
    replicas = catalog.placed_on(lab, "postgres_replica")
    started = time.perf_counter()
    with _progress(lab, hosts + replicas, catalog.tiers(lab), quiet=as_json) as progress:
        result = _run(
            root,
            tgt,
            "playbooks/restore.yml",
            hosts + replicas,
            extra,
            progress,
            postgres_restore_target=at,
            postgres_restore_force=force,
        )
    report = result.hosts[hosts[0]].facts.get("postgres_restore_report") if hosts[0] in result.hosts else None
    if as_json:
        print(_result_json(result, restore=report, seconds=round(time.perf_counter() - started, 1)))
        raise typer.Exit(0 if result.succeeded else 1)
    _summary(result, lab, f"labctl restore {target}: {time.perf_counter() - started:.0f}s")
    if report:
        sizes = ", ".join(f"{db} {_size(n)}" for db, n in report["databases"].items())
        console.print(
            f"restored {hosts[0]} to {report['target']} from backup {report['backup']} "
            f"(timeline {report['timeline']}); verified: {sizes}"
        )
    raise typer.Exit(0 if result.succeeded else 1)


def _db_step(result: Any, lab: Lab, title: str, machine: str, as_json: bool) -> None:
    """Stop (exit 1) when the playbook did not go through on `machine`."""
    host = result.hosts.get(machine)
    # A machine that does not answer (a dead primary that cannot be fenced) is reported, not fatal.
    failed = any(h.failed for h in result.hosts.values())
    if host is not None and host.status in ("ok", "changed") and not failed:
        return
    if as_json:
        print(_result_json(result, ok=False))
    else:
        _summary(result, lab, title)
        err.print(f"[red]{title} failed[/red]: nothing was moved (placement unchanged)")
    raise typer.Exit(1)


@db_app.command("promote", context_settings=PASSTHROUGH)
def db_promote(
    ctx: typer.Context,
    machine: Annotated[str, typer.Argument(help="The machine of the replica to promote.")],
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """Make a replica the primary: fence the old primary (its server stopped, if its machine
    answers), promote the replica, move the primary's place to its machine (placement.yml beside
    the vault) and deploy it, which re-points every consumer (the postgres alias). Bring the old
    primary back as a replica with `labctl db rejoin`."""

    root, tgt, lab, hosts, extra = _playbook_run(ctx, machine, sim, as_json, decrypted=True)
    replicas, primaries = catalog.placed_on(lab, "postgres_replica"), catalog.placed_on(lab, "postgres")
    if len(hosts) != 1 or hosts[0] not in replicas:
        where = ", ".join(replicas) or "no machine"
        raise _fail(f"'{machine}' runs no PostgreSQL replica (the catalog places replicas on {where})")
    new = hosts[0]
    started = time.perf_counter()
    result = _run(root, tgt, "playbooks/promote.yml", [*primaries, new], extra, postgres_promote_to=new)
    _db_step(result, lab, f"labctl db promote {new}", new, as_json)
    promoted = time.perf_counter() - started
    facts = {name: host.facts for name, host in result.hosts.items()}
    fenced = {old: bool(facts.get(old, {}).get("postgres_fenced")) for old in primaries}
    moved = {"postgres": [new], "postgres_replica": [r for r in replicas if r != new]}
    project.write_placement(tgt, catalog.placement_overrides(lab, moved))
    lab = _checked_lab(tgt, decrypted=True, as_json=as_json)
    ok, payload = _deploy(root, tgt, lab, [new], new, extra=extra, as_json=as_json)
    report = {"primary": new, "fenced": fenced, "promoted_s": round(promoted, 1)}
    if as_json:
        report["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps({**json.loads(payload), **report}))
    else:
        console.print(f"{new} is the primary (writes accepted {promoted:.0f}s after the start)")
        for old, done in fenced.items():
            if not done:
                err.print(
                    f"[magenta]{old} was not fenced[/magenta] (unreachable): its server may start again "
                    f"when it comes back; run `labctl db rejoin {old}` then"
                )
    raise typer.Exit(0 if ok else 1)


@db_app.command("rejoin", context_settings=PASSTHROUGH)
def db_rejoin(
    ctx: typer.Context,
    machine: Annotated[str, typer.Argument(help="The machine to bring back as a replica (an old primary).")],
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """Bring a machine back as a replica of the current primary: its PostgreSQL data (an old
    primary's diverged history, or a broken replica's) is removed, then the primary and the
    machine are deployed: the primary gets its slot, the machine clones it and streams
    (synchronously, when postgres_synchronous is on)."""

    root, tgt, lab, hosts, extra = _playbook_run(ctx, machine, sim, as_json, decrypted=True)
    replicas, primaries = catalog.placed_on(lab, "postgres_replica"), catalog.placed_on(lab, "postgres")
    if len(hosts) != 1:
        raise _fail(f"'{machine}' names {len(hosts)} machines: rejoin one machine at a time")
    if not primaries:
        raise _fail("the catalog places no PostgreSQL primary to rejoin (promote a replica first)")
    old = hosts[0]
    if old in primaries:
        raise _fail(f"'{old}' runs the PostgreSQL primary: rejoin another machine as its replica")
    started = time.perf_counter()
    result = _run(root, tgt, "playbooks/rejoin.yml", [old], extra, postgres_rejoin=old)
    _db_step(result, lab, f"labctl db rejoin {old}", old, as_json)
    joined = {"postgres_replica": lab.ordered([*replicas, old])}
    project.write_placement(tgt, catalog.placement_overrides(lab, joined))
    lab = _checked_lab(tgt, decrypted=True, as_json=as_json)
    ok, payload = _deploy(root, tgt, lab, lab.ordered([*primaries, old]), old, extra=extra, as_json=as_json)
    if as_json:
        print(json.dumps({**json.loads(payload), "seconds": round(time.perf_counter() - started, 1)}))
    elif ok:
        console.print(f"{old} is a replica of {', '.join(primaries)} again")
    raise typer.Exit(0 if ok else 1)


@models_app.command("pull", context_settings=PASSTHROUGH)
def models_pull(
    ctx: typer.Context, target: TargetArg = "all", as_json: JsonOpt = False, sim: SimOpt = False
) -> None:
    """Put every model labctl plan places on the machines in place, with the engine that serves
    it there: Ollama pulls through its API (resuming an interrupted download), llama.cpp's GGUF
    files are copied from the workstation or downloaded. What is already there is left alone."""
    from labctl import models as models_lib

    started = time.perf_counter()
    root, tgt, lab, hosts, extra = _playbook_run(ctx, target, sim, as_json, decrypted=False)
    wanted = [h for h in hosts if models_lib.host_models(lab, h)]
    if not wanted:
        if as_json:
            print(json.dumps({"ok": True, "models": {}}))
        else:
            console.print(f"labctl plan places no model on {target}: nothing to pull")
        raise typer.Exit(0)
    with _progress(lab, wanted, catalog.tiers(lab), quiet=as_json) as progress:
        result = _run(root, tgt, "playbooks/models.yml", wanted, extra, progress)
    placed = {h: [d.model for d in models_lib.host_models(lab, h)] for h in wanted}
    if as_json:
        print(_result_json(result, models=placed))
    else:
        _summary(result, lab, f"labctl models pull {target}: {time.perf_counter() - started:.0f}s")
        count = sum(len(m) for m in placed.values())
        if result.succeeded:
            console.print(f"{count} model copies in place on {len(placed)} machine(s)")
    raise typer.Exit(0 if result.succeeded else 1)


@app.command()
def bench(
    url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible API (…/v1); default: the lab's gateway.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="LABCTL_BENCH_KEY", help="Bearer key; default: the gateway's master key (vault)."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model to ask; default: the chat model with most copies.")
    ] = None,
    concurrency: Annotated[
        str, typer.Option(help="Concurrencies to sweep, comma-separated.")
    ] = "1,2,4,8,16,32",
    requests: Annotated[int, typer.Option(min=1, help="Requests per step.")] = 50,
    prompts: Annotated[str, typer.Option(help="Prompt sizes: short, medium, long.")] = "short,medium,long",
    max_tokens: Annotated[int, typer.Option(min=1, help="Tokens asked for per answer.")] = 16,
    stream: Annotated[
        bool, typer.Option(help="Streamed answers (time to first token) or whole ones.")
    ] = True,
    compare: Annotated[
        str | None, typer.Option(help="A second endpoint (a backend directly), measured step by step.")
    ] = None,
    chaos: Annotated[
        str | None,
        typer.Option(
            help="Simulated lab: cut this machine's power in the middle of each step, then power it on."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where results.json and results.csv go.")] = None,
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """Load an OpenAI-compatible endpoint (the gateway by default): a sweep over prompt sizes and
    concurrencies of streamed chat completions, with requests/s, latency and time-to-first-token
    percentiles, tokens/s, errors and the spread over the gateway's deployments. --compare measures
    a second endpoint in the same run and prints the latency the first adds; --chaos cuts a
    simulated machine's power mid-step and reports client errors and the recovery."""
    import asyncio

    from labctl import bench as bench_lib
    from labctl import gateway as gateway_lib

    root = _root()
    tgt = _target(root, sim)
    lab = _lab(tgt)
    if url is None or key is None or model is None:
        found = _gateway(lab, tgt, url, key)
        url = url or f"{found.url}/v1"
        key = found.master_key if key is None else key
        if model is None:
            copies = Counter(r.model for r in gateway_lib.routes(lab) if r.mode == "chat")
            if not copies:
                raise _fail("the plan places no chat model: give --model")
            model = copies.most_common(1)[0][0]
    if chaos and not (sim or state.sim):
        raise _fail("--chaos cuts a simulated machine's power: use it with --sim")
    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError as exc:
        raise _fail(f"--concurrency: {concurrency!r} is not a list of numbers") from exc
    sizes = [p.strip() for p in prompts.split(",") if p.strip()]
    unknown = [p for p in sizes if p not in bench_lib.PROMPTS]
    if unknown or not levels or min(levels) < 1:
        raise _fail(f"--prompts takes {', '.join(bench_lib.PROMPTS)}; --concurrency positive numbers")
    out = out or root / ".labctl" / "bench" / time.strftime("%Y%m%d-%H%M%S")
    steps: list[Any] = []
    added: list[dict[str, Any]] = []
    recoveries: list[dict[str, Any]] = []
    for size in sizes:
        for level in levels:
            during = None
            marks: dict[str, float] = {}
            if chaos:
                during = _chaos(chaos, marks)
            step = asyncio.run(
                bench_lib.run_step(
                    url, key, model, size, level, requests, max_tokens, during=during, stream=stream
                )
            )
            steps.append(step)
            if chaos and "back" in marks:
                recoveries.append(
                    bench_lib.recovery(step, gateway_lib.route_id(model, chaos), marks["back"])
                    | {"concurrency": level}
                )
            if compare:
                direct = asyncio.run(
                    bench_lib.run_step(compare, "", model, size, level, requests, max_tokens, stream=stream)
                )
                steps.append(direct)
                added.append(bench_lib.added_latency(step, direct))
            if not as_json:
                row = step.summary()
                console.print(
                    f"{size:6} c={level:<3} {row['rps']:8.1f} req/s  p50 {row['latency_p50_ms']} ms  "
                    f"p95 {row['latency_p95_ms']} ms  ttft p50 {row['ttft_p50_ms']} ms  "
                    f"{row['tokens_per_s']} tok/s  errors {row['errors']}  balance {row['balance']}"
                )
                if added:
                    console.print(f"         added by {url}: {added[-1]}")
    files = bench_lib.write(out, steps, {"url": url, "model": model, "added": added, "chaos": recoveries})
    if as_json:
        print(
            json.dumps(
                {
                    "url": url,
                    "model": model,
                    "steps": [s.summary() for s in steps],
                    "added": added,
                    "chaos": recoveries,
                    "files": [str(f) for f in files],
                }
            )
        )
    else:
        for item in recoveries:
            console.print(f"chaos: {item}")
        console.print(f"results: {', '.join(str(f) for f in files)}")
    failed = sum(s.summary()["errors"] for s in steps)
    raise typer.Exit(1 if failed and not chaos else 0)


def _gateway(lab: Lab, tgt: project.Target, url: str | None, key: str | None) -> Any:
    """The catalog's gateway (or `url`) and its master key from the vault (or `key`)."""
    from labctl import keys as keys_lib

    placed = catalog.instances(lab, services=["litellm"])
    if url is None and not placed:
        raise _fail("the catalog places no gateway (litellm): give --url")
    host = placed[0].host if placed else "gateway"
    if key is None:
        try:
            key = vault_lib.read(tgt.vault_file, vault_lib.password(tgt.env) or "").get(
                "litellm_master_key", ""
            )
        except vault_lib.VaultError as exc:
            raise _fail(f"{exc} (or give --key)") from exc
    return keys_lib.Gateway(
        host=host,
        url=(url or f"http://{placed[0].address}:{placed[0].ports['api']}").rstrip("/").removesuffix("/v1"),
        master_key=key or "",
    )


GatewayUrlOpt = Annotated[
    str | None, typer.Option("--url", help="The gateway's address; default: the catalog's (litellm).")
]


def _keys_gateway(sim: bool, url: str | None) -> Any:
    """The gateway to ask about keys, refused before any request where it keeps none."""
    from labctl import schema

    tgt = _target(_root(), sim)
    lab = _lab(tgt)
    gateway = _gateway(lab, tgt, url, None)
    if url is None and gateway.host in lab.managed:
        database = lab.var(gateway.host, "litellm_database_enabled", True)
        if not schema.toggle(database) or not catalog.instances(lab, services=["postgres"]):
            raise _fail(
                f"{gateway.host}: the gateway keeps no keys without its database "
                "(litellm_database_enabled is false there, or the catalog places no PostgreSQL primary); "
                "only the master key is accepted",
                1,
            )
    return gateway


@keys_app.command("create")
def keys_create(
    alias: Annotated[str, typer.Argument(help="The key's name (who or what uses it).")],
    model: Annotated[
        list[str] | None, typer.Option("--model", help="A model it may use (repeat); default: all.")
    ] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute at most.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute at most.")] = None,
    budget: Annotated[float | None, typer.Option(min=0, help="Spend (USD) at most.")] = None,
    budget_period: Annotated[
        str | None, typer.Option(help="The budget resets after this long (30d, 1h, ...).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="The key stops working after this long (90d, ...).")
    ] = None,
    url: GatewayUrlOpt = None,
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """Make a key: printed once (the gateway keeps only its hash)."""
    from labctl import gateway as gateway_lib
    from labctl import keys as keys_lib

    if not alias.strip():
        raise _fail("the key needs a name")
    gateway = _keys_gateway(sim, url)
    lab = _lab(_target(_root(), sim))
    offered = {r.model for r in gateway_lib.routes(lab)} | {"external"}
    unknown = [m for m in model or [] if m not in offered]
    if unknown:
        raise _fail(
            f"--model: {', '.join(unknown)} is no model of the gateway ({', '.join(sorted(offered))})"
        )
    try:
        made = keys_lib.create(
            gateway,
            alias,
            models=list(model or []),
            rpm=rpm,
            tpm=tpm,
            budget=budget,
            budget_period=budget_period,
            expires=expires,
        )
    except keys_lib.KeysError as exc:
        raise _fail(str(exc), 1) from exc
    if as_json:
        print(json.dumps({"alias": alias, "key": made["key"], "expires": made.get("expires")}, default=str))
        return
    err.print(f"key '{alias}' made on {gateway.host}; it is shown only now:")
    print(made["key"])


@keys_app.command("list")
def keys_list(url: GatewayUrlOpt = None, as_json: JsonOpt = False, sim: SimOpt = False) -> None:
    """Every key with its models, limits, spend and expiry (never the key itself)."""
    from labctl import keys as keys_lib

    gateway = _keys_gateway(sim, url)
    try:
        rows = [keys_lib.row(k) for k in keys_lib.list_keys(gateway)]
    except keys_lib.KeysError as exc:
        raise _fail(str(exc), 1) from exc
    if as_json:
        print(json.dumps(rows, default=str))
        return
    table = Table(
        "alias", "key", "models", "rpm", "tpm", "budget", "spend", "expires", title=f"keys on {gateway.host}"
    )
    for r in rows:
        budget = "" if r["budget"] is None else f"{r['budget']}/{r['budget_period'] or 'total'}"
        table.add_row(
            str(r["alias"]),
            str(r["key"]),
            ", ".join(r["models"]),
            str(r["rpm"] or ""),
            str(r["tpm"] or ""),
            budget,
            str(r["spend"]),
            str(r["expires"] or "never") + (" (blocked)" if r["blocked"] else ""),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    alias: Annotated[str, typer.Argument(help="The key's name.")],
    url: GatewayUrlOpt = None,
    as_json: JsonOpt = False,
    sim: SimOpt = False,
) -> None:
    """Delete a key: requests with it are refused (401) from now on."""
    from labctl import keys as keys_lib

    gateway = _keys_gateway(sim, url)
    try:
        deleted = keys_lib.revoke(gateway, alias)
    except keys_lib.KeysError as exc:
        raise _fail(str(exc), 1) from exc
    if as_json:
        print(json.dumps({"revoked": deleted}))
    else:
        console.print(f"revoked: {', '.join(deleted) or 'nothing'}")
    raise typer.Exit(0 if deleted else 1)


def _chaos(machine: str, marks: dict[str, float]) -> Any:
    """A fault for one bench step: after 2 s cut the machine's power, after 10 s power it on
    (waiting for its SSH server); `marks` gets when it was back (seconds since the step began)."""
    import asyncio

    from labctl import sim

    async def fault(t0: float) -> None:
        await asyncio.sleep(2)
        await asyncio.to_thread(sim.act, "kill", machine)
        await asyncio.sleep(8)
        await asyncio.to_thread(sim.act, "start", machine)
        marks["back"] = time.perf_counter() - t0

    return fault


# --- the simulated lab ---------------------------------------------------------------------------


def _sim_playbook(extravars: dict[str, Any], as_json: bool, title: str) -> Any:
    from labctl import runner

    root = _root()
    started = time.perf_counter()
    sources = state.inventories or [root / "inventory"]
    result = runner.run_playbook(root, "playbooks/sim.yml", sources, extravars=extravars)
    # The simulated lab is built from this machine; the inventory check ran on its own.
    result.hosts = {n: h for n, h in result.hosts.items() if n == "localhost"} or result.hosts
    if not as_json:
        _summary(result, None, f"{title}: {time.perf_counter() - started:.0f}s")
    return result


def _sim_report(result: Any) -> dict[str, list[str]]:
    local = result.hosts.get("localhost")
    return dict((local.facts if local else {}).get("sim_lab_report") or {})


def _sim_init(as_json: bool) -> None:
    """The simulated lab keeps its own secrets: generate them into its inventory's vault."""
    root = _root()
    target = project.target(root, sim=True)
    changes, _ = _init(target, [])
    if not as_json:
        made = [c.name for c in changes if c.action == "generated"]
        if made:
            console.print(f"[dim]simulated lab secrets generated: {', '.join(made)}[/dim]")


@sim_app.command("up")
def sim_up(as_json: JsonOpt = False) -> None:
    """Build the images (cached) and start the simulated machines; write their inventory and secrets.

    A stopped machine is started as it is (its disk is kept); a machine is recreated only when the
    machine image or settings changed, and then named."""
    result = _sim_playbook({"sim_lab_state": "present"}, as_json, "labctl sim up")
    if result.succeeded:
        _sim_init(as_json)
    report = _sim_report(result)
    if as_json:
        print(_result_json(result, report=report))
    elif result.succeeded:
        for name in report.get("recreated", []):
            err.print(
                f"[magenta]{name} recreated[/magenta] (its machine image or settings changed): its "
                f"files are gone; run `labctl --sim deploy {name}`"
            )
        for name in report.get("removed", []):
            err.print(f"[magenta]{name} removed[/magenta]: the inventory no longer has it")
        console.print("[green]simulated lab is up[/green]: use `labctl --sim deploy all`")
    raise typer.Exit(0 if result.succeeded else 1)


@sim_app.command("down")
def sim_down(as_json: JsonOpt = False) -> None:
    """Remove the simulated machines, their disks, network, inventory and secrets (images stay cached)."""
    result = _sim_playbook({"sim_lab_state": "absent"}, as_json, "labctl sim down")
    if as_json:
        print(_result_json(result))
    raise typer.Exit(0 if result.succeeded else 1)


@sim_app.command("reset")
def sim_reset(
    target: Annotated[str, typer.Argument(help="A simulated machine, or 'all'.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Reimage simulated machines on purpose: a new disk (files and engine data are gone)."""
    from labctl import sim

    try:
        known = [m.name for m in sim.machines(deep=False) if m.kind == "machine"]
        chosen = None if target == "all" else sim.machine(target)
    except sim.SimError as exc:
        raise _fail(str(exc)) from exc
    if chosen is not None and chosen.kind != "machine":
        raise _fail(
            f"{target} is the NAS stand-in, not a managed machine: reset reimages machines "
            "(the NAS's disk goes with `labctl sim down`)"
        )
    names = known if chosen is None else [chosen.name]
    if not yes and not typer.confirm(f"Reimage {', '.join(names)}? Its files and data will be gone."):
        raise typer.Exit(1)
    result = _sim_playbook({"sim_lab_state": "present", "sim_lab_reset": names}, as_json, "labctl sim reset")
    if result.succeeded:
        _sim_init(as_json)
    if as_json:
        print(_result_json(result, reset=names))
    elif result.succeeded:
        console.print(f"reimaged {', '.join(names)}: run `labctl --sim deploy {','.join(names)}`")
    raise typer.Exit(0 if result.succeeded else 1)


@sim_app.command("status")
def sim_status(as_json: JsonOpt = False) -> None:
    """The simulated machines: container state, address, systemd and Docker engine."""
    from labctl import sim

    try:
        machines = sim.machines()
    except sim.SimError as exc:
        raise _fail(str(exc), 1) from exc
    if as_json:
        print(json.dumps([asdict(m) for m in machines]))
    else:
        table = Table("machine", "container", "state", "address", "systemd", "docker", title="simulated lab")
        for m in machines:
            table.add_row(m.name, m.container, m.state, m.address, m.systemd, m.docker)
        console.print(table if machines else "the simulated lab is not up (`labctl sim up`)")
    running = [m for m in machines if m.state == "running"]
    raise typer.Exit(0 if machines and len(running) == len(machines) else 1)


def _fault(action: str, help_text: str) -> None:
    def command(
        machine: Annotated[str, typer.Argument(help="A simulated machine.")],
        timeout: Annotated[int, typer.Option(help="Longest wait, in seconds.")] = 120,
    ) -> None:
        from labctl import sim

        try:
            console.print(sim.act(action, machine, timeout=timeout))
        except sim.SimError as exc:
            raise _fail(str(exc), 1) from exc

    command.__doc__ = help_text
    sim_app.command(action)(command)


for _action, _help in (
    ("stop", "Shut a simulated machine down cleanly (its disk is kept)."),
    ("start", "Power a stopped simulated machine on and wait for its SSH server."),
    ("kill", "Cut a simulated machine's power (SIGKILL; its disk is kept)."),
    ("pause", "Freeze a simulated machine: it answers nothing until unpaused."),
    ("unpause", "Let a frozen simulated machine run again."),
    ("isolate", "Cut a simulated machine off the lab network (it keeps running)."),
    ("rejoin", "Put an isolated simulated machine back on the lab network."),
    (
        "gpu-fail",
        "Make a simulated GPU machine's driver stop answering (its tool fails as the real one does).",
    ),
    ("gpu-repair", "Let a simulated GPU machine's driver answer again (a power cycle does too)."),
):
    _fault(_action, _help)
