#!/usr/bin/env python3
"""Benchmark the gateway in the simulated lab (after `labctl sim up` and `labctl --sim deploy all`).

One run measures, over the same llama.cpp backends and in alternating rounds so that the machine's
drift hits every side alike:
- the gateway as labctl renders it (orpheus:4000);
- the same LiteLLM image with its defaults: the same model list and master key, nothing else
  (no router settings, one worker), started next to it on orpheus for the run (port 4100);
- one backend directly (kratos's llama.cpp server): what the gateways add. kratos's host firewall
  lets only the gateway's and the monitoring machine's addresses reach its engine, so the run adds
  a rule for the workstation's address (comment "labctl bench") and deletes it at the end.

Per side and concurrency: requests/s, latency p50/p95/p99, the CPU seconds the gateway's container
used (its cgroup's cpuacct on orpheus) and so requests per CPU-second, and the latency each
gateway adds over the direct backend at the median. Whole (non-streamed) answers of 4 tokens to
a short prompt: the backends answer in milliseconds, so the gateway's own cost shows. The balance
of the labctl gateway over the model's copies is measured over --balance requests.

    .venv/bin/python scripts/bench_gateway.py [--requests 400] [--concurrency 1,8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from labctl import bench, firewall, vault

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / ".labctl" / "sim"
GATEWAY = "orpheus"
DIRECT = "kratos"
MODEL = "llama3.1:8b"
DEFAULTS = "litellm-bench-defaults"
STACK = "/opt/ai-platform/stacks/litellm"


def box(
    *argv: str, stdin: str | None = None, env: dict[str, str] | None = None, machine: str = GATEWAY
) -> str:
    """A command on a simulated machine, the gateway's by default (through the engine, not the
    network)."""
    passed = [f"--env={name}={value}" for name, value in (env or {}).items()]
    proc = subprocess.run(
        ["docker", "exec", "-i", *passed, f"labsim-{machine}", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} on {machine}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def addresses() -> dict[str, str]:
    hosts = yaml.safe_load((SIM / "inventory" / "10-sim.yml").read_text())["all"]["hosts"]
    return {name: spec["lab_address"] for name, spec in hosts.items() if "lab_address" in spec}


def master_key() -> str:
    """The simulated lab's gateway key, from its own vault."""
    password = (SIM / "vault-password").read_text().strip()
    return str(vault.read(SIM / "inventory" / "vault.yml", password)["litellm_master_key"])


# The host firewall's table (roles/firewall renders it; its name is labctl's).
FIREWALL = ("inet", firewall.TABLE)
BENCH_RULE = "labctl bench"


