"""Secrets reach stacks only through their 0600 files: a full converge with the whole output
captured shows neither the old nor the new value of a rotated secret."""

from __future__ import annotations

import re
import subprocess

from tests.lab.conftest import ROOT, SIM_INVENTORY, box_of, labctl, labctl_json, sim_env, sim_secret
from tests.lab.test_redis import redis


def test_a_rotated_secret_is_applied_and_never_shown(by_name):
    old = sim_secret("redis_password")
    rotate = labctl("--sim", "init", "--rotate", "redis_password")
    assert rotate.returncode == 0, rotate.stderr
    assert "redeploy to apply: redis on erebus" in " ".join(rotate.stdout.split())
    new = sim_secret("redis_password")
    assert new != old

    playbook = [
        str(ROOT / ".venv" / "bin" / "ansible-playbook"),
        "site.yml",
        "-i",
        str(SIM_INVENTORY),
        "-v",
        "--diff",
    ]
    env = {**sim_env(), "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    converge = subprocess.run(playbook, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    output = converge.stdout + converge.stderr
    assert converge.returncode == 0, output[-3000:]
    assert re.search(r"^erebus\s+: ok=\d+\s+changed=[1-9]", output, re.M), "the rotation reached erebus"
    assert old not in output, "the old secret appeared in Ansible's output"
    assert new not in output, "the new secret appeared in Ansible's output"

    client, address = box_of("orpheus"), by_name["erebus"].address
    assert redis(client, address, "AUTH $PW\nPING", new) == ["+OK", "+PONG"]
    assert redis(client, address, "AUTH $PW", old)[0].startswith("-WRONGPASS")
    rc, health = labctl_json("--sim", "health", "erebus")
    assert rc == 0, health
