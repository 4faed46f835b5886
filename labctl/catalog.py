"""The service catalog: every service instance in the lab, derived from the inventory.

`labctl_services` (group_vars/all/services.yml) says what a service is, in which deployment tier
it goes out and which group runs it; the inventory says which hosts are in that group and where
they are. One name per service: the catalog key is also its compose stack, its role
(`roles/<name>`), its image key, its stand-in recipe (`sim/images/<name>`) and its lab test
(`tests/lab/test_<name>.py`). Everything that needs to know "what runs where" -- the deploy's
dispatcher, /etc/hosts, health checks, and later Prometheus targets, Traefik routes, firewall
rules and the LiteLLM model list -- asks this module instead of keeping its own list.

Call it on an inventory that passed labctl.schema (labctl.validate runs that first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from labctl import models, schema
from labctl.model import VAULTED, Lab

LOOPBACK = "127.0.0.1"
# The service people's HTTPS requests come through: the names of the services it routes
# (catalog `route`, labctl/edge.py) resolve to its machine.
EDGE_PROXY = "traefik"


@dataclass(frozen=True)
class Instance:
    """One service running on one host."""

    service: str
    host: str
    tier: str
    description: str
    image: str
    image_key: str
    address: str
    fqdn: str
    network: str
    # Where its published ports listen: the lab address when other machines may connect
    # (allow_from), loopback when only the machine itself uses it.
    bind_address: str
    ports: dict[str, int]
    url: str
    health: dict[str, Any] | None
    health_url: str | None
    metrics_url: str | None
    allow_from: list[str]
    allowed_hosts: list[str]
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    consumes: list[str] = field(default_factory=list)
    gpu: dict[str, Any] | None = None
    serves: str | None = None
    # The stack's other images (labctl_images key -> the pinned image this host runs).
    helpers: dict[str, str] = field(default_factory=dict)

    @property
    def stack(self) -> str:
        return self.service

    def health_endpoint(self) -> dict[str, Any] | None:
        """What a prober on another machine checks: the health URL (`kind: http`) where the
        catalog gives a path, else the health port (`kind: tcp`: a command checks it inside the
        container); none without a health check."""
        if not self.health:
            return None
        port = self.ports[self.health["port"]]
        if "path" in self.health:
            return {"kind": "http", "url": f"http://{self.address}:{port}{self.health['path']}"}
        return {"kind": "tcp", "address": self.address, "port": port}

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stack": self.stack}


def fqdn(domain: str, host: str) -> str:
    domain = domain.strip(".")
    return f"{host}.{domain}" if domain else host


def image_key(spec: schema.ServiceSpec, service: str, vendor: str | None) -> str:
    """The labctl_images key a host runs: per GPU vendor where the catalog says so."""
    if spec.image is None:
        return service
    if isinstance(spec.image, str):
        return spec.image
    choice = spec.image.get(vendor) if vendor in ("nvidia", "amd") else None  # type: ignore[call-overload]
    return str(choice or spec.image.get("default") or service)


def resolve_image(key: str, overrides: dict[str, str], images: dict[str, schema.ImageSpec]) -> str:
    """The pinned image for a labctl_images key: the host's override if it has one, else the catalog's."""
    if key in overrides:
        return overrides[key]
    image = images.get(key)
    return image.ref if image else f"{key}:?"


def route_name(service: str, spec: schema.ServiceSpec) -> str:
    """The name (left of labctl_domain) people reach a routed service by: the route's own name,
    else the service's alias, else its name."""
    if spec.route is not None and spec.route.name:
        return spec.route.name
    return spec.alias or service.replace("_", "-")


def stack_enabled(lab: Lab, host: str, stack: str) -> bool:
    value = lab.var(host, f"{stack}_enabled", True)
    try:
        return schema.toggle(value)
    except ValueError:
        return False  # refused by validation; never deploy on a value nobody can read


