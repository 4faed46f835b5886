"""PostgreSQL on the database machines: the primary on db_primary (erebus) streams synchronously to
the hot standby on db_replica (thanatos); each database is open only to its clients' machines;
passwords live only in 0600 files; a disabled replica keeps its data unless purged.

The clients are real: psycopg2 on the lab machines (Debian's python3-psycopg2), over the lab
network. The server is Debian's PostgreSQL 15 in the stand-in image (sim/images/postgres)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.lab.conftest import SIM_INVENTORY, box_of, failing, labctl_json, sim_secret

PRIMARY = "postgres-postgres-1"
REPLICA = "postgres_replica-postgres-1"

# A client on a lab machine: connects, runs the statements, prints the rows or the server's error.
CLIENT = r"""
import json, os, sys
import psycopg2
a = json.loads(sys.argv[1])
try:
    conn = psycopg2.connect(host=a["host"], dbname=a["db"], user=a["user"], password=os.environ["PW"],
                            connect_timeout=5)
    conn.autocommit = True
    cur = conn.cursor()
    rows = []
    for sql in a["sql"]:
        cur.execute(sql)
        rows.append(cur.fetchall() if cur.description else cur.rowcount)
    print(json.dumps({"ok": True, "rows": rows}, default=str))
except psycopg2.Error as exc:
    print(json.dumps({"ok": False, "error": " ".join(str(exc).split())}))
"""


def query(
    on: str, host: str, sql: list[str], db: str = "litellm", password: str | None = None
) -> dict[str, Any]:
    """Run `sql` as the database's owner from machine `on` against `host` (an address)."""
    password = sim_secret(f"{db}_db_password") if password is None else password
    args = json.dumps({"host": host, "db": db, "user": db, "sql": sql})
    result = box_of(on).run(
        f"PW={shlex.quote(password)} python3 -c {shlex.quote(CLIENT)} {shlex.quote(args)}"
    )
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def admin(machine: str, container: str, sql: str, db: str = "postgres") -> str:
    """psql as postgres inside the server's container (peer authentication on its socket)."""
    return box_of(machine).check_output(
        f"docker exec {container} psql -XAt -F '|' -d {db} -c {shlex.quote(sql)}"
    )


def wait_healthy(machine: str, container: str, timeout: float = 120) -> None:
    box = box_of(machine)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            box.run(f"docker inspect {container} --format '{{{{.State.Health.Status}}}}'").stdout.strip()
            == "healthy"
        ):
            return
        time.sleep(1)
    raise AssertionError(f"{container} on {machine} not healthy after {timeout:.0f}s")


