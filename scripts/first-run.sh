#!/usr/bin/env bash
# The README's main job as a new user meets it, several times in a row (default 3). Before each
# run: the simulated lab is taken down, its machine and stand-in images are removed, the project's
# state (.labctl) is deleted and the Docker engine is restarted. With --fresh-venv the virtualenv
# goes too. Each run's result and time are printed; the exit status is 1 if any run failed.
# A run takes about ten minutes on a 2-core machine: this is not part of CI.
#
#   ./scripts/first-run.sh [RUNS] [--fresh-venv]
set -uo pipefail
cd "$(dirname "$0")/.."

runs=3
fresh_venv=false
for arg in "$@"; do
  case "$arg" in
    --fresh-venv) fresh_venv=true ;;
    ''|*[!0-9]*) echo "usage: $0 [RUNS] [--fresh-venv]" >&2; exit 2 ;;
    *) runs=$arg ;;
  esac
done

# Exactly the README's main job: its line that starts with ./scripts/bootstrap.sh.
main_job=$(grep -m1 -E '^\./scripts/bootstrap\.sh && ' README.md)
[ -n "$main_job" ] || { echo "first-run: README.md has no main-job line" >&2; exit 2; }
log_dir=${FIRST_RUN_LOGS:-/tmp/labctl-first-run}
mkdir -p "$log_dir"

restart_engine() {
  if [ -d /run/systemd/system ] && systemctl is-active -q docker 2>/dev/null; then
    systemctl restart docker
  elif pgrep -x dockerd >/dev/null; then
    # No service manager (CI, this build machine): stop the engine; the main job's
    # bootstrap starts it again, as on a machine that just booted.
    pkill -x dockerd
    for _ in $(seq 1 60); do pgrep -x dockerd >/dev/null || break; sleep 1; done
  fi
}

reset_machine() {
  if [ -x .venv/bin/labctl ] && docker info >/dev/null 2>&1; then
    .venv/bin/labctl sim down >/dev/null 2>&1 || true
  fi
  if docker info >/dev/null 2>&1; then
    docker ps -aq --filter label=io.labctl.sim=true | xargs -r docker rm -f >/dev/null
    docker images --format '{{.Repository}}:{{.Tag}}' | grep '^labctl-sim/' | xargs -r docker rmi -f >/dev/null
  fi
  rm -rf .labctl
  if $fresh_venv; then rm -rf .venv; fi
  restart_engine
}

failed=0
for run in $(seq 1 "$runs"); do
  reset_machine
  started=$SECONDS
  if bash -c "$main_job" >"$log_dir/run-$run.log" 2>&1; then
    echo "run $run: succeeded in $((SECONDS - started))s (log: $log_dir/run-$run.log)"
  else
    echo "run $run: FAILED after $((SECONDS - started))s (log: $log_dir/run-$run.log)"
    tail -n 30 "$log_dir/run-$run.log" | sed 's/^/    /'
    failed=1
  fi
done
exit $failed