def _gpu(lab: Lab, host: str, settings: schema.Platform) -> dict[str, Any] | None:
    gpu = lab.var(host, "gpu", None)
    if not isinstance(gpu, dict):
        return None
    passthrough = schema.toggle(lab.var(host, "labctl_gpu_passthrough", settings.labctl_gpu_passthrough))
    return {
        "vendor": gpu.get("vendor"),
        "model": gpu.get("model"),
        "count": gpu.get("count", 1),
        # None: the groups that own the devices on the machine (gpu_rocm), else video and render.
        "groups": gpu.get("groups"),
        "env": gpu.get("env", {}),
        "passthrough": passthrough,
        # NVIDIA: the cards through CDI instead of the nvidia runtime (roles/gpu_nvidia).
        "cdi": schema.toggle(lab.var(host, "gpu_nvidia_cdi", False)),
    }


def _endpoint_url(base: str, ports: dict[str, int], port: str | None, path: str | None) -> str | None:
    if port not in ports or path is None:
        return None
    return f"http://{base}:{ports[port]}{path}"


def settings_of(lab: Lab, host: str) -> schema.Platform:
    """The platform's settings as `host` sees them, read and checked once per inventory load."""
    key = f"platform:{host}"
    if key not in lab.memo:
        lab.memo[key] = schema.platform(lab, host)
    return lab.memo[key]  # type: ignore[no-any-return]


def instances(
    lab: Lab,
    *,
    include_disabled: bool = False,
    hosts: list[str] | None = None,
    services: list[str] | None = None,
) -> list[Instance]:
    """Every service instance (of `services`, on `hosts`, if given), in catalog order then
    inventory order.

    Disabled stacks (`<stack>_enabled: false` on a host) are left out unless asked for; an
    inference engine (`serves`) runs only where labctl plan places models it serves.
    """
    anchor = lab.anchor
    if anchor is None:
        return []
    settings = settings_of(lab, anchor)
    managed = set(lab.managed)
    result: list[Instance] = []
    # A service moved off its group (labctl db promote/rejoin) takes its group's access with it:
    # the machines it runs on now are admitted wherever its placement group is.
    moved: dict[str, set[str]] = {}
    for name, spec in settings.labctl_services.items():
        if (overridden := settings.labctl_placement_overrides.get(name)) is not None:
            moved.setdefault(spec.placement, set()).update(overridden)
    for name, spec in settings.labctl_services.items():
        if services is not None and name not in services:
            continue
        allowed_hosts = [
            h
            for h in lab.all_hosts
            if any(h in lab.hosts_in(g) or h in moved.get(g, ()) for g in spec.allow_from)
        ]
        health = spec.health.model_dump(exclude_none=True) if spec.health else None
        overridden = settings.labctl_placement_overrides.get(name)
        placed = lab.ordered(overridden) if overridden is not None else lab.hosts_in(spec.placement)
        for host in placed:
            if host not in managed or (hosts is not None and host not in hosts):
                continue
            if not include_disabled and not stack_enabled(lab, host, name):
                continue
            if spec.serves and not models.host_models(lab, host, spec.serves):
                continue  # an engine with no model placed here
            host_settings = settings_of(lab, host)
            address = str(lab.var(host, "lab_address", ""))
            name_fqdn = fqdn(host_settings.labctl_domain, host)
            gpu = _gpu(lab, host, host_settings) if spec.gpu else None
            key = image_key(spec, name, (gpu or {}).get("vendor") or _vendor(lab, host))
            first_port = next(iter(spec.ports.values()), None)
            result.append(
                Instance(
                    service=name,
                    host=host,
                    tier=spec.tier,
                    description=spec.description,
                    image=resolve_image(
                        key, host_settings.labctl_image_overrides, host_settings.labctl_images
                    ),
                    image_key=key,
                    address=address,
                    fqdn=name_fqdn,
                    network=spec.network,
                    bind_address=address if spec.allow_from else LOOPBACK,
                    ports=dict(spec.ports),
                    url=f"http://{name_fqdn}:{first_port}" if first_port else f"http://{name_fqdn}",
                    health=health,
                    health_url=_endpoint_url(
                        name_fqdn,
                        spec.ports,
                        spec.health.port if spec.health else None,
                        spec.health.path if spec.health else None,
                    ),
                    metrics_url=_endpoint_url(
                        name_fqdn,
                        spec.ports,
                        spec.metrics.port if spec.metrics else None,
                        spec.metrics.path if spec.metrics else None,
                    ),
                    allow_from=list(spec.allow_from),
                    allowed_hosts=allowed_hosts,
                    secrets={k: v.model_dump() for k, v in spec.secrets.items()},
                    consumes=list(spec.consumes),
                    gpu=gpu,
                    serves=spec.serves,
                    helpers={
                        helper: resolve_image(
                            helper, host_settings.labctl_image_overrides, host_settings.labctl_images
                        )
                        for helper in spec.helpers
                    },
                )
            )
    return result


