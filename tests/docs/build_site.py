"""`make docs`: the collection's HTML docs site, built offline into build/docs.

    .venv/bin/python tests/docs/build_site.py [--out build/docs]

1. Stage a copy of the collection (what git would ship: tracked and untracked-not-ignored files) as
   build/docs-src/collections/ansible_collections/homelab/immich, so nothing is written into the tree.
2. In the copy, generate antsibull-docs "extra docs" (docs/docsite/extra-docs.yml and one RST page per
   guide): each docs/*.md becomes docs/docsite/rst/<name>.rst, a labelled page that includes the
   Markdown through MyST (antsibull-docs only takes RST extra docs; converting the Markdown would make a
   second copy to keep in sync). A guide added to docs/ gets its page without a list to edit.
3. Changelog: in the copy only, `antsibull-changelog release` turns the unreleased fragments into the
   next version's entry (marked unreleased), and its CHANGELOG.rst becomes the "Changelog" page.
4. `antsibull-docs collection --use-current --squash-hierarchy --fail-on-error` writes the module and
   role pages (roles from meta/argument_specs.yml) and the collection index into build/docs-src/rst.
5. `sphinx-build -W` (tests/docs/site/conf.py: no intersphinx, nothing fetched) writes build/docs.

Nothing here uses the network: the tools come from the venv (requirements.txt).
"""
import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.dirname(os.path.abspath(sys.executable))
NAMESPACE, NAME = "homelab", "immich"
FQCN = NAMESPACE + "." + NAME
LABEL_PREFIX = "ansible_collections.%s.docsite." % FQCN


