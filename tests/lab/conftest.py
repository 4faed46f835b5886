"""Fixtures for checks against the simulated lab (molecule's verify step, or after `labctl sim up`
and `labctl --sim deploy all`). Machines are read from the simulated lab's inventory and reached
with testinfra's docker backend (docker exec into each machine's container)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
import yaml

ROOT = Path(__file__).resolve().parents[2]
SIM_INVENTORY = ROOT / ".labctl" / "sim" / "inventory"


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
        Machine(name, spec["ansible_host"], spec["lab_address"])
        for name, spec in hosts.items()
        if spec.get("ansible_connection")
    ]


MACHINES = sim_machines()

if not MACHINES:
    pytest.skip("the simulated lab is not up (labctl sim up)", allow_module_level=True)


@pytest.fixture(params=MACHINES, ids=[m.name for m in MACHINES])
def machine(request: pytest.FixtureRequest) -> Machine:
    return request.param


@pytest.fixture
def box(machine: Machine) -> testinfra.host.Host:
    return testinfra.get_host(f"docker://{machine.container}")


@pytest.fixture(scope="session")
def monitor() -> testinfra.host.Host:
    """The monitoring machine: what Prometheus will scrape from."""
    (moros,) = [m for m in MACHINES if m.name == "moros"]
    return testinfra.get_host(f"docker://{moros.container}")


@pytest.fixture(scope="session")
def machines() -> list[Machine]:
    return MACHINES


@pytest.fixture(scope="session")
def labctl() -> list[str]:
    return [str(ROOT / ".venv" / "bin" / "labctl"), "--sim"]
