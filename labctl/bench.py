"""`labctl bench`: load against any OpenAI-compatible endpoint (the gateway, or one engine).

A run is a sweep: for each prompt size and each concurrency, a fixed number of streamed chat
completions, `concurrency` at a time. Each request records its status, time to first token,
total time, the tokens it got and, from the gateway, which deployment served it (LiteLLM's
`x-litellm-model-id` header). A step's summary: requests/s, latency and TTFT percentiles,
tokens/s, errors, and requests per deployment (the balance across copies of the model).

`--compare URL` runs the same sweep against a second endpoint (a backend directly) step by step in
the same run and reports the latency the first adds. `--chaos` cuts one machine's power in the
middle of a step (the simulated lab's `sim kill`), powers it back, and reports the errors clients
saw and when the machine's copy served requests again.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Prompts of three sizes (about 10, 200 and 1,500 tokens) and the answer length asked for.
PROMPTS: dict[str, str] = {
    "short": "Name one colour of the rainbow.",
    "medium": "Summarise the following notes in one sentence. " + "The lab has ten machines. " * 40,
    "long": "Summarise the following notes in one sentence. " + "The lab has ten machines. " * 300,
}
MODEL_ID_HEADER = "x-litellm-model-id"


@dataclass
class Sample:
    """One request."""

    start: float  # seconds since the run began
    status: int  # HTTP status; 0 when no answer came (connection error, timeout)
    latency: float  # seconds to the last byte
    ttft: float | None  # seconds to the first content chunk
    tokens: int  # content chunks received (one per token for the engines here)
    deployment: str  # the gateway's deployment id ('' from a backend)
    error: str = ""


@dataclass
class Step:
    """One point of the sweep: a prompt size at a concurrency, against one endpoint."""

    endpoint: str
    prompt: str
    concurrency: int
    samples: list[Sample] = field(default_factory=list)
    wall: float = 0.0
    model: str = ""

    def summary(self) -> dict[str, Any]:
        ok = [s for s in self.samples if s.status == 200 and not s.error]
        latencies = sorted(s.latency for s in ok)
        ttfts = sorted(s.ttft for s in ok if s.ttft is not None)
        by_deployment = Counter(s.deployment for s in ok if s.deployment)
        # The balance is over the copies of the model asked for (a fallback's copies aside).
        counts = [n for d, n in by_deployment.items() if not self.model or d.startswith(f"{self.model}@")]
        return {
            "endpoint": self.endpoint,
            "prompt": self.prompt,
            "concurrency": self.concurrency,
            "requests": len(self.samples),
            "errors": len(self.samples) - len(ok),
            "wall_s": round(self.wall, 3),
            "rps": round(len(ok) / self.wall, 2) if self.wall else 0.0,
            "latency_p50_ms": _ms(percentile(latencies, 50)),
            "latency_p95_ms": _ms(percentile(latencies, 95)),
            "latency_p99_ms": _ms(percentile(latencies, 99)),
            "ttft_p50_ms": _ms(percentile(ttfts, 50)),
            "ttft_p95_ms": _ms(percentile(ttfts, 95)),
            "tokens_per_s": round(sum(s.tokens for s in ok) / self.wall, 1) if self.wall else 0.0,
            "deployments": dict(sorted(by_deployment.items())),
            "balance": round(min(counts) / max(counts), 3) if len(counts) > 1 else None,
        }


def percentile(values: list[float], pct: float) -> float | None:
    """The pct-th percentile of sorted values (nearest rank); None for no values."""
    if not values:
        return None
    rank = max(1, round(pct / 100 * len(values) + 0.5 - 1e-9))
    return values[min(rank, len(values)) - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def one_request(
    client: httpx.AsyncClient,
    url: str,
    key: str,
    model: str,
    prompt: str,
    max_tokens: int,
    t0: float,
    stream: bool = True,
) -> Sample:
    """One chat completion, timed: streamed (time to first token, a token per chunk) or whole
    (the answer's usage counts the tokens)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    start = time.perf_counter()
    ttft = None
    tokens = 0
    try:
        async with client.stream("POST", f"{url}/chat/completions", json=body, headers=headers) as response:
            deployment = response.headers.get(MODEL_ID_HEADER, "")
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")[:300]
                return Sample(
                    start - t0, response.status_code, time.perf_counter() - start, None, 0, deployment, text
                )
            if not stream:
                answer = json.loads(await response.aread())
                tokens = int((answer.get("usage") or {}).get("completion_tokens") or 0)
                return Sample(start - t0, 200, time.perf_counter() - start, None, tokens, deployment)
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                chunk = json.loads(line[5:])
                if chunk.get("error"):
                    return Sample(
                        start - t0,
                        200,
                        time.perf_counter() - start,
                        ttft,
                        tokens,
                        deployment,
                        str(chunk["error"])[:300],
                    )
                choices = chunk.get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    tokens += 1
                    if ttft is None:
                        ttft = time.perf_counter() - start
            return Sample(start - t0, 200, time.perf_counter() - start, ttft, tokens, deployment)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return Sample(
            start - t0, 0, time.perf_counter() - start, None, 0, "", f"{type(exc).__name__}: {exc}"[:300]
        )


async def run_step(
    url: str,
    key: str,
    model: str,
    prompt: str,
    concurrency: int,
    requests: int,
    max_tokens: int,
    *,
    during: Callable[[float], Coroutine[Any, Any, None]] | None = None,
    settle: float = 60.0,
    timeout: float = 300.0,
    stream: bool = True,
) -> Step:
    """`requests` requests, `concurrency` at a time. With `during(t0)` (a fault), requests go on
    until it has finished and `settle` seconds more (the recovery), however many that takes."""
    step = Step(url, prompt, concurrency, model=model)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        t0 = time.perf_counter()
        sent = 0
        side: asyncio.Task[None] | None = asyncio.create_task(during(t0)) if during else None
        ended: list[float] = []

        def more() -> bool:
            if side is None:
                return sent < requests
            if not side.done():
                return True
            if not ended:
                ended.append(time.perf_counter())
            return time.perf_counter() - ended[0] < settle or sent < requests

        async def worker() -> None:
            nonlocal sent
            while more():
                sent += 1
                step.samples.append(
                    await one_request(client, url, key, model, PROMPTS[prompt], max_tokens, t0, stream)
                )

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        step.wall = time.perf_counter() - t0
        if side:
            await side  # re-raises what the fault raised
    return step


def added_latency(gateway: Step, direct: Step) -> dict[str, Any]:
    """What the gateway adds to the direct backend's latency, at the same step."""
    g, d = gateway.summary(), direct.summary()

    def diff(key: str) -> float | None:
        return None if g[key] is None or d[key] is None else round(g[key] - d[key], 1)

    return {
        "prompt": gateway.prompt,
        "concurrency": gateway.concurrency,
        "added_p50_ms": diff("latency_p50_ms"),
        "added_p95_ms": diff("latency_p95_ms"),
        "rps_ratio": round(g["rps"] / d["rps"], 3) if d["rps"] else None,
    }


def recovery(step: Step, deployment: str, back_at: float) -> dict[str, Any]:
    """Client-visible errors of a chaos step and when `deployment` served again after `back_at`
    (seconds since the step began, when its machine answered again)."""
    served_again = [s.start for s in step.samples if s.deployment == deployment and s.start >= back_at]
    return {
        "errors": sum(1 for s in step.samples if s.status != 200 or s.error),
        "requests": len(step.samples),
        "deployment": deployment,
        "machine_back_s": round(back_at, 1),
        "served_again_after_s": round(min(served_again) - back_at, 1) if served_again else None,
    }


def write(out: Path, steps: list[Step], extra: dict[str, Any]) -> list[Path]:
    """results.json (every summary and sample), results.csv (one row per step) and the plots."""
    out.mkdir(parents=True, exist_ok=True)
    summaries = [s.summary() for s in steps]
    data = {
        **extra,
        "steps": summaries,
        "samples": {
            f"{s.endpoint} {s.prompt} c{s.concurrency}": [asdict(x) for x in s.samples] for s in steps
        },
    }
    json_path = out / "results.json"
    json_path.write_text(json.dumps(data, indent=1))
    csv_path = out / "results.csv"
    columns = [k for k in summaries[0] if k != "deployments"] if summaries else []
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(summaries)
    return [json_path, csv_path, *(plot(out, steps) if steps else [])]


def plot(out: Path, steps: list[Step]) -> list[Path]:
    """latency.png (p50 and p95 against concurrency) and throughput.png (requests/s and
    tokens/s against concurrency): one line per endpoint and prompt size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    series: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        series.setdefault(f"{step.endpoint} {step.prompt}", []).append(step.summary())
    files = []
    panels = {
        "latency.png": (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95"), "latency (ms)"),
        "throughput.png": (("rps", "requests/s"), ("tokens_per_s", "tokens/s"), None),
    }
    for name, (first, second, ylabel) in panels.items():
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
        for axis, (metric, title) in zip(axes, (first, second), strict=True):
            for label, unordered in sorted(series.items()):
                rows = sorted(unordered, key=lambda r: r["concurrency"])
                points = [(r["concurrency"], r[metric]) for r in rows if r[metric] is not None]
                if points:
                    axis.plot(*zip(*points, strict=True), marker="o", label=label)
            axis.set_xscale("log", base=2)
            axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            axis.set_xlabel("concurrency")
            axis.set_ylabel(ylabel or title)
            axis.set_title(title)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize="small")
        path = out / name
        figure.savefig(path, dpi=100)
        plt.close(figure)
        files.append(path)
    return files
