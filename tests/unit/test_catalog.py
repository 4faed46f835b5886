"""The catalog derives every service instance, tier, bind address and /etc/hosts line from the inventory."""

from __future__ import annotations

from labctl import catalog
from tests.conftest import add_gpu_node

TEN = ["erebus", "hephaestus", "thanatos", "zelus", "orpheus", "kratos", "nyx", "hades", "moros", "local"]


def test_node_exporter_runs_on_every_machine_in_address_order(inventory_copy):
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
    assert erebus.tier == "base" and erebus.network == "host"


def test_one_name_per_service(inventory_copy):
    """The catalog key is the stack, the image key and the role (a build per GPU vendor is
    <service>_<variant>, such as ollama_rocm)."""
    instances = catalog.instances(inventory_copy.load())
    services = {i.service for i in instances}
    for inst in instances:
        assert inst.stack == inst.service
        # its own image, a build of it, or the image of the service it is a mode of
        # (postgres_replica runs postgres)
        assert (
            inst.image_key == inst.service
            or inst.image_key.startswith(inst.service + "_")
            or (inst.image_key in services and inst.service.startswith(inst.image_key + "_"))
        )
        assert inst.as_dict()["stack"] == inst.service


def test_a_service_listens_on_the_lab_address_only_when_others_may_connect(inventory_copy):
    lab = inventory_copy.load()
    redis = next(i for i in catalog.instances(lab) if i.service == "redis")
    assert redis.bind_address == "192.168.50.10"
    inventory_copy.edit(
        "group_vars/all/services.yml", lambda d: d["labctl_services"]["redis"].update(allow_from=[])
    )
    redis = next(i for i in catalog.instances(inventory_copy.load()) if i.service == "redis")
    assert redis.bind_address == "127.0.0.1"


def test_stacks_and_tiers_of_a_machine(inventory_copy):
    lab = inventory_copy.load()
    assert [s["service"] for s in catalog.host_stacks(lab, "erebus")] == [
        "node_exporter",
        "cadvisor",
        "alloy",
        "postgres",
        "redis",
    ]
    assert [s["service"] for s in catalog.host_stacks(lab, "erebus", "databases")] == ["postgres", "redis"]
    assert catalog.host_tiers(lab, "erebus") == [1, 2]
    # the replica goes out after the primary it clones
    assert catalog.host_tiers(lab, "thanatos") == [1, 4]
    assert catalog.host_tiers(lab, "moros") == [1, 7]
    assert catalog.tiers(lab)[:2] == ["base", "databases"]


def test_adding_a_gpu_node_is_one_inventory_entry(inventory_copy):
    add_gpu_node(inventory_copy, "ceto", "192.168.50.24")
    lab = inventory_copy.load()
    assert "ceto" in [i.host for i in catalog.instances(lab)]
    entries = {e["host"]: e for e in catalog.hosts_entries(lab)}
    assert entries["ceto"] == {
        "address": "192.168.50.24",
        "host": "ceto",
        "names": ["ceto.home.arpa", "ceto"],
    }
    # every other machine derives its /etc/hosts from the same list: they are the consumers
    assert catalog.consumers(lab, ["ceto"]) == TEN


def test_without_a_change_of_names_only_the_consumers_of_the_deployed_services_are_refreshed(
    inventory_copy,
):
    lab = inventory_copy.load()
    # The replica (thanatos) streams from the primary, the gateway (orpheus) uses the databases,
    # Prometheus (moros) scrapes them, the edge (hephaestus) routes to every service: the other
    # machines derive nothing from erebus.
    assert catalog.consumers(lab, ["erebus"], names_changed=False) == [
        "hephaestus",
        "thanatos",
        "orpheus",
        "moros",
    ]
    # An inference machine changed: the plan is recomputed over all of them.
    assert catalog.consumers(lab, ["nyx"], names_changed=False) == [
        "hephaestus",
        "orpheus",
        "kratos",
        "hades",
        "moros",
    ]
    assert catalog.consumers(lab, ["erebus"]) == [h for h in TEN if h != "erebus"]


def test_a_disabled_stack_has_no_instance(inventory_copy):
    (inventory_copy.dir / "host_vars" / "zelus.yml").write_text("node_exporter_enabled: false\n")
    lab = inventory_copy.load()
    exporters = [i.host for i in catalog.instances(lab, services=["node_exporter"])]
    assert "zelus" not in exporters and "nyx" in exporters
    assert "zelus" in [
        i.host for i in catalog.instances(lab, services=["node_exporter"], include_disabled=True)
    ]
    # Its other stacks stay.
    assert [i.service for i in catalog.instances(lab, hosts=["zelus"])] == ["cadvisor", "alloy", "mcpo"]


def test_image_override_per_host(inventory_copy):
    (inventory_copy.dir / "host_vars" / "local.yml").write_text(
        "labctl_image_overrides:\n  node_exporter: registry.home.arpa/node-exporter:v1.8.2\n"
    )
    images = {
        i.host: i.image for i in catalog.instances(inventory_copy.load()) if i.service == "node_exporter"
    }
    assert images["local"] == "registry.home.arpa/node-exporter:v1.8.2"
    assert images["erebus"] == "quay.io/prometheus/node-exporter:v1.8.2"


