#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: db_restore
version_added: 0.1.0
short_description: Verify a Postgres dump, then stream it into Immich's database and prove the result
description:
  - First a verification pass that sends nothing anywhere. It refuses a dump whose completion trailer is
    missing (truncated), whose sha256 differs from its manifest, that holds psql meta-commands or SQL that
    run programs (C(\!), C(\o |), C(\copy ... program), C(COPY ... PROGRAM)), or that was dumped from a
    newer Postgres major than the target runs.
  - Then one stream, decompress -> search_path rewrite -> owner remap -> C(docker exec -i <db> psql), with no
    temporary copy. Cluster dumps (C(pg_dumpall)) go through database C(postgres) without a single transaction;
    only the known benign errors (C(current user cannot be dropped), C(role "<db_user>" already exists)) are
    tolerated. Database dumps (C(pg_dump)) run with C(--single-transaction) and C(ON_ERROR_STOP).
  - Afterwards the per-table row counts are compared with the manifest.
  - Accepts the seed's own dumps (CRLF line endings from C(docker exec -t)) and Immich's built-in C(.sql.gz) dumps.
  - The target must be a fresh install; check it with M(homelab.immich.fresh_check) first.
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.instance
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: Runs only the verification pass.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run loads the dump again (into a fresh target).
options:
  src:
    description: The dump (plain, gzip or zstd; detected from its bytes).
    type: path
    required: true
  manifest:
    description: The dump's manifest. Defaults to C(<src>.manifest.json) when that file exists.
    type: path
  rewrite_search_path:
    description: Apply the seed's search_path fix in the stream (needed on PG 14-16 with earthdistance).
    type: bool
    default: true
  owner_remap:
    description:
      - C(auto) rewrites owner and role statements of the dump's owner to O(db_user) when they differ;
        C(never) leaves them; any other value is the role to rewrite to O(db_user).
    type: str
    default: auto
  verify_rows:
    description: Fail when the restored per-table row counts differ from the manifest's.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Restore the newest dump into a fresh instance
  homelab.immich.db_restore:
    container: immich_postgres
    src: /srv/backup/immich/latest/db/immich-db-backup-20261124T220000-v2.3.1-pg15.sql.gz
"""

RETURN = r"""
rows_by_table:
  description: Row counts of every table of schema public after the restore.
  returned: success
  type: dict
rows_diff:
  description: Tables whose counts differ from the manifest (expected, restored).
  returned: when a manifest was used
  type: dict
errors:
  description: psql errors, classified C(benign) and C(fatal) (with C(fatal_count)).
  returned: when the stream ran
  type: dict
seconds:
  description: Wall time of the restore stream.
  returned: when the stream ran
  type: float
verify_seconds:
  description: Wall time of the verification pass.
  returned: always
  type: float
count_seconds:
  description: Wall time of the row count of the restored database (the count that is compared with the manifest).
  returned: success
  type: float
dump_kind:
  description: C(cluster) or C(database), from the dump's header.
  returned: always
  type: str
server_version:
  description: Postgres version the dump was taken from.
  returned: always
  type: str
target_server_version:
  description: Postgres version of the target.
  returned: always
  type: str
lines_rewritten:
  description: search_path lines rewritten in the stream.
  returned: when the stream ran
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import _common, restore


def main():
    module = AnsibleModule(
        argument_spec=_common.instance_args(
            src=dict(type="path", required=True),
            manifest=dict(type="path"),
            rewrite_search_path=dict(type="bool", default=True),
            owner_remap=dict(type="str", default="auto"),
            verify_rows=dict(type="bool", default=True),
        ),
        required_one_of=_common.INSTANCE_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    p = module.params
    container = _common.container_of(module)
    result = _common.run_op(
        module, restore.restore, container, p["db_user"], p["db_name"], p["src"], manifest_path=p["manifest"],
        rewrite_search_path=p["rewrite_search_path"], owner_remap=p["owner_remap"], verify_rows=p["verify_rows"],
        password=p["db_password"], check_mode=module.check_mode)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
