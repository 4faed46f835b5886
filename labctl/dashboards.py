"""Grafana's dashboards, as code: built here, written by roles/grafana as JSON files that Grafana's
file provisioning loads (read-only in Grafana: a change is a change of this file).

Each dashboard is a list of panels, each panel a few PromQL (or LogQL) queries over the labels
every target carries (`host`, `service`: labctl/monitoring.py). `queries()` lists every query
with its dashboard and panel, and `metric_names()` the metrics a PromQL query reads: the unit
tests parse every query with promtool, and the simulated lab checks that each metric is one an
exporter really exposes there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
# Grafana's own variables a query may hold; replaced by a plain value before parsing.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$host": ".*",
    "$model": ".*",
}


@dataclass(frozen=True)
class Panel:
    title: str
    queries: list[str]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | table | logs
    legend: str = ""
    width: int = 12
    height: int = 8
    description: str = ""
    datasource: dict[str, str] = field(default_factory=lambda: PROMETHEUS)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    # Template variables: name -> label whose values Prometheus knows (label_values(metric, label)).
    variables: dict[str, tuple[str, str]] = field(default_factory=dict)


HOST = {"host": ("up", "host")}
# The gateway's own health checks of its model copies are counted like requests: left out.
NOT_HEALTH = 'api_key_alias!="litellm-internal-health-check"'

DASHBOARDS = [
    Dashboard(
        "labctl-overview",
        "Lab overview",
        "Every machine and service of the catalog: up, load, memory, disk, alerts.",
        [
            Panel("Machines up", ['count(up{job="node_exporter"} == 1)'], kind="stat", width=6, height=4),
            Panel("Targets down", ["count(up == 0) or vector(0)"], kind="stat", width=6, height=4),
            Panel(
                "Failing health checks",
                ["count(probe_success == 0) or vector(0)"],
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "Firing alerts",
                ['count(ALERTS{alertstate="firing"}) or vector(0)'],
                kind="stat",
                width=6,
                height=4,
            ),
            Panel(
                "CPU busy",
                [
                    '1 - avg by (host) (rate(node_cpu_seconds_total{mode="idle", host=~"$host"}[$__rate_interval]))'
                ],
                unit="percentunit",
                legend="{{host}}",
            ),
            Panel(
                "Memory available",
                ['node_memory_MemAvailable_bytes{host=~"$host"} / node_memory_MemTotal_bytes{host=~"$host"}'],
                unit="percentunit",
                legend="{{host}}",
            ),
            Panel(
                "Disk free",
                [
                    'min by (host) (node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs", host=~"$host"}'
                    ' / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs", host=~"$host"})'
                ],
                unit="percentunit",
                legend="{{host}}",
            ),
            Panel(
                "Network received",
                [
                    'sum by (host) (rate(node_network_receive_bytes_total{device!="lo", host=~"$host"}[$__rate_interval]))'
                ],
                unit="Bps",
                legend="{{host}}",
            ),
            Panel(
                "Health checks",
                ['probe_success{host=~"$host"}'],
                kind="table",
                legend="{{service}}@{{host}}",
                width=24,
            ),
        ],
        HOST,
    ),
    Dashboard(
        "labctl-gpus",
        "GPUs",
        "The inference machines' cards: NVIDIA through the DCGM exporter, AMD through the ROCm device metrics exporter.",
        [
            Panel(
                "Temperature",
                ['DCGM_FI_DEV_GPU_TEMP{host=~"$host"}', 'gpu_junction_temperature{host=~"$host"}'],
                unit="celsius",
                legend="{{host}} {{gpu}}{{gpu_id}}",
            ),
            Panel(
                "Utilisation",
                ['DCGM_FI_DEV_GPU_UTIL{host=~"$host"} / 100', 'gpu_gfx_activity{host=~"$host"} / 100'],
                unit="percentunit",
                legend="{{host}} {{gpu}}{{gpu_id}}",
            ),
            Panel(
                "Memory in use",
                [
                    'DCGM_FI_DEV_FB_USED{host=~"$host"} / (DCGM_FI_DEV_FB_USED{host=~"$host"} + DCGM_FI_DEV_FB_FREE{host=~"$host"})',
                    'gpu_used_vram{host=~"$host"} / gpu_total_vram{host=~"$host"}',
                ],
                unit="percentunit",
                legend="{{host}} {{gpu}}{{gpu_id}}",
            ),
            Panel(
                "Power",
                ['DCGM_FI_DEV_POWER_USAGE{host=~"$host"}', 'gpu_package_power{host=~"$host"}'],
                unit="watt",
                legend="{{host}} {{gpu}}{{gpu_id}}",
            ),
        ],
        HOST,
    ),
    Dashboard(
        "labctl-gateway",
        "Gateway",
        "The LiteLLM gateway: requests, failures, latency and tokens per model and per copy (model@machine); its own health checks left out.",
        [
            Panel(
                "Requests per second by model",
                [
                    'sum by (requested_model) (rate(litellm_proxy_total_requests_metric_total{requested_model=~"$model"}[$__rate_interval]))'
                ],
                unit="reqps",
                legend="{{requested_model}}",
            ),
            Panel(
                "Failed requests per second",
                [
                    f"sum by (requested_model, exception_class) (rate(litellm_proxy_failed_requests_metric_total{{{NOT_HEALTH}}}[$__rate_interval]))"
                ],
                unit="reqps",
                legend="{{requested_model}}: {{exception_class}}",
            ),
            Panel(
                "Latency (p50, p95)",
                [
                    f"histogram_quantile(0.5, sum by (le) (rate(litellm_request_total_latency_metric_bucket{{{NOT_HEALTH}}}[$__rate_interval])))",
                    f"histogram_quantile(0.95, sum by (le) (rate(litellm_request_total_latency_metric_bucket{{{NOT_HEALTH}}}[$__rate_interval])))",
                ],
                unit="s",
                legend="",
            ),
            Panel(
                "Output tokens per second by model",
                [
                    f'sum by (model) (rate(litellm_output_tokens_metric_total{{model=~"$model", {NOT_HEALTH}}}[$__rate_interval]))'
                ],
                unit="short",
                legend="{{model}}",
            ),
            Panel(
                "Requests per copy",
                [
                    'sum by (model_id) (rate(litellm_deployment_total_requests_total{model_id!=""}[$__rate_interval]))'
                ],
                unit="reqps",
                legend="{{model_id}}",
            ),
            Panel(
                "Copy state (0 healthy, 1 partial outage, 2 cooled down)",
                ["max by (litellm_model_name, node) (litellm_deployment_state)"],
                kind="table",
                legend="{{litellm_model_name}}@{{node}}",
            ),
        ],
        {"model": ("litellm_proxy_total_requests_metric_total", "requested_model")},
    ),
    Dashboard(
        "labctl-postgres",
        "Databases",
        "PostgreSQL primary and replica, and Redis.",
        [
            Panel("PostgreSQL up", ["pg_up"], kind="stat", legend="{{service}}@{{host}}", width=6, height=4),
            Panel("Redis up", ["redis_up"], kind="stat", legend="{{host}}", width=6, height=4),
            Panel(
                "Replicas behind the primary",
                ["max by (host, application_name) (pg_stat_replication_pg_wal_lsn_diff)"],
                unit="bytes",
                legend="{{application_name}} behind {{host}}",
                width=12,
                height=4,
            ),
            Panel(
                "Connections by database",
                ["sum by (host, datname) (pg_stat_database_numbackends)"],
                legend="{{datname}}@{{host}}",
            ),
            Panel(
                "Transactions per second",
                ["sum by (host) (rate(pg_stat_database_xact_commit[$__rate_interval]))"],
                unit="ops",
                legend="{{host}}",
            ),
            Panel("Redis memory", ["redis_memory_used_bytes"], unit="bytes", legend="{{host}}"),
            Panel(
                "Redis commands per second",
                ["sum by (host) (rate(redis_commands_processed_total[$__rate_interval]))"],
                unit="ops",
                legend="{{host}}",
            ),
            Panel(
                "Last backup",
                ["time() - labctl_postgres_backup_last_success_timestamp_seconds"],
                unit="s",
                kind="stat",
                legend="{{type}}",
            ),
        ],
    ),
    Dashboard(
        "labctl-logs",
        "Logs",
        "Every container's and every machine's journal, from Loki.",
        [
            Panel(
                "Log lines per service",
                ['sum by (service) (count_over_time({host=~"$host"}[$__interval]))'],
                legend="{{service}}",
                width=24,
                datasource=LOKI,
            ),
            Panel(
                "Logs",
                ['{host=~"$host"}'],
                kind="logs",
                width=24,
                height=16,
                datasource=LOKI,
            ),
        ],
        HOST,
    ),
]


def _panel(panel: Panel, index: int, x: int, y: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": index + 1,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": panel.datasource,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": panel.datasource,
                "expr": query,
                "legendFormat": panel.legend,
            }
            for i, query in enumerate(panel.queries)
        ],
    }
    if panel.kind != "logs":
        body["fieldConfig"] = {"defaults": {"unit": panel.unit}, "overrides": []}
    return body


def build(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard's JSON model (Grafana's schema), panels laid out left to right, top down."""
    panels, x, y, row_height = [], 0, 0, 0
    for index, panel in enumerate(dashboard.panels):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel(panel, index, x, y))
        x, row_height = x + panel.width, max(row_height, panel.height)
    variables = [
        {
            "name": name,
            "type": "query",
            "datasource": PROMETHEUS,
            "query": {"query": f"label_values({metric}, {label})", "refId": "variable"},
            "definition": f"label_values({metric}, {label})",
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
            "refresh": 2,
        }
        for name, (metric, label) in dashboard.variables.items()
    ]
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["labctl"],
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": {"list": variables},
        "panels": panels,
    }


