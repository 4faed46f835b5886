"""The simulated lab behaves like machines: a power cycle keeps the disk, a reimage does not and
health says so, faults come on demand, and nothing acts on a machine that is not simulated."""

from __future__ import annotations

import time

import pytest

from tests.lab.conftest import box_of, failing, labctl, labctl_json

MARKER = "/opt/ai-platform/power-cycle-marker"


def test_a_power_cycle_keeps_the_disk():
    box = box_of("nyx")
    box.check_output(f"echo kept > {MARKER}")
    stop = labctl("sim", "stop", "nyx")
    assert stop.returncode == 0, stop.stderr
    started = time.monotonic()
    rc, up = labctl_json("sim", "up")
    assert rc == 0, up
    assert up["report"]["started"] == ["nyx"] and up["report"]["recreated"] == []
    assert box.file(MARKER).content_string.strip() == "kept"
    rc, health = labctl_json("--sim", "health", "nyx")
    assert rc == 0, failing(health)
    print(f"stop + sim up + healthy: {time.monotonic() - started:.1f}s")


def test_lost_power_keeps_the_disk_too():
    box = box_of("nyx")
    assert labctl("sim", "kill", "nyx").returncode == 0
    start = labctl("sim", "start", "nyx")
    assert start.returncode == 0 and "SSH answered" in start.stdout
    assert box.file(MARKER).content_string.strip() == "kept"


def test_sim_up_with_nothing_stopped_changes_nothing():
    rc, up = labctl_json("sim", "up")
    assert rc == 0, up
    assert up["hosts"]["localhost"]["changed"] == 0, up["hosts"]["localhost"]["changed_tasks"]
    assert up["report"]["started"] == []


def test_a_reimaged_machine_is_drifted_until_deployed():
    started = time.monotonic()
    reset = labctl("sim", "reset", "nyx", "--yes")
    assert reset.returncode == 0, reset.stderr
    deployed: dict | None = None
    try:
        assert not box_of("nyx").file(MARKER).exists, "a reimage is a new disk"

        rc, health = labctl_json("--sim", "health", "all")
        assert rc == 1, failing(health)
        unwell = {name: r for name, r in health["hosts"].items() if r["status"] != "healthy"}
        assert set(unwell) == {"nyx"}, failing(health)
        assert unwell["nyx"]["status"] == "drifted"
        failed = {c["check"]: c["detail"] for c in unwell["nyx"]["checks"] if not c["ok"]}
        assert "wiped or never deployed" in failed["deploy mark"]
        assert unwell["nyx"]["heal"] == "labctl --sim deploy nyx"

        # A dry run on a machine never deployed reports what it would do and succeeds.
        rc, check = labctl_json("--sim", "deploy", "nyx", "--check")
        assert rc == 0, failing(check)
        assert check["hosts"]["nyx"]["changed"] > 0 and check["hosts"]["nyx"]["failed"] == 0

        rc, deployed = labctl_json("--sim", "deploy", "nyx")
        assert rc == 0, failing(deployed)
    finally:
        if deployed is None:
            # The machine goes back as it was for the tests after this one.
            labctl("--sim", "deploy", "nyx")
    rc, health = labctl_json("--sim", "health", "all")
    assert rc == 0, failing(health)
    print(f"reset + check + deploy + healthy: {time.monotonic() - started:.1f}s")


def test_an_isolated_machine_is_unreachable_then_rejoins_without_a_redeploy():
    assert labctl("sim", "isolate", "nyx").returncode == 0
    try:
        rc, health = labctl_json("--sim", "health", "all", timeout=120)
        assert rc == 1, failing(health)
        assert {n for n, r in health["hosts"].items() if r["status"] != "healthy"} == {"nyx"}, failing(health)
        assert health["hosts"]["nyx"]["status"] == "unreachable"
    finally:
        rejoin = labctl("sim", "rejoin", "nyx")
    assert rejoin.returncode == 0, rejoin.stderr
    rc, health = labctl_json("--sim", "health", "nyx")
    assert rc == 0, failing(health)


def test_a_paused_machine_answers_nothing_until_unpaused():
    assert labctl("sim", "pause", "kratos").returncode == 0
    try:
        rc, health = labctl_json("--sim", "health", "kratos", timeout=120)
        assert rc == 1 and health["hosts"]["kratos"]["status"] == "unreachable"
    finally:
        assert labctl("sim", "unpause", "kratos").returncode == 0
    rc, health = labctl_json("--sim", "health", "kratos")
    assert rc == 0, failing(health)


@pytest.mark.parametrize("action", ["stop", "start", "kill", "pause", "unpause", "isolate", "rejoin"])
def test_sim_commands_refuse_machines_that_are_not_simulated(action):
    for name in ("no-such-machine", "labctl-sim"):
        proc = labctl("sim", action, name)
        assert proc.returncode == 1
        assert "not a machine of the simulated lab" in " ".join(proc.stderr.split())


def test_sim_reset_refuses_what_it_cannot_reimage():
    proc = labctl("sim", "reset", "no-such-machine", "--yes")
    assert proc.returncode == 2
    assert "not a machine of the simulated lab" in " ".join(proc.stderr.split())
    proc = labctl("sim", "reset", "truenas", "--yes")
    assert proc.returncode == 2
    assert "is the NAS stand-in, not a managed machine" in " ".join(proc.stderr.split())
