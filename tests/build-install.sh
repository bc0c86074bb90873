#!/usr/bin/env bash
# The release artefact works: `ansible-galaxy collection build`, then install into a temp path.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dist="$top/build/dist"
rm -rf "$dist" && mkdir -p "$dist"
ansible-galaxy collection build --force --output-path "$dist" "$top"
tarball=$(ls "$dist"/homelab-immich-*.tar.gz)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Only the temp path: with the dev tree on ANSIBLE_COLLECTIONS_PATH galaxy would call it installed already.
ANSIBLE_COLLECTIONS_PATH="$tmp" ansible-galaxy collection install --offline --no-deps --force -p "$tmp" "$tarball"
inst="$tmp/ansible_collections/homelab/immich"
test -f "$inst/MANIFEST.json" && test -f "$inst/FILES.json"
# What build_ignore keeps out stays out; what users need is in.
for must in plugins/modules roles playbooks meta/runtime.yml; do test -e "$inst/$must" || { echo "missing from tarball: $must"; exit 1; }; done
for mustnot in tests/lab bench .venv build; do test ! -e "$inst/$mustnot" || { echo "should not ship: $mustnot"; exit 1; }; done
ANSIBLE_COLLECTIONS_PATH="$tmp" ansible-doc -l homelab.immich | tee "$tmp/doc.txt"
echo "installed $(basename "$tarball"): $(wc -l <"$tmp/doc.txt") modules listed"
