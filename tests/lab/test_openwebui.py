"""The web UI on the webui group (orpheus): real Open-WebUI 0.12.4 over the real gateway. The
first admin signs in with the vault's password; the model list is the gateway's (the plan's
models); a chat answers through the gateway, streamed or whole; the catalog's tool servers are
registered and reachable with their key; its data lives in the PostgreSQL primary; the secrets
are only in its 0600 .env."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.lab.conftest import box_of, sim_secret

WEBUI = "orpheus"
ADMIN = "admin@home.arpa"


@pytest.fixture(scope="module")
def url(by_name: dict[str, Any]) -> str:
    return f"http://{by_name[WEBUI].address}:3000"


@pytest.fixture(scope="module")
def token(url: str) -> str:
    response = httpx.post(
        f"{url}/api/v1/auths/signin",
        json={"email": ADMIN, "password": sim_secret("openwebui_admin_password")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["role"] == "admin"
    return str(body["token"])


def api(url: str, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=120, **kwargs
    )


def test_the_first_admin_signs_in_with_the_vaults_password_and_nobody_else(url, token):
    assert token
    wrong = httpx.post(f"{url}/api/v1/auths/signin", json={"email": ADMIN, "password": "not-it"}, timeout=30)
    assert wrong.status_code in (400, 401, 403)
    # No self-service accounts (openwebui_enable_signup: false).
    signup = httpx.post(
        f"{url}/api/v1/auths/signup",
        json={"name": "guest", "email": "guest@home.arpa", "password": "a-Long-password-1"},
        timeout=30,
    )
    assert signup.status_code in (400, 401, 403), signup.text


def test_the_model_list_is_the_gateways(url, token, by_name):
    gateway = httpx.get(
        f"http://{by_name['orpheus'].address}:4000/v1/models",
        headers={"Authorization": f"Bearer {sim_secret('litellm_master_key')}"},
        timeout=30,
    )
    assert gateway.status_code == 200
    offered = sorted(m["id"] for m in gateway.json()["data"])
    response = api(url, token, "GET", "/api/models")
    assert response.status_code == 200, response.text
    assert sorted(m["id"] for m in response.json()["data"]) == offered
    assert "llama3.1:8b" in offered
    # The gateway is its only provider: Ollama's API is off, one OpenAI-style address.
    config = api(url, token, "GET", "/openai/config").json()
    assert config["OPENAI_API_BASE_URLS"] == [f"http://{by_name['orpheus'].address}:4000/v1"]
    assert api(url, token, "GET", "/ollama/config").json()["ENABLE_OLLAMA_API"] is False


def test_a_chat_answers_through_the_gateway(url, token):
    question = {
        "model": "llama3.1:8b",
        "messages": [{"role": "user", "content": "hello lab"}],
        "max_tokens": 4,
    }
    whole = api(url, token, "POST", "/api/chat/completions", json=question)
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["model"].startswith("llama3.1:8b") or body["model"] == "llama3.1:8b"
    with httpx.stream(
        "POST",
        f"{url}/api/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={**question, "stream": True},
        timeout=120,
    ) as streamed:
        assert streamed.status_code == 200
        lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert any(json.loads(line[6:])["choices"] for line in lines[:-1])


def test_the_tool_servers_are_registered_and_reachable(url, token, by_name):
    connections = api(url, token, "GET", "/api/v1/configs/tool_servers").json()["TOOL_SERVER_CONNECTIONS"]
    assert [c["url"] for c in connections] == [f"http://{by_name['zelus'].address}:8000/sequential-thinking"]
    assert connections[0]["auth_type"] == "bearer"
    # Open-WebUI reads the server's OpenAPI document with the key (its own check of a connection).
    verified = api(
        url,
        token,
        "POST",
        "/api/v1/configs/tool_servers/verify",
        json={
            k: connections[0][k]
            for k in ("type", "url", "path", "auth_type", "key", "config", "info")
            if k in connections[0]
        },
    )
    assert verified.status_code == 200, verified.text
    assert "/sequentialthinking" in json.dumps(verified.json())
    # Listed among the tools, for every signed-in user.
    tools = {t["id"]: t for t in api(url, token, "GET", "/api/v1/tools/").json()}
    assert "server:sequential_thinking_zelus" in tools, list(tools)


def test_its_data_lives_in_the_postgresql_primary():
    primary = box_of("erebus")
    query = 'select email, role from "user"'
    users = primary.check_output(
        f"docker exec -u postgres postgres-postgres-1 psql -d openwebui -tAc '{query}'"
    )
    assert f"{ADMIN}|admin" in users.splitlines()


def test_the_secrets_are_only_in_its_0600_env():
    host = box_of(WEBUI)
    stack = "/opt/ai-platform/stacks/openwebui"
    env = host.file(f"{stack}/.env")
    assert env.mode == 0o600 and env.user == "root"
    compose = host.file(f"{stack}/compose.yaml").content_string
    config = host.check_output("docker inspect openwebui-openwebui-1 --format '{{json .Config.Cmd}}'")
    for name in ("openwebui_admin_password", "openwebui_secret_key", "litellm_master_key", "mcpo_api_key"):
        secret = sim_secret(name)
        assert secret in env.content_string, name
        assert secret not in compose and secret not in config, name
    data = host.file(f"{stack}/data")
    assert data.uid == 65534 and data.mode == 0o700
