"""Filters that give plays the service catalog and inventory validation (labctl's Python code).

labctl's modules are imported inside each filter, not here: Ansible loads every filter plugin in
every forked worker that templates any filter, and importing the catalog (pydantic) costs about
0.2 CPU-seconds -- paid per task and machine if done at the top of this file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The filters run the same code as the labctl CLI; make it importable when labctl is not installed.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

if TYPE_CHECKING:
    from labctl.model import Lab


# The Lab of the last `hostvars` seen: a template that calls several filters (a compose file reads
# labctl_instance a dozen times) reads each variable once. Ansible gives each task its own
# `hostvars` object, so nothing carries over from one task to the next.
_LAST: list[tuple[Any, Lab]] = []


def _lab(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], with_files: bool = False) -> Lab:
    from labctl.inventory import _names
    from labctl.model import from_hostvars

    if not with_files:
        if _LAST and _LAST[0][0] is hostvars:
            return _LAST[0][1]
        lab = from_hostvars(hostvars, groups)
        _LAST[:] = [(hostvars, lab)]
        return lab
    dirs = set()
    for host in groups.get("all", []):
        try:
            directory = hostvars[host].get("inventory_dir")
        except Exception:  # noqa: S112 - a host without its magic variables has no inventory dir
            continue
        if directory:
            dirs.add(Path(str(directory)))
    return from_hostvars(
        hostvars,
        groups,
        host_vars_names=sorted({n for d in dirs for n in _names(d / "host_vars")}),
        group_vars_names=sorted({n for d in dirs for n in _names(d / "group_vars")}),
    )


def _tier_name(lab: Lab, tier: int | str | None) -> str | None:
    from labctl import schema

    if tier is None or (isinstance(tier, str) and not tier.isdigit()):
        return tier
    tiers = schema.platform(lab, lab.anchor or "").labctl_tiers
    index = int(tier) - 1
    return tiers[index] if 0 <= index < len(tiers) else f"<no tier {tier}>"


def labctl_catalog(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """Every enabled service instance, as dicts (see labctl.catalog.Instance)."""
    from labctl import catalog

    return [i.as_dict() for i in catalog.instances(_lab(hostvars, groups))]


def labctl_host_stacks(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str, tier: int | str | None = None
) -> list[dict[str, Any]]:
    """The catalog instances on one machine (of one tier: its 1-based position or its name)."""
    from labctl import catalog

    lab = _lab(hostvars, groups)
    return catalog.host_stacks(lab, host, _tier_name(lab, tier))


def labctl_instance(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str, service: str
) -> dict[str, Any]:
    """The catalog instance of one service on one machine (what its role deploys)."""
    from labctl import catalog

    for instance in catalog.host_stacks(_lab(hostvars, groups), host):
        if instance["service"] == service:
            return instance
    raise ValueError(f"the catalog does not place {service} on {host}")


def labctl_host_tiers(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str
) -> list[int]:
    """The tiers (1-based positions in labctl_tiers) in which a machine has stacks."""
    from labctl import catalog

    return catalog.host_tiers(_lab(hostvars, groups), host)


def labctl_consumer_stacks(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str, changed: Sequence[str]
) -> list[dict[str, Any]]:
    """Stacks on `host` whose configuration derives from services on the `changed` machines."""
    from labctl import catalog

    return catalog.consumer_stacks(_lab(hostvars, groups), host, [str(h) for h in changed])


def labctl_hosts_entries(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """The /etc/hosts lines every machine gets."""
    from labctl import catalog

    return catalog.hosts_entries(_lab(hostvars, groups))


def labctl_inventory_problems(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], secrets: bool = True
) -> list[str]:
    """Validation problems, one line each, naming host and variable; empty when sound. A playbook
    that checks secrets goes on to use them: they must also be readable."""
    from labctl import validate

    lab = _lab(hostvars, groups, with_files=True)
    return [str(p) for p in validate.validate(lab, secrets=secrets, decrypted=secrets)]


def labctl_health_report(
    observed: Mapping[str, Any], expected: Sequence[Mapping[str, Any]], host: str = "this machine"
) -> dict[str, Any]:
    """Judge one machine's health from what the health probe saw on it."""
    from labctl import health

    return health.judge(observed, expected, host)


def labctl_health_firewall(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str
) -> dict[str, str] | None:
    """What the health probe checks of the host firewall (none where it is off)."""
    from labctl import firewall

    return firewall.probe_spec(_lab(hostvars, groups), host)


def labctl_health_gpu(declared: Mapping[str, Any] | None, enabled: bool) -> dict[str, Any] | None:
    """What the health probe runs on a GPU machine (none without a GPU or with the check off)."""
    from labctl import gpu

    return gpu.probe_spec(dict(declared) if declared else None, bool(enabled))


