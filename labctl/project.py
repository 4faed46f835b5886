"""Where the project is, which inventory a command works on, and that inventory's vault."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SIM_DIR = Path(".labctl/sim")


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


@dataclass(frozen=True)
class Target:
    """An inventory to work on: its sources, the directory its vault lives in, and the
    environment playbooks need for it (the vault password file of the simulated lab)."""

    sources: list[Path]
    vault_dir: Path
    sim: bool
    env: dict[str, str]

    @property
    def vault_file(self) -> Path:
        return self.vault_dir / "vault.yml"


PLACEMENT_FILE = "placement.yml"
PLACEMENT_HEADER = """---
# Written by `labctl db promote` / `labctl db rejoin`: the machines these services run on now,
# instead of their placement groups (group_vars/all/services.yml). Never edit by hand; it goes
# away when the placement is the groups' again. Deleting it (and deploying) returns the services
# to their groups -- only do that once the machines are what the groups say.
"""


def write_placement(tgt: Target, overrides: dict[str, list[str]]) -> Path:
    """Write (or, with nothing to override, remove) the placement overrides beside the vault."""
    path = tgt.vault_dir / PLACEMENT_FILE
    if not overrides:
        path.unlink(missing_ok=True)
        return path
    lines = [PLACEMENT_HEADER + "all:", "  vars:", "    labctl_placement_overrides:"]
    lines += [f"      {name}: [{', '.join(hosts)}]" for name, hosts in sorted(overrides.items())]
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(lines) + "\n")
    temporary.replace(path)
    if path not in tgt.sources and not any(s.is_dir() and path.parent == s for s in tgt.sources):
        tgt.sources.append(path)
    return path


def sim_state(project: Path) -> Path:
    return project / SIM_DIR


def target(project: Path, *, sim: bool, extra: list[Path] | None = None) -> Target:
    """The simulated lab's inventory, explicit paths, or the project's own."""
    if sim:
        path = sim_state(project) / "inventory"
        # The overlay is what points every machine at its container: without it the inventory
        # would be the real lab's.
        if not (path / "10-sim.yml").is_file():
            raise ProjectError("the simulated lab has no inventory yet: run `labctl sim up` first")
        return Target(
            [path], path, True, {"LABCTL_VAULT_PASSWORD_FILE": str(sim_state(project) / "vault-password")}
        )
    if extra:
        sources = [p if p.is_absolute() else Path.cwd() / p for p in extra]
        for source in sources:
            if not source.exists():
                raise ProjectError(f"inventory {source} does not exist")
        first = sources[0]
        vault_dir = first if first.is_dir() else first.parent
        vault = vault_dir / "vault.yml"
        if not first.is_dir() and vault.is_file() and vault not in sources:
            sources.append(vault)  # the secrets beside an inventory file go with it
        placement = vault_dir / PLACEMENT_FILE
        if not first.is_dir() and placement.is_file() and placement not in sources:
            sources.append(placement)  # so does the placement labctl db promote wrote
        return Target(sources, vault_dir, False, {})
    return Target([project / "inventory"], project / "inventory", False, {})
