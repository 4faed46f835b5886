"""The rules between values: every kind of inconsistent inventory is caught, naming host and variable."""

from __future__ import annotations

import pytest
import yaml

from labctl.validate import notes, validate
from tests.conftest import lab_group


def problems(copy, **kwargs):
    return [(p.host, p.variable, p.message) for p in validate(copy.load(**kwargs))]


def named(copy):
    return {(h, v) for h, v, _ in problems(copy)}


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


def test_a_host_in_both_gpu_vendor_groups(inventory_copy):
    inventory_copy.edit(
        "hosts.yml", lambda d: lab_group(d, "inference", "gpu_amd")["hosts"].update(kratos=None)
    )
    assert ("kratos", "groups") in named(inventory_copy)


def test_inference_node_without_gpu(inventory_copy):
    (inventory_copy.dir / "host_vars" / "nyx.yml").unlink()
    assert ("nyx", "gpu") in named(inventory_copy)


@pytest.mark.parametrize(("field", "value"), [("vram_gb", 0), ("vram_gb", "lots"), ("count", 0)])
def test_bad_gpu_numbers(inventory_copy, field, value):
    inventory_copy.edit("host_vars/orpheus.yml", lambda d: d["gpu"].update({field: value}))
    assert ("orpheus", f"gpu.{field}") in named(inventory_copy)


def test_duplicate_address(inventory_copy):
    inventory_copy.edit(
        "hosts.yml",
        lambda d: lab_group(d, "db_replica")["hosts"]["thanatos"].update(lab_address="192.168.50.10"),
    )
    [(host, var, msg)] = problems(inventory_copy)
    assert (host, var) == ("thanatos", "lab_address")
    assert "erebus" in msg


def test_missing_address(inventory_copy):
    inventory_copy.edit("hosts.yml", lambda d: lab_group(d, "monitoring").update(hosts={"moros": None}))
    assert named(inventory_copy) == {("moros", "lab_address")}


def test_service_placed_on_a_group_with_no_host(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml", lambda d: d["labctl_services"]["redis"].update(placement="gpu_intel")
    )
    inventory_copy.edit("hosts.yml", lambda d: d["all"]["children"].update(gpu_intel={"hosts": {}}))
    assert ("all", "labctl_services.redis.placement", "group 'gpu_intel' has no host") in problems(
        inventory_copy
    )


def test_service_placed_on_an_unknown_group(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml", lambda d: d["labctl_services"]["redis"].update(placement="gpus")
    )
    assert ("all", "labctl_services.redis.placement", "group 'gpus' is not in the inventory") in problems(
        inventory_copy
    )


def test_service_placed_on_the_unmanaged_nas(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml", lambda d: d["labctl_services"]["redis"].update(placement="nas")
    )
    assert ("truenas", "labctl_services.redis.placement") in named(inventory_copy)


def test_a_function_group_may_span_tiers(inventory_copy):
    """A second cache on thanatos (secondary machine) is fine: groups do not belong to tiers."""
    from labctl import catalog

    inventory_copy.edit("hosts.yml", lambda d: lab_group(d, "cache")["hosts"].update(thanatos=None))
    inventory_copy.edit(
        "group_vars/all/services.yml", lambda d: d["labctl_services"]["redis"].update(alias=None)
    )
    assert problems(inventory_copy) == []
    assert [i.host for i in catalog.instances(inventory_copy.load()) if i.service == "redis"] == [
        "erebus",
        "thanatos",
    ]


def test_a_service_in_a_tier_that_does_not_exist(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml", lambda d: d["labctl_services"]["redis"].update(tier="data")
    )
    [(host, var, msg)] = problems(inventory_copy)
    assert (host, var) == ("all", "labctl_services.redis.tier") and "'data'" in msg


def test_at_most_eight_tiers(inventory_copy):
    inventory_copy.edit("group_vars/all/platform.yml", lambda d: d["labctl_tiers"].append("late"))
    assert named(inventory_copy) == {("all", "labctl_tiers")}


