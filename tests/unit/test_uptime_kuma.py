"""Uptime Kuma, which the simulated lab cannot run (no binary of it is reachable here): its stack
rendered for hephaestus from the real inventory and checked by `docker compose config` and the
hardening rules; its monitors derived from the catalog; the monitor module's plan and its use of
the API, the API being a named stand-in (FakeKumaApi) with uptime-kuma-api's method names."""

from __future__ import annotations

import importlib.util
from typing import Any

from uptime_kuma_api import MonitorType  # type: ignore[import-untyped]

from labctl import catalog, edge, firewall, uptime
from tests.conftest import ROOT, add_gpu_node, lab_group, render_stack
from tests.hardening import compose_config, problems

HEPHAESTUS = "192.168.50.11"


def load_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "uptime_kuma_monitors", ROOT / "plugins" / "modules" / "uptime_kuma_monitors.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULE = load_module()


def test_the_stack_is_hardened_and_on_the_seeds_port(inventory_copy, tmp_path):
    files = render_stack(inventory_copy, tmp_path, "uptime_kuma", "hephaestus", ("compose.yaml",))
    service = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])["services"]["uptime-kuma"]
    assert problems("uptime_kuma", service, {HEPHAESTUS}) == []
    assert service["image"] == "docker.io/louislam/uptime-kuma:1.23.16"
    # The node user, without the image's entrypoint (which starts as root to chown the data).
    assert service["user"] == "1000:1000" and "cap_add" not in service
    assert service["entrypoint"] == ["/usr/bin/dumb-init", "--"]
    assert service["ports"] == [f"{HEPHAESTUS}:3001:3001"]
    assert service["healthcheck"]["test"][:2] == ["CMD", "curl"]
    assert service["healthcheck"]["test"][-1] == "http://127.0.0.1:3001/api/entry-page"


def test_every_reachable_health_endpoint_has_a_monitor(inventory_copy):
    lab = inventory_copy.load()
    found = {m["name"]: m for m in uptime.monitors(lab)}
    # Every machine's node exporter, by HTTP; PostgreSQL (a command checks it) by its port.
    assert {f"node_exporter@{h}" for h in lab.managed} <= set(found)
    assert found["node_exporter@erebus"]["url"] == "http://192.168.50.10:9100/metrics"
    postgres = found["postgres@erebus"]
    assert (postgres["type"], postgres["hostname"], postgres["port"]) == ("port", "192.168.50.10", 5432)
    assert found["litellm@orpheus"]["type"] == "http"
    assert all(m["description"].startswith(uptime.OWNED) for m in found.values())
    # Nothing with a health check is left out in the shipped catalog (none is loopback-only).
    assert {f"{i.service}@{i.host}" for i in catalog.instances(lab) if i.health} == set(found)


def test_a_new_machine_adds_its_monitors(inventory_copy):
    before = {m["name"] for m in uptime.monitors(inventory_copy.load())}
    add_gpu_node(inventory_copy, "ceto", "192.168.50.24")
    after = {m["name"] for m in uptime.monitors(inventory_copy.load())}
    assert {"node_exporter@ceto", "ollama@ceto"} <= after - before
    assert before <= after


def test_the_firewall_admits_uptime_kuma_on_health_ports_only(inventory_copy):
    rules = {r["port"]: r for r in firewall.view(inventory_copy.load(), "erebus")["rules"]}
    assert HEPHAESTUS + "/32" in rules[5432]["ipv4"]  # PostgreSQL's health is its port
    assert HEPHAESTUS + "/32" in rules[9100]["ipv4"]  # the node exporter's is /metrics
    assert HEPHAESTUS + "/32" not in rules[9187]["ipv4"]  # PostgreSQL's exporter: no health
    # Without Uptime Kuma, the edge machine is admitted only where allow_from names the edge.
    inventory_copy.edit(
        "hosts.yml",
        lambda d: lab_group(d, "edge")["hosts"]["hephaestus"].update({"uptime_kuma_enabled": False}),
    )
    rules = {r["port"]: r for r in firewall.view(inventory_copy.load(), "erebus")["rules"]}
    assert HEPHAESTUS + "/32" not in rules[9100]["ipv4"]


