"""The blackbox exporter in the simulated lab: every health endpoint of the catalog is probed from
the monitoring machine and answers; a service that stops answering is seen by its probe."""

from __future__ import annotations

import time

from tests.lab.conftest import box_of
from tests.lab.test_prometheus import prometheus_query, wait_targets_up


def test_every_health_endpoint_is_probed_and_answers():
    expected, _ = wait_targets_up()
    probes = {(job, host, service) for job, host, service in expected if job.startswith("probe_")}
    results = {
        (s["metric"]["job"], s["metric"]["host"], s["metric"]["service"]): s["value"][1]
        for s in prometheus_query("probe_success")
    }
    assert {k: results.get(k) for k in probes if results.get(k) != "1"} == {}
    # The databases are probed by a TCP connect, the web services by their health URL.
    assert ("probe_tcp", "erebus", "postgres") in probes and ("probe_http", "zelus", "mcpo") in probes
    print(f"\nprobes answering: {len(probes)}/{len(probes)}")


def test_a_stopped_service_fails_its_probe():
    box = box_of("zelus")
    query = 'probe_success{service="mcpo", host="zelus"}'
    box.check_output("docker stop mcpo-proxy-1")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = prometheus_query(query)
            if found and found[0]["value"][1] == "0":
                break
            time.sleep(3)
        assert found and found[0]["value"][1] == "0", found
    finally:
        box.check_output("docker start mcpo-proxy-1")
