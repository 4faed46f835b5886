"""Inference stacks rendered for every GPU machine of the real inventory (NVIDIA, AMD ROCm) and for
a machine without a GPU (llama.cpp on the CPU), checked by `docker compose config` and the
hardening rules: the production renderings the simulated lab does not run (no GPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, lab_group, run_playbook
from tests.hardening import compose_config, problems

MACHINES = ["orpheus", "kratos", "nyx", "hades"]


def render(copy, tmp_path: Path, role: str, machines: list[str] = MACHINES) -> dict[str, dict]:
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
                    "hosts": ",".join(machines),
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
    return {m: yaml.safe_load((out / f"{m}.yaml").read_text()) for m in machines}


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (compose config)")
def test_ollama_renders_per_vendor_and_passes_compose_config(inventory_copy, tmp_path):
    files = render(inventory_copy, tmp_path, "ollama")
    for machine, data in files.items():
        service = data["services"]["ollama"]
        assert (
            problems("ollama", service, {"192.168.50.20", "192.168.50.21", "192.168.50.22", "192.168.50.23"})
            == []
        )
        compose_config(tmp_path / f"{machine}.yaml", yaml.safe_dump(data))
    nvidia = files["orpheus"]["services"]["ollama"]
    assert nvidia["image"].endswith(":0.6.5")
    assert nvidia["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    amd = files["hades"]["services"]["ollama"]
    assert amd["image"].endswith("-rocm") and amd["devices"] == ["/dev/kfd", "/dev/dri"]
    # labctl plan puts two models on hades: both may stay loaded.
    assert amd["environment"]["OLLAMA_MAX_LOADED_MODELS"] == "2"
    assert json.dumps(amd).count("11434") >= 1


def compose_config_ok(path: Path, data: dict) -> None:
    compose_config(path, yaml.safe_dump(data))


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (compose config)")
def test_llamacpp_renders_for_a_machine_without_a_gpu(inventory_copy, tmp_path):
    """One inventory entry for a CPU machine and a GGUF model for it: the upstream CPU server
    image, no GPU devices, the router over the placed model, hardened."""
    inventory_copy.edit(
        "hosts.yml",
        lambda d: (
            lab_group(d, "inference").setdefault("hosts", {}).update(ceres={"lab_address": "192.168.50.25"})
        ),
    )
    (inventory_copy.dir / "host_vars" / "ceres.yml").write_text("inference_memory_gb: 16\n")
    inventory_copy.edit(
        "group_vars/all/models.yml",
        lambda d: d["labctl_models"].append(
            {
                "name": "qwen2.5:0.5b",
                "backends": ["ollama", "llamacpp"],
                "source": {"llamacpp": "/srv/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"},
                "parameters_b": 0.5,
                "only_on": ["ceres"],
            }
        ),
    )
    data = render(inventory_copy, tmp_path, "llamacpp", ["ceres"])["ceres"]
    service = data["services"]["llamacpp"]
    assert problems("llamacpp", service, {"192.168.50.25"}) == []
    assert service["image"] == "ghcr.io/ggml-org/llama.cpp:server-b11312"
    assert "deploy" not in service and "devices" not in service
    assert service["command"][service["command"].index("--models-max") + 1] == "1"
    assert service["ports"] == ["192.168.50.25:8080:8080"]
    compose_config_ok(tmp_path / "ceres.yaml", data)


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI (compose config)")
def test_vllm_renders_per_vendor_with_the_plan_share_and_the_vault_token(inventory_copy, tmp_path):
    """A vLLM model on an NVIDIA machine and one on the two-card AMD machine: the CUDA or ROCm
    image, tensor parallel over the cards, the model's share of their memory, the HF token only
    as a reference to the stack's .env."""
    inventory_copy.edit(
        "group_vars/all/models.yml",
        lambda d: d["labctl_models"].extend(
            [
                {
                    "name": "qwen2.5:3b-instruct",
                    "backends": ["vllm"],
                    "source": {"vllm": "Qwen/Qwen2.5-3B-Instruct"},
                    "vram_gb": 6,
                    "context": 16384,
                    "hosts": ["kratos"],
                },
                {
                    "name": "qwen2.5:0.5b-instruct",
                    "backends": ["vllm"],
                    "source": {"vllm": "Qwen/Qwen2.5-0.5B-Instruct"},
                    "vram_gb": 2,
                    "hosts": ["hades"],
                },
            ]
        ),
    )
    files = render(inventory_copy, tmp_path, "vllm", ["kratos", "hades"])
    for machine, data in files.items():
        service = data["services"]["vllm"]
        assert problems("vllm", service, {"192.168.50.21", "192.168.50.23"}) == []
        assert service["environment"]["HF_TOKEN"] == "${HF_TOKEN}"
        compose_config_ok(tmp_path / f"{machine}.yaml", data)
    nvidia = files["kratos"]["services"]["vllm"]
    assert nvidia["image"] == "docker.io/vllm/vllm-openai:v0.11.0"
    assert nvidia["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    args = nvidia["command"]
    assert args[args.index("--model") + 1] == "Qwen/Qwen2.5-3B-Instruct"
    assert args[args.index("--served-model-name") + 1] == "qwen2.5:3b-instruct"
    assert args[args.index("--tensor-parallel-size") + 1] == "1"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.25"  # 6 of 24 GiB
    assert args[args.index("--max-model-len") + 1] == "16384"
    amd = files["hades"]["services"]["vllm"]
    assert amd["image"].startswith("docker.io/rocm/vllm:") and amd["devices"] == ["/dev/kfd", "/dev/dri"]
    args = amd["command"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.05"  # 2 of 2 x 24 GiB, rounded up


def test_vllm_serves_one_model_per_machine_and_needs_a_checkpoint(inventory_copy):
    from labctl.validate import validate

    inventory_copy.edit(
        "group_vars/all/models.yml",
        lambda d: d["labctl_models"].extend(
            [
                {
                    "name": "a",
                    "backends": ["vllm"],
                    "source": {"vllm": "org/a"},
                    "vram_gb": 1,
                    "hosts": ["kratos"],
                },
                {
                    "name": "b",
                    "backends": ["vllm"],
                    "source": {"vllm": "not a repo"},
                    "vram_gb": 1,
                    "hosts": ["kratos"],
                },
            ]
        ),
    )
    found = {(p.host, p.variable) for p in validate(inventory_copy.load())}
    assert found == {("kratos", "labctl_models[5].source.vllm"), ("kratos", "labctl_models")}
