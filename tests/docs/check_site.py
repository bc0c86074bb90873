"""Check the built docs site (build/docs, from tests/docs/build_site.py).

    .venv/bin/python tests/docs/check_site.py [SITE_DIR]

Asserts, with the expected lists derived from the tree at run time (modules and roles come and go):
- every module (plugins/modules/*.py) has a page <name>_module.html that documents each option of
  its DOCUMENTATION, and every role (roles/*/) has a page <name>_role.html (antsibull-docs writes one
  from meta/argument_specs.yml) that documents each option of each entry point;
- every guide (docs/*.md) has a page under docsite/ with its title, and there is a changelog page;
- the index links to every module, role and guide page;
- no page has a broken internal link: every local href/src resolves to a file, and every #fragment to
  an id (or a name) in the target page.
Exit status 0 when all hold, 1 with one line per problem otherwise.
"""
import ast
import html.parser
import os
import posixpath
import re
import sys
import urllib.parse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from build_site import guides, page_name  # noqa: E402  (one naming rule for both)

LINK_ATTRS = {"href", "src"}
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, https:, mailto:, data:, javascript:, //host


class Page(html.parser.HTMLParser):
    """The ids (and <a name>) a page defines, and the local links it holds with their line numbers."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if value is None:
                continue
            if key == "id" or (tag == "a" and key == "name"):
                self.ids.add(value)
            elif key in LINK_ATTRS and not (tag == "link" and key == "href" and dict(attrs).get("rel") == "search"):
                self.links.append((value, self.getpos()[0]))

    def handle_data(self, data):
        self.text.append(data)


def parse(path):
    page = Page()
    with open(path, encoding="utf-8", errors="replace") as fh:
        page.feed(fh.read())
    page.close()
    return page


def html_files(site):
    for root, _dirs, files in os.walk(site):
        for name in files:
            if name.endswith(".html"):
                yield os.path.relpath(os.path.join(root, name), site).replace(os.sep, "/")


def broken_links(site):
    """[(page, line, href, why)] for every local link that does not resolve."""
    pages = {rel: parse(os.path.join(site, rel)) for rel in html_files(site)}
    problems = []
    for rel, page in sorted(pages.items()):
        for href, line in page.links:
            if not href or EXTERNAL.match(href):
                continue
            parts = urllib.parse.urlsplit(href)
            path = urllib.parse.unquote(parts.path)
            if path.startswith("/"):
                problems.append((rel, line, href, "absolute path: does not resolve inside the site"))
                continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), path)) if path else rel
            if target.startswith("../") or target == "..":
                problems.append((rel, line, href, "points outside the site"))
                continue
            full = os.path.join(site, target)
            if os.path.isdir(full):
                target = posixpath.join(target, "index.html")
                full = os.path.join(site, target)
            if not os.path.isfile(full):
                problems.append((rel, line, href, "no such file: %s" % target))
                continue
            frag = urllib.parse.unquote(parts.fragment)
            if frag and target.endswith(".html"):
                ids = pages[target].ids if target in pages else parse(full).ids
                if frag not in ids:
                    problems.append((rel, line, href, "no id %r in %s" % (frag, target)))
    return problems


def module_options(path):
    """Option names of a module's own DOCUMENTATION (doc fragments add more; those are not required here)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            try:
                doc = yaml.safe_load(ast.literal_eval(node.value)) or {}
            except (ValueError, yaml.YAMLError) as exc:
                raise ValueError("DOCUMENTATION does not parse: %s" % str(exc).splitlines()[0]) from exc
            return sorted((doc.get("options") or {}).keys())
    return None


def expected_modules(top):
    folder = os.path.join(top, "plugins", "modules")
    names = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and f != "__init__.py") if os.path.isdir(folder) else []
    return {n: os.path.join(folder, n + ".py") for n in names}


def expected_roles(top):
    folder = os.path.join(top, "roles")
    names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d, "tasks"))) if os.path.isdir(folder) else []
    return {n: os.path.join(folder, n) for n in names}


def check(site, top=TOP):
    problems = []
    if not os.path.isfile(os.path.join(site, "index.html")):
        return ["%s/index.html missing: build the site first (make docs)" % site]
    index = parse(os.path.join(site, "index.html"))
    index_targets = {urllib.parse.urlsplit(h).path for h, _line in index.links}

    def page_ok(rel, what):
        if not os.path.isfile(os.path.join(site, rel)):
            problems.append("%s has no page (%s missing)" % (what, rel))
            return None
        if rel not in index_targets:
            problems.append("%s: the index does not link to %s" % (what, rel))
        return parse(os.path.join(site, rel))

    modules = expected_modules(top)
    if not modules:
        problems.append("no module found under plugins/modules (wrong tree?)")
    for name, path in modules.items():
        page = page_ok("%s_module.html" % name, "module %s" % name)
        if page is None:
            continue
        try:
            options = module_options(path)
        except ValueError as exc:
            problems.append("module %s: %s" % (name, exc))
            continue
        if options is None:
            problems.append("module %s: no DOCUMENTATION in %s" % (name, os.path.relpath(path, top)))
        for opt in options or []:
            if "parameter-%s" % opt not in page.ids:
                problems.append("module %s: option %s is not on its page" % (name, opt))

    roles = expected_roles(top)
    if not roles:
        problems.append("no role found under roles/ (wrong tree?)")
    for name, path in roles.items():
        spec_path = os.path.join(path, "meta", "argument_specs.yml")
        if not os.path.isfile(spec_path):
            problems.append("role %s has no meta/argument_specs.yml: antsibull-docs writes no page without one" % name)
            continue
        page = page_ok("%s_role.html" % name, "role %s" % name)
        if page is None:
            continue
        with open(spec_path, encoding="utf-8") as fh:
            specs = (yaml.safe_load(fh) or {}).get("argument_specs") or {}
        for entry, spec in specs.items():
            for opt in (spec or {}).get("options") or {}:
                if "parameter-%s--%s" % (entry, opt) not in page.ids:
                    problems.append("role %s: option %s of entry point %s is not on its page" % (name, opt, entry))

    for stem, _path, title in guides(top):
        rel = "docsite/%s.html" % page_name(stem)
        page = page_ok(rel, "guide docs/%s.md" % stem)
        if page is not None and title not in " ".join("".join(page.text).split()):
            problems.append("guide docs/%s.md: its title %r is not on %s" % (stem, title, rel))

    page = page_ok("docsite/changelog.html", "the changelog")
    if page is not None and not re.search(r"\bv\d+\.\d+\.\d+", "".join(page.text)):
        problems.append("the changelog page names no version")

    for rel, line, href, why in broken_links(site):
        problems.append("%s:%d: broken link %s (%s)" % (rel, line, href, why))
    return problems


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    site = os.path.abspath(argv[0] if argv else os.path.join(TOP, "build", "docs"))
    problems = check(site)
    for p in problems:
        print("docs site: " + p)
    n_pages = len(list(html_files(site))) if os.path.isdir(site) else 0
    print("docs site: %d pages, %d modules, %d roles, %d guides: %s" % (
        n_pages, len(expected_modules(TOP)), len(expected_roles(TOP)), len(guides(TOP)),
        "%d problem(s)" % len(problems) if problems else "every page present, no broken internal link"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
