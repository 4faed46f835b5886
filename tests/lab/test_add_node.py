"""Adding a machine is one inventory entry and one command: `labctl deploy <it>` also refreshes
what every other machine derives from the inventory, its models included: the plan places copies
on the new GPU machine, it serves them, and a copy the plan moved there leaves its old machine."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import yaml

from tests.conftest import lab_group
from tests.lab.conftest import ROOT, SIM_INVENTORY, box_of, failing, labctl, labctl_json, resolve
from tests.lab.test_llamacpp import call, chat
from tests.lab.test_prometheus import prometheus_query


@pytest.fixture
def eleventh_machine(tmp_path):
    """A copy of the real inventory with one more NVIDIA node; the simulated lab built from it."""
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    shutil.copy(ROOT / "inventory" / "hosts.yml", inventory / "hosts.yml")
    shutil.copytree(ROOT / "group_vars", inventory / "group_vars")
    shutil.copytree(ROOT / "host_vars", inventory / "host_vars")
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    lab_group(hosts, "inference", "gpu_nvidia")["hosts"]["eris"] = {"lab_address": "192.168.50.24"}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    (inventory / "host_vars" / "eris.yml").write_text(
        yaml.safe_dump({"gpu": {"vendor": "nvidia", "model": "RTX A2000", "vram_gb": 12}})
    )
    up = labctl("--inventory", str(inventory), "sim", "up")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    try:
        yield "eris"
    finally:
        down = labctl("sim", "up")  # back to the real inventory: eris is removed
        assert down.returncode == 0, down.stderr
        assert "eris removed" in " ".join(down.stderr.split())
        # ...and forgotten everywhere; the inference machines take back the copies it had.
        rc, result = labctl_json("--sim", "deploy", "inference")
        assert rc == 0, failing(result)


def prometheus_started_at() -> str:
    return box_of("moros").check_output(
        "docker inspect prometheus-prometheus-1 --format '{{.State.StartedAt}}'"
    )


def test_a_new_machine_is_resolved_by_every_machine_after_one_deploy(eleventh_machine, machines):
    started = prometheus_started_at()
    rc, result = labctl_json("--sim", "deploy", eleventh_machine)
    assert rc == 0, failing(result)
    assert set(result["refreshed"]) == {m.name for m in machines}
    overlay = yaml.safe_load((SIM_INVENTORY / "10-sim.yml").read_text())
    address = overlay["all"]["hosts"]["eris"]["lab_address"]
    assert address == "10.213.0.24", "the new machine keeps the host part of its real address"
    for m in [*machines, type(machines[0])("eris", "labsim-eris", address)]:
        assert resolve("eris.home.arpa", on=m.name) == (address, "eris.home.arpa"), m.name
    rc, health = labctl_json("--sim", "health", "all")
    assert rc == 0, {
        host: (report["status"], [c for c in report["checks"] if not c["ok"]])
        for host, report in health["hosts"].items()
        if report["status"] != "healthy"
    } or health
    assert health["hosts"]["eris"]["status"] == "healthy"
    # Prometheus scrapes the new machine and probes its engine (its targets are files it
    # watches): it is not restarted for that.
    queries = (
        'up{job="node_exporter", host="eris"} == 1',
        'probe_success{host="eris", kind="inference"} == 1',
    )
    deadline = time.monotonic() + 60
    while not all(prometheus_query(q) for q in queries) and time.monotonic() < deadline:
        time.sleep(3)
    assert [q for q in queries if not prometheus_query(q)] == []
    assert prometheus_started_at() == started, "Prometheus was restarted for a new target"
    # The models: the new machine serves what the plan now places there, and every inference
    # machine serves exactly its share of the new plan (nothing left behind where a copy moved).
    rc, plan = labctl_json("--sim", "plan")
    assert rc == 0, plan
    placed: dict[str, set[str]] = {}
    for d in plan["deployments"]:
        placed.setdefault(d["node"], set()).add(d["model"])
    assert placed.get(eleventh_machine), "the plan gives the new GPU machine no model"
    for model in placed[eleventh_machine]:
        status, body = call(f"http://{address}:8080/v1/chat/completions", chat(model))
        assert status == 200, (model, body)
    for node, models in placed.items():
        node_address = overlay["all"]["hosts"][node]["lab_address"]
        status, body = call(f"http://{node_address}:8080/v1/models")
        assert status == 200, (node, body)
        assert {a for m in json.loads(body)["data"] for a in m["aliases"]} == models, node
