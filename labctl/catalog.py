"""The service catalog: every service instance in the lab, derived from the inventory.

`labctl_services` (group_vars/all/services.yml) says what a service is and which group runs it;
the inventory says which hosts are in that group and where they are. Everything that needs to
know "what runs where" -- /etc/hosts, health checks, and the later Prometheus targets, Traefik
routes, firewall rules and LiteLLM model list -- asks this module instead of keeping its own list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean

from labctl.model import Lab


@dataclass(frozen=True)
class Instance:
    """One service running on one host."""

    service: str
    host: str
    stack: str
    description: str
    image: str
    address: str
    fqdn: str
    ports: dict[str, int]
    url: str
    health_url: str | None
    metrics_url: str | None
    allow_from: list[str]
    allowed_hosts: list[str]
    secrets: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fqdn(lab: Lab, host: str) -> str:
    domain = str(lab.setting("labctl_domain", "home.arpa")).strip(".")
    return f"{host}.{domain}" if domain else host


def resolve_image(key: str, overrides: Mapping[str, Any], images: Mapping[str, Any]) -> str:
    """The pinned image for a labctl_images key: the host's override if it has one, else the catalog's."""
    if key in overrides:
        return str(overrides[key])
    image = images.get(key) or {}
    return f"{image.get('repository', '?')}:{image.get('tag', '?')}"


def image_ref(lab: Lab, host: str, key: str) -> str:
    return resolve_image(
        key, lab.var(host, "labctl_image_overrides", {}) or {}, lab.setting("labctl_images", {}) or {}
    )


def stack_enabled(lab: Lab, host: str, stack: str) -> bool:
    # Ansible's `| bool` rules, as compose_stack applies them: `-e x=false` arrives as "false".
    return bool(boolean(lab.var(host, f"{stack}_enabled", True), strict=False))


def _endpoint_url(base: str, ports: dict[str, int], spec: Any) -> str | None:
    if not isinstance(spec, dict) or spec.get("port") not in ports:
        return None
    return f"http://{base}:{ports[spec['port']]}{spec.get('path', '/')}"


def services(lab: Lab) -> dict[str, dict[str, Any]]:
    value = lab.setting("labctl_services", {})
    return value if isinstance(value, dict) else {}


def instances(lab: Lab, *, include_disabled: bool = False) -> list[Instance]:
    """Every service instance, in catalog order then inventory order.

    Disabled stacks (`<stack>_enabled: false` on a host) are left out unless asked for.
    """
    result: list[Instance] = []
    for name, spec in services(lab).items():
        if not isinstance(spec, dict):
            continue
        stack = str(spec.get("stack", name))
        ports = {str(k): int(v) for k, v in (spec.get("ports") or {}).items() if isinstance(v, int)}
        allow_from = [str(g) for g in spec.get("allow_from") or []]
        allowed_hosts = sorted({h for g in allow_from for h in lab.hosts_in(g)}, key=lab.all_hosts.index)
        for host in lab.hosts_in(str(spec.get("placement", ""))):
            if not include_disabled and not stack_enabled(lab, host, stack):
                continue
            name_fqdn = fqdn(lab, host)
            first_port = next(iter(ports.values()), None)
            result.append(
                Instance(
                    service=name,
                    host=host,
                    stack=stack,
                    description=str(spec.get("description", "")),
                    image=image_ref(lab, host, str(spec.get("image", name))),
                    address=str(lab.var(host, "lab_address", "")),
                    fqdn=name_fqdn,
                    ports=ports,
                    url=f"http://{name_fqdn}:{first_port}" if first_port else f"http://{name_fqdn}",
                    health_url=_endpoint_url(name_fqdn, ports, spec.get("health")),
                    metrics_url=_endpoint_url(name_fqdn, ports, spec.get("metrics")),
                    allow_from=allow_from,
                    allowed_hosts=allowed_hosts,
                    secrets=[str(s) for s in spec.get("secrets") or []],
                )
            )
    return result


def hosts_entries(lab: Lab) -> list[dict[str, Any]]:
    """Lines for /etc/hosts: every host with an address, its FQDN and short name, plus the DNS
    aliases of single-instance services. Same order on every machine, so the block is identical."""
    aliases: dict[str, list[str]] = {}
    for name, spec in services(lab).items():
        alias = spec.get("alias") if isinstance(spec, dict) else None
        placed = [i.host for i in instances(lab) if i.service == name]
        if alias and len(placed) == 1:
            aliases.setdefault(placed[0], []).append(fqdn(lab, str(alias)))
    entries = []
    for host in lab.all_hosts:
        address = lab.var(host, "lab_address", None)
        if not address:
            continue
        names = [fqdn(lab, host), host, *aliases.get(host, [])]
        entries.append({"address": str(address), "host": host, "names": names})
    return entries


def placement_markdown(lab: Lab) -> str:
    """The placement table of docs/architecture.md: machine, tier, roles (groups), services."""
    tiers = [str(t) for t in lab.setting("labctl_tiers", []) or []]
    skip = {"all", "ungrouped", "lab", *tiers}
    by_host: dict[str, list[str]] = {h: [] for h in lab.managed}
    for inst in instances(lab):
        ports = ", ".join(str(p) for p in inst.ports.values())
        by_host.setdefault(inst.host, []).append(f"{inst.service} ({ports})" if ports else inst.service)
    lines = ["| machine | address | tier | groups | services (ports) |", "|---|---|---|---|---|"]
    for host, placed in by_host.items():
        tier = next((t.removeprefix("tier_") for t in tiers if host in lab.hosts_in(t)), "-")
        groups = ", ".join(sorted(g for g in lab.group_names(host) if g not in skip))
        address = lab.var(host, "lab_address", "")
        lines.append(f"| {host} | {address} | {tier} | {groups} | {', '.join(placed) or '-'} |")
    return "\n".join(lines) + "\n"
