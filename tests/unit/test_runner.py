"""labctl's view of a run: a failure a `rescue` handled is not a failure, a run that touched no
machine is not a success (real ansible-playbook runs against the control machine itself)."""

from __future__ import annotations

import sys

import yaml

from labctl.runner import run_playbook
from tests.conftest import ROOT


def run(tmp_path, tasks, **kwargs):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "here": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
                    }
                }
            }
        )
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump([{"name": "Probe", "hosts": "all", "gather_facts": False, "tasks": tasks}])
    )
    return run_playbook(ROOT, str(playbook), [inventory], **kwargs)


def test_a_rescued_failure_is_not_reported(tmp_path):
    result = run(
        tmp_path,
        [
            {
                "name": "Try",
                "block": [{"name": "Fails", "ansible.builtin.command": "false", "changed_when": False}],
                "rescue": [{"name": "Recovers", "ansible.builtin.debug": {"msg": "recovered"}}],
            }
        ],
    )
    here = result.hosts["here"]
    assert result.succeeded, result
    assert here.rescued == 1 and here.failed == 0 and here.errors == []
    assert here.status == "ok"


def test_the_failure_that_stopped_a_host_is_the_one_reported(tmp_path):
    result = run(
        tmp_path,
        [
            {
                "name": "Try",
                "block": [{"name": "Fails first", "ansible.builtin.command": "false", "changed_when": False}],
                "rescue": [{"name": "Recovers", "ansible.builtin.debug": {"msg": "recovered"}}],
            },
            {"name": "Fails for real", "ansible.builtin.fail": {"msg": "this one counts"}},
        ],
    )
    here = result.hosts["here"]
    assert not result.succeeded and here.status == "failed"
    assert here.errors == ["Fails for real: this one counts"]


def test_a_run_that_matched_no_machine_is_not_a_success(tmp_path):
    result = run(tmp_path, [{"name": "Nothing", "ansible.builtin.debug": {"msg": "x"}}], limit="nobody")
    assert not result.succeeded
    assert result.hosts == {}


def test_host_keys_are_checked(tmp_path):
    """ansible-runner would turn SSH host key checking off; labctl keeps it on."""
    result = run(
        tmp_path,
        [
            {
                "name": "Read",
                "ansible.builtin.set_fact": {
                    "checking": "{{ lookup('ansible.builtin.config', 'HOST_KEY_CHECKING') }}"
                },
            }
        ],
    )
    assert result.hosts["here"].facts["checking"] is True
