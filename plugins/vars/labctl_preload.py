"""Imports labctl's catalog code into Ansible's main process; gives no variables.

Ansible forks a worker per task and machine, and every worker that templates any filter loads
every filter plugin. labctl's filters import the catalog and its schema (pydantic): about 0.2
CPU-seconds each time, paid by hundreds of workers in one deploy. Imported here -- Ansible loads
vars plugins in the process the workers are forked from -- it is already in every worker.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = """
    name: labctl_preload
    short_description: Preload labctl's catalog code in Ansible's main process
    description:
      - Provides no variables. Importing labctl's catalog and validation modules here makes them
        part of every worker process Ansible forks, instead of each worker importing them again.
"""

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import labctl.catalog  # noqa: E402
import labctl.health  # noqa: E402
import labctl.validate  # noqa: E402, F401


class VarsModule(BaseVarsPlugin):  # type: ignore[misc]
    # Not enabled, so never asked for variables: loading the module is its whole job.
    REQUIRES_ENABLED = True

    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, Any]:
        return {}
