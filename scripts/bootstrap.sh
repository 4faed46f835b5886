#!/usr/bin/env bash
# Installs and starts what labctl needs on a Debian 12 workstation or CI machine:
# a Docker engine (the one already there, else Debian's docker.io), the compose v2 CLI plugin (from
# Debian 13 -- Debian 12 only has compose v1 -- unless the engine has one), debootstrap and an SSH
# client and npm for the simulated lab, and a Python virtualenv with labctl in it.
# Safe to run again: every step checks before it acts.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${LABCTL_VENV:-$repo/.venv}
log() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

need_root() { [ "$(id -u)" -eq 0 ] || { echo "bootstrap: run as root (it installs packages)" >&2; exit 1; }; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_packages() {
  local missing=()
  # The workstation is a lab machine too: an engine that is already there (Docker CE, say) is the
  # one to use. Debian's docker.io is installed only where there is none (installing it next to
  # docker-ce would make apt remove docker-ce).
  if ! command -v dockerd >/dev/null 2>&1 && ! installed docker-ce && ! installed docker.io; then
    missing+=(docker.io)
  fi
  for p in debootstrap iptables rsync openssh-client; do
    installed "$p" || missing+=("$p")
  done
  # npm fetches the npm packages of the simulated lab's stand-in images (a Node.js that came with
  # its own npm is used as it is).
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    need_root
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_compose_plugin() {
  local dest=/usr/local/lib/docker/cli-plugins/docker-compose
  if docker compose version >/dev/null 2>&1; then return; fi
  need_root
  log "installing the compose v2 CLI plugin from Debian 13's docker-compose package"
  local uri tmp
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { echo "bootstrap: cannot find the Debian mirror in apt's sources" >&2; exit 1; }
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" >"$tmp/trixie.list"
  local opts=(-o "Dir::Etc::SourceList=$tmp/trixie.list" -o "Dir::Etc::SourceParts=-" -o "Dir::State::Lists=$tmp/lists")
  apt-get "${opts[@]}" update -qq
  (cd "$tmp" && apt-get "${opts[@]}" download docker-compose >/dev/null)
  dpkg -x "$tmp"/docker-compose_*.deb "$tmp/x"
  install -D -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" "$dest"
  rm -rf "$tmp"
  docker compose version
}

# promtool, amtool and the blackbox exporter: the checks of Prometheus's rules, Alertmanager's
# configuration and the probe modules that the unit tests run, from Debian's packages (unpacked
# into the virtualenv, never installed: the packages would start the servers).
install_prometheus_tools() {
  local tools=(promtool amtool prometheus-blackbox-exporter)
  local packages=(prometheus prometheus-alertmanager prometheus-blackbox-exporter)
  local tool missing=0
  for tool in "${tools[@]}"; do [ -x "$venv/bin/$tool" ] || missing=1; done
  [ "$missing" = 0 ] && return
  need_root
  log "unpacking ${tools[*]} from Debian's packages into $venv/bin"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download "${packages[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get download "${packages[@]}" >/dev/null; }; })
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/x"; done
  for tool in "${tools[@]}"; do install -m 0755 "$tmp/x/usr/bin/$tool" "$venv/bin/"; done
  rm -rf "$tmp"
}

start_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  need_root
  if [ -d /run/systemd/system ]; then
    systemctl start docker
  else
    log "starting dockerd in the background (log: /var/log/dockerd.log)"
    # A previous run's engine may have left its pid file behind.
    rm -f /var/run/docker.pid
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  echo "bootstrap: the Docker engine did not start; see /var/log/dockerd.log" >&2
  exit 1
}

install_python() {
  if [ ! -x "$venv/bin/python" ]; then
    log "creating the virtualenv $venv"
    python3 -m venv "$venv"
  fi
  local stamp="$venv/.labctl-installed" hash
  hash=$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$hash" ]; then
    log "installing labctl and its Python dependencies"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -e "$repo[dev]"
    echo "$hash" >"$stamp"
  fi
}

install_packages
install_compose_plugin
start_docker
install_python
install_prometheus_tools
log "ready: $("$venv/bin/labctl" --version 2>/dev/null || echo labctl), $(docker compose version)"
