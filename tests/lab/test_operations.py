"""Operations on the converged lab: check mode, health, a stopped service, a service moved."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.lab.conftest import SIM_INVENTORY, box_of, failing, labctl_json, resolve


def test_check_mode_after_converge_reports_nothing(machines):
    rc, result = labctl_json("--sim", "deploy", "all", "--check")
    assert rc == 0, failing(result)
    assert set(result["hosts"]) == {m.name for m in machines}
    changed = {name: h["changed_tasks"] for name, h in result["hosts"].items() if h["changed"]}
    assert changed == {}
    assert all(h["failed"] == 0 and h["unreachable"] == 0 for h in result["hosts"].values())


def test_health_all_is_green(machines):
    # As on a fresh workstation: no SSH control sockets' directory left by an earlier run.
    shutil.rmtree(Path.home() / ".ansible" / "cp", ignore_errors=True)
    rc, result = labctl_json("--sim", "health", "all")
    assert rc == 0, failing(result)
    assert {name: r["status"] for name, r in result["hosts"].items()} == {m.name: "healthy" for m in machines}
    erebus = {c["check"] for c in result["hosts"]["erebus"]["checks"]}
    assert erebus == {
        "docker engine",
        "node_exporter files",
        "postgres files",
        "redis files",
        "node_exporter containers",
        "postgres containers",
        "redis containers",
        "node_exporter endpoint",
        "postgres endpoint",
        "redis endpoint",
        "firewall",  # on in the simulated lab
    }


def test_health_reports_a_stopped_service_and_a_deploy_heals_it():
    box = box_of("zelus")
    box.check_output("docker stop node_exporter-node-exporter-1")
    try:
        rc, result = labctl_json("--sim", "health", "zelus")
        assert rc == 1
        report = result["hosts"]["zelus"]
        assert report["status"] == "unhealthy"
        assert [c["check"] for c in report["checks"] if not c["ok"]] == [
            "node_exporter containers",
            "node_exporter endpoint",
        ]
        assert report["heal"] == "labctl --sim deploy zelus"
    finally:
        rc, result = labctl_json("--sim", "deploy", "zelus")
    assert rc == 0, failing(result)
    assert result["hosts"]["zelus"]["changed"] > 0
    assert (
        box.check_output("docker inspect node_exporter-node-exporter-1 --format '{{.State.Status}}'")
        == "running"
    )


@pytest.fixture
def cache_moved_to_zelus():
    """An inventory change a user might make: the cache group's machine becomes zelus."""
    hosts = yaml.safe_load((SIM_INVENTORY / "00-lab.yml").read_text())
    hosts_of_lab = hosts["all"]["children"]["lab"]["children"]
    assert list(hosts_of_lab["cache"]["hosts"]) == ["erebus"]
    # An extra inventory source cannot take erebus out of `cache`, so the simulated lab's
    # inventory points at an edited copy of hosts.yml for the duration of the test.
    link = SIM_INVENTORY / "00-lab.yml"
    original = link.resolve()
    moved = SIM_INVENTORY.parent / "moved-hosts.yml"
    hosts_of_lab["cache"]["hosts"] = {"zelus": None}
    moved.write_text(yaml.safe_dump(hosts, sort_keys=False))
    link.unlink()
    link.symlink_to(moved)
    try:
        yield
    finally:
        link.unlink()
        link.symlink_to(original)
        moved.unlink()
        rc, result = labctl_json("--sim", "deploy", "erebus,zelus")
        assert rc == 0, failing(result)


def test_moving_a_service_removes_it_from_its_old_machine(cache_moved_to_zelus, by_name):
    erebus, zelus = box_of("erebus"), box_of("zelus")
    assert erebus.file("/opt/ai-platform/stacks/redis").exists
    rc, result = labctl_json("--sim", "deploy", "erebus,zelus")
    assert rc == 0, failing(result)
    assert not erebus.file("/opt/ai-platform/stacks/redis").exists
    assert erebus.check_output("docker ps -a -q --filter label=com.docker.compose.project=redis") == ""
    assert "redis_data" in erebus.check_output("docker volume ls -q"), "data volumes are kept"
    assert zelus.check_output("docker inspect redis-redis-1 --format '{{.State.Health.Status}}'") == "healthy"
    # the alias follows the service on every machine
    assert resolve("redis.home.arpa", on="moros") == (by_name["zelus"].address, "zelus.home.arpa")
    rc, health = labctl_json("--sim", "health", "erebus,zelus")
    assert rc == 0, failing(health)
