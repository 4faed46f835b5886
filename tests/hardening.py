"""The hardening every compose service must have: one checker for the rendered macros (unit
tests) and for every compose file on every machine of the simulated lab (lab tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

# The exceptions to the rules below, in one place, each with its reason.
EXCEPTIONS = {
    "docker-api: mounts the Docker socket": (
        "cAdvisor's Docker API proxy (roles/cadvisor): the only container with the socket; it "
        "answers GET requests for containers, info and version on a network with no route out"
    ),
}


def problems(name: str, service: dict[str, Any], allowed_addresses: set[str]) -> list[str]:
    """What `service` (a compose service mapping) lacks; empty when it is hardened (apart from
    the EXCEPTIONS)."""
    return [p for p in _problems(name, service, allowed_addresses) if p not in EXCEPTIONS]


def _problems(name: str, service: dict[str, Any], allowed_addresses: set[str]) -> list[str]:
    found = []
    image = str(service.get("image", ""))
    repository, _, tag = image.partition("@")[0].rpartition(":")
    if "@sha256:" not in image and (not repository or not tag or tag == "latest" or "/" in tag):
        found.append(f"{name}: image '{image}' is not pinned")
    if not (service.get("healthcheck") or {}).get("test"):
        found.append(f"{name}: no healthcheck")
    if service.get("restart") not in ("unless-stopped", "always"):
        found.append(f"{name}: restart policy '{service.get('restart')}'")
    options = (service.get("logging") or {}).get("options") or {}
    if not options.get("max-size") or not options.get("max-file"):
        found.append(f"{name}: no log rotation")
    if "no-new-privileges:true" not in (service.get("security_opt") or []):
        found.append(f"{name}: no no-new-privileges")
    if service.get("cap_drop") != ["ALL"]:
        found.append(f"{name}: capabilities not all dropped")
    if not service.get("mem_limit") or not service.get("pids_limit"):
        found.append(f"{name}: no memory or pids limit")
    if not service.get("user"):
        found.append(f"{name}: runs as the image's default user")
    for volume in service.get("volumes") or []:
        if "docker.sock" in str(volume):
            found.append(f"{name}: mounts the Docker socket")
    for port in service.get("ports") or []:
        address = str(port).rsplit(":", 2)[0] if str(port).count(":") >= 2 else ""
        if address not in allowed_addresses:
            found.append(f"{name}: port '{port}' is published on '{address or 'every address'}'")
    return found


def compose_config(path: Path, text: str) -> dict[str, Any]:
    """Write a rendered compose file to `path`, check it with `docker compose config` (what the
    deploy's template validation runs) and return it parsed."""
    path.write_text(text)
    check = subprocess.run(
        ["docker", "compose", "-f", str(path), "config", "--quiet"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    parsed: dict[str, Any] = yaml.safe_load(text)
    return parsed
