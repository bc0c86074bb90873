"""Every runnable shell block of README.md and docs/*.md, run against a lab instance (issue 13, item 5).

Blocks are found by tests/docs/doc_blocks.py; a block whose first line is `# example: <why>` is not run.
Each doc's runnable blocks run in order, as bash scripts (`set -euo pipefail`), from the repository's top
(where README's `make` and `.venv/bin/python tests/lab/lab.py` commands are meant to run), on a lab
instance of their own (PG 15, small seed) that holds a real Immich automatic backup at the path the docs use.

One doc per test (tests/run-all.sh runs one step per doc: `doc_blocks.py --runnable-docs`), with:

- HOME and ANSIBLE_COLLECTIONS_PATH in a fresh folder per doc: a doc that installs the collection
  (`ansible-galaxy collection install ...`) installs it there; any other doc gets it installed there
  from the tarball first;
- the lab's inventory substituted: `inventory.yml` / `inventory.ini` are the lab's, in the same two
  formats, with one host `photos.lan` (ansible_connection local) whose host_vars point the roles at the
  lab instance (immich_project_dir) and at this doc's own backup, report and scratch folders;
- `/opt/immich` (the docs' project folder) is the lab instance's folder, a set id (20261124T220000Z) is
  the newest set of this doc's backups, and a `lab.py` instance name gets a unique suffix.
"""
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import doc_blocks  # noqa: E402

TOP = doc_blocks.TOP
VENV_BIN = os.path.join(TOP, ".venv", "bin")
HOST = "photos.lan"
SET_ID = re.compile(r"\b\d{8}T\d{6}Z\b")
# The Immich automatic backup the docs restore from (docs/home-server.md): made real in the lab.
IMMICH_BACKUP = "library/backups/immich-db-backup-1732485600000.sql.gz"
BLOCK_TIMEOUT = 900


def docs_with_runnable_blocks():
    out = []
    for path in doc_blocks.doc_files():
        runnable = [b for b in doc_blocks.blocks(path) if not b.example]
        if runnable:
            out.append(pytest.param(path, id=os.path.relpath(path, TOP)))
    return out


@pytest.fixture(scope="module")
def lab():
    """The lab (tests/lab); no Docker engine is a failure here, not a skip: these blocks must run."""
    res = subprocess.run(["docker", "info"], capture_output=True, check=False)
    if res.returncode != 0:
        pytest.fail("no Docker engine: run `make setup` first (tests/lab/engine.sh)", pytrace=False)
    import lab as lab_module  # noqa: PLC0415  (tests/lab is on sys.path through tests/conftest.py)

    lab_module.images()
    return lab_module


@pytest.fixture(scope="module")
def instance(lab):
    inst = lab.Instance("doc%s" % uuid.uuid4().hex[:6], pg=15)
    try:
        inst.up(seed="small")
        # The docs restore one of Immich's own automatic backups: a real one (pg_dumpall | gzip) at that path.
        path = os.path.join(inst.root, IMMICH_BACKUP)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            dump = subprocess.Popen(["docker", "exec", inst.db, "pg_dumpall", "--clean", "--if-exists", "-U", inst.user],
                                    stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-c"], stdin=dump.stdout, stdout=fh, check=True)
            assert dump.wait() == 0, "pg_dumpall in the lab failed"
        yield inst
    finally:
        if os.environ.get("LAB_KEEP") != "1":
            inst.down(purge=True)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(dist), TOP],
                   check=True, capture_output=True)
    (path,) = dist.glob("*.tar.gz")
    return str(path)


