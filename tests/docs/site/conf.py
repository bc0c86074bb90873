"""Sphinx configuration of the collection's docs site (`make docs`, tests/docs/build_site.py).

Written for an offline build: no intersphinx inventories are fetched, the guides (docs/*.md) are
Markdown read by MyST, and every warning is an error (the build runs with -W).
"""
from docutils import nodes

project = "homelab.immich"
copyright = "homelab.immich developers"
title = "homelab.immich"
html_short_title = "homelab.immich"

extensions = ["sphinx_antsibull_ext", "myst_parser"]

pygments_style = "ansible"
highlight_language = "YAML+Jinja"

html_theme = "sphinx_ansible_theme"
html_show_sphinx = False
# No top bar of links to ansible.com; _templates/extrabody.html points the logo at this site's index.
html_theme_options = {"topbar_links": {}}
templates_path = ["_templates"]
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

# The guides are copied into _guides/ and included by the pages antsibull-docs writes for them;
# they are not documents of their own.
exclude_patterns = ["_guides"]
source_suffix = {".rst": "restructuredtext"}

# Offline: no intersphinx. The few labels of Ansible's own docs that antsibull-docs' pages refer to
# are resolved to their pages on the Ansible docs site by ansible_refs() below; any other unresolved
# reference stays a warning, which fails the build.
nitpicky = False
default_role = "any"

ANSIBLE_DOCS = "https://docs.ansible.com/projects/ansible/latest/"
ANSIBLE_LABELS = {
    "common_return_values": ("reference_appendices/common_return_values.html", "Return Values"),
    "ansible_configuration_settings": ("reference_appendices/config.html", "Ansible Configuration Settings"),
    # the note of a module with an action plugin (backup_run, restore_files)
    "action_plugins": ("plugins/action.html", "Action plugins"),
}

# Headings of the Markdown guides get anchors (#1-install), as on a git forge.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]


def ansible_refs(app, env, node, contnode):
    """missing-reference: a label of Ansible's own documentation becomes a link to its page there."""
    target = node.get("reftarget", "")
    if node.get("refdomain") not in ("std", None, "") or target not in ANSIBLE_LABELS:
        return None
    path, title = ANSIBLE_LABELS[target]
    ref = nodes.reference("", "", internal=False, refuri=ANSIBLE_DOCS + path)
    ref.append(contnode if node.get("refexplicit") else nodes.inline(title, title))
    return ref


def setup(app):
    app.connect("missing-reference", ansible_refs)
