"""The tool servers on the tools group (zelus): real mcpo 0.0.20 replicas running the real
sequential-thinking MCP server (npm), behind one address (nginx). A tool call with the key is
answered; without it, refused; the calls spread over the replicas; a replica that is down costs
clients nothing, and serves again once it is back; the key is only in the stack's 0600 files."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.lab.conftest import box_of, labctl_json, sim_secret

TOOLS = "zelus"
REPLICAS = ["mcpo-mcpo-1", "mcpo-mcpo-2"]
TOOL = "/sequential-thinking/sequentialthinking"
THOUGHT = {
    "thought": "Split the lab in tiers",
    "thoughtNumber": 1,
    "totalThoughts": 2,
    "nextThoughtNeeded": True,
}


@pytest.fixture(scope="module")
def url(by_name: dict[str, Any]) -> str:
    return f"http://{by_name[TOOLS].address}:8000"


@pytest.fixture(scope="module")
def key() -> str:
    return sim_secret("mcpo_api_key")


def call(url: str, key: str | None, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}{TOOL}", json=THOUGHT, headers={**auth, **headers}, timeout=30)


def answered(host: Any) -> dict[str, int]:
    counts = {}
    for replica in REPLICAS:
        out = host.check_output(f"docker logs {replica} 2>&1 | grep -c 'POST {TOOL}' || true")
        counts[replica] = int(out or 0)
    return counts


def test_a_tool_call_with_the_key_is_answered(url, key):
    response = call(url, key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["thoughtNumber"] == 1 and body["nextThoughtNeeded"] is True
    assert body["thoughtHistoryLength"] >= 1
    # The OpenAPI document clients (Open-WebUI) register the tools from.
    spec = httpx.get(f"{url}/sequential-thinking/openapi.json", headers={"Authorization": f"Bearer {key}"})
    assert spec.status_code == 200 and "/sequentialthinking" in spec.json()["paths"]


def test_without_a_valid_key_the_call_is_refused(url, key):
    assert call(url, None).status_code == 401
    assert call(url, "mcpo-" + "x" * 40).status_code == 401
    assert call(url, None, Authorization=key).status_code == 401  # not as a Bearer token
    # The health endpoint asks for nothing, and says only that a replica answers.
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200


def test_calls_spread_over_the_replicas(url, key):
    host = box_of(TOOLS)
    assert (
        sorted(
            host.check_output(
                "docker ps --filter label=com.docker.compose.service=mcpo --format '{{.Names}}'"
            ).split()
        )
        == REPLICAS
    )
    before = answered(host)
    for _ in range(40):
        assert call(url, key).status_code == 200
    after = answered(host)
    counts = [after[r] - before[r] for r in REPLICAS]
    assert sum(counts) == 40 and min(counts) / max(counts) >= 0.8, counts


def test_a_replica_that_is_down_costs_clients_nothing_and_serves_again(url, key):
    host = box_of(TOOLS)
    down = REPLICAS[0]
    host.check_output(f"docker stop -t 2 {down}")
    try:
        codes = Counter(call(url, key).status_code for _ in range(20))
        assert codes == Counter({200: 20}), codes
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        host.check_output(f"docker start {down}")
    # Back in the rotation once healthy: it answers again within a minute.
    start = time.monotonic()
    before = answered(host)[down]
    while time.monotonic() - start < 60:
        assert call(url, key).status_code == 200
        if answered(host)[down] > before:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"{down} got no call within 60 s of starting again")
    # And its container is healthy again (what health and later checks see).
    while time.monotonic() - start < 90:
        if host.check_output(f"docker inspect {down} --format '{{{{.State.Health.Status}}}}'") == "healthy":
            break
        time.sleep(1)
    else:
        pytest.fail(f"{down} not healthy within 90 s of starting again")


def test_the_key_is_only_in_the_stacks_0600_files():
    host = box_of(TOOLS)
    key = sim_secret("mcpo_api_key")
    stack = "/opt/ai-platform/stacks/mcpo"
    conf, env = host.file(f"{stack}/nginx.conf"), host.file(f"{stack}/.env")
    assert conf.mode == 0o600 and conf.uid == 101 and f"Bearer {key}" in conf.content_string
    assert env.mode == 0o600 and env.user == "root"
    for name in ("compose.yaml", "config.json"):
        assert key not in host.file(f"{stack}/{name}").content_string
    for replica in [*REPLICAS, "mcpo-proxy-1"]:
        config = host.check_output(f"docker inspect {replica} --format '{{{{json .Config}}}}'")
        assert key not in config, replica


def test_health_checks_the_tool_servers():
    rc, report = labctl_json("--sim", "health", TOOLS)
    assert rc == 0, report
    checks = {c["check"]: c for c in report["hosts"][TOOLS]["checks"]}
    # Every replica and the proxy are checked, and the one address answers.
    containers = checks["mcpo containers"]["detail"]
    assert all(f"{name} healthy" in containers for name in [*REPLICAS, "mcpo-proxy-1"]), containers
    assert checks["mcpo endpoint"]["detail"].endswith(":8000/healthz")
