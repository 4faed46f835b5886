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
    "docker-api: runs as root": "the Docker socket is root's (read-only mount, no capability)",
    "cadvisor: runs as root": "reads the cgroups and /var/lib/docker, which are root's (read-only)",
    "alloy: runs as root": "reads the journal and the containers' log files, which are root's (read-only)",
    "dcgm-exporter: runs as root": "NVML needs root in the container (no capability is added)",
    "rocm-exporter: runs as root": "AMD's exporter reads the devices' sysfs and /dev/kfd as root",
    "node-exporter: shares the host's PID namespace": (
        "host metrics: it must see the machine's processes (read-only, unprivileged user)"
    ),
    "node-exporter: shares the host's network namespace": (
        "host metrics: the machine's own interfaces; it listens on the lab address only"
    ),
    "postgres: shares the host's network namespace": (
        "replication and clients on the machine's lab address (pg_hba and the host firewall guard it)"
    ),
    "exporter: shares the host's network namespace": (
        "PostgreSQL's exporter, in the server's stack and on its network; listens on the lab address"
    ),
}

# Host paths a container must never get writable (docker-bench-security: "sensitive host system
# directories").
SENSITIVE_HOST_PATHS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")


def problems(name: str, service: dict[str, Any], allowed_addresses: set[str]) -> list[str]:
    """What `service` (a compose service mapping) lacks; empty when it is hardened (apart from
    the EXCEPTIONS)."""
    return [p for p in _problems(name, service, allowed_addresses) if not _excepted(p)]


def _excepted(problem: str) -> bool:
    """Whether a problem is one of the EXCEPTIONS, with or without a location before the service
    name (the lab test names each service `<compose file>:<service>`)."""
    return any(problem == key or problem.endswith(":" + key) for key in EXCEPTIONS)


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
    user = str(service.get("user") or "")
    if not user:
        found.append(f"{name}: runs as the image's default user")
    elif user.split(":")[0] in ("0", "root"):
        found.append(f"{name}: runs as root")
    if service.get("read_only") is not True:
        found.append(f"{name}: root filesystem writable")
    for port in service.get("ports") or []:
        address = str(port).rsplit(":", 2)[0] if str(port).count(":") >= 2 else ""
        if address not in allowed_addresses:
            found.append(f"{name}: port '{port}' is published on '{address or 'every address'}'")
    return found + _bench_problems(name, service)


def _bench_problems(name: str, service: dict[str, Any]) -> list[str]:
    """docker-bench-security's container checks (section 5 of the CIS Docker Benchmark) that
    apply to a compose file: privileges, shared host namespaces, confinement, host mounts."""
    found = []
    if service.get("privileged"):
        found.append(f"{name}: privileged")
    if service.get("cap_add"):
        found.append(f"{name}: adds capabilities {sorted(service['cap_add'])}")
    namespaces = {"pid": "PID", "ipc": "IPC", "uts": "UTS", "network_mode": "network", "userns_mode": "user"}
    for key, label in namespaces.items():
        if service.get(key) == "host":
            found.append(f"{name}: shares the host's {label} namespace")
    for option in service.get("security_opt") or []:
        if str(option).replace("=", ":") in ("seccomp:unconfined", "apparmor:unconfined"):
            found.append(f"{name}: {option}")
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source, mode = str(volume.get("source", "")), "ro" if volume.get("read_only") else ""
        else:
            source, _, rest = str(volume).partition(":")
            mode = rest.partition(":")[2]
        modes = set(mode.split(","))
        if "docker.sock" in source:
            found.append(f"{name}: mounts the Docker socket")
        elif _sensitive(source) and "ro" not in modes:
            found.append(f"{name}: mounts the host's {source} writable")
        if modes & {"shared", "rshared"}:
            found.append(f"{name}: mounts {source} with shared propagation")
    return found


def _sensitive(source: str) -> bool:
    """A host path that is, or lies under, one of SENSITIVE_HOST_PATHS (under "/" only itself)."""
    path = "/" + source.strip("/") if source.startswith("/") else ""
    return path == "/" or any(
        path == root or path.startswith(root + "/") for root in SENSITIVE_HOST_PATHS if root != "/"
    )


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
