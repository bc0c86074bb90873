#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dump_rewrite
version_added: 0.1.0
short_description: Apply the seed's search_path fix to a Postgres dump file
description:
  - Rewrites C(SELECT pg_catalog.set_config('search_path', '', false);) into
    C(SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);), byte for byte what the seed's
    C(sed) command does (in the C locale), so that restoring the C(earthdistance) generated column does not fail
    with C(type "earth" does not exist).
  - Streams plain, gzip or zstd files (detected by magic bytes) and writes the result under a temporary name
    before renaming it into place.
  - M(homelab.immich.db_restore) applies the same rewrite in its stream; this module is for users who want the
    fixed file itself.
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: Counts the lines that would be rewritten, writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: An already rewritten file has nothing to rewrite and reports changed=false.
options:
  src:
    description: The dump to read.
    type: path
    required: true
  dest:
    description: Where to write the rewritten dump. Defaults to O(src) (rewritten in place).
    type: path
  compression:
    description: Compression of O(dest). Defaults to that of O(src).
    type: str
    choices: [gzip, zstd, none]
"""

EXAMPLES = r"""
- name: Fix an old seed-style dump in place
  homelab.immich.dump_rewrite:
    src: /srv/backup/dump.sql.gz
"""

RETURN = r"""
lines_rewritten:
  description: Lines rewritten (or that would be in check mode).
  returned: always
  type: int
  sample: 7
dest:
  description: The file written.
  returned: always
  type: str
compression:
  description: Compression of the file written.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import _common, rewrite


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            dest=dict(type="path"),
            compression=dict(type="str", choices=["gzip", "zstd", "none"]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = _common.run_op(module, rewrite.rewrite_file, p["src"], p["dest"], p["compression"],
                            check_mode=module.check_mode)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
