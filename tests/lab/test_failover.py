"""Failover of the PostgreSQL primary: rows written in synchronous mode, the primary killed,
`labctl db promote thanatos` -- every row is on the new primary, the consumers' name
(postgres.<domain>) follows it, writes are accepted; `labctl db rejoin erebus` brings the old
primary back as a synchronous replica. Then the way back (a planned switchover): promote erebus,
rejoin thanatos, and the placement is the inventory's groups' again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.conftest import SIM_INVENTORY, box_of, failing, labctl, labctl_json
from tests.lab.test_postgres import PRIMARY, REPLICA, admin, query, wait_streaming

ALIAS = "postgres.home.arpa"
PLACEMENT = SIM_INVENTORY / "placement.yml"


def rows(on_address: str) -> int:
    result = query("orpheus", on_address, ["SELECT count(*) FROM labctl_failover"])
    assert result["ok"], result
    return int(result["rows"][0][0][0])


def promote(machine: str) -> dict[str, Any]:
    rc, out = labctl_json("--sim", "db", "promote", machine)
    assert rc == 0, out
    return dict(out)


def rejoin(machine: str) -> dict[str, Any]:
    rc, out = labctl_json("--sim", "db", "rejoin", machine)
    assert rc == 0, out
    return dict(out)


def replication(machine: str) -> str:
    """pg_stat_replication on the primary that `machine` runs now, once its replica streams."""
    deadline = time.monotonic() + 60
    while True:
        state = admin(machine, PRIMARY, "SELECT application_name, state, sync_state FROM pg_stat_replication")
        if state.endswith("|streaming|quorum") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


@pytest.fixture
def back_to_the_groups() -> Iterator[None]:
    """Whatever happens, the lab ends with erebus the primary and thanatos its replica."""
    yield
    if PLACEMENT.exists():
        labctl("--sim", "db", "promote", "erebus")
        labctl("--sim", "db", "rejoin", "thanatos")


def test_promote_after_the_primary_dies_then_rejoin_and_switch_back(by_name, back_to_the_groups):
    erebus, thanatos = str(by_name["erebus"].address), str(by_name["thanatos"].address)
    written = query(
        "orpheus",
        erebus,
        [
            "CREATE TABLE IF NOT EXISTS labctl_failover (id int PRIMARY KEY, at timestamptz DEFAULT now())",
            "TRUNCATE labctl_failover",
            "INSERT INTO labctl_failover (id) SELECT g FROM generate_series(1, 1000) g",
        ],
    )
    assert written["ok"], written  # each commit waited for the replica (synchronous)

    # The primary dies.
    box_of("erebus").check_output(f"docker kill {PRIMARY}")
    out = promote("thanatos")
    assert out["primary"] == "thanatos" and out["fenced"] == {"erebus": True}
    assert PLACEMENT.exists()
    # Every acknowledged row is on the new primary, which the consumers' name now points at.
    assert box_of("orpheus").check_output(f"getent hosts {ALIAS}").split()[0] == thanatos
    assert rows(ALIAS) == 1000
    more = query("orpheus", ALIAS, ["INSERT INTO labctl_failover (id) VALUES (1001)"])
    assert more == {"ok": True, "rows": [1]}, more
    # The old primary is fenced: its server stays stopped on erebus.
    assert PRIMARY not in box_of("erebus").check_output("docker ps --format '{{.Names}}'")

    # The old primary comes back as a synchronous replica of the new one.
    rejoin("erebus")
    assert replication("thanatos") == "erebus|streaming|quorum"
    assert admin("erebus", REPLICA, "SELECT count(*) FROM labctl_failover", db="litellm") == "1001"

    # The way back, planned: thanatos is fenced by labctl, erebus promoted, thanatos rejoined.
    promote("erebus")
    rejoin("thanatos")
    assert not PLACEMENT.exists()  # the placement is the inventory's groups' again
    assert wait_streaming() == "thanatos|streaming|quorum"
    assert box_of("orpheus").check_output(f"getent hosts {ALIAS}").split()[0] == erebus
    assert rows(erebus) == 1001
    rc, health = labctl_json("--sim", "health", "erebus,thanatos")
    assert rc == 0, failing(health)
