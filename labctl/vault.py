"""Secrets: generated once by `labctl init`, kept encrypted with ansible-vault in the inventory.

The vault file is `<inventory dir>/vault.yml`: an inventory source whose `all` group holds one
inline-encrypted value per secret, so names stay readable (and `labctl validate` can tell which
secrets exist without the password) while values are not. The vault password lives outside the
repository: $LABCTL_VAULT_PASSWORD_FILE, else $LABCTL_VAULT_PASSWORD, else
${XDG_CONFIG_HOME:-~/.config}/labctl/vault-password (created by `labctl init`, mode 0600).
The simulated lab keeps its own password and vault under .labctl/sim/.
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VAULT_FILE = "vault.yml"
HEADER = "$ANSIBLE_VAULT"
ALPHABET = string.ascii_letters + string.digits


class VaultError(RuntimeError):
    """The vault cannot be read or written; the message says what to do."""


def default_password_file() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "labctl" / "vault-password"


def _environ(env: Mapping[str, str] | None) -> dict[str, str]:
    return {**os.environ, **(env or {})}


def password_file(env: Mapping[str, str] | None = None) -> Path:
    """Where the password is read from when no value is given in the environment."""
    return Path(_environ(env).get("LABCTL_VAULT_PASSWORD_FILE") or default_password_file())


def password(env: Mapping[str, str] | None = None) -> str | None:
    """The vault password, or None when none is configured. `env` overrides the process's
    environment (the simulated lab names its own password file)."""
    environ = _environ(env)
    if environ.get("LABCTL_VAULT_PASSWORD_FILE"):
        path = Path(environ["LABCTL_VAULT_PASSWORD_FILE"])
        return _read_password(path) if path.is_file() or not env else None
    if environ.get("LABCTL_VAULT_PASSWORD"):
        return environ["LABCTL_VAULT_PASSWORD"]
    path = default_password_file()
    return _read_password(path) if path.is_file() else None


def _read_password(path: Path) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise VaultError(f"cannot read the vault password file {path}: {exc.strerror}") from None
    if not value:
        raise VaultError(f"the vault password file {path} is empty")
    return value


def ensure_password(env: Mapping[str, str] | None = None) -> tuple[str, Path | None]:
    """The configured password, or a new one written to the password file (0600 in a 0700
    directory). Returns the password and the file it was created in (None if it existed)."""
    existing = password(env)
    if existing is not None:
        return existing, None
    path = password_file(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = "".join(secrets.choice(ALPHABET) for _ in range(48))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value, path


def generate(form: str, length: int, prefix: str = "") -> str:
    """A new secret value: `password` (letters and digits: safe in URLs, .env files and YAML),
    `hex`, or `token` (letters and digits after a prefix such as 'sk-')."""
    if form == "hex":
        return secrets.token_hex((length + 1) // 2)[:length]
    body = "".join(secrets.choice(ALPHABET) for _ in range(length))
    return f"{prefix}{body}" if form == "token" else body


def _lib(password_value: str) -> Any:
    from ansible.parsing.vault import VaultLib, VaultSecret

    return VaultLib([("default", VaultSecret(password_value.encode()))])


class _Loader(yaml.SafeLoader):
    pass


def _vault_tag(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("!vault", _vault_tag)


def read(path: Path, password_value: str) -> dict[str, str]:
    """The secrets in a vault file, decrypted (an empty mapping when the file does not exist)."""
    return {name: plain for name, (plain, _) in _read(path, password_value).items()}


def _read(path: Path, password_value: str) -> dict[str, tuple[str, str | None]]:
    """name -> (value, its ciphertext as stored, if stored inline-encrypted)."""
    if not path.is_file():
        return {}
    lib = _lib(password_value)
    text = path.read_text()
    try:
        if text.lstrip().startswith(HEADER):  # encrypted as a whole with ansible-vault
            text = lib.decrypt(text.strip()).decode()
        data = yaml.load(text, Loader=_Loader) or {}  # noqa: S506 - SafeLoader plus a !vault tag
        variables = ((data.get("all") or {}).get("vars") or {}) if isinstance(data, dict) else {}
        result: dict[str, tuple[str, str | None]] = {}
        for key, value in variables.items():
            raw = str(value).strip()
            if raw.startswith(HEADER):
                result[str(key)] = (lib.decrypt(raw).decode(), raw)
            else:
                result[str(key)] = (raw, None)
        return result
    except Exception as exc:
        if "Decryption failed" in str(exc) or "HMAC" in str(exc):
            raise VaultError(f"{path}: the vault password does not decrypt it") from None
        raise VaultError(f"{path}: not a readable vault file ({exc})") from None


def write(
    path: Path, values: dict[str, str], password_value: str, stored: dict[str, str] | None = None
) -> None:
    """Write the vault file: readable names, each value encrypted; mode 0600, replaced atomically.
    `stored` holds ciphertexts to keep as they are (unchanged secrets keep a stable diff)."""
    lib = _lib(password_value)
    stored = stored or {}
    lines = [
        "---",
        "# Secrets of the lab, generated by `labctl init` and encrypted with ansible-vault (one value",
        "# per secret, names in clear). Rotate one with `labctl init --rotate NAME`; never edit by hand.",
        "all:",
        "  vars:",
    ]
    for name in sorted(values):
        encrypted = stored.get(name) or lib.encrypt(values[name].encode()).decode().strip()
        lines.append(f"    {name}: !vault |")
        lines.extend(f"      {line}" for line in encrypted.splitlines())
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    tmp.replace(path)


@dataclass(frozen=True)
class Change:
    name: str
    action: str  # "generated", "kept", "rotated", "set", "empty" (provided, not set yet)
    services: tuple[str, ...]


def init(
    vault_path: Path,
    declared: dict[str, dict[str, Any]],
    password_value: str,
    rotate: list[str] | None = None,
    provided: dict[str, str] | None = None,
) -> list[Change]:
    """Generate every declared secret that the vault lacks (and those in `rotate`); store the
    `provided` values the owner gives (secrets of form `provided`, empty until then); keep the rest."""
    rotate = rotate or []
    provided = provided or {}
    unknown = [name for name in [*rotate, *provided] if name not in declared]
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise VaultError(f"no secret named {', '.join(unknown)} in the catalog (declared: {known})")
    given = [n for n in rotate if declared[n].get("form") == "provided"]
    if given:
        raise VaultError(f"{', '.join(given)} is given by you, not generated: set it with --set {given[0]}")
    generated = [n for n in provided if declared[n].get("form") != "provided"]
    if generated:
        raise VaultError(
            f"{', '.join(generated)} is generated by labctl: replace it with --rotate {generated[0]}"
        )
    current = _read(vault_path, password_value)
    values = {name: plain for name, (plain, _) in current.items()}
    changed = set(rotate) | set(provided)
    stored = {name: raw for name, (_, raw) in current.items() if raw and name not in changed}
    changes = []
    for name, spec in sorted(declared.items()):
        services = tuple(spec.get("services", ()))
        if name in provided:
            values[name] = provided[name]
            changes.append(Change(name, "set", services))
            continue
        if name in values and name not in rotate:
            kept = "empty" if spec.get("form") == "provided" and not values[name] else "kept"
            changes.append(Change(name, kept, services))
            continue
        if spec.get("form") == "provided":
            values[name] = ""
            changes.append(Change(name, "empty", services))
            continue
        values[name] = generate(
            str(spec.get("form", "password")), int(spec.get("length", 32)), spec.get("prefix", "")
        )
        changes.append(Change(name, "rotated" if name in rotate else "generated", services))
    if (
        any(c.action not in ("kept", "empty") or c.name not in current for c in changes)
        or not vault_path.exists()
    ):
        write(vault_path, values, password_value, stored)
    return changes
