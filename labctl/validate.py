"""Inventory validation: every rule a bad inventory can break, checked before any host is touched.

First the types (labctl.schema: shapes, ranges, formats), then the rules between values (addresses
unique, placement on managed machines, secrets defined, a model placement that fits, ...), then the roles'
own argument specs for any role variable the inventory sets. Each problem names the host (or
`all` when every machine shares it) and the variable to fix. The same function runs offline in
`labctl validate` and as the first play of every playbook.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from labctl import catalog, edge, firewall, gateway, models, monitoring, schema
from labctl.model import VAULTED, Lab, Problem

GROUP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
SECRET_PLACEHOLDERS = {"", "changeme", "change-me", "todo", "xxx"}
ROLES_DIR = Path(__file__).resolve().parents[1] / "roles"
UNMANAGED_GROUPS = ("nas",)


def validate(lab: Lab, *, secrets: bool = True, decrypted: bool = False) -> list[Problem]:
    """All problems found, in a stable order; empty when the inventory is sound. `secrets=False`
    skips the check that every declared secret is defined (for the simulated lab's own playbook);
    `decrypted=True` also requires the secrets to be readable (a deploy hands them to machines;
    validating alone only needs them to exist)."""
    problems = list(_structure(lab))
    typed = list(_types(lab))
    problems.extend(typed)
    anchor = lab.anchor
    if anchor is None:
        return [Problem("all", "lab", "the inventory has no managed machine (group 'lab' is empty)")]
    if any(p.variable.split(".")[0].split("[")[0] in schema.PLATFORM_VARS for p in typed):
        # Platform settings (on some machine) are malformed: the rules below read them typed.
        return _collapse(problems, lab.managed)
    settings = schema.platform(lab, anchor)
    checks = (
        _addresses,
        _domain,
        _services,
        _gpus,
        _databases,
        _images,
        _models,
        _receivers,
        _logs,
        _edge,
        _firewall,
    )
    for check in checks:
        problems.extend(check(lab, settings))
    if secrets:
        problems.extend(_secrets(lab, decrypted))
    problems.extend(_role_variables(lab))
    return _collapse(problems, lab.managed)


def notes(lab: Lab) -> list[str]:
    """Things validation could not check, worth telling (not failures)."""
    return [
        f"{path} is vault-encrypted and no vault password was given: its variables were not read "
        "(secrets it may hold count as defined)"
        for path in lab.unreadable_vaults
    ]


def _collapse(problems: Iterable[Problem], managed: list[str]) -> list[Problem]:
    """One line for a problem every managed machine has (a group_vars/all setting)."""
    by_issue: dict[tuple[str, str], set[str]] = defaultdict(set)
    for p in problems:
        by_issue[(p.variable, p.message)].add(p.host)
    result: set[Problem] = set()
    for (variable, message), hosts in by_issue.items():
        if len(managed) > 1 and set(managed) <= hosts:
            hosts = (hosts - set(managed)) | {"all"}
        result.update(Problem(h, variable, message) for h in hosts)
    return sorted(result, key=lambda p: (p.host != "all", p.host, p.variable, p.message))


def _structure(lab: Lab) -> Iterator[Problem]:
    for host in lab.groups.get("all", []):
        if not schema.HOST_NAME.match(host):
            yield Problem(
                host, "inventory_hostname", "not a valid host name (lowercase letters, digits and '-')"
            )
    for group in lab.groups:
        if group not in ("all", "ungrouped") and not GROUP_NAME.match(group):
            yield Problem(
                "all", f"groups.{group}", "not a valid group name (lowercase letters, digits and '_')"
            )
    known_hosts = set(lab.groups.get("all", []))
    for name in lab.host_vars_names:
        if name not in known_hosts:
            yield Problem(name, "host_vars", f"host_vars/{name} is for a host that is not in the inventory")
    for name in lab.group_vars_names:
        if name not in lab.groups:
            yield Problem(
                "all", "group_vars", f"group_vars/{name} is for a group that is not in the inventory"
            )
    for host in lab.managed:
        for group in UNMANAGED_GROUPS:
            if host in lab.hosts_in(group):
                yield Problem(
                    host, "groups", f"is in 'lab' and in '{group}' (machines labctl does not manage)"
                )


def _types(lab: Lab) -> Iterator[Problem]:
    for host in lab.managed:
        for p in schema.check_host(lab, host):
            yield p
    for group in UNMANAGED_GROUPS:
        for host in lab.hosts_in(group):
            for p in schema.check_address(lab, host, required=True):
                yield p


def _addresses(lab: Lab, _: schema.Platform) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for host in lab.all_hosts:
        value = lab.var(host, "lab_address", None)
        if not isinstance(value, str):
            continue
        if value in seen:
            yield Problem(host, "lab_address", f"{value} is also the address of '{seen[value]}'")
        else:
            seen[value] = host


def _domain(_: Lab, settings: schema.Platform) -> Iterator[Problem]:
    if settings.labctl_domain.endswith("local"):
        yield Problem("all", "labctl_domain", "'.local' belongs to mDNS; use a name under home.arpa")


def _services(lab: Lab, settings: schema.Platform) -> Iterator[Problem]:
    host_names = set(lab.groups.get("all", []))
    aliases: dict[str, str] = {}
    for name in settings.labctl_placement_overrides:
        if name not in settings.labctl_services:
            yield Problem("all", f"labctl_placement_overrides.{name}", f"no service '{name}' in the catalog")
    for name, spec in settings.labctl_services.items():
        var = f"labctl_services.{name}"
        if spec.tier not in settings.labctl_tiers:
            yield Problem(
                "all",
                f"{var}.tier",
                f"'{spec.tier}' is not a tier of labctl_tiers ({', '.join(settings.labctl_tiers)})",
            )
        for host in settings.labctl_placement_overrides.get(name, []):
            if host not in lab.managed:
                yield Problem(
                    "all",
                    f"labctl_placement_overrides.{name}",
                    f"'{host}' is not a machine labctl manages (not in 'lab')",
                )
        group = spec.placement
        if group not in lab.groups:
            yield Problem("all", f"{var}.placement", f"group '{group}' is not in the inventory")
        elif not lab.hosts_in(group):
            yield Problem("all", f"{var}.placement", f"group '{group}' has no host")
        else:
            for host in lab.hosts_in(group):
                if host not in lab.managed:
                    yield Problem(
                        host,
                        f"{var}.placement",
                        f"group '{group}' holds '{host}', which labctl does not manage (not in 'lab')",
                    )
        endpoints = (
            ("health", spec.health.port if spec.health else None),
            ("metrics", spec.metrics.port if spec.metrics else None),
        )
        for endpoint, port in endpoints:
            if port is not None and port not in spec.ports:
                yield Problem("all", f"{var}.{endpoint}.port", f"'{port}' is not one of the service's ports")
        for allowed in spec.allow_from:
            if allowed not in lab.groups:
                yield Problem("all", f"{var}.allow_from", f"group '{allowed}' is not in the inventory")
        for consumed in spec.consumes:
            if consumed != "*" and consumed not in settings.labctl_services:
                yield Problem("all", f"{var}.consumes", f"'{consumed}' is not a service of the catalog")
        if spec.alias:
            if spec.alias in host_names:
                yield Problem("all", f"{var}.alias", f"'{spec.alias}' is already the name of a host")
            elif spec.alias in aliases:
                yield Problem(
                    "all", f"{var}.alias", f"'{spec.alias}' is also the alias of {aliases[spec.alias]}"
                )
            aliases.setdefault(spec.alias, name)
    yield from _port_clashes(lab)


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


UNREADABLE_SECRET = (
    "is vault-encrypted and no vault password was given: set LABCTL_VAULT_PASSWORD_FILE or "  # noqa: S105
    "LABCTL_VAULT_PASSWORD, or put it in ~/.config/labctl/vault-password"
)


def _secrets(lab: Lab, decrypted: bool = False) -> Iterator[Problem]:
    if lab.unreadable_vaults:
        if decrypted:
            for path in lab.unreadable_vaults:
                yield Problem("all", "vault", f"{path} {UNREADABLE_SECRET}")
        return  # an encrypted file we cannot read may define them: notes() says so
    for inst in catalog.instances(lab):
        for secret in inst.secrets:
            value: Any = lab.var(inst.host, secret, None)
            if value is VAULTED:
                if decrypted:
                    yield Problem(inst.host, secret, UNREADABLE_SECRET)
                continue
            if value == "" and inst.secrets[secret].get("form") == "provided":
                continue  # one the owner gives, optional until then (`labctl init --set NAME`)
            if value is None or str(value).strip().lower() in SECRET_PLACEHOLDERS:
                yield Problem(
                    inst.host,
                    secret,
                    f"secret for {inst.service} is not defined: run `labctl init` (it generates it into "
                    "the vault)",
                )
            elif not isinstance(value, str):
                yield Problem(
                    inst.host, secret, "must be a string (run `labctl init --rotate` to regenerate it)"
                )


def _gpus(lab: Lab, settings: schema.Platform) -> Iterator[Problem]:
    vendors = settings.labctl_gpu_vendors
    for host in lab.managed:
        in_vendor_groups = [v for v in vendors if host in lab.hosts_in(f"gpu_{v}")]
        if len(in_vendor_groups) > 1:
            yield Problem(
                host, "groups", f"is in more than one GPU vendor group ({', '.join(in_vendor_groups)})"
            )
    for host in lab.hosts_in("inference"):
        gpu = lab.var(host, "gpu", None)
        if not isinstance(gpu, dict):
            if lab.var(host, "inference_memory_gb", None) is None:
                yield Problem(
                    host,
                    "gpu",
                    "inference nodes must declare their GPU (vendor, model, vram_gb, count), or, "
                    "without one, inference_memory_gb (llama.cpp on the CPU)",
                )
            continue
        vendor = gpu.get("vendor")
        if vendor not in vendors:
            yield Problem(host, "gpu.vendor", f"unknown GPU vendor '{vendor}' (known: {', '.join(vendors)})")
        elif host not in lab.hosts_in(f"gpu_{vendor}"):
            yield Problem(host, "gpu.vendor", f"is '{vendor}' but the host is not in group 'gpu_{vendor}'")
    for vendor in vendors:
        for host in lab.hosts_in(f"gpu_{vendor}"):
            if host not in lab.hosts_in("inference"):
                yield Problem(host, "groups", f"is in 'gpu_{vendor}' but not in 'inference'")


def _databases(lab: Lab, _: schema.Platform) -> Iterator[Problem]:
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


def _images(lab: Lab, settings: schema.Platform) -> Iterator[Problem]:
    images = settings.labctl_images
    for name, spec in settings.labctl_services.items():
        keys = (
            [name]
            if spec.image is None
            else [spec.image]
            if isinstance(spec.image, str)
            else list(spec.image.values())
        )
        for key in keys:
            if key not in images:
                yield Problem(
                    "all", f"labctl_services.{name}.image", f"'{key}' is not a key of labctl_images"
                )
        for key in spec.helpers:
            if key not in images:
                yield Problem(
                    "all", f"labctl_services.{name}.helpers", f"'{key}' is not a key of labctl_images"
                )
    for host in lab.managed:
        overrides = lab.var(host, "labctl_image_overrides", {}) or {}
        for key in overrides if isinstance(overrides, dict) else {}:
            if key not in images:
                yield Problem(
                    host, f"labctl_image_overrides.{key}", "overrides an image that labctl_images lacks"
                )


def _models(lab: Lab, settings: schema.Platform) -> Iterator[Problem]:
    """The model catalog places on the inference machines without over-committing any."""
    yield from models.problems(lab, settings)
    yield from gateway.problems(lab, settings)


def _receivers(lab: Lab, _: schema.Platform) -> Iterator[Problem]:
    """Every alert receiver has its address and secret."""
    yield from monitoring.receiver_problems(lab)


def _logs(lab: Lab, _: schema.Platform) -> Iterator[Problem]:
    """Every log shipper has a Loki to ship to."""
    yield from monitoring.log_problems(lab)


def _edge(lab: Lab, settings: schema.Platform) -> Iterator[Problem]:
    """Every route names a port of its service and a name of its own; admin allowlists are networks."""
    yield from edge.problems(lab, settings)


def _firewall(lab: Lab, _: schema.Platform) -> Iterator[Problem]:
    """Client networks are networks."""
    yield from firewall.problems(lab)


@cache
def role_specs(roles_dir: Path = ROLES_DIR) -> dict[str, dict[str, Any]]:
    """Every role's public variables (meta/argument_specs.yml), by variable name."""
    specs: dict[str, dict[str, Any]] = {}
    for spec_file in sorted(roles_dir.glob("*/meta/argument_specs.yml")):
        data = yaml.safe_load(spec_file.read_text()) or {}
        options = ((data.get("argument_specs") or {}).get("main") or {}).get("options") or {}
        for name, option in options.items():
            specs[name] = {k: v for k, v in option.items() if k not in ("description", "required")}
    return specs


def _role_variables(lab: Lab) -> Iterator[Problem]:
    """Role variables the inventory sets, against the roles' argument specs (Ansible's own
    validator), so a bad value stops here instead of when that role starts on a machine."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    specs = role_specs()
    for host in lab.managed:
        values = {n: v for n in specs if (v := lab.var(host, n, lab.missing)) is not lab.missing}
        if not values:
            continue
        result = ArgumentSpecValidator({n: specs[n] for n in values}).validate(values)
        for error in result.errors:
            message = str(error)
            names = [n for n in values if f"'{n}'" in message or n in message]
            variable = names[0] if names else "role variables"
            yield Problem(host, variable, message.replace(f"argument '{variable}'", "value"))
