"""Redis on the cache group (erebus): its password comes from the vault and is needed; its data
lives in a volume with an append-only file; the secret appears nowhere but its 0600 files."""

from __future__ import annotations

import json
import time

import pytest

from tests.lab.conftest import box_of, sim_secret

# A few lines of the Redis protocol, run on a lab machine with its own python3 (the machines have
# no redis-cli); the password reaches the client in its environment.
RESP = r"""
import os, socket, sys
s = socket.create_connection((sys.argv[1], 6379), timeout=5)
def cmd(*parts):
    s.sendall(("*%d\r\n" % len(parts) + "".join("$%d\r\n%s\r\n" % (len(p), p) for p in parts)).encode())
    return s.recv(65536).decode().split("\r\n")[0]
for line in sys.stdin.read().splitlines():
    parts = [os.environ.get("PW", "") if p == "$PW" else p for p in line.split()]
    print(cmd(*parts))
"""


def redis(client, address, commands, password=""):
    result = client.run(f"PW={password} python3 -c '{RESP}' {address} <<'EOF'\n{commands}\nEOF")
    assert result.rc == 0, result.stderr
    return result.stdout.splitlines()


@pytest.fixture(scope="module")
def erebus(by_name):
    return by_name["erebus"]


def test_redis_needs_its_password(erebus):
    client = box_of("orpheus")
    password = sim_secret("redis_password")
    assert redis(client, erebus.address, "PING")[0].startswith("-NOAUTH")
    assert redis(client, erebus.address, "AUTH wrong-password")[0].startswith("-WRONGPASS")
    assert redis(client, erebus.address, "AUTH $PW\nPING", password) == ["+OK", "+PONG"]


def test_redis_keeps_its_data_across_a_restart(erebus):
    client, host = box_of("orpheus"), box_of("erebus")
    password = sim_secret("redis_password")
    stamp = str(time.time())
    assert redis(client, erebus.address, f"AUTH $PW\nSET labctl:test {stamp}", password) == ["+OK", "+OK"]
    host.check_output("docker restart redis-redis-1")
    for _ in range(60):
        if host.check_output("docker inspect redis-redis-1 --format '{{.State.Health.Status}}'") == "healthy":
            break
        time.sleep(1)
    assert redis(client, erebus.address, "AUTH $PW\nGET labctl:test", password) == ["+OK", f"${len(stamp)}"]
    assert host.check_output("docker exec redis-redis-1 redis-cli CONFIG GET appendonly").split() == [
        "appendonly",
        "yes",
    ]


def test_redis_is_published_on_the_lab_address_only(erebus):
    ports = json.loads(
        box_of("erebus").check_output(
            "docker inspect redis-redis-1 --format '{{json .HostConfig.PortBindings}}'"
        )
    )
    assert ports == {"6379/tcp": [{"HostIp": erebus.address, "HostPort": "6379"}]}


def test_the_password_is_only_in_the_stacks_0600_files():
    host = box_of("erebus")
    password = sim_secret("redis_password")
    stack = "/opt/ai-platform/stacks/redis"
    conf, env = host.file(f"{stack}/redis.conf"), host.file(f"{stack}/.env")
    assert conf.mode == 0o600 and conf.uid == 999 and f"requirepass {password}" in conf.content_string
    assert env.mode == 0o600 and env.user == "root" and f"REDIS_PASSWORD={password}" in env.content_string
    assert password not in host.file(f"{stack}/compose.yaml").content_string
    config = json.loads(host.check_output("docker inspect redis-redis-1 --format '{{json .Config}}'"))
    assert password not in json.dumps([config["Cmd"], config["Entrypoint"], config["Labels"]])
    assert password not in host.check_output("ps -eo args")


def test_redis_is_not_on_machines_outside_the_cache_group(machines):
    for m in machines:
        if m.name != "erebus":
            assert not box_of(m.name).file("/opt/ai-platform/stacks/redis").exists, m.name
