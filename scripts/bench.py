#!/usr/bin/env python3
"""Benchmark the simulated lab (run after `labctl sim up` and a first `labctl --sim deploy all`).

One run measures, in alternating rounds so that the machine's drift hits both sides alike:
- a no-op converge of site.yml with the project's ansible.cfg (SSH, Mitogen, pipelining,
  ControlPersist, labctl's catalog code preloaded), through labctl's runner;
- the same playbook under Ansible's defaults (plain SSH without pipelining, linear strategy,
  5 forks, no preloading, default SSH arguments);
- `labctl --sim health all`, end to end.
It prints the medians, the ratio defaults / project, the changed tasks (a no-op must change
nothing) and the module executions per machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labctl.runner import run_playbook

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / ".labctl" / "sim"
ENV = {"LABCTL_VAULT_PASSWORD_FILE": str(SIM / "vault-password")}
ANSIBLE_DEFAULTS = {
    **ENV,
    "ANSIBLE_PIPELINING": "False",
    "ANSIBLE_FORKS": "5",
    "ANSIBLE_STRATEGY": "linear",
    "ANSIBLE_VARS_PLUGINS": str(ROOT / ".labctl" / "no-vars-plugins"),
    "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=60s",
    "ANSIBLE_SSH_RETRIES": "0",
}


def converge(env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    result = run_playbook(ROOT, "site.yml", [SIM / "inventory"], env=env)
    return {
        "rc": result.rc,
        "wall_s": round(time.perf_counter() - started, 1),
        "changed": {n: h.changed_tasks for n, h in sorted(result.hosts.items()) if h.changed},
        "modules_per_host": {n: h.modules for n, h in sorted(result.hosts.items())},
        "errors": [e for h in result.hosts.values() for e in h.errors] + result.errors,
    }


def health() -> dict[str, Any]:
    labctl = str(Path(sys.executable).parent / "labctl")
    started = time.perf_counter()
    proc = subprocess.run(
        [labctl, "--sim", "health", "all", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **ENV},
        check=False,
    )
    return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (project, defaults, health)")
    parser.add_argument("--no-defaults", action="store_true", help="skip the Ansible-defaults converges")
    args = parser.parse_args()
    rounds = []
    for index in range(args.rounds):
        entry = {"project": converge(ENV), "health": health()}
        if not args.no_defaults:
            entry["defaults"] = converge(ANSIBLE_DEFAULTS)
        rounds.append(entry)
        print(
            f"round {index + 1}: " + ", ".join(f"{k} {v['wall_s']}s" for k, v in entry.items()),
            file=sys.stderr,
        )

    def median(kind: str) -> float:
        return round(statistics.median(float(r[kind]["wall_s"]) for r in rounds), 1)

    report: dict[str, object] = {
        "rounds": args.rounds,
        "noop_converge_project_s": median("project"),
        "health_all_s": round(statistics.median(float(r["health"]["wall_s"]) for r in rounds), 2),
        "modules_per_host": rounds[-1]["project"]["modules_per_host"],
        "changed_in_noop": [r["project"]["changed"] for r in rounds],
        "all_ok": all(r[k]["rc"] == 0 for r in rounds for k in r),
        "runs": rounds,
    }
    if not args.no_defaults:
        report["noop_converge_ansible_defaults_s"] = median("defaults")
        report["ratio_defaults_over_project"] = round(median("defaults") / median("project"), 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
