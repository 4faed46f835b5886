"""Run a playbook with ansible-runner and turn its events into per-host results.

labctl keeps no Ansible logic of its own: it picks the playbook, the inventory, the limit and the
environment (vault password, simulated lab), shows progress from the event stream and summarises
the recap. A run in which no host ran is a failure, and a failure that a `rescue` handled is not.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner


@dataclass
class HostResult:
    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    errors: list[str] = field(default_factory=list)
    changed_tasks: list[str] = field(default_factory=list)
    modules: int = 0
    incomplete: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if not (self.ok or self.changed or self.failed or self.unreachable or self.skipped):
            return "not run"
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        if self.incomplete:
            return "incomplete"
        return "changed" if self.changed else "ok"


@dataclass
class RunResult:
    rc: int
    status: str
    hosts: dict[str, HostResult]
    errors: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return (
            self.rc == 0
            and bool(self.hosts)
            and all(h.status in ("ok", "changed") for h in self.hosts.values())
        )


# Actions that only evaluate on the control machine: they run no module on the host.
CONTROLLER_ONLY = frozenset(
    {
        "assert",
        "debug",
        "fail",
        "group_by",
        "import_role",
        "include_role",
        "include_tasks",
        "include_vars",
        "meta",
        "set_fact",
        "set_stats",
        "validate_argument_spec",
    }
)


class Progress:
    """Receives the run's events as they happen (see labctl.cli for the live display)."""

    def play(self, name: str, pattern: str) -> None: ...

    def task(self, name: str) -> None: ...

    def result(self, host: str, task: str, outcome: str, message: str = "") -> None: ...


def _message(data: dict[str, Any]) -> str:
    res = data.get("res") or {}
    parts = []
    for key in ("msg", "reason", "stderr"):
        value = res.get(key)
        if isinstance(value, list):
            value = "\n".join(str(m) for m in value)
        if value and str(value).strip() not in parts:
            parts.append(str(value).strip())
    return ": ".join(parts) or "failed"


def run_playbook(
    project: Path,
    playbook: str,
    inventories: Sequence[Path],
    *,
    limit: str | None = None,
    check: bool = False,
    diff: bool = False,
    extravars: dict[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    progress: Progress | None = None,
    verbose: bool = False,
    env: dict[str, str] | None = None,
) -> RunResult:
    """Run `playbook` (relative to the project) and collect per-host results.

    `extra_args` go to ansible-playbook as given (-e, --tags, -v, ...); `env` adds environment
    variables (Ansible settings, the vault password file).
    """
    hosts: dict[str, HostResult] = {}
    errors: list[str] = []

    def host(name: str) -> HostResult:
        return hosts.setdefault(name, HostResult(name))

    def on_event(event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        name = data.get("host") or ""
        task = str(data.get("task", ""))
        action = str(data.get("task_action", "")).rsplit(".", 1)[-1]
        if kind in ("runner_on_ok", "runner_on_failed") and name and action not in CONTROLLER_ONLY:
            host(name).modules += 1
        if kind == "runner_on_ok":
            res = data.get("res") or {}
            if res.get("changed"):
                host(name).changed_tasks.append(task)
            host(name).facts.update(res.get("ansible_facts") or {})
            outcome = "changed" if res.get("changed") else "ok"
        elif kind == "runner_on_failed":
            outcome = "ignored" if data.get("ignore_errors") else "failed"
            if outcome == "failed":
                host(name).errors.append(f"{task}: {_message(data)}")
        elif kind == "runner_on_unreachable":
            outcome = "unreachable"
            host(name).errors.append(f"{task}: {_message(data)}")
        elif kind == "runner_on_skipped":
            outcome = "skipped"
        elif kind == "playbook_on_play_start":
            if progress:
                progress.play(str(data.get("name", "")), str(data.get("pattern", "")))
            return True
        elif kind == "playbook_on_task_start":
            if progress:
                progress.task(task)
            return True
        elif kind == "playbook_on_stats":
            for key, attr in (
                ("ok", "ok"),
                ("changed", "changed"),
                ("failures", "failed"),
                ("dark", "unreachable"),
                ("skipped", "skipped"),
                ("rescued", "rescued"),
                ("ignored", "ignored"),
            ):
                for hostname, count in (data.get(key) or {}).items():
                    setattr(host(hostname), attr, int(count))
            for result in hosts.values():
                # A host stops at its first failure that nothing rescued, so that failure is the
                # last one it reported; earlier ones were rescued (the recap counts them apart).
                keep = result.failed + result.unreachable
                result.errors = result.errors[-keep:] if keep else []
            return True
        elif kind == "error" or (kind == "verbose" and "ERROR" in str(event.get("stdout", ""))):
            errors.append(str(event.get("stdout", "")).strip())
            return True
        else:
            return True
        if progress and name:
            progress.result(
                name, task, outcome, _message(data) if outcome in ("failed", "unreachable") else ""
            )
        return True

    cmdline: list[str] = []
    for inventory in inventories:
        cmdline += ["-i", str(inventory)]
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    cmdline += list(extra_args)
    with tempfile.TemporaryDirectory(prefix="labctl-run-") as private:
        runner = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(project),
            playbook=playbook,
            limit=limit,
            extravars=extravars or {},
            cmdline=" ".join(_quote(a) for a in cmdline),
            envvars={
                "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
                "ANSIBLE_FORCE_COLOR": "0",
                # ansible-runner turns host key checking off unless told otherwise; labctl keeps
                # Ansible's (and SSH's) default: a machine must be known before it is trusted.
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                # ansible-playbook from the same environment as labctl, activated or not.
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                **(env or {}),
            },
            event_handler=on_event,
            # No fact cache between runs: every run gathers the few facts it needs, so one
            # inventory's facts (the simulated lab's) can never stand in for another's.
            fact_cache_type="memory",
            quiet=not verbose,
        )
        rc = int(runner.rc if runner.rc is not None else 1)
        if rc != 0 and not any(h.errors for h in hosts.values()) and not errors:
            stdout = runner.stdout.read() if runner.stdout else ""
            errors.append("\n".join(line for line in stdout.splitlines() if line.strip())[-3000:])
    if rc == 0 and not hosts:
        errors.append("no machine ran: the target matched no host of the inventory")
    return RunResult(rc=rc, status=str(runner.status), hosts=hosts, errors=errors)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
