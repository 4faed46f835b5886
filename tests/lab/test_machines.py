"""What a converged lab looks like on every machine."""

from __future__ import annotations

import json

import yaml

from tests.hardening import problems
from tests.lab.conftest import box_of, resolve


def test_hostname_is_the_inventory_name(box, machine):
    assert box.check_output("hostname") == machine.name


def test_platform_tree_exists(box):
    for path in ("/opt/ai-platform", "/opt/ai-platform/stacks"):
        d = box.file(path)
        assert d.is_directory, path
        assert d.user == "root" and d.mode == 0o755, path


def test_ansible_reaches_it_as_the_admin_user_with_sudo(box):
    """The same admin user the README tells owners to create with scripts/prepare-machine.sh."""
    user = box.user("labctl")
    assert user.exists and user.home == "/home/labctl"
    keys = box.file("/home/labctl/.ssh/authorized_keys")
    assert keys.mode == 0o600 and keys.user == "labctl" and "ssh-ed25519 " in keys.content_string
    assert box.file("/etc/sudoers.d/50-labctl").content_string.strip() == "labctl ALL=(ALL:ALL) NOPASSWD: ALL"
    assert box.service("ssh").is_running


def test_docker_engine_runs_with_log_rotation_and_a_loopback_default(box):
    docker = box.service("docker")
    assert docker.is_running and docker.is_enabled
    config = json.loads(box.file("/etc/docker/daemon.json").content_string)
    assert config["log-driver"] == "json-file"
    assert config["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert config["ip"] == "127.0.0.1", "a port published without an address stays on the machine"
    assert box.check_output("docker info --format '{{.LoggingDriver}}'") == "json-file"


def test_compose_v2_is_installed(box):
    version = box.check_output("docker compose version --short").lstrip("v")
    assert tuple(int(x) for x in version.split("-")[0].split(".")[:2]) >= (2, 18)


def test_sysctl_settings_are_written(box):
    content = box.file("/etc/sysctl.d/60-labctl.conf").content_string
    assert "net.ipv4.ip_forward = 1" in content
    assert "vm.max_map_count = 262144" in content


def test_stack_files_have_safe_modes(box):
    for stack in box.check_output("ls -1 /opt/ai-platform/stacks").split():
        base = f"/opt/ai-platform/stacks/{stack}"
        assert box.file(base).mode == 0o750
        compose = box.file(f"{base}/compose.yaml")
        assert compose.mode == 0o640 and compose.user == "root"
        env = box.file(f"{base}/.env")
        if env.exists:
            assert env.mode == 0o600 and env.user == "root"


def test_every_service_is_hardened_and_binds_to_the_lab_address(box, machine):
    """Every compose file on every machine: pinned image, healthcheck, restart policy, log
    rotation, no-new-privileges, all capabilities dropped, limits, a user, no Docker socket, and
    published ports on the machine's lab address or loopback only."""
    found = []
    for path in box.check_output("ls -1 /opt/ai-platform/stacks/*/compose.yaml").split():
        compose = yaml.safe_load(box.file(path).content_string)
        for name, service in compose["services"].items():
            found += problems(f"{path}:{name}", service, {machine.address, "127.0.0.1"})
    assert found == []


def test_the_deploy_mark_lists_every_stack_with_its_files(box):
    mark = box.file("/opt/ai-platform/deployed.json")
    assert mark.mode == 0o600
    stacks = json.loads(mark.content_string)["stacks"]
    assert set(stacks) == set(box.check_output("ls -1 /opt/ai-platform/stacks").split())
    for stack, entry in stacks.items():
        for name, checksum in entry["files"].items():
            path = f"/opt/ai-platform/stacks/{stack}/{name}"
            assert box.check_output(f"sha1sum {path}").split()[0] == checksum, path


def test_etc_hosts_block_is_identical_and_complete(machines):
    blocks = {}
    for m in machines:
        content = box_of(m.name).file("/etc/hosts").content_string
        blocks[m.name] = content[content.index("# BEGIN labctl") : content.index("# END labctl")]
    assert len(set(blocks.values())) == 1, "the labctl block differs between machines"
    block = next(iter(blocks.values()))
    for m in machines:
        assert f"{m.address}\t{m.name}.home.arpa {m.name}" in block
    erebus = next(m for m in machines if m.name == "erebus")
    assert f"{erebus.address}\terebus.home.arpa erebus postgres.home.arpa redis.home.arpa" in block
    assert resolve("redis.home.arpa", on=machines[0].name) == (erebus.address, "erebus.home.arpa")
