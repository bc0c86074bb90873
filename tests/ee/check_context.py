"""The execution environment (execution-environment.yml) is buildable: `ansible-builder create` and checks.

    .venv/bin/python tests/ee/check_context.py

1. `ansible-galaxy collection build` into build/dist (the tarball the EE file copies into its context);
2. `ansible-builder create -c build/ee` (no registry, no container runtime: only the build context);
3. checks that the context names our requirements:
   - the base image, the python interpreter, ansible-core pinned to the version `make test` runs
     (requirements.txt) and admitted by meta/runtime.yml's requires_ansible, ansible-runner;
   - the collection: requirements.yml installs the tarball of galaxy.yml's version from a file in the
     context, and that file is this collection (MANIFEST.json: namespace, name, version);
   - the system packages: every entry of the collection's own meta/ee-bindep.txt (named by
     meta/execution-environment.yml) is in the context's bindep.txt, which bindep parses;
   - ansible-builder's own introspection (the script the image build runs) reads the collection,
     installed from that tarball, and finds the same bindep entries and no Python requirement.
Exit 0 when all hold; one line per problem and exit 1 otherwise.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.dirname(os.path.abspath(sys.executable))
CONTEXT = os.path.join(TOP, "build", "ee")


def log(msg):
    print("ee: " + msg, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, **kw)


def load_yaml(path):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def bindep_lines(path):
    with open(path, encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]


def pinned(requirements_txt, name):
    with open(requirements_txt, encoding="utf-8") as fh:
        for line in fh:
            m = re.match(r"^%s==(\S+)" % re.escape(name), line.strip(), re.IGNORECASE)
            if m:
                return m.group(1)
    return None


def check_bindep_syntax(path, problems):
    try:
        from bindep.depends import Depends  # noqa: PLC0415  (ansible-builder's dependency)
    except ImportError as exc:
        problems.append("bindep is not importable (%s): it comes with ansible-builder (requirements.txt)" % exc)
        return
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        Depends(text)
    except Exception as exc:  # noqa: BLE001  (bindep raises parsley's own error types)
        problems.append("%s does not parse as bindep: %s" % (os.path.relpath(path, TOP), exc))


def main():
    problems = []
    galaxy = load_yaml(os.path.join(TOP, "galaxy.yml"))
    version = str(galaxy["version"])
    tarball_name = "%s-%s-%s.tar.gz" % (galaxy["namespace"], galaxy["name"], version)
    ee_file = os.path.join(TOP, "execution-environment.yml")
    ee = load_yaml(ee_file)

    dist = os.path.join(TOP, "build", "dist")
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", dist, TOP],
        stdout=subprocess.DEVNULL)
    shutil.rmtree(CONTEXT, ignore_errors=True)
    run([os.path.join(BIN, "ansible-builder"), "create", "-f", ee_file, "-c", CONTEXT,
         "--output-filename", "Containerfile"])
    containerfile = os.path.join(CONTEXT, "Containerfile")
    with open(containerfile, encoding="utf-8") as fh:
        cf = fh.read()

    if ee.get("version") != 3:
        problems.append("execution-environment.yml: version %r, expected 3 (ansible-builder v3 format)" % ee.get("version"))
    base = ((ee.get("images") or {}).get("base_image") or {}).get("name")
    if not base or 'EE_BASE_IMAGE="%s"' % base not in cf:
        problems.append("Containerfile does not start from the base image %r" % base)

    deps = ee.get("dependencies") or {}
    core_ref = (deps.get("ansible_core") or {}).get("package_pip", "")
    tested = pinned(os.path.join(TOP, "requirements.txt"), "ansible-core")
    if core_ref != "ansible-core==%s" % tested:
        problems.append("execution-environment.yml installs %r; make test runs ansible-core==%s (requirements.txt)" % (core_ref, tested))
    m = re.search(r'ANSIBLE_INSTALL_REFS="([^"]*)"', cf)
    refs = m.group(1).split() if m else []
    for ref in (core_ref, (deps.get("ansible_runner") or {}).get("package_pip", "")):
        if not ref or ref not in refs:
            problems.append("Containerfile does not install %r (ANSIBLE_INSTALL_REFS=%s)" % (ref, " ".join(refs)))
    requires = (load_yaml(os.path.join(TOP, "meta", "runtime.yml")) or {}).get("requires_ansible", "")
    if tested and requires and Version(tested) not in SpecifierSet(requires):
        problems.append("meta/runtime.yml requires_ansible %r does not admit the EE's ansible-core %s" % (requires, tested))
    py = (deps.get("python_interpreter") or {}).get("python_path")
    if py and 'PYCMD="%s"' % py not in cf:
        problems.append("Containerfile does not use the python interpreter %s" % py)

    # The collection: requirements.yml names the tarball, the context holds it, it is this collection.
    reqs = load_yaml(os.path.join(CONTEXT, "_build", "requirements.yml")) or {}
    entries = [c for c in reqs.get("collections") or [] if isinstance(c, dict)]
    ours = [c for c in entries if os.path.basename(str(c.get("name", ""))) == tarball_name and c.get("type") == "file"]
    if not ours:
        problems.append("the context's requirements.yml does not install %s (type: file); it has %s" % (
            tarball_name, [c.get("name") for c in entries]))
    in_context = os.path.join(CONTEXT, "_build", ours[0]["name"]) if ours else None
    if in_context and not os.path.isfile(in_context):
        problems.append("requirements.yml names %s but the context has no such file (additional_build_files)" % ours[0]["name"])
    elif in_context:
        with tarfile.open(in_context) as tf:
            manifest = json.load(tf.extractfile("MANIFEST.json"))["collection_info"]
        got = (manifest["namespace"], manifest["name"], manifest["version"])
        if got != (galaxy["namespace"], galaxy["name"], version):
            problems.append("the context's tarball is %s.%s %s, galaxy.yml says %s.%s %s" % (
                got + (galaxy["namespace"], galaxy["name"], version)))

    # System packages: the collection's declared needs are in the context's bindep.txt.
    meta_ee = load_yaml(os.path.join(TOP, "meta", "execution-environment.yml")) or {}
    meta_deps = meta_ee.get("dependencies") or {}
    own_bindep = os.path.join(TOP, meta_deps.get("system", "bindep.txt"))
    context_bindep = os.path.join(CONTEXT, "_build", "bindep.txt")
    if not os.path.isfile(own_bindep):
        problems.append("meta/execution-environment.yml names %s, which does not exist" % os.path.relpath(own_bindep, TOP))
        wanted = []
    else:
        wanted = bindep_lines(own_bindep)
        check_bindep_syntax(own_bindep, problems)
    have = bindep_lines(context_bindep) if os.path.isfile(context_bindep) else []
    check_bindep_syntax(context_bindep, problems)
    for line in wanted:
        if line not in have:
            problems.append("the context's bindep.txt lacks %r (meta/ee-bindep.txt)" % line)
    if not wanted:
        problems.append("the collection declares no system package: an EE needs at least an ssh client")

    # ansible-builder's introspection, as the image build runs it, on the collection from the tarball.
    if in_context and os.path.isfile(in_context):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=tmp)
            run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--offline", "--no-deps", "--force",
                 "-p", tmp, in_context], env=env, stdout=subprocess.DEVNULL)
            out_bindep, out_pip = os.path.join(tmp, "bindep.txt"), os.path.join(tmp, "requirements.txt")
            res = run([sys.executable, os.path.join(CONTEXT, "_build", "scripts", "introspect.py"), "introspect",
                       "--write-bindep", out_bindep, "--write-pip", out_pip, tmp], capture_output=True, text=True)
            seen = bindep_lines(out_bindep) if os.path.isfile(out_bindep) else []
            for line in wanted:
                if not any(s.startswith(line) and "homelab.immich" in s for s in seen):
                    problems.append("introspection of the installed collection does not report %r: %s" % (line, seen or res.stdout))
            pip_lines = bindep_lines(out_pip) if os.path.isfile(out_pip) else []
            if pip_lines:
                problems.append("introspection found Python requirements %s; the collection declares none" % pip_lines)

    for p in problems:
        print("ee: " + p)
    log("context %s: %s" % (os.path.relpath(CONTEXT, TOP), "%d problem(s)" % len(problems) if problems else
        "base image, ansible-core %s, %s and %d system package(s) all named" % (tested, tarball_name, len(wanted))))
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print("ee: failed: %s (rc=%s)" % (" ".join(exc.cmd), exc.returncode))
        sys.exit(1)
