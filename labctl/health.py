"""Judge a machine's health: is it what the catalog and its last deploy say it should be?

The probe (labctl/probe.py, one call per machine) only observes; this module decides, so the rules
are unit-tested and shared by the health playbook and the CLI. A machine is

- `healthy`   when its engine answers, it holds every stack the catalog places there with the files
              of its last deploy, and every container and endpoint of those stacks is well;
- `drifted`   when what is on it is not what was deployed: no deploy mark (wiped, never deployed),
              a stack missing or left over, a stack file gone or changed by hand, the host firewall's
              rules not loaded. A redeploy heals it;
- `unhealthy` when it holds the right things but a container or endpoint is down, or its GPU
              driver does not report the declared cards;
- `unreachable` (decided by the caller) when it did not answer at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from labctl import gpu

DRIFT, SERVICE, ENGINE = "drift", "service", "engine"


def endpoints(instances: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the probe should try for each instance: its HTTP health URL on the address it listens
    on, or a TCP connect to its health port."""
    result = []
    for inst in instances:
        health = inst.get("health")
        if not health:
            continue
        port = inst["ports"][health["port"]]
        address = inst["bind_address"]
        entry = {"service": inst["service"], "address": address, "port": port}
        if health.get("path"):
            entry["url"] = f"http://{address}:{port}{health['path']}"
        result.append(entry)
    return result


def _check(name: str, ok: bool, detail: str, kind: str) -> dict[str, Any]:
    return {"check": name, "ok": ok, "detail": detail, "kind": kind}


def _gpu_check(host: str, seen: Mapping[str, Any]) -> dict[str, Any]:
    """The driver's answer against the declared cards (the deploy's GPU preflight, again): a
    driver that stopped answering, or a card gone, leaves the models placed there without one."""
    declared = dict(seen.get("declared") or {})
    verdict = gpu.check(host, declared, list(seen.get("answers") or []))
    prefix = f"{host}: "
    problems = [p[len(prefix) :] if p.startswith(prefix) else p for p in verdict["problems"]]
    detail = "; ".join(problems) or (
        f"{len(verdict['cards'])} x {declared.get('model')} as declared ({verdict['tool']})"
    )
    return _check("GPU", verdict["ok"], detail, SERVICE)


def _firewall_check(seen: Mapping[str, Any]) -> dict[str, Any]:
    """The host firewall is on for this machine: its rules must be loaded (a flush by hand, or a
    boot that did not load them, leaves the catalog's ports open to every machine)."""
    if seen.get("loaded") and seen.get("file"):
        return _check("firewall", True, "the catalog's rules are loaded", DRIFT)
    why = "its rules file is missing" if not seen.get("file") else "its rules are not loaded"
    detail = f"{why}: the catalog's ports are open to every machine ({seen.get('error') or 'nft'})"
    return _check("firewall", False, detail, DRIFT)


def judge(
    observed: Mapping[str, Any], expected: Sequence[Mapping[str, Any]], host: str = "this machine"
) -> dict[str, Any]:
    """Checks for one machine from the probe's report and the catalog instances placed on it."""
    checks: list[dict[str, Any]] = []
    engine = observed.get("engine") or {}
    checks.append(
        _check(
            "docker engine",
            bool(engine.get("ok")),
            str(engine.get("version") if engine.get("ok") else engine.get("error") or "no answer"),
            ENGINE,
        )
    )
    stacks = list(dict.fromkeys(str(i["service"]) for i in expected))
    mark = observed.get("mark")
    marked = (mark or {}).get("stacks") or {}
    if mark is None:
        checks.append(_check("deploy mark", False, "missing: the machine was wiped or never deployed", DRIFT))
    else:
        files = observed.get("files") or {}
        for stack in stacks:
            if stack not in marked:
                checks.append(
                    _check(f"{stack} deployed", False, "the catalog places it here; not deployed", DRIFT)
                )
                continue
            bad = []
            for name, checksum in (marked[stack].get("files") or {}).items():
                current = (files.get(stack) or {}).get(name)
                if current is None:
                    bad.append(f"stacks/{stack}/{name} is missing")
                elif current != checksum:
                    bad.append(f"stacks/{stack}/{name} changed since the deploy")
            checks.append(_check(f"{stack} files", not bad, "; ".join(bad) or "as deployed", DRIFT))
        dirs = observed.get("stack_dirs") or []
        for stack in sorted((set(marked) | set(dirs)) - set(stacks)):
            checks.append(_check(f"{stack} left over", False, "the catalog no longer places it here", DRIFT))
    by_project: dict[str, list[Mapping[str, Any]]] = {}
    for container in observed.get("containers") or []:
        by_project.setdefault(str(container.get("project")), []).append(container)
    for stack in stacks:
        containers = by_project.get(stack, [])
        if not engine.get("ok"):
            continue
        if not containers:
            checks.append(_check(f"{stack} containers", False, f"stack {stack} has no containers", SERVICE))
            continue
        bad = [
            f"{c.get('name')}: {c.get('state')}{'/' + str(c['health']) if c.get('health') else ''}"
            for c in containers
            if c.get("state") != "running" or c.get("health") not in ("", None, "healthy")
        ]
        summary = ", ".join(f"{c.get('name')} {c.get('health') or c.get('state')}" for c in containers)
        checks.append(_check(f"{stack} containers", not bad, "; ".join(bad) or summary, SERVICE))
    for result in observed.get("endpoints") or []:
        status = result.get("status", -1)
        target = result.get("url") or f"tcp://{result.get('address')}:{result.get('port')}"
        ok = status == 200 if result.get("url") else status == 0
        if status == -1:
            detail = f"{result.get('error') or 'no answer'} ({target})"
        else:
            detail = (
                f"HTTP {status} from {target}" if result.get("url") else f"accepts connections ({target})"
            )
        checks.append(_check(f"{result.get('service', '?')} endpoint", ok, detail, SERVICE))
    if observed.get("gpu"):
        checks.append(_gpu_check(host, observed["gpu"]))
    if observed.get("firewall"):
        checks.append(_firewall_check(observed["firewall"]))
    failing = {c["kind"] for c in checks if not c["ok"]}
    status = "drifted" if DRIFT in failing else "unhealthy" if failing else "healthy"
    return {"ok": not failing, "status": status, "checks": checks}
