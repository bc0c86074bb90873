#!/usr/bin/env bash
# Build the lab's images offline: debootstrap from the Debian mirror apt already uses, then
# `docker import` (bases) and `docker commit` (our files on top). Every tag carries a hash of its
# recipe, so an unchanged recipe is never rebuilt.
#   build.sh            build what is missing, print NAME=TAG lines
#   build.sh --print    only print the tags the current recipes give
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
lab=$(dirname "$here")
STATE=${LAB_STATE_DIR:-/var/tmp/homelab-immich-lab}
REPO=homelab-immich-lab
say() { printf 'lab-images: %s\n' "$*" >&2; }

mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  printf '%s\n' "${uri%/}"
}

hash_of() { cat "$@" | sha256sum | cut -c1-12; }

# base NAME SUITE PACKAGES: one debootstrap, cached as an image.
BOOKWORM_PKGS=postgresql-15,python3,redis-server,openssh-server,rsync,gzip,zstd,procps,sudo
TRIXIE_PKGS=postgresql-17,postgresql-17-pgvector,gzip,zstd,procps
base_tag() { printf '%s/base-%s:%s' "$REPO" "$1" "$(printf '%s %s %s' "$1" "$2" "$(grep -E '^(BOOKWORM|TRIXIE)_PKGS' "$here/build.sh")" | sha256sum | cut -c1-12)"; }