def test_it_is_routed_behind_the_admin_allowlist(inventory_copy):
    routes = {r["service"]: r for r in edge.view(inventory_copy.load(), "hephaestus")["routes"]}
    assert routes["uptime_kuma"]["name"] == "uptime.home.arpa"
    assert routes["uptime_kuma"]["admin"] is True


class FakeKumaApi:
    """A stand-in for uptime_kuma_api.UptimeKumaApi (Uptime Kuma cannot run here): the methods the
    module calls, over monitors shaped as the real client returns them (every field, those a
    monitor's type does not use as None, the type as a MonitorType, fields labctl never sets)."""

    def __init__(self, monitors: list[dict[str, Any]] | None = None, need_setup: bool = False) -> None:
        self.monitors = [self.stored(m) for m in monitors or []]
        self.admin: tuple[str, str] | None = None if need_setup else ("admin", "pw")
        self.calls: list[str] = []

    @staticmethod
    def stored(monitor: dict[str, Any]) -> dict[str, Any]:
        blank = dict.fromkeys(MODULE.FIELDS) | {
            "active": True,
            "maxredirects": 10,
            "accepted_statuscodes": ["200-299"],
        }
        return blank | monitor | {"type": MonitorType(monitor["type"])}

    def need_setup(self) -> bool:
        return self.admin is None

    def setup(self, username: str, password: str) -> None:
        self.calls.append("setup")
        self.admin = (username, password)

    def login(self, username: str, password: str) -> None:
        assert (username, password) == self.admin, "wrong credentials"

    def get_monitors(self) -> list[dict[str, Any]]:
        return [dict(m) for m in self.monitors]

    def add_monitor(self, **monitor: Any) -> None:
        assert isinstance(monitor["type"], MonitorType), "the client wants a MonitorType"
        self.calls.append(f"add {monitor['name']}")
        self.monitors.append(self.stored({"id": len(self.monitors) + 100, **monitor}))

    def edit_monitor(self, id_: int, **monitor: Any) -> None:
        self.calls.append(f"edit {monitor['name']}")
        (current,) = [m for m in self.monitors if m["id"] == id_]
        current.update(self.stored({**current, **monitor}))

    def delete_monitor(self, id_: int) -> None:
        self.calls.append(f"delete {id_}")
        self.monitors = [m for m in self.monitors if m["id"] != id_]


PARAMS = {"username": "admin", "password": "pw", "marker": uptime.OWNED}


def test_the_module_sets_up_adds_then_changes_nothing(inventory_copy):
    wanted = MODULE.typed(uptime.monitors(inventory_copy.load()), MonitorType)
    api = FakeKumaApi(need_setup=True)
    # Check mode on a new instance: everything would be added, nothing is.
    result = MODULE.apply(api, PARAMS, wanted, check=True)
    assert result["changed"] and api.calls == [] and len(result["added"]) == len(wanted)
    result = MODULE.apply(api, PARAMS, wanted, check=False)
    assert api.calls[0] == "setup" and len(api.monitors) == len(wanted)
    assert result["changed"] and result["setup"]
    # A second run: nothing to do.
    api.calls.clear()
    result = MODULE.apply(api, PARAMS, wanted, check=False)
    assert not result["changed"] and api.calls == []


def test_the_module_keeps_peoples_monitors_and_removes_its_stale_ones(inventory_copy):
    wanted = MODULE.typed(uptime.monitors(inventory_copy.load()), MonitorType)
    theirs = {"id": 1, "name": "my router", "type": "ping", "hostname": "192.168.50.1", "description": None}
    clash = {"id": 2, "name": "redis@erebus", "type": "port", "description": "mine"}
    stale = {"id": 3, "name": "ollama@gone", "type": "http", "description": f"{uptime.OWNED} old"}
    moved = {**wanted[0], "id": 4, "url": "http://192.168.50.99:9100/metrics"}
    api = FakeKumaApi([theirs, clash, stale, moved])
    result = MODULE.apply(api, PARAMS, wanted, check=False)
    assert result["deleted"] == ["ollama@gone"] and result["changed_monitors"] == [wanted[0]["name"]]
    assert result["conflicts"] == ["redis@erebus"]
    names = [m["name"] for m in api.monitors]
    assert "my router" in names and "ollama@gone" not in names and names.count("redis@erebus") == 1
    assert next(m for m in api.monitors if m["id"] == 4)["url"] == wanted[0]["url"]
