"""How a machine's observed state is judged: healthy, unhealthy or drifted."""

from __future__ import annotations

import copy
import hashlib
import json
import socket
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from threading import Thread
from typing import Any, ClassVar

import pytest

from labctl.health import endpoints, judge
from labctl.runner import HostResult, RunResult
from tests.conftest import ROOT

REDIS = {
    "service": "redis",
    "ports": {"redis": 6379},
    "bind_address": "10.0.0.1",
    "health": {"port": "redis", "command": ["redis-cli", "ping"]},
}
EXPORTER = {
    "service": "node_exporter",
    "ports": {"metrics": 9100},
    "bind_address": "10.0.0.1",
    "health": {"port": "metrics", "path": "/metrics"},
}
HEALTHY = {
    "engine": {"ok": True, "version": "20.10.24", "error": ""},
    "mark": {
        "stacks": {
            "node_exporter": {"files": {"compose.yaml": "aaa"}},
            "redis": {"files": {".env": "bbb", "compose.yaml": "ccc", "redis.conf": "ddd"}},
        }
    },
    "files": {
        "node_exporter": {"compose.yaml": "aaa"},
        "redis": {".env": "bbb", "compose.yaml": "ccc", "redis.conf": "ddd"},
    },
    "stack_dirs": ["node_exporter", "redis"],
    "containers": [
        {
            "name": "node_exporter-node-exporter-1",
            "project": "node_exporter",
            "state": "running",
            "health": "healthy",
        },
        {"name": "redis-redis-1", "project": "redis", "state": "running", "health": "healthy"},
    ],
    "endpoints": [
        {"service": "node_exporter", "url": "http://10.0.0.1:9100/metrics", "status": 200},
        {"service": "redis", "address": "10.0.0.1", "port": 6379, "status": 0},
    ],
}


def observed(**changes):
    result = copy.deepcopy(HEALTHY)
    result.update(changes)
    return result


def failing(report):
    return {c["check"]: c["detail"] for c in report["checks"] if not c["ok"]}


def test_healthy_machine():
    report = judge(HEALTHY, [EXPORTER, REDIS])
    assert report["ok"] is True and report["status"] == "healthy"
    assert [c["check"] for c in report["checks"]] == [
        "docker engine",
        "node_exporter files",
        "redis files",
        "node_exporter containers",
        "redis containers",
        "node_exporter endpoint",
        "redis endpoint",
    ]


def test_a_wiped_machine_is_drifted():
    report = judge(observed(mark=None, files={}, stack_dirs=None, containers=[]), [EXPORTER])
    assert report["status"] == "drifted"
    assert "wiped or never deployed" in failing(report)["deploy mark"]


def test_a_file_changed_by_hand_is_drift():
    seen = observed()
    seen["files"]["redis"]["redis.conf"] = "edited"
    report = judge(seen, [EXPORTER, REDIS])
    assert report["status"] == "drifted"
    assert failing(report) == {"redis files": "stacks/redis/redis.conf changed since the deploy"}


def test_a_missing_file_is_drift():
    seen = observed()
    seen["files"]["node_exporter"]["compose.yaml"] = None
    assert failing(judge(seen, [EXPORTER, REDIS])) == {
        "node_exporter files": "stacks/node_exporter/compose.yaml is missing"
    }


def test_a_stack_the_catalog_places_but_the_deploy_did_not():
    seen = observed()
    del seen["mark"]["stacks"]["redis"]
    report = judge(seen, [EXPORTER, REDIS])
    assert report["status"] == "drifted" and "redis deployed" in failing(report)


def test_a_stack_left_over_after_the_catalog_moved_it():
    report = judge(HEALTHY, [EXPORTER])
    assert report["status"] == "drifted"
    assert failing(report) == {"redis left over": "the catalog no longer places it here"}


def test_a_stopped_service_is_unhealthy_not_drifted():
    seen = observed()
    seen["containers"][1].update(state="exited", health="")
    seen["endpoints"][1].update(status=-1, error="Connection refused")
    report = judge(seen, [EXPORTER, REDIS])
    assert report["status"] == "unhealthy"
    assert failing(report) == {
        "redis containers": "redis-redis-1: exited",
        "redis endpoint": "Connection refused (tcp://10.0.0.1:6379)",
    }


