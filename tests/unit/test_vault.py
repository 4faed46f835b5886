"""Secrets on first setup: generated once, kept encrypted, rotated on request, never in plaintext."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from labctl import vault
from tests.conftest import ROOT, VAULT_PASSWORD

DECLARED = {
    "redis_password": {"form": "password", "length": 32, "services": ["redis"]},
    "gateway_master_key": {"form": "token", "length": 40, "prefix": "sk-", "services": ["litellm"]},
    "webui_secret": {"form": "hex", "length": 64, "services": ["open_webui"]},
}


def test_init_generates_every_declared_secret_in_its_form(tmp_path):
    path = tmp_path / "vault.yml"
    changes = vault.init(path, DECLARED, "pw")
    assert {c.name: c.action for c in changes} == dict.fromkeys(DECLARED, "generated")
    values = vault.read(path, "pw")
    assert len(values["redis_password"]) == 32 and values["redis_password"].isalnum()
    assert values["gateway_master_key"].startswith("sk-") and len(values["gateway_master_key"]) == 43
    assert len(values["webui_secret"]) == 64 and int(values["webui_secret"], 16) >= 0
    text = path.read_text()
    assert "redis_password: !vault |" in text, "names stay readable"
    assert all(v not in text for v in values.values()), "values are encrypted"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_second_init_keeps_every_secret_and_the_file(tmp_path):
    path = tmp_path / "vault.yml"
    vault.init(path, DECLARED, "pw")
    before, text = vault.read(path, "pw"), path.read_text()
    changes = vault.init(path, DECLARED, "pw")
    assert {c.action for c in changes} == {"kept"}
    assert vault.read(path, "pw") == before
    assert path.read_text() == text


def test_rotate_replaces_one_secret_and_keeps_the_others_byte_for_byte(tmp_path):
    path = tmp_path / "vault.yml"
    vault.init(path, DECLARED, "pw")
    before = vault.read(path, "pw")
    old_lines = path.read_text().split("redis_password")[0]
    changes = vault.init(path, DECLARED, "pw", rotate=["redis_password"])
    assert {c.name: c.action for c in changes}["redis_password"] == "rotated"
    after = vault.read(path, "pw")
    assert after["redis_password"] != before["redis_password"]
    assert {k: v for k, v in after.items() if k != "redis_password"} == {
        k: v for k, v in before.items() if k != "redis_password"
    }
    assert path.read_text().split("redis_password")[0] == old_lines, "unchanged ciphertexts are kept"


def test_a_new_secret_in_the_catalog_is_added_without_touching_the_rest(tmp_path):
    path = tmp_path / "vault.yml"
    vault.init(path, {"redis_password": DECLARED["redis_password"]}, "pw")
    before = vault.read(path, "pw")
    changes = vault.init(path, DECLARED, "pw")
    assert {c.name: c.action for c in changes} == {
        "gateway_master_key": "generated",
        "redis_password": "kept",
        "webui_secret": "generated",
    }
    assert vault.read(path, "pw")["redis_password"] == before["redis_password"]


def test_rotating_an_unknown_secret_is_refused(tmp_path):
    with pytest.raises(vault.VaultError, match="no secret named nope"):
        vault.init(tmp_path / "vault.yml", DECLARED, "pw", rotate=["nope"])


def test_the_wrong_password_is_named(tmp_path):
    path = tmp_path / "vault.yml"
    vault.init(path, DECLARED, "pw")
    with pytest.raises(vault.VaultError, match="does not decrypt"):
        vault.read(path, "not-it")


def test_a_whole_file_vault_is_read_too(tmp_path):
    from ansible.parsing.vault import VaultLib, VaultSecret

    path = tmp_path / "vault.yml"
    lib = VaultLib([("default", VaultSecret(b"pw"))])
    path.write_bytes(lib.encrypt(b"all:\n  vars:\n    redis_password: whole-file-secret\n"))
    assert vault.read(path, "pw") == {"redis_password": "whole-file-secret"}


def test_the_password_is_created_once_outside_the_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("LABCTL_VAULT_PASSWORD", raising=False)
    monkeypatch.delenv("LABCTL_VAULT_PASSWORD_FILE", raising=False)
    assert vault.password() is None
    value, created = vault.ensure_password()
    assert created == tmp_path / "config" / "labctl" / "vault-password"
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    assert stat.S_IMODE(created.parent.stat().st_mode) == 0o700
    assert len(value) >= 32
    assert vault.ensure_password() == (value, None)
    monkeypatch.setenv("LABCTL_VAULT_PASSWORD", "from-the-environment")
    assert vault.password() == "from-the-environment"


def test_ansible_reads_the_password_through_the_script(tmp_path):
    """ansible.cfg's vault_password_file: the same precedence as labctl, and a password that opens
    nothing (not a failure) when none is configured."""
    script = str(ROOT / "scripts" / "vault-password")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABCTL_VAULT")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    none = subprocess.run([script], capture_output=True, text=True, env=env, check=True)
    assert none.stdout.strip() == "no-vault-password-configured" and "labctl init" in none.stderr
    (tmp_path / "pw").write_text(VAULT_PASSWORD + "\n")
    given = subprocess.run(
        [sys.executable, script],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "LABCTL_VAULT_PASSWORD_FILE": str(tmp_path / "pw"), "LABCTL_VAULT_PASSWORD": "other"},
    )
    assert given.stdout.strip() == VAULT_PASSWORD
    # The simulated lab names its file before `labctl sim up` (itself a playbook) creates it.
    pending = {**env, "LABCTL_VAULT_PASSWORD_FILE": str(tmp_path / "not-yet")}
    early = subprocess.run([script], capture_output=True, text=True, env=pending, check=True)
    assert early.stdout.strip() == "no-vault-password-configured" and "not-yet" in early.stderr
    # A named file that exists but holds nothing is still an error.
    (tmp_path / "empty").write_text("")
    empty = {**env, "LABCTL_VAULT_PASSWORD_FILE": str(tmp_path / "empty")}
    broken = subprocess.run([script], capture_output=True, text=True, env=empty)
    assert broken.returncode != 0 and "empty" in broken.stderr


PROVIDED = {**DECLARED, "hf_token": {"form": "provided", "length": 32, "services": ["vllm"]}}


def test_a_provided_secret_stays_empty_until_set_and_is_then_kept(tmp_path):
    path = tmp_path / "vault.yml"
    changes = vault.init(path, PROVIDED, "pw")
    assert {c.name: c.action for c in changes}["hf_token"] == "empty"
    assert vault.read(path, "pw")["hf_token"] == ""
    text = path.read_text()
    assert {c.name: c.action for c in vault.init(path, PROVIDED, "pw")}["hf_token"] == "empty"
    assert path.read_text() == text, "nothing to write when nothing changed"
    before = vault.read(path, "pw")
    changes = vault.init(path, PROVIDED, "pw", provided={"hf_token": "hf_abcdefghijklmnop"})
    assert {c.name: c.action for c in changes}["hf_token"] == "set"
    after = vault.read(path, "pw")
    assert after["hf_token"] == "hf_abcdefghijklmnop" and "hf_abcdefghijklmnop" not in path.read_text()
    assert {k: v for k, v in after.items() if k != "hf_token"} == {
        k: v for k, v in before.items() if k != "hf_token"
    }
    assert {c.name: c.action for c in vault.init(path, PROVIDED, "pw")}["hf_token"] == "kept"


def test_a_provided_secret_is_set_not_rotated_and_a_generated_one_is_rotated_not_set(tmp_path):
    path = tmp_path / "vault.yml"
    with pytest.raises(vault.VaultError, match="set it with --set hf_token"):
        vault.init(path, PROVIDED, "pw", rotate=["hf_token"])
    with pytest.raises(vault.VaultError, match="replace it with --rotate redis_password"):
        vault.init(path, PROVIDED, "pw", provided={"redis_password": "mine"})
    with pytest.raises(vault.VaultError, match="no secret named nope"):
        vault.init(path, PROVIDED, "pw", provided={"nope": "x"})
