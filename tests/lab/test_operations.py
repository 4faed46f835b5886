"""Operations against the converged lab: check mode, health, stack toggles."""

from __future__ import annotations

import json
import subprocess

import testinfra

from .conftest import ROOT


def _json(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=900)
    return proc.returncode, json.loads(proc.stdout)


def test_check_mode_after_converge_reports_nothing(labctl, machines):
    rc, result = _json([*labctl, "deploy", "all", "--check", "--json"])
    assert rc == 0, result
    assert set(result["hosts"]) == {m.name for m in machines}
    changed = {name: h["changed_tasks"] for name, h in result["hosts"].items() if h["changed"]}
    assert changed == {}
    assert all(h["failed"] == 0 and h["unreachable"] == 0 for h in result["hosts"].values())


def test_health_all_is_green(labctl, machines):
    rc, result = _json([*labctl, "health", "all", "--json"])
    assert rc == 0, result
    assert set(result["hosts"]) == {m.name for m in machines}
    for name, report in result["hosts"].items():
        checks = {c["check"]: c["ok"] for c in report["checks"]}
        assert checks == {
            "docker engine": True,
            "node_exporter containers": True,
            "node_exporter endpoint": True,
        }, name


def test_health_reports_a_stopped_service(labctl, machines):
    """Stop one machine's exporter: health names it and exits non-zero; a deploy brings it back."""
    target = next(m for m in machines if m.name == "zelus")
    box = testinfra.get_host(f"docker://{target.container}")
    box.check_output("docker stop node_agent-node-exporter-1")
    try:
        rc, result = _json([*labctl, "health", "zelus", "--json"])
        assert rc == 1
        failing = [c["check"] for c in result["hosts"]["zelus"]["checks"] if not c["ok"]]
        assert failing == ["node_exporter containers", "node_exporter endpoint"]
    finally:
        rc, result = _json([*labctl, "deploy", "zelus", "--json"])
    assert rc == 0, result
    assert result["hosts"]["zelus"]["changed"] > 0
    assert (
        box.check_output("docker inspect node_agent-node-exporter-1 --format '{{.State.Status}}'")
        == "running"
    )


def test_disabling_a_stack_removes_it(machines):
    """`node_agent_enabled: false` takes the stack down and removes its directory; true restores it."""
    target = next(m for m in machines if m.name == "nyx")
    box = testinfra.get_host(f"docker://{target.container}")
    base = [
        str(ROOT / ".venv" / "bin" / "ansible-playbook"),
        "site.yml",
        "-i",
        ".labctl/sim/inventory",
        "-l",
        "nyx",
    ]
    off = subprocess.run([*base, "-e", "node_agent_enabled=false"], cwd=ROOT, capture_output=True, text=True)
    assert off.returncode == 0, off.stdout[-3000:]
    assert box.check_output("docker ps -a -q --filter label=com.docker.compose.project=node_agent") == ""
    assert not box.file("/opt/ai-platform/stacks/node_agent").exists
    on = subprocess.run(base, cwd=ROOT, capture_output=True, text=True)
    assert on.returncode == 0, on.stdout[-3000:]
    assert box.file("/opt/ai-platform/stacks/node_agent/compose.yaml").exists


def test_sim_status_lists_every_machine_running(machines):
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "labctl"), "sim", "status", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    status = {m["name"]: m for m in json.loads(proc.stdout)}
    assert set(status) == {m.name for m in machines}
    for m in machines:
        assert status[m.name]["state"] == "running"
        assert status[m.name]["address"] == m.address
        assert status[m.name]["systemd"] in ("running", "degraded")
        assert status[m.name]["docker"].startswith("20.10")