def test_an_unhealthy_container_is_named():
    seen = observed()
    seen["containers"][0]["health"] = "unhealthy"
    assert failing(judge(seen, [EXPORTER, REDIS])) == {
        "node_exporter containers": "node_exporter-node-exporter-1: running/unhealthy"
    }


def test_engine_down():
    seen = observed(
        engine={"ok": False, "version": "", "error": "no answer from /var/run/docker.sock"}, containers=[]
    )
    report = judge(seen, [EXPORTER, REDIS])
    assert report["status"] == "unhealthy"
    assert failing(report)["docker engine"].startswith("no answer")


def test_endpoints_probe_the_address_the_service_listens_on():
    assert endpoints([EXPORTER, REDIS]) == [
        {
            "service": "node_exporter",
            "address": "10.0.0.1",
            "port": 9100,
            "url": "http://10.0.0.1:9100/metrics",
        },
        {"service": "redis", "address": "10.0.0.1", "port": 6379},
    ]


def test_a_host_that_missed_later_tiers_is_not_a_success():
    done = HostResult("erebus", ok=20)
    cut_short = HostResult("moros", ok=13, incomplete=True)
    assert done.status == "ok" and cut_short.status == "incomplete"
    assert RunResult(rc=0, status="successful", hosts={"erebus": done}).succeeded
    assert not RunResult(rc=0, status="successful", hosts={"erebus": done, "moros": cut_short}).succeeded
    assert HostResult("nyx").status == "not run"
    assert not RunResult(rc=0, status="successful", hosts={}).succeeded, "a run in which no host ran"


