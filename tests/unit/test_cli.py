"""labctl's offline behaviour: honest exit codes and messages, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labctl.cli import app, state
from tests.conftest import ROOT, VAULT_PASSWORD

LABCTL = str(Path(sys.executable).parent / "labctl")


@pytest.fixture(autouse=True)
def _fresh_state():
    """The CLI keeps global options in a module-level object; reset it between invocations."""
    state.sim, state.inventories = False, []
    yield
    state.sim, state.inventories = False, []


def flat(text: str) -> str:
    """Output without rich's line wrapping."""
    return " ".join(text.split())


def run(copy, *args, env=None):
    result = CliRunner().invoke(
        app, ["--inventory", str(copy.dir), *args], env={**copy.env, **(env or {})}, catch_exceptions=True
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def test_validate_accepts_the_inventory(inventory_copy):
    result = run(inventory_copy, "validate")
    assert result.exit_code == 0, result.output
    assert "inventory is valid" in result.stdout


def test_validate_names_host_and_variable_and_exits_1(inventory_copy):
    inventory_copy.edit("host_vars/nyx.yml", lambda d: d["gpu"].update(vendor="matrox"))
    result = run(inventory_copy, "validate", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "problems": [
            {
                "host": "nyx",
                "variable": "gpu.vendor",
                "message": "unknown GPU vendor 'matrox' (known: nvidia, amd)",
            }
        ],
        "notes": [],
    }


def test_services_json_lists_every_instance(inventory_copy):
    result = run(inventory_copy, "services", "--json")
    assert result.exit_code == 0
    instances = json.loads(result.stdout)
    # node exporter, cAdvisor and Alloy on ten machines, Postgres primary and replica, Redis and
    # Traefik and Uptime Kuma on one, Ollama on four, a GPU exporter on each GPU machine, the
    # gateway, the web UI and the tool servers on one each, and the monitoring tier's six
    assert len(instances) == 51
    assert {i["service"] for i in instances} == {
        "prometheus",
        "alertmanager",
        "blackbox",
        "loki",
        "grafana",
        "node_exporter",
        "cadvisor",
        "alloy",
        "postgres",
        "postgres_replica",
        "redis",
        "traefik",
        "uptime_kuma",
        "ollama",
        "dcgm_exporter",
        "rocm_exporter",
        "litellm",
        "openwebui",
        "mcpo",
    }


def test_services_for_one_host(inventory_copy):
    result = run(inventory_copy, "services", "--host", "erebus", "--json")
    assert [i["service"] for i in json.loads(result.stdout)] == [
        "node_exporter",
        "cadvisor",
        "alloy",
        "postgres",
        "redis",
    ]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("truenas", "which labctl does not manage"),
        ("nas", "which labctl does not manage"),
        ("nosuch", "no machine or group 'nosuch'"),
        ("empty", "group 'empty' has no machine"),
    ],
)
def test_a_target_that_names_no_managed_machine_is_refused(inventory_copy, target, message):
    inventory_copy.edit("hosts.yml", lambda d: d["all"]["children"].update(empty={"hosts": {}}))
    for command in ("deploy", "health"):
        result = run(inventory_copy, command, target)
        assert result.exit_code == 2, result.output
        assert message in flat(result.stderr)


def test_deploy_refuses_a_bad_inventory_before_running_anything(inventory_copy):
    inventory_copy.vault_file.unlink()
    result = run(inventory_copy, "deploy", "all")
    assert result.exit_code == 1
    assert "redis_password" in flat(result.stderr) and "nothing was touched" in flat(result.stderr)


def test_a_missing_inventory_path(tmp_path):
    result = CliRunner().invoke(app, ["--inventory", str(tmp_path / "nowhere"), "validate"])
    assert result.exit_code == 2 and "does not exist" in flat(result.stderr)


@pytest.mark.parametrize(
    ("file", "content", "words"),
    [
        ("hosts.yml", "all:\n  children: [lab, nas]\n  hosts: {a: b\n", "does not parse"),
        ("hosts.yml", "all:\n  children:\n    lab: [erebus, moros]\n", "does not parse"),
        (
            "hosts.yml",
            "all:\n  children:\n    a:\n      children:\n        b:\n"
            "          children:\n            a: {}\n",
            "does not parse",
        ),
        ("group_vars/all/network.yml", "- labctl_domain\n- home.arpa\n", "network.yml must be a mapping"),
    ],
    ids=["yaml-syntax", "list-for-a-mapping", "group-cycle", "vars-file-not-a-mapping"],
)
def test_an_inventory_that_does_not_parse_is_a_message_not_a_traceback(inventory_copy, file, content, words):
    (inventory_copy.dir / file).write_text(content)
    result = run(inventory_copy, "validate")
    assert result.exit_code == 2, result.output
    assert words in flat(result.stderr)