def log(msg):
    print("docs: " + msg, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def tool(name):
    path = os.path.join(BIN, name)
    return path if os.path.exists(path) else name


def shipped_files(top):
    """What git would ship: tracked plus untracked-not-ignored files (as tests/sanity.sh copies)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=top, check=True,
                         capture_output=True).stdout.decode()
    return sorted(p for p in out.split("\0") if p and os.path.isfile(os.path.join(top, p)))


def stage_collection(top, staging):
    coll = os.path.join(staging, "collections", "ansible_collections", NAMESPACE, NAME)
    for rel in shipped_files(top):
        if rel.startswith(("tests/lab/", "bench/")):
            continue
        dest = os.path.join(coll, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.join(top, rel), dest)
    drop_placeholder_links(os.path.join(coll, "galaxy.yml"))
    return coll


def drop_placeholder_links(galaxy_yml):
    """galaxy.yml URLs on a reserved .invalid host are placeholders: no "Repository" button to nowhere."""
    with open(galaxy_yml, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    for key in ("repository", "documentation", "homepage", "issues"):
        host = urllib.parse.urlsplit(str(data.get(key) or "")).hostname or ""
        if host == "invalid" or host.endswith(".invalid"):
            log("galaxy.yml %s is a placeholder (%s): left out of the site" % (key, data.pop(key)))
    with open(galaxy_yml, "w", encoding="utf-8") as fh:
        fh.write("---\n" + yaml.safe_dump(data, sort_keys=False))


# Reading order of the guides in the site's navigation; a guide not named here follows, by name.
GUIDE_ORDER = ["home-server", "fleet", "ci-drill", "reports", "design"]


def guides(top):
    """docs/*.md in reading order: (file stem, path, title)."""
    out = []
    names = [f for f in os.listdir(os.path.join(top, "docs")) if f.endswith(".md")]
    rank = {stem: i for i, stem in enumerate(GUIDE_ORDER)}
    for fname in sorted(names, key=lambda f: (rank.get(f[:-3], len(rank)), f)):
        path = os.path.join(top, "docs", fname)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        m = re.search(r"^# (.+)$", text, re.MULTILINE)
        out.append((fname[:-3], path, m.group(1).strip() if m else fname[:-3]))
    return out


def page_name(stem):
    """An RST document name for a guide: lower case, [a-z0-9_] (labels and file names alike)."""
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")


def link_guides(text, stems):
    """Markdown links between guides ([x](fleet.md#anchor), right on a forge) aimed at their site pages."""
    def repl(m):
        if m.group("stem") not in stems:
            return m.group(0)
        return "](/docsite/%s.rst%s)" % (page_name(m.group("stem")), m.group("frag") or "")
    return re.sub(r"\]\((?:\./)?(?P<stem>[A-Za-z0-9_.-]+)\.md(?P<frag>#[^)\s]*)?\)", repl, text)


def write_extra_docs(coll, guide_list, changelog_rst):
    """docs/docsite/extra-docs.yml + rst/*.rst of the staged copy (the tree has no docs/docsite)."""
    rst_dir = os.path.join(coll, "docs", "docsite", "rst")
    os.makedirs(rst_dir, exist_ok=True)
    toc = []
    for stem, _path, _title in guide_list:
        name = page_name(stem)
        with open(os.path.join(rst_dir, name + ".rst"), "w", encoding="utf-8") as fh:
            # The Markdown's own "# Title" becomes the page title; the label is antsibull-docs' rule.
            fh.write(".. _%s%s:\n\n.. include:: /_guides/%s.md\n   :parser: myst_parser.sphinx_\n" % (
                LABEL_PREFIX, name, stem))
        toc.append(name)  # Sphinx takes the title from the page (a toctree title would be escaped twice)
    with open(os.path.join(rst_dir, "changelog.rst"), "w", encoding="utf-8") as fh:
        fh.write(".. _%schangelog:\n\n" % LABEL_PREFIX)
        fh.write(changelog_rst)
    index = {"sections": [
        {"title": "Guides", "toctree": toc},
        {"title": "Changelog", "toctree": ["changelog"]},
    ]}
    with open(os.path.join(coll, "docs", "docsite", "extra-docs.yml"), "w", encoding="utf-8") as fh:
        fh.write("---\n" + yaml.safe_dump(index, sort_keys=False))


def galaxy_version(coll):
    with open(os.path.join(coll, "galaxy.yml"), encoding="utf-8") as fh:
        return str(yaml.safe_load(fh)["version"])


def changelog(coll, env):
    """CHANGELOG.rst for the staged copy: released entries plus the fragments as the next version."""
    version = galaxy_version(coll)
    with open(os.path.join(coll, "changelogs", "changelog.yaml"), encoding="utf-8") as fh:
        released = (yaml.safe_load(fh) or {}).get("releases") or {}
    frags = os.path.join(coll, "changelogs", "fragments")
    pending = [f for f in os.listdir(frags) if f.endswith((".yml", ".yaml"))] if os.path.isdir(frags) else []
    unreleased = bool(pending) and version not in released
    if unreleased:
        run([tool("antsibull-changelog"), "release", "--version", version,
             "--date", datetime.date.today().isoformat()], cwd=coll, env=env)
    else:
        run([tool("antsibull-changelog"), "generate"], cwd=coll, env=env)
    with open(os.path.join(coll, "CHANGELOG.rst"), encoding="utf-8") as fh:
        text = fh.read()
    if unreleased:
        # Make plain that this entry is what the next release will say, not a release that happened.
        text = re.sub(r"^v%s\n(=+)$" % re.escape(version),
                      lambda m: "v%s (unreleased)\n%s" % (version, "=" * (len(version) + 14)),
                      text, count=1, flags=re.MULTILINE)
    return text


def antsibull_docs_config(staging, version):
    """antsibull-docs settings: the collection is not on Galaxy, so its pages must not send people there."""
    path = os.path.join(staging, "antsibull-docs.cfg")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("breadcrumbs = true\nindexes = true\nuse_html_blobs = false\nadd_antsibull_docs_version = false\n")
        # The collection link of every page goes to this site's own index (pages sit beside it).
        fh.write('collection_url = {\n  %s = "index.html"\n}\n' % FQCN)
        # What installs it today: the tarball `make build` writes (README.md, "Install").
        fh.write('collection_install = {\n  %s = "ansible-galaxy collection install build/dist/homelab-immich-%s.tar.gz"\n}\n'
                 % (FQCN, version))
    return path


def build(out):
    staging = os.path.join(TOP, "build", "docs-src")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(staging, mode=0o700)
    coll = stage_collection(TOP, staging)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(staging, "collections"),
               ANSIBLE_NOCOLOR="1", PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    env.pop("ANSIBLE_COLLECTIONS_PATHS", None)
    guide_list = guides(TOP)
    write_extra_docs(coll, guide_list, changelog(coll, env))

    rst = os.path.join(staging, "rst")
    os.makedirs(rst, mode=0o700)  # antsibull-docs wants a directory only its owner can write
    run([tool("antsibull-docs"), "--config-file", antsibull_docs_config(staging, galaxy_version(coll)),
         "collection", "--use-current", "--squash-hierarchy", "--fail-on-error", "--cleanup", "everything",
         "--dest-dir", rst, FQCN], env=env)
    os.makedirs(os.path.join(rst, "_guides"))
    stems = {stem for stem, _path, _title in guide_list}
    for stem, path, _title in guide_list:
        with open(path, encoding="utf-8") as fh:
            text = link_guides(fh.read(), stems)
        with open(os.path.join(rst, "_guides", stem + ".md"), "w", encoding="utf-8") as fh:
            fh.write(text)
    run([sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-c",
         os.path.join(HERE, "site"), rst, out], env=env)
    log("built %s (open %s)" % (out, os.path.join(out, "index.html")))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(TOP, "build", "docs"))
    args = ap.parse_args(argv)
    try:
        build(os.path.abspath(args.out))
    except subprocess.CalledProcessError as exc:
        log("failed: %s (rc=%s)" % (" ".join(exc.cmd), exc.returncode))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
