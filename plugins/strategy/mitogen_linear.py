"""Mitogen for Ansible's linear strategy, found without naming the virtualenv's path.

ansible.cfg selects it (`strategy = mitogen_linear`). Mitogen keeps one Python interpreter per
machine for the whole run instead of starting one per task: a no-op converge of the simulated lab
takes about half as long (docs/simulated-lab.md has the numbers). To run without it, set
ANSIBLE_STRATEGY=linear.
"""

from __future__ import annotations

DOCUMENTATION = """
    name: mitogen_linear
    short_description: Ansible's linear strategy over Mitogen connections
    description:
      - The mitogen_linear strategy of Mitogen for Ansible (PyPI package mitogen).
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: E402

__all__ = ["StrategyModule"]
