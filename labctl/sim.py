"""State of the simulated lab's containers, read from the Docker engine."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Machine:
    name: str
    container: str
    state: str
    address: str
    systemd: str
    docker: str


def _exec(container: str, *argv: str) -> str:
    proc = subprocess.run(["docker", "exec", container, *argv], capture_output=True, text=True, timeout=30)
    return (proc.stdout or proc.stderr).strip()


def machines() -> list[Machine]:
    """Every simulated machine (containers labelled io.labctl.sim), with systemd and engine state."""
    listing = subprocess.run(
        ["docker", "ps", "--all", "--filter", "label=io.labctl.sim=true", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = sorted(n for n in listing.stdout.split() if n)
    if not names:
        return []
    inspected = json.loads(
        subprocess.run(["docker", "inspect", *names], capture_output=True, text=True, check=True).stdout
    )
    result = []
    for info in inspected:
        container = info["Name"].lstrip("/")
        running = bool(info["State"]["Running"])
        # Each machine sits on the lab network only (sim_lab role).
        networks = list((info.get("NetworkSettings", {}).get("Networks") or {}).values())
        net = networks[0] if networks else {}
        result.append(
            Machine(
                name=info["Config"]["Labels"].get("io.labctl.machine", container),
                container=container,
                state=info["State"]["Status"],
                address=net.get("IPAddress", ""),
                systemd=_exec(container, "systemctl", "is-system-running") if running else "-",
                docker=_exec(container, "docker", "info", "--format", "{{.ServerVersion}}")
                if running
                else "-",
            )
        )
    return result
