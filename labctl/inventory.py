"""Read the inventory offline (no host contacted), with Ansible's own parser and variable rules.

Vaulted values are read with the vault password when one is given; without it an inline `!vault`
value counts as defined (its value unknown) and a whole-file vault is noted as unreadable, so
`labctl validate` works on a checkout that has no password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labctl.model import MISSING, VAULTED, Lab, plain


class InventoryError(RuntimeError):
    """The inventory cannot be parsed; the message names the file and what is wrong."""


def _names(directory: Path) -> list[str]:
    """Host or group names that a host_vars/group_vars directory has files for."""
    if not directory.is_dir():
        return []
    names = set()
    for entry in directory.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            names.add(entry.name)
        elif entry.suffix in (".yml", ".yaml", ".json", "") or entry.name.endswith(".yml"):
            names.add(entry.stem if entry.suffix in (".yml", ".yaml", ".json") else entry.name)
    return sorted(names)


def _vars_error(host: str, exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"Could not process '([^']+)'", text)
    if match and "expected dicts" in text:
        return f"{match.group(1)} must be a mapping of variable names to values"
    return f"the variables of {host} do not load: {text}"


def inventory_dirs(sources: Sequence[Path]) -> list[Path]:
    return [Path(s) if Path(s).is_dir() else Path(s).parent for s in sources]


@contextmanager
def _collect_warnings(into: list[str]) -> Iterator[None]:
    """Ansible reports why a source failed to parse as warnings; keep them for the error."""
    from ansible.utils.display import Display

    display = Display()
    saved = display.error_as_warning

    def collect(msg: str, exception: BaseException, **_: Any) -> None:
        into.append(f"{msg} {exception}".strip())

    display.error_as_warning = collect
    try:
        yield
    finally:
        display.error_as_warning = saved


def load(sources: Sequence[Path], vault_password: str | None = None) -> Lab:
    """Parse inventory sources with their group_vars/host_vars, as ansible-playbook would."""
    for source in sources:
        if not Path(source).exists():
            raise InventoryError(f"inventory source {source} does not exist")
    os.environ.setdefault("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "True")
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import AnsibleVaultError, VaultSecret, VaultSecretsContext

    # host_group_vars remembers which vars files a directory holds for the life of the process;
    # a process that loads twice (labctl init, the tests) must see files written in between.
    from ansible.plugins.vars import host_group_vars
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    host_group_vars.FOUND.clear()
    host_group_vars.NAK.clear()

    unreadable: list[str] = []

    class Loader(DataLoader):  # type: ignore[misc]
        """Notes a whole-file vault it cannot decrypt instead of failing on it."""

        def load_from_file(self, file_name: str, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().load_from_file(file_name, *args, **kwargs)
            except AnsibleVaultError:
                if vault_password is not None:
                    raise InventoryError(f"{file_name}: the vault password does not decrypt it") from None
                unreadable.append(str(file_name))
                return {}

    secrets = [("default", VaultSecret(vault_password.encode()))] if vault_password is not None else []
    # Inline values decrypt through a process-wide context (ansible-core 2.19); set it for this load.
    VaultSecretsContext._current = VaultSecretsContext(secrets)
    loader = Loader()
    loader.set_vault_secrets(secrets)
    # Ansible also reads group_vars/host_vars beside the playbook (the loader's base directory);
    # point that at the inventory so only its own variables count, wherever labctl runs from.
    dirs = inventory_dirs(sources)
    loader.set_basedir(str(dirs[0]))
    warnings: list[str] = []
    try:
        with _collect_warnings(warnings):
            inventory = InventoryManager(loader=loader, sources=[str(s) for s in sources])
    except InventoryError:
        raise
    except AnsibleError as exc:
        reason = "; ".join(w for w in warnings if w) or str(exc)
        raise InventoryError(f"the inventory does not parse: {reason}") from None
    variables = VariableManager(loader=loader, inventory=inventory)
    groups: dict[str, list[str]] = {g: list(hs) for g, hs in inventory.get_groups_dict().items()}
    cache: dict[str, tuple[dict[str, Any], Any]] = {}

    def fetch(host: str) -> tuple[dict[str, Any], Any]:
        if host not in cache:
            try:
                host_vars = variables.get_vars(host=inventory.get_host(host), include_hostvars=False)
            except InventoryError:
                raise
            except AnsibleError as exc:
                raise InventoryError(_vars_error(host, exc)) from None
            cache[host] = (host_vars, Templar(loader=loader, variables=host_vars))
        return cache[host]

    # Every host's variables now, so a vars file that does not load is reported here, once.
    for name in groups.get("all", []):
        fetch(name)

    def read(host: str, name: str) -> Any:
        host_vars, templar = fetch(host)
        if name not in host_vars:
            return MISSING
        value = host_vars[name]
        if type(value).__name__ == "EncryptedString":
            result = plain(value)
            if result is VAULTED and vault_password is not None:
                raise InventoryError(f"{name} (of {host}): the vault password does not decrypt it")
            return result
        try:
            return plain(templar.template(value))
        except AnsibleError:
            return MISSING

    def match(pattern: str) -> list[str]:
        try:
            return [h.name for h in inventory.get_hosts(pattern)]
        except AnsibleError:
            return []

    return Lab(
        groups=groups,
        read_var=read,
        matcher=match,
        host_vars_names=sorted({n for d in dirs for n in _names(d / "host_vars")}),
        group_vars_names=sorted({n for d in dirs for n in _names(d / "group_vars")}),
        unreadable_vaults=unreadable,
    )
