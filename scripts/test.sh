#!/usr/bin/env bash
# The whole test suite: linters, the simulated lab end to end under molecule (create, converge
# site.yml, idempotence, verify, destroy), then the unit tests. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/bootstrap.sh
# shellcheck disable=SC1091
. .venv/bin/activate

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
timed() { local t0=$SECONDS; "$@"; echo "   ($((SECONDS - t0))s)"; }

step "lint: yamllint, ansible-lint (production profile), ruff, mypy"
timed yamllint --strict .
timed ansible-lint
timed ruff check labctl plugins tests scripts
timed ruff format --check labctl plugins tests scripts
timed mypy

step "simulated lab: molecule test (create, converge, idempotence, verify, destroy)"
# molecule links the simulated lab's inventory before `create` writes it.
mkdir -p .labctl/sim/inventory
# A run stopped before its destroy leaves molecule's state saying the lab exists (create would be
# skipped): start from no state; `create` (labctl sim up) takes over whatever machines are there.
molecule reset >/dev/null
timed molecule test

step "unit tests: catalog, validation, playbooks, CLI"
pytest tests/unit -q -n auto
