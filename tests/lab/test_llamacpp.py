"""llama.cpp on every simulated inference machine: the real server (llama-server in router mode,
the stand-in for GPUs this lab does not have) answers OpenAI-compatible requests for exactly the
models `labctl plan` places on the machine, under the catalog's names, from another machine of
the lab -- what the gateway will do. The weights are the tiny generated model (labctl/tinymodel.py),
so the answers are noise; the engine, the API and the placement are real."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from tests.lab.conftest import box_of, failing, labctl_json

# An HTTP client run on a lab machine with its own python3 (requests come from inside the lab).
CLIENT = r"""
import json, sys, urllib.error, urllib.request
url, body = sys.argv[1], sys.stdin.read().strip()
request = urllib.request.Request(url, data=body.encode() if body else None,
                                 headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        print(json.dumps({"status": response.status, "body": response.read().decode()}))
except urllib.error.HTTPError as exc:
    print(json.dumps({"status": exc.code, "body": exc.read().decode()}))
"""


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    payload = json.dumps(body) if body is not None else ""
    result = box_of("orpheus").run(f"python3 -c '{CLIENT}' {url} <<'EOF'\n{payload}\nEOF")
    assert result.rc == 0, result.stderr
    answer = json.loads(result.stdout)
    return answer["status"], answer["body"]


@pytest.fixture(scope="module")
def placed() -> dict[str, list[str]]:
    rc, plan = labctl_json("--sim", "plan")
    assert rc == 0, plan
    by_node: dict[str, list[str]] = defaultdict(list)
    for deployment in plan["deployments"]:
        by_node[deployment["node"]].append(deployment["model"])
    assert by_node, "the plan places no model"
    return dict(by_node)


def api(by_name: dict[str, Any], node: str) -> str:
    return f"http://{by_name[node].address}:8080"


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello lab"}], "max_tokens": 8, **extra}


def test_every_inference_machine_answers_each_placed_model(placed, by_name):
    for node, models in placed.items():
        for model in models:
            status, body = call(f"{api(by_name, node)}/v1/chat/completions", chat(model))
            assert status == 200, (node, model, body)
            answer = json.loads(body)
            assert answer["object"] == "chat.completion"
            assert isinstance(answer["choices"][0]["message"]["content"], str), (node, model)
            assert answer["usage"]["completion_tokens"] > 0, (node, model, answer["usage"])


def test_each_machine_lists_exactly_its_placed_models(placed, by_name):
    for node, models in placed.items():
        status, body = call(f"{api(by_name, node)}/v1/models")
        assert status == 200, body
        served = {alias for m in json.loads(body)["data"] for alias in m["aliases"]}
        assert served == set(models), node


def test_a_model_not_placed_on_the_machine_is_refused(placed, by_name):
    everything = {m for models in placed.values() for m in models}
    for node, models in placed.items():
        elsewhere = sorted(everything - set(models)) or ["no-such-model"]
        status, body = call(f"{api(by_name, node)}/v1/chat/completions", chat(elsewhere[0]))
        assert status == 400 and "not found" in body, (node, elsewhere[0], status, body)


def test_streaming_sends_server_sent_events_to_the_end(placed, by_name):
    node, models = next(iter(placed.items()))
    status, body = call(f"{api(by_name, node)}/v1/chat/completions", chat(models[0], stream=True))
    assert status == 200, body
    events = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks and all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_a_machine_with_no_model_placed_runs_no_engine(placed):
    for name in ("erebus", "moros", "zelus"):
        assert name not in placed
        assert "llamacpp" not in box_of(name).check_output("docker ps -a --format '{{.Names}}'")


def test_the_engine_runs_unprivileged_on_read_only_models(placed):
    node = next(iter(placed))
    config = json.loads(
        box_of(node).check_output("docker inspect llamacpp-llamacpp-1 --format '{{json .HostConfig}}'")
    )
    assert config["ReadonlyRootfs"] is True
    assert config["CapDrop"] == ["ALL"]
    assert any(b.endswith(":/models:ro") for b in config["Binds"]), config["Binds"]
    user = box_of(node).check_output("docker inspect llamacpp-llamacpp-1 --format '{{.Config.User}}'")
    assert user == "65534:65534"


def test_models_pull_puts_a_lost_model_back_and_then_changes_nothing(placed):
    node = next(iter(placed))
    box = box_of(node)
    files = "/opt/ai-platform/models/gguf"
    kept = box.check_output(f"sha256sum {files}/*.gguf | cut -d' ' -f1 | sort -u")
    lost = box.check_output(f"ls {files}").split()[0]
    box.check_output(f"rm {files}/{lost}")
    rc, result = labctl_json("--sim", "models", "pull", node)
    assert rc == 0, failing(result)
    assert result["hosts"][node]["changed"] >= 1
    assert box.file(f"{files}/{lost}").exists
    assert box.check_output(f"sha256sum {files}/*.gguf | cut -d' ' -f1 | sort -u") == kept
    rc, again = labctl_json("--sim", "models", "pull", "all")
    assert rc == 0, again
    assert {h: r["changed"] for h, r in again["hosts"].items()} == dict.fromkeys(placed, 0)
