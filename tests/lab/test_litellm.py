"""The gateway on orpheus: the real LiteLLM proxy (1.106.12) over the real llama.cpp servers of the
simulated inference machines. Its model list is the plan; requests spread over every copy of a
model; a model placed on one machine is served only there; a model whose copies all fail falls
back to the larger one; a machine losing power under concurrent load costs clients nothing and
serves again once it is back; a request without a valid key is refused; OpenAI's own client
(chat, streaming, embeddings) works against it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import openai
import pytest

from labctl import bench
from tests.lab.conftest import box_of, labctl, labctl_json, sim_secret

GATEWAY = "orpheus"
HEADER = bench.MODEL_ID_HEADER


@pytest.fixture(scope="module")
def url(by_name: dict[str, Any]) -> str:
    return f"http://{by_name[GATEWAY].address}:4000/v1"


@pytest.fixture(scope="module")
def key() -> str:
    return sim_secret("litellm_master_key")


@pytest.fixture(scope="module")
def copies() -> dict[str, list[str]]:
    """model -> the machines the plan places its copies on."""
    rc, plan = labctl_json("--sim", "plan")
    assert rc == 0, plan
    found: dict[str, list[str]] = {}
    for deployment in plan["deployments"]:
        found.setdefault(deployment["model"], []).append(deployment["node"])
    return found


def ask(url: str, key: str, model: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": model,
            "messages": [{"role": "user", "content": "hello lab"}],
            "max_tokens": 4,
            **extra,
        },
        timeout=120,
    )


def spread(url: str, key: str, model: str, count: int, concurrency: int = 8) -> bench.Step:
    return asyncio.run(bench.run_step(url, key, model, "short", concurrency, count, 4))


def wait_routed(url: str, key: str, model: str, deployment: str, timeout: float = 120) -> float:
    """Seconds until a request for `model` is served by `deployment`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        step = spread(url, key, model, 16, 4)
        if any(s.deployment == deployment for s in step.samples):
            return time.monotonic() - start
        time.sleep(1)
    raise AssertionError(f"{deployment} received no request in {timeout} s")


def test_the_model_list_is_the_plan(url, key, copies):
    listed = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert listed.status_code == 200, listed.text
    assert {m["id"] for m in listed.json()["data"]} == set(copies)
    info = httpx.get(
        f"{url.removesuffix('/v1')}/model/info", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert info.status_code == 200, info.text
    ids = {d["model_info"]["id"] for d in info.json()["data"]}
    assert ids == {f"{model}@{node}" for model, nodes in copies.items() for node in nodes}


def test_requests_spread_over_every_copy(url, key, copies):
    model = max(copies, key=lambda m: len(copies[m]))
    assert len(copies[model]) >= 3, copies
    step = spread(url, key, model, 300)
    summary = step.summary()
    assert summary["errors"] == 0, [s.error for s in step.samples if s.error][:3]
    assert set(summary["deployments"]) == {f"{model}@{node}" for node in copies[model]}, summary
    assert summary["balance"] >= 0.6, summary


def test_a_model_on_one_machine_is_served_only_there(url, key, copies):
    single = [m for m, nodes in copies.items() if len(nodes) == 1]
    assert single, copies
    model = single[0]
    served = Counter(ask(url, key, model).headers.get(HEADER) for _ in range(10))
    assert served == Counter({f"{model}@{copies[model][0]}": 10})


def test_requests_without_a_valid_key_are_refused(url, key):
    missing = httpx.post(f"{url}/chat/completions", json={"model": "x", "messages": []}, timeout=30)
    assert missing.status_code == 401, missing.text
    # Without the database LiteLLM alone answers a key it cannot look up with 400; labctl's
    # master-key check makes it 401, whatever the key looks like.
    for wrong_key in ("sk-not-a-key", "not-even-sk", key[:-1]):
        wrong = ask(url, wrong_key, "llama3.1:8b")
        assert wrong.status_code == 401, wrong.text
        assert HEADER not in wrong.headers
    assert key not in wrong.text
    # The health endpoints stay open (the container's healthcheck, labctl health).
    assert httpx.get(url.replace("/v1", "/health/liveliness"), timeout=30).status_code == 200
    # And the master key still works, on the admin routes too.
    assert ask(url, key, "llama3.1:8b").status_code == 200
    info = httpx.get(
        url.replace("/v1", "/model/info"), headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert info.status_code == 200, info.text


def test_keys_say_plainly_that_a_gateway_without_its_database_keeps_none():
    proc = labctl("--sim", "keys", "list")
    assert proc.returncode == 1
    assert "orpheus: the gateway keeps no keys without its database" in " ".join(proc.stderr.split())


def test_openai_client_chat_streaming_and_embeddings(url, key, copies):
    client = openai.OpenAI(base_url=url, api_key=key, timeout=60)
    chat_model = max(copies, key=lambda m: len(copies[m]))
    answer = client.chat.completions.create(
        model=chat_model, messages=[{"role": "user", "content": "hello"}], max_tokens=8
    )
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model=chat_model, messages=[{"role": "user", "content": "hello"}], max_tokens=8, stream=True
        )
    )
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2
    embedding = client.embeddings.create(model="nomic-embed-text", input=["the lab has ten machines"])
    assert len(embedding.data[0].embedding) > 8


