"""Backups of the PostgreSQL primary with pgBackRest, and restores: the repository lives on the NAS
stand-in's disk (bind-mounted where a real machine mounts the NFS export), `labctl backup` takes a
base backup and logical dumps and reports them, and `labctl restore` brings back everything
archived (WAL-G's test shape: dump, backup, more writes, destroy, restore, dump, no difference)
or a point in time between two marked writes. The server, pgBackRest and the clients are real."""

from __future__ import annotations

import shlex
import time
from typing import Any

import pytest

from tests.lab.conftest import box_of, labctl, labctl_json
from tests.lab.test_postgres import PRIMARY, REPLICA, admin, query, wait_streaming

STACK = "docker compose --project-name postgres --project-directory /opt/ai-platform/stacks/postgres"
REPOSITORY = "/srv/labsim-nas/backups/postgres"  # the NAS's backups export, as the sim mounts it
NAS = "nfs://truenas.home.arpa/mnt/tank/ai/backups/postgres/{}?version=4"


@pytest.fixture(scope="module")
def erebus(by_name) -> str:
    return str(by_name["erebus"].address)


def sql(erebus: str, *statements: str) -> list[Any]:
    result = query("orpheus", erebus, list(statements))
    assert result["ok"], result
    return list(result["rows"])


def backup(*args: str) -> dict[str, Any]:
    rc, out = labctl_json("--sim", "backup", "erebus", *args)
    assert rc == 0, out
    return dict(out["backups"]["erebus"]["postgres"])


def archive_now() -> None:
    """Close the current WAL segment and wait until pgBackRest has archived it (what
    archive_timeout does on its own within a minute)."""
    segment = admin("erebus", PRIMARY, "SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + 60
    while admin("erebus", PRIMARY, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
        assert time.monotonic() < deadline, f"{segment} not archived after 60s"
        time.sleep(0.5)


def dump() -> tuple[list[str], dict[str, int]]:
    """The litellm database as pg_dump writes it: every line but the sequences' positions, and
    those positions apart. (A sequence is WAL-logged up to 32 values ahead, so after any recovery
    its position may move forward -- PostgreSQL's documented behaviour; it never moves back.)"""
    # A fixed --restrict-key: pg_dump writes a random one into every dump otherwise.
    command = f"{STACK} exec -T postgres pg_dump --restrict-key=labctl --dbname=litellm"
    text = box_of("erebus").check_output(command)
    lines, positions = [], {}
    for line in text.splitlines():
        if line.startswith("SELECT pg_catalog.setval("):
            name, value = line[len("SELECT pg_catalog.setval(") :].split(", ")[:2]
            positions[name] = int(value)
        else:
            lines.append(line)
    return lines, positions


def replica_follows(by_name: Any, note: str) -> None:
    """A write on the restored primary reaches the replica, which stays a standby (a replica that
    copied the restore's recovery target would promote itself at its first commit)."""
    sql(str(by_name["erebus"].address), f"INSERT INTO labctl_restore (note) VALUES ('{note}')")
    deadline = time.monotonic() + 30
    check = f"SELECT count(*) FROM labctl_restore WHERE note = '{note}'"
    while query("orpheus", str(by_name["thanatos"].address), [check])["rows"] != [[[1]]]:
        assert time.monotonic() < deadline, f"{note} did not reach the replica"
        time.sleep(0.5)
    assert admin("thanatos", REPLICA, "SELECT pg_is_in_recovery()") == "t"
    assert wait_streaming() == "thanatos|streaming|quorum"


@pytest.fixture(scope="module")
def table(erebus) -> None:
    sql(
        erebus,
        "CREATE TABLE IF NOT EXISTS labctl_restore"
        " (id serial PRIMARY KEY, note text, at timestamptz DEFAULT now())",
        "TRUNCATE labctl_restore",
    )


def test_a_backup_is_reported_kept_on_the_nas_and_measured(erebus, table):
    sql(erebus, "INSERT INTO labctl_restore (note) SELECT 'base-' || g FROM generate_series(1, 2000) g")
    full = backup("--type", "full")
    newest = full["newest"]
    assert newest["type"] == "full" and newest["database_bytes"] > 10_000_000
    assert 0 < newest["repository_bytes"] < newest["database_bytes"]  # compressed
    assert time.time() - newest["stop"] < 300
    # The repository is the NAS's: another machine reads the backup's label over NFS.
    listing = box_of("thanatos").check_output(f"nfs-ls {shlex.quote(NAS.format('pgbackrest/backup/labctl'))}")
    assert newest["label"] in listing
    # Each database's logical dump is a valid archive pg_restore reads.
    dump_file = full["dumps"]["litellm"]["file"]
    contents = box_of("erebus").check_output(
        f"{STACK} exec -T postgres pg_restore --list < {shlex.quote(dump_file)}"
    )
    assert "TABLE public labctl_restore" in contents
    # The node exporter serves the backup's age and size for the monitoring tier.
    metrics = box_of("erebus").check_output(f"curl -fsS http://{erebus}:9100/metrics")
    name = "labctl_postgres_backup_last_success_timestamp_seconds"
    stamp = next(line for line in metrics.splitlines() if line.startswith(name))
    assert abs(float(stamp.split()[-1]) - newest["stop"]) < 1
    # With a fresh full backup, the next one is a differential.
    assert backup()["newest"]["type"] == "diff"


def test_a_restore_brings_back_everything_archived(erebus, table, by_name):
    sql(erebus, "INSERT INTO labctl_restore (note) SELECT 'after-' || g FROM generate_series(1, 500) g")
    archive_now()
    before, positions = dump()
    # Destroy: the server and its data are gone.
    box_of("erebus").check_output(f"{STACK} down --volumes")
    rc, out = labctl_json("--sim", "restore", "erebus")
    assert rc == 0, out
    assert out["restore"]["target"] == "latest" and out["restore"]["databases"]["litellm"] > 0
    after, moved = dump()
    assert after == before  # every schema object and every row
    assert moved.keys() == positions.keys() and all(moved[n] >= positions[n] for n in positions)
    # The replica was cloned anew from the restored primary and follows it.
    replica_follows(by_name, "after-latest-restore")


def test_a_point_in_time_restore_lands_between_two_marked_writes(erebus, table, by_name):
    sql(erebus, "INSERT INTO labctl_restore (note) VALUES ('mark-A')")
    target = sql(erebus, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
    target_time = f"{target[0][0][0]}+00"
    time.sleep(1)
    sql(erebus, "INSERT INTO labctl_restore (note) VALUES ('mark-B')")
    archive_now()
    # A running primary is not overwritten without --force, and nothing is touched.
    refused = labctl("--sim", "restore", "erebus", "--time", target_time)
    assert refused.returncode != 0 and "--force" in refused.stdout + refused.stderr
    marks = "SELECT note FROM labctl_restore WHERE note LIKE 'mark-%' ORDER BY note"
    assert sql(erebus, marks) == [[["mark-A"], ["mark-B"]]]
    rc, out = labctl_json("--sim", "restore", "erebus", "--time", target_time, "--force")
    assert rc == 0, out
    assert sql(erebus, marks) == [[["mark-A"]]]
    replica_follows(by_name, "after-point-in-time-restore")
