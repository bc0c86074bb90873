"""Checks of the docs and the collection's metadata that need no lab (issue 13, items 1, 4 and 5).

- the doc blocks: how tests/docs/doc_blocks.py finds and classifies them (runnable or `# example:`);
- the documented variables: every immich_* name of README.md and docs/*.md exists in a role's
  argument_spec (or is a playbook variable / module option), and a misspelled one is caught;
- meta/runtime.yml: every module has an action_groups entry (and no entry is stale), and
  requires_ansible admits the ansible-core installed here and pinned in requirements.txt;
- the requirements.yml example of docs/home-server.md installs the collection (type: file);
- the site checker (tests/docs/check_site.py) finds a missing page and a broken link.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_site  # noqa: E402
import doc_blocks  # noqa: E402

TOP = doc_blocks.TOP
VENV_BIN = os.path.join(TOP, ".venv", "bin")


# -- doc blocks ------------------------------------------------------------------------------------

DOC = """\
# A guide

```sh
# example: another machine
ssh nas.lan true
```

Run this:

```bash
ansible-playbook -i inventory.yml homelab.immich.backup
```

- in a list:

  ```console
  $ ansible-playbook -i inventory.yml homelab.immich.restore \\
      -e immich_restore_confirm=true
  PLAY [Restore] ****
  ```

```yaml
# not a shell block
immich_backup_targets: []
```