def test_init_makes_the_vault_and_rotate_names_what_to_redeploy(inventory_copy):
    inventory_copy.vault_file.unlink()
    first = run(inventory_copy, "init", "--json")
    assert first.exit_code == 0, first.output
    assert [(c["name"], c["action"]) for c in json.loads(first.stdout)["changes"]] == [
        # the owner's receivers of alerts, optional until one is chosen
        ("alertmanager_ntfy_token", "empty"),
        ("alertmanager_smtp_password", "empty"),
        ("alertmanager_webhook_url", "empty"),
        ("grafana_admin_password", "generated"),
        ("grafana_db_password", "generated"),
        ("grafana_secret_key", "generated"),
        ("hf_token", "empty"),  # given by the owner (vLLM's gated models), optional until then
        ("litellm_db_password", "generated"),
        ("litellm_external_api_key", "empty"),  # the owner's, for the optional external fallback
        ("litellm_master_key", "generated"),
        ("litellm_salt_key", "generated"),
        ("mcpo_api_key", "generated"),
        ("openwebui_admin_password", "generated"),
        ("openwebui_db_password", "generated"),
        ("openwebui_secret_key", "generated"),
        ("postgres_monitor_password", "generated"),
        ("postgres_password", "generated"),
        ("postgres_replication_password", "generated"),
        ("redis_password", "generated"),
        ("traefik_dashboard_password", "generated"),
        ("uptime_kuma_admin_password", "generated"),
    ]
    assert run(inventory_copy, "validate").exit_code == 0
    again = run(inventory_copy, "init", "--json")
    assert [c["action"] for c in json.loads(again.stdout)["changes"]] == [
        *["empty"] * 3,
        *["kept"] * 3,
        "empty",
        "kept",
        "empty",
        *["kept"] * 12,
    ]
    rotated = run(inventory_copy, "init", "--rotate", "redis_password")
    assert rotated.exit_code == 0
    assert "redeploy to apply: redis on erebus; litellm on orpheus" in flat(rotated.stdout)


def test_init_creates_the_password_outside_the_repository(inventory_copy, tmp_path):
    inventory_copy.vault_file.unlink()
    config = tmp_path / "config"
    result = CliRunner().invoke(
        app,
        ["--inventory", str(inventory_copy.dir), "init"],
        env={"XDG_CONFIG_HOME": str(config), "LABCTL_VAULT_PASSWORD_FILE": "", "LABCTL_VAULT_PASSWORD": ""},
    )
    assert result.exit_code == 0, result.output
    assert (config / "labctl" / "vault-password").is_file()
    assert "back it up" in flat(result.stdout)


