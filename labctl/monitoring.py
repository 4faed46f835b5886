"""What the monitoring tier watches, derived from the service catalog.

Prometheus scrapes every catalog instance whose service declares `metrics`, one job per service;
the blackbox exporter probes every health endpoint (HTTP where the catalog gives a path, a TCP
connect where the health check is a command inside the container) that the monitoring machines
may reach (the service's `allow_from` names their group); Prometheus sends its alerts to every
Alertmanager instance. The targets go to Prometheus as file-based service discovery, so a new
machine or service appears with no edit to its configuration.

Every target carries the labels the alert rules and dashboards group by: `instance` and `host`
(the machine's inventory name, not an address), `service` (the catalog's name) and, for an
inference engine's health endpoint, `kind: inference`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from labctl import catalog
from labctl.model import VAULTED, Lab, Problem, address

# The service whose instances probe health endpoints, and the one that receives alerts.
PROBER = "blackbox"
ALERT_RECEIVER = "alertmanager"


def _labels(inst: catalog.Instance) -> dict[str, str]:
    labels = {"instance": inst.host, "host": inst.host, "service": inst.service}
    if inst.serves:
        labels["kind"] = "inference"
    return labels


def node_relabels(lab: Lab, consumes: list[str]) -> list[dict[str, Any]]:
    """For a service that talks to inference engines (the gateway): its metrics name each model
    copy by the engine's `api_base` URL; these rules add the engine's machine as label `node`."""
    engines = [i for i in catalog.instances(lab) if i.serves and i.service in consumes]
    return [
        {
            "source_labels": ["api_base"],
            "regex": f"https?://{re.escape(i.address)}:[0-9]+(/.*)?",
            "target_label": "node",
            "replacement": i.host,
        }
        for i in sorted(engines, key=lambda i: (i.host, i.service))
    ]


def scrape_jobs(lab: Lab) -> list[dict[str, Any]]:
    """One job per service with `metrics`, in catalog order: its path, its targets (as a
    file_sd list: one group per instance, `address:port` with the instance's labels) and the
    rules that name model copies by machine (`relabel`, for the gateway)."""
    anchor = lab.anchor
    if anchor is None:
        return []
    specs = catalog.settings_of(lab, anchor).labctl_services
    jobs: dict[str, dict[str, Any]] = {}
    for inst in catalog.instances(lab):
        metrics = specs[inst.service].metrics
        if metrics is None:
            continue
        job = jobs.setdefault(
            inst.service,
            {
                "job": inst.service,
                "path": metrics.path,
                "targets": [],
                "relabel": node_relabels(lab, inst.consumes),
            },
        )
        job["targets"].append(
            {"targets": [f"{inst.address}:{inst.ports[metrics.port]}"], "labels": _labels(inst)}
        )
    return list(jobs.values())


def probes(lab: Lab) -> dict[str, list[dict[str, Any]]]:
    """The blackbox exporter's targets, by module: `http` (the health URL) and `tcp` (the health
    port of a service checked by a command). A service the monitoring machines may not reach
    (its allow_from leaves their group out) is not probed."""
    probers = {i.host for i in catalog.instances(lab, services=[PROBER])}
    result: dict[str, list[dict[str, Any]]] = {"http": [], "tcp": []}
    if not probers:
        return result
    for inst in catalog.instances(lab):
        if (endpoint := inst.health_endpoint()) is None or not probers <= set(inst.allowed_hosts):
            continue
        if endpoint["kind"] == "http":
            target = endpoint["url"]
        else:
            target = f"{endpoint['address']}:{endpoint['port']}"
        result[endpoint["kind"]].append({"targets": [target], "labels": _labels(inst)})
    return result


def _probed_edge(lab: Lab) -> catalog.Instance | None:
    """The edge the HTTPS probes go through: none where the catalog places no edge or no prober."""
    edges = catalog.instances(lab, services=[catalog.EDGE_PROXY])
    return edges[0] if edges and catalog.instances(lab, services=[PROBER]) else None


def edge_probes(lab: Lab) -> list[dict[str, Any]]:
    """Every route of the edge (labctl/edge.py), probed by HTTPS through the edge as people reach
    it: the route's name, the lab CA's certificate, the service's health path where it is on the
    routed port (else /). What answers is the edge: labels `service` traefik and `host` its
    machine (the certificate CertificateExpiring watches is its), `route` and `instance` the
    route's name. Left out: the dashboard (basic auth), and the admin routes where the
    prober's machine is outside the admin allowlist (they would answer it 403)."""
    from labctl import edge

    if (proxy := _probed_edge(lab)) is None:
        return []
    allowed = [ipaddress.ip_network(n) for n in edge.admin_allow_from(lab, proxy.host)]
    probers = [a for h in catalog.instances(lab, services=[PROBER]) if (a := address(lab, h.host))]
    admitted = all(any(a in n for n in allowed) for a in probers)
    return [
        {
            "targets": [f"https://{route['name']}{route['health'] or '/'}"],
            "labels": {
                "instance": route["name"],
                "host": proxy.host,
                "service": proxy.service,
                "route": route["name"],
            },
        }
        for route in edge.routes(lab)
        if admitted or not route["admin"]
    ]


