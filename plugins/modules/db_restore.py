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
  - One stream, decompress -> search_path rewrite -> owner remap -> [vector-portable] -> C(docker exec -i <db> psql),
    with no temporary copy, checked on its way. Before the first byte is sent the header must name a dump of a
    Postgres major the target can load. Each chunk is scanned before it is sent, for psql meta-commands and SQL that
    run programs (C(\!), C(\o |), C(\copy ... program), C(COPY ... PROGRAM)) and, in a database dump, for
    anything that would take statements out of the restore's transaction (C(COMMIT), C(ROLLBACK), C(END),
    C(\connect), C(\gexec), any meta-command but C(\restrict)/C(\unrestrict)); only whole lines reach psql.
    At the end come the completion trailer (a missing one means truncated), the decompressor's check, the sha256
    against the manifest and the COPY row counts against the manifest.
  - Database dumps (C(pg_dump)) run in ONE transaction with C(ON_ERROR_STOP) whose C(COMMIT) is sent only when
    every check passed; when one fails, psql's input ends without it and the server rolls everything back, so the
    target database is as it was. No separate verification pass is needed (O(verify=auto)).
  - Cluster dumps (C(pg_dumpall)) go through database C(postgres) without a single transaction (C(DROP DATABASE)
    cannot run in one); only the known benign errors (C(current user cannot be dropped), C(role "<db_user>" already
    exists)) are tolerated. No transaction protects the target from a check that fails at the end, so with
    O(verify=auto) they are first verified in a separate pass that sends nothing.
  - Afterwards the per-table row counts of the database are compared with the manifest.
  - Accepts the seed's own dumps (CRLF line endings from C(docker exec -t)) and Immich's built-in C(.sql.gz) dumps.
  - The target must be a fresh install; check it with M(homelab.immich.fresh_check) first.
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.instance
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: Runs only the verification pass (nothing is sent).
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
    description:
      - Fail when the per-table row counts differ from the manifest's. For a database dump the COPY rows of the
        stream are compared before the COMMIT (a difference rolls the restore back), and the restored database's
        counts after it.
    type: bool
    default: true
  verify:
    description:
      - C(auto) checks database dumps in the stream only and verifies cluster dumps in a separate pass first.
      - C(pass) always runs the separate verification pass first (the file is read twice).
      - C(stream) never does - for a caller that verified the file before anything destructive (the restore role's
        compatibility gate); a cluster dump refused in the stream has then left the target incomplete.
    type: str
    choices: [auto, pass, stream]
    default: auto
  vector_portable:
    description:
      - Make the dump load into a target without its vector extension (VectorChord, pgvector or pgvecto.rs) - the
        embedding columns the target cannot type become C(real[]), their vector indexes and the missing extension's
        C(CREATE EXTENSION) are left out. Immich re-creates the extension's type and indexes at its next start.
        A dump whose extensions the target has passes unchanged. Counts are returned in RV(vector_portable).
    type: bool
    default: false
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
  description: Wall time of the separate verification pass (0.0 when the dump was checked in the stream only).
  returned: always
  type: float
verification:
  description: How the dump was checked - C(in the stream), or C(pass, then in the stream).
  returned: always
  type: str
single_transaction:
  description: Whether the dump was loaded in one transaction committed after the checks (database dumps).
  returned: when the stream ran
  type: bool
stream_rows_by_table:
  description: Per-table COPY rows of the stream (database dumps), compared with the manifest before the COMMIT.
  returned: when a database dump was restored
  type: dict
vector_portable:
  description:
    - What the vector-portable stage changed - C(columns) made C(real[]), C(indexes) and C(extensions) left out,
      C(rows_total) COPY rows rewritten, a one-line C(summary), and C(warnings).
  returned: when O(vector_portable=true) and the stream ran
  type: dict
portable_check:
  description: The vector-portable stage as a named check (C(name), C(ok), C(detail)) for the restore summary.
  returned: when O(vector_portable=true) and the stream ran
  type: dict
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
            verify=dict(type="str", default="auto", choices=["auto", "pass", "stream"]),
            vector_portable=dict(type="bool", default=False),
        ),
        required_one_of=_common.INSTANCE_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    p = module.params
    container = _common.container_of(module)
    result = _common.run_op(
        module, restore.restore, container, p["db_user"], p["db_name"], p["src"], manifest_path=p["manifest"],
        rewrite_search_path=p["rewrite_search_path"], owner_remap=p["owner_remap"], verify_rows=p["verify_rows"],
        password=p["db_password"], check_mode=module.check_mode, verify=p["verify"], vector_portable=p["vector_portable"])
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