def test_sim_option_is_accepted_after_the_subcommand(tmp_path):
    (tmp_path / "site.yml").write_text("---\n")
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    for args in (["--sim", "validate"], ["validate", "--sim"], ["deploy", "all", "--sim"]):
        proc = subprocess.run([LABCTL, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "labctl sim up" in flat(proc.stderr)


def test_sim_status_with_the_engine_stopped_is_a_message():
    proc = subprocess.run(
        [LABCTL, "sim", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "DOCKER_HOST": "unix:///nonexistent.sock",
        },
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "Docker engine is not running" in flat(proc.stderr)


def test_version():
    proc = subprocess.run([LABCTL, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("labctl ")


def test_extra_arguments_reach_ansible(inventory_copy, monkeypatch):
    """-e, --tags, -v go to ansible-playbook; --limit narrows the target."""
    calls = []

    def fake_run(project, playbook, inventories, **kwargs):
        from labctl.runner import RunResult

        calls.append({**kwargs, "playbook": playbook})
        return RunResult(rc=0, status="successful", hosts={})

    monkeypatch.setattr("labctl.runner.run_playbook", fake_run)
    result = run(inventory_copy, "deploy", "inference", "--limit", "nyx", "-e", "x=1", "--tags", "t", "-v")
    [deploy] = calls  # a deploy in which no machine ran refreshes nothing either
    assert deploy["playbook"] == "site.yml" and deploy["limit"] == "nyx"
    assert deploy["extra_args"] == ["-e", "x=1", "--tags", "t", "-v"]
    assert result.exit_code == 1, "a run in which no machine ran is not a success"


def test_the_repository_ships_no_secrets():
    """The vault labctl init writes is never committed here; a fresh clone runs labctl init."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "inventory/vault.yml" not in tracked.split()
    ignored = subprocess.run(["git", "check-ignore", "inventory/vault.yml"], cwd=ROOT, capture_output=True)
    assert ignored.returncode == 0


def test_a_fresh_inventory_asks_for_labctl_init(tmp_path):
    from tests.conftest import InventoryCopy

    copy = InventoryCopy(tmp_path, with_vault=False)
    result = run(copy, "validate", "--json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    # every secret the catalog gives each machine's stacks, erebus's first (by name)
    assert (problems[0]["host"], problems[0]["variable"]) == ("erebus", "grafana_db_password")
    assert {(p["host"], p["variable"]) for p in problems} >= {
        ("erebus", "redis_password"),
        ("thanatos", "postgres_replication_password"),
    }
    assert all("labctl init" in p["message"] for p in problems)


def test_a_wrong_vault_password_is_a_message_not_a_traceback(inventory_copy, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    for command in (["validate"], ["deploy", "all"], ["health", "all"]):
        result = run(inventory_copy, *command, env={"LABCTL_VAULT_PASSWORD_FILE": str(wrong)})
        assert result.exit_code == 2, (command, result.output)
        assert "does not decrypt" in flat(result.stderr)


def test_deploying_needs_readable_secrets_validating_does_not(inventory_copy, tmp_path):
    env = {"LABCTL_VAULT_PASSWORD_FILE": "", "LABCTL_VAULT_PASSWORD": "", "XDG_CONFIG_HOME": str(tmp_path)}
    assert run(inventory_copy, "validate", env=env).exit_code == 0
    result = run(inventory_copy, "deploy", "all", "--json", env=env)
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert ("erebus", "redis_password") in {(p["host"], p["variable"]) for p in problems}
    assert all("no vault password was given" in p["message"] for p in problems)


def test_an_inventory_file_takes_the_vault_beside_it(inventory_copy):
    result = CliRunner().invoke(
        app, ["--inventory", str(inventory_copy.hosts_file), "validate", "--json"], env=inventory_copy.env
    )
    assert result.exit_code == 0, result.output


def test_init_set_stores_a_token_from_standard_input_encrypted(inventory_copy):
    from labctl import vault

    result = CliRunner().invoke(
        app,
        ["--inventory", str(inventory_copy.dir), "init", "--set", "hf_token", "--json"],
        env=inventory_copy.env,
        input="hf_secretvalue123\n",
    )
    assert result.exit_code == 0, result.output
    assert {c["name"]: c["action"] for c in json.loads(result.stdout)["changes"]}["hf_token"] == "set"
    assert "hf_secretvalue123" not in inventory_copy.vault_file.read_text()
    assert vault.read(inventory_copy.vault_file, VAULT_PASSWORD)["hf_token"] == "hf_secretvalue123"
    refused = run(inventory_copy, "init", "--set", "redis_password")
    assert refused.exit_code == 2 and "--rotate redis_password" in flat(refused.output)


def test_restore_names_the_primary_machine_and_touches_nothing_else(inventory_copy, monkeypatch):
    calls = []
    monkeypatch.setattr("labctl.runner.run_playbook", lambda *a, **k: calls.append(k))
    for target in ("thanatos", "all", "db_primary,db_replica"):
        result = run(inventory_copy, "restore", target)
        assert result.exit_code == 2, result.output
        refused = "is not the PostgreSQL primary's machine (the catalog places it on erebus)"
        assert refused in flat(result.stderr)
    assert calls == []


def test_backup_and_restore_run_on_the_machines_that_keep_the_data(inventory_copy, monkeypatch):
    calls = []

    def fake_run(project, playbook, inventories, **kwargs):
        from labctl.runner import RunResult

        calls.append({**kwargs, "playbook": playbook})
        return RunResult(rc=0, status="successful", hosts={})

    monkeypatch.setattr("labctl.runner.run_playbook", fake_run)
    run(inventory_copy, "backup", "all", "--type", "full")
    run(inventory_copy, "restore", "erebus", "--time", "2026-12-01 08:00:00+00", "--force")
    backup, restore = calls
    assert backup["playbook"] == "playbooks/backup.yml" and backup["limit"] == "erebus"
    assert backup["extravars"]["postgres_backup_type"] == "full"
    # The restored primary's replicas are cloned anew by the same run.
    assert restore["playbook"] == "playbooks/restore.yml" and restore["limit"] == "erebus,thanatos"
    assert restore["extravars"]["postgres_restore_target"] == "2026-12-01 08:00:00+00"
    assert restore["extravars"]["postgres_restore_force"] is True
    nothing = run(inventory_copy, "backup", "gpu_nvidia")
    assert nothing.exit_code == 0 and "nothing to back up on gpu_nvidia" in flat(nothing.output)
    bad = run(inventory_copy, "backup", "erebus", "--type", "weekly")
    assert bad.exit_code == 2 and "--type must be" in flat(bad.stderr)


def test_promote_and_rejoin_refuse_the_wrong_machine_before_running_anything(inventory_copy, monkeypatch):
    calls = []
    monkeypatch.setattr("labctl.runner.run_playbook", lambda *a, **k: calls.append(k))
    promote = run(inventory_copy, "db", "promote", "erebus")
    assert promote.exit_code == 2
    refused = "'erebus' runs no PostgreSQL replica (the catalog places replicas on thanatos)"
    assert refused in flat(promote.stderr)
    rejoin = run(inventory_copy, "db", "rejoin", "erebus")
    assert rejoin.exit_code == 2 and "'erebus' runs the PostgreSQL primary" in flat(rejoin.stderr)
    assert calls == [] and not (inventory_copy.dir / "placement.yml").exists()
