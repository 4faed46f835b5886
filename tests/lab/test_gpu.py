"""The GPU preflight and health against each GPU machine's driver -- here a stand-in for the
driver's reporting tool (sim/host/gpu-driver-standin, a test double: there are no GPUs), run by
the real preflight role and health probe -- and a driver that stops answering."""

from __future__ import annotations

import yaml

from tests.lab.conftest import ROOT, box_of, failing, labctl, labctl_json

DECLARED = {
    name: yaml.safe_load((ROOT / "host_vars" / f"{name}.yml").read_text())["gpu"]
    for name in ("orpheus", "kratos", "nyx", "hades")
}


def test_health_reads_every_gpu_machine_s_cards_from_its_driver(machines):
    rc, result = labctl_json("--sim", "health", "all")
    assert rc == 0, failing(result)
    gpu_checks = {
        name: next((c for c in report["checks"] if c["check"] == "GPU"), None)
        for name, report in result["hosts"].items()
    }
    assert {name for name, check in gpu_checks.items() if check} == set(DECLARED)
    for name, gpu in DECLARED.items():
        # hades has no amd-smi: rocm-smi, the next tool, answers for its two cards.
        tool = "rocm-smi" if gpu["vendor"] == "amd" else "nvidia-smi"
        assert gpu_checks[name] == {
            "check": "GPU",
            "ok": True,
            "detail": f"{gpu.get('count', 1)} x {gpu['model']} as declared ({tool})",
            "kind": "service",
        }


def _snapshot(box) -> tuple[str, str]:
    """Every file of the platform tree (path, size, mtime) and every container's state."""
    files = box.check_output("find /opt/ai-platform -printf '%p %s %T@\\n' | sort")
    containers = box.check_output("docker ps -a --format '{{.Names}} {{.ID}} {{.State}}' | sort")
    return files, containers


def test_a_machine_whose_gpu_driver_fails_is_stopped_before_anything_is_touched():
    box = box_of("kratos")
    # Something a deploy would put right: if the preflight let the deploy through, it would be.
    box.check_output("docker stop node_exporter-node-exporter-1")
    assert labctl("sim", "gpu-fail", "kratos").returncode == 0
    try:
        before = _snapshot(box)
        rc, result = labctl_json("--sim", "deploy", "kratos")
        assert rc != 0
        kratos = result["hosts"]["kratos"]
        assert kratos["status"] == "failed" and kratos["changed"] == 0 and kratos["changed_tasks"] == []
        message = " ".join(kratos["errors"])
        assert "kratos: the nvidia driver does not answer for GeForce RTX 3090" in message
        assert "couldn't communicate with the NVIDIA driver" in message
        assert _snapshot(box) == before

        rc, health = labctl_json("--sim", "health", "kratos")
        assert rc == 1
        report = health["hosts"]["kratos"]
        failed = {c["check"]: c["detail"] for c in report["checks"] if not c["ok"]}
        assert set(failed) == {"GPU", "node_exporter containers", "node_exporter endpoint"}
        assert failed["GPU"].startswith("the nvidia driver does not answer for GeForce RTX 3090")
        assert "GPU driver" in report["heal_first"]
    finally:
        assert labctl("sim", "gpu-repair", "kratos").returncode == 0
        rc, result = labctl_json("--sim", "deploy", "kratos")
    assert rc == 0, failing(result)
    rc, health = labctl_json("--sim", "health", "kratos")
    assert rc == 0 and health["hosts"]["kratos"]["status"] == "healthy", failing(health)


def test_sim_refuses_to_fail_the_gpu_of_a_machine_without_one():
    proc = labctl("sim", "gpu-fail", "erebus")
    assert proc.returncode == 1
    assert "erebus declares no GPU" in " ".join((proc.stdout + proc.stderr).split())
