#!/usr/bin/env bash
# The suite's key stories with a server image that is not the lab's own (as with the official
# ghcr.io/immich-app/immich-server): our stand-in retagged plays that role, so the lab seeds through
# Immich's API only (it never writes the tables the real migrations own). With registry access, point
# LAB_IMAGE_SERVER (and LAB_IMAGE_POSTGRES) at the official images instead: docs/ci-drill.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
own=$(bash tests/lab/images/build.sh --print | sed -n 's/^LAB_IMAGE_SERVER=//p')
foreign=${LAB_IMAGE_SERVER:-homelab-immich-lab/foreign-server:stand-in}
if [ -z "${LAB_IMAGE_SERVER:-}" ]; then
  docker tag "$own" "$foreign"
  trap 'docker rmi "$foreign" >/dev/null 2>&1 || true' EXIT
fi
echo "foreign-image: LAB_IMAGE_SERVER=$foreign (API seeding only)"
LAB_IMAGE_SERVER=$foreign exec pytest -q -p no:cacheprovider "$@" \
  tests/integration/test_drill.py tests/integration/test_engine.py::test_emptied_photos_never_replace_good_sets
