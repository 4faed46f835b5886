"""Grafana, which cannot run here: its stack rendered from the real inventory (compose config and
the hardening rules), its datasources from the catalog, and labctl's dashboards validated as
Grafana JSON models whose every PromQL query promtool parses. tests/lab/test_prometheus.py checks
that the metrics they read exist in a real scrape."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from labctl import dashboards
from tests.conftest import ROOT, render_stack
from tests.hardening import compose_config, problems

PROMTOOL = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")


def check_rules(tmp_path: Path, rules: dict) -> subprocess.CompletedProcess[str]:
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(rules))
    command = [PROMTOOL, "check", "rules", str(tmp_path / "queries.yml")]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def render(copy, tmp_path: Path) -> dict:
    return render_stack(
        copy,
        tmp_path,
        "grafana",
        "moros",
        ("compose.yaml", "datasources.yml", "dashboards.yml"),
        values={"dashboards": "(_grafana_view.loki is not none) | labctl_dashboards"},
    )


def test_the_stack_is_hardened_and_keeps_its_state_in_postgres(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    compose = compose_config(tmp_path / "compose.yaml", files["compose.yaml"])
    service = compose["services"]["grafana"]
    assert problems("grafana", service, {"192.168.50.30"}) == []
    assert service["ports"] == ["192.168.50.30:3001:3001"]
    env = yaml.safe_load(files["compose.yaml"])["services"]["grafana"]["environment"]
    assert env["GF_DATABASE_TYPE"] == "postgres" and env["GF_DATABASE_HOST"] == "192.168.50.10:5432"
    # Secrets only as references to the stack's 0600 .env.
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD}"
    assert env["GF_DATABASE_PASSWORD"] == "${GRAFANA_DB_PASSWORD}"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false" and env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "./provisioning:/etc/grafana/provisioning:ro" in service["volumes"]


def test_the_datasources_come_from_the_catalog(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    sources = {s["uid"]: s for s in yaml.safe_load(files["datasources.yml"])["datasources"]}
    assert sources["prometheus"]["url"] == "http://192.168.50.30:9090"
    assert sources["alertmanager"]["url"] == "http://192.168.50.30:9093"
    assert sources["prometheus"]["isDefault"] is True
    # Loki is in the catalog: its datasource, and the logs dashboard.
    assert sources["loki"]["url"] == "http://192.168.50.30:3100"
    assert "labctl-logs.json" in files["values"]["dashboards"]
    provider = yaml.safe_load(files["dashboards.yml"])["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards" and provider["allowUiUpdates"] is False


@pytest.mark.parametrize("name", sorted(dashboards.all_dashboards()))
def test_every_dashboard_is_a_valid_model(name):
    model = dashboards.all_dashboards()[name]
    assert model["uid"] == name.removesuffix(".json") and model["title"]
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids)) and model["panels"]
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, panel["title"]
        assert panel["targets"], panel["title"]
        assert {t["datasource"]["uid"] for t in panel["targets"]} <= {"prometheus", "loki"}
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    # Panels do not overlap.
    cells = set()
    for panel in model["panels"]:
        g = panel["gridPos"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, panel["title"]
        cells |= area
    # Every variable a query uses is defined (or Grafana's own).
    defined = {v["name"] for v in model["templating"]["list"]}
    for panel in model["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert {n for n in used if not n.startswith("__")} <= defined, (panel["title"], used)


def test_every_promql_query_parses(tmp_path):
    """Each query, Grafana's variables replaced, as a recording rule that promtool checks."""
    promql = [(uid, title, q) for uid, title, kind, q in dashboards.queries() if kind == "prometheus"]
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": dashboards.concrete(q)}
                    for i, (_, _, q) in enumerate(promql)
                ],
            }
        ]
    }
    proc = check_rules(tmp_path, rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # ...and a broken one is refused (the check can fail).
    rules["groups"][0]["rules"][0]["expr"] = "sum(rate(up[5m])"
    assert check_rules(tmp_path, rules).returncode != 0


def test_metric_names_are_read_from_queries():
    query = 'sum by (host) (rate(node_network_receive_bytes_total{device!="lo", host=~"$host"}[5m]))'
    assert dashboards.metric_names(query) == {"node_network_receive_bytes_total"}
    assert dashboards.metric_names(
        "histogram_quantile(0.95, sum by (le) (rate(litellm_request_total_latency_metric_bucket[5m])))"
    ) == {"litellm_request_total_latency_metric_bucket"}
    assert dashboards.metric_names("count(up == 0) or vector(0)") == {"up"}
    assert dashboards.metric_names("time() - labctl_postgres_backup_last_success_timestamp_seconds") == {
        "labctl_postgres_backup_last_success_timestamp_seconds"
    }
