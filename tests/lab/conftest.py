"""Fixtures for checks against the simulated lab (molecule's verify step, or after `labctl sim up`
and `labctl --sim deploy all`). Machines are read from the simulated lab's inventory. Checks look
inside a machine with testinfra's docker backend (a console, independent of the SSH path under
test) and drive the lab with the labctl CLI, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / ".labctl" / "sim"
SIM_INVENTORY = SIM / "inventory"
LABCTL = str(ROOT / ".venv" / "bin" / "labctl")


@dataclass(frozen=True)
class Machine:
    name: str
    container: str
    address: str


def sim_machines() -> list[Machine]:
    overlay = SIM_INVENTORY / "10-sim.yml"
    if not overlay.is_file():
        return []
    hosts = yaml.safe_load(overlay.read_text())["all"]["hosts"]
    return [
        Machine(name, f"labsim-{name}", spec["lab_address"])
        for name, spec in hosts.items()
        if spec.get("ansible_ssh_private_key_file")
    ]


MACHINES = sim_machines()

if not MACHINES:
    pytest.skip(
        "the simulated lab is not up: run ./scripts/test.sh (molecule test), or "
        "`labctl sim up && labctl --sim deploy all` and then `pytest tests/lab`",
        allow_module_level=True,
    )


def sim_env() -> dict[str, str]:
    return {**os.environ, "LABCTL_VAULT_PASSWORD_FILE": str(SIM / "vault-password")}


def labctl(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run the labctl CLI (as a user would) and return the finished process."""
    return subprocess.run(
        [LABCTL, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=sim_env()
    )


def labctl_json(*args: str, timeout: int = 900) -> tuple[int, Any]:
    proc = labctl(*args, "--json", timeout=timeout)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"labctl {' '.join(args)}: not JSON: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        ) from exc


def failing(report: Any) -> str:
    """What an assertion on labctl's JSON should show (the whole report is too long to read, and
    pytest shortens a message that is not a string): for `health`, each machine that is not
    healthy with its failing checks; for `deploy`, each machine not deployed and each one not
    refreshed, with their errors."""
    if not isinstance(report, dict) or "hosts" not in report:
        return json.dumps(report, indent=1, default=str)[-4000:]
    shown: dict[str, Any] = {"errors": report.get("errors"), "refresh_errors": report.get("refresh_errors")}
    for name, host in report["hosts"].items():
        if "checks" in host and not host.get("ok"):
            shown[name] = {
                "status": host.get("status"),
                "failing": {c["check"]: c["detail"] for c in host.get("checks", []) if not c.get("ok")},
            }
        elif "checks" not in host and (host.get("status") not in ("ok", "changed") or host.get("errors")):
            shown[name] = host
    shown["not refreshed"] = {
        n: s for n, s in (report.get("refreshed") or {}).items() if s not in ("ok", "changed")
    }
    return json.dumps(shown, indent=1, default=str)


def box_of(name: str) -> Any:
    return testinfra.get_host(f"docker://labsim-{name}")


def resolve(name: str, on: str) -> tuple[str, str]:
    """(IPv4 address, canonical name) of `name` as machine `on` resolves it (its resolver: files,
    then DNS). IPv4 only: the simulated machines' DNS (the engine's, on an internal network)
    answers an IPv6 query only after a 10 s timeout."""
    first = box_of(on).check_output(f"getent ahostsv4 {name}").splitlines()[0].split()
    return first[0], first[-1]


def sim_secrets() -> dict[str, Any]:
    """Every secret of the simulated lab's vault, decrypted."""
    from labctl import vault

    password = (SIM / "vault-password").read_text().strip()
    return dict(vault.read(SIM_INVENTORY / "vault.yml", password))


def sim_secret(name: str) -> str:
    return str(sim_secrets()[name])


@pytest.fixture(params=MACHINES, ids=[m.name for m in MACHINES])
def machine(request: pytest.FixtureRequest) -> Machine:
    return request.param


@pytest.fixture
def box(machine: Machine) -> Any:
    return box_of(machine.name)


@pytest.fixture(scope="session")
def machines() -> list[Machine]:
    return MACHINES


@pytest.fixture(scope="session")
def by_name() -> dict[str, Machine]:
    return {m.name: m for m in MACHINES}


@pytest.fixture(scope="session")
def monitor() -> Any:
    """The monitoring machine: what Prometheus will scrape from."""
    return box_of("moros")
