"""Alertmanager in the simulated lab: a machine whose node exporter stops is reported as HostDown
(and only that machine) within two minutes, by the real Prometheus to the real Alertmanager."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.lab.conftest import box_of
from tests.lab.test_prometheus import address_of

# The target: a machine's exporter stopping to the alert in Alertmanager.
ALERT_WITHIN_S = 120


def alerts(name: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{address_of('alertmanager')}/api/v2/alerts", params={"filter": f'alertname="{name}"'}, timeout=10
    )
    answer.raise_for_status()
    return answer.json()  # type: ignore[no-any-return]


@pytest.fixture
def stopped_exporter():
    """zelus's node exporter stopped (the machine keeps running), started again afterwards."""
    box = box_of("zelus")
    box.check_output("docker stop node_exporter-node-exporter-1")
    stopped = time.monotonic()
    try:
        yield "zelus", stopped
    finally:
        box.check_output("docker start node_exporter-node-exporter-1")


def test_a_machine_whose_exporter_stops_is_reported_to_alertmanager(stopped_exporter):
    host, stopped = stopped_exporter
    deadline = stopped + ALERT_WITHIN_S + 30
    firing: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        firing = [a for a in alerts("HostDown") if a["labels"].get("host") == host]
        if firing:
            break
        time.sleep(2)
    took = time.monotonic() - stopped
    assert firing, f"no HostDown for {host} in Alertmanager after {took:.0f} s"
    alert = firing[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == f"{host} is down"
    assert alert["status"]["state"] == "active"
    print(f"\nHostDown for {host} reached Alertmanager {took:.0f} s after its exporter stopped")
    assert took <= ALERT_WITHIN_S
    # The other machines stay quiet.
    assert {a["labels"]["host"] for a in alerts("HostDown")} == {host}


def test_the_configuration_with_the_receivers_secrets_is_private():
    stat = box_of("moros").check_output(
        "stat -c '%a %u' /opt/ai-platform/stacks/alertmanager/config/alertmanager.yml"
    )
    assert stat == "600 65534"
