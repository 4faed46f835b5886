"""labctl's offline commands against the real inventory and a broken copy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LABCTL = str(Path(sys.executable).parent / "labctl")


def labctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LABCTL, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_validate_accepts_the_real_inventory():
    proc = labctl("validate")
    assert proc.returncode == 0, proc.stderr
    assert "inventory is valid" in proc.stdout


def test_validate_names_host_and_variable_and_exits_1(inventory_copy):
    inventory_copy.edit("host_vars/nyx.yml", lambda d: d["gpu"].update(vendor="matrox"))
    proc = labctl("--inventory", str(inventory_copy.hosts_file), "validate", "--json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["ok"] is False
    assert result["problems"] == [
        {
            "host": "nyx",
            "variable": "gpu.vendor",
            "message": "unknown GPU vendor 'matrox' (known: nvidia, amd)",
        }
    ]


def test_services_json_lists_every_instance():
    proc = labctl("services", "--json")
    assert proc.returncode == 0
    instances = json.loads(proc.stdout)
    assert len(instances) == 10
    assert {i["service"] for i in instances} == {"node_exporter"}
    assert all(i["health_url"].endswith(":9100/metrics") for i in instances)


def test_services_for_one_host():
    proc = labctl("services", "--host", "moros", "--json")
    assert [i["host"] for i in json.loads(proc.stdout)] == ["moros"]


def test_sim_commands_need_the_simulated_lab(tmp_path):
    (tmp_path / "site.yml").write_text("---\n")
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    proc = subprocess.run(
        [LABCTL, "--sim", "validate"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "labctl sim up" in proc.stderr


def test_version():
    proc = labctl("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("labctl ")
