"""The edge: what Traefik routes, the names its certificate carries, derived from the service catalog.

A service whose catalog entry has a `route` is reached by people at https://<name>.<labctl_domain>
through the edge proxy (Traefik on the edge group); its backends are the service's instances'
lab addresses (several instances: one load balancer over them). The name is the route's own
`name`, else the service's alias, else the service's name; on every lab machine it resolves to
the edge machine (catalog.hosts_entries). Adding a route is one catalog edit: the router, the
certificate's names and /etc/hosts follow.

Traefik has no configuration checker of its own and cannot run where labctl is built: the rendered
files are checked against Traefik's documented JSON Schema (SchemaStore's, vendored under
roles/traefik/files/schemas) before they are written, and by the unit tests.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from functools import cache
from pathlib import Path
from typing import Any

from labctl import catalog, schema
from labctl.model import Lab, Problem, network_problems
from labctl.model import address as lab_address

EDGE = catalog.EDGE_PROXY
SCHEMAS = Path(__file__).resolve().parents[1] / "roles" / "traefik" / "files" / "schemas"
SCHEMA_FILES = {"static": "traefik-v3.json", "dynamic": "traefik-v3-file-provider.json"}
# The prefix length of "the lab network" around each machine's address, when no allowlist is given.
LAB_PREFIX = {4: 24, 6: 64}
# Traefik checks the dashboard's password on every request the dashboard makes: a moderate cost.
BCRYPT_COST = 10


def routes(lab: Lab) -> list[dict[str, Any]]:
    """One route per routed service that has an instance, in catalog order: its name (FQDN),
    whether it is an admin UI, its backends (`http://address:port`, one per instance) and the
    health path Traefik checks them on (the catalog's, when it is on the routed port)."""
    anchor = lab.anchor
    if anchor is None:
        return []
    settings = catalog.settings_of(lab, anchor)
    placed = catalog.instances(lab)
    result = []
    for name, spec in settings.labctl_services.items():
        if spec.route is None:
            continue
        instances = [i for i in placed if i.service == name]
        if not instances:
            continue
        port = spec.ports[spec.route.port]
        health = spec.health
        result.append(
            {
                "service": name,
                "name": catalog.fqdn(settings.labctl_domain, catalog.route_name(name, spec)),
                "admin": spec.route.admin,
                "servers": [f"http://{i.address}:{port}" for i in instances],
                "hosts": [i.host for i in instances],
                "health": health.path if health.path and health.port == spec.route.port else None,
            }
        )
    return result


def lab_networks(lab: Lab) -> list[str]:
    """The lab network: the /24 (IPv6: /64) around each managed machine's address, in inventory
    order, each once."""
    found: list[str] = []
    for host in lab.managed:
        if (address := lab_address(lab, host)) is None:
            continue  # refused by validation
        network = str(ipaddress.ip_network(f"{address}/{LAB_PREFIX[address.version]}", strict=False))
        if network not in found:
            found.append(network)
    return found


def admin_allow_from(lab: Lab, host: str) -> list[str]:
    """The client networks that may reach the admin UIs through the edge on `host`:
    traefik_admin_allow_from, or the lab network when it is empty."""
    given = lab.var(host, "traefik_admin_allow_from", None)
    if isinstance(given, list) and given:
        return [str(ipaddress.ip_network(str(n), strict=False)) for n in given]
    return lab_networks(lab)


def dashboard_name(lab: Lab) -> str | None:
    """The name of Traefik's own dashboard: the edge service's alias (or its name)."""
    anchor = lab.anchor
    if anchor is None:
        return None
    settings = catalog.settings_of(lab, anchor)
    spec = settings.labctl_services.get(EDGE)
    if spec is None:
        return None
    return catalog.fqdn(settings.labctl_domain, spec.alias or catalog.route_name(EDGE, spec))


def names(lab: Lab, host: str) -> list[str]:
    """The names the edge's certificate on `host` is issued for: the domain's wildcard, every
    route's name (a wildcard alone does not do: some clients refuse one right under a public
    suffix), the dashboard's and the machine's own, each once."""
    anchor = lab.anchor
    if anchor is None:
        return []
    domain = catalog.settings_of(lab, anchor).labctl_domain
    found = [f"*.{domain}"]
    found += [r["name"] for r in routes(lab)]
    dashboard = dashboard_name(lab)
    if dashboard:
        found.append(dashboard)
    found.append(catalog.fqdn(domain, host))
    return list(dict.fromkeys(found))


def view(lab: Lab, host: str) -> dict[str, Any]:
    """Everything the edge on `host` renders: its routes, the dashboard's name, the certificate's
    names, the admin allowlist, and every machine the catalog places the edge on (`edges`; none:
    the lab needs no certificate authority)."""
    return {
        "routes": routes(lab),
        "dashboard": dashboard_name(lab),
        "names": names(lab, host),
        "admin_allow_from": admin_allow_from(lab, host),
        "edges": [i.host for i in catalog.instances(lab, services=[EDGE])],
    }


def public_url(lab: Lab, service: str) -> str | None:
    """The URL people use for a service: https://<route name> when the catalog routes it and
    places the edge, else None (the service's own address is the only way in)."""
    if not catalog.instances(lab, services=[EDGE]):
        return None
    for route in routes(lab):
        if route["service"] == service:
            return f"https://{route['name']}"
    return None


# --- the dashboard's password -----------------------------------------------------------------

_BCRYPT64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _bcrypt64(data: bytes) -> str:
    """bcrypt's own base64 (OpenBSD's alphabet, no padding)."""
    bits = int.from_bytes(data, "big") << (6 - len(data) * 8 % 6) % 6
    count = -(-len(data) * 8 // 6)
    return "".join(_BCRYPT64[(bits >> (6 * (count - 1 - i))) & 63] for i in range(count))


def htpasswd(password: str, user: str, seed: str) -> str:
    """`user:bcrypt-hash` for Traefik's basicAuth. The salt is derived from the password and
    `seed` (the machine's name): the same password renders the same line, so a deploy that
    changes nothing writes nothing."""
    import bcrypt

    secret = password.encode()
    if len(secret) > 72:
        raise ValueError("bcrypt reads at most 72 bytes of a password")
    salt = hmac.new(secret, f"labctl basic auth {user}@{seed}".encode(), hashlib.sha256).digest()[:16]
    setting = f"$2y${BCRYPT_COST:02d}${_bcrypt64(salt)}".encode()
    return f"{user}:{bcrypt.hashpw(secret, setting).decode()}"


# --- Traefik's documented schema ---------------------------------------------------------------


@cache
def _schema(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / SCHEMA_FILES[kind]).read_text())
    return loaded


def schema_problems(config: Any, kind: str) -> list[str]:
    """What Traefik's documented schema refuses in a configuration (`static`: traefik.yml,
    `dynamic`: a file of the file provider), one line each with its path; empty when it passes.
    The static schema leaves its top level open: a key it does not know is refused here too."""
    from jsonschema import Draft7Validator

    validator = Draft7Validator(_schema(kind))
    found = [
        f"{kind}: {'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if isinstance(config, dict):
        known = _schema(kind).get("properties", {})
        found += [f"{kind}: {key}: not a setting Traefik knows" for key in config if key not in known]
    return found


# --- validation -----------------------------------------------------------------------------------


def problems(lab: Lab, settings: schema.Platform) -> list[Problem]:
    """Routes that name no port of their service, two services routed under one name, a route
    name that is a machine's or another service's, a routed service the edge may not connect to,
    and admin allowlists that are not networks."""
    found = []
    taken: dict[str, str] = {}
    aliases = {spec.alias: name for name, spec in settings.labctl_services.items() if spec.alias}
    hosts = set(lab.groups.get("all", []))
    for name, spec in settings.labctl_services.items():
        if spec.route is None:
            continue
        variable = f"labctl_services.{name}.route"
        if spec.route.port not in spec.ports:
            found.append(Problem("all", f"{variable}.port", f"'{spec.route.port}' is not one of its ports"))
        route = catalog.route_name(name, spec)
        if not schema.HOST_NAME.match(route):
            found.append(Problem("all", f"{variable}.name", f"'{route}' is not a DNS name: give `name`"))
        elif route in hosts:
            found.append(Problem("all", f"{variable}.name", f"'{route}' is already the name of a host"))
        elif route in taken:
            found.append(Problem("all", f"{variable}.name", f"'{route}' is also the route of {taken[route]}"))
        elif aliases.get(route, name) != name:
            found.append(Problem("all", f"{variable}.name", f"'{route}' is the alias of {aliases[route]}"))
        taken.setdefault(route, name)
    edges = {i.host for i in catalog.instances(lab, services=[EDGE])}
    for inst in catalog.instances(lab):
        spec = settings.labctl_services[inst.service]
        if spec.route is not None and not edges <= set(inst.allowed_hosts):
            missing = ", ".join(sorted(edges - set(inst.allowed_hosts)))
            found.append(
                Problem(
                    "all",
                    f"labctl_services.{inst.service}.allow_from",
                    f"it is routed through the edge, but the edge ({missing}) may not connect: "
                    f"add the edge's group ({settings.labctl_services[EDGE].placement})",
                )
            )
    return found + network_problems(lab, "traefik_admin_allow_from")
