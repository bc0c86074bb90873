#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: engine_bundle
short_description: Pack the collection's backup engine into one zip for the scheduled backup
version_added: 0.1.0
description:
  - Writes the collection's C(module_utils) as one zip file (importable with Python's C(zipimport); the scheduled
    entry point puts it on C(sys.path)), byte-identical for identical sources, so that copying it to a host is one
    idempotent transfer. Used by the C(homelab.immich.schedule) role on the controller (delegated to C(localhost)).
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: Says whether the zip would change; writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  src:
    description: The collection's C(plugins/module_utils) folder.
    type: path
    required: true
  dest:
    description: The zip to write.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Pack the engine
  homelab.immich.engine_bundle:
    src: "{{ role_path }}/../../plugins/module_utils"
    dest: /tmp/homelab-immich-engine.zip
  delegate_to: localhost
"""

RETURN = r"""
files:
  description: Python files in the zip.
  returned: always
  type: int
sha256:
  description: Checksum of the zip.
  returned: always
  type: str
"""

import hashlib
import io
import os
import zipfile

from ansible.module_utils.basic import AnsibleModule

PACKAGE = "ansible_collections/homelab/immich/plugins/module_utils"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def build(src):
    """The zip's bytes: every .py under src at its package path, regular packages all the way down."""
    buf = io.BytesIO()
    names = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                names.append(os.path.relpath(os.path.join(root, name), src))
    packages = set()
    for rel in names:
        parts = (PACKAGE + "/" + rel).split("/")[:-1]
        for i in range(1, len(parts) + 1):
            packages.add("/".join(parts[:i]))
    shipped = set(PACKAGE + "/" + rel for rel in names)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for pkg in sorted(packages):  # zipimport wants regular packages: an empty __init__.py where there is none
            if pkg + "/__init__.py" not in shipped:
                zf.writestr(zipfile.ZipInfo(pkg + "/__init__.py", FIXED_TIME), b"")
        for rel in names:
            info = zipfile.ZipInfo(PACKAGE + "/" + rel, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(os.path.join(src, rel), "rb") as fh:
                zf.writestr(info, fh.read())
    return buf.getvalue(), len(names)


def main():
    module = AnsibleModule(argument_spec=dict(src=dict(type="path", required=True), dest=dict(type="path", required=True)),
                           supports_check_mode=True)
    data, count = build(module.params["src"])
    sha = hashlib.sha256(data).hexdigest()
    dest = module.params["dest"]
    same = os.path.exists(dest) and hashlib.sha256(open(dest, "rb").read()).hexdigest() == sha
    if not same and not module.check_mode:
        tmp = dest + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
    module.exit_json(changed=not same, files=count, sha256=sha, dest=dest)


if __name__ == "__main__":
    main()
