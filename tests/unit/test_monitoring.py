"""The monitoring tier rendered from the real inventory: every target and probe derived from the
catalog (a new machine appears with no other edit), Prometheus's configuration accepted by
promtool, every alert rule passing its promtool tests (tests/rules/labctl.test.yml), and every
alert rule having a test."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from labctl import catalog, monitoring
from tests.conftest import ROOT, VAULT_PASSWORD, add_gpu_node, render_stack
from tests.hardening import compose_config, problems

PROMTOOL = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
RULE_TESTS = ROOT / "tests" / "rules" / "labctl.test.yml"
TEN = ["erebus", "hephaestus", "thanatos", "zelus", "orpheus", "kratos", "nyx", "hades", "moros", "local"]


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not Path(PROMTOOL).exists():
        pytest.fail("promtool is missing: ./scripts/bootstrap.sh unpacks it into .venv/bin")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, check=False)


def render_prometheus(copy, tmp_path: Path, *extra: str) -> dict:
    return render_stack(
        copy,
        tmp_path,
        "prometheus",
        "moros",
        ("prometheus.yml", "rules.yml", "compose.yaml"),
        *extra,
        values={"targets": "_prometheus_targets"},
    )


def test_every_machine_and_service_is_a_target(inventory_copy):
    lab = inventory_copy.load()
    jobs = {job["job"]: job for job in monitoring.scrape_jobs(lab)}
    assert list(jobs) == [
        "node_exporter",
        "cadvisor",
        "alloy",
        "postgres",
        "postgres_replica",
        "redis",
        "traefik",
        "dcgm_exporter",
        "rocm_exporter",
        "litellm",
        "prometheus",
        "alertmanager",
        "blackbox",
        "loki",
        "grafana",
    ]
    # Container metrics and the log shipper on every machine; the GPU exporters by vendor.
    assert [t["labels"]["host"] for t in jobs["cadvisor"]["targets"]] == TEN
    assert [t["labels"]["host"] for t in jobs["alloy"]["targets"]] == TEN
    assert [t["targets"] for t in jobs["dcgm_exporter"]["targets"]] == [
        [f"192.168.50.{last}:9400"] for last in (20, 21, 22)
    ]
    assert [t["targets"] for t in jobs["rocm_exporter"]["targets"]] == [["192.168.50.23:5000"]]
    assert jobs["postgres"]["targets"][0]["targets"] == ["192.168.50.10:9187"]
    assert jobs["redis"]["targets"][0]["targets"] == ["192.168.50.10:9121"]
    assert [t["labels"]["host"] for t in jobs["node_exporter"]["targets"]] == TEN
    assert jobs["node_exporter"]["targets"][0] == {
        "targets": ["192.168.50.10:9100"],
        "labels": {"instance": "erebus", "host": "erebus", "service": "node_exporter"},
    }
    assert jobs["litellm"] == {
        "job": "litellm",
        "path": "/metrics/",
        "targets": [
            {
                "targets": ["192.168.50.20:4001"],
                "labels": {"instance": "orpheus", "host": "orpheus", "service": "litellm"},
            }
        ],
        # The gateway names each model copy by its engine's URL: Prometheus adds the machine.
        "relabel": [
            {
                "source_labels": ["api_base"],
                "regex": rf"https?://192\.168\.50\.{last}:[0-9]+(/.*)?",
                "target_label": "node",
                "replacement": host,
            }
            for host, last in (("hades", 23), ("kratos", 21), ("nyx", 22), ("orpheus", 20))
        ],
    }
    assert jobs["node_exporter"]["relabel"] == []


def test_every_health_endpoint_is_probed(inventory_copy):
    lab = inventory_copy.load()
    probes = monitoring.probes(lab)
    assert monitoring.unprobed(lab) == []
    http = {(g["labels"]["service"], g["labels"]["host"]): g for g in probes["http"]}
    tcp = {(g["labels"]["service"], g["labels"]["host"]): g for g in probes["tcp"]}
    assert http[("mcpo", "zelus")]["targets"] == ["http://192.168.50.13:8000/healthz"]
    assert tcp[("postgres", "erebus")]["targets"] == ["192.168.50.10:5432"]
    assert tcp[("redis", "erebus")]["targets"] == ["192.168.50.10:6379"]
    # Inference engines are marked: their alert is critical.
    engines = {k: g for k, g in {**http, **tcp}.items() if g["labels"].get("kind") == "inference"}
    assert {service for service, _ in engines} <= {"ollama", "vllm", "llamacpp"} and engines
    expected = {(i.service, i.host) for i in catalog.instances(lab) if i.health}
    assert set(http) | set(tcp) == expected


def test_every_route_of_the_edge_is_probed_by_https_through_it(inventory_copy):
    lab = inventory_copy.load()
    https = {g["labels"]["route"]: g for g in monitoring.edge_probes(lab)}
    assert monitoring.view(lab, "moros")["probes"]["https"] == list(https.values())
    names = ("uptime", "gateway", "chat", "prometheus", "alertmanager", "grafana")
    assert set(https) == {f"{name}.home.arpa" for name in names}
    # By name, on the service's health path; what answers is the edge (its certificate).
    assert https["chat.home.arpa"] == {
        "targets": ["https://chat.home.arpa/health"],
        "labels": {
            "instance": "chat.home.arpa",
            "host": "hephaestus",
            "service": "traefik",
            "route": "chat.home.arpa",
        },
    }
    assert monitoring.edge_names(lab) == {f"{name}.home.arpa": "192.168.50.11" for name in names}
    # Admin routes only where the monitoring machine is inside the admin allowlist.
    inventory_copy.edit(
        "host_vars/hephaestus.yml", lambda d: {**(d or {}), "traefik_admin_allow_from": ["192.168.60.0/24"]}
    )
    public = {g["labels"]["route"] for g in monitoring.edge_probes(inventory_copy.load())}
    assert public == {"gateway.home.arpa", "chat.home.arpa"}
    # Without the edge (the simulated lab), nothing to probe that way.
    inventory_copy.edit("host_vars/hephaestus.yml", lambda d: {**(d or {}), "traefik_enabled": False})
    assert monitoring.edge_probes(inventory_copy.load()) == []
    assert monitoring.edge_names(inventory_copy.load()) == {}


def test_the_probe_modules_pass_the_blackbox_exporters_check(inventory_copy, tmp_path):
    """The real blackbox exporter (Debian's, unpacked by bootstrap) checks the modules rendered
    for moros; its container trusts the lab CA and resolves the routes' names to the edge."""
    exporter = ROOT / ".venv" / "bin" / "prometheus-blackbox-exporter"
    if not exporter.exists():
        pytest.fail("the blackbox exporter is missing: ./scripts/bootstrap.sh unpacks it into .venv/bin")
    files = render_stack(inventory_copy, tmp_path, "blackbox", "moros", ("config.yml", "compose.yaml"))
    modules = yaml.safe_load(files["config.yml"])["modules"]
    assert set(modules) == {"http_health", "tcp_health", "https_health"}
    assert modules["https_health"]["http"]["fail_if_not_ssl"] is True
    assert modules["https_health"]["http"]["tls_config"] == {"ca_file": "/etc/ssl/labctl-ca.crt"}
    (tmp_path / "config.yml").write_text(files["config.yml"])
    check = subprocess.run(
        [str(exporter), f"--config.file={tmp_path / 'config.yml'}", "--config.check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    broken = files["config.yml"].replace("fail_if_not_ssl: true", "fail_if_not_ssl: maybe")
    (tmp_path / "config.yml").write_text(broken)
    assert (
        subprocess.run(
            [str(exporter), f"--config.file={tmp_path / 'config.yml'}", "--config.check"],
            capture_output=True,
            check=False,
        ).returncode
        != 0
    )
    service = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])["services"]["blackbox"]
    assert problems("blackbox", service, {"192.168.50.30"}) == []
    # The lab CA's root, read-only, never created as an empty directory where it is missing.
    (ca,) = [v for v in service["volumes"] if isinstance(v, dict)]
    assert ca == {
        "type": "bind",
        "source": "/usr/local/share/ca-certificates/labctl-ca.crt",
        "target": "/etc/ssl/labctl-ca.crt",
        "read_only": True,
        "bind": {"create_host_path": False},
    }
    assert service["extra_hosts"] == sorted(
        f"{name}.home.arpa:192.168.50.11"
        for name in ("uptime", "gateway", "chat", "prometheus", "alertmanager", "grafana")
    )


def test_a_service_the_monitoring_machine_may_not_reach_is_named(inventory_copy):
    inventory_copy.edit(
        "group_vars/all/services.yml",
        lambda d: d["labctl_services"]["redis"].update(allow_from=["gateway"]),
    )
    assert monitoring.unprobed(inventory_copy.load()) == ["redis@erebus"]


def test_a_new_machine_appears_in_the_targets(inventory_copy):
    add_gpu_node(inventory_copy, "ceto", "192.168.50.24")
    lab = inventory_copy.load()
    view = monitoring.view(lab, "moros")
    nodes = next(j for j in view["jobs"] if j["job"] == "node_exporter")["targets"]
    assert {
        "targets": ["192.168.50.24:9100"],
        "labels": {"instance": "ceto", "host": "ceto", "service": "node_exporter"},
    } in nodes
    # Prometheus's machine re-renders its targets whenever any machine is deployed.
    assert "prometheus" in [s["service"] for s in catalog.consumer_stacks(lab, "moros", ["ceto"])]


def test_the_configuration_passes_promtool(inventory_copy, tmp_path):
    files = render_prometheus(inventory_copy, tmp_path)
    config = yaml.safe_load(files["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {
        *(
            "node_exporter",
            "cadvisor",
            "alloy",
            "postgres",
            "postgres_replica",
            "redis",
            "litellm",
            "traefik",
        ),
        *("dcgm_exporter", "rocm_exporter", "prometheus", "alertmanager", "blackbox", "loki", "grafana"),
        *("probe_http", "probe_tcp", "probe_https"),
    }
    assert jobs["probe_http"]["relabel_configs"][-1] == {
        "target_label": "__address__",
        "replacement": "192.168.50.30:9115",
    }
    # The directory Prometheus sees: the configuration, the rules and the file_sd targets.
    etc = tmp_path / "etc"
    (etc / "rules").mkdir(parents=True)
    (etc / "targets").mkdir()
    (etc / "rules" / "labctl.yml").write_text(files["rules.yml"])
    for name, groups in files["values"]["targets"].items():
        (etc / "targets" / f"{name}.json").write_text(json.dumps(groups))
    text = files["prometheus.yml"].replace("/etc/prometheus/", f"{etc}/")
    (etc / "prometheus.yml").write_text(text)
    proc = promtool("check", "config", str(etc / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr
    # A rule Prometheus cannot parse is refused by the same check the role runs before writing.
    (etc / "rules" / "labctl.yml").write_text(files["rules.yml"].replace("== 0", "=== 0", 1))
    assert promtool("check", "rules", str(etc / "rules" / "labctl.yml")).returncode != 0


def test_every_alert_rule_passes_its_tests(inventory_copy, tmp_path):
    files = render_prometheus(inventory_copy, tmp_path)
    work = tmp_path / "rules"
    work.mkdir()
    (work / "labctl.yml").write_text(files["rules.yml"])
    shutil.copy(RULE_TESTS, work / "labctl.test.yml")
    proc = promtool("check", "rules", "labctl.yml", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = promtool("test", "rules", "labctl.test.yml", cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every alert has a case that fires (an expected alert), not only one that stays silent.
    rules = yaml.safe_load(files["rules.yml"])
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    assert alerts == fired, f"alerts without a firing test: {sorted(alerts - fired)}"


def test_a_broken_rule_fails_its_test(inventory_copy, tmp_path):
    """The rule tests can fail: a threshold moved past the test's value is caught."""
    files = render_prometheus(inventory_copy, tmp_path, "-e", "prometheus_gpu_temperature_max=95")
    work = tmp_path / "rules"
    work.mkdir()
    (work / "labctl.yml").write_text(files["rules.yml"])
    shutil.copy(RULE_TESTS, work / "labctl.test.yml")
    proc = promtool("test", "rules", "labctl.test.yml", cwd=work)
    assert proc.returncode != 0 and "GPUHot" in proc.stdout + proc.stderr


def test_prometheus_reloads_instead_of_restarting(inventory_copy, tmp_path):
    """Its configuration is a mounted directory whose files are marked `reload`: left out of the
    stack's hash, so a change of rules or targets does not recreate the container; compose_stack
    sends SIGHUP instead."""
    files = render_stack(
        inventory_copy,
        tmp_path,
        "prometheus",
        "moros",
        ("compose.yaml",),
        values={"files": "_prometheus_files"},
    )
    compose = yaml.safe_load(files["compose.yaml"])
    service = compose["services"]["prometheus"]
    assert "./config:/etc/prometheus:ro" in service["volumes"]
    assert service["user"] == "65534:65534"
    assert service["ports"] == ["192.168.50.30:9090:9090"]
    stack_files = files["values"]["files"]
    assert all(f["reload"] and f["dest"].startswith("config/") for f in stack_files)
    # The rules are checked before the configuration, which promtool checks with them.
    dests = [f["dest"] for f in stack_files]
    assert dests.index("config/rules/labctl.yml") < dests.index("config/prometheus.yml") == len(dests) - 1
    tasks = yaml.safe_load((ROOT / "roles" / "compose_stack" / "tasks" / "main.yml").read_text())
    reload = next(t for t in tasks if t["name"].startswith("Reload after a change"))
    assert reload["community.docker.docker_compose_v2_exec"]["command"] == "kill -HUP 1"


AMTOOL = shutil.which("amtool") or str(ROOT / ".venv" / "bin" / "amtool")


def render_alertmanager(copy, tmp_path: Path, *extra: str) -> dict:
    return render_stack(copy, tmp_path, "alertmanager", "moros", ("alertmanager.yml", "compose.yaml"), *extra)


def amtool_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "am.yml"
    path.write_text(text)
    return subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, check=False)


def test_alerts_stay_in_alertmanager_without_receivers(inventory_copy, tmp_path):
    files = render_alertmanager(inventory_copy, tmp_path)
    config = yaml.safe_load(files["alertmanager.yml"])
    assert config["route"]["receiver"] == "nowhere"
    assert config["receivers"] == [{"name": "nowhere"}]
    # A machine down silences the rest about it.
    assert config["inhibit_rules"][0] == {
        "source_matchers": ['alertname="HostDown"'],
        "target_matchers": ['alertname!="HostDown"'],
        "equal": ["host"],
    }
    proc = amtool_check(tmp_path, files["alertmanager.yml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_receivers_take_their_secrets_from_the_vault(inventory_copy, tmp_path):
    from labctl import vault

    settings = {
        "alertmanager_receivers": ["webhook", "email", "ntfy"],
        "alertmanager_email_to": "owner@example.org",
        "alertmanager_smtp_from": "lab@example.org",
        "alertmanager_smtp_smarthost": "mail.example.org:587",
        "alertmanager_ntfy_url": "https://ntfy.example.org/lab-alerts",
    }
    inventory_copy.edit("group_vars/all/platform.yml", lambda d: d.update(settings))
    # Without the secrets the inventory is refused, naming the machine and the secret.
    from labctl import validate

    problems = [str(p) for p in validate.validate(inventory_copy.load())]
    assert any(
        "moros" in p and "alertmanager_webhook_url" in p and "labctl init --set" in p for p in problems
    ), problems
    assert any("alertmanager_smtp_password" in p for p in problems), problems
    secrets = {
        "alertmanager_webhook_url": "https://hooks.example.org/T0KEN",
        "alertmanager_smtp_password": "smtp-S3CRET",
        "alertmanager_ntfy_token": "tk_ntfyS3CRET",
    }
    declared = catalog.declared_secrets(inventory_copy.load())
    vault.init(inventory_copy.vault_file, declared, VAULT_PASSWORD, [], secrets)
    assert validate.validate(inventory_copy.load()) == []
    # (The render helper loads the role's defaults as play variables: the settings go as extra vars.)
    files = render_alertmanager(inventory_copy, tmp_path, "-e", json.dumps(settings))
    config = yaml.safe_load(files["alertmanager.yml"])
    lab = config["receivers"][1]
    assert config["route"]["receiver"] == "lab"
    assert lab["webhook_configs"][0]["url"] == "https://hooks.example.org/T0KEN"
    ntfy = lab["webhook_configs"][1]
    assert ntfy["url"].startswith("https://ntfy.example.org/lab-alerts?tpl=1&t=")
    assert ntfy["http_config"]["authorization"] == {"type": "Bearer", "credentials": "tk_ntfyS3CRET"}
    assert lab["email_configs"] == [{"to": "owner@example.org", "send_resolved": True}]
    assert config["global"]["smtp_auth_password"] == "smtp-S3CRET"
    proc = amtool_check(tmp_path, files["alertmanager.yml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The file holds secrets: the role writes it 0600 for the container's user, never logged.
    tasks = yaml.safe_load((ROOT / "roles" / "alertmanager" / "tasks" / "main.yml").read_text())
    (entry,) = tasks[0]["vars"]["compose_stack_files"]
    assert entry["mode"] == "0600" and entry["secret"] is True and entry["reload"] is True
    stack_tasks = yaml.safe_load((ROOT / "roles" / "compose_stack" / "tasks" / "main.yml").read_text())
    write = next(t for t in stack_tasks if t["name"].startswith("Write the secret files"))
    assert write["no_log"] is True


@pytest.mark.parametrize("role", ["prometheus", "alertmanager", "blackbox"])
def test_the_monitoring_stacks_are_hardened(inventory_copy, tmp_path, role):
    files = render_stack(inventory_copy, tmp_path, role, "moros", ("compose.yaml",))
    compose = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])
    (service,) = compose["services"].values()
    assert problems(role, service, {"192.168.50.30"}) == []
    assert service["user"] == "65534:65534" and service["read_only"] is True
    # Its configuration read-only, from the stack directory.
    config = [v for v in service["volumes"] if ":/etc/" in v]
    assert config and all(v.endswith(":ro") for v in config), service["volumes"]
