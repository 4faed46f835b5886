#!/usr/bin/env bash
# Run once, as root, on every machine labctl will manage (the simulated lab runs this same script in
# each of its machines). It creates the admin user Ansible connects as: an SSH key, passwordless sudo,
# and the programs Ansible needs on the machine (python3, sudo, an SSH server).
#
#   sudo ./prepare-machine.sh --user labctl --key "$(cat ~/.ssh/id_ed25519.pub)"
#
# Safe to run again: it changes only what differs, and its last line says "changed" or "unchanged".
set -euo pipefail

user=labctl
key=
while [ $# -gt 0 ]; do
  case "$1" in
    --user) user=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "prepare-machine: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "prepare-machine: run as root" >&2; exit 1; }
[ -n "$key" ] || { echo "prepare-machine: --key 'ssh-ed25519 AAAA...' is required" >&2; exit 2; }
case "$user" in
  ''|*[!a-z0-9_-]*) echo "prepare-machine: '$user' is not a valid user name" >&2; exit 2 ;;
esac

changed=unchanged

missing=()
for p in python3 sudo openssh-server; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  changed=changed
fi

if ! id "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
  changed=changed
fi
home=$(getent passwd "$user" | cut -d: -f6)

install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
keys="$home/.ssh/authorized_keys"
if ! grep -qxF "$key" "$keys" 2>/dev/null; then
  printf '%s\n' "$key" >>"$keys"
  changed=changed
fi
chown "$user:$user" "$keys"
chmod 0600 "$keys"

sudoers="/etc/sudoers.d/50-$user"
rule="$user ALL=(ALL:ALL) NOPASSWD: ALL"
if [ "$(cat "$sudoers" 2>/dev/null)" != "$rule" ]; then
  tmp=$(mktemp)
  printf '%s\n' "$rule" >"$tmp"
  visudo -c -q -f "$tmp"
  install -m 0440 -o root -g root "$tmp" "$sudoers"
  rm -f "$tmp"
  changed=changed
fi

systemctl enable --now ssh >/dev/null 2>&1 || true
echo "$changed"
