"""The shell blocks and the variables of the docs (README.md, docs/*.md), for the tests that run them.

    .venv/bin/python tests/docs/doc_blocks.py            # list every shell block: runnable or example
    .venv/bin/python tests/docs/doc_blocks.py --vars     # documented variables that no role declares
    .venv/bin/python tests/docs/doc_blocks.py --runnable-docs   # the docs with a runnable block

Shell blocks are fenced code blocks whose info string is sh, bash, shell or console. A block whose
first line is a comment

    # example: <why it is not run here>            (for instance: # example: another machine)

is an *example*: shown to the reader, never run. Every other shell block is *runnable*:
tests/docs/test_doc_commands.py runs it against a lab instance (README.md, "Contributing").

A documented variable is any immich_<name> token in the docs that is not a file name
(immich_monitor.py) and not one of NOT_VARIABLES; it must be an option of some role's
meta/argument_specs.yml, or one of PLAYBOOK_VARIABLES (read by the playbooks themselves).
"""
import ast
import glob
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))

SHELL_LANGS = {"sh", "bash", "shell", "console"}
EXAMPLE_MARKER = re.compile(r"^\s*#\s*example:\s*(?P<why>\S.*?)\s*$", re.IGNORECASE)
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")

# Variables the playbooks read (playbooks/*.yml), not the roles: no argument_spec declares them.
PLAYBOOK_VARIABLES = {
    "immich_hosts": "the host group every playbook runs on (default immich)",
    "immich_report_dir": "where backup/restore/fleet reports are written on the controller",
    "immich_fleet_max_age_hours": "fleet_report.yml: age after which a newest set is stale",
}
# immich_* tokens of the docs that are not Ansible variables at all.
NOT_VARIABLES = {
    "immich_postgres": "the container name in the seed's `docker exec -t immich_postgres pg_dumpall` command",
}
VARIABLE = re.compile(r"(?<![A-Za-z0-9_./-])immich_[a-z0-9_]*[a-z0-9](?![A-Za-z0-9_]|\.[A-Za-z])")


class Block:
    """One fenced shell block: where it is, what it says, and whether it is run."""

    def __init__(self, path, line, lang, text):
        self.path = path  # relative to the repository
        self.line = line  # of the opening fence, 1-based
        self.lang = lang
        self.text = text
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        m = EXAMPLE_MARKER.match(first)
        self.example = bool(m)
        self.why = m.group("why") if m else None

    @property
    def where(self):
        return "%s:%d" % (self.path, self.line)

    def commands(self):
        """The script to run: console blocks keep their `$ ` lines only (the rest is output)."""
        if self.lang != "console":
            return self.text
        out = []
        for ln in self.text.splitlines():
            if ln.startswith("$ "):
                out.append(ln[2:])
            elif out and out[-1].endswith("\\"):
                out.append(ln)
        return "\n".join(out) + "\n"

    def __repr__(self):
        return "<%s %s %s>" % (self.where, self.lang, "example: " + self.why if self.example else "runnable")


def doc_files(top=TOP):
    """README.md and docs/*.md, as they are in the tree now."""
    files = [os.path.join(top, "README.md")] + sorted(glob.glob(os.path.join(top, "docs", "*.md")))
    return [f for f in files if os.path.isfile(f)]


def fenced_blocks(text):
    """(line, info, body) of every fenced code block; indented fences (in lists) are dedented."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group("indent"), m.group("fence"), m.group("info").lower()
        start, body = i + 1, []
        i += 1
        while i < len(lines):
            close = re.match(r"^[ \t]*" + re.escape(fence[0]) + "{%d,}[ \t]*$" % len(fence), lines[i])
            if close:
                break
            ln = lines[i]
            body.append(ln[len(indent):] if ln.startswith(indent) else ln.lstrip())
            i += 1
        yield start, info, "\n".join(body) + "\n"
        i += 1


def blocks(path, text=None, top=TOP):
    """The shell blocks of one doc."""
    if text is None:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    rel = os.path.relpath(path, top) if os.path.isabs(path) else path
    return [Block(rel, line, info, body) for line, info, body in fenced_blocks(text) if info in SHELL_LANGS]


def all_blocks(top=TOP):
    out = []
    for path in doc_files(top):
        out.extend(blocks(path, top=top))
    return out


def role_variables(top=TOP):
    """{variable: [role:entry point, ...]} over every roles/*/meta/argument_specs.yml."""
    out = {}
    for spec_path in sorted(glob.glob(os.path.join(top, "roles", "*", "meta", "argument_specs.yml"))):
        role = spec_path.split(os.sep)[-3]
        with open(spec_path, encoding="utf-8") as fh:
            specs = (yaml.safe_load(fh) or {}).get("argument_specs") or {}
        for entry, spec in specs.items():
            for name in (spec or {}).get("options") or {}:
                out.setdefault(name, []).append("%s:%s" % (role, entry))
    return out


def module_options(top=TOP):
    """Option names of the modules' DOCUMENTATION (a doc may name a module option such as immich_version)."""
    out = set()
    for path in sorted(glob.glob(os.path.join(top, "plugins", "modules", "*.py"))):
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
                try:
                    doc = yaml.safe_load(ast.literal_eval(node.value)) or {}
                except (ValueError, yaml.YAMLError):
                    continue  # a module whose docs do not parse: ansible-test sanity and the docs site say so
                out.update((doc.get("options") or {}).keys())
    return out


def documented_variables(text):
    """[(line, token)] of the immich_* tokens of a doc that name variables (see VARIABLE)."""
    out = []
    for n, ln in enumerate(text.splitlines(), 1):
        for m in VARIABLE.finditer(ln):
            if m.group(0) not in NOT_VARIABLES:
                out.append((n, m.group(0)))
    return out


def unknown_variables(path, text=None, known=None, top=TOP):
    """[(path:line, token)] of documented variables that no argument_spec, playbook or module declares."""
    if text is None:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    if known is None:
        known = set(role_variables(top)) | set(PLAYBOOK_VARIABLES) | module_options(top)
    rel = os.path.relpath(path, top) if os.path.isabs(path) else path
    return [("%s:%d" % (rel, n), tok) for n, tok in documented_variables(text) if tok not in known]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--vars" in argv:
        bad = [u for path in doc_files() for u in unknown_variables(path)]
        for where, tok in bad:
            print("%s: %s is in no roles/*/meta/argument_specs.yml (nor a playbook variable)" % (where, tok))
        return 1 if bad else 0
    if "--runnable-docs" in argv:  # the docs that have something to run (tests/run-all.sh: one step each)
        for path in doc_files():
            if any(not b.example for b in blocks(path)):
                print(os.path.relpath(path, TOP))
        return 0
    for b in all_blocks():
        print("%-28s %-8s %s" % (b.where, b.lang, "example: " + b.why if b.example else "runnable"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
