"""Where the project is, and which inventory a command works on."""

from __future__ import annotations

import os
from pathlib import Path

SIM_INVENTORY = Path(".labctl/sim/inventory")


class ProjectError(RuntimeError):
    """The project or one of its inventories cannot be found."""


def root() -> Path:
    """The labctl project: $LABCTL_ROOT, else the nearest directory above the cwd with site.yml and
    ansible.cfg, else the checkout this package was installed from."""
    env = os.environ.get("LABCTL_ROOT")
    candidates = [Path(env)] if env else []
    cwd = Path.cwd().resolve()
    candidates += [cwd, *cwd.parents, Path(__file__).resolve().parents[1]]
    for candidate in candidates:
        if (candidate / "site.yml").is_file() and (candidate / "ansible.cfg").is_file():
            return candidate
    raise ProjectError("no labctl project found (a directory with site.yml and ansible.cfg); set LABCTL_ROOT")


def inventory_sources(project: Path, *, sim: bool, extra: list[Path] | None = None) -> list[Path]:
    """The inventory to use: the simulated lab's, explicit paths, or the project's own."""
    if extra:
        return [p if p.is_absolute() else Path.cwd() / p for p in extra]
    if sim:
        path = project / SIM_INVENTORY
        # The overlay is what points every machine at its container: without it the inventory
        # would be the real lab's.
        if not (path / "10-sim.yml").is_file():
            raise ProjectError("the simulated lab has no inventory yet: run `labctl sim up` first")
        return [path]
    return [project / "inventory" / "hosts.yml"]