def test_an_image_per_gpu_vendor(inventory_copy):
    """hades (ROCm) runs another build of the same service than the NVIDIA nodes."""

    def add_images(d):
        d["labctl_images"]["probe"] = {"repository": "example/probe", "tag": "1.0"}
        d["labctl_images"]["probe_rocm"] = {"repository": "example/probe", "tag": "1.0-rocm"}

    inventory_copy.edit("group_vars/all/images.yml", add_images)
    inventory_copy.add_service(
        "probe",
        "inference",
        {"http": 7000},
        image={"default": "probe", "amd": "probe_rocm"},
        health={"port": "http", "path": "/"},
        gpu=True,
    )
    lab = inventory_copy.load()
    probes = {i.host: i for i in catalog.instances(lab) if i.service == "probe"}
    assert probes["hades"].image == "example/probe:1.0-rocm"
    assert probes["kratos"].image == "example/probe:1.0"
    assert probes["hades"].gpu == {
        "vendor": "amd",
        "model": "Radeon RX 7900 XTX",
        "count": 2,
        "groups": None,
        "env": {},
        "passthrough": True,
        "cdi": False,
    }


def test_hosts_entries_cover_every_machine_and_the_nas(inventory_copy):
    entries = catalog.hosts_entries(inventory_copy.load())
    assert [e["host"] for e in entries] == [*TEN, "truenas"]
    assert len({e["address"] for e in entries}) == 11


def test_alias_for_a_single_instance_service(inventory_copy):
    entries = {e["host"]: e["names"] for e in catalog.hosts_entries(inventory_copy.load())}
    assert entries["erebus"] == ["erebus.home.arpa", "erebus", "postgres.home.arpa", "redis.home.arpa"]


def test_domain_change_flows_everywhere(inventory_copy):
    inventory_copy.edit("group_vars/all/network.yml", lambda d: d.update(labctl_domain="lab.example.org"))
    lab = inventory_copy.load()
    assert catalog.instances(lab)[0].health_url == "http://erebus.lab.example.org:9100/metrics"
    assert catalog.hosts_entries(lab)[0]["names"][0] == "erebus.lab.example.org"


def test_declared_secrets_and_who_uses_them(inventory_copy):
    password = {"form": "password", "length": 32, "prefix": ""}
    token = {"form": "token", "length": 48, "prefix": "sk-"}
    provided = {"form": "provided", "length": 32, "prefix": ""}
    assert catalog.declared_secrets(inventory_copy.load()) == {
        "postgres_password": {**password, "services": ["postgres"]},
        "postgres_replication_password": {**password, "services": ["postgres", "postgres_replica"]},
        "litellm_db_password": {**password, "services": ["postgres", "litellm"]},
        "openwebui_db_password": {**password, "services": ["postgres", "openwebui"]},
        "grafana_db_password": {**password, "services": ["postgres", "grafana"]},
        "postgres_monitor_password": {**password, "services": ["postgres", "postgres_replica"]},
        "redis_password": {**password, "services": ["redis", "litellm"]},
        "traefik_dashboard_password": {**password, "length": 24, "services": ["traefik"]},
        "uptime_kuma_admin_password": {**password, "length": 24, "services": ["uptime_kuma"]},
        "hf_token": {"form": "provided", "length": 32, "prefix": "", "services": ["vllm"]},
        "litellm_master_key": {**token, "services": ["litellm", "openwebui"]},
        "litellm_salt_key": {**token, "services": ["litellm"]},
        "litellm_external_api_key": {"form": "provided", "length": 32, "prefix": "", "services": ["litellm"]},
        "openwebui_secret_key": {"form": "token", "length": 48, "prefix": "", "services": ["openwebui"]},
        "openwebui_admin_password": {
            "form": "password",
            "length": 24,
            "prefix": "",
            "services": ["openwebui"],
        },
        "mcpo_api_key": {"form": "token", "length": 40, "prefix": "mcpo-", "services": ["openwebui", "mcpo"]},
        "alertmanager_webhook_url": {**provided, "services": ["alertmanager"]},
        "alertmanager_smtp_password": {**provided, "services": ["alertmanager"]},
        "alertmanager_ntfy_token": {**provided, "services": ["alertmanager"]},
        "grafana_admin_password": {**password, "length": 24, "services": ["grafana"]},
        "grafana_secret_key": {"form": "token", "length": 48, "prefix": "", "services": ["grafana"]},
    }


def test_consumer_stacks_follow_the_consumes_key(inventory_copy):
    inventory_copy.add_service(
        "scraper",
        "monitoring",
        {"http": 9090},
        consumes=["node_exporter"],
        health={"port": "http", "path": "/"},
    )
    lab = inventory_copy.load()
    # Prometheus and the blackbox exporter consume every service ('*'); the scraper only the node
    # exporters.
    consumers = [s["service"] for s in catalog.consumer_stacks(lab, "moros", ["nyx"])]
    assert consumers == ["prometheus", "blackbox", "scraper"]
    assert catalog.consumer_stacks(lab, "erebus", ["nyx"]) == []


def test_a_placement_override_moves_a_service_and_its_name(inventory_copy):
    """What labctl db promote writes beside the vault: the primary on thanatos, no replica."""
    from labctl import project

    target = project.target(inventory_copy.dir, sim=False, extra=[inventory_copy.dir])
    project.write_placement(target, {"postgres": ["thanatos"], "postgres_replica": []})
    lab = inventory_copy.load()
    placed = {(i.service, i.host) for i in catalog.instances(lab, services=["postgres", "postgres_replica"])}
    assert placed == {("postgres", "thanatos")}
    names = {e["host"]: e["names"] for e in catalog.hosts_entries(lab)}
    assert "postgres.home.arpa" in names["thanatos"] and "postgres.home.arpa" not in names["erebus"]
    assert catalog.group_hosts(lab, "postgres") == ["erebus"]  # the groups are untouched
    # Nothing left to override: the file goes, and the groups place the services again.
    project.write_placement(target, {})
    assert not (inventory_copy.dir / "placement.yml").exists()
    placed = {(i.service, i.host) for i in catalog.instances(inventory_copy.load(), services=["postgres"])}
    assert placed == {("postgres", "erebus")}
