#!/usr/bin/env bash
# `make test`: every check of the project, each step timed; one closing summary line.
# Runs all steps even when one fails, exits non-zero when any failed.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
out="$top/tests/output"
rm -rf "$out/junit"
mkdir -p "$out/junit"
export PATH="$top/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$top/build/collections"
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0

declare -a names results secs
passed=0 failed=0 skipped=0
t0=$(date +%s)

step() { # step NAME CMD...: run, record, never abort the run
  local name=$1; shift
  local s rc
  s=$(date +%s)
  printf '\n===== %s =====\n' "$name"
  "$@"
  rc=$?
  # pytest exit code 5 = no test collected: a step with nothing to run yet, not a failure.
  if [ $rc -eq 5 ] && [ "${name#pytest}" != "$name" ]; then rc=0; echo "(no tests collected)"; fi
  names+=("$name"); secs+=("$(( $(date +%s) - s ))")
  if [ $rc -eq 0 ]; then results+=(ok); else results+=("FAILED rc=$rc"); fi
}

pytest_step() { # pytest_step NAME PATHS...: junit XML per step, counted in the summary
  local name=$1; shift
  step "pytest $name" pytest -q -p no:cacheprovider --junitxml="$out/junit/$name.xml" -o junit_family=xunit2 "$@"
}

step "ruff" ruff check plugins roles molecule tests bench
step "yamllint" yamllint -s .
step "changelog fragments" antsibull-changelog lint
step "ansible-lint (production)" ansible-lint --profile production
pytest_step unit tests/unit
pytest_step docs tests/docs/test_docs_static.py
step "ansible-test sanity" bash tests/sanity.sh
step "galaxy build + install" bash tests/build-install.sh
step "execution environment" python tests/ee/check_context.py
step "docs site" bash -c 'python tests/docs/build_site.py && python tests/docs/check_site.py build/docs'
pytest_step integration tests/integration
# The key stories again with a server image that is not ours (API seeding only), as on the official images.
step "pytest foreign-image" bash tests/foreign-image.sh --junitxml="$out/junit/foreign-image.xml" -o junit_family=xunit2
# Every runnable shell block of README.md and docs/*.md against a lab instance, one step per doc.
mapfile -t runnable_docs < <(python tests/docs/doc_blocks.py --runnable-docs)
[ "${#runnable_docs[@]}" -gt 0 ] || step "doc commands (no runnable doc found)" false
for doc in "${runnable_docs[@]}"; do
  pytest_step "doc-commands-$(basename "$doc" .md)" "tests/docs/test_doc_commands.py::test_runnable_blocks_of_doc_run_against_the_lab[$doc]"
done
for dir in molecule/*/; do
  scenario=$(basename "$dir")
  [ -f "molecule/$scenario/molecule.yml" ] || continue
  step "molecule $scenario" molecule test -s "$scenario"
done

# Count pytest cases from the JUnit files, plus every non-pytest step as one check.
read -r jp jf js < <(python3 - "$out/junit" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
p = f = s = 0
for path in glob.glob(sys.argv[1] + "/*.xml"):
    for ts in ET.parse(path).getroot().iter("testsuite"):
        t, e, fl, sk = (int(ts.get(k, 0)) for k in ("tests", "errors", "failures", "skipped"))
        p += t - e - fl - sk; f += e + fl; s += sk
print(p, f, s)
PY
)
passed=$jp failed=$jf skipped=$js
printf '\n===== summary (%ss) =====\n' "$(( $(date +%s) - t0 ))"
for i in "${!names[@]}"; do
  printf '%-34s %-12s %5ss\n' "${names[$i]}" "${results[$i]}" "${secs[$i]}"
  if [ "${names[$i]#pytest}" = "${names[$i]}" ]; then
    if [ "${results[$i]}" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  elif [ "${results[$i]}" != ok ] && [ "$failed" -eq 0 ]; then
    failed=1  # pytest itself failed (collection error) without a failing case in its XML
  fi
done
echo
echo "make test: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