def placed_on(lab: Lab, service: str) -> list[str]:
    """The machines the catalog places a service on (enabled instances)."""
    return [i.host for i in instances(lab, services=[service])]


def placement_overrides(lab: Lab, changes: dict[str, list[str]]) -> dict[str, list[str]]:
    """The placement overrides (labctl_placement_overrides) with `changes` applied; a service
    placed as its group says needs none."""
    anchor = lab.anchor
    current = dict(settings_of(lab, anchor).labctl_placement_overrides) if anchor else {}
    current.update(changes)
    return {name: hosts for name, hosts in current.items() if hosts != group_hosts(lab, name)}


def group_hosts(lab: Lab, service: str) -> list[str]:
    """The machines of a service's placement group (what it runs on without an override)."""
    anchor = lab.anchor
    spec = settings_of(lab, anchor).labctl_services.get(service) if anchor else None
    return lab.hosts_in(spec.placement) if spec else []


def _vendor(lab: Lab, host: str) -> str | None:
    gpu = lab.var(host, "gpu", None)
    return str(gpu.get("vendor")) if isinstance(gpu, dict) and gpu.get("vendor") else None


def host_stacks(lab: Lab, host: str, tier: str | None = None) -> list[dict[str, Any]]:
    """The instances on one host (in catalog order), optionally of one tier: what the deploy's
    dispatcher includes, each with the secrets' values it needs for the stack's .env."""
    result = []
    for inst in instances(lab, hosts=[host]):
        if tier is not None and inst.tier != tier:
            continue
        result.append(inst.as_dict())
    return result


def tiers(lab: Lab) -> list[str]:
    """The deployment tiers, in order (labctl_tiers)."""
    anchor = lab.anchor
    return list(settings_of(lab, anchor).labctl_tiers) if anchor else []


def host_tiers(lab: Lab, host: str) -> list[int]:
    """The deployment tiers (1-based positions in labctl_tiers) in which a host has stacks."""
    anchor = lab.anchor
    if anchor is None:
        return []
    tiers = settings_of(lab, anchor).labctl_tiers
    return sorted({tiers.index(i.tier) + 1 for i in instances(lab, hosts=[host]) if i.tier in tiers})


def secret_env(name: str) -> str:
    """The .env variable a secret reaches its stack as: redis_password -> REDIS_PASSWORD."""
    return name.upper()


def declared_secrets(lab: Lab) -> dict[str, dict[str, Any]]:
    """Every secret the catalog declares (name -> form), with the services that use it."""
    anchor = lab.anchor
    if anchor is None:
        return {}
    found: dict[str, dict[str, Any]] = {}
    for name, spec in settings_of(lab, anchor).labctl_services.items():
        for secret, form in spec.secrets.items():
            entry = found.setdefault(secret, {**form.model_dump(), "services": []})
            entry["services"].append(name)
    return found


