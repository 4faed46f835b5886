"""labctl bench's measurements: against a small OpenAI-style HTTP server on loopback (a test
double for an engine, started here: streamed and whole answers, a deployment header like the
gateway's, and failures on demand), the counts, tokens, errors and balance come out right, and
the results are written as JSON, CSV and PNG plots. The gateway itself is measured against the
real LiteLLM proxy in the simulated lab (tests/lab/test_litellm.py)."""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from labctl import bench

DEPLOYMENTS = itertools.cycle(["m@a", "m@b", "m@a", "m@c"])


class Handler(BaseHTTPRequestHandler):
    fail_every = 0
    served = itertools.count(1)

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        number = next(self.served)
        if self.fail_every and number % self.fail_every == 0:
            self.send_response(503)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"busy")
            return
        words = ["w"] * body["max_tokens"]
        self.send_response(200)
        self.send_header(bench.MODEL_ID_HEADER, next(DEPLOYMENTS))
        if body["stream"]:
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for word in words:
                chunk = {"choices": [{"delta": {"content": word}}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
        else:
            message = {"content": " ".join(words)}
            answer = json.dumps(
                {"choices": [{"message": message}], "usage": {"completion_tokens": len(words)}}
            )
            encoded = answer.encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)


@pytest.fixture
def engine() -> Iterator[str]:
    Handler.fail_every = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.mark.parametrize("stream", [True, False])
def test_a_step_counts_requests_tokens_and_the_spread(engine, stream):
    step = asyncio.run(bench.run_step(engine, "", "m", "short", 4, 40, 5, stream=stream))
    summary = step.summary()
    assert (summary["requests"], summary["errors"]) == (40, 0)
    assert all(s.tokens == 5 for s in step.samples)
    assert (summary["ttft_p50_ms"] is not None) == stream
    assert sum(summary["deployments"].values()) == 40
    # m@a serves two of every four answers: the balance is min/max over the model's copies.
    assert summary["balance"] == pytest.approx(0.5, abs=0.1)
    assert summary["latency_p50_ms"] <= summary["latency_p95_ms"] <= summary["latency_p99_ms"]


def test_errors_are_counted_and_not_timed(engine):
    Handler.fail_every = 5
    step = asyncio.run(bench.run_step(engine, "", "m", "short", 2, 50, 3))
    summary = step.summary()
    assert summary["errors"] == 10
    assert {s.status for s in step.samples if s.error} == {503}


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 50) == 50
    assert bench.percentile(values, 95) == 95
    assert bench.percentile(values, 99) == 99
    assert bench.percentile([], 50) is None


def test_recovery_is_when_the_copy_served_again():
    samples = [bench.Sample(t, 200, 0.1, None, 1, "m@a" if t < 5 or t > 12 else "m@b") for t in range(20)]
    result = bench.recovery(bench.Step("u", "short", 1, samples, 20.0, "m"), "m@a", 10.0)
    assert result["served_again_after_s"] == 3.0
    assert result["errors"] == 0


def test_results_are_written_as_json_csv_and_plots(engine, tmp_path: Path):
    steps = [asyncio.run(bench.run_step(engine, "", "m", "short", c, 8, 2)) for c in (1, 2, 4)]
    files = bench.write(tmp_path, steps, {"url": engine})
    assert sorted(f.name for f in files) == ["latency.png", "results.csv", "results.json", "throughput.png"]
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [int(r["concurrency"]) for r in rows] == [1, 2, 4]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["url"] == engine and len(data["steps"]) == 3
    for name in ("latency.png", "throughput.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
