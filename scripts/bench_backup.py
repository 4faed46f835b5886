#!/usr/bin/env python3
"""Benchmark PostgreSQL backups and restores in the simulated lab (after `labctl --sim deploy all`).

- Fills a scratch database `bench` with pgbench data of --scale (scale 1 is about 15 MB), then
  times `labctl --sim backup erebus --type full` and `labctl --sim restore erebus --force` (the
  whole restore: stop, pgBackRest restore, recovery, verification, the replica cloned anew), and
  checks that every row came back.
- RPO: commits one row with no other load and measures, from pg_stat_archiver, how long until the
  WAL segment that holds it is in the repository, without forcing a switch: the time
  archive_timeout bounds (what a lost primary can lose at most).
The `bench` database is dropped at the end (and a last backup taken, so the repository does not
keep it as the newest state).

    .venv/bin/python scripts/bench_backup.py [--scale 20] [--rpo-samples 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any

from simlab_pg import CONTAINER, PRIMARY, psql

LABCTL = ".venv/bin/labctl"


def labctl(*args: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    proc = subprocess.run([LABCTL, "--sim", *args, "--json"], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"labctl {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed, json.loads(proc.stdout)


def rpo_sample() -> float:
    """Seconds from a commit (on an idle server) to its WAL segment being archived."""
    psql("CREATE TABLE IF NOT EXISTS bench_rpo (at timestamptz DEFAULT clock_timestamp())", "bench")
    psql("SELECT pg_switch_wal()")  # start from a fresh segment, as after a quiet period
    time.sleep(1)
    psql("INSERT INTO bench_rpo DEFAULT VALUES", "bench")  # committed when psql returns
    # The segment that holds the commit record (the insert position: the write position may
    # still be at the start of the segment, which names the previous one).
    segment = psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
    committed = time.monotonic()
    while psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment:
        time.sleep(0.25)
    return time.monotonic() - committed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--rpo-samples", type=int, default=2)
    args = parser.parse_args()

    psql("DROP DATABASE IF EXISTS bench")
    psql("CREATE DATABASE bench")
    subprocess.run(
        [*PRIMARY, CONTAINER, "pgbench", "-i", "-q", "-s", str(args.scale), "bench"],
        capture_output=True,
        check=True,
    )
    size = int(psql("SELECT sum(pg_database_size(datname)) FROM pg_database"))
    rows = psql("SELECT count(*) FROM pgbench_accounts", "bench")
    print(f"cluster size {size / 2**20:.0f} MiB, pgbench_accounts {rows} rows (scale {args.scale})")

    took, out = labctl("backup", "erebus", "--type", "full")
    newest = out["backups"]["erebus"]["postgres"]["newest"]
    print(
        f"backup (full): {took:.1f}s for labctl backup, pgBackRest {newest['seconds']}s; "
        f"{newest['database_bytes'] / 2**20:.0f} MiB -> "
        f"{newest['repository_bytes'] / 2**20:.1f} MiB in the repository"
    )
    took, out = labctl("restore", "erebus", "--force")
    after = psql("SELECT count(*) FROM pgbench_accounts", "bench")
    print(f"restore (latest, replica cloned anew): {took:.1f}s; rows back: {after} of {rows}")
    assert after == rows

    samples = [rpo_sample() for _ in range(args.rpo_samples)]
    print(f"RPO: commit to archived segment {', '.join(f'{s:.1f}s' for s in samples)} (archive_timeout 60s)")
    psql("DROP DATABASE bench")
    labctl("backup", "erebus")


if __name__ == "__main__":
    main()
