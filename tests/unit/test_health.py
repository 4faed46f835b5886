"""How a machine's observed state is judged healthy or not."""

from __future__ import annotations

import json

from labctl.health import report
from labctl.runner import HostResult, RunResult

SERVICE = {
    "service": "node_exporter",
    "stack": "node_agent",
    "health_url": "http://erebus.home.arpa:9100/metrics",
}
ENGINE_OK = {"rc": 0, "stdout": "20.10.24", "stderr": ""}


def ps(*containers):
    return [{"item": "node_agent", "rc": 0, "stdout": "\n".join(json.dumps(c) for c in containers)}]


def endpoint(status):
    return [{"item": SERVICE, "status": status, "url": "http://10.0.0.1:9100/metrics"}]


def test_healthy_machine():
    result = report(
        ENGINE_OK, ps({"Name": "x", "State": "running", "Health": "healthy"}), endpoint(200), [SERVICE]
    )
    assert result["ok"] is True
    assert [c["check"] for c in result["checks"]] == [
        "docker engine",
        "node_exporter containers",
        "node_exporter endpoint",
    ]


def test_unhealthy_container_is_named():
    result = report(
        ENGINE_OK, ps({"Name": "x", "State": "running", "Health": "unhealthy"}), endpoint(200), [SERVICE]
    )
    assert result["ok"] is False
    assert result["checks"][1] == {
        "check": "node_exporter containers",
        "ok": False,
        "detail": "x: running/unhealthy",
    }


def test_stack_without_containers():
    result = report(ENGINE_OK, ps(), endpoint(-1), [SERVICE])
    assert [c["ok"] for c in result["checks"]] == [True, False, False]
    assert "has no containers" in result["checks"][1]["detail"]


def test_compose_list_output_is_understood():
    stacks = [
        {
            "item": "node_agent",
            "rc": 0,
            "stdout": json.dumps([{"Name": "x", "State": "running", "Health": ""}]),
        }
    ]
    assert report(ENGINE_OK, stacks, endpoint(200), [SERVICE])["ok"] is True


def test_engine_down():
    result = report({"rc": 1, "stdout": "", "stderr": "Cannot connect"}, [], [], [])
    assert result == {
        "ok": False,
        "checks": [{"check": "docker engine", "ok": False, "detail": "Cannot connect"}],
    }


def test_a_host_that_missed_later_tiers_is_not_a_success():
    done = HostResult("erebus", ok=20)
    cut_short = HostResult("moros", ok=13, incomplete=True)
    assert done.status == "ok" and cut_short.status == "incomplete"
    assert RunResult(rc=0, status="successful", hosts={"erebus": done}).succeeded
    assert not RunResult(rc=0, status="successful", hosts={"erebus": done, "moros": cut_short}).succeeded
    assert HostResult("nyx").status == "not run"


def test_deploy_mark_is_the_last_play_of_the_deploy_playbook():
    """labctl deploy reads the mark as a fact; it must stay the final play and run on every machine."""
    import yaml

    from tests.conftest import ROOT

    last = yaml.safe_load((ROOT / "playbooks" / "deploy.yml").read_text())[-1]
    assert last["hosts"] == "lab"
    assert last["tasks"][-1]["ansible.builtin.set_fact"] == {"labctl_deployed": True}