build_base() {
  local suite=$1 pkgs=$2 tag
  tag=$(base_tag "$suite" "$pkgs")
  if docker image inspect "$tag" >/dev/null 2>&1; then printf '%s\n' "$tag"; return; fi
  local dir="$STATE/rootfs-$suite"
  rm -rf "$dir"
  say "debootstrap $suite ($pkgs) into $dir"
  debootstrap --variant=minbase --components=main,contrib --include="$pkgs" "$suite" "$dir" "$(mirror)" >"$STATE/debootstrap-$suite.log" 2>&1 \
    || { tail -30 "$STATE/debootstrap-$suite.log" >&2; exit 1; }
  # Small and quiet: no docs, no apt lists, no init scripts that fight the entrypoint.
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/var/cache/apt/*.bin
  say "docker import $tag"
  tar -C "$dir" -c . | docker import - "$tag" >/dev/null
  rm -rf "$dir"
  printf '%s\n' "$tag"
}

# derive TAGNAME BASE FILE:DEST... -- CHANGE...: base + files, committed with Dockerfile changes.
derive() {
  local name=$1 base=$2; shift 2
  local files=() changes=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  changes=("$@")
  local srcs=() f
  for f in "${files[@]}"; do srcs+=("$lab/${f%%:*}"); done
  local h
  h=$( { printf '%s\n' "$base" "${files[@]}" "${changes[@]}"; cat "${srcs[@]}" </dev/null; } | sha256sum | cut -c1-12)
  local tag="$REPO/$name:$h"
  if [ "${PRINT_ONLY:-0}" = 1 ] || docker image inspect "$tag" >/dev/null 2>&1; then printf '%s\n' "$tag"; return; fi
  say "building $tag"
  local cid
  cid=$(docker create "$base" /bin/true)
  for f in "${files[@]}"; do
    docker cp "$lab/${f%%:*}" "$cid:${f#*:}" >/dev/null
  done
  local args=() c
  for c in "${changes[@]}"; do args+=(--change "$c"); done
  docker commit "${args[@]}" "$cid" "$tag" >/dev/null
  docker rm "$cid" >/dev/null
  printf '%s\n' "$tag"
}

PRINT_ONLY=0
[ "${1:-}" = --print ] && PRINT_ONLY=1
mkdir -p "$STATE"
if [ $PRINT_ONLY = 1 ]; then
  bookworm=$(base_tag bookworm "$BOOKWORM_PKGS"); trixie=$(base_tag trixie "$TRIXIE_PKGS")
else
  bookworm=$(build_base bookworm "$BOOKWORM_PKGS")
  trixie=$(build_base trixie "$TRIXIE_PKGS")
fi

# purged TAGNAME BASE PACKAGE...: BASE with Debian packages purged (dpkg, offline: no mirror needed), committed.
purged() {
  local name=$1 base=$2; shift 2
  local h tag cid
  h=$(printf '%s\n' "$base" "$@" | sha256sum | cut -c1-12)
  tag="$REPO/$name:$h"
  if [ "${PRINT_ONLY:-0}" = 1 ] || docker image inspect "$tag" >/dev/null 2>&1; then printf '%s\n' "$tag"; return; fi
  say "building $tag (purging $*)"
  cid=$(docker create "$base" dpkg --purge "$@")
  docker start -a "$cid" >&2
  docker commit "$cid" "$tag" >/dev/null
  docker rm "$cid" >/dev/null
  printf '%s\n' "$tag"
}

PG_CHANGES=(
  'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' 'CMD []'
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' 'ENV PGDATA=/var/lib/postgresql/data'
)
pg15=$(derive postgres "$bookworm" images/postgres-entrypoint.sh:/usr/local/bin/docker-entrypoint.sh -- "${PG_CHANGES[@]}" 'ENV PG_MAJOR=15')
pg17=$(derive postgres "$trixie" images/postgres-entrypoint.sh:/usr/local/bin/docker-entrypoint.sh -- "${PG_CHANGES[@]}" 'ENV PG_MAJOR=17')
# PG 17 WITHOUT pgvector (trixie's postgresql-17 alone): a target that lacks the dump's vector extension, for the
# vector-portable restore (Immich's own images always ship one; the stand-in runs there with LAB_ALLOW_NO_VECTOR).
trixie_novector=$(purged base-trixie-novector "$trixie" postgresql-17-pgvector)
pg17nv=$(derive postgres "$trixie_novector" images/postgres-entrypoint.sh:/usr/local/bin/docker-entrypoint.sh -- "${PG_CHANGES[@]}" 'ENV PG_MAJOR=17')
# The immich-server stand-in: like the real image, its own HEALTHCHECK (immich-healthcheck), WORKDIR
# /usr/src/app (where Immich <= 1.136 resolved its relative paths) and immich-admin on PATH.
server=$(derive server "$bookworm" images/server.py:/usr/local/bin/immich-standin images/immich-admin:/usr/local/bin/immich-admin \
  immich_schema.sql:/usr/local/share/immich_schema.sql immich_schema_v1130.sql:/usr/local/share/immich_schema_v1130.sql -- \
  'ENTRYPOINT ["python3", "/usr/local/bin/immich-standin"]' 'CMD []' 'EXPOSE 2283' 'WORKDIR /usr/src/app' \
  'ENV IMMICH_PORT=2283' \
  'HEALTHCHECK --interval=1s --timeout=5s --start-period=5s --retries=60 CMD ["python3", "/usr/local/bin/immich-standin", "healthcheck"]')
redis=$(derive redis "$bookworm" -- 'ENTRYPOINT ["redis-server", "--save", "", "--protected-mode", "no"]' 'CMD []')
sshhost=$(derive sshhost "$bookworm" images/sshhost-entrypoint.sh:/usr/local/bin/sshhost-entrypoint.sh -- 'ENTRYPOINT ["/usr/local/bin/sshhost-entrypoint.sh"]' 'CMD []')
dumper=$(derive dumper "$bookworm" dumper/dumper.py:/usr/local/bin/dumper -- 'ENTRYPOINT ["python3", "/usr/local/bin/dumper"]' 'CMD []')
printf 'LAB_IMAGE_POSTGRES15=%s\nLAB_IMAGE_POSTGRES17=%s\nLAB_IMAGE_POSTGRES17_NOVECTOR=%s\nLAB_IMAGE_SERVER=%s\nLAB_IMAGE_REDIS=%s\nLAB_IMAGE_SSHHOST=%s\nLAB_IMAGE_DUMPER=%s\n' \
  "$pg15" "$pg17" "$pg17nv" "$server" "$redis" "$sshhost" "$dumper"
