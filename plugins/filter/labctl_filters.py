"""Filters that give plays the service catalog and inventory validation (labctl's Python code)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# The filters run the same code as the labctl CLI; make it importable when labctl is not installed.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from labctl import catalog, health, validate  # noqa: E402
from labctl.model import from_hostvars  # noqa: E402


def labctl_catalog(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """Every enabled service instance, as dicts (see labctl.catalog.Instance)."""
    return [i.as_dict() for i in catalog.instances(from_hostvars(hostvars, groups))]


def labctl_hosts_entries(
    hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]
) -> list[dict[str, Any]]:
    """The /etc/hosts lines every machine gets."""
    return catalog.hosts_entries(from_hostvars(hostvars, groups))


def labctl_inventory_problems(hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> list[str]:
    """Validation problems, one line each, naming host and variable; empty when sound."""
    return [str(p) for p in validate.validate(from_hostvars(hostvars, groups))]


def labctl_image(key: str, overrides: Mapping[str, str], images: Mapping[str, Mapping[str, str]]) -> str:
    """The pinned image reference for a labctl_images key, honouring per-host overrides."""
    return catalog.resolve_image(key, overrides, images)


def labctl_health_report(
    engine: Mapping[str, Any],
    stacks: Mapping[str, Any],
    endpoints: Mapping[str, Any],
    services: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Judge one machine's health from the health playbook's registered results."""
    return health.report(engine, stacks.get("results", []), endpoints.get("results", []), services)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "labctl_catalog": labctl_catalog,
            "labctl_hosts_entries": labctl_hosts_entries,
            "labctl_inventory_problems": labctl_inventory_problems,
            "labctl_image": labctl_image,
            "labctl_health_report": labctl_health_report,
        }
