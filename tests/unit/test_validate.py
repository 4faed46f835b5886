"""Every kind of bad inventory input is caught, naming the host and the variable."""

from __future__ import annotations

import pytest

from labctl.validate import validate
from tests.conftest import lab_group


def problems(copy):
    return [(p.host, p.variable, p.message) for p in validate(copy.load())]


def test_the_real_inventory_is_valid(inventory_copy):
    assert problems(inventory_copy) == []


def test_unknown_gpu_vendor(inventory_copy):
    inventory_copy.edit("host_vars/kratos.yml", lambda d: d["gpu"].update(vendor="intel"))
    [(host, var, msg)] = problems(inventory_copy)
    assert (host, var) == ("kratos", "gpu.vendor")
    assert "unknown GPU vendor 'intel'" in msg


def test_gpu_vendor_must_match_its_group(inventory_copy):
    inventory_copy.edit("host_vars/hades.yml", lambda d: d["gpu"].update(vendor="nvidia"))
    [(host, var, msg)] = problems(inventory_copy)
    assert (host, var) == ("hades", "gpu.vendor") and "gpu_nvidia" in msg


def test_inference_node_without_gpu(inventory_copy):
    (inventory_copy.dir / "host_vars" / "nyx.yml").unlink()
    assert ("nyx", "gpu") in [(h, v) for h, v, _ in problems(inventory_copy)]


@pytest.mark.parametrize("field,value", [("vram_gb", 0), ("vram_gb", "lots"), ("count", 0)])
def test_bad_gpu_numbers(inventory_copy, field, value):
    inventory_copy.edit("host_vars/orpheus.yml", lambda d: d["gpu"].update({field: value}))
    assert ("orpheus", f"gpu.{field}") in [(h, v) for h, v, _ in problems(inventory_copy)]


def test_duplicate_address(inventory_copy):
    inventory_copy.edit(
        "hosts.yml",
        lambda d: lab_group(d, "tier_secondary", "db_replica")["hosts"]["thanatos"].update(
            lab_address="192.168.50.10"
        ),
    )
    [(host, var, msg)] = problems(inventory_copy)
    assert (host, var) == ("thanatos", "lab_address")
    assert "erebus" in msg


def test_address_that_is_not_an_address(inventory_copy):
    inventory_copy.edit(
        "hosts.yml",
        lambda d: lab_group(d, "tier_edge", "edge")["hosts"]["hephaestus"].update(lab_address="10.0.0"),
    )
    assert problems(inventory_copy) == [("hephaestus", "lab_address", "'10.0.0' is not an IP address")]


def test_missing_address(inventory_copy):
    inventory_copy.edit(
        "hosts.yml", lambda d: lab_group(d, "tier_monitoring", "monitoring").update(hosts={"moros": None})
    )
    assert [(h, v) for h, v, _ in problems(inventory_copy)] == [("moros", "lab_address")]


def test_service_placed_on_a_group_with_no_host(inventory_copy):
    def change(d):
        d["labctl_services"]["node_exporter"]["placement"] = "gpu_intel"

    inventory_copy.edit("group_vars/all/services.yml", change)
    inventory_copy.edit("hosts.yml", lambda d: d["all"]["children"].update(gpu_intel={"hosts": {}}))
    assert ("all", "labctl_services.node_exporter.placement", "group 'gpu_intel' has no host") in problems(
        inventory_copy
    )


def test_service_placed_on_an_unknown_group(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml",
        lambda d: d["labctl_services"]["node_exporter"].update(placement="gpus"),
    )
    assert (
        "all",
        "labctl_services.node_exporter.placement",
        "group 'gpus' is not in the inventory",
    ) in problems(inventory_copy)


def test_two_primaries(inventory_copy):
    inventory_copy.edit(
        "hosts.yml", lambda d: lab_group(d, "tier_databases", "db_primary")["hosts"].update(thanatos=None)
    )
    found = problems(inventory_copy)
    assert {(h, v) for h, v, _ in found} >= {("erebus", "db_primary"), ("thanatos", "db_primary")}
    assert all("only one primary" in m for h, v, m in found if v == "db_primary")


def test_replica_without_primary(inventory_copy):
    def change(d):
        lab_group(d, "tier_databases", "db_primary")["hosts"] = {}

    inventory_copy.edit("hosts.yml", change)
    assert ("thanatos", "db_replica") in [(h, v) for h, v, _ in problems(inventory_copy)]


def test_port_clash_on_one_host(inventory_copy):
    inventory_copy.add_service("probe", "monitoring", {"http": 9100})
    [(host, var, msg)] = problems(inventory_copy)
    assert (host, var) == ("moros", "labctl_services.probe.ports.http")
    assert "node_exporter.metrics" in msg


def test_a_disabled_stack_frees_its_port(inventory_copy):
    inventory_copy.add_service("probe", "monitoring", {"http": 9100})
    (inventory_copy.dir / "host_vars" / "moros.yml").write_text("node_agent_enabled: false\n")
    assert problems(inventory_copy) == []


def test_undefined_secret(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml",
        lambda d: d["labctl_services"]["node_exporter"].update(secrets=["vault_exporter_token"]),
    )
    (inventory_copy.dir / "host_vars" / "erebus.yml").write_text("vault_exporter_token: s3cr3t-value\n")
    found = problems(inventory_copy)
    assert {h for h, v, _ in found if v == "vault_exporter_token"} == {
        "hephaestus",
        "thanatos",
        "zelus",
        "orpheus",
        "kratos",
        "nyx",
        "hades",
        "moros",
        "local",
    }


@pytest.mark.parametrize("name", ["Erebus", "ere_bus", "-erebus", "erebus-"])
def test_malformed_host_name(inventory_copy, name):
    def change(d):
        hosts = lab_group(d, "tier_databases", "db_primary")["hosts"]
        hosts[name] = hosts.pop("erebus")
        lab_group(d, "tier_databases", "cache")["hosts"] = {name: None}

    inventory_copy.edit("hosts.yml", change)
    assert (name, "inventory_hostname") in [(h, v) for h, v, _ in problems(inventory_copy)]


def test_unpinned_image(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/images.yml", lambda d: d["labctl_images"]["node_exporter"].update(tag="latest")
    )
    assert [(h, v) for h, v, _ in problems(inventory_copy)] == [("all", "labctl_images.node_exporter.tag")]


def test_mdns_domain_is_refused(inventory_copy):
    inventory_copy.edit("group_vars/all/network.yml", lambda d: d.update(labctl_domain="lab.local"))
    assert [(h, v) for h, v, _ in problems(inventory_copy)] == [("all", "labctl_domain")]


def test_host_outside_every_tier(inventory_copy):
    def change(d):
        d["all"]["children"]["lab"]["children"]["stray"] = {
            "hosts": {"ceto": {"lab_address": "192.168.50.99"}}
        }

    inventory_copy.edit("hosts.yml", change)
    assert [(h, v) for h, v, _ in problems(inventory_copy)] == [("ceto", "labctl_tiers")]


def test_model_that_fits_no_gpu(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/models.yml",
        lambda d: d["labctl_models"].append({"name": "llama3.1:405b", "vram_gb": 230}),
    )
    [(host, var, msg)] = problems(inventory_copy)
    assert (host, var) == ("all", "labctl_models[3].vram_gb")
    assert "48" in msg
