#!/usr/bin/env python3
"""Benchmark PostgreSQL replication in the simulated lab (after `labctl --sim deploy all`).

In one run, alternating rounds so the machine's drift hits both sides alike, pgbench (TPC-B-like
writes, from the primary's own container over its socket) against a scratch database `bench`:
- synchronous commit (the platform's setting: each commit waits for the replica's flush);
- local commit (the same load with `synchronous_commit=local`: what asynchronous replication
  would give).
While each round runs, the replica's lag is sampled every 0.5 s from pg_stat_replication on the
primary (replay lag and the bytes of WAL not yet replayed). Prints transactions/s, the ratio, and
the replica's lag (median and max). The `bench` database is dropped at the end.

    .venv/bin/python scripts/bench_replication.py [--seconds 20] [--rounds 2] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import threading
import time
from typing import Any

from simlab_pg import CONTAINER, PRIMARY, psql


def pgbench(seconds: int, clients: int, options: str) -> float:
    proc = subprocess.run(
        [
            *PRIMARY,
            "-e",
            f"PGOPTIONS={options}",
            CONTAINER,
            "pgbench",
            "-n",
            "-T",
            str(seconds),
            "-c",
            str(clients),
            "-j",
            "2",
            "bench",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"tps = ([0-9.]+)", proc.stdout)
    if not match:
        raise SystemExit(f"pgbench printed no tps: {proc.stdout}\n{proc.stderr}")
    return float(match.group(1))


def sample_lag(stop: threading.Event, samples: list[tuple[float, int]]) -> None:
    query = (
        "SELECT coalesce(extract(epoch FROM replay_lag) * 1000, 0),"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication"
    )
    while not stop.is_set():
        row = psql(query)
        if row:
            lag_ms, lag_bytes = row.split("|")
            samples.append((float(lag_ms), int(float(lag_bytes))))
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    replicas = psql("SELECT application_name || ' ' || state || ' ' || sync_state FROM pg_stat_replication")
    print(f"replicas: {replicas or 'none'}")
    psql("DROP DATABASE IF EXISTS bench")
    psql("CREATE DATABASE bench")
    subprocess.run(
        [*PRIMARY, CONTAINER, "pgbench", "-i", "-q", "-s", "5", "bench"], capture_output=True, check=True
    )
    results: dict[str, list[float]] = {"synchronous": [], "local": []}
    lags: dict[str, list[tuple[float, int]]] = {"synchronous": [], "local": []}
    try:
        for _ in range(args.rounds):
            for mode, options in (
                ("synchronous", "-c synchronous_commit=on"),
                ("local", "-c synchronous_commit=local"),
            ):
                stop = threading.Event()
                sampler = threading.Thread(target=sample_lag, args=(stop, lags[mode]))
                sampler.start()
                try:
                    results[mode].append(pgbench(args.seconds, args.clients, options))
                finally:
                    stop.set()
                    sampler.join()
    finally:
        psql("DROP DATABASE IF EXISTS bench")
    report: dict[str, Any] = {}
    for mode in results:
        lag_ms = [ms for ms, _ in lags[mode]] or [0.0]
        lag_bytes = [b for _, b in lags[mode]] or [0]
        report[mode] = {
            "tps_median": round(statistics.median(results[mode]), 1),
            "tps_rounds": results[mode],
            "replay_lag_ms_median": round(statistics.median(lag_ms), 1),
            "replay_lag_ms_max": round(max(lag_ms), 1),
            "unreplayed_bytes_max": max(lag_bytes),
            "samples": len(lags[mode]),
        }
    report["ratio_local_over_synchronous"] = round(
        report["local"]["tps_median"] / report["synchronous"]["tps_median"],
        2,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
