"""The catalog derives every service instance and /etc/hosts line from the inventory."""

from __future__ import annotations

from labctl import catalog
from tests.conftest import lab_group

TEN = ["erebus", "hephaestus", "thanatos", "zelus", "hades", "kratos", "nyx", "orpheus", "moros", "local"]


def test_node_exporter_runs_on_every_machine_in_tier_order(inventory_copy):
    lab = inventory_copy.load()
    instances = [i for i in catalog.instances(lab) if i.service == "node_exporter"]
    assert [i.host for i in instances] == TEN
    erebus = instances[0]
    assert erebus.address == "192.168.50.10"
    assert erebus.fqdn == "erebus.home.arpa"
    assert erebus.ports == {"metrics": 9100}
    assert erebus.health_url == "http://erebus.home.arpa:9100/metrics"
    assert erebus.metrics_url == "http://erebus.home.arpa:9100/metrics"
    assert erebus.image == "quay.io/prometheus/node-exporter:v1.8.2"
    assert erebus.allowed_hosts == ["moros"]


def test_adding_a_gpu_node_is_one_inventory_entry(inventory_copy):
    inventory_copy.edit(
        "hosts.yml",
        lambda d: lab_group(d, "tier_gpu", "inference", "gpu_nvidia")["hosts"].update(
            ceto={
                "lab_address": "192.168.50.24",
                "gpu": {"vendor": "nvidia", "model": "RTX A4000", "vram_gb": 16},
            }
        ),
    )
    lab = inventory_copy.load()
    hosts = [i.host for i in catalog.instances(lab)]
    assert "ceto" in hosts
    entries = {e["host"]: e for e in catalog.hosts_entries(lab)}
    assert entries["ceto"] == {
        "address": "192.168.50.24",
        "host": "ceto",
        "names": ["ceto.home.arpa", "ceto"],
    }


def test_a_disabled_stack_has_no_instance(inventory_copy):
    (inventory_copy.dir / "host_vars" / "zelus.yml").write_text("node_agent_enabled: false\n")
    lab = inventory_copy.load()
    assert "zelus" not in [i.host for i in catalog.instances(lab)]
    assert "zelus" in [i.host for i in catalog.instances(lab, include_disabled=True)]


def test_image_override_per_host(inventory_copy):
    (inventory_copy.dir / "host_vars" / "local.yml").write_text(
        "labctl_image_overrides:\n  node_exporter: registry.home.arpa/node-exporter:v1.8.2\n"
    )
    lab = inventory_copy.load()
    images = {i.host: i.image for i in catalog.instances(lab)}
    assert images["local"] == "registry.home.arpa/node-exporter:v1.8.2"
    assert images["erebus"] == "quay.io/prometheus/node-exporter:v1.8.2"


def test_hosts_entries_cover_every_machine_and_the_nas(inventory_copy):
    entries = catalog.hosts_entries(inventory_copy.load())
    assert [e["host"] for e in entries] == [*TEN, "truenas"]
    assert len({e["address"] for e in entries}) == 11


def test_alias_for_a_single_instance_service(inventory_copy):
    inventory_copy.add_service("metrics_ui", "monitoring", {"http": 3001}, alias="grafana")
    entries = {e["host"]: e["names"] for e in catalog.hosts_entries(inventory_copy.load())}
    assert entries["moros"] == ["moros.home.arpa", "moros", "grafana.home.arpa"]


def test_domain_change_flows_everywhere(inventory_copy):
    inventory_copy.edit("group_vars/all/network.yml", lambda d: d.update(labctl_domain="lab.example.org"))
    lab = inventory_copy.load()
    assert catalog.instances(lab)[0].health_url == "http://erebus.lab.example.org:9100/metrics"
    assert catalog.hosts_entries(lab)[0]["names"][0] == "erebus.lab.example.org"


def test_toggle_given_as_a_string_is_understood(inventory_copy):
    (inventory_copy.dir / "host_vars" / "zelus.yml").write_text('node_agent_enabled: "false"\n')
    assert "zelus" not in [i.host for i in catalog.instances(inventory_copy.load())]