def labctl_health_endpoints(instances: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the health probe tries for each catalog instance."""
    from labctl import health

    return health.endpoints(instances)


def labctl_sim_addresses(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], subnet: str
) -> dict[str, str]:
    """Each machine's address in the simulated lab's network (see labctl.sim.addresses)."""
    from labctl import sim

    return sim.addresses(_lab(hostvars, groups), subnet)


def labctl_sim_workstation(subnet: str) -> str:
    """The workstation's address in the simulated lab's network (see labctl.sim.workstation_address)."""
    from labctl import sim

    return sim.workstation_address(subnet)


def labctl_gpu_query(tool: str) -> list[str]:
    """The command line that makes a GPU tool (nvidia-smi, amd-smi, rocm-smi) list the cards."""
    from labctl import gpu

    return gpu.QUERIES[tool]


def labctl_gpu_check(
    host: str, declared: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The GPU preflight's verdict: the first tool that answered (a loop's registered results,
    `item` naming the tool), its cards against the declared `gpu`."""
    from labctl import gpu
    from labctl.model import plain

    answers = [
        {
            "tool": r.get("item"),
            "rc": r.get("rc"),
            "stdout": r.get("stdout", ""),
            "stderr": r.get("stderr", ""),
        }
        for r in results
    ]
    return gpu.check(host, plain(declared), plain(answers))


def labctl_host_models(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str, backend: str | None = None
) -> list[dict[str, Any]]:
    """The model copies labctl plan places on `host` (of one backend)."""
    from dataclasses import asdict

    from labctl import models

    return [asdict(d) for d in models.host_models(_lab(hostvars, groups), host, backend)]


def labctl_model_files(deployments: Sequence[Mapping[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """Each model copy with `file`: the name its weights have on the machine."""
    from labctl.models import file_name

    return [{**d, "file": file_name(str(d["model"]), suffix)} for d in deployments]


def labctl_gateway(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], external: str | None = None
) -> dict[str, Any]:
    """The gateway's model list (one route per placed model copy), fallbacks and shared state."""
    from labctl import gateway

    return gateway.view(_lab(hostvars, groups), external or None)


def labctl_webui(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The web UI's gateway, tool servers, database and embedding model."""
    from labctl import gateway

    return gateway.webui_view(_lab(hostvars, groups))


def labctl_monitoring(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str
) -> dict[str, Any]:
    """What the Prometheus on `host` scrapes and probes, and where it sends alerts."""
    from labctl import monitoring

    return monitoring.view(_lab(hostvars, groups), host)


def labctl_edge_names(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The names the HTTPS probes ask the edge for, and the edge machine's address."""
    from labctl import monitoring

    return monitoring.edge_names(_lab(hostvars, groups))


def labctl_grafana(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Grafana's datasources and database, from the catalog."""
    from labctl import monitoring

    return monitoring.grafana_view(_lab(hostvars, groups))


def labctl_logs(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Where the log shippers push (every Loki of the catalog)."""
    from labctl import monitoring

    return monitoring.log_view(_lab(hostvars, groups))


def labctl_edge(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str
) -> dict[str, Any]:
    """What the edge proxy on `host` routes, its certificate's names and admin allowlist, and the
    machines the catalog places the edge on (none: no certificate authority is needed)."""
    from labctl import edge

    return edge.view(_lab(hostvars, groups), host)


def labctl_firewall(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], host: str
) -> dict[str, Any]:
    """The host's firewall rules: per published port, the sources its allow_from admits."""
    from labctl import firewall

    return firewall.view(_lab(hostvars, groups), host)


def labctl_uptime_kuma(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], interval: int, retries: int
) -> dict[str, Any]:
    """Uptime Kuma's monitors: one per health endpoint other machines can reach."""
    from labctl import uptime

    return uptime.view(_lab(hostvars, groups), int(interval), int(retries))


def labctl_public_url(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]], service: str
) -> str | None:
    """The URL people use for a service through the edge (https://<route name>), or None."""
    from labctl import edge

    return edge.public_url(_lab(hostvars, groups), service)


def labctl_htpasswd(password: str, user: str, seed: str) -> str:
    """`user:bcrypt-hash` for a basic-auth users file; the same password gives the same line."""
    from labctl import edge
    from labctl.model import plain

    return edge.htpasswd(str(plain(password)), str(user), str(seed))


def labctl_traefik_problems(config: Any, kind: str) -> list[str]:
    """What Traefik's documented schema refuses in a rendered configuration (static or dynamic)."""
    from labctl import edge
    from labctl.model import plain

    return edge.schema_problems(plain(config), str(kind))


def labctl_dashboards(logs: bool = True) -> dict[str, dict[str, Any]]:
    """Grafana's dashboards (file name -> JSON model), built by labctl/dashboards.py."""
    from labctl import dashboards

    return dashboards.all_dashboards(bool(logs))


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "labctl_host_models": labctl_host_models,
            "labctl_gateway": labctl_gateway,
            "labctl_webui": labctl_webui,
            "labctl_monitoring": labctl_monitoring,
            "labctl_edge_names": labctl_edge_names,
            "labctl_dashboards": labctl_dashboards,
            "labctl_grafana": labctl_grafana,
            "labctl_logs": labctl_logs,
            "labctl_edge": labctl_edge,
            "labctl_firewall": labctl_firewall,
            "labctl_uptime_kuma": labctl_uptime_kuma,
            "labctl_public_url": labctl_public_url,
            "labctl_htpasswd": labctl_htpasswd,
            "labctl_traefik_problems": labctl_traefik_problems,
            "labctl_model_files": labctl_model_files,
            "labctl_gpu_query": labctl_gpu_query,
            "labctl_gpu_check": labctl_gpu_check,
            "labctl_catalog": labctl_catalog,
            "labctl_host_stacks": labctl_host_stacks,
            "labctl_host_tiers": labctl_host_tiers,
            "labctl_instance": labctl_instance,
            "labctl_consumer_stacks": labctl_consumer_stacks,
            "labctl_hosts_entries": labctl_hosts_entries,
            "labctl_inventory_problems": labctl_inventory_problems,
            "labctl_health_report": labctl_health_report,
            "labctl_health_endpoints": labctl_health_endpoints,
            "labctl_health_gpu": labctl_health_gpu,
            "labctl_health_firewall": labctl_health_firewall,
            "labctl_sim_addresses": labctl_sim_addresses,
            "labctl_sim_workstation": labctl_sim_workstation,
        }
