"""The NAS and the machines' NFS client. This kernel has no NFS, so nothing here can mount an
export: the NAS is a user-space NFS server (nfs-ganesha) whose exports are read over the network
with a user-space client (libnfs-utils), and the machines' mounts are checked as systemd sees
them (the units its fstab generator makes, verified by systemd-analyze, the automount armed).
What a user relies on: the exports are served to the lab, every machine describes them with
options that never block a boot, and a machine whose NAS is down boots and serves its stacks."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from tests.lab.conftest import SIM, box_of, failing, labctl, labctl_json
from tests.lab.test_llamacpp import call, chat

EXPORTS = {"models": "/mnt/tank/ai/models", "backups": "/mnt/tank/ai/backups"}
MOUNTS = "/opt/ai-platform/nas"
UNIT = r"opt-ai\x2dplatform-nas-{}.{}"
AUTOFS = Path("/dev/autofs").exists()


def nfs_url(path: str) -> str:
    return f"nfs://truenas.home.arpa{path}?version=4"


def test_the_nas_serves_the_simulated_model_over_nfs_to_the_lab():
    box = box_of("nyx")
    listing = box.check_output(f"nfs-ls {nfs_url(EXPORTS['models'])!r}")
    assert "labctl-tiny.gguf" in listing
    box.check_output(
        f"rm -f /tmp/tiny.gguf && nfs-cp {nfs_url(EXPORTS['models'] + '/labctl-tiny.gguf')!r} /tmp/tiny.gguf"
    )
    served = box.check_output("sha256sum /tmp/tiny.gguf").split()[0]
    assert served == hashlib.sha256((SIM / "models" / "labctl-tiny.gguf").read_bytes()).hexdigest()


def test_a_machine_can_write_a_backup_to_the_nas():
    # A new name each run: the NAS keeps its disk, and nfs-cp never overwrites.
    stamp = str(time.time_ns())
    remote = nfs_url(f"{EXPORTS['backups']}/mark-erebus-{stamp}.txt")
    box = box_of("erebus")
    box.check_output(f"echo {stamp} > /tmp/mark.txt")
    box.check_output(f"nfs-cp /tmp/mark.txt {remote!r}")
    assert box_of("thanatos").check_output(f"nfs-cat {remote!r}") == stamp


@pytest.mark.parametrize("machine", ["erebus", "nyx", "local"])
def test_every_machine_describes_the_exports_for_systemd(machine):
    box = box_of(machine)
    fstab = box.file("/etc/fstab").content_string
    for name, path in EXPORTS.items():
        line = next(line for line in fstab.splitlines() if line.split()[1:2] == [f"{MOUNTS}/{name}"])
        source, _, kind, options = line.split()[:4]
        assert source == f"truenas.home.arpa:{path}" and kind == "nfs4"
        assert {"_netdev", "nofail", "x-systemd.automount", "hard"} <= set(options.split(","))
        units = [f"/run/systemd/generator/{UNIT.format(name, kind)}" for kind in ("mount", "automount")]
        verify = box.run("systemd-analyze verify --man=no " + " ".join(f"'{u}'" for u in units))
        assert verify.rc == 0, verify.stderr
        automount = box.run(f"systemctl is-active '{UNIT.format(name, 'automount')}'").stdout.strip()
        # Armed where the kernel has autofs; on a build machine without /dev/autofs the simulated
        # lab says so (nfs_client_start_automount: false) and the units are written, not started.
        assert automount == ("active" if AUTOFS else "inactive")


def test_a_machine_boots_and_serves_its_models_with_the_nas_down(by_name):
    assert labctl("sim", "stop", "truenas").returncode == 0
    try:
        assert labctl("sim", "stop", "nyx").returncode == 0
        start = labctl("sim", "start", "nyx")
        assert start.returncode == 0, start.stderr
        assert box_of("nyx").run("systemctl is-system-running --wait").stdout.strip() == "running"
        # The machine's engine starts its stacks on its own (restart policies), in bounded time.
        deadline = time.monotonic() + 90
        while True:
            rc, health = labctl_json("--sim", "health", "nyx")
            if rc == 0 or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert rc == 0, failing(health)
        status, body = call(f"http://{by_name['nyx'].address}:8080/v1/chat/completions", chat("llama3.1:8b"))
        assert status == 200, body
    finally:
        started = labctl("sim", "start", "truenas")
        assert started.returncode == 0 and "NFS answered" in started.stdout, started.stderr
    # The NAS kept its disk across the power cycle.
    assert "labctl-tiny.gguf" in box_of("nyx").check_output(f"nfs-ls {nfs_url(EXPORTS['models'])!r}")
