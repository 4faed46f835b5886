"""The tool servers' stack rendered from the real inventory: replicas on an internal network
behind one published proxy, the proxy's upstream following mcpo_replicas, the servers of
mcpo_servers in mcpo's config and in the image recipe (pinned), the key only in the proxy's file,
and compose files that pass `docker compose config` and the hardening rules."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import VAULT_PASSWORD, render_stack
from tests.hardening import compose_config, problems

FILES = ("compose.yaml", "nginx.conf", "config.json", "Dockerfile")


def render(copy, tmp_path: Path, *extra: str) -> dict[str, str]:
    return render_stack(copy, tmp_path, "mcpo", "zelus", FILES, *extra)


def test_replicas_behind_one_published_proxy(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    compose = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])
    replicas, proxy = compose["services"]["mcpo"], compose["services"]["proxy"]
    for name, service in (("mcpo", replicas), ("proxy", proxy)):
        assert problems(name, service, {"192.168.50.13"}) == []
    # Only the proxy is reachable from outside the stack; the replicas have no route out.
    assert "ports" not in replicas and replicas["networks"] == ["replicas"]
    assert proxy["ports"] == ["192.168.50.13:8000:8000"]
    assert compose["networks"]["replicas"] == {"internal": True}
    assert replicas["deploy"]["replicas"] == 2
    # The replicas run the image labctl builds from the pinned one, with the pinned servers.
    assert replicas["image"].startswith("labctl/mcpo:v0.0.20-servers-")
    assert "FROM ghcr.io/open-webui/mcpo:v0.0.20" in files["Dockerfile"]
    assert "@modelcontextprotocol/server-sequential-thinking@2026.8.31" in files["Dockerfile"]
    assert proxy["image"] == "docker.io/nginxinc/nginx-unprivileged:1.28.0-alpine"
    assert json.loads(files["config.json"]) == {
        "mcpServers": {
            "sequential-thinking": {"command": "mcp-server-sequential-thinking", "args": [], "env": {}}
        }
    }
    # The replicas' healthcheck is their own, not the proxy's.
    assert replicas["healthcheck"]["test"][:2] == ["CMD", "python3"]
    assert proxy["healthcheck"]["test"] == [
        "CMD",
        "wget",
        "-q",
        "-O",
        "/dev/null",
        "http://127.0.0.1:8000/healthz",
    ]


def test_the_proxy_follows_the_replicas_and_holds_the_key(inventory_copy, tmp_path):
    from labctl import vault

    files = render(inventory_copy, tmp_path, "-e", "mcpo_replicas=3")
    upstream = [
        line.split()[1]
        for line in files["nginx.conf"].splitlines()
        if line.strip().startswith("server ") and ":" in line
    ]
    assert upstream == ["mcpo-mcpo-1:8000", "mcpo-mcpo-2:8000", "mcpo-mcpo-3:8000"]
    assert yaml.safe_load(files["compose.yaml"])["services"]["mcpo"]["deploy"]["replicas"] == 3
    key = vault.read(inventory_copy.vault_file, VAULT_PASSWORD)["mcpo_api_key"]
    assert f'"Bearer {key}" 1;' in files["nginx.conf"]
    assert key not in files["compose.yaml"] + files["config.json"]


def test_more_servers_are_more_packages_and_more_paths(inventory_copy, tmp_path):
    servers = {
        "sequential-thinking": {
            "package": "@modelcontextprotocol/server-sequential-thinking",
            "version": "2026.8.31",
            "command": "mcp-server-sequential-thinking",
        },
        "memory": {
            "package": "@modelcontextprotocol/server-memory",
            "version": "2026.1.2",
            "command": "mcp-server-memory",
            "args": ["--flag"],
            "env": {"MEMORY_FILE_PATH": "/tmp/memory.json"},
        },
    }
    files = render(inventory_copy, tmp_path, "-e", json.dumps({"mcpo_servers": servers}))
    assert "@modelcontextprotocol/server-memory@2026.1.2" in files["Dockerfile"]
    config = json.loads(files["config.json"])["mcpServers"]
    assert config["memory"] == {
        "command": "mcp-server-memory",
        "args": ["--flag"],
        "env": {"MEMORY_FILE_PATH": "/tmp/memory.json"},
    }
    assert config["sequential-thinking"]["args"] == []