def all_dashboards(logs: bool = True) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON model, for roles/grafana; the logs dashboard only where there
    is a Loki to read them from."""
    return {
        f"{d.uid}.json": build(d)
        for d in DASHBOARDS
        if logs or not any(p.datasource is LOKI for p in d.panels)
    }


def queries() -> list[tuple[str, str, str, str]]:
    """(dashboard uid, panel title, datasource type, query) of every query."""
    return [
        (d.uid, p.title, p.datasource["type"], q) for d in DASHBOARDS for p in d.panels for q in p.queries
    ]


def concrete(query: str) -> str:
    """The query with Grafana's variables replaced by plain values (what Prometheus parses)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        query = query.replace(name, GRAFANA_VARIABLES[name])
    return query


# PromQL words that look like metric names: functions, aggregations, keywords.
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "by", "without", "on",
    "ignoring", "group_left", "group_right", "or", "and", "unless", "histogram_quantile", "time",
    "vector", "label_values", "offset", "bool", "topk", "bottomk", "abs", "clamp_min", "clamp_max",
    "count_over_time", "le", "inf", "nan",
}  # fmt: skip
_STRINGS = re.compile(r'"[^"]*"')
_LABEL_SETS = re.compile(r"\{[^}]*\}")
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_NAMES = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL query reads."""
    text = _STRINGS.sub("", concrete(query))
    text = _GROUPINGS.sub("", _RANGES.sub("", _LABEL_SETS.sub("", text)))
    return {name for name in _NAMES.findall(text) if name.lower() not in _PROMQL_WORDS}