def edge_names(lab: Lab) -> dict[str, str]:
    """Each name the HTTPS probes ask for -> the edge machine's address (the prober's container
    has its own /etc/hosts: these go in it)."""
    proxy = _probed_edge(lab)
    return {group["labels"]["instance"]: proxy.address for group in edge_probes(lab)} if proxy else {}


def unprobed(lab: Lab) -> list[str]:
    """`service@host` of every health endpoint the probes leave out (the monitoring machines may
    not reach it)."""
    probed = {
        (group["labels"]["service"], group["labels"]["host"])
        for groups in probes(lab).values()
        for group in groups
    }
    return [
        f"{i.service}@{i.host}"
        for i in catalog.instances(lab)
        if i.health and (i.service, i.host) not in probed
    ]


def alertmanagers(lab: Lab) -> list[dict[str, Any]]:
    """Where Prometheus sends its alerts (file_sd list)."""
    return [
        {"targets": [f"{i.address}:{i.ports['web']}"], "labels": _labels(i)}
        for i in catalog.instances(lab, services=[ALERT_RECEIVER])
    ]


def view(lab: Lab, host: str) -> dict[str, Any]:
    """Everything the Prometheus on `host` renders: its scrape jobs, the probes, the blackbox
    exporter it asks (the one on its own machine if there is one), the Alertmanagers, its
    file_sd files (`targets`: file name -> target groups) and how many database replicas the
    catalog places (the primary should see them all streaming)."""
    prober = catalog.instances(lab, services=[PROBER])
    local = [i for i in prober if i.host == host] or prober
    blackbox = f"{local[0].address}:{local[0].ports['probe']}" if local else None
    jobs = scrape_jobs(lab)
    found = probes(lab) if blackbox else {"http": [], "tcp": []}
    found["https"] = edge_probes(lab) if blackbox else []
    receivers = alertmanagers(lab)
    return {
        "jobs": jobs,
        "probes": found,
        "blackbox": blackbox,
        "alertmanagers": receivers,
        "targets": {
            **{job["job"]: job["targets"] for job in jobs},
            **{f"probe_{module}": groups for module, groups in found.items()},
            "alertmanagers": receivers,
        },
        "replicas": len(catalog.instances(lab, services=["postgres_replica"])),
    }


def _url(inst: catalog.Instance | None, port: str) -> str | None:
    return f"http://{inst.address}:{inst.ports[port]}" if inst else None


def grafana_view(lab: Lab) -> dict[str, Any]:
    """Grafana's datasources (None where the catalog places no such service) and its database."""
    first = {
        name: next(iter(catalog.instances(lab, services=[name])), None)
        for name in ("prometheus", "alertmanager", "loki", "postgres")
    }
    postgres = first["postgres"]
    return {
        "prometheus": _url(first["prometheus"], "web"),
        "alertmanager": _url(first["alertmanager"], "web"),
        "loki": _url(first["loki"], "http"),
        "postgres": f"{postgres.address}:{postgres.ports['postgres']}" if postgres else None,
    }


def log_view(lab: Lab) -> dict[str, Any]:
    """Where every machine's log shipper (Alloy) pushes: each Loki the catalog places."""
    return {
        "push": [
            f"{_url(inst, 'http')}/loki/api/v1/push" for inst in catalog.instances(lab, services=["loki"])
        ]
    }


def log_problems(lab: Lab) -> list[Problem]:
    """Log shippers with nowhere to ship to."""
    shippers = catalog.instances(lab, services=["alloy"])
    if shippers and not log_view(lab)["push"]:
        return [
            Problem(
                "all",
                "labctl_services.alloy",
                f"Alloy runs on {', '.join(sorted(i.host for i in shippers))} but no machine runs Loki "
                "(its placement group is empty or loki_enabled is false): switch Alloy off too "
                "(alloy_enabled: false) or place Loki",
            )
        ]
    return []


# What each Alertmanager receiver needs (roles/alertmanager), and which of those are secrets.
RECEIVER_NEEDS: dict[str, tuple[str, ...]] = {
    "webhook": ("alertmanager_webhook_url",),
    "email": (
        "alertmanager_email_to",
        "alertmanager_smtp_from",
        "alertmanager_smtp_smarthost",
        "alertmanager_smtp_password",
    ),
    "ntfy": ("alertmanager_ntfy_url",),
}


def receiver_problems(lab: Lab) -> list[Problem]:
    """Every receiver an Alertmanager machine names without what it needs; a secret in a vault
    that could not be read counts as present."""
    result = []
    for inst in catalog.instances(lab, services=[ALERT_RECEIVER]):
        chosen = lab.var(inst.host, "alertmanager_receivers", [])
        for receiver in chosen if isinstance(chosen, list) else []:
            for variable in RECEIVER_NEEDS.get(str(receiver), ()):
                value = lab.var(inst.host, variable, "")
                if value is VAULTED or (isinstance(value, str) and value.strip()):
                    continue
                how = (
                    f"a secret: labctl init --set {variable}"
                    if variable in inst.secrets
                    else "a variable of the inventory"
                )
                result.append(
                    Problem(
                        inst.host,
                        variable,
                        f"alertmanager_receivers names {receiver}, which needs it ({how})",
                    )
                )
    return result
