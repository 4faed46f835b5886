"""The node exporter: on every machine, listening on the machine's lab address only."""

from __future__ import annotations

import json


def test_node_exporter_container_is_healthy(box):
    state = json.loads(
        box.check_output("docker inspect node_exporter-node-exporter-1 --format '{{json .State}}'")
    )
    assert state["Status"] == "running"
    assert state["Health"]["Status"] == "healthy"
    user = box.check_output("docker inspect node_exporter-node-exporter-1 --format '{{.Config.User}}'")
    assert user == "65534:65534"


def test_node_exporter_answers_the_monitoring_host(monitor, machine):
    """Prometheus on moros will scrape every machine at its lab address."""
    body = monitor.check_output(f"curl -sf --max-time 5 http://{machine.address}:9100/metrics")
    assert "node_exporter_build_info" in body
    assert "node_filesystem_avail_bytes" in body


def test_node_exporter_listens_on_the_lab_address_only(box, machine):
    listening = box.check_output("ss -Hltn 'sport = :9100'")
    assert f"{machine.address}:9100" in listening
    assert "0.0.0.0:9100" not in listening and "*:9100" not in listening
    assert box.run("curl -sf --max-time 3 http://127.0.0.1:9100/metrics").rc != 0
