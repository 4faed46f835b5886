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
        return Target(sources, vault_dir, False, {})
    return Target([project / "inventory"], project / "inventory", False, {})
