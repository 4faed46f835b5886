"""The simulated lab's PostgreSQL primary, for the benchmark scripts: psql as postgres inside
its container on erebus (peer authentication on the server's socket)."""

from __future__ import annotations

import subprocess

PRIMARY = ["docker", "exec", "labsim-erebus", "docker", "exec"]
CONTAINER = "postgres-postgres-1"


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        [*PRIMARY, CONTAINER, "psql", "-XAtq", "-d", db, "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
