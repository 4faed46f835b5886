"""The simulated lab's machines as the Docker engine sees them, and faults on demand.

Every command here acts only on containers labelled as simulated machines (io.labctl.sim=true),
the NAS stand-in included (kind "nas"); a name that is not one -- a real machine, any other
container -- is refused.
Waits are bounded. Building and starting the lab is the sim_lab role's job (`labctl sim up`).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from labctl.model import Lab

LABEL = "io.labctl.sim"
DEFAULTS = Path(__file__).resolve().parents[1] / "roles" / "sim_lab" / "defaults" / "main.yml"


class SimError(RuntimeError):
    """A simulated-lab operation cannot be done; the message says why."""


@cache
def settings() -> dict[str, Any]:
    """The sim_lab role's defaults (network, subnet, name prefix): one source for role and CLI."""
    return dict(yaml.safe_load(DEFAULTS.read_text()))


def workstation_address(subnet: str) -> str:
    """The bridge's own address in the simulated network: where the workstation (labctl, the
    tests) meets the machines."""
    return str(next(ipaddress.ip_network(subnet).hosts()))


def addresses(lab: Lab, subnet: str) -> dict[str, str]:
    """Each machine's address in the simulated network: the host part of its real lab_address
    inside `subnet` (192.168.50.22 -> 10.213.0.22), so adding a machine never renumbers others."""
    network = ipaddress.ip_network(subnet)
    gateway = ipaddress.ip_address(workstation_address(subnet))
    taken: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
    result = {}
    for host in lab.all_hosts:
        real = lab.var(host, "lab_address", None)
        if not isinstance(real, str):
            continue
        offset = int(ipaddress.ip_address(real)) % network.num_addresses
        address = network.network_address + offset
        if address in (network.network_address, network.broadcast_address, gateway):
            raise SimError(
                f"{host}: lab_address {real} maps to {address}, which the simulated network reserves"
            )
        if address in taken:
            raise SimError(
                f"{host} and {taken[address]} map to the same simulated address {address} "
                f"(their lab_address values share the last {network.max_prefixlen - network.prefixlen} bits)"
            )
        taken[address] = host
        result[host] = str(address)
    return result


@dataclass(frozen=True)
class Machine:
    name: str
    container: str
    state: str
    address: str
    image: str
    systemd: str
    docker: str
    kind: str = "machine"  # or "nas": the NAS stand-in (an NFS server, no systemd or engine)


