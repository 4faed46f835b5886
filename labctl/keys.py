"""The gateway's virtual keys: what a person or a program presents instead of the master key, each
with the models it may use, request and token rates, and a budget.

LiteLLM keeps them in the data tier's PostgreSQL (its `litellm` database) and manages them through
its own key API; labctl asks that API with the master key from the vault. Nothing here stores a
key: LiteLLM keeps only a hash, and the key itself is shown once, when it is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

# LiteLLM's answer when it has no database to keep keys in.
NO_DATABASE = "No connected db"
PAGE = 100


class KeysError(Exception):
    """The gateway refused or could not be asked; the message says what to do."""


@dataclass(frozen=True)
class Gateway:
    host: str
    url: str
    master_key: str


def _post(gateway: Gateway, path: str, body: dict[str, Any], timeout: float) -> Any:
    return _ask(gateway, "POST", path, timeout, json=body)


def _ask(gateway: Gateway, method: str, path: str, timeout: float, **kwargs: Any) -> Any:
    try:
        response = httpx.request(
            method,
            f"{gateway.url}{path}",
            headers={"Authorization": f"Bearer {gateway.master_key}"},
            timeout=timeout,
            **kwargs,
        )
    except httpx.HTTPError as exc:
        raise KeysError(f"{gateway.host}: the gateway at {gateway.url} does not answer ({exc})") from exc
    if response.status_code >= 400:
        text = response.text
        if NO_DATABASE in text:
            raise KeysError(
                f"{gateway.host}: the gateway keeps no keys without its database "
                "(litellm_database_enabled is false there, or PostgreSQL is unreachable)"
            )
        if response.status_code in (401, 403):
            raise KeysError(
                f"{gateway.host}: the gateway refused the master key (HTTP {response.status_code}): "
                "is the vault's litellm_master_key the one deployed? (`labctl deploy gateway`)"
            )
        raise KeysError(f"{gateway.host}: {method} {path} answered HTTP {response.status_code}: {text[:300]}")
    return response.json()


def create(
    gateway: Gateway,
    alias: str,
    *,
    models: list[str],
    rpm: int | None = None,
    tpm: int | None = None,
    budget: float | None = None,
    budget_period: str | None = None,
    expires: str | None = None,
    timeout: float = 30,
) -> dict[str, Any]:
    """Make a key named `alias`; the answer has the key itself (shown once)."""
    if any(k.get("key_alias") == alias for k in list_keys(gateway, timeout=timeout)):
        raise KeysError(f"{gateway.host}: a key named '{alias}' exists already (revoke it first)")
    body: dict[str, Any] = {"key_alias": alias, "models": models, "metadata": {"made_by": "labctl"}}
    for name, value in (
        ("rpm_limit", rpm),
        ("tpm_limit", tpm),
        ("max_budget", budget),
        ("budget_duration", budget_period),
        ("duration", expires),
    ):
        if value is not None:
            body[name] = value
    answer: dict[str, Any] = _post(gateway, "/key/generate", body, timeout)
    if not str(answer.get("key", "")).startswith("sk-"):
        raise KeysError(f"{gateway.host}: the gateway made no key: {str(answer)[:300]}")
    return answer


def list_keys(gateway: Gateway, *, timeout: float = 30) -> list[dict[str, Any]]:
    """Every key with its limits and spend (never the key itself: LiteLLM keeps a hash)."""
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = _ask(
            gateway,
            "GET",
            "/key/list",
            timeout,
            params={"page": page, "size": PAGE, "return_full_object": "true"},
        )
        keys = [k for k in answer.get("keys", []) if isinstance(k, dict)]
        found += keys
        if page >= int(answer.get("total_pages") or 1) or not keys:
            return found
        page += 1


def revoke(gateway: Gateway, alias: str, *, timeout: float = 30) -> list[str]:
    """Delete the key named `alias`; the aliases deleted."""
    if not any(k.get("key_alias") == alias for k in list_keys(gateway, timeout=timeout)):
        raise KeysError(f"{gateway.host}: no key is named '{alias}'")
    answer = _post(gateway, "/key/delete", {"key_aliases": [alias]}, timeout)
    deleted = answer.get("deleted_keys") or []
    return [alias] if deleted else []


def row(key: dict[str, Any]) -> dict[str, Any]:
    """What `labctl keys list` shows of a key."""
    return {
        "alias": key.get("key_alias"),
        "key": key.get("key_name"),
        "models": key.get("models") or ["(all)"],
        "rpm": key.get("rpm_limit"),
        "tpm": key.get("tpm_limit"),
        "budget": key.get("max_budget"),
        "budget_period": key.get("budget_duration"),
        "spend": round(float(key.get("spend") or 0), 4),
        "expires": key.get("expires"),
        "blocked": bool(key.get("blocked")),
    }