def test_the_gateway_serves_its_metrics(url, key):
    ask(url, key, "llama3.1:8b")
    # On a port of their own, without a key (the API port's /metrics wants the master key).
    metrics = httpx.get(url.replace(":4000/v1", ":4001/metrics/"), timeout=30)
    assert metrics.status_code == 200, metrics.text
    assert 'model_id="llama3.1:8b@' in metrics.text, metrics.text[:500]


@pytest.fixture
def engines_stopped_on():
    """Stop the llama.cpp server on machines (a crashed engine), start it again afterwards."""
    stopped: list[str] = []

    def stop(*names: str) -> None:
        for name in names:
            box_of(name).check_output("docker stop llamacpp-llamacpp-1")
            stopped.append(name)

    yield stop
    for name in stopped:
        box_of(name).check_output("docker start llamacpp-llamacpp-1")


def test_a_model_whose_copies_all_fail_falls_back_to_the_larger_one(url, key, copies, engines_stopped_on):
    # qwen2.5-coder:14b lives on orpheus and kratos; the next larger chat model is on hades.
    model, larger = "qwen2.5-coder:14b", "llama3.3:70b"
    assert larger not in copies[model] and set(copies[model]).isdisjoint(copies[larger]), copies
    engines_stopped_on(*copies[model])
    answers = [ask(url, key, model) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5, answers[0].text
    assert {a.headers.get(HEADER) for a in answers} == {f"{larger}@{copies[larger][0]}"}


# How long the machine stays away, and by when the health checks must have taken it out of the
# routing: a check cycle lasts at most the check timeout (5 s) and then waits the interval (10 s);
# the next one fails on the dead machine after one connection timeout (3 s); 5 s for the workers
# to read the new state and a 2-core machine's scheduling.
OUTAGE_S = 35
TAKEN_OUT_S = 5 + 10 + 3 + 5


def test_a_machine_losing_power_under_load_costs_clients_nothing(url, key, copies):
    """Eight clients at a time ask for a model with three copies; one copy's machine loses power
    (no answer at all: no refusal, no reset) and comes back. Every request succeeds, requests
    keep being answered while the machine is away, and its copy serves again once it is back.
    The requests are whole answers: a streamed answer that had already sent tokens when its
    machine died cannot be moved to another copy (docs/gateway.md)."""
    model = "llama3.1:8b"
    victim = copies[model][1]
    deployment = f"{model}@{victim}"
    wait_routed(url, key, model, deployment)
    marks: dict[str, float] = {}

    async def power_cut(t0: float) -> None:
        await asyncio.sleep(3)
        proc = await asyncio.to_thread(labctl, "sim", "kill", victim)
        assert proc.returncode == 0, proc.stderr
        marks["killed"] = time.perf_counter() - t0
        await asyncio.sleep(OUTAGE_S)
        marks["restored"] = time.perf_counter() - t0
        proc = await asyncio.to_thread(labctl, "sim", "start", victim)
        assert proc.returncode == 0, proc.stderr
        marks["back"] = time.perf_counter() - t0

    step = asyncio.run(
        bench.run_step(url, key, model, "short", 8, 0, 4, during=power_cut, settle=60, stream=False)
    )
    errors = [s for s in step.samples if s.status != 200 or s.error]
    assert not errors, f"{len(errors)} of {len(step.samples)} failed: {errors[:3]}"
    # No fallback to another model was needed: the other copies took the load.
    assert {s.deployment for s in step.samples} <= {f"{model}@{node}" for node in copies[model]}
    # Once the health checks took the machine out, the others answer at full pace until its power
    # comes back (while it boots, its engine's published port may swallow a connection attempt).
    away = [s for s in step.samples if marks["killed"] + TAKEN_OUT_S < s.start < marks["restored"]]
    slow = [(round(s.start - marks["killed"], 1), round(s.latency, 2)) for s in away if s.latency >= 3]
    assert len(away) >= 20 and not slow, (len(away), slow[:10])
    result = bench.recovery(step, deployment, marks["back"])
    assert result["served_again_after_s"] is not None, result
    assert result["served_again_after_s"] <= 60, result
