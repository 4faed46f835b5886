"""The gateway's configuration, derived from the real inventory: one LiteLLM deployment per model
copy the plan places (adding a GPU machine adds its copies and changes nothing else), the
provider of each engine, fallbacks to the larger chat models, the router's failover settings, and
a compose file that passes `docker compose config` and the hardening rules with no secret in it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from labctl import catalog, dashboards, edge, gateway, monitoring
from labctl.validate import role_specs, validate
from tests.conftest import lab_group, render_stack
from tests.hardening import compose_config, problems


def render(copy, tmp_path: Path, *extra: str, host: str = "orpheus") -> dict[str, str]:
    """A gateway machine's LiteLLM files (orpheus's by default), as the role writes them."""
    return render_stack(
        copy,
        tmp_path,
        "litellm",
        host,
        ("config.yaml", "compose.yaml", "log_config.yaml"),
        *extra,
        variables={"__litellm_cores": {"stdout": "16"}},
    )


def test_one_deployment_per_placed_copy_with_its_engine(inventory_copy):
    routes = {r.id: r for r in gateway.routes(inventory_copy.load())}
    assert set(routes) == {
        "llama3.1:8b@orpheus",
        "llama3.1:8b@kratos",
        "llama3.1:8b@nyx",
        "qwen2.5-coder:14b@orpheus",
        "qwen2.5-coder:14b@kratos",
        "nomic-embed-text@nyx",
        "nomic-embed-text@hades",
        "llama3.3:70b@hades",
    }
    assert routes["llama3.1:8b@kratos"].api_base == "http://192.168.50.21:11434"
    assert routes["llama3.1:8b@kratos"].provider_model == "ollama_chat/llama3.1:8b"
    assert routes["nomic-embed-text@hades"].provider_model == "ollama/nomic-embed-text"
    assert routes["nomic-embed-text@hades"].mode == "embedding"


def test_a_machine_serving_with_a_stand_in_engine_is_reached_there(inventory_copy):
    inventory_copy.edit("host_vars/kratos.yml", lambda d: {**d, "labctl_inference_standin": "llamacpp"})
    routes = {r.id: r for r in gateway.routes(inventory_copy.load())}
    assert routes["llama3.1:8b@kratos"].api_base == "http://192.168.50.21:8080/v1"
    assert routes["llama3.1:8b@kratos"].provider_model == "openai/llama3.1:8b"
    assert routes["llama3.1:8b@nyx"].engine == "ollama"


def test_adding_a_gpu_machine_adds_its_copies_and_changes_no_other(inventory_copy):
    before = {r.id: r for r in gateway.routes(inventory_copy.load())}
    # The owner wants a fourth copy of llama3.1:8b, which the three NVIDIA machines cannot hold
    # apart: the new machine takes it.
    inventory_copy.edit("group_vars/all/models.yml", lambda d: d["labctl_models"][0].update(replicas=4))
    inventory_copy.edit(
        "hosts.yml",
        lambda d: (
            lab_group(d, "inference", "gpu_nvidia")["hosts"].update(eris={"lab_address": "192.168.50.24"}),
            d,
        )[1],
    )
    (inventory_copy.dir / "host_vars" / "eris.yml").write_text(
        yaml.safe_dump({"gpu": {"vendor": "nvidia", "model": "RTX 4090", "vram_gb": 24}})
    )
    after = {r.id: r for r in gateway.routes(inventory_copy.load())}
    added = set(after) - set(before)
    assert "llama3.1:8b@eris" in added and all(i.endswith("@eris") for i in added)
    assert all(after[i].api_base == "http://192.168.50.24:11434" for i in added)
    # A copy the plan moved to eris leaves its old machine; every other deployment is unchanged.
    for deployment_id in set(before) & set(after):
        assert before[deployment_id] == after[deployment_id]


def test_a_second_gateway_instance_is_one_inventory_entry(inventory_copy, tmp_path):
    """thanatos joins the gateway group: it gets the same model list and the same Redis (health,
    cooldowns and usage shared with orpheus), Prometheus scrapes both, the edge balances over both."""
    inventory_copy.edit("hosts.yml", lambda d: (lab_group(d, "gateway")["hosts"].update(thanatos=None), d)[1])
    lab = inventory_copy.load()
    assert validate(lab) == []
    assert {i.host for i in catalog.instances(lab, services=["litellm"])} == {"orpheus", "thanatos"}
    configs = {}
    for host in ("orpheus", "thanatos"):
        (tmp_path / host).mkdir()
        configs[host] = yaml.safe_load(render(inventory_copy, tmp_path / host, host=host)["config.yaml"])
    assert configs["orpheus"]["model_list"] == configs["thanatos"]["model_list"]
    assert configs["thanatos"]["router_settings"]["redis_host"] == "192.168.50.10"
    assert configs["orpheus"]["router_settings"] == configs["thanatos"]["router_settings"]
    [job] = [j for j in monitoring.scrape_jobs(lab) if j["job"] == "litellm"]
    assert sorted(t["targets"][0] for t in job["targets"]) == ["192.168.50.12:4001", "192.168.50.20:4001"]
    [route] = [r for r in edge.routes(lab) if r["service"] == "litellm"]
    assert sorted(route["servers"]) == ["http://192.168.50.12:4000", "http://192.168.50.20:4000"]


def test_chat_models_fall_back_to_the_larger_ones(inventory_copy):
    assert gateway.fallbacks(inventory_copy.load()) == [
        {"llama3.1:8b": ["qwen2.5-coder:14b", "llama3.3:70b"]},
        {"qwen2.5-coder:14b": ["llama3.3:70b"]},
    ]
    assert gateway.fallbacks(inventory_copy.load(), "external")[-1] == {"llama3.3:70b": ["external"]}


def test_a_model_may_name_its_own_fallbacks(inventory_copy):
    def change(data):
        for model in data["labctl_models"]:
            if model["name"] == "llama3.1:8b":
                model["fallbacks"] = ["llama3.3:70b"]
            if model["name"] == "qwen2.5-coder:14b":
                model["fallbacks"] = []
        return data

    inventory_copy.edit("group_vars/all/models.yml", change)
    assert gateway.fallbacks(inventory_copy.load()) == [{"llama3.1:8b": ["llama3.3:70b"]}]


def test_validation_names_a_fallback_that_is_no_chat_model(inventory_copy):
    def change(data):
        for model in data["labctl_models"]:
            if model["name"] == "llama3.1:8b":
                model["fallbacks"] = ["gpt-9", "nomic-embed-text"]
        return data

    inventory_copy.edit("group_vars/all/models.yml", change)
    found = [str(p) for p in validate(inventory_copy.load()) if "fallbacks" in p.variable]
    assert any("'gpt-9' is no model of labctl_models" in f for f in found), found
    assert any("'nomic-embed-text' is an embedding model" in f for f in found), found
    assert all("labctl_models[0].fallbacks" in f for f in found), found


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (compose config)")
def test_the_rendered_gateway_is_the_plan_with_failover_settings(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    config = yaml.safe_load(files["config.yaml"])
    ids = [d["model_info"]["id"] for d in config["model_list"]]
    # The lab's copies are free: priced at zero, not searched for in the cost map.
    assert all(d["model_info"]["input_cost_per_token"] == 0 for d in config["model_list"])
    assert sorted(ids) == sorted(r.id for r in gateway.routes(inventory_copy.load()))
    router = config["router_settings"]
    assert router["routing_strategy"] == "simple-shuffle"
    assert router["enable_health_check_routing"] is True
    # The check cycle is bounded, and a slow check (a busy copy) does not take its copy out.
    assert router["health_check_ignore_transient_errors"] is True
    assert all(d["model_info"]["health_check_timeout"] == 5 for d in config["model_list"])
    # One connection attempt per copy (the router retries elsewhere): a dead machine's check fails
    # within the check timeout instead of timing out as "busy".
    assert all(d["litellm_params"]["max_retries"] == 0 for d in config["model_list"])
    assert router["num_retries"] >= 1 and router["retry_after"] == 0
    # LiteLLM skips the health filter when a router-wide allowed_fails_policy is set.
    assert "allowed_fails_policy" not in router
    assert router["redis_host"] == "192.168.50.10" and router["redis_password"] == "os.environ/REDIS_PASSWORD"
    assert router["fallbacks"] == gateway.fallbacks(inventory_copy.load())
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert config["general_settings"]["database_url"] == "os.environ/DATABASE_URL"
    # With the database, LiteLLM checks the keys itself (virtual keys).
    assert "custom_auth" not in config["general_settings"]
    assert config["general_settings"]["background_health_checks"] is True
    assert config["litellm_settings"]["callbacks"] == ["prometheus"]

    service = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])["services"]["litellm"]
    assert problems("litellm", service, {"192.168.50.20"}) == []
    assert service["image"] == "ghcr.io/berriai/litellm:main-v1.106.12"
    assert service["ports"] == ["192.168.50.20:4000:4000", "192.168.50.20:4001:4001"]
    # Workers sized to the machine's cores (16 here), at most litellm_workers_max.
    assert service["command"][service["command"].index("--num_workers") + 1] == "4"
    assert service["environment"]["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    # Secrets only as references to the 0600 .env.
    assert service["environment"]["LITELLM_MASTER_KEY"] == "${LITELLM_MASTER_KEY}"
    assert "sk-" not in files["config.yaml"] + files["compose.yaml"]


def _litellm_families(query: str, defined: set[str]) -> set[str]:
    """The LiteLLM metric families a PromQL query reads: a name as LiteLLM defines it, or a sample
    of one (a histogram's _bucket/_count/_sum, a counter's _total)."""
    found = set()
    for name in dashboards.metric_names(query):
        if name.startswith("litellm_"):
            family = re.sub(r"_(bucket|count|sum|total)$", "", name)
            found.add(name if name in defined or family not in defined else family)
    return found


def test_the_gateway_computes_every_metric_the_monitoring_tier_reads(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    settings = yaml.safe_load(files["config.yaml"])["litellm_settings"]
    [group] = settings["prometheus_metrics_config"]
    kept = set(group["metrics"])
    # The names the pinned LiteLLM release defines (the role's argument spec lists them).
    defined = set(role_specs()["litellm_prometheus_metrics"]["choices"])
    (tmp_path / "prometheus").mkdir()
    rules = yaml.safe_load(
        render_stack(
            inventory_copy,
            tmp_path / "prometheus",
            "prometheus",
            "moros",
            ("rules.yml",),
            values={"targets": "_prometheus_targets"},
        )["rules.yml"]
    )
    queries = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    queries += [q for _, _, kind, q in dashboards.queries() if kind == "prometheus"]
    read = set().union(*(_litellm_families(q, defined) for q in queries))
    assert {"litellm_deployment_state", "litellm_request_total_latency_metric"} <= read
    assert read <= defined, (
        f"the rules or dashboards read what LiteLLM does not define: {sorted(read - defined)}"
    )
    assert read <= kept, (
        f"the rules or dashboards read metrics the gateway does not compute: {sorted(read - kept)}"
    )
    # An operator's narrower list is what the proxy gets.
    narrower = '{"litellm_prometheus_metrics": ["litellm_deployment_state"]}'
    (tmp_path / "narrower").mkdir()
    files = render(inventory_copy, tmp_path / "narrower", "-e", narrower)
    [group] = yaml.safe_load(files["config.yaml"])["litellm_settings"]["prometheus_metrics_config"]
    assert group["metrics"] == ["litellm_deployment_state"]


def test_a_metric_litellm_does_not_define_is_refused_by_name(inventory_copy):
    def change(data):
        data["litellm_prometheus_metrics"] = ["litellm_deployment_state", "litellm_requests_total"]

    inventory_copy.edit("host_vars/orpheus.yml", change)
    found = [p for p in validate(inventory_copy.load()) if p.variable == "litellm_prometheus_metrics"]
    assert [p.host for p in found] == ["orpheus"], found
    assert "litellm_requests_total" in found[0].message


def test_the_access_log_is_off_unless_asked_for(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    service = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])["services"]["litellm"]
    command = service["command"]
    assert command[command.index("--log_config") + 1] == "/etc/litellm/log_config.yaml"
    assert any(v.endswith("log_config.yaml:/etc/litellm/log_config.yaml:ro") for v in _volumes(service))
    loggers = yaml.safe_load(files["log_config.yaml"])["loggers"]
    # No handler at all: uvicorn then does not even build the line.
    assert loggers["uvicorn.access"]["handlers"] == []
    assert loggers["uvicorn.error"]["level"] == "INFO"
    (tmp_path / "on").mkdir()
    files = render(inventory_copy, tmp_path / "on", "-e", "litellm_access_log=true")
    access = yaml.safe_load(files["log_config.yaml"])["loggers"]["uvicorn.access"]
    assert access["handlers"] == ["default"] and access["level"] == "INFO"


def _volumes(service: dict) -> list[str]:
    return [v if isinstance(v, str) else f"{v['source']}:{v['target']}:ro" for v in service["volumes"]]


def test_without_the_database_only_the_master_key(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path, "-e", "litellm_database_enabled=false")
    settings = yaml.safe_load(files["config.yaml"])["general_settings"]
    assert "database_url" not in settings
    # LiteLLM alone answers a key it cannot look up with 400: labctl's check answers 401.
    assert settings["custom_auth"] == "labctl_auth.master_key_only"
