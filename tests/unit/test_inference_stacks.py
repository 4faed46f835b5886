"""Inference stacks rendered for every GPU machine of the real inventory (NVIDIA, AMD ROCm), checked
by `docker compose config` and the hardening rules: what the simulated lab cannot run (no GPU)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_playbook
from tests.hardening import problems

MACHINES = ["orpheus", "kratos", "nyx", "hades"]


def render(copy, tmp_path: Path, role: str) -> dict[str, dict]:
    """Each machine's compose file for `role`, rendered by Ansible from the inventory copy."""
    playbook = tmp_path / "render.yml"
    out = tmp_path / "out"
    out.mkdir()
    # compose_stack's macros, where a playbook's templates are looked up (as inside the role).
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "compose").symlink_to(
        ROOT / "roles" / "compose_stack" / "templates" / "compose"
    )
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render",
                    "hosts": ",".join(MACHINES),
                    "connection": "local",
                    "gather_facts": False,
                    "vars": {
                        "labctl_instance": "{{ hostvars | labctl_instance(groups, inventory_hostname, '"
                        + role
                        + "') }}",
                        "_compose_stack_files_hash": "0",
                    },
                    "roles": [{"role": "compose_stack", "when": False}, {"role": role, "when": False}],
                    "tasks": [
                        {
                            "name": "Render",
                            "ansible.builtin.template": {
                                "src": str(ROOT / "roles" / role / "templates" / "compose.yaml.j2"),
                                "dest": f"{out}/{{{{ inventory_hostname }}}}.yaml",
                                "mode": "0600",
                            },
                        }
                    ],
                }
            ]
        )
    )
    proc = run_playbook("-i", str(copy.dir), str(playbook), env={**copy.env, "ANSIBLE_STRATEGY": "linear"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {m: yaml.safe_load((out / f"{m}.yaml").read_text()) for m in MACHINES}


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (compose config)")
def test_ollama_renders_per_vendor_and_passes_compose_config(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path, "ollama")
    for machine, data in files.items():
        service = data["services"]["ollama"]
        assert (
            problems("ollama", service, {"192.168.50.20", "192.168.50.21", "192.168.50.22", "192.168.50.23"})
            == []
        )
        path = tmp_path / f"{machine}.yaml"
        path.write_text(yaml.safe_dump(data))
        check = subprocess.run(
            ["docker", "compose", "-f", str(path), "config", "--quiet"], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
    nvidia = files["orpheus"]["services"]["ollama"]
    assert nvidia["image"].endswith(":0.6.5")
    assert nvidia["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    amd = files["hades"]["services"]["ollama"]
    assert amd["image"].endswith("-rocm") and amd["devices"] == ["/dev/kfd", "/dev/dri"]
    # labctl plan puts two models on hades: both may stay loaded.
    assert amd["environment"]["OLLAMA_MAX_LOADED_MODELS"] == "2"
    assert json.dumps(amd).count("11434") >= 1
