"""What `labctl health` looks at on a machine, in one call: run there as root with the machine's
own python3 (standard library only), it prints one JSON document and judges nothing.

    python3 probe.py '{"base_dir": "/opt/ai-platform", "endpoints": [...]}'

It asks the Docker engine over its socket (no docker CLI: a probe of ten machines must take
seconds, not tens of them) and reports the engine's answer, the deploy mark and the current
checksum of every file the mark lists, the stack directories present, every compose container
with its state and health, the answer of each endpoint it was asked to probe (HTTP GET, or a
TCP connect), on a GPU machine what the driver's tool says and, where the host firewall is on,
whether its rules are loaded. labctl.health compares that with the catalog.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TIMEOUT = 3.0
RETRY_AFTER = 1.0
DOCKER_SOCKET = "/var/run/docker.sock"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def _engine(path: str) -> Any:
    """GET a Docker engine API path; the decoded JSON answer."""
    conn = _UnixConnection(DOCKER_SOCKET)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"engine answered HTTP {response.status} to {path}")
        return json.loads(body)
    finally:
        conn.close()


def _sha1(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()  # noqa: S324 - Ansible's file checksum
    except OSError:
        return None


def _containers() -> list[dict[str, Any]]:
    result = []
    for item in _engine("/containers/json?all=1"):
        labels = item.get("Labels") or {}
        status = str(item.get("Status", ""))
        health = ""
        for word in ("unhealthy", "health: starting", "healthy"):
            if f"({word})" in status:
                health = word.replace("health: ", "")
                break
        result.append(
            {
                "name": str((item.get("Names") or ["?"])[0]).lstrip("/"),
                "project": labels.get("com.docker.compose.project", ""),
                "service": labels.get("com.docker.compose.service", ""),
                "state": item.get("State") or ("running" if status.startswith("Up") else "exited"),
                "health": health,
                "status": status,
            }
        )
    return result


def _endpoint(spec: dict[str, Any]) -> dict[str, Any]:
    """One endpoint's answer; one that fails is asked once more after a second (a service busy
    for a moment -- a gateway running its own health checks on a loaded machine -- is not down:
    it must fail twice in a row)."""
    first = _ask(spec)
    if first["status"] == -1 or first["status"] >= 500:
        time.sleep(RETRY_AFTER)
        return _ask(spec)
    return first


def _ask(spec: dict[str, Any]) -> dict[str, Any]:
    result = dict(spec)
    if spec.get("url"):
        try:
            with urllib.request.urlopen(spec["url"], timeout=TIMEOUT) as response:  # noqa: S310 - lab URL
                result["status"] = response.status
        except urllib.error.HTTPError as exc:
            result["status"] = exc.code
        except (OSError, ValueError) as exc:
            result["status"] = -1
            result["error"] = str(getattr(exc, "reason", exc))
        return result
    try:
        with socket.create_connection((spec["address"], int(spec["port"])), timeout=TIMEOUT):
            result["status"] = 0
    except OSError as exc:
        result["status"] = -1
        result["error"] = exc.strerror or str(exc)
    return result


def _gpu(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the vendor's tools in order until one answers (rc 127: not installed)."""
    env = dict(os.environ)
    env["PATH"] = ":".join([env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), *spec.get("path", [])])
    answers = []
    for argv in spec.get("tools") or []:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env, check=False)
            answer = {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
        except FileNotFoundError:
            answer = {"rc": 127, "stdout": "", "stderr": f"{argv[0]}: not found"}
        except (OSError, subprocess.TimeoutExpired) as exc:
            answer = {"rc": 124, "stdout": "", "stderr": f"{argv[0]}: {exc}"}
        answers.append({"tool": argv[0], **answer})
        if answer["rc"] == 0:
            break
    return {"declared": spec.get("declared") or {}, "answers": answers}


def _firewall(spec: dict[str, Any]) -> dict[str, Any]:
    """Whether the host firewall's table is loaded (nft lists it) and its rules file is there."""
    argv = ["nft", "list", "table", "inet", str(spec.get("table", "labctl_firewall"))]
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env, check=False)
        loaded, error = proc.returncode == 0, proc.stderr.strip()[:200]
    except (OSError, subprocess.TimeoutExpired) as exc:
        loaded, error = False, str(exc)
    return {"loaded": loaded, "error": error, "file": Path(str(spec.get("file", ""))).is_file()}


def probe(args: dict[str, Any]) -> dict[str, Any]:
    base = str(args.get("base_dir", "/opt/ai-platform"))
    try:
        version = str(_engine("/version").get("Version", "?"))
        report: dict[str, Any] = {"engine": {"ok": True, "version": version, "error": ""}}
    except (OSError, ValueError) as exc:
        report = {"engine": {"ok": False, "version": "", "error": f"no answer from {DOCKER_SOCKET}: {exc}"}}
    try:
        mark = json.loads((Path(base) / "deployed.json").read_text())
    except (OSError, ValueError):
        mark = None
    report["mark"] = mark
    files: dict[str, dict[str, str | None]] = {}
    for stack, entry in ((mark or {}).get("stacks") or {}).items():
        files[stack] = {
            name: _sha1(Path(base) / "stacks" / stack / name) for name in (entry.get("files") or {})
        }
    report["files"] = files
    stacks_dir = Path(base) / "stacks"
    report["stack_dirs"] = sorted(p.name for p in stacks_dir.iterdir()) if stacks_dir.is_dir() else None
    try:
        report["containers"] = _containers() if report["engine"]["ok"] else []
    except (OSError, ValueError) as exc:
        report["engine"] = {"ok": False, "version": "", "error": f"cannot list containers: {exc}"}
        report["containers"] = []
    endpoints = list(args.get("endpoints") or [])
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(16, len(endpoints)))) as pool:
        report["endpoints"] = list(pool.map(_endpoint, endpoints))
    if args.get("gpu"):
        report["gpu"] = _gpu(args["gpu"])
    if args.get("firewall"):
        report["firewall"] = _firewall(args["firewall"])
    return report


if __name__ == "__main__":
    print(json.dumps(probe(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
