"""What a converged lab looks like on every machine."""

from __future__ import annotations

import json

import yaml


def test_hostname_is_the_inventory_name(box, machine):
    assert box.check_output("hostname") == machine.name


def test_platform_tree_exists(box):
    for path in ("/opt/ai-platform", "/opt/ai-platform/stacks"):
        d = box.file(path)
        assert d.is_directory, path
        assert d.user == "root" and d.mode == 0o755, path


def test_docker_engine_runs_with_log_rotation(box):
    docker = box.service("docker")
    assert docker.is_running and docker.is_enabled
    config = json.loads(box.file("/etc/docker/daemon.json").content_string)
    assert config["log-driver"] == "json-file"
    assert config["log-opts"]["max-size"] == "10m"
    assert box.check_output("docker info --format '{{.LoggingDriver}}'") == "json-file"


def test_compose_v2_is_installed(box):
    version = box.check_output("docker compose version --short").lstrip("v")
    assert tuple(int(x) for x in version.split("-")[0].split(".")[:2]) >= (2, 18)


def test_sysctl_settings_are_written(box):
    content = box.file("/etc/sysctl.d/60-labctl.conf").content_string
    assert "net.ipv4.ip_forward = 1" in content
    assert "vm.max_map_count = 262144" in content


def test_stack_files_have_safe_modes(box):
    stack = "/opt/ai-platform/stacks/node_agent"
    env = box.file(f"{stack}/.env")
    assert env.mode == 0o600 and env.user == "root"
    compose = box.file(f"{stack}/compose.yaml")
    assert compose.mode == 0o640 and compose.user == "root"


def test_every_service_is_hardened(box):
    """Every compose service: pinned image, healthcheck, restart policy, log rotation,
    no-new-privileges, all capabilities dropped, no Docker socket."""
    for path in box.check_output("ls -1 /opt/ai-platform/stacks/*/compose.yaml").split():
        compose = yaml.safe_load(box.file(path).content_string)
        for name, service in compose["services"].items():
            where = f"{path}:{name}"
            image, _, tag = service["image"].rpartition(":")
            assert image and tag and tag != "latest" and "/" not in tag, where
            assert service["healthcheck"]["test"], where
            assert service["restart"] in ("unless-stopped", "always"), where
            assert service["logging"]["options"]["max-size"], where
            assert "no-new-privileges:true" in service["security_opt"], where
            assert service["cap_drop"] == ["ALL"], where
            volumes = " ".join(str(v) for v in service.get("volumes", []))
            assert "docker.sock" not in volumes, where


def test_node_exporter_container_is_healthy(box):
    state = json.loads(
        box.check_output("docker inspect node_agent-node-exporter-1 --format '{{json .State}}'")
    )
    assert state["Status"] == "running"
    assert state["Health"]["Status"] == "healthy"
    user = box.check_output("docker inspect node_agent-node-exporter-1 --format '{{.Config.User}}'")
    assert user == "65534:65534"


def test_node_exporter_answers_the_monitoring_host(monitor, machine):
    """Prometheus on moros will scrape every machine at its lab address."""
    body = monitor.check_output(f"curl -sf --max-time 5 http://{machine.address}:9100/metrics")
    assert "node_exporter_build_info" in body
    assert "node_filesystem_avail_bytes" in body


def test_etc_hosts_block_is_identical_and_complete(machines):
    import testinfra

    blocks = {}
    for m in machines:
        content = testinfra.get_host(f"docker://{m.container}").file("/etc/hosts").content_string
        start = content.index("# BEGIN labctl")
        end = content.index("# END labctl")
        blocks[m.name] = content[start:end]
    assert len(set(blocks.values())) == 1, "the labctl block differs between machines"
    block = next(iter(blocks.values()))
    for m in machines:
        assert f"{m.address}\t{m.name}.home.arpa {m.name}" in block
    # the names resolve through it
    box = testinfra.get_host(f"docker://{machines[0].container}")
    resolved = box.check_output("getent hosts moros.home.arpa").split()[0]
    assert resolved == next(m.address for m in machines if m.name == "moros")