```
plain text, not run
```
"""


def test_blocks_are_found_and_classified():
    found = doc_blocks.blocks("guide.md", DOC)
    assert [(b.line, b.lang, b.example) for b in found] == [(3, "sh", True), (10, "bash", False), (16, "console", False)]
    assert found[0].why == "another machine"
    assert found[1].commands() == "ansible-playbook -i inventory.yml homelab.immich.backup\n"
    # console: the `$ ` lines (and their continuations) are the commands, the rest is output
    assert found[2].commands() == ("ansible-playbook -i inventory.yml homelab.immich.restore \\\n"
                                   "    -e immich_restore_confirm=true\n")


@pytest.mark.parametrize("first", ["# example: another machine", "#example: needs the network", "  # Example: an AWX controller"])
def test_example_marker_forms(first):
    (block,) = doc_blocks.blocks("x.md", "```sh\n%s\nls\n```\n" % first)
    assert block.example and block.why


@pytest.mark.parametrize("first", ["# an example of a backup", "# example:", "ls  # example: no"])
def test_not_an_example_marker(first):
    (block,) = doc_blocks.blocks("x.md", "```sh\n%s\nls\n```\n" % first)
    assert not block.example


def test_the_docs_have_blocks_of_both_kinds():
    found = doc_blocks.all_blocks()
    assert any(b.example for b in found) and any(not b.example for b in found)
    assert any(b.path == "README.md" and not b.example for b in found)


def test_runnable_blocks_hold_no_placeholder():
    """A runnable block runs as written (after the documented substitutions): no <placeholder> in it."""
    bad = [(b.where, m.group(0)) for b in doc_blocks.all_blocks() if not b.example
           for m in re.finditer(r"<[A-Za-z][\w .-]*>", b.commands())]
    assert not bad, "placeholders in runnable blocks (mark the block '# example: ...' or make it runnable): %s" % bad


# -- documented variables --------------------------------------------------------------------------

def test_every_documented_variable_exists_in_an_argument_spec():
    bad = [u for path in doc_blocks.doc_files() for u in doc_blocks.unknown_variables(path)]
    assert not bad, "documented but declared nowhere (roles/*/meta/argument_specs.yml, PLAYBOOK_VARIABLES): %s" % bad


def test_a_misspelled_variable_in_a_doc_is_caught():
    text = ("Set `immich_backup_targets` (right) and `immich_backup_targts` (typo), run\n"
            "`immich_monitor.py freshness`, and `docker exec -t immich_postgres pg_dumpall`.\n"
            "With -e immich_restore_confirm=true and immich_hosts=photos.\n")
    assert doc_blocks.unknown_variables("docs/typo.md", text) == [("docs/typo.md:1", "immich_backup_targts")]


def test_the_variable_check_reads_the_specs_of_every_role():
    known = doc_blocks.role_variables()
    roles = {os.path.basename(os.path.dirname(os.path.dirname(p)))
             for p in glob.glob(os.path.join(TOP, "roles", "*", "meta", "argument_specs.yml"))}
    assert roles and roles == {where.split(":")[0] for places in known.values() for where in places}
    assert "immich_project_dir" in known


def test_playbook_variables_are_read_by_the_playbooks():
    text = ""
    for path in glob.glob(os.path.join(TOP, "playbooks", "*.yml")):
        with open(path, encoding="utf-8") as fh:
            text += fh.read()
    stale = [name for name in doc_blocks.PLAYBOOK_VARIABLES if not re.search(r"\b%s\b" % name, text)]
    assert not stale, "PLAYBOOK_VARIABLES that no playbook reads any more: %s" % stale


# -- meta/runtime.yml ------------------------------------------------------------------------------

def runtime():
    with open(os.path.join(TOP, "meta", "runtime.yml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def test_every_module_has_an_action_group_entry():
    modules = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(TOP, "plugins", "modules", "*.py"))
                     if not p.endswith("__init__.py"))
    group = (runtime().get("action_groups") or {}).get("immich") or []
    names = sorted(g for g in group if isinstance(g, str))
    assert modules, "no module found"
    assert not sorted(set(modules) - set(names)), "modules missing from action_groups.immich in meta/runtime.yml"
    assert not sorted(set(names) - set(modules)), "action_groups.immich names modules that do not exist"


def test_requires_ansible_admits_the_ansible_core_we_test():
    from ansible.release import __version__ as installed  # noqa: PLC0415

    spec = SpecifierSet(runtime()["requires_ansible"])
    with open(os.path.join(TOP, "requirements.txt"), encoding="utf-8") as fh:
        pinned = re.search(r"^ansible-core==(\S+)$", fh.read(), re.MULTILINE).group(1)
    assert Version(installed) in spec, "requires_ansible %s does not admit the installed ansible-core %s" % (spec, installed)
    assert Version(pinned) in spec, "requires_ansible %s does not admit requirements.txt's ansible-core %s" % (spec, pinned)
    assert installed == pinned, "the venv runs ansible-core %s, requirements.txt pins %s: make setup" % (installed, pinned)


# -- install paths ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(dist), TOP],
                   check=True, capture_output=True)
    (path,) = dist.glob("*.tar.gz")
    return str(path)


def test_requirements_yml_example_installs_the_tarball(tarball, tmp_path):
    """The requirements.yml examples of docs/home-server.md: type file installs offline, type git is a git URL."""
    path = os.path.join(TOP, "docs", "home-server.md")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    found = [body for _line, info, body in doc_blocks.fenced_blocks(text)
             if info in ("yaml", "yml") and body.lstrip().startswith("# requirements.yml")]
    assert found, "docs/home-server.md has no yaml block starting with '# requirements.yml'"
    entries = [e for body in found for e in yaml.safe_load(body)["collections"]]
    files = [e for e in entries if e.get("type") == "file"]
    gits = [e for e in entries if e.get("type") == "git"]
    assert files and gits, "the examples show both forms (type: file and type: git): %s" % entries
    assert all(e["name"].startswith("git+") for e in gits), gits
    assert all(os.path.basename(e["name"]) == os.path.basename(tarball) for e in files), (
        "the type: file example names %s; make build writes %s" % ([e["name"] for e in files], os.path.basename(tarball)))
    # As a user's project would: the tarball where the example says, `ansible-galaxy collection install -r`.
    project = tmp_path / "project"
    want = project / files[0]["name"]
    want.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tarball, str(want))
    (project / "requirements.yml").write_text(yaml.safe_dump({"collections": files}))
    env = dict(os.environ, HOME=str(tmp_path / "home"), ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"))
    res = subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "-r", "requirements.yml"],
                         cwd=str(project), env=env, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = tmp_path / "collections" / "ansible_collections" / "homelab" / "immich" / "MANIFEST.json"
    assert json.loads(manifest.read_text())["collection_info"]["name"] == "immich"


def test_no_doc_installs_from_galaxy():
    """The collection is not on Galaxy: `ansible-galaxy collection install homelab.immich` fails for a reader."""
    bad = []
    for path in doc_blocks.doc_files():
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if re.search(r"ansible-galaxy collection install\s+homelab\.immich\b", line):
                    bad.append("%s:%d" % (os.path.relpath(path, TOP), n))
    assert not bad, bad


# -- the site checker ------------------------------------------------------------------------------

def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def test_site_checker_finds_broken_links(tmp_path):
    site = str(tmp_path)
    write(os.path.join(site, "index.html"),
          '<a href="a.html#x">ok</a> <a href="a.html#nope">bad anchor</a> <a href="gone.html">bad file</a>'
          '<a href="https://example.org/">external</a> <img src="_static/i.png"> <a href="#top" id="top">self</a>'
          '<a href="/">absolute</a> <a href="sub/">dir</a> <a href="../../etc/passwd">outside</a>')
    write(os.path.join(site, "a.html"), '<h1 id="x">x</h1>')
    write(os.path.join(site, "sub", "index.html"), '<a href="../a.html">up</a>')
    write(os.path.join(site, "_static", "i.png"), "")
    found = sorted((page, href) for page, _line, href, _why in check_site.broken_links(site))
    assert found == [("index.html", "../../etc/passwd"), ("index.html", "/"), ("index.html", "a.html#nope"),
                     ("index.html", "gone.html")]


def test_site_checker_wants_a_page_per_module_role_and_guide(tmp_path):
    write(os.path.join(str(tmp_path), "index.html"), "<p>empty</p>")
    problems = check_site.check(str(tmp_path))
    for name in check_site.expected_modules(TOP):
        assert "module %s has no page (%s_module.html missing)" % (name, name) in problems
    for name in check_site.expected_roles(TOP):
        assert any(p.startswith("role %s " % name) for p in problems), name
    assert any("the changelog has no page" in p for p in problems)
    assert any(p.startswith("guide docs/home-server.md has no page") for p in problems)


# -- the AWX objects of docs/fleet.md --------------------------------------------------------------

TASK_KEYWORDS = {"name", "when", "tags", "register", "loop", "vars", "no_log", "delegate_to", "environment", "become",
                 "check_mode", "changed_when", "failed_when", "ignore_errors"}


def yaml_blocks(path):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return [body for _line, info, body in doc_blocks.fenced_blocks(text) if info in ("yaml", "yml")]


def test_awx_objects_use_the_options_of_the_awx_modules():
    tasks = []
    for body in yaml_blocks(os.path.join(TOP, "docs", "fleet.md")):
        doc = yaml.safe_load(body)
        for play in doc if isinstance(doc, list) else []:
            tasks.extend(t for t in (play.get("tasks") or []) if any(k.startswith("awx.awx.") for k in t))
    assert len(tasks) >= 4, "docs/fleet.md shows the AWX job templates and schedules as awx.awx tasks"
    modules = sorted({k for t in tasks for k in t if k.startswith("awx.awx.")})
    res = subprocess.run([os.path.join(VENV_BIN, "ansible-doc"), "-j", *modules], capture_output=True, text=True, check=True)
    docs = {name: info["doc"] for name, info in json.loads(res.stdout).items()}
    problems = []
    for task in tasks:
        (module,) = [k for k in task if k.startswith("awx.awx.")]
        options = docs[module]["options"]
        problems += ["%s: unknown key %s" % (task["name"], k) for k in task if k != module and k not in TASK_KEYWORDS]
        problems += ["%s: %s has no option %s" % (task["name"], module, k) for k in task[module] if k not in options]
        problems += ["%s: %s needs %s" % (task["name"], module, k) for k, o in options.items()
                     if o.get("required") and k not in task[module]]
    assert not problems, problems
    templates = {t["awx.awx.job_template"]["name"] for t in tasks if "awx.awx.job_template" in t}
    scheduled = {t["awx.awx.schedule"]["unified_job_template"] for t in tasks if "awx.awx.schedule" in t}
    assert templates and scheduled == templates, "every job template has a schedule: %s / %s" % (templates, scheduled)
    rrules = [t["awx.awx.schedule"]["rrule"] for t in tasks if "awx.awx.schedule" in t]
    assert any("FREQ=DAILY" in r for r in rrules) and any("FREQ=WEEKLY" in r for r in rrules), rrules


def test_awx_project_playbooks_import_the_collection_playbooks(tmp_path):
    """The one-line playbooks of the AWX project (docs/fleet.md) pass --syntax-check with the collection."""
    wrappers = [b for b in yaml_blocks(os.path.join(TOP, "docs", "fleet.md")) if "import_playbook: homelab.immich." in b]
    assert len(wrappers) >= 2, "docs/fleet.md shows the backup.yml and drill.yml of the AWX project"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, "build", "collections"), ANSIBLE_NOCOLOR="1")
    for i, body in enumerate(wrappers):
        path = tmp_path / ("wrapper%d.yml" % i)
        path.write_text(body)
        res = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(path)],
                             capture_output=True, text=True, env=env, check=False)
        assert res.returncode == 0, body + res.stdout + res.stderr
