#!/usr/bin/env python3
"""Converge benchmark on the simulated lab (run after `labctl sim up`).

Runs site.yml with the project's ansible.cfg and reports wall time, changed tasks and the number of
module executions per host (tasks that ran code on the machine: action plugins that only evaluate
on the controller -- assert, debug, set_fact, includes -- are not counted). `--ansible-defaults`
runs the same playbook with pipelining off, 5 forks and no fact cache, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import ansible_runner

ROOT = Path(__file__).resolve().parents[1]
CONTROLLER_ONLY = {
    "assert",
    "debug",
    "set_fact",
    "include_tasks",
    "include_role",
    "import_role",
    "meta",
    "validate_argument_spec",
    "include_vars",
    "fail",
    "set_stats",
}


def run(defaults: bool, check: bool) -> dict[str, Any]:
    modules: Counter[str] = Counter()
    changed: Counter[str] = Counter()

    def on_event(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_ok", "runner_on_failed"):
            action = str(data.get("task_action", "")).rsplit(".", 1)[-1]
            if action not in CONTROLLER_ONLY and data.get("host"):
                modules[data["host"]] += 1
            if (data.get("res") or {}).get("changed"):
                changed[data["host"]] += 1
        return True

    env = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    if defaults:
        env.update(
            {
                "ANSIBLE_PIPELINING": "False",
                "ANSIBLE_FORKS": "5",
                "ANSIBLE_GATHERING": "implicit",
                "ANSIBLE_GATHER_SUBSET": "all",
                "ANSIBLE_CACHE_PLUGIN": "memory",
            }
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as private:
        kwargs: dict[str, Any] = {} if defaults else {"fact_cache": str(ROOT / ".labctl" / "facts")}
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(ROOT),
            playbook="site.yml",
            cmdline=f"-i {ROOT / '.labctl/sim/inventory'}" + (" --check" if check else ""),
            envvars=env,
            event_handler=on_event,
            quiet=True,
            **kwargs,
        )
    return {
        "mode": ("ansible defaults" if defaults else "project ansible.cfg") + (", check" if check else ""),
        "rc": result.rc,
        "wall_s": round(time.perf_counter() - started, 1),
        "changed_total": sum(changed.values()),
        "modules_per_host": dict(sorted(modules.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ansible-defaults", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.ansible_defaults, args.check), indent=2))


if __name__ == "__main__":
    main()
