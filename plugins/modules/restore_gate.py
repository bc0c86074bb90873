#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: restore_gate
version_added: 0.1.0
short_description: Verify a dump and check that it loads into the target, before anything destructive
description:
  - The restore's compatibility gate, run before C(compose down -v). One streaming read of the dump verifies it
    (completion trailer, psql meta-commands and SQL that run programs, the sha256 against its manifest when one is
    given) and gathers what the target must offer - header and versions, every C(CREATE EXTENSION), the vector
    types and index methods, C(SET transaction_timeout), C(\restrict) lines, the roles it names, its size.
  - The target is what the restore will start - the running database container when it runs the image the compose
    file names (its Postgres, C(pg_available_extensions), C(shared_preload_libraries), roles, free disk), else that
    image read with C(docker run --rm --entrypoint ...) (its Postgres major, psql, the extensions it ships, the
    preload its command or configuration sets). The instance's containers are never touched. What could not be read
    is named in RV(unchecked), never guessed.
  - Refuses with ONE message naming each incompatibility and its fix (an image with VectorChord, the vector-portable
    restore, a newer Postgres image, owner remapping, free disk); the instance is untouched.
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: It only reads.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  src:
    description: The dump (plain, gzip or zstd).
    type: path
    required: true
  manifest:
    description:
      - The dump's manifest, to check its sha256 too. Leave it out when the file was verified already (a backup set
        verified by M(homelab.immich.backup_set)); C(<src>.manifest.json) is used when it exists and this is unset
        and O(use_manifest=true).
    type: path
  use_manifest:
    description: Look for C(<src>.manifest.json) when O(manifest) is not given.
    type: bool
    default: true
  instance:
    description: The target instance as M(homelab.immich.instance_info) returns it (C(db_container), C(db_image),
      C(db_user), C(db_data_location), ...).
    type: dict
    required: true
  db_password:
    description: Password of the database user; only needed over TCP (the socket is trusted).
    type: str
  reset_data:
    description: The restore empties the database folder first (its space counts as free, its roles are gone).
    type: bool
    default: true
  owner_remap:
    description: As M(homelab.immich.db_restore)'s; with C(auto) or a role, owners missing on the target are fine.
    type: str
    default: auto
  vector_portable:
    description: The restore makes the dump vector-portable; a missing vector extension is then a warning.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Check the dump against the instance before compose down -v
  homelab.immich.restore_gate:
    src: /mnt/backup/immich/20261124T220000Z/db/immich-db-backup-20261124T220000-v2.7.5-pg16.sql.gz
    instance: "{{ immich_discover_result.instance }}"
"""

RETURN = r"""
ok:
  description: Whether the dump loads into the target.
  returned: always
  type: bool
msg:
  description: The gate's one message (each incompatibility with its fix), or that both are compatible.
  returned: always
  type: str
check:
  description: The gate as a named check (C(name), C(ok), C(detail)) for the restore summary and the drill's JUnit.
  returned: always
  type: dict
incompatibilities:
  description: Each incompatibility (C(code), C(what), C(fix)).
  returned: always
  type: list
  elements: dict
accepted:
  description:
    - What is fine only because of an option (owner remapping, the vector-portable restore); each is also a warning
      of the task.
  returned: always
  type: list
  elements: str
unchecked:
  description: What could not be checked, and why (a target whose database does not run, an image that is missing).
  returned: always
  type: list
  elements: str
dump:
  description: What the dump needs (kind, versions, extensions, vector extensions, roles, plain size).
  returned: always
  type: dict
target:
  description: What the target offers, and where that was read (C(source)).
  returned: always
  type: dict
seconds:
  description: Wall time of the read of the dump and the target.
  returned: always
  type: float
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import compat, compose, restore
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump_format as df
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError
from ansible_collections.homelab.immich.plugins.module_utils.dump import load_manifest

DUMP_KEYS = ("dump_kind", "server_version", "pg_dump_version", "extensions", "vector_extensions", "roles",
             "transaction_timeout", "restrict", "plain_bytes")
TARGET_KEYS = ("source", "image", "server_version", "psql_version", "shared_preload_libraries", "roles", "free_bytes",
               "notes")


def compose_command(instance):
    """The database service's compose `command:` (what may set shared_preload_libraries)."""
    try:
        config = compose.load_config(instance["project_dir"], instance.get("compose_files") or None)
    except (compose.DiscoveryError, KeyError, ValueError):
        return None
    cmd = ((config.get("services") or {}).get(instance.get("db_service") or "") or {}).get("command")
    return cmd.split() if isinstance(cmd, str) else cmd


def main():
    module = AnsibleModule(argument_spec={
        "src": {"type": "path", "required": True},
        "manifest": {"type": "path"},
        "use_manifest": {"type": "bool", "default": True},
        "instance": {"type": "dict", "required": True},
        "db_password": {"type": "str", "no_log": True},
        "reset_data": {"type": "bool", "default": True},
        "owner_remap": {"type": "str", "default": "auto"},
        "vector_portable": {"type": "bool", "default": False},
    }, supports_check_mode=True)
    p = module.params
    inst = p["instance"]
    t0 = time.monotonic()
    manifest_path = p["manifest"]
    if not manifest_path and p["use_manifest"]:
        manifest_path = p["src"] + ".manifest.json" if os.path.exists(p["src"] + ".manifest.json") else None
    facts = compat.DumpFacts()
    try:
        manifest = load_manifest(manifest_path)
        verified = restore.verify_dump(p["src"], manifest, None, find_owner=False, on_chunk=facts.feed)
        dump = facts.finish()
        target = compat.gather_target(inst, reset_data=p["reset_data"], password=p["db_password"],
                                      command=lambda: compose_command(inst))
    except OpError as exc:
        module.fail_json(msg=str(exc), ok=False, **exc.result)
    except (dx.DockerError, df.DumpError, OSError) as exc:
        module.fail_json(msg="The compatibility gate could not run: %s. Nothing was touched." % exc, ok=False)
    result = compat.check(dump, target, remap_owners=p["owner_remap"] != "never", vector_portable=p["vector_portable"],
                          reset_data=p["reset_data"])
    result["unchecked"] = list(result["unchecked"]) + list(target.get("notes") or [])
    check = compat.gate_check(result, dump, target)
    out = {"ok": result["ok"], "check": check, "incompatibilities": result["incompatibilities"],
           "accepted": result["warnings"], "unchecked": result["unchecked"],
           "dump": dict((k, dump.get(k)) for k in DUMP_KEYS), "target": dict((k, target.get(k)) for k in TARGET_KEYS),
           "sha256_checked": bool(verified.get("sha256")), "seconds": round(time.monotonic() - t0, 3)}
    out["dump"]["extensions"] = [e["name"] for e in dump.get("extensions") or ()]
    for warning in result["warnings"]:
        module.warn(warning)
    if not result["ok"]:
        module.fail_json(msg=result["message"], **out)
    module.exit_json(changed=False, msg=result["message"], **out)


if __name__ == "__main__":
    main()
