"""Playbook layout: variables are visible from every playbook, validation stops bad input before any
host is touched, and every role documents its variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, lab_group

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())
PLAYBOOKS = sorted(p.name for p in (ROOT / "playbooks").glob("*.yml"))


def run_playbook(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **(env or {})},
        timeout=300,
    )


def test_playbooks_under_playbooks_see_group_and_host_vars():
    """A playbook in playbooks/ reads group_vars/all (labctl_domain), group_vars/lab and host_vars."""
    probe = ROOT / "playbooks" / f"_probe_{uuid.uuid4().hex}.yml"
    probe.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Probe",
                    "hosts": "orpheus",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Show",
                            "ansible.builtin.debug": {
                                "msg": "{{ {'domain': labctl_domain, 'user': ansible_user, 'gpu': gpu.vendor}"
                                " | to_json }}"
                            },
                        }
                    ],
                }
            ]
        )
    )
    try:
        proc = run_playbook(
            str(probe.relative_to(ROOT)), env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
        )
    finally:
        probe.unlink()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    msg = result["plays"][0]["tasks"][0]["hosts"]["orpheus"]["msg"]
    assert json.loads(msg) == {"domain": "home.arpa", "user": "labctl", "gpu": "nvidia"}


@pytest.mark.parametrize("playbook", ["site.yml", *[f"playbooks/{p}" for p in PLAYBOOKS]])
def test_every_playbook_validates_first(playbook):
    plays = yaml.safe_load((ROOT / playbook).read_text())
    first = plays[0]
    while "ansible.builtin.import_playbook" in first:
        target = (ROOT / playbook).parent / first["ansible.builtin.import_playbook"]
        playbook = str(target.relative_to(ROOT))
        first = yaml.safe_load(target.read_text())[0]
    assert [r["role"] for r in first["roles"]] == ["validate_inventory"]
    assert first["gather_facts"] is False and "always" in first["tags"]


def test_bad_inventory_stops_site_yml_before_any_host_is_touched(inventory_copy):
    """Two problems: both named; no task of any role runs; no host is contacted (every host is given
    a Docker connection to a container that does not exist, so any contact would fail as unreachable)."""
    inventory_copy.edit("host_vars/kratos.yml", lambda d: d["gpu"].update(vendor="intel"))
    inventory_copy.edit(
        "hosts.yml",
        lambda d: lab_group(d, "tier_databases", "db_primary")["hosts"].update(thanatos=None),
    )
    (inventory_copy.dir / "group_vars" / "lab.yml").write_text(
        "ansible_connection: community.docker.docker_api\nansible_host: labctl-no-such-container\n"
    )
    proc = run_playbook("site.yml", "-i", str(inventory_copy.hosts_file))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "host 'kratos', variable 'gpu.vendor': unknown GPU vendor 'intel'" in out
    assert "host 'thanatos', variable 'db_primary': only one primary is allowed" in out
    assert "TASK [common" not in out and "TASK [docker" not in out and "Gathering Facts" not in out
    assert "UNREACHABLE" not in out


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_document_every_default(role):
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"] or {}
    defaults_file = ROOT / "roles" / role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    required = {k for k, v in options.items() if v.get("required")}
    assert set(options) - required == set(defaults)
    assert all(k.startswith(f"{role}_") for k in options), "public variables carry the role's prefix"
    for name, option in options.items():
        assert option.get("description"), f"{role}: {name} has no description"