def consumers(lab: Lab, hosts: list[str], *, names_changed: bool = True) -> list[str]:
    """Machines (outside `hosts`) whose derived configuration names these hosts. When the lab's
    names changed (a machine added or readdressed, a service's alias moved), that is every machine:
    each one's /etc/hosts lists them all. Otherwise, the machines with stacks that consume a service
    placed on these hosts (Prometheus targets, the gateway's model list, ...)."""
    others = [h for h in lab.managed if h not in hosts]
    if names_changed:
        return others
    return [h for h in others if consumer_stacks(lab, h, hosts)]


def consumer_stacks(lab: Lab, host: str, changed_hosts: list[str]) -> list[dict[str, Any]]:
    """Stacks on `host` that derive their configuration from services on `changed_hosts`, and
    its inference engines when an inference machine changed (the model placement is computed over
    all of them: a new machine can take a copy over from another)."""
    placed = {i.service for i in instances(lab, hosts=changed_hosts)}
    replanned = any(h in lab.hosts_in("inference") for h in changed_hosts)
    return [
        i.as_dict()
        for i in instances(lab, hosts=[host])
        if "*" in i.consumes or placed & set(i.consumes) or (replanned and i.serves)
    ]


def hosts_entries(lab: Lab) -> list[dict[str, Any]]:
    """Lines for /etc/hosts: every host with an address, its FQDN and short name, plus the DNS
    aliases of single-instance services. Where the catalog places the edge proxy, the names of the
    services it routes are the edge machine's (the first one's, if several): people's HTTPS
    requests go there, and a routed service's alias is its route's name unless the route names
    another. Same order on every machine, so the block is identical."""
    anchor = lab.anchor
    if anchor is None:
        return []
    settings = settings_of(lab, anchor)
    aliases: dict[str, list[str]] = {}
    aliased = [name for name, spec in settings.labctl_services.items() if spec.alias or spec.route]
    placed_all = instances(lab, services=[*aliased, EDGE_PROXY]) if aliased else []
    edge = next((i.host for i in placed_all if i.service == EDGE_PROXY), None)
    for name, spec in settings.labctl_services.items():
        placed = [i.host for i in placed_all if i.service == name]
        routed = route_name(name, spec) if edge and spec.route and placed else None
        if spec.alias and len(placed) == 1 and spec.alias != routed:
            aliases.setdefault(placed[0], []).append(fqdn(settings.labctl_domain, spec.alias))
        if edge and routed:
            aliases.setdefault(edge, []).append(fqdn(settings.labctl_domain, routed))
    entries = []
    for host in lab.all_hosts:
        address = lab.var(host, "lab_address", None)
        if not address or address is VAULTED:
            continue
        names = [fqdn(settings.labctl_domain, host), host, *aliases.get(host, [])]
        entries.append({"address": str(address), "host": host, "names": names})
    return entries


def placement_markdown(lab: Lab) -> str:
    """The placement table of docs/architecture.md: machine, groups, services by tier."""
    anchor = lab.anchor
    tiers = settings_of(lab, anchor).labctl_tiers if anchor else []
    by_host: dict[str, list[str]] = {h: [] for h in lab.managed}
    for inst in sorted(instances(lab), key=lambda i: tiers.index(i.tier) if i.tier in tiers else 99):
        ports = ", ".join(str(p) for p in inst.ports.values())
        by_host.setdefault(inst.host, []).append(
            f"{inst.service} ({inst.tier}{': ' + ports if ports else ''})"
        )
    lines = ["| machine | address | groups | services (tier: ports) |", "|---|---|---|---|"]
    for host, placed in by_host.items():
        groups = ", ".join(sorted(g for g in lab.group_names(host) if g != "lab"))
        address = lab.var(host, "lab_address", "")
        lines.append(f"| {host} | {address} | {groups} | {', '.join(placed) or '-'} |")
    return "\n".join(lines) + "\n"