def _docker(*argv: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SimError("the docker command is not installed (run scripts/bootstrap.sh)") from None
    except subprocess.TimeoutExpired:
        raise SimError(f"`docker {' '.join(argv)}` did not finish within {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        message = proc.stderr.strip() or proc.stdout.strip()
        if "Cannot connect to the Docker daemon" in message or "Is the docker daemon running" in message:
            raise SimError("the Docker engine is not running (start it, or run scripts/bootstrap.sh)")
        raise SimError(f"`docker {' '.join(argv[:2])}` failed: {message}")
    return proc


def _exec(container: str, *argv: str, timeout: float = 30) -> str:
    proc = _docker("exec", container, *argv, timeout=timeout, check=False)
    return (proc.stdout or proc.stderr).strip()


def _inspect_all() -> list[dict[str, Any]]:
    listing = _docker("ps", "--all", "--filter", f"label={LABEL}=true", "--format", "{{.Names}}")
    names = sorted(n for n in listing.stdout.split() if n)
    if not names:
        return []
    return list(json.loads(_docker("inspect", *names).stdout))


OVERLAY = Path(__file__).resolve().parents[1] / ".labctl" / "sim" / "inventory" / "10-sim.yml"


def _configured() -> dict[str, str]:
    """Each machine's address as `labctl sim up` configured it (the simulated lab's inventory)."""
    try:
        hosts = (yaml.safe_load(OVERLAY.read_text()) or {}).get("all", {}).get("hosts") or {}
    except OSError:
        return {}
    return {str(name): str(spec.get("lab_address", "")) for name, spec in hosts.items() if spec}


def _address(info: dict[str, Any], configured: dict[str, str]) -> str:
    """The machine's address on the lab network, also while it is stopped or cut off."""
    name = info["Config"]["Labels"].get("io.labctl.machine", "")
    if configured.get(name):
        return configured[name]
    network = settings()["sim_lab_network"]
    current = ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}
    return str(current.get("IPAddress") or "")


def machines(*, deep: bool = True) -> list[Machine]:
    """Every simulated machine; with `deep`, also systemd's and the inner engine's state."""
    result = []
    configured = _configured()
    for info in _inspect_all():
        container = info["Name"].lstrip("/")
        kind = info["Config"]["Labels"].get("io.labctl.kind", "machine")
        running = bool(info["State"]["Running"]) and not info["State"].get("Paused")
        deep_here = deep and running and kind == "machine"
        result.append(
            Machine(
                name=info["Config"]["Labels"].get("io.labctl.machine", container),
                container=container,
                state="paused" if info["State"].get("Paused") else info["State"]["Status"],
                address=_address(info, configured),
                image=info["Config"]["Image"],
                systemd=_exec(container, "systemctl", "is-system-running") if deep_here else "-",
                docker=_exec(container, "docker", "info", "--format", "{{.ServerVersion}}")
                if deep_here
                else "-",
                kind=kind,
            )
        )
    return sorted(result, key=lambda m: m.name)


def machine(name: str) -> Machine:
    """The simulated machine `name`, or a refusal naming the machines there are."""
    found = {m.name: m for m in machines(deep=False)}
    if name not in found:
        known = ", ".join(found) or "none (run `labctl sim up`)"
        raise SimError(
            f"'{name}' is not a machine of the simulated lab; sim commands act only on those: {known}"
        )
    return found[name]


def _connected(info: dict[str, Any]) -> bool:
    return settings()["sim_lab_network"] in ((info.get("NetworkSettings") or {}).get("Networks") or {})


def wait_for_ssh(address: str, timeout: float) -> float:
    """Seconds until the machine's SSH server accepts a connection; SimError after `timeout`."""
    return _wait_for(address, 22, b"SSH-", "SSH", timeout)


def _wait_for(address: str, port: int, banner: bytes, what: str, timeout: float) -> float:
    started = time.monotonic()
    while True:
        try:
            with socket.create_connection((address, port), timeout=2) as conn:
                conn.settimeout(2)
                if not banner or conn.recv(len(banner)).startswith(banner):
                    return time.monotonic() - started
        except OSError:
            pass
        if time.monotonic() - started > timeout:
            raise SimError(f"no {what} answer from {address} within {timeout:.0f}s")
        time.sleep(0.5)


def _wait_answer(target: Machine, timeout: float) -> str:
    """Wait for what the machine serves: SSH, or the NAS stand-in's NFS port."""
    if target.kind == "nas":
        return f"NFS answered after {_wait_for(target.address, 2049, b'', 'NFS', timeout):.1f}s"
    return f"SSH answered after {wait_for_ssh(target.address, timeout):.1f}s"


def act(action: str, name: str, *, timeout: float = 120) -> str:
    """One fault or repair on one simulated machine; returns what happened, in words."""
    target = machine(name)
    container = target.container
    info = json.loads(_docker("inspect", container).stdout)[0]
    state = info["State"]
    if action == "stop":
        if not state["Running"]:
            return f"{name} is already stopped"
        _docker("stop", "--time", "30", container, timeout=60)
        return f"{name} stopped (a clean shutdown; its disk is kept)"
    if action == "kill":
        if not state["Running"]:
            return f"{name} is already stopped"
        _docker("kill", container, timeout=30)
        return f"{name} lost power (killed; its disk is kept)"
    if action == "pause":
        if state.get("Paused"):
            return f"{name} is already paused"
        _docker("pause", container, timeout=30)
        return f"{name} is frozen (paused: it answers nothing until `labctl sim unpause {name}`)"
    if action == "unpause":
        if not state.get("Paused"):
            return f"{name} is not paused"
        _docker("unpause", container, timeout=30)
        return f"{name} runs again"
    if action == "start":
        if state["Running"]:
            return f"{name} is already running"
        _docker("start", container, timeout=60)
        return f"{name} started; {_wait_answer(target, timeout)}"
    if action == "isolate":
        if not _connected(info):
            return f"{name} is already cut off"
        _docker("network", "disconnect", settings()["sim_lab_network"], container, timeout=30)
        return f"{name} is cut off the lab network (running, unreachable)"
    if action == "rejoin":
        if _connected(info):
            return f"{name} is on the lab network"
        _docker(
            "network", "connect", "--ip", target.address, settings()["sim_lab_network"], container, timeout=30
        )
        if state["Running"] and not state.get("Paused"):
            return f"{name} is back on the lab network; {_wait_answer(target, timeout)}"
        return f"{name} is back on the lab network"
    if action in ("gpu-fail", "gpu-repair"):
        return _gpu_driver(name, container, state, fail=action == "gpu-fail")
    raise SimError(f"unknown action '{action}'")


# The GPU driver stand-in (sim/host/gpu-driver-standin): the cards a machine declares, and the
# mark that makes its tool fail. The mark is in /run, so a power cycle brings the driver back.
GPU_CARDS = "/etc/labctl-sim/gpu.json"
GPU_FAILED = "/run/labctl-sim/gpu-failed"


def _gpu_driver(name: str, container: str, state: dict[str, Any], *, fail: bool) -> str:
    if not state["Running"] or state.get("Paused"):
        raise SimError(f"{name} is not running: start it first (`labctl sim start {name}`)")
    if _docker("exec", container, "test", "-f", GPU_CARDS, check=False).returncode != 0:
        raise SimError(
            f"{name} declares no GPU (host_vars/{name}.yml has no `gpu`): it has no driver to fail"
        )
    failed = _docker("exec", container, "test", "-e", GPU_FAILED, check=False).returncode == 0
    if fail:
        if failed:
            return f"{name}'s GPU driver is already failing"
        _docker("exec", container, "sh", "-c", f"mkdir -p {Path(GPU_FAILED).parent} && touch {GPU_FAILED}")
        return (
            f"{name}'s GPU driver stopped answering (until `labctl sim gpu-repair {name}` or a power cycle)"
        )
    if not failed:
        return f"{name}'s GPU driver answers"
    _docker("exec", container, "rm", "-f", GPU_FAILED)
    return f"{name}'s GPU driver answers again"
