"""The compose macros of compose_stack: what the catalog instance turns into (hardening, ports on
the bind address, healthcheck, GPU devices), rendered with Ansible's own filters."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from ansible.plugins.filter.core import FilterModule
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from tests.conftest import ROOT
from tests.hardening import problems

BRIDGE = {
    "service": "redis",
    "image": "docker.io/library/redis:7.4.2-bookworm",
    "network": "bridge",
    "bind_address": "192.168.50.10",
    "ports": {"redis": 6379},
    "health": {"port": "redis", "command": ["sh", "-c", "redis-cli ping | grep -qx PONG"]},
    "gpu": None,
}
HOST = {
    "service": "node_exporter",
    "image": "quay.io/prometheus/node-exporter:v1.8.2",
    "network": "host",
    "bind_address": "192.168.50.22",
    "ports": {"metrics": 9100},
    "health": {"port": "metrics", "path": "/metrics", "client": "wget"},
    "gpu": None,
}


def render(
    instance: dict[str, Any], variables: dict[str, Any] | None = None, **macro_args: Any
) -> dict[str, Any]:
    env = Environment(
        loader=FileSystemLoader(str(ROOT / "roles" / "compose_stack" / "templates")),
        undefined=StrictUndefined,
        trim_blocks=True,  # as Ansible's template module
    )
    # Ansible's `default` knows only Ansible's undefined; Jinja's own handles this environment's.
    env.filters.update({k: v for k, v in FilterModule().filters().items() if k not in ("default", "d")})
    arguments = ", ".join(f"{k}={v!r}" for k, v in {"user": "1000:1000", **macro_args}.items())
    template = env.from_string(
        "{% import 'compose/service.j2' as stack with context %}services:\n  x:\n{{ stack.service("
        + arguments
        + ") }}\n"
    )
    text = template.render(
        labctl_instance=instance,
        compose_stack_mem_limit="512m",
        compose_stack_pids_limit=256,
        labctl_log_max_size="10m",
        labctl_log_max_file=3,
        _compose_stack_files_hash="0123abc",
        **(variables or {}),
    )
    return yaml.safe_load(text)["services"]["x"]


def test_a_bridge_service_publishes_its_ports_on_its_bind_address_only():
    service = render(BRIDGE)
    assert service["ports"] == ["192.168.50.10:6379:6379"]
    assert service["healthcheck"]["test"] == ["CMD", "sh", "-c", "redis-cli ping | grep -qx PONG"]
    assert "network_mode" not in service
    assert problems("x", service, {"192.168.50.10"}) == []


def test_a_service_only_the_machine_uses_listens_on_loopback():
    service = render({**BRIDGE, "bind_address": "127.0.0.1"})
    assert service["ports"] == ["127.0.0.1:6379:6379"]


def test_a_host_network_service_checks_itself_on_its_listen_address():
    service = render(HOST)
    assert service["network_mode"] == "host" and "ports" not in service
    assert service["healthcheck"]["test"] == [
        "CMD",
        "wget",
        "-q",
        "-O",
        "/dev/null",
        "http://192.168.50.22:9100/metrics",
    ]
    # Sharing the host's network is an exception the lint knows by service (with its reason).
    assert problems("node-exporter", service, set()) == []
    assert problems("x", service, set()) == ["x: shares the host's network namespace"]


def test_curl_where_the_image_has_curl():
    service = render({**BRIDGE, "health": {"port": "redis", "path": "/health", "client": "curl"}})
    assert service["healthcheck"]["test"] == [
        "CMD",
        "curl",
        "-fsS",
        "-o",
        "/dev/null",
        "http://127.0.0.1:6379/health",
    ]


def test_a_helper_container_gets_its_own_healthcheck():
    """A replica behind the stack's proxy checks itself, not the catalog's endpoint."""
    own = ["CMD", "python3", "-c", "print(1)"]
    service = render(BRIDGE, health=own, publish=False)
    assert service["healthcheck"]["test"] == own and "ports" not in service
    assert render(BRIDGE)["healthcheck"]["test"][0] == "CMD"


def test_gpu_settings_join_the_environment_only_with_the_gpu():
    gpu = {
        "vendor": "amd",
        "count": 1,
        "passthrough": True,
        "groups": ["video"],
        "env": {"HSA_OVERRIDE_GFX_VERSION": "11.0.0"},
    }
    service = render({**BRIDGE, "gpu": gpu}, environment={"A": "${X}"})
    assert service["environment"] == {"A": "${X}", "HSA_OVERRIDE_GFX_VERSION": "11.0.0"}
    service = render({**BRIDGE, "gpu": {**gpu, "passthrough": False}}, environment={"A": "${X}"})
    assert service["environment"] == {"A": "${X}"}
    assert "environment" not in render(BRIDGE)


def test_every_service_gets_the_hardening():
    service = render(BRIDGE, cap_add=["NET_BIND_SERVICE"], mem_limit="2g")
    assert service["cap_drop"] == ["ALL"] and service["cap_add"] == ["NET_BIND_SERVICE"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    assert service["read_only"] is True and service["restart"] == "unless-stopped"
    assert service["mem_limit"] == "2g" and service["pids_limit"] == 256
    assert service["logging"] == {
        "driver": "json-file",
        # Each line names its stack and service: the log shipper's labels.
        "options": {
            "max-size": "10m",
            "max-file": "3",
            "labels": "com.docker.compose.project,com.docker.compose.service",
        },
    }
    assert service["labels"] == {"io.labctl.service": "redis", "io.labctl.files": "0123abc"}


def test_the_lint_catches_what_the_macros_prevent():
    service = render(BRIDGE)
    bad = copy.deepcopy(service)
    bad.update(image="redis:latest", cap_drop=[], ports=["6379:6379"], volumes=["/var/run/docker.sock:/s"])
    del bad["healthcheck"]
    found = problems("x", bad, {"192.168.50.10"})
    assert len(found) == 5, found


def test_the_lint_has_docker_bench_securitys_container_checks():
    bad = copy.deepcopy(render(BRIDGE))
    bad.update(
        user="0:0",
        read_only=False,
        privileged=True,
        cap_add=["SYS_ADMIN"],
        pid="host",
        ipc="host",
        network_mode="host",
        security_opt=["no-new-privileges:true", "seccomp=unconfined"],
        volumes=["/etc:/host/etc", "/:/host:ro,rslave", "/sys/fs/cgroup:/cg", "/srv/data:/data:rshared"],
    )
    assert sorted(problems("x", bad, {"192.168.50.10"})) == [
        "x: adds capabilities ['SYS_ADMIN']",
        "x: mounts /srv/data with shared propagation",
        "x: mounts the host's /etc writable",
        "x: mounts the host's /sys/fs/cgroup writable",
        "x: privileged",
        "x: root filesystem writable",
        "x: runs as root",
        "x: seccomp=unconfined",
        "x: shares the host's IPC namespace",
        "x: shares the host's PID namespace",
        "x: shares the host's network namespace",
    ]
    # The exceptions are by service and reason: node-exporter may share the host's PID namespace.
    hardened = render(BRIDGE, user="65534:65534")
    assert problems("node-exporter", {**hardened, "pid": "host"}, {"192.168.50.10"}) == []
    assert problems("redis", {**hardened, "pid": "host"}, {"192.168.50.10"}) == [
        "redis: shares the host's PID namespace"
    ]


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [
        (None, {}),
        ({"vendor": "nvidia", "count": 2, "passthrough": False, "env": {}}, {}),
        (
            {"vendor": "nvidia", "count": 2, "passthrough": True, "env": {}},
            {
                "deploy": {
                    "resources": {
                        "reservations": {
                            "devices": [{"driver": "nvidia", "count": 2, "capabilities": ["gpu"]}]
                        }
                    }
                }
            },
        ),
        (
            {"vendor": "amd", "count": 2, "passthrough": True, "groups": ["video", "render"], "env": {}},
            {"devices": ["/dev/kfd", "/dev/dri"], "group_add": ["video", "render"]},
        ),
        (
            {"vendor": "amd", "count": 1, "passthrough": True, "groups": [44, 993], "env": {}},
            {"devices": ["/dev/kfd", "/dev/dri"], "group_add": ["44", "993"]},
        ),
        (
            {"vendor": "nvidia", "count": 2, "passthrough": True, "cdi": True, "env": {}},
            {
                "deploy": {
                    "resources": {
                        "reservations": {
                            "devices": [
                                {
                                    "driver": "cdi",
                                    "device_ids": ["nvidia.com/gpu=all"],
                                    "capabilities": ["gpu"],
                                }
                            ]
                        }
                    }
                }
            },
        ),
        (
            {"vendor": "amd", "count": 2, "passthrough": True, "groups": None, "env": {}},
            {"devices": ["/dev/kfd", "/dev/dri"], "group_add": ["video", "render"]},
        ),
    ],
    ids=[
        "no-gpu",
        "passthrough-off",
        "nvidia",
        "amd",
        "amd-numeric-groups",
        "nvidia-cdi",
        "amd-default-groups",
    ],
)
def test_gpu_devices_follow_the_declared_hardware(gpu, expected):
    service = render({**BRIDGE, "gpu": gpu})
    got = {k: service[k] for k in ("deploy", "devices", "group_add") if k in service}
    assert got == expected


@pytest.mark.parametrize(
    ("groups", "expected"),
    [(None, ["44", "992"]), (["video"], ["video"])],
    ids=["found-on-the-machine", "the-inventory-says"],
)
def test_rocm_containers_get_the_groups_that_own_the_devices(groups, expected):
    """gpu_rocm's numbers (the container's /etc/group may have no `render`), unless the
    inventory names the groups."""
    gpu = {"vendor": "amd", "count": 2, "passthrough": True, "groups": groups, "env": {}}
    service = render({**BRIDGE, "gpu": gpu}, variables={"gpu_rocm_device_gids": [44, 992]})
    assert service["group_add"] == expected