def wait_for_row(on: str, host: str, note: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = query(on, host, [f"SELECT count(*) FROM labctl_test WHERE note = '{note}'"])
        if found["ok"] and found["rows"][0] == [[1]]:
            return
        time.sleep(0.5)
    raise AssertionError(f"row {note!r} not on {host} after {timeout:.0f}s: {found}")


def streaming() -> str:
    return admin("erebus", PRIMARY, "SELECT application_name, state, sync_state FROM pg_stat_replication")


def wait_streaming(timeout: float = 60) -> str:
    """The replica's state once it streams synchronously (it may still be catching up)."""
    deadline = time.monotonic() + timeout
    while (state := streaming()) != "thanatos|streaming|quorum" and time.monotonic() < deadline:
        time.sleep(0.5)
    return state


@pytest.fixture(scope="module")
def addr(by_name) -> dict[str, str]:
    return {name: m.address for name, m in by_name.items()}


@pytest.fixture(scope="module")
def table(addr) -> None:
    created = query(
        "orpheus",
        addr["erebus"],
        [
            "CREATE TABLE IF NOT EXISTS labctl_test"
            " (id serial PRIMARY KEY, note text UNIQUE, at timestamptz DEFAULT now())"
        ],
    )
    assert created["ok"], created


def write(addr: dict[str, str], note: str) -> None:
    written = query("orpheus", addr["erebus"], [f"INSERT INTO labctl_test (note) VALUES ('{note}')"])
    assert written == {"ok": True, "rows": [1]}, written


def test_the_replica_streams_synchronously_through_its_slot(addr, table):
    assert wait_streaming() == "thanatos|streaming|quorum"
    assert admin("erebus", PRIMARY, "SHOW synchronous_standby_names") == 'ANY 1 ("thanatos")'
    assert admin("erebus", PRIMARY, "SELECT slot_name, slot_type, active FROM pg_replication_slots") == (
        "thanatos|physical|t"
    )
    note = f"replicated-{time.time()}"
    write(addr, note)
    wait_for_row("orpheus", addr["thanatos"], note)


def test_the_replica_is_read_only(addr, table):
    assert admin("thanatos", REPLICA, "SELECT pg_is_in_recovery()") == "t"
    refused = query("orpheus", addr["thanatos"], ["INSERT INTO labctl_test (note) VALUES ('nope')"])
    assert not refused["ok"] and "read-only transaction" in refused["error"]


def test_each_database_is_open_only_to_its_clients(addr):
    # litellm: the gateway's machine, never another. The replica's machine passes the host
    # firewall (replication) and meets pg_hba; a machine with no business there, such as zelus,
    # is dropped before it (tests/lab/test_firewall.py).
    assert query("orpheus", addr["erebus"], ["SELECT current_user"])["rows"] == [[["litellm"]]]
    refused = query("thanatos", addr["erebus"], ["SELECT 1"])
    assert not refused["ok"]
    assert (
        f'no pg_hba.conf entry for host "{addr["thanatos"]}", user "litellm", database "litellm"'
        in refused["error"]
    )
    # grafana: the monitoring machine, not the gateway's.
    assert query("moros", addr["erebus"], ["SELECT current_user"], db="grafana")["rows"] == [[["grafana"]]]
    assert not query("orpheus", addr["erebus"], ["SELECT 1"], db="grafana")["ok"]
    # the right machine with a wrong password
    wrong = query("orpheus", addr["erebus"], ["SELECT 1"], password="not-the-password")
    assert not wrong["ok"] and 'password authentication failed for user "litellm"' in wrong["error"]
    # the superuser has no network access at all
    superuser = query(
        "orpheus", addr["erebus"], ["SELECT 1"], db="postgres", password=sim_secret("postgres_password")
    )
    assert not superuser["ok"] and "no pg_hba.conf entry" in superuser["error"]


def test_a_commit_waits_for_the_replica_and_completes_when_it_returns(addr, table):
    """The documented trade-off of synchronous replication: no replica, no acknowledged commit."""
    note = f"waited-{time.time()}"
    thanatos = box_of("thanatos")
    thanatos.check_output(f"docker stop {REPLICA}")
    try:
        password = sim_secret("litellm_db_password")
        args = json.dumps(
            {
                "host": addr["erebus"],
                "db": "litellm",
                "user": "litellm",
                "sql": [f"INSERT INTO labctl_test (note) VALUES ('{note}')"],
            }
        )
        blocked = box_of("orpheus").run(
            f"PW={shlex.quote(password)} timeout 8 python3 -c {shlex.quote(CLIENT)} {shlex.quote(args)}"
        )
        assert blocked.rc == 124, f"the commit returned without the replica: {blocked.stdout}"
        # committed on the primary's disk, not yet visible: it waits for a replica
        assert (
            admin("erebus", PRIMARY, f"SELECT count(*) FROM labctl_test WHERE note = '{note}'", "litellm")
            == "0"
        )
    finally:
        thanatos.check_output(f"docker start {REPLICA}")
    wait_healthy("thanatos", REPLICA)
    # The waiting commit completes once the replica has it: on both servers.
    wait_for_row("orpheus", addr["erebus"], note)
    wait_for_row("orpheus", addr["thanatos"], note)
    assert wait_streaming() == "thanatos|streaming|quorum"


def test_passwords_are_only_in_the_stacks_0600_files():
    erebus, thanatos = box_of("erebus"), box_of("thanatos")
    superuser, replication = sim_secret("postgres_password"), sim_secret("postgres_replication_password")
    owners = [sim_secret(f"{db}_db_password") for db in ("litellm", "openwebui", "grafana")]
    stack = "/opt/ai-platform/stacks"
    first = erebus.file(f"{stack}/postgres/superuser-password")
    assert first.mode == 0o600 and first.uid == 999 and first.content_string.strip() == superuser
    for box, name in ((erebus, "postgres"), (thanatos, "postgres_replica")):
        passfile = box.file(f"{stack}/{name}/pgpass")
        assert passfile.mode == 0o600 and passfile.uid == 999
        assert passfile.content_string.strip() == f"*:*:*:replicator:{replication}"
        for public in ("compose.yaml", "postgresql.conf", "pg_hba.conf"):
            text = box.file(f"{stack}/{name}/{public}").content_string
            assert not any(p in text for p in (superuser, replication, *owners)), public
        config = box.check_output(
            f"docker inspect {PRIMARY if name == 'postgres' else REPLICA} --format '{{{{json .Config}}}}'"
        )
        assert not any(p in config for p in (superuser, replication, *owners))
        processes = box.check_output("ps -eo args")
        assert superuser not in processes and replication not in processes
    # Clients' passwords are stored as SCRAM verifiers, not in the clear.
    assert (
        admin(
            "erebus",
            PRIMARY,
            "SELECT rolpassword ~ '^SCRAM-SHA-256' FROM pg_authid WHERE rolname = 'litellm'",
        )
        == "t"
    )


@pytest.fixture
def replica_settings() -> Iterator[Any]:
    """Host variables for thanatos from an extra inventory source, as a user's host_vars would be."""
    extra = SIM_INVENTORY / "90-test-replica.yml"
    applied: dict[str, Any] = {}

    def apply(**variables: Any) -> None:
        applied.clear()
        applied.update(variables)
        extra.write_text(yaml.safe_dump({"all": {"hosts": {"thanatos": variables}}}))

    try:
        yield apply
    finally:
        extra.unlink(missing_ok=True)
        if applied:  # the test stopped half-way: put the replica back
            rc, result = labctl_json("--sim", "deploy", "erebus,thanatos")
            assert rc == 0, failing(result)


def test_a_disabled_replica_keeps_its_data_unless_purged(addr, table, replica_settings):
    thanatos = box_of("thanatos")
    # Disabled: the container goes, the volume stays, and the primary stops waiting for it.
    replica_settings(postgres_replica_enabled=False)
    rc, result = labctl_json("--sim", "deploy", "erebus,thanatos")
    assert rc == 0, failing(result)
    assert (
        thanatos.check_output("docker ps -a -q --filter label=com.docker.compose.project=postgres_replica")
        == ""
    )
    assert "postgres_data" in thanatos.check_output("docker volume ls -q").split()
    assert admin("erebus", PRIMARY, "SHOW synchronous_standby_names") == ""
    while_away = f"while-away-{time.time()}"
    write(addr, while_away)  # returns: nothing to wait for

    # Enabled again: the kept data directory resumes from its slot (no new clone).
    replica_settings()
    rc, result = labctl_json("--sim", "deploy", "erebus,thanatos")
    assert rc == 0, failing(result)
    wait_for_row("orpheus", addr["thanatos"], while_away)
    assert "cloning the primary" not in thanatos.check_output(f"docker logs {REPLICA} 2>&1")
    assert wait_streaming() == "thanatos|streaming|quorum"

    # Purged (compose_stack_remove_volumes): the data goes; enabled again, it clones anew.
    replica_settings(postgres_replica_enabled=False, compose_stack_remove_volumes=True)
    rc, result = labctl_json("--sim", "deploy", "erebus,thanatos")
    assert rc == 0, failing(result)
    assert "postgres_data" not in thanatos.check_output("docker volume ls -q").split()
    replica_settings()
    rc, result = labctl_json("--sim", "deploy", "erebus,thanatos")
    assert rc == 0, failing(result)
    assert "cloning the primary erebus" in thanatos.check_output(f"docker logs {REPLICA} 2>&1")
    wait_for_row("orpheus", addr["thanatos"], while_away)
    assert wait_streaming() == "thanatos|streaming|quorum"