def test_two_primaries(inventory_copy):
    inventory_copy.edit("hosts.yml", lambda d: lab_group(d, "db_primary")["hosts"].update(thanatos=None))
    found = problems(inventory_copy)
    assert {(h, v) for h, v, _ in found} >= {("erebus", "db_primary"), ("thanatos", "db_primary")}
    assert all("only one primary" in m for h, v, m in found if v == "db_primary")


def test_replica_without_primary(inventory_copy):
    inventory_copy.edit("hosts.yml", lambda d: lab_group(d, "db_primary").update(hosts={}))
    inventory_copy.edit(
        "hosts.yml", lambda d: lab_group(d, "cache")["hosts"].update(erebus={"lab_address": "192.168.50.10"})
    )
    assert ("thanatos", "db_replica") in named(inventory_copy)


def test_port_clash_on_one_host(inventory_copy):
    inventory_copy.add_service("probe", "monitoring", {"http": 9100}, health={"port": "http", "path": "/"})
    [(host, var, msg)] = problems(inventory_copy)
    assert (host, var) == ("moros", "labctl_services.probe.ports.http")
    assert "node_exporter.metrics" in msg


def test_a_disabled_stack_frees_its_port(inventory_copy):
    inventory_copy.add_service("probe", "monitoring", {"http": 9100}, health={"port": "http", "path": "/"})
    (inventory_copy.dir / "host_vars" / "moros.yml").write_text("node_exporter_enabled: false\n")
    assert problems(inventory_copy) == []


def test_an_endpoint_must_name_one_of_the_ports(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml",
        lambda d: d["labctl_services"]["node_exporter"]["metrics"].update(port="web"),
    )
    assert named(inventory_copy) == {("all", "labctl_services.node_exporter.metrics.port")}


def test_an_alias_that_is_a_host_name(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml", lambda d: d["labctl_services"]["redis"].update(alias="moros")
    )
    assert named(inventory_copy) == {("all", "labctl_services.redis.alias")}


def test_the_stack_key_of_the_old_catalog_is_refused(inventory_copy):
    """One name per service: a second service cannot claim another's stack."""
    inventory_copy.edit(
        "group_vars/all/services.yml", lambda d: d["labctl_services"]["redis"].update(stack="node_exporter")
    )
    assert named(inventory_copy) == {("all", "labctl_services.redis.stack")}


def test_host_vars_for_a_host_that_does_not_exist(inventory_copy):
    (inventory_copy.dir / "host_vars" / "nyxx.yml").write_text(
        "gpu: {vendor: nvidia, model: x, vram_gb: 8}\n"
    )
    assert named(inventory_copy) == {("nyxx", "host_vars")}


def test_group_vars_for_a_group_that_does_not_exist(inventory_copy):
    (inventory_copy.dir / "group_vars" / "gpu_nvdia.yml").write_text("labctl_gpu_passthrough: false\n")
    assert named(inventory_copy) == {("all", "group_vars")}


def test_a_machine_both_managed_and_on_the_nas_list(inventory_copy):
    inventory_copy.edit("hosts.yml", lambda d: d["all"]["children"]["nas"]["hosts"].update(moros=None))
    assert ("moros", "groups") in named(inventory_copy)


@pytest.mark.parametrize("name", ["Erebus", "ere_bus", "-erebus", "erebus-"])
def test_malformed_host_name(inventory_copy, name):
    def change(d):
        hosts = lab_group(d, "db_primary")["hosts"]
        hosts[name] = hosts.pop("erebus")
        lab_group(d, "cache")["hosts"] = {name: None}

    inventory_copy.edit("hosts.yml", change)
    assert (name, "inventory_hostname") in named(inventory_copy)


def test_mdns_domain_is_refused(inventory_copy):
    inventory_copy.edit("group_vars/all/network.yml", lambda d: d.update(labctl_domain="lab.local"))
    assert named(inventory_copy) == {("all", "labctl_domain")}