class _Handler(BaseHTTPRequestHandler):
    asked: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        times = self.asked[self.path] = self.asked.get(self.path, 0) + 1
        if self.path == "/busy-once":  # busy for a moment: the first answer is a 503
            self.send_response(503 if times == 1 else 200)
        elif self.path == "/down":
            self.send_response(503)
        else:
            self.send_response(200 if self.path == "/metrics" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _probe(args: dict[str, Any]) -> dict[str, Any]:
    """labctl/probe.py as the health playbook runs it on a machine: a plain python3, no labctl."""
    proc = subprocess.run(
        [sys.executable, "-I", str(ROOT / "labctl" / "probe.py"), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(proc.stdout)


def test_the_probe_runs_with_the_standard_library_and_reports(tmp_path, http_server):
    """labctl/probe.py as the health playbook runs it on a machine: a plain python3, no labctl."""
    base = tmp_path / "platform"
    (base / "stacks" / "node_exporter").mkdir(parents=True)
    (base / "stacks" / "node_exporter" / "compose.yaml").write_text("services: {}\n")
    (base / "deployed.json").write_text(
        json.dumps({"stacks": {"node_exporter": {"files": {"compose.yaml": "x"}}}})
    )
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    args = {
        "base_dir": str(base),
        "endpoints": [
            {
                "service": "web",
                "address": "127.0.0.1",
                "port": http_server,
                "url": f"http://127.0.0.1:{http_server}/metrics",
            },
            {"service": "db", "address": "127.0.0.1", "port": closed_port},
        ],
    }
    report = _probe(args)
    assert report["mark"]["stacks"]["node_exporter"]["files"] == {"compose.yaml": "x"}
    expected = hashlib.sha1(b"services: {}\n").hexdigest()
    assert report["files"]["node_exporter"]["compose.yaml"] == expected
    assert report["stack_dirs"] == ["node_exporter"]
    assert [e["status"] for e in report["endpoints"]] == [200, -1]
    judged = judge(report, [{"service": "node_exporter", "ports": {}, "bind_address": "", "health": None}])
    assert judged["status"] == "drifted"  # compose.yaml differs from the mark's checksum


def test_an_endpoint_must_fail_twice_in_a_row_to_be_down(tmp_path, http_server):
    _Handler.asked.clear()
    url = f"http://127.0.0.1:{http_server}"
    endpoints = [
        {"service": s, "address": "127.0.0.1", "port": http_server, "url": f"{url}/{s}"}
        for s in ("busy-once", "down", "metrics")
    ]
    report = _probe({"base_dir": str(tmp_path), "endpoints": endpoints})
    assert [e["status"] for e in report["endpoints"]] == [200, 503, 200]
    assert _Handler.asked == {"/busy-once": 2, "/down": 2, "/metrics": 1}


DECLARED_GPU = {"vendor": "nvidia", "model": "GeForce RTX 4090", "vram_gb": 24, "count": 1}


def _with_gpu(answers):
    observed = copy.deepcopy(HEALTHY)
    observed["gpu"] = {"declared": DECLARED_GPU, "answers": answers}
    return observed


def test_a_gpu_machine_whose_driver_answers_with_the_declared_card_is_healthy():
    answer = {"tool": "nvidia-smi", "rc": 0, "stdout": "0, NVIDIA GeForce RTX 4090, 24564, 550.127.05\n"}
    report = judge(_with_gpu([answer]), [REDIS, EXPORTER], "orpheus")
    gpu_check = next(c for c in report["checks"] if c["check"] == "GPU")
    assert report["status"] == "healthy"
    assert gpu_check["detail"] == "1 x GeForce RTX 4090 as declared (nvidia-smi)"


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (
            {
                "tool": "nvidia-smi",
                "rc": 9,
                "stdout": "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            },
            "the nvidia driver does not answer for GeForce RTX 4090",
        ),
        (
            {"tool": "nvidia-smi", "rc": 0, "stdout": ""},
            "declares 1 x GeForce RTX 4090; the driver reports 0",
        ),
    ],
)
def test_a_gpu_machine_whose_driver_fails_is_unhealthy_naming_the_card(answer, words):
    report = judge(_with_gpu([answer]), [REDIS, EXPORTER], "orpheus")
    gpu_check = next(c for c in report["checks"] if c["check"] == "GPU")
    assert report["status"] == "unhealthy" and not report["ok"]
    assert words in gpu_check["detail"] and not gpu_check["detail"].startswith("orpheus:")


def test_the_probe_asks_the_vendor_tools_in_order_until_one_answers(tmp_path):
    """As on an AMD machine without amd-smi: the first tool is not installed, the next one (found
    in the extra search path, like ROCm's /opt/rocm/bin) answers, the rest are not asked."""
    tool = tmp_path / "nvidia-smi"
    tool.write_text("#!/bin/sh\necho '0, NVIDIA GeForce RTX 4090, 24564, 550.127.05'\n")
    tool.chmod(0o755)
    args = {
        "base_dir": "/nonexistent",
        "gpu": {
            "declared": DECLARED_GPU,
            "tools": [["labctl-no-such-tool", "--json"], ["nvidia-smi", "--query-gpu=index"], ["false"]],
            "path": [str(tmp_path)],
        },
    }
    report = _probe(args)
    assert [a["rc"] for a in report["gpu"]["answers"]] == [127, 0]
    assert judge(report, [], "orpheus")["checks"][-1]["ok"]


def test_a_machine_whose_firewall_rules_are_loaded_is_healthy():
    report = judge(observed(firewall={"loaded": True, "file": True, "error": ""}), [EXPORTER, REDIS])
    assert report["status"] == "healthy"
    assert "firewall" in [c["check"] for c in report["checks"]]


@pytest.mark.parametrize(
    ("seen", "words"),
    [
        ({"loaded": False, "file": True, "error": "No such file or directory"}, "rules are not loaded"),
        ({"loaded": True, "file": False, "error": ""}, "rules file is missing"),
    ],
)
def test_a_firewall_flushed_or_removed_by_hand_is_drift(seen, words):
    report = judge(observed(firewall=seen), [EXPORTER, REDIS])
    assert report["status"] == "drifted"
    assert words in failing(report)["firewall"]
    assert "open to every machine" in failing(report)["firewall"]


def test_the_probe_reports_the_firewall_only_where_it_is_on(tmp_path):
    rules = tmp_path / "firewall.nft"
    rules.write_text("table inet labctl_firewall {}\n")
    spec = {"table": "labctl_test_absent", "file": str(rules)}
    report = _probe({"base_dir": str(tmp_path), "firewall": spec})
    assert report["firewall"]["file"] is True
    assert report["firewall"]["loaded"] is False  # no such table here (or no nft at all)
    assert "firewall" not in _probe({"base_dir": str(tmp_path)})
