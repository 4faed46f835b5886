"""The observability stacks the simulated lab cannot run (no Loki, Alloy, cAdvisor or GPU exporter
binary is reachable here): rendered from the real inventory for real machines, checked by
`docker compose config` and the hardening rules, their wiring derived from the catalog."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from labctl import monitoring
from labctl.validate import validate
from tests.conftest import add_gpu_node, render_stack
from tests.hardening import EXCEPTIONS, compose_config, problems


def stack(copy, tmp_path: Path, role: str, host: str, *names: str) -> dict:
    tmp_path.mkdir(exist_ok=True)
    files = render_stack(copy, tmp_path, role, host, ("compose.yaml", *names))
    files["compose"] = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])
    return files


def test_loki_keeps_the_logs_on_the_monitoring_machine(inventory_copy, tmp_path):
    files = stack(inventory_copy, tmp_path, "loki", "moros", "loki.yml")
    service = files["compose"]["services"]["loki"]
    assert problems("loki", service, {"192.168.50.30"}) == []
    assert service["ports"] == ["192.168.50.30:3100:3100"]
    assert service["healthcheck"]["test"] == [
        "CMD",
        "wget",
        "-q",
        "-O",
        "/dev/null",
        "http://127.0.0.1:3100/ready",
    ]
    config = yaml.safe_load(files["loki.yml"])
    assert config["server"]["http_listen_port"] == 3100 and config["auth_enabled"] is False
    [schema] = config["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    # Old logs are deleted: the compactor applies the retention.
    assert config["compactor"]["retention_enabled"] is True
    assert config["limits_config"]["retention_period"] == "744h"
    assert config["analytics"]["reporting_enabled"] is False


def test_every_machine_ships_its_journal_and_containers_to_loki(inventory_copy, tmp_path):
    files = stack(inventory_copy, tmp_path, "alloy", "erebus", "config.alloy")
    service = files["compose"]["services"]["alloy"]
    assert problems("alloy", service, {"192.168.50.10"}) == []
    # Read-only views of the logs; never the Docker socket.
    volumes = service["volumes"]
    assert "/var/lib/docker/containers:/var/lib/docker/containers:ro" in volumes
    assert "/var/log/journal:/var/log/journal:ro" in volumes
    assert not any("docker.sock" in v for v in volumes)
    config = files["config.alloy"]
    # Pushed to the catalog's Loki, labelled with the machine, the stack and the service.
    assert re.findall(r'url = "([^"]+)"', config) == ["http://192.168.50.30:3100/loki/api/v1/push"]
    assert 'host = "erebus"' in config
    assert 'stack   = "attrs.\\"com.docker.compose.project\\""' in config
    assert "forward_to = [loki.write.lab.receiver]" in config
    # Braces balance (Alloy's own parser checks the file on a real machine before it is written).
    assert config.count("{") == config.count("}")


def test_without_loki_the_shippers_are_refused_and_grafana_has_no_logs(inventory_copy):
    inventory_copy.edit("host_vars/moros.yml", lambda d: d.update(loki_enabled=False))
    lab = inventory_copy.load()
    assert monitoring.log_view(lab) == {"push": []}
    assert monitoring.grafana_view(lab)["loki"] is None
    found = [(p.host, p.variable) for p in validate(lab)]
    assert ("all", "labctl_services.alloy") in found, found


def test_cadvisor_reads_container_names_through_a_read_only_proxy(inventory_copy, tmp_path):
    files = stack(inventory_copy, tmp_path, "cadvisor", "zelus")
    services = files["compose"]["services"]
    assert problems("cadvisor", services["cadvisor"], {"192.168.50.13"}) == []
    assert services["cadvisor"]["ports"] == ["192.168.50.13:9338:9338"]
    assert "--docker=tcp://docker-api:2375" in services["cadvisor"]["command"]
    assert not any("docker.sock" in v for v in services["cadvisor"]["volumes"])
    assert all(v.endswith(":ro") for v in services["cadvisor"]["volumes"])
    # The proxy: the listed exception (the socket), on a network with no route out, no port, and
    # only reads allowed.
    proxy = services["docker-api"]
    assert problems("docker-api", proxy, set()) == []
    assert "docker-api: mounts the Docker socket" in EXCEPTIONS
    assert proxy["volumes"] == ["/var/run/docker.sock:/var/run/docker.sock:ro"]
    assert "ports" not in proxy and proxy["networks"] == ["dockerapi"]
    assert files["compose"]["networks"]["dockerapi"]["internal"] is True
    env = proxy["environment"]
    assert env["POST"] == "0" and env["EXEC"] == "0" and env["CONTAINERS"] == "1"


def test_each_gpu_machine_gets_its_vendors_exporter(inventory_copy, tmp_path):
    nvidia = stack(inventory_copy, tmp_path / "n", "dcgm_exporter", "kratos")["compose"]["services"]
    service = nvidia["dcgm-exporter"]
    assert problems("dcgm-exporter", service, {"192.168.50.21"}) == []
    assert service["ports"] == ["192.168.50.21:9400:9400"]
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    amd = stack(inventory_copy, tmp_path / "a", "rocm_exporter", "hades", "config.json")
    service = amd["compose"]["services"]["rocm-exporter"]
    assert problems("rocm-exporter", service, {"192.168.50.23"}) == []
    assert service["devices"] == ["/dev/kfd", "/dev/dri"]
    assert yaml.safe_load(amd["config.json"]) == {"ServerPort": 5000}


def test_a_new_gpu_machine_gets_its_exporter_target(inventory_copy):
    add_gpu_node(inventory_copy, "ceto", "192.168.50.24")
    jobs = {job["job"]: job for job in monitoring.scrape_jobs(inventory_copy.load())}
    assert ["192.168.50.24:9400"] in [t["targets"] for t in jobs["dcgm_exporter"]["targets"]]
    assert ["192.168.50.24:9338"] in [t["targets"] for t in jobs["cadvisor"]["targets"]]
