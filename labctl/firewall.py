"""Host firewalls from the service catalog: a service's ports, on its machine's lab interface, take
new connections only from the machines of the groups its `allow_from` names -- and, where it names
the workstation, from the client networks (`firewall_client_networks`); its health port also from
Uptime Kuma's machines, which watch every health endpoint (labctl/uptime.py). Everything else
arriving there for those ports is dropped, Docker-published ports included (they are matched on
the port the client asked for, before Docker's address translation, in the forward hook as well
as the input hook: published ports never reach the host's input rules).

What the catalog does not publish is left as the machine has it (SSH among it: the workstation's
way in is never cut). Traffic the machine makes itself (loopback, its own containers' bridges) does
not arrive on the lab interface and is not filtered.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from labctl import catalog, schema, uptime
from labctl.model import Lab, Problem, address, network_problems
from labctl.model import networks as model_networks

WORKSTATION = "workstation"
# Where roles/firewall puts the rules (its vars/main.yml names the same).
TABLE = "labctl_firewall"
RULES_FILE = "/etc/labctl/firewall.nft"


def enabled(lab: Lab, host: str) -> bool:
    try:
        return schema.toggle(lab.var(host, "firewall_enabled", False))
    except ValueError:
        return False  # refused by validation


def probe_spec(lab: Lab, host: str) -> dict[str, str] | None:
    """What the health probe checks on the machine: the table and the rules file, where the
    firewall is on (none where it is off)."""
    return {"table": TABLE, "file": RULES_FILE} if enabled(lab, host) else None


def view(lab: Lab, host: str) -> dict[str, Any]:
    """The rules of one machine: per published port of each service placed there, the sources
    that may open connections to it (IPv4 and IPv6 apart), and every such port."""
    rules: list[dict[str, Any]] = []
    # Uptime Kuma's machines watch every health endpoint that listens on the lab (labctl/uptime.py).
    watching = [ipaddress.ip_network(a) for h in uptime.probers(lab) if (a := address(lab, h))]
    for instance in catalog.instances(lab, hosts=[host]):
        if not instance.allow_from:
            continue  # bound to loopback: nothing arrives from the lab
        networks = [ipaddress.ip_network(a) for h in instance.allowed_hosts if (a := address(lab, h))]
        if WORKSTATION in instance.allow_from:
            clients = model_networks(lab, host, "firewall_client_networks")
            networks += [ipaddress.ip_network(n) for n in clients]
        health_port = instance.health["port"] if instance.health else None
        for name, port in instance.ports.items():
            sources = networks + watching if name == health_port else networks
            # Overlapping entries (a peer inside a client network) merged: nft refuses some overlaps.
            ipv4 = [str(n) for n in ipaddress.collapse_addresses(n for n in sources if n.version == 4)]
            ipv6 = [str(n) for n in ipaddress.collapse_addresses(n for n in sources if n.version == 6)]
            rules.append(
                {"service": instance.service, "name": name, "port": port, "ipv4": ipv4, "ipv6": ipv6}
            )
    return {"rules": rules, "ports": sorted({r["port"] for r in rules})}


def problems(lab: Lab) -> list[Problem]:
    return network_problems(lab, "firewall_client_networks")
