#!/usr/bin/env bash
# ansible-test sanity from an ansible_collections/homelab/immich path (a copy of the tracked tree:
# ansible-test resolves symlinks and wants the real path under ansible_collections/).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dest="$top/build/sanity/ansible_collections/homelab/immich"
rm -rf "$dest"
mkdir -p "$dest"
# What git would ship: tracked + untracked-not-ignored files, nothing of the lab's state.
(cd "$top" && git ls-files -co --exclude-standard -z) | rsync -a --from0 --files-from=- "$top/" "$dest/"
cd "$dest"
# A git repo of its own so that ansible-test sees exactly these files.
git init -q .
git add -A >/dev/null 2>&1
py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# ansible-test's own venv mode downloads a pip bootstrap from a host we cannot reach: use a venv of
# our own (same ansible-core as .venv) into which ansible-test installs its pinned test requirements.
sv="$top/build/sanity-venv"
core=$(grep -E '^ansible-core==' "$top/requirements.txt")
if [ ! -x "$sv/bin/ansible-test" ] || ! "$sv/bin/pip" freeze 2>/dev/null | grep -qx "$core"; then
  python3 -m venv "$sv"
  "$sv/bin/pip" install -q --disable-pip-version-check "$core"
fi
export PATH="$sv/bin:$PATH"
# ansible-test bootstraps pip in its per-test venvs with a get-pip script it downloads; give it a
# local stand-in that bootstraps the interpreter's bundled pip, then installs what was asked from PyPI.
for v in $("$sv/bin/python" - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent.joinpath("_internal", "python_requirements.py").read_text()
print(" ".join(sorted(set(re.findall(r"PIP_VERSION\s*=\s*'([0-9.]+)'", src)))) or "24.2")
PY
); do
  cache="$HOME/.ansible/test/cache/get_pip_${v//./_}.py"
  mkdir -p "$(dirname "$cache")"
  cat >"$cache" <<'PY'
"""Offline stand-in for get-pip.py: bundled pip first (ensurepip), then `pip install ARGS`."""
import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
import os

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# ansible-test runs this with a trimmed environment: trust the system CA bundle explicitly.
if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
    args = ["--cert", "/etc/ssl/certs/ca-certificates.crt"] + args
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
PY
done
exec "$sv/bin/ansible-test" sanity --requirements --python "$py" --color no "$@"
