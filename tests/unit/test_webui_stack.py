"""The web UI's stack rendered from the real inventory: the gateway as its only model provider,
the catalog's tool servers registered with their key, the PostgreSQL primary as its database,
retrieval through the gateway's embedding model, secrets only in the .env, and a compose file
that passes `docker compose config` and the hardening rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labctl import vault
from tests.conftest import VAULT_PASSWORD, lab_group, render_stack
from tests.hardening import compose_config, problems


def render(copy, tmp_path: Path, *extra: str) -> dict[str, Any]:
    """orpheus's web UI compose file, and what the role puts in its .env."""
    return render_stack(
        copy,
        tmp_path,
        "openwebui",
        "orpheus",
        ("compose.yaml",),
        *extra,
        values={"tools": "_openwebui_tool_servers", "db": "_openwebui_database_url"},
    )


def test_the_gateway_is_its_only_provider(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    service = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])["services"]["openwebui"]
    assert problems("openwebui", service, {"192.168.50.20"}) == []
    assert service["image"] == "ghcr.io/open-webui/open-webui:v0.12.4"
    assert service["ports"] == ["192.168.50.20:3000:3000"]
    env = service["environment"]
    assert env["OPENAI_API_BASE_URLS"] == "http://192.168.50.20:4000/v1"
    assert env["ENABLE_OLLAMA_API"] == "False" and env["ENABLE_PERSISTENT_CONFIG"] == "False"
    assert env["OPENAI_API_KEYS"] == "${LITELLM_MASTER_KEY}"
    assert env["RAG_EMBEDDING_ENGINE"] == "openai" and env["RAG_EMBEDDING_MODEL"] == "nomic-embed-text"
    assert env["DATABASE_URL"] == "${DATABASE_URL}" and env["WEBUI_SECRET_KEY"] == "${OPENWEBUI_SECRET_KEY}"
    # People reach it through the edge proxy (Traefik on hephaestus), by its route's name.
    assert env["WEBUI_URL"] == "https://chat.home.arpa"
    assert env["CORS_ALLOW_ORIGIN"].split(";")[0] == "https://chat.home.arpa"
    assert service["volumes"][0] == "./data:/app/backend/data" and service["user"] == "65534:65534"
    secrets = vault.read(inventory_copy.vault_file, VAULT_PASSWORD)
    for name in ("litellm_master_key", "mcpo_api_key", "openwebui_secret_key", "openwebui_admin_password"):
        assert secrets[name] not in files["compose.yaml"], name


def test_tool_servers_and_database_from_the_catalog(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    values = files["values"]
    key = vault.read(inventory_copy.vault_file, VAULT_PASSWORD)["mcpo_api_key"]
    assert [(t["url"], t["path"], t["auth_type"], t["key"]) for t in values["tools"]] == [
        ("http://192.168.50.13:8000/sequential-thinking", "openapi.json", "bearer", key)
    ]
    # Every signed-in user may use them (openwebui_tools_for_everyone).
    assert values["tools"][0]["config"]["access_grants"] == [
        {"principal_type": "user", "principal_id": "*", "permission": "read"}
    ]
    password = vault.read(inventory_copy.vault_file, VAULT_PASSWORD)["openwebui_db_password"]
    assert values["db"] == f"postgresql://openwebui:{password}@192.168.50.10:5432/openwebui"


def test_a_second_tool_machine_is_registered_too(inventory_copy, tmp_path):
    def add(data):
        lab_group(data, "tools")["hosts"]["ceto"] = {"lab_address": "192.168.50.14"}

    inventory_copy.edit("hosts.yml", add)
    values = render(inventory_copy, tmp_path)["values"]
    assert [t["url"] for t in values["tools"]] == [
        "http://192.168.50.13:8000/sequential-thinking",
        "http://192.168.50.14:8000/sequential-thinking",
    ]
    assert len({t["info"]["id"] for t in values["tools"]}) == 2
