"""The monitoring tier in the simulated lab: the real Prometheus (Debian's build) on moros scrapes
every target the catalog derives and the real blackbox exporter probes every health endpoint;
a machine whose node exporter stops raises HostDown in the real Alertmanager within two minutes."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from labctl import monitoring
from labctl.inventory import load
from tests.lab.conftest import ROOT, SIM, SIM_INVENTORY, box_of, sim_secret

# Prometheus's first scrapes and the probes' first round: a fresh deploy needs a little while.
SETTLE_S = 90


def sim_lab() -> Any:
    password = (SIM / "vault-password").read_text().strip()
    return load([SIM_INVENTORY], vault_password=password)


def address_of(service: str) -> str:
    (inst,) = [i for i in monitoring.catalog.instances(sim_lab(), services=[service])]
    return f"http://{inst.address}:{inst.ports['web']}"


def prometheus_query(query: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{address_of('prometheus')}/api/v1/query", params={"query": query}, timeout=10)
    answer.raise_for_status()
    return answer.json()["data"]["result"]  # type: ignore[no-any-return]


def active_targets() -> list[dict[str, Any]]:
    answer = httpx.get(f"{address_of('prometheus')}/api/v1/targets", params={"state": "active"}, timeout=10)
    answer.raise_for_status()
    return answer.json()["data"]["activeTargets"]  # type: ignore[no-any-return]


Key = tuple[str, str, str]


def key(labels: dict[str, str]) -> Key:
    return labels.get("job", "?"), labels.get("host", "?"), labels.get("service", "?")


def expected_targets() -> set[Key]:
    """(job, host, service) of every scrape target and probe the catalog derives for the lab."""
    lab = sim_lab()
    expected = {
        key({"job": job["job"], **g["labels"]}) for job in monitoring.scrape_jobs(lab) for g in job["targets"]
    }
    for module, groups in monitoring.probes(lab).items():
        expected |= {key({"job": f"probe_{module}", **g["labels"]}) for g in groups}
    return expected


def wait_targets_up(deadline_s: float = SETTLE_S) -> tuple[set[Key], dict[Key, str]]:
    """Wait until every expected target is up (a probe: its probe succeeded); return the
    expected set and the health Prometheus gives each target it has."""
    expected = expected_targets()
    deadline = time.monotonic() + deadline_s
    while True:
        health = {key(target["labels"]): target["health"] for target in active_targets()}
        for sample in prometheus_query("probe_success == 0"):
            health[key(sample["metric"])] = "probe failed"
        if all(health.get(k) == "up" for k in expected) or time.monotonic() > deadline:
            return expected, health
        time.sleep(5)


def test_every_target_of_the_catalog_is_up():
    expected, health = wait_targets_up()
    down = {
        f"{job} {service}@{host}": health.get((job, host, service), "missing")
        for job, host, service in expected
        if health.get((job, host, service)) != "up"
    }
    assert not down, f"{len(expected) - len(down)}/{len(expected)} targets up; not up: {down}"
    # Nothing Prometheus scrapes is unknown to the catalog.
    assert set(health) <= expected, set(health) - expected
    # Every machine's node exporter, the gateway, and the monitoring stack itself.
    hosts = {host for job, host, _ in expected if job == "node_exporter"}
    assert len(hosts) == 10
    assert ("litellm", "orpheus", "litellm") in expected and ("probe_tcp", "erebus", "postgres") in expected
    print(f"\ntargets up: {len(expected)}/{len(expected)}")


def evaluated_rules(deadline_s: float = 60) -> dict[str, dict[str, Any]]:
    """The loaded rules by name, once each has been evaluated: a deploy that changed the rule
    files reloads Prometheus, and a reloaded rule is "unknown" until its group's next evaluation
    (every 15 s by default)."""
    deadline = time.monotonic() + deadline_s
    while True:
        answer = httpx.get(f"{address_of('prometheus')}/api/v1/rules", timeout=10).json()
        rules = {r["name"]: r for g in answer["data"]["groups"] for r in g["rules"]}
        if all(r["health"] != "unknown" for r in rules.values()) or time.monotonic() > deadline:
            return rules
        time.sleep(3)


def test_the_rules_are_loaded_and_the_metrics_they_read_exist():
    rules = evaluated_rules()
    assert {"HostDown", "InferenceNodeDown", "GatewayErrors", "BackupStale"} <= set(rules)
    unhealthy = {n: (r["health"], r.get("lastError")) for n, r in rules.items() if r["health"] != "ok"}
    assert not unhealthy, unhealthy
    # What the machine rules read is what the node exporters expose.
    for metric in (
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
        "node_filesystem_readonly",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_vmstat_oom_kill",
    ):
        found = {s["metric"]["host"] for s in prometheus_query(f"count by (host) ({metric})")}
        assert len(found) == 10, (metric, found)


# Metrics that appear only after an event, and where they come from.
AFTER_AN_EVENT = {
    # The backup job's textfile metric, once the first backup ran (tests/lab/test_backup.py).
    "labctl_postgres_backup_last_success_timestamp_seconds": ROOT
    / "roles/postgres/templates/postgres-backup.py.j2",
}


def test_the_dashboards_read_metrics_the_exporters_expose():
    """Grafana cannot run here: each metric its dashboards query must exist in Prometheus, except
    those of exporters the simulated lab does not run (GPUs and cAdvisor)."""
    from labctl import dashboards

    # One request the gateway refuses (an unknown model): its failure counter exists from then on.
    (gateway,) = monitoring.catalog.instances(sim_lab(), services=["litellm"])
    refused = httpx.post(
        f"http://{gateway.address}:{gateway.ports['api']}/v1/chat/completions",
        json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {sim_secret('litellm_master_key')}"},
        timeout=60,
    )
    assert refused.status_code == 400, refused.text
    not_here = ("DCGM_", "gpu_", "container_")
    wanted = {
        name
        for _, _, kind, query in dashboards.queries()
        if kind == "prometheus"
        for name in dashboards.metric_names(query)
        if not name.startswith(not_here)
    }
    deadline = time.monotonic() + 60
    while True:
        present = set(
            httpx.get(f"{address_of('prometheus')}/api/v1/label/__name__/values", timeout=10).json()["data"]
        )
        missing = wanted - present - set(AFTER_AN_EVENT)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert sorted(missing) == []
    for name, source in AFTER_AN_EVENT.items():
        assert name in source.read_text(), (name, source)
    # Each model copy is named by its machine (Prometheus relabels the gateway's api_base).
    inference = {i.host for i in monitoring.catalog.instances(sim_lab()) if i.serves}
    deadline = time.monotonic() + 60
    while True:
        nodes = {s["metric"].get("node") for s in prometheus_query("litellm_deployment_state")}
        if nodes == inference or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert nodes == inference, nodes
    print(f"\ndashboard metrics present: {len(wanted)} (GPU and container metrics not here)")


def test_the_monitoring_stacks_run_as_configured():
    box = box_of("moros")
    for container in ("prometheus-prometheus-1", "alertmanager-alertmanager-1", "blackbox-blackbox-1"):
        state = json.loads(box.check_output(f"docker inspect {container} --format '{{{{json .State}}}}'"))
        assert state["Health"]["Status"] == "healthy", container
        assert (
            box.check_output(f"docker inspect {container} --format '{{{{.Config.User}}}}'") == "65534:65534"
        )
