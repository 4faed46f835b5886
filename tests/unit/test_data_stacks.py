"""The data tier's PostgreSQL files rendered by Ansible from the real inventory: who may connect
(pg_hba.conf from the catalog), synchronous replication to the enabled replicas, the standby's
connection to the primary, and compose files that pass `docker compose config` and the hardening
rules."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_playbook
from tests.hardening import compose_config, problems

FILES = [
    "pg_hba.conf",
    "postgresql.conf",
    "compose.yaml",
    "clone-primary.sh",
    "Dockerfile",
    "pgbackrest.conf",
    "postgres-backup.py",
]


def render(
    copy, tmp_path: Path, *extra: str, hosts: tuple[str, ...] = ("erebus", "thanatos")
) -> dict[str, dict[str, str]]:
    """erebus's (primary) and thanatos's (standby) PostgreSQL files, as the role writes them."""
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "compose").symlink_to(
        ROOT / "roles" / "compose_stack" / "templates" / "compose"
    )
    templates = ROOT / "roles" / "postgres" / "templates"
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render",
                    "hosts": ",".join(hosts),
                    "connection": "local",
                    "gather_facts": False,
                    "vars": {
                        "postgres_standby": "{{ inventory_hostname in groups['db_replica'] }}",
                        "labctl_instance": "{{ hostvars | labctl_instance(groups, inventory_hostname, "
                        "'postgres_replica' if postgres_standby else 'postgres') }}",
                        "_compose_stack_files_hash": "0",
                    },
                    "roles": [{"role": "compose_stack", "when": False}],
                    "tasks": [
                        {
                            "name": "Find the peers",
                            "ansible.builtin.include_role": {
                                "name": "postgres",
                                "tasks_from": "peers.yml",
                                "public": True,
                            },
                        },
                        *(
                            {
                                "name": f"Render {name}",
                                "ansible.builtin.template": {
                                    "src": str(templates / f"{name}.j2"),
                                    "dest": f"{out}/{{{{ inventory_hostname }}}}-{name}",
                                    "mode": "0600",
                                },
                            }
                            for name in FILES
                        ),
                    ],
                }
            ]
        )
    )
    proc = run_playbook(
        "-i", str(copy.dir), str(playbook), *extra, env={**copy.env, "ANSIBLE_STRATEGY": "linear"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {h: {name: (out / f"{h}-{name}").read_text() for name in FILES} for h in hosts}


def hba(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def setting(conf: str, name: str) -> str:
    match = re.search(rf"^{name} = (.*)$", conf, re.M)
    assert match, f"{name} not set"
    return match.group(1)


def test_pg_hba_opens_each_database_to_its_clients_machines_only(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    rules = hba(files["erebus"]["pg_hba.conf"])
    assert rules == [
        ["local", "all", "postgres", "peer", "map=admin"],
        ["local", "all", "all", "reject"],
        # erebus and thanatos, each may become the other's primary
        ["host", "replication", "replicator", "192.168.50.10/32", "scram-sha-256"],
        ["host", "replication", "replicator", "192.168.50.12/32", "scram-sha-256"],
        # the exporter next to each server, from the database machines only (read-only: pg_monitor)
        ["host", "postgres", "labctl_monitor", "192.168.50.10/32", "scram-sha-256"],
        ["host", "postgres", "labctl_monitor", "192.168.50.12/32", "scram-sha-256"],
        ["host", "litellm", "litellm", "192.168.50.20/32", "scram-sha-256"],  # gateway: orpheus
        ["host", "openwebui", "openwebui", "192.168.50.20/32", "scram-sha-256"],  # webui: orpheus
        ["host", "grafana", "grafana", "192.168.50.30/32", "scram-sha-256"],  # monitoring: moros
    ]
    # The standby has the same rules: after a promote nothing else has to change.
    assert files["thanatos"]["pg_hba.conf"] == files["erebus"]["pg_hba.conf"]


def test_the_primary_waits_for_its_replica_and_the_standby_follows_the_primary(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    primary, standby = files["erebus"]["postgresql.conf"], files["thanatos"]["postgresql.conf"]
    assert setting(primary, "synchronous_standby_names") == "'ANY 1 (\"thanatos\")'"
    assert setting(primary, "listen_addresses") == "'127.0.0.1,192.168.50.10'"
    assert "primary_conninfo" not in primary
    assert setting(standby, "primary_conninfo") == (
        "'host=192.168.50.10 port=5432 user=replicator"
        " passfile=/etc/postgresql/pgpass application_name=thanatos'"
    )
    assert setting(standby, "primary_slot_name") == "'thanatos'"
    assert setting(standby, "synchronous_standby_names") == "''"
    assert "--slot=thanatos" in files["thanatos"]["clone-primary.sh"]
    assert "--host=192.168.50.10" in files["thanatos"]["clone-primary.sh"]


def test_asynchronous_on_request_and_without_an_enabled_replica(inventory_copy, tmp_path):
    for step in ("asked", "disabled"):
        (tmp_path / step).mkdir()
    files = render(inventory_copy, tmp_path / "asked", "-e", "postgres_synchronous=false")
    assert setting(files["erebus"]["postgresql.conf"], "synchronous_standby_names") == "''"
    inventory_copy.edit("host_vars/thanatos.yml", lambda d: {**(d or {}), "postgres_replica_enabled": False})
    files = render(inventory_copy, tmp_path / "disabled", hosts=("erebus",))
    assert setting(files["erebus"]["postgresql.conf"], "synchronous_standby_names") == "''"


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (compose config)")
def test_the_compose_files_are_valid_and_hardened(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    for host, role in (("erebus", "postgres"), ("thanatos", "postgres_replica")):
        service = compose_config(tmp_path / f"{host}.yaml", files[host]["compose.yaml"])["services"][
            "postgres"
        ]
        assert problems(f"{role}:postgres", service, set()) == []
        # The pinned image with pgBackRest, built on the machine and tagged after its recipe.
        assert service["image"].startswith("labctl/postgres:15.18-bookworm-pgbackrest-")
        assert files[host]["Dockerfile"].splitlines()[4] == "FROM docker.io/library/postgres:15.18-bookworm"
        repository = next(v for v in service["volumes"] if isinstance(v, dict))
        assert repository == {
            "type": "bind",
            "source": "/opt/ai-platform/nas/backups/postgres/pgbackrest",
            "target": "/var/lib/pgbackrest",
            "bind": {"propagation": "rslave"},
        }
        assert service["network_mode"] == "host" and service["user"] == "999:999"
        assert "data:/var/lib/postgresql/data" in service["volumes"]
    primary = yaml.safe_load(files["erebus"]["compose.yaml"])["services"]["postgres"]
    assert "./superuser-password:/run/secrets/postgres-password:ro" in primary["volumes"]
    assert primary["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-password"
    standby = yaml.safe_load(files["thanatos"]["compose.yaml"])["services"]["postgres"]
    assert standby["entrypoint"] == ["/bin/sh", "/etc/postgresql/clone-primary.sh"]
    # The image's entrypoint reads POSTGRES_PASSWORD_FILE at every start: the standby, which has no
    # such file, must not name one.
    assert not any("superuser-password" in v for v in standby["volumes"])
    assert set(standby["environment"]) == {"PGPASSFILE"}


def test_every_server_archives_its_wal_to_the_repository_on_the_nas(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path)
    images = {files[h]["compose.yaml"].split("image: ")[1].split()[0] for h in ("erebus", "thanatos")}
    assert len(images) == 1  # the standby runs what the primary runs: it may be promoted
    for host in ("erebus", "thanatos"):
        conf = files[host]["postgresql.conf"]
        assert setting(conf, "archive_mode") == "on"
        assert setting(conf, "archive_command") == "'pgbackrest --stanza=labctl archive-push %p'"
        assert setting(conf, "archive_timeout") == "60"
        backrest = files[host]["pgbackrest.conf"]
        assert "repo1-path=/var/lib/pgbackrest" in backrest and "[labctl]" in backrest
        assert "pg1-path=/var/lib/postgresql/data" in backrest
    job = files["erebus"]["postgres-backup.py"]
    compile(job, "postgres-backup.py", "exec")  # the rendered job is valid Python
    assert 'DATABASES = ["litellm", "openwebui", "grafana"]' in job
    assert 'DUMPS = pathlib.Path("/opt/ai-platform/nas/backups/postgres/dumps")' in job


def test_backups_off_render_no_archiving(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path, "-e", "postgres_backup_enabled=false", hosts=("erebus",))
    assert "archive_command" not in files["erebus"]["postgresql.conf"]
    service = yaml.safe_load(files["erebus"]["compose.yaml"])["services"]["postgres"]
    assert not any(isinstance(v, dict) for v in service["volumes"])
