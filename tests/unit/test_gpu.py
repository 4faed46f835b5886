"""The GPU preflight: each vendor tool's output read, compared with the declared hardware, and a
machine whose driver does not answer stopped with its name and card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labctl import gpu
from tests.conftest import run_playbook

# Outputs in the tools' own formats (nvidia-smi 550, rocm-smi 6.x, amd-smi 24.x).
NVIDIA_4090 = "0, NVIDIA GeForce RTX 4090, 24564, 550.107.02\n"
NVIDIA_TWO = "0, NVIDIA H100 80GB HBM3, 81559, 550.54.15\n1, NVIDIA H100 80GB HBM3, 81559, 550.54.15\n"
ROCM_SMI = json.dumps(
    {
        f"card{i}": {
            "Card Series": "Radeon RX 7900 XTX",
            "Card Model": "0x744c",
            "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]",
            "VRAM Total Memory (B)": "25753026560",
            "VRAM Total Used Memory (B)": "1409286144",
        }
        for i in range(2)
    }
    | {"system": {"Driver version": "6.8.5"}}
)
AMD_SMI = json.dumps(
    [
        {
            "gpu": i,
            "asic": {"market_name": "Radeon RX 7900 XTX"},
            "vram": {"type": "GDDR6", "size": {"value": 24560, "unit": "MB"}},
        }
        for i in range(2)
    ]
)
DECLARED_4090 = {"vendor": "nvidia", "model": "GeForce RTX 4090", "vram_gb": 24, "count": 1}
DECLARED_HADES = {"vendor": "amd", "model": "Radeon RX 7900 XTX", "vram_gb": 24, "count": 2}


def test_nvidia_smi():
    [card] = gpu.parse_nvidia_smi(NVIDIA_4090)
    assert (card.name, card.vram_gb, card.driver) == ("NVIDIA GeForce RTX 4090", 23.99, "550.107.02")
    assert [c.index for c in gpu.parse_nvidia_smi(NVIDIA_TWO)] == [0, 1]


def answer(tool, rc=0, stdout="", stderr=""):
    return {"tool": tool, "rc": rc, "stdout": stdout, "stderr": stderr}


# amd-smi of ROCm 6.0: VRAM as vram_size_mb; a single card as a bare object.
AMD_SMI_60 = json.dumps(
    [
        {"gpu": i, "asic": {"market_name": "Radeon RX 7900 XTX"}, "vram": {"vram_size_mb": 24560}}
        for i in range(2)
    ]
)
ROCM_SMI_WITH_IGPU = json.dumps(
    {
        **json.loads(ROCM_SMI),
        "card2": {"Card Series": "Raphael", "VRAM Total Memory (B)": "536870912"},
    }
)


@pytest.mark.parametrize(
    ("tool", "output"),
    [
        ("rocm-smi", ROCM_SMI),
        ("amd-smi", AMD_SMI),
        ("amd-smi", AMD_SMI_60),
        ("amd-smi", json.dumps({"gpu_data": json.loads(AMD_SMI)})),
        (
            "rocm-smi",
            "WARNING: Unlocked monitor_devices lock; it should have already been unlocked.\n" + ROCM_SMI,
        ),
        ("rocm-smi", ROCM_SMI_WITH_IGPU),
    ],
)
def test_amd_tools(tool, output):
    result = gpu.check("hades", DECLARED_HADES, [answer(tool, stdout=output)])
    assert result["ok"], result["problems"]
    assert [c["name"] for c in result["cards"]] == ["Radeon RX 7900 XTX"] * 2


def test_a_single_card_as_a_bare_object():
    single = json.dumps(json.loads(AMD_SMI_60)[0])
    assert [c.vram_gb for c in gpu.parse_amd_smi(single)] == [23.98]


def test_amd_smi_that_fails_falls_back_to_rocm_smi():
    answers = [answer("amd-smi", 1, stderr="AmdSmiLibraryException"), answer("rocm-smi", stdout=ROCM_SMI)]
    result = gpu.check("hades", DECLARED_HADES, answers)
    assert result["ok"] and result["tool"] == "rocm-smi"


@pytest.mark.parametrize(
    ("declared", "words"),
    [
        ({**DECLARED_4090, "count": 2}, "declares 2 x GeForce RTX 4090; the driver reports 1"),
        (
            {**DECLARED_4090, "model": "GeForce RTX 3060"},
            "is a NVIDIA GeForce RTX 4090, not the declared GeForce RTX 3060",
        ),
        ({**DECLARED_4090, "vram_gb": 12}, "has 23.99 GiB, not the declared 12"),
        ({**DECLARED_4090, "model": "GeForce RTX 4090 D"}, "not the declared GeForce RTX 4090 D"),
    ],
)
def test_cards_that_differ_from_the_inventory(declared, words):
    result = gpu.check("orpheus", declared, [answer("nvidia-smi", stdout=NVIDIA_4090)])
    assert not result["ok"] and any(words in p and p.startswith("orpheus:") for p in result["problems"])


def test_a_driver_that_does_not_answer_names_host_and_gpu():
    stderr = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    result = gpu.check("kratos", DECLARED_4090, [answer("nvidia-smi", 9, stderr=stderr)])
    [problem] = result["problems"]
    assert "kratos" in problem and "GeForce RTX 4090" in problem and "couldn't communicate" in problem


@pytest.mark.parametrize(
    ("declared", "tool", "output", "words"),
    [
        (DECLARED_HADES, "rocm-smi", "not json", "did not print JSON"),
        (DECLARED_HADES, "amd-smi", '[{"gpu": 0, "asic": "N/A", "vram": "N/A"}]', "no VRAM size for GPU 0"),
        (DECLARED_HADES, "amd-smi", '{"gpu_data": []}', "listed no card"),
        (DECLARED_4090, "nvidia-smi", "garbage line", "unexpected nvidia-smi line"),
        (
            DECLARED_4090,
            "nvidia-smi",
            "0, NVIDIA GB10, [N/A], 580.95.05",
            "no memory size for GPU 0 (NVIDIA GB10)",
        ),
    ],
)
def test_output_that_is_not_the_tools_is_a_problem_not_a_crash(declared, tool, output, words):
    result = gpu.check("box", declared, [answer(tool, stdout=output)])
    assert not result["ok"] and words in result["problems"][0]


def _play_locally(tmp_path: Path, play: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """One play on this machine (connection local) as the machine named by its `hosts`."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"connection": "local", "gather_facts": False, **play}]))
    return run_playbook(
        "-i",
        f"{play['hosts']},",
        str(playbook),
        env={"ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_STRATEGY": "linear"},
        timeout=120,
    )