class Project:
    """A doc's world: the lab inventory (YAML and INI), its folders, the environment blocks run in."""

    def __init__(self, root, inst):
        self.root = root
        self.inst = inst
        self.backups = os.path.join(root, "backups")
        self.collections = os.path.join(root, "collections")
        home = os.path.join(root, "home")
        for d in (self.backups, self.collections, home, os.path.join(root, "host_vars")):
            os.makedirs(d, exist_ok=True)
        host_vars = {
            "ansible_connection": "local",
            "ansible_python_interpreter": os.path.join(VENV_BIN, "python"),
            "immich_project_dir": inst.root,
            "immich_backup_targets": [{"path": self.backups}],
            "immich_restore_source": self.backups,
            "immich_restore_point_dir": os.path.join(root, "restore-points"),
            "immich_report_dir": os.path.join(root, "reports"),
            "immich_drill_report_dir": os.path.join(root, "reports"),
            "immich_drill_scratch_root": os.path.join(root, "scratch"),
        }
        with open(os.path.join(root, "host_vars", HOST + ".yml"), "w") as fh:
            fh.write("---\n" + yaml.safe_dump(host_vars, sort_keys=False))
        self.inventory_yml = os.path.join(root, "inventory.yml")
        with open(self.inventory_yml, "w") as fh:
            fh.write("---\n" + yaml.safe_dump({"all": {"children": {"immich": {"hosts": {HOST: None}}}}}))
        self.inventory_ini = os.path.join(root, "inventory.ini")
        with open(self.inventory_ini, "w") as fh:
            fh.write("[immich]\n%s\n" % HOST)
        self.env = dict(os.environ, HOME=home, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR="1",
                        ANSIBLE_FORCE_COLOR="0", PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
        for var in ("ANSIBLE_COLLECTIONS_PATHS", "ANSIBLE_CONFIG", "ANSIBLE_INVENTORY", "ANSIBLE_ROLES_PATH"):
            self.env.pop(var, None)
        self.suffix = uuid.uuid4().hex[:6]

    def newest_set(self):
        found = []
        for dirpath, dirs, _files in os.walk(self.backups):
            found.extend(os.path.join(dirpath, d) for d in dirs if SET_ID.fullmatch(d))
        if not found:
            raise AssertionError("the doc names a set id, but no earlier block of it made a backup set")
        return os.path.basename(max(found, key=os.path.basename))

    def substitute(self, script):
        script = re.sub(r"(?<![\w/.-])inventory\.yml\b", self.inventory_yml, script)
        script = re.sub(r"(?<![\w/.-])inventory\.ini\b", self.inventory_ini, script)
        script = re.sub(r"(?<![\w.-])/opt/immich(?=[/\s\"']|$)", self.inst.root, script, flags=re.MULTILINE)
        if SET_ID.search(script):
            script = SET_ID.sub(self.newest_set(), script)
        return re.sub(r"(lab\.py\s+(?:up|down|ping|stats|counts)\s+)([A-Za-z][\w-]*)",
                      lambda m: "%s%s-%s" % (m.group(1), m.group(2), self.suffix), script)

    def run(self, block):
        script = "set -euo pipefail\n" + self.substitute(block.commands())
        t0 = time.monotonic()
        res = subprocess.run(["bash", "-c", script], cwd=TOP, env=self.env, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=BLOCK_TIMEOUT, check=False)
        print("%s: rc=%d in %.1fs" % (block.where, res.returncode, time.monotonic() - t0))
        return script, res


def installs_collection(blocks):
    return any("ansible-galaxy collection install" in b.text for b in blocks)


@pytest.mark.parametrize("doc", docs_with_runnable_blocks())
def test_runnable_blocks_of_doc_run_against_the_lab(doc, instance, tarball, tmp_path):
    runnable = [b for b in doc_blocks.blocks(doc) if not b.example]
    project = Project(str(tmp_path), instance)
    if not installs_collection(runnable):
        subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "--offline", "--no-deps",
                        "-p", project.collections, tarball], env=project.env, check=True, capture_output=True)
    for block in runnable:
        script, res = project.run(block)
        assert res.returncode == 0, "%s (%s block) failed, rc=%d\n--- as run:\n%s\n--- output (tail):\n%s" % (
            block.where, block.lang, res.returncode, script, (res.stdout + res.stderr)[-6000:])
    # The lab instance is still whole after a doc's commands (they restore it, never leave it broken).
    assert instance.ping(), "the lab instance does not answer after %s" % os.path.relpath(doc, TOP)