@contextlib.contextmanager
def direct_access(address: str, port: int) -> Iterator[None]:
    """Let the workstation reach DIRECT's engine for the run, when its host firewall is on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((address, port))
        workstation = probe.getsockname()[0]
    tables = box("nft", "list", "tables", machine=DIRECT)
    if " ".join(FIREWALL) not in tables:
        yield
        return
    # As the firewall role matches: the port the client asked for, before Docker's DNAT. nft joins
    # its arguments into one rule; the comment keeps its quotes.
    rule = ["meta", "l4proto", "tcp", "ct", "original", "proto-dst", str(port)]
    rule += ["ip", "saddr", workstation, "accept", "comment", f'"{BENCH_RULE}"']
    try:
        for chain in ("input", "forward"):
            box("nft", "insert", "rule", *FIREWALL, chain, *rule, machine=DIRECT)
        yield
    finally:
        listed = box("nft", "-a", "list", "table", *FIREWALL, machine=DIRECT)
        chain = ""
        for line in listed.splitlines():
            words = line.split()
            if words[:1] == ["chain"]:
                chain = words[1]
            elif f'"{BENCH_RULE}"' in line:
                box("nft", "delete", "rule", *FIREWALL, chain, "handle", words[-1], machine=DIRECT)


def cpu_seconds(container: str) -> float:
    """CPU time the container's processes used so far (cgroup v1 cpuacct on the machine)."""
    cid = box("docker", "inspect", "-f", "{{.Id}}", container)
    return int(box("cat", f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")) / 1e9


def start_defaults(address: str, key: str) -> None:
    """The deployed gateway's image and model list, LiteLLM's defaults for everything else."""
    config = yaml.safe_load(box("cat", f"{STACK}/config.yaml"))
    plain = {
        "model_list": config["model_list"],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }
    image = box("docker", "inspect", "-f", "{{.Config.Image}}", "litellm-litellm-1")
    box(
        "sh",
        "-c",
        "mkdir -p /opt/ai-platform/bench && cat > /opt/ai-platform/bench/config.yaml",
        stdin=yaml.safe_dump(plain),
    )
    box("docker", "rm", "-f", DEFAULTS)
    box(
        "docker", "run", "-d", "--name", DEFAULTS,
        "-e", "LITELLM_MASTER_KEY", "-e", "LITELLM_LOCAL_MODEL_COST_MAP=True",
        "-v", "/opt/ai-platform/bench/config.yaml:/app/config.yaml:ro",
        "-p", f"{address}:4100:4000", image, "--config", "/app/config.yaml", "--port", "4000",
        env={"LITELLM_MASTER_KEY": key},
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{address}:4100/health/liveliness", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise SystemExit(
        f"the defaults gateway did not answer: {box('docker', 'logs', '--tail', '20', DEFAULTS)}"
    )


def measure(url: str, key: str, concurrency: int, requests: int) -> bench.Step:
    asyncio.run(
        bench.run_step(url, key, MODEL, "short", concurrency, 2 * concurrency, 4, stream=False)
    )  # warm
    return asyncio.run(bench.run_step(url, key, MODEL, "short", concurrency, requests, 4, stream=False))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="requests per side, level and round")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--balance", type=int, default=1000, help="requests for the balance check")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    where = addresses()
    key = master_key()
    sides = {
        "labctl": (f"http://{where[GATEWAY]}:4000/v1", "litellm-litellm-1"),
        "defaults": (f"http://{where[GATEWAY]}:4100/v1", DEFAULTS),
        "direct": (f"http://{where[DIRECT]}:8080/v1", None),
    }
    results: dict[str, dict[int, list[dict[str, Any]]]] = {s: {c: [] for c in levels} for s in sides}
    with contextlib.ExitStack() as stack:
        stack.enter_context(direct_access(where[DIRECT], 8080))
        stack.callback(box, "docker", "rm", "-f", DEFAULTS)
        start_defaults(where[GATEWAY], key)
        for _ in range(args.rounds):
            for level in levels:
                for side, (url, container) in sides.items():
                    before = cpu_seconds(container) if container else 0.0
                    step = measure(url, key if container else "", level, args.requests)
                    used = cpu_seconds(container) - before if container else None
                    row = step.summary()
                    row["cpu_s"] = None if used is None else round(used, 2)
                    ok = row["requests"] - row["errors"]
                    row["req_per_cpu_s"] = round(ok / used, 1) if used else None
                    results[side][level].append(row)
                    print(
                        f"{side:8} c={level:<2} {row['rps']:7.1f} req/s  "
                        f"p50 {row['latency_p50_ms']:6.1f} ms  "
                        f"p95 {row['latency_p95_ms']:6.1f} ms  errors {row['errors']}  "
                        f"cpu {row['cpu_s']} s  {row['req_per_cpu_s']} req/cpu-s",
                        flush=True,
                    )
        spread = asyncio.run(
            bench.run_step(sides["labctl"][0], key, MODEL, "short", 8, args.balance, 4, stream=False)
        )

    def med(side: str, level: int, field: str) -> float:
        values = [r[field] for r in results[side][level] if r[field] is not None]
        return round(statistics.median(values), 2) if values else float("nan")

    summary: dict[str, Any] = {"levels": {}, "balance": spread.summary()}
    for level in levels:
        direct = med("direct", level, "latency_p50_ms")
        fields = ("rps", "latency_p50_ms", "latency_p95_ms", "req_per_cpu_s")
        by_side = {side: {f: med(side, level, f) for f in fields} for side in sides}
        for side in ("labctl", "defaults"):
            by_side[side]["added_p50_ms"] = round(by_side[side]["latency_p50_ms"] - direct, 2)
        ours, theirs = by_side["labctl"], by_side["defaults"]
        entry: dict[str, Any] = dict(by_side)
        entry["rps_ratio"] = round(ours["rps"] / theirs["rps"], 2)
        entry["per_cpu_ratio"] = round(ours["req_per_cpu_s"] / theirs["req_per_cpu_s"], 2)
        entry["added_ratio"] = (
            round(ours["added_p50_ms"] / theirs["added_p50_ms"], 2) if theirs["added_p50_ms"] > 0 else None
        )
        summary["levels"][level] = entry
    balance = summary["balance"]
    shown = {k: balance[k] for k in ("requests", "errors", "deployments", "balance")}
    print(json.dumps({"levels": summary["levels"], "balance": shown}, indent=1))
    out = ROOT / ".labctl" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gateway-vs-defaults.json").write_text(
        json.dumps({"summary": summary, "rounds": results}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
