#!/usr/bin/env python3
"""Model pull and engine throughput in the simulated lab (after `labctl sim up` and a deploy).

Measures, and prints as JSON:
- `labctl --sim models pull all` when every model is already in place (the no-op), and after the
  model files were removed from every inference machine (a full pull; in the simulated lab, the
  copy of the tiny stand-in model to each placed model's file);
- tokens per second of each simulated inference machine's engine (llama.cpp's server on the tiny
  model), as the server reports it (`timings.predicted_per_second`) and as a client sees it, over
  `--requests` sequential chat completions of `--tokens` tokens per placed model, sent from another
  machine of the lab.

The figures are the simulated engine's, on this machine's CPU: no GPU, a 440 KB model.

    .venv/bin/python scripts/bench_models.py [--requests 20] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LABCTL = str(ROOT / ".venv" / "bin" / "labctl")

# Run on a lab machine with its own python3: sequential requests, the server's and the client's view.
CLIENT = r"""
import json, sys, time, urllib.request
url, model, count, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
server, client = [], []
for i in range(count):
    body = json.dumps({"model": model, "max_tokens": tokens, "temperature": 0.8, "seed": i,
                       "ignore_eos": True,
                       "messages": [{"role": "user", "content": "Tell me about the lab."}]}).encode()
    started = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    elapsed = time.perf_counter() - started
    server.append(answer["timings"]["predicted_per_second"])
    client.append(answer["usage"]["completion_tokens"] / elapsed)
print(json.dumps({"server": server, "client": client}))
"""


def labctl(*args: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    proc = subprocess.run([LABCTL, "--sim", *args, "--json"], capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"labctl {' '.join(args)} failed: {proc.stdout[-1000:]}{proc.stderr[-1000:]}")
    return elapsed, json.loads(proc.stdout)


def machine_address(name: str) -> str:
    return subprocess.run(
        [
            "docker",
            "inspect",
            f"labsim-{name}",
            "--format",
            '{{(index .NetworkSettings.Networks "labctl-sim").IPAddress}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    options = parser.parse_args()

    _, plan = labctl("plan")
    placed: dict[str, list[str]] = {}
    for d in plan["deployments"]:
        placed.setdefault(d["node"], []).append(d["model"])

    noop, result = labctl("models", "pull", "all")
    assert all(h["changed"] == 0 for h in result["hosts"].values()), result
    for node in placed:
        subprocess.run(
            ["docker", "exec", f"labsim-{node}", "sh", "-c", "rm -f /opt/ai-platform/models/gguf/*.gguf"],
            check=True,
        )
    full, result = labctl("models", "pull", "all")
    copies = sum(len(m) for m in placed.values())

    throughput = {}
    for node, models in placed.items():
        url = f"http://{machine_address(node)}:8080/v1/chat/completions"
        for model in models:
            out = subprocess.run(
                [
                    "docker",
                    "exec",
                    "labsim-orpheus",
                    "python3",
                    "-c",
                    CLIENT,
                    url,
                    model,
                    str(options.requests),
                    str(options.tokens),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            figures = json.loads(out)
            throughput[f"{node}/{model}"] = {
                "server_tokens_per_s_median": round(statistics.median(figures["server"]), 1),
                "client_tokens_per_s_median": round(statistics.median(figures["client"]), 1),
            }
    print(
        json.dumps(
            {
                "pull_noop_s": round(noop, 1),
                "pull_all_s": round(full, 1),
                "model_copies": copies,
                "machines": len(placed),
                "requests_per_model": options.requests,
                "tokens_per_request": options.tokens,
                "throughput": throughput,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
