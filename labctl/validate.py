"""Inventory validation: every rule a bad inventory can break, checked before any host is touched.

Each problem names the host (or `all` for platform-wide settings) and the variable to fix. The
same function runs offline in `labctl validate` and as the first play of every playbook.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from labctl import catalog
from labctl.model import Lab

HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
GROUP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DOMAIN = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SECRET_PLACEHOLDERS = {"", "changeme", "change-me", "todo", "xxx"}


@dataclass(frozen=True, order=True)
class Problem:
    host: str
    variable: str
    message: str

    def __str__(self) -> str:
        return f"host '{self.host}', variable '{self.variable}': {self.message}"


def validate(lab: Lab) -> list[Problem]:
    """All problems found, in a stable order; empty when the inventory is sound."""
    problems: list[Problem] = []
    for check in (_names, _addresses, _domain, _tiers, _gpus, _databases, _images, _services, _models):
        problems.extend(check(lab))
    return problems


def _names(lab: Lab) -> Iterator[Problem]:
    for host in lab.all_hosts:
        if not HOST_NAME.match(host):
            yield Problem(
                host, "inventory_hostname", "not a valid host name (lowercase letters, digits and '-')"
            )
    for group in lab.groups:
        if group not in ("all", "ungrouped") and not GROUP_NAME.match(group):
            yield Problem(
                "all", f"groups.{group}", "not a valid group name (lowercase letters, digits and '_')"
            )


def _addresses(lab: Lab) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for host in lab.all_hosts:
        value = lab.var(host, "lab_address", None)
        if value in (None, ""):
            if host in lab.managed or host in lab.hosts_in("nas"):
                yield Problem(host, "lab_address", "is not set; every lab machine needs its address")
            continue
        try:
            address = str(ipaddress.ip_address(str(value)))
        except ValueError:
            yield Problem(host, "lab_address", f"'{value}' is not an IP address")
            continue
        if address in seen:
            yield Problem(host, "lab_address", f"{address} is also the address of '{seen[address]}'")
        else:
            seen[address] = host


def _domain(lab: Lab) -> Iterator[Problem]:
    domain = lab.setting("labctl_domain", None)
    if not isinstance(domain, str) or not DOMAIN.match(domain):
        yield Problem("all", "labctl_domain", f"'{domain}' is not a valid DNS domain")
    elif domain.endswith("local"):
        yield Problem("all", "labctl_domain", "'.local' belongs to mDNS; use a name under home.arpa")


def _tiers(lab: Lab) -> Iterator[Problem]:
    tiers = lab.setting("labctl_tiers", [])
    if not isinstance(tiers, list) or not tiers:
        yield Problem("all", "labctl_tiers", "must list the deployment tiers in order")
        return
    for tier in tiers:
        if tier not in lab.groups:
            yield Problem("all", "labctl_tiers", f"tier group '{tier}' is not in the inventory")
    for host in lab.managed:
        member_of = [t for t in tiers if host in lab.hosts_in(t)]
        if len(member_of) != 1:
            where = ", ".join(member_of) if member_of else "none"
            yield Problem(
                host, "labctl_tiers", f"must be in exactly one deployment tier group (is in: {where})"
            )


def _gpus(lab: Lab) -> Iterator[Problem]:
    vendors = [str(v) for v in lab.setting("labctl_gpu_vendors", []) or []]
    for host in lab.hosts_in("inference"):
        gpu = lab.var(host, "gpu", None)
        if not isinstance(gpu, dict):
            yield Problem(
                host, "gpu", "inference nodes must declare their GPU (vendor, model, vram_gb, count)"
            )
            continue
        vendor = gpu.get("vendor")
        if vendor not in vendors:
            yield Problem(host, "gpu.vendor", f"unknown GPU vendor '{vendor}' (known: {', '.join(vendors)})")
        elif host not in lab.hosts_in(f"gpu_{vendor}"):
            yield Problem(host, "gpu.vendor", f"is '{vendor}' but the host is not in group 'gpu_{vendor}'")
        if not isinstance(gpu.get("model"), str) or not gpu.get("model"):
            yield Problem(host, "gpu.model", "must name the GPU model")
        vram = gpu.get("vram_gb")
        if isinstance(vram, bool) or not isinstance(vram, int | float) or vram <= 0:
            yield Problem(host, "gpu.vram_gb", f"must be a positive number of GiB per card, not '{vram}'")
        count = gpu.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            yield Problem(host, "gpu.count", f"must be a whole number of cards (1 or more), not '{count}'")
    for vendor in vendors:
        for host in lab.hosts_in(f"gpu_{vendor}"):
            if host not in lab.hosts_in("inference"):
                yield Problem(host, "groups", f"is in 'gpu_{vendor}' but not in 'inference'")


def _databases(lab: Lab) -> Iterator[Problem]:
    primaries = lab.hosts_in("db_primary")
    replicas = lab.hosts_in("db_replica")
    if len(primaries) > 1:
        for host in primaries:
            yield Problem(host, "db_primary", f"only one primary is allowed; found {', '.join(primaries)}")
    if replicas and not primaries:
        for host in replicas:
            yield Problem(host, "db_replica", "a replica needs a primary, and group 'db_primary' is empty")
    for host in set(primaries) & set(replicas):
        yield Problem(host, "db_replica", "a host cannot be both primary and replica")


def _pinned(ref: str) -> bool:
    name, _, tag = ref.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def _images(lab: Lab) -> Iterator[Problem]:
    images = lab.setting("labctl_images", {})
    if not isinstance(images, dict):
        yield Problem("all", "labctl_images", "must map image keys to {repository, tag}")
        return
    for key, image in images.items():
        if not isinstance(image, dict) or not image.get("repository"):
            yield Problem("all", f"labctl_images.{key}.repository", "is missing")
        elif str(image.get("tag", "")) in ("", "latest"):
            yield Problem("all", f"labctl_images.{key}.tag", "must pin a version (not empty, not 'latest')")
    for host in lab.managed:
        overrides = lab.var(host, "labctl_image_overrides", {}) or {}
        for key, ref in overrides.items():
            if key not in images:
                yield Problem(
                    host, f"labctl_image_overrides.{key}", "overrides an image that labctl_images lacks"
                )
            elif not _pinned(str(ref)):
                yield Problem(
                    host, f"labctl_image_overrides.{key}", f"'{ref}' must be repository:tag, not latest"
                )


def _services(lab: Lab) -> Iterator[Problem]:
    specs = catalog.services(lab)
    images = lab.setting("labctl_images", {}) or {}
    for name, spec in specs.items():
        var = f"labctl_services.{name}"
        if not isinstance(spec, dict):
            yield Problem("all", var, "must be a mapping")
            continue
        group = spec.get("placement")
        if group not in lab.groups:
            yield Problem("all", f"{var}.placement", f"group '{group}' is not in the inventory")
        elif not lab.hosts_in(str(group)):
            yield Problem("all", f"{var}.placement", f"group '{group}' has no host")
        if spec.get("image") not in images:
            yield Problem("all", f"{var}.image", f"'{spec.get('image')}' is not a key of labctl_images")
        ports = spec.get("ports") or {}
        for port_name, port in ports.items():
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                yield Problem("all", f"{var}.ports.{port_name}", f"'{port}' is not a TCP port (1-65535)")
        for endpoint in ("health", "metrics"):
            ep = spec.get(endpoint)
            if ep is not None and (not isinstance(ep, dict) or ep.get("port") not in ports):
                yield Problem("all", f"{var}.{endpoint}.port", "must name one of the service's ports")
        for allowed in spec.get("allow_from") or []:
            if allowed not in lab.groups:
                yield Problem("all", f"{var}.allow_from", f"group '{allowed}' is not in the inventory")
    yield from _port_clashes(lab)
    yield from _secrets(lab)


def _port_clashes(lab: Lab) -> Iterator[Problem]:
    taken: dict[tuple[str, int], str] = {}
    for inst in catalog.instances(lab):
        for port_name, port in inst.ports.items():
            owner = taken.setdefault((inst.host, port), f"{inst.service}.{port_name}")
            if owner != f"{inst.service}.{port_name}":
                yield Problem(
                    inst.host,
                    f"labctl_services.{inst.service}.ports.{port_name}",
                    f"port {port} is already used on this host by {owner}",
                )


def _secrets(lab: Lab) -> Iterator[Problem]:
    for inst in catalog.instances(lab):
        for secret in inst.secrets:
            value: Any = lab.var(inst.host, secret, None)
            if value is None or str(value).strip().lower() in SECRET_PLACEHOLDERS:
                yield Problem(
                    inst.host,
                    secret,
                    f"secret for {inst.service} is not defined (put it in an ansible-vault encrypted file)",
                )


def _models(lab: Lab) -> Iterator[Problem]:
    models = lab.setting("labctl_models", [])
    if not isinstance(models, list):
        yield Problem("all", "labctl_models", "must be a list of {name, vram_gb}")
        return
    capacity = 0.0
    for host in lab.hosts_in("inference"):
        gpu = lab.var(host, "gpu", None)
        if isinstance(gpu, dict) and isinstance(gpu.get("vram_gb"), int | float):
            count = gpu.get("count", 1)
            capacity = max(capacity, float(gpu["vram_gb"]) * (count if isinstance(count, int) else 1))
    names: set[str] = set()
    for index, model in enumerate(models):
        var = f"labctl_models[{index}]"
        if not isinstance(model, dict) or not model.get("name"):
            yield Problem("all", var, "must have a name")
            continue
        if model["name"] in names:
            yield Problem("all", f"{var}.name", f"'{model['name']}' is listed twice")
        names.add(model["name"])
        vram = model.get("vram_gb")
        if isinstance(vram, bool) or not isinstance(vram, int | float) or vram <= 0:
            yield Problem("all", f"{var}.vram_gb", f"must be a positive number, not '{vram}'")
        elif vram > capacity:
            yield Problem(
                "all",
                f"{var}.vram_gb",
                f"{model['name']} needs {vram} GiB; the largest inference node has {capacity:g}",
            )
