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

# Debian trixie packages without touching this machine's apt sources: a private sources list and
# package lists under $STATE (apt-get -o Dir::Etc::sourcelist=...), updated once per run that needs it.
trixie_ready=0
trixie_opts() {
  local d="$STATE/trixie-apt"
  opts=(-o "Dir::Etc::sourcelist=$d/trixie.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$d/lists" -o "APT::Get::List-Cleanup=0")
}
trixie_update() {
  [ $trixie_ready = 1 ] && return 0
  need_root setup
  local d="$STATE/trixie-apt" mirror
  mirror=$(debian_mirror)
  mkdir -p "$d/lists/partial" "$d/debs"
  # apt downloads as its unprivileged user when it can write the folder (no "unsandboxed" warning).
  if id _apt >/dev/null 2>&1; then chown _apt "$d/debs"; fi
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' "$mirror" >"$d/trixie.list"
  trixie_opts
  apt-get "${opts[@]}" update -qq
  trixie_ready=1
}
# trixie_install PKG...: download trixie's .debs of these packages (not their dependencies) and dpkg -i them.
trixie_install() {
  trixie_update
  local d="$STATE/trixie-apt" pkg
  for pkg in "$@"; do
    rm -f "$d/debs/${pkg}"_*.deb
    (cd "$d/debs" && apt-get "${opts[@]}" download "$pkg" >/dev/null)
  done
  local files=()
  for pkg in "$@"; do files+=("$d/debs/${pkg}"_*.deb); done
  dpkg -i "${files[@]}" >/dev/null
}
deb_version() { { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null || true; } | awk '$3 == "installed" {print $4}'; }

# 2. Compose v2 (Debian 12 has none: take trixie's docker-compose .deb without touching apt sources).
if docker compose version >/dev/null 2>&1; then
  say "compose present ($(docker compose version --short))"
else
  say "fetching docker-compose from Debian trixie (apt sources untouched)"
  trixie_install docker-compose
  # A docker client outside /usr/bin may look for plugins elsewhere: link the plugin where every client looks.
  if ! docker compose version >/dev/null 2>&1; then
    mkdir -p /usr/local/lib/docker/cli-plugins
    ln -sf /usr/libexec/docker/cli-plugins/docker-compose /usr/local/lib/docker/cli-plugins/docker-compose
  fi
  docker compose version >/dev/null 2>&1 || { say "compose still missing after install" >&2; exit 1; }
  say "compose installed ($(docker compose version --short))"
fi

# 3. restic and its REST server for the offsite targets (tests/lab/offsite.py): trixie's packages
# (restic 0.18, a static binary; restic-rest-server 0.13), the same private route as compose.
# Installed when absent or older than trixie's; a newer restic someone installed is left alone.
restic_have=$(deb_version restic)
rest_have=$(deb_version restic-rest-server)
case "$restic_have" in
  0.1[7-9]*|0.[2-9][0-9]*|[1-9]*) need_restic=0 ;;
  *) need_restic=1 ;;
esac
need_rest=0; [ -n "$rest_have" ] || need_rest=1
if [ $need_restic = 0 ] && [ $need_rest = 0 ]; then
  say "restic present ($(restic version | head -1)); rest-server present ($(restic-rest-server --version 2>&1 | head -1))"
else
  want=()
  [ $need_restic = 1 ] && want+=(restic)
  [ $need_rest = 1 ] && want+=(restic-rest-server)
  say "fetching ${want[*]} from Debian trixie (apt sources untouched; found: restic ${restic_have:-none}, restic-rest-server ${rest_have:-none})"
  trixie_install "${want[@]}"
  if ! command -v restic >/dev/null || ! command -v restic-rest-server >/dev/null; then
    say "restic or rest-server missing after install" >&2; exit 1
  fi
  say "installed: $(restic version | head -1); $(restic-rest-server --version 2>&1 | head -1)"
fi

# 4. The restic a managed Debian 12 host gets from its own packages (0.14.0), unpacked beside the
# lab (never installed: /usr/bin/restic stays trixie's) so the tests also run the oldest supported
# restic. Found again next time under $STATE/restic-bookworm.
old="$STATE/restic-bookworm"
if [ -x "$old/usr/bin/restic" ]; then
  say "bookworm restic for the 0.14 tests present ($("$old/usr/bin/restic" version | head -1))"
elif apt-cache policy restic 2>/dev/null | grep -q 'bookworm'; then
  need_root setup
  rm -rf "$old.tmp" && mkdir -p "$old.tmp/debs"
  if id _apt >/dev/null 2>&1; then chown _apt "$old.tmp/debs"; fi
  if (cd "$old.tmp/debs" && apt-get download "restic/bookworm" >/dev/null 2>&1) && dpkg -x "$old.tmp"/debs/restic_*.deb "$old.tmp/root"; then
    rm -rf "$old" && mv "$old.tmp/root" "$old" && rm -rf "$old.tmp"
    say "bookworm restic unpacked for the 0.14 tests ($("$old/usr/bin/restic" version | head -1))"
  else
    rm -rf "$old.tmp"
    say "bookworm restic not available here: the restic 0.14 tests will skip"
  fi
else
  say "this machine's apt has no bookworm restic: the restic 0.14 tests will skip"
fi
