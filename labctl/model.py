"""The lab as plain data: group membership and each host's variables.

Both consumers build it their own way -- Ansible's filter plugins from `hostvars`/`groups`
inside a play, labctl from the inventory files offline -- and hand it to the same catalog and
validation code, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


def plain(value: Any) -> Any:
    """Turn Ansible's lazy/tagged containers and strings into plain Python values."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [plain(v) for v in value]
    return value


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass
class Lab:
    """Groups (name -> hosts, in inventory order) and a way to read one host's variable."""

    groups: dict[str, list[str]]
    read_var: Callable[[str, str], Any]
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict)

    def var(self, host: str, name: str, default: Any = MISSING) -> Any:
        """A host's variable, templated and plain; `default` when it is not defined."""
        key = (host, name)
        if key not in self._cache:
            self._cache[key] = self.read_var(host, name)
        value = self._cache[key]
        return default if value is MISSING else value

    @cached_property
    def _tier_rank(self) -> dict[str, int]:
        tiers = self.setting("labctl_tiers", [])
        rank: dict[str, int] = {}
        for index, tier in enumerate(tiers if isinstance(tiers, list) else []):
            for member in self.groups.get(str(tier), []):
                rank.setdefault(member, index)
        return rank

    def _rank(self, host: str) -> tuple[int, str]:
        """Deployment order: tier by tier (labctl_tiers), by name within a tier, unmanaged last."""
        return (self._tier_rank.get(host, 1_000), host)

    def ordered(self, hosts: list[str]) -> list[str]:
        return sorted(hosts, key=self._rank)

    @property
    def all_hosts(self) -> list[str]:
        return self.ordered(self.groups.get("all", []))

    @property
    def managed(self) -> list[str]:
        return self.ordered(self.groups.get("lab", []))

    def hosts_in(self, group: str) -> list[str]:
        return self.ordered(self.groups.get(group, []))

    def group_names(self, host: str) -> list[str]:
        return [g for g, members in self.groups.items() if host in members and g not in ("all", "ungrouped")]

    def setting(self, name: str, default: Any = MISSING) -> Any:
        """A platform-wide variable (group_vars/all), read on the first managed host."""
        hosts = sorted(self.groups.get("lab") or self.groups.get("all") or [])
        if not hosts:
            return default
        return self.var(hosts[0], name, default)


def from_hostvars(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> Lab:
    """Build a Lab from Ansible's `hostvars` and `groups` magic variables."""

    def read(host: str, name: str) -> Any:
        host_vars = hostvars[host]
        if name not in host_vars:
            return MISSING
        try:
            return plain(host_vars[name])
        except Exception:  # an undefined variable inside a template counts as not defined
            return MISSING

    return Lab(groups={str(g): [str(h) for h in hs] for g, hs in groups.items()}, read_var=read)
