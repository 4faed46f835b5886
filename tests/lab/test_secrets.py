"""Secrets reach stacks only through their 0600 files: a full converge with the whole output
captured shows neither the old nor the new value of a rotated secret, nor any other secret of the
vault, and the services use the new values (Redis, a database owner, the PostgreSQL superuser and
the replication user, the gateway's master key, the web UI's first admin and database, the tool
servers' key)."""

from __future__ import annotations

import re
import subprocess

import httpx

from tests.lab.conftest import (
    ROOT,
    SIM_INVENTORY,
    box_of,
    failing,
    labctl,
    labctl_json,
    sim_env,
    sim_secret,
    sim_secrets,
)
from tests.lab.test_postgres import query, wait_streaming
from tests.lab.test_redis import redis

ROTATED = [
    "redis_password",
    "litellm_db_password",
    "postgres_password",
    "postgres_replication_password",
    "litellm_master_key",
    "openwebui_admin_password",
    "openwebui_db_password",
    "mcpo_api_key",
]


def test_rotated_secrets_are_applied_and_never_shown(by_name):
    old = {name: sim_secret(name) for name in ROTATED}
    rotate = labctl("--sim", "init", *(f"--rotate={name}" for name in ROTATED))
    assert rotate.returncode == 0, rotate.stderr
    said = " ".join(rotate.stdout.split())
    for stack in (
        "postgres on erebus",
        "postgres_replica on thanatos",
        "redis on erebus",
        "litellm on orpheus",
        "openwebui on orpheus",
        "mcpo on zelus",
    ):
        assert stack in said, said
    assert "`labctl --sim deploy erebus,orpheus,thanatos,zelus`" in said, said
    new = {name: sim_secret(name) for name in ROTATED}
    assert all(new[name] != old[name] for name in ROTATED)

    playbook = [
        str(ROOT / ".venv" / "bin" / "ansible-playbook"),
        "site.yml",
        "-i",
        str(SIM_INVENTORY),
        "-v",
        "--diff",
    ]
    env = {**sim_env(), "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    converge = subprocess.run(playbook, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    output = converge.stdout + converge.stderr
    assert converge.returncode == 0, output[-3000:]
    for machine in ("erebus", "thanatos", "orpheus", "zelus"):
        assert re.search(rf"^{machine}\s+: ok=\d+\s+changed=[1-9]", output, re.M), (
            f"the rotation reached {machine}"
        )
    for name in ROTATED:
        assert old[name] not in output, f"the old {name} appeared in Ansible's output"
        assert new[name] not in output, f"the new {name} appeared in Ansible's output"
    # Nor does any other secret of the vault, of any tier (the monitoring, edge and web UI ones
    # included), though the converge wrote every one of them into its stack.
    vault = sim_secrets()
    assert len(vault) >= 15, sorted(vault)
    shown = sorted(name for name, value in vault.items() if len(str(value)) >= 8 and str(value) in output)
    assert shown == [], f"secrets in Ansible's output: {shown}"

    client, address = box_of("orpheus"), by_name["erebus"].address
    assert redis(client, address, "AUTH $PW\nPING", new["redis_password"]) == ["+OK", "+PONG"]
    assert redis(client, address, "AUTH $PW", old["redis_password"])[0].startswith("-WRONGPASS")
    assert query("orpheus", address, ["SELECT 1"], password=new["litellm_db_password"])["ok"]
    refused = query("orpheus", address, ["SELECT 1"], password=old["litellm_db_password"])
    assert "password authentication failed" in refused["error"]
    # The gateway takes the new master key and refuses the old one.
    gateway = f"http://{by_name['orpheus'].address}:4000/v1/models"
    assert (
        httpx.get(gateway, headers={"Authorization": f"Bearer {new['litellm_master_key']}"}).status_code
        == 200
    )
    assert httpx.get(
        gateway, headers={"Authorization": f"Bearer {old['litellm_master_key']}"}
    ).status_code in (
        400,
        401,
    )
    # The web UI's first admin signs in with the new password only, and the web UI still talks to
    # the gateway (new master key) and its database (new password).
    webui = f"http://{by_name['orpheus'].address}:3000"
    signin = f"{webui}/api/v1/auths/signin"
    assert (
        httpx.post(
            signin, json={"email": "admin@home.arpa", "password": old["openwebui_admin_password"]}
        ).status_code
        != 200
    )
    token = httpx.post(
        signin, json={"email": "admin@home.arpa", "password": new["openwebui_admin_password"]}
    ).json()["token"]
    models = httpx.get(
        f"{webui}/api/models", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ).json()["data"]
    assert "llama3.1:8b" in [m["id"] for m in models]
    # The tool servers take the new key and refuse the old one.
    tool = f"http://{by_name['zelus'].address}:8000/sequential-thinking/openapi.json"
    assert httpx.get(tool, headers={"Authorization": f"Bearer {new['mcpo_api_key']}"}).status_code == 200
    assert httpx.get(tool, headers={"Authorization": f"Bearer {old['mcpo_api_key']}"}).status_code == 401
    # The replica reconnects with the new replication password (its passfile was rewritten).
    assert wait_streaming() == "thanatos|streaming|quorum"
    rc, health = labctl_json("--sim", "health", "erebus,thanatos")
    assert rc == 0, failing(health)
