"""Read the inventory offline (no host contacted), with Ansible's own parser and variable rules."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labctl.model import MISSING, Lab, plain


def load(sources: Sequence[Path]) -> Lab:
    """Parse inventory sources with their group_vars/host_vars, as ansible-playbook would."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    # Ansible also reads group_vars/host_vars beside the playbook (the loader's base directory);
    # point that at the inventory so only its own variables count, wherever labctl runs from.
    first = Path(sources[0])
    loader.set_basedir(str(first if first.is_dir() else first.parent))
    inventory = InventoryManager(loader=loader, sources=[str(s) for s in sources])
    variables = VariableManager(loader=loader, inventory=inventory)
    groups: dict[str, list[str]] = {g: list(hs) for g, hs in inventory.get_groups_dict().items()}
    cache: dict[str, tuple[dict[str, Any], Any]] = {}

    def read(host: str, name: str) -> Any:
        if host not in cache:
            host_vars = variables.get_vars(host=inventory.get_host(host), include_hostvars=False)
            cache[host] = (host_vars, Templar(loader=loader, variables=host_vars))
        host_vars, templar = cache[host]
        if name not in host_vars:
            return MISSING
        try:
            return plain(templar.template(host_vars[name]))
        except AnsibleError:
            return MISSING

    return Lab(groups=groups, read_var=read)
