#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: db_dump
version_added: 0.1.0
short_description: Stream a verified dump of Immich's Postgres to a file on the host
description:
  - Runs C(pg_dumpall --clean --if-exists) (a cluster dump, the seed's way) or C(pg_dump --clean --if-exists)
    of one database (Immich 2.5+ style) with the binaries inside the database container, and streams it
    through C(gzip) or C(zstd) into O(dest). Never through a TTY, never holding the dump in memory.
  - The file is written under a temporary name, fsynced and verified (every stage exited 0, the completion
    trailer is present, size and per-table row counts are not suspiciously below the previous dump's)
    before it is renamed into place. A JSON manifest C(<file>.manifest.json) is written beside it.
  - The file name follows Immich's own backups, so Immich's web restore accepts gzip dumps.
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.instance
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: Reads versions and row counts, writes nothing and returns the path that would be written.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run writes a new, timestamped dump.
options:
  dest:
    description: Folder for the dump and its manifest (created with mode 0700 when missing).
    type: path
    required: true
  dump_kind:
    description: C(cluster) runs C(pg_dumpall) (roles and every database); C(database) runs C(pg_dump) of O(db_name).
    type: str
    choices: [cluster, database]
    default: cluster
  compression:
    description: C(gzip) (what Immich writes and reads), C(zstd) (faster; needs the C(zstd) binary) or C(none).
    type: str
    choices: [gzip, zstd, none]
    default: gzip
  compression_level:
    description:
      - Level passed to the compressor. Defaults to 1 for both gzip and zstd.
      - Level 1 keeps the dump close to the speed of C(pg_dumpall) itself on a small server, where the compressor
        shares the CPU with Postgres; zstd level 1 is still smaller than gzip level 1. Raise it when the dump's
        size matters more than its duration.
    type: int
  immich_version:
    description: Immich version for the file name and manifest (C(v2.3.1)); C(unknown) when not given.
    type: str
  previous_manifest:
    description: Manifest of the previous dump; a dump much smaller than it (see O(min_size_ratio)) is suspicious.
    type: path
  min_size_ratio:
    description: Size and total row count below this fraction of the previous dump's are suspicious.
    type: float
    default: 0.5
  on_shrink:
    description: What a suspicious (empty, shrunken, tables missing) dump does. C(fail) keeps nothing.
    type: str
    choices: [fail, warn]
    default: fail
"""

EXAMPLES = r"""
- name: Dump the Immich database (seed-compatible cluster dump, gzip)
  homelab.immich.db_dump:
    container: immich_postgres
    dest: /srv/backup/immich/db
    immich_version: v2.3.1
  register: dump

- name: Immich 2.5+ style database dump with zstd, compared with the previous one
  homelab.immich.db_dump:
    project_dir: /opt/immich
    dump_kind: database
    compression: zstd
    dest: /srv/backup/immich/db
    previous_manifest: "{{ previous.manifest_path }}"
"""

RETURN = r"""
path:
  description: The dump written (or that would be written in check mode).
  returned: always
  type: str
  sample: /srv/backup/immich/db/immich-db-backup-20261124T220000-v2.3.1-pg15.sql.gz
manifest_path:
  description: Its manifest (JSON).
  returned: always
  type: str
bytes:
  description: Size of the file on disk (null in check mode).
  returned: always
  type: int
plain_bytes:
  description: Size of the uncompressed SQL.
  returned: success
  type: int
sha256:
  description: SHA-256 of the file on disk.
  returned: always
  type: str
seconds:
  description: Wall time of the dump stream.
  returned: always
  type: float
mb_per_s:
  description: Uncompressed MB per second.
  returned: always
  type: float
dump_kind:
  description: C(cluster) or C(database).
  returned: always
  type: str
server_version:
  description: Version of the Postgres server dumped.
  returned: always
  type: str
pg_dump_version:
  description: Version of the pg_dump binary used (inside the container).
  returned: always
  type: str
databases:
  description: Databases in the dump.
  returned: always
  type: list
  elements: str
rows_by_table:
  description: Exact row count of every table of schema public of O(db_name), counted just before the dump.
  returned: always
  type: dict
compression:
  description: Compression used.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import _common, dump


def main():
    module = AnsibleModule(
        argument_spec=_common.instance_args(
            dest=dict(type="path", required=True),
            dump_kind=dict(type="str", choices=["cluster", "database"], default="cluster"),
            compression=dict(type="str", choices=["gzip", "zstd", "none"], default="gzip"),
            compression_level=dict(type="int"),
            immich_version=dict(type="str"),
            previous_manifest=dict(type="path"),
            min_size_ratio=dict(type="float", default=0.5),
            on_shrink=dict(type="str", choices=["fail", "warn"], default="fail"),
        ),
        required_one_of=_common.INSTANCE_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    p = module.params
    container = _common.container_of(module)
    result = _common.run_op(
        module, dump.dump, container, p["db_user"], p["db_name"], p["dest"], dump_kind=p["dump_kind"],
        compression=p["compression"], compression_level=p["compression_level"], immich_version=p["immich_version"],
        previous_manifest=p["previous_manifest"], min_size_ratio=p["min_size_ratio"], on_shrink=p["on_shrink"],
        password=p["db_password"], check_mode=module.check_mode)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