def _preflight(
    tmp_path: Path, stub: str | None, passthrough: bool = True
) -> subprocess.CompletedProcess[str]:
    """The gpu_facts role on this machine (connection local), with a test double of nvidia-smi
    on the PATH (or none installed): what a GPU machine's preflight does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if stub is not None:
        tool = bin_dir / "nvidia-smi"
        tool.write_text(f"#!/bin/sh\n{stub}\n")
        tool.chmod(0o755)
    return _play_locally(
        tmp_path,
        {
            "name": "Preflight",
            "hosts": "orpheus",
            "environment": {"PATH": f"{bin_dir}:/usr/bin:/bin"},
            "vars": {"gpu": DECLARED_4090, "labctl_gpu_passthrough": passthrough},
            "roles": ["gpu_facts"],
        },
    )


def test_the_preflight_passes_on_the_declared_card(tmp_path):
    proc = _preflight(tmp_path, f"printf '{NVIDIA_4090}'")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 x GeForce RTX 4090 as declared" in proc.stdout


@pytest.mark.parametrize(
    ("stub", "words"),
    [
        (
            'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver." >&2;'
            " exit 9",
            "does not answer",
        ),
        (None, "no nvidia driver tool is installed for GeForce RTX 4090 (tried nvidia-smi)"),
        ("printf '0, NVIDIA GeForce RTX 3060, 12288, 550.107.02\\n'", "not the declared GeForce RTX 4090"),
    ],
)
def test_the_preflight_stops_the_machine_naming_it_and_its_gpu(tmp_path, stub, words):
    proc = _preflight(tmp_path, stub)
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    assert "orpheus" in out and words in out and "GeForce RTX 4090" in out


def test_no_preflight_where_containers_get_no_gpu(tmp_path):
    """The simulated lab (labctl_gpu_passthrough: false) has no driver to ask."""
    proc = _preflight(tmp_path, None, passthrough=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "as declared" not in proc.stdout


def test_the_preflight_and_health_ask_the_same_tools():
    defaults = yaml.safe_load((Path(__file__).parents[2] / "roles/gpu_facts/defaults/main.yml").read_text())
    assert defaults["gpu_facts_tools"] == gpu.TOOLS
    assert defaults["gpu_facts_search_path"] == gpu.SEARCH_PATH


def test_health_probes_gpu_machines_only_where_the_check_is_on():
    spec = gpu.probe_spec({"vendor": "amd", "model": "Radeon RX 7900 XTX", "vram_gb": 24, "count": 2}, True)
    assert spec is not None
    assert [argv[0] for argv in spec["tools"]] == ["amd-smi", "rocm-smi"]
    assert gpu.probe_spec(DECLARED_4090, False) is None
    assert gpu.probe_spec(None, True) is None


DECLARED_HADES = {"vendor": "amd", "model": "Radeon RX 7900 XTX", "vram_gb": 24, "count": 2}


def _rocm_plumbing(tmp_path: Path, kfd: bool, render_nodes: int) -> subprocess.CompletedProcess[str]:
    """The gpu_rocm role on this machine (connection local) with its devices pointed at files in
    tmp_path: what an AMD machine with (or without) the amdgpu driver loaded looks like to it."""
    dri = tmp_path / "dri"
    dri.mkdir()
    for n in range(render_nodes):
        (dri / f"renderD{128 + n}").touch()
    (dri / "card0").touch()
    if kfd:
        (tmp_path / "kfd").touch()
    return _play_locally(
        tmp_path,
        {
            "name": "ROCm plumbing",
            "hosts": "hades",
            "vars": {
                "gpu": DECLARED_HADES,
                "gpu_rocm_kfd_device": str(tmp_path / "kfd"),
                "gpu_rocm_dri_dir": str(dri),
            },
            "roles": ["gpu_rocm"],
            "post_tasks": [{"ansible.builtin.debug": {"msg": "gids={{ gpu_rocm_device_gids | to_json }}"}}],
        },
    )


def test_rocm_plumbing_finds_the_groups_that_own_the_devices(tmp_path):
    proc = _rocm_plumbing(tmp_path, kfd=True, render_nodes=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"gids=[{tmp_path.stat().st_gid}]" in proc.stdout
    assert "2 render node(s) for its Radeon RX 7900 XTX" in " ".join(proc.stdout.split())


@pytest.mark.parametrize(
    ("kfd", "render_nodes", "words"),
    [(False, 2, "kfd is missing"), (True, 0, "dri has no render node")],
    ids=["no-kfd", "no-render-node"],
)
def test_rocm_plumbing_stops_a_machine_without_the_amdgpu_driver(tmp_path, kfd, render_nodes, words):
    proc = _rocm_plumbing(tmp_path, kfd=kfd, render_nodes=render_nodes)
    assert proc.returncode != 0
    out = " ".join(proc.stdout.split())
    assert f"hades: {tmp_path}/" in out and words in out
    assert "containers cannot use its Radeon RX 7900 XTX: the amdgpu kernel driver is not loaded" in out
