#!/usr/bin/env python3
"""Converge benchmark on the simulated lab (run after `labctl sim up`).

Runs site.yml through labctl's runner with the project's ansible.cfg and reports wall time, changed
tasks and the module executions per host (labctl.runner counts tasks that ran code on the machine).
`--ansible-defaults` runs the same playbook with pipelining off, 5 forks and no fact cache.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from labctl.runner import run_playbook

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE_DEFAULTS = {
    "ANSIBLE_PIPELINING": "False",
    "ANSIBLE_FORKS": "5",
    "ANSIBLE_GATHERING": "implicit",
    "ANSIBLE_GATHER_SUBSET": "all",
    "ANSIBLE_CACHE_PLUGIN": "memory",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ansible-defaults", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    result = run_playbook(
        ROOT,
        "site.yml",
        [ROOT / ".labctl" / "sim" / "inventory"],
        check=args.check,
        env=ANSIBLE_DEFAULTS if args.ansible_defaults else None,
        keep_facts=not args.ansible_defaults,
    )
    mode = ("ansible defaults" if args.ansible_defaults else "project ansible.cfg") + (
        ", check" if args.check else ""
    )
    report = {
        "mode": mode,
        "rc": result.rc,
        "wall_s": round(time.perf_counter() - started, 1),
        "changed_total": sum(h.changed for h in result.hosts.values()),
        "modules_per_host": {n: h.modules for n, h in sorted(result.hosts.items())},
        "errors": [e for h in result.hosts.values() for e in h.errors] + result.errors,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
