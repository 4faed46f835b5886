"""The lab as plain data: group membership and each host's variables.

Both consumers build it their own way -- Ansible's filter plugins from `hostvars`/`groups`
inside a play, labctl from the inventory files offline -- and hand it to the same schema, catalog
and validation code, so the two can never disagree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISSING: Any = _Marker("MISSING")
# A vaulted value that could not be decrypted (no vault password given): defined, but opaque.
VAULTED: Any = _Marker("VAULTED")


def plain(value: Any) -> Any:
    """Turn Ansible's lazy/tagged containers and strings into plain Python values.

    An encrypted value becomes its plaintext when the vault password is known, VAULTED otherwise.
    """
    if type(value).__name__ == "EncryptedString":
        try:
            return str(value._native_copy())
        except Exception:  # no or wrong vault password: defined, value unknown
            return VAULTED
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k) if isinstance(k, str) else k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True, order=True)
class Problem:
    """Something wrong in the inventory: the host (or `all`), the variable to fix, what is wrong.
    The type check, the rules and the model placement all report these."""

    host: str
    variable: str
    message: str

    def __str__(self) -> str:
        return f"host '{self.host}', variable '{self.variable}': {self.message}"


@dataclass
class Lab:
    """Groups (name -> hosts, in inventory order), a way to read one host's variable, and the
    names of the inventory's host_vars/group_vars entries (to catch files for unknown names)."""

    groups: dict[str, list[str]]
    read_var: Callable[[str, str], Any]
    host_vars_names: list[str] = field(default_factory=list)
    group_vars_names: list[str] = field(default_factory=list)
    # Whole files that are vault-encrypted and could not be read (no password given).
    unreadable_vaults: list[str] = field(default_factory=list)
    # Values derived from the variables (typed settings per host), computed once per Lab.
    memo: dict[str, Any] = field(default_factory=dict)
    # Ansible's host-pattern matcher ("gpu_nvidia:!nyx"), where the builder has one.
    matcher: Callable[[str], list[str]] | None = None
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    missing = MISSING

    def var(self, host: str, name: str, default: Any = MISSING) -> Any:
        """A host's variable, templated and plain; `default` when it is not defined."""
        key = (host, name)
        if key not in self._cache:
            self._cache[key] = self.read_var(host, name)
        value = self._cache[key]
        return default if value is MISSING else value

    def _order(self, hosts: Sequence[str]) -> list[str]:
        """Machines by lab address (how owners number them), then by name: the same order in
        every table, whatever the order of groups in the inventory."""

        def key(host: str) -> tuple[int, int, str]:
            value = self.var(host, "lab_address", None)
            try:
                return (0, int(ipaddress.ip_address(str(value))), host)
            except ValueError:
                return (1, 0, host)

        return sorted(hosts, key=key)

    @property
    def all_hosts(self) -> list[str]:
        """Managed machines, then the unmanaged ones (the NAS)."""
        managed = self.managed
        return managed + self._order([h for h in self.groups.get("all", []) if h not in managed])

    @property
    def managed(self) -> list[str]:
        if "managed" not in self.memo:
            self.memo["managed"] = self._order(self.groups.get("lab", []))
        return list(self.memo["managed"])

    def hosts_in(self, group: str) -> list[str]:
        return self._order(self.groups.get(group, []))

    def match(self, pattern: str) -> list[str]:
        """Hosts an Ansible host pattern names (a host, a group, 'all', or an expression)."""
        if self.matcher is not None:
            return self.matcher(pattern)
        found: list[str] = []
        for part in pattern.split(","):
            found += self.groups.get(part, [part] if part in self.groups.get("all", []) else [])
        return list(dict.fromkeys(found))

    def ordered(self, hosts: Sequence[str]) -> list[str]:
        """Any host names in the lab's order; names the inventory lacks go last."""
        known = [h for h in self.all_hosts if h in hosts]
        return known + sorted(h for h in hosts if h not in known)

    def group_names(self, host: str) -> list[str]:
        return [g for g, members in self.groups.items() if host in members and g not in ("all", "ungrouped")]

    @property
    def anchor(self) -> str | None:
        """The host whose view of group_vars/all counts as the platform's settings."""
        hosts = sorted(self.groups.get("lab") or self.groups.get("all") or [])
        return hosts[0] if hosts else None

    def setting(self, name: str, default: Any = MISSING) -> Any:
        """A platform-wide variable (group_vars/all), as the first managed host sees it."""
        anchor = self.anchor
        return default if anchor is None else self.var(anchor, name, default)


def from_hostvars(
    hostvars: Mapping[str, Any],
    groups: Mapping[str, Sequence[str]],
    host_vars_names: Sequence[str] = (),
    group_vars_names: Sequence[str] = (),
) -> Lab:
    """Build a Lab from Ansible's `hostvars` and `groups` magic variables."""

    # hostvars[host] recomputes the machine's variables on every access: once per machine here.
    seen: dict[str, Any] = {}

    def read(host: str, name: str) -> Any:
        host_vars = seen.get(host)
        if host_vars is None:
            host_vars = seen[host] = hostvars[host]
        if name not in host_vars:
            return MISSING
        try:
            return plain(host_vars[name])
        except Exception:  # an undefined variable inside a template counts as not defined
            return MISSING

    return Lab(
        groups={str(g): [str(h) for h in hs] for g, hs in groups.items()},
        read_var=read,
        host_vars_names=list(host_vars_names),
        group_vars_names=list(group_vars_names),
    )


def address(lab: Lab, host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The host's lab_address, parsed (none where it is missing, vaulted or malformed: validation
    names those)."""
    value = lab.var(host, "lab_address", None)
    if not isinstance(value, str) or value is VAULTED:
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def networks(lab: Lab, host: str, variable: str) -> list[str]:
    """A per-machine list of client networks (`variable`), each as a network (an address is a /32
    or /128), each once; entries that are not networks are left out (network_problems names them)."""
    given = lab.var(host, variable, None)
    found: list[str] = []
    for entry in given if isinstance(given, list) else []:
        try:
            network = str(ipaddress.ip_network(str(entry), strict=False))
        except ValueError:
            continue
        if network not in found:
            found.append(network)
    return found


def network_problems(lab: Lab, variable: str) -> list[Problem]:
    """Every entry of a per-machine list of client networks (`variable`) that is not a CIDR or
    an address, named by machine and variable."""
    found = []
    for host in lab.managed:
        given = lab.var(host, variable, None)
        for entry in given if isinstance(given, list) else []:
            try:
                ipaddress.ip_network(str(entry), strict=False)
            except ValueError:
                found.append(Problem(host, variable, f"'{entry}' is not a network (CIDR) or address"))
    return found
