"""Uptime Kuma's monitors, derived from the service catalog.

Every health endpoint of the catalog that other machines can reach (the service's `allow_from`
names anyone, so its ports listen on the lab address) gets one monitor on every Uptime Kuma
instance: an HTTP monitor of the health URL where the catalog gives a path, a TCP port monitor
where the health check is a command inside the container. The firewall admits Uptime Kuma's
machines on those health ports (labctl/firewall.py), whatever `allow_from` says. A service bound
to loopback (no `allow_from`) is not monitored: nothing outside its machine can reach it.

Monitors are named `<service>@<machine>` and carry a description that marks them as labctl's:
labctl adds, changes and deletes only the monitors it owns (plugins/modules/uptime_kuma_monitors.py),
never one a person made in the UI. Adding a machine adds its monitors at the next deploy (Uptime
Kuma consumes every service).
"""

from __future__ import annotations

from typing import Any

from labctl import catalog
from labctl.model import Lab

# The service that runs Uptime Kuma (its machines probe every monitored health endpoint).
SERVICE = "uptime_kuma"
# What marks a monitor as labctl's (its description starts with it).
OWNED = "labctl:"


def monitors(lab: Lab, interval: int = 60, retries: int = 2) -> list[dict[str, Any]]:
    """The monitors of every reachable health endpoint, in catalog order then inventory order.
    `retries`: failed checks retried before a monitor reports down (2: down at the third failed
    check in a row)."""
    result: list[dict[str, Any]] = []
    for inst in catalog.instances(lab):
        if (endpoint := inst.health_endpoint()) is None or not inst.allow_from:
            continue
        monitor: dict[str, Any] = {
            "name": f"{inst.service}@{inst.host}",
            "description": f"{OWNED} {inst.description}",
            "interval": interval,
            "retryInterval": interval,
            "maxretries": retries,
        }
        if endpoint["kind"] == "http":
            monitor |= {"type": "http", "url": endpoint["url"]}
        else:
            monitor |= {"type": "port", "hostname": endpoint["address"], "port": endpoint["port"]}
        result.append(monitor)
    return result


def view(lab: Lab, interval: int = 60, retries: int = 2) -> dict[str, Any]:
    """What the Uptime Kuma role hands its monitor module."""
    return {"monitors": monitors(lab, interval, retries), "marker": OWNED}


def probers(lab: Lab) -> list[str]:
    """The machines Uptime Kuma runs on: the firewall admits them on every monitored port."""
    return [i.host for i in catalog.instances(lab, services=[SERVICE])]