def test_model_that_fits_no_gpu(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/models.yml",
        lambda d: d["labctl_models"].append({"name": "llama3.1:405b", "vram_gb": 230}),
    )
    [(host, var, msg)] = problems(inventory_copy)
    assert (host, var) == ("all", "labctl_models[4].vram_gb")
    assert "48" in msg


def test_a_role_variable_is_checked_against_its_argument_spec(inventory_copy):
    (inventory_copy.dir / "host_vars" / "moros.yml").write_text(
        yaml.safe_dump({"redis_maxmemory_policy": "keep-everything", "common_packages": {"curl": 1}})
    )
    found = {(h, v): m for h, v, m in problems(inventory_copy)}
    assert set(found) == {("moros", "redis_maxmemory_policy"), ("moros", "common_packages")}
    assert "keep-everything" in found[("moros", "redis_maxmemory_policy")]


# --- secrets and the vault --------------------------------------------------------------------


def test_a_missing_secret_names_the_host_and_the_command_that_makes_it(inventory_copy):
    inventory_copy.vault_file.unlink()
    found = problems(inventory_copy)
    assert ("erebus", "redis_password") in {(host, var) for host, var, _ in found}
    assert ("thanatos", "postgres_replication_password") in {(host, var) for host, var, _ in found}
    assert all("labctl init" in msg for _, _, msg in found)


def test_an_inline_vaulted_secret_counts_as_defined_without_the_password(inventory_copy):
    assert problems(inventory_copy, password=None) == []
    assert inventory_copy.load(password=None).var("erebus", "redis_password") is not None


def test_the_password_decrypts_the_secret(inventory_copy):
    from labctl import vault

    value = inventory_copy.load().var("erebus", "redis_password")
    assert value == vault.read(inventory_copy.vault_file, "unit-test-vault-password")["redis_password"]
    assert len(value) == 32 and value.isalnum()


def test_a_whole_file_vault_without_the_password_is_noted_not_failed(inventory_copy):
    """A group_vars file encrypted as a whole (the classic layout) cannot be read without the
    password: validation says so instead of calling its secrets undefined or crashing."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    inventory_copy.vault_file.unlink()
    lib = VaultLib([("default", VaultSecret(b"other-password"))])
    secret_file = inventory_copy.dir / "group_vars" / "all" / "secrets.yml"
    secret_file.write_bytes(lib.encrypt(b"redis_password: from-a-whole-file-vault\n"))
    lab = inventory_copy.load(password=None)
    assert validate(lab) == []
    assert any("secrets.yml" in note and "no vault password" in note for note in notes(lab))


def test_a_wrong_password_is_an_error_not_a_traceback(inventory_copy):
    from labctl.inventory import InventoryError

    lab = inventory_copy.load(password="not-the-password")
    with pytest.raises(InventoryError, match="does not decrypt"):
        lab.var("erebus", "redis_password")


def test_a_placement_override_names_catalog_services_and_managed_machines(inventory_copy):
    overrides = {"postgres": ["truenas"], "no_such_service": ["erebus"]}
    (inventory_copy.dir / "placement.yml").write_text(
        yaml.safe_dump({"all": {"vars": {"labctl_placement_overrides": overrides}}})
    )
    found = problems(inventory_copy)
    unknown = "no service 'no_such_service' in the catalog"
    assert ("all", "labctl_placement_overrides.no_such_service", unknown) in found
    assert (
        "all",
        "labctl_placement_overrides.postgres",
        "'truenas' is not a machine labctl manages (not in 'lab')",
    ) in found


def test_a_helper_image_must_be_pinned_in_the_catalog(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml", lambda d: d["labctl_services"]["mcpo"].update(helpers=["ngnix"])
    )
    assert problems(inventory_copy) == [
        ("all", "labctl_services.mcpo.helpers", "'ngnix' is not a key of labctl_images")
    ]
