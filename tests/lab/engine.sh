#!/usr/bin/env bash
# Make sure a Docker engine and Compose v2 are usable; install them from Debian packages if not.
# Idempotent: every step checks first and says what it did (or why it did nothing).
set -euo pipefail

say() { printf 'lab-engine: %s\n' "$*"; }
STATE=${LAB_STATE_DIR:-/var/tmp/homelab-immich-lab}
mkdir -p "$STATE"

need_root() {
  if [ "$(id -u)" != 0 ]; then
    say "installing system packages needs root: run 'sudo make $1' or install them yourself" >&2
    exit 1
  fi
}

# Debian mirror as configured on this machine (deb822 or one-line format), never hard-coded.
debian_mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  fi
  [ -n "$uri" ] || { say "no Debian mirror found in /etc/apt sources" >&2; exit 1; }
  printf '%s\n' "${uri%/}"
}

apt_updated=0
apt_install() {
  need_root setup
  if [ $apt_updated = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  say "installing Debian packages: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Host tools the lab and the collection's roles use on this (controller + managed) host.
missing=()
for pair in debootstrap:debootstrap rsync:rsync zstd:zstd ssh:openssh-client curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; else say "host tools present (debootstrap rsync zstd ssh curl)"; fi
# Checkers that make tests stricter (shellcheck for ansible-test sanity, systemd-analyze for the
# timer units): installed when possible, never a reason to stop.
optional=()
for pair in shellcheck:shellcheck systemd-analyze:systemd; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || optional+=("${pair#*:}")
done
if [ ${#optional[@]} -gt 0 ]; then
  apt_install "${optional[@]}" || say "optional checkers not installed (${optional[*]}): the tests that use them say so"
fi

# 1. The engine.
if docker info >/dev/null 2>&1; then
  say "docker engine already running ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
else
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io
  fi
  say "starting dockerd in the background (log: $STATE/dockerd.log)"
  # No systemd here: run the daemon detached; it outlives this script.
  nohup dockerd >"$STATE/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { say "dockerd did not come up; see $STATE/dockerd.log" >&2; tail -20 "$STATE/dockerd.log" >&2; exit 1; }
  say "docker engine up ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
fi

# 2. Compose v2 (Debian 12 has none: take trixie's docker-compose .deb without touching apt sources).
if docker compose version >/dev/null 2>&1; then
  say "compose present ($(docker compose version --short))"
else
  need_root setup
  mirror=$(debian_mirror)
  d="$STATE/trixie-apt"
  mkdir -p "$d/lists/partial" "$d/debs"
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' "$mirror" >"$d/trixie.list"
  opts=(-o "Dir::Etc::sourcelist=$d/trixie.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$d/lists" -o "APT::Get::List-Cleanup=0")
  say "fetching docker-compose from Debian trixie (apt sources untouched)"
  apt-get "${opts[@]}" update -qq
  (cd "$d/debs" && apt-get "${opts[@]}" download docker-compose >/dev/null)
  dpkg -i "$d"/debs/docker-compose_*.deb >/dev/null
  # A docker client outside /usr/bin may look for plugins elsewhere: link the plugin where every client looks.
  if ! docker compose version >/dev/null 2>&1; then
    mkdir -p /usr/local/lib/docker/cli-plugins
    ln -sf /usr/libexec/docker/cli-plugins/docker-compose /usr/local/lib/docker/cli-plugins/docker-compose
  fi
  docker compose version >/dev/null 2>&1 || { say "compose still missing after install" >&2; exit 1; }
  say "compose installed ($(docker compose version --short))"
fi
