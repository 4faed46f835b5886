"""The catalog's allow_from on the wire. The simulated lab runs its whole suite with every machine's
firewall on (the overlay sets firewall_enabled), so every other test shows that what the catalog
lets through works; these show that what it does not name is dropped -- the host-network
PostgreSQL and the Docker-published Redis alike (published ports bypass host rules that only look
at input) -- that the rules come back at boot, and that switching them off takes them away."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.lab.conftest import ROOT, SIM_INVENTORY, box_of, failing, labctl_json, sim_env

TABLE = "labctl_firewall"


def reaches(source: str, address: str, port: int) -> bool:
    """Whether machine `source` opens a TCP connection to address:port within 3 seconds."""
    return box_of(source).run(f"timeout 3 bash -c '</dev/tcp/{address}/{port}'").rc == 0


def workstation_reaches(address: str, port: int) -> bool:
    """Whether this machine -- the workstation's side of the simulated network -- connects."""
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


def firewall_role(host: str, *, enabled: bool) -> None:
    """Apply only the firewall role to one machine, on or off (as a deploy would)."""
    proc = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "ansible"),
            host,
            "-i",
            str(SIM_INVENTORY),
            "-m",
            "ansible.builtin.include_role",
            "-a",
            "name=firewall",
            "-e",
            f"firewall_enabled={enabled}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=sim_env(),
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_allow_from_admits_its_machines_and_drops_the_others(by_name):
    erebus = by_name["erebus"].address
    # PostgreSQL (host network): the gateway's machine and the replica's are clients.
    assert reaches("orpheus", erebus, 5432)
    assert reaches("thanatos", erebus, 5432)
    assert not reaches("kratos", erebus, 5432)
    # Redis (published by Docker, so through the forward hook): the gateway's machine only.
    assert reaches("orpheus", erebus, 6379)
    assert not reaches("thanatos", erebus, 6379)
    assert not reaches("kratos", erebus, 6379)
    assert not workstation_reaches(erebus, 6379)
    # The node exporter: Prometheus's machine only.
    assert reaches("moros", erebus, 9100)
    assert not reaches("orpheus", erebus, 9100)
    # What the catalog does not publish is left alone: SSH, from anywhere in the lab.
    assert reaches("kratos", erebus, 22)
    assert workstation_reaches(erebus, 22)
    # What the catalog opens to the workstation (the client network): the gateway.
    assert workstation_reaches(by_name["orpheus"].address, 4000)


def test_the_rules_are_kept_and_loaded_at_boot(machines):
    for machine in machines:
        box = box_of(machine.name)
        assert box.service("labctl-firewall").is_enabled, machine.name
        assert box.file("/etc/labctl/firewall.nft").mode == 0o644, machine.name
        assert TABLE in box.check_output("nft list tables"), machine.name


@pytest.fixture
def kratos_unguarded() -> Iterator[None]:
    firewall_role("kratos", enabled=False)
    try:
        yield
    finally:
        firewall_role("kratos", enabled=True)


def test_switched_off_the_rules_are_gone_and_come_back(kratos_unguarded, by_name):
    kratos = by_name["kratos"].address
    box = box_of("kratos")
    assert TABLE not in box.check_output("nft list tables")
    assert not box.file("/etc/labctl/firewall.nft").exists
    assert not box.service("labctl-firewall").is_enabled
    assert reaches("orpheus", kratos, 9100)  # no longer Prometheus's machine only

    firewall_role("kratos", enabled=True)
    assert TABLE in box.check_output("nft list tables")
    assert box.service("labctl-firewall").is_enabled
    assert not reaches("orpheus", kratos, 9100)
    assert reaches("moros", kratos, 9100)


def test_health_sees_rules_flushed_by_hand(by_name):
    box = box_of("kratos")
    assert box.run(f"nft delete table inet {TABLE}").rc == 0
    try:
        rc, health = labctl_json("--sim", "health", "kratos")
        assert rc != 0
        report = health["hosts"]["kratos"]
        assert report["status"] == "drifted", failing(health)
        unwell = [c for c in report["checks"] if not c["ok"]]
        assert [c["check"] for c in unwell] == ["firewall"], failing(health)
        assert "open to every machine" in unwell[0]["detail"]
    finally:
        firewall_role("kratos", enabled=True)
    rc, health = labctl_json("--sim", "health", "kratos")
    assert rc == 0, failing(health)
    assert not reaches("orpheus", by_name["kratos"].address, 9100)
