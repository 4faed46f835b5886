from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


class InventoryCopy:
    """A copy of the project's real inventory (hosts.yml, group_vars, host_vars) to vary."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "inventory"
        self.dir.mkdir()
        shutil.copy(ROOT / "inventory" / "hosts.yml", self.dir / "hosts.yml")
        shutil.copytree(ROOT / "group_vars", self.dir / "group_vars")
        shutil.copytree(ROOT / "host_vars", self.dir / "host_vars")

    @property
    def hosts_file(self) -> Path:
        return self.dir / "hosts.yml"

    def edit(self, relative: str, change: Callable[[Any], Any]) -> None:
        """Load a YAML file of the copy, let `change` mutate (or replace) it, write it back."""
        path = self.dir / relative
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
        result = change(data)
        path.write_text(yaml.safe_dump(data if result is None else result, sort_keys=False))

    def add_service(self, name: str, placement: str, ports: dict[str, int], **extra: Any) -> None:
        """Add a service to the catalog copy (image: the node exporter's, stack: its name)."""
        spec = {"stack": name, "placement": placement, "image": "node_exporter", "ports": ports, **extra}
        self.edit("group_vars/all/services.yml", lambda d: d["labctl_services"].update({name: spec}))

    def load(self) -> Any:
        from labctl.inventory import load

        return load([self.hosts_file])


@pytest.fixture
def inventory_copy(tmp_path: Path) -> InventoryCopy:
    return InventoryCopy(tmp_path)


def lab_group(data: dict[str, Any], *path: str) -> dict[str, Any]:
    """Walk inventory/hosts.yml: lab_group(d, 'tier_gpu', 'inference', 'gpu_nvidia')."""
    node = data["all"]["children"]["lab"]["children"]
    for name in path[:-1]:
        node = node[name]["children"]
    return node[path[-1]]
