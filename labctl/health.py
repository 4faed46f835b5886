"""Judge a machine's health from what the health playbook observed on it.

The playbook only gathers facts (engine answer, `docker compose ps`, HTTP probes); this module
decides what counts as healthy, so the rules are unit-tested and shared by playbook and CLI.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "ok": ok, "detail": detail}


def _containers(stdout: str) -> list[dict[str, Any]]:
    """`docker compose ps --format json` prints one object per line (compose >= 2.21) or a list."""
    text = stdout.strip()
    if not text:
        return []
    if text.startswith("["):
        parsed = json.loads(text)
        return [c for c in parsed if isinstance(c, dict)]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def report(
    engine: Mapping[str, Any],
    stacks: Sequence[Mapping[str, Any]],
    endpoints: Sequence[Mapping[str, Any]],
    services: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Checks for one machine: engine, each catalog service's containers, each health endpoint.

    engine     registered result of `docker info`
    stacks     registered loop results of `docker compose ps` (item = stack name)
    endpoints  registered loop results of ansible.builtin.uri (item = catalog instance)
    services   the catalog instances placed on this machine
    """
    checks = []
    engine_ok = engine.get("rc") == 0
    checks.append(
        _check(
            "docker engine",
            engine_ok,
            str(engine.get("stdout") if engine_ok else engine.get("stderr", "")).strip(),
        )
    )
    by_stack = {str(r.get("item")): r for r in stacks}
    for service in services:
        stack = str(service["stack"])
        result = by_stack.get(stack)
        name = f"{service['service']} containers"
        if result is None or result.get("rc") != 0:
            detail = str(result.get("stderr", "")).strip() if result else "not checked"
            checks.append(_check(name, False, detail or "docker compose ps failed"))
            continue
        try:
            containers = _containers(str(result.get("stdout", "")))
        except json.JSONDecodeError as exc:
            checks.append(_check(name, False, f"unreadable docker compose output: {exc}"))
            continue
        if not containers:
            checks.append(_check(name, False, f"stack {stack} has no containers"))
            continue
        bad = [
            f"{c.get('Name')}: {c.get('State')}{'/' + c['Health'] if c.get('Health') else ''}"
            for c in containers
            if c.get("State") != "running" or c.get("Health") not in ("", None, "healthy")
        ]
        summary = ", ".join(f"{c.get('Name')} {c.get('Health') or c.get('State')}" for c in containers)
        checks.append(_check(name, not bad, "; ".join(bad) if bad else summary))
    for result in endpoints:
        item = result.get("item") or {}
        status = result.get("status", -1)
        url = str(result.get("url") or item.get("health_url", ""))
        ok = status == 200
        detail = f"HTTP {status} from {url}" if status != -1 else f"{result.get('msg', 'no answer')} ({url})"
        checks.append(_check(f"{item.get('service', '?')} endpoint", ok, detail))
    return {"ok": all(c["ok"] for c in checks), "checks": checks}
