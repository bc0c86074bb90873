#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: restore_proof
version_added: 0.1.0
short_description: Prove a restored Immich instance the way Immich would - per-asset SHA-1 and a boot proof
description:
  - O(state=maintenance), after the dump is loaded and before the server starts - a dump taken during maintenance
    mode restores into it (the server would boot its maintenance worker, not the API); the C(maintenance-mode) row
    is switched off, as C(immich-admin disable-maintenance-mode) writes it, and the result says so. Never fails - a
    database it cannot read gives a failed check.
  - O(state=prove), after the server answers - the per-asset proof streams C(asset."originalPath", checksum,
    "checksumAlgorithm") from the database (older schemas without the algorithm column too), maps each container
    path to UPLOAD_LOCATION and SHA-1s every original (or O(sample)) against the checksum Immich stored; it counts
    matched, mismatched, missing-in-backup (a row, no file), orphans (a file, no row) and external-library assets
    (whose checksum hashes their path, not their bytes), with examples. Memory stays flat at 100k assets.
  - The boot proof of O(state=prove) - an admin exists; the instance is not in maintenance mode (and whether it was
    cleared before the start); no C(Detected schema drift) line in C(docker logs --since <its start>) of the server;
    C(immich-admin schema-check)'s verdict where the image has it (a skipped check where not).
  - Every proof is a named check C({name, ok, detail}) in RV(checks), after the O(checks) given (the compatibility
    gate, the vector-portable stage), for the restore summary and the drill's JUnit. The module does not fail on a
    failed check - RV(ok) and RV(msg) say what failed; the caller decides (a failed proof never rolls back a restore
    whose rows matched the backup).
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  idempotent:
    support: partial
    details: V(prove) only reads; V(maintenance) changes the database once.
options:
  state:
    description: What to do.
    type: str
    choices: [maintenance, prove]
    required: true
  instance:
    description: The restored instance as M(homelab.immich.instance_info) returns it (C(db_container), C(db_user),
      C(db_name), C(server_container), C(upload_location), C(media_location)).
    type: dict
    required: true
  db_password:
    description: Password of the database user; only needed over TCP (the socket is trusted).
    type: str
  sample:
    description:
      - Originals to hash - C(all) (or C(0)), a count such as C(200) (the same assets for the same O(seed)), or a
        fraction such as C(10%). Originals not in the sample are still checked for presence.
    type: str
    default: all
  seed:
    description: Picks the sample; the same seed picks the same assets.
    type: int
    default: 0
  assets:
    description: Run the per-asset SHA-1 proof.
    type: bool
    default: true
  originals_restored:
    description:
      - Whether the restore put the originals in place (false for a lone dump, which holds no photos) - then the
        per-asset counts are reported, not failed.
    type: bool
    default: true
  schema_check:
    description: Run C(immich-admin schema-check) in the server container where the image has it.
    type: bool
    default: true
  maintenance:
    description: The result of O(state=maintenance) of this restore (to say that maintenance mode was cleared).
    type: dict
    default: {}
  checks:
    description: Checks gathered before (each C(name), C(ok), C(detail)), listed first.
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: Prove the restored instance
  homelab.immich.restore_proof:
    state: prove
    instance: "{{ immich_restore_instance }}"
    sample: "200"
"""

RETURN = r"""
checks:
  description: Every check (C(name), C(ok), C(detail), C(skipped)).
  returned: state=prove
  type: list
  elements: dict
ok:
  description: Whether every check passed.
  returned: always
  type: bool
msg:
  description: What failed (the restore stands), or that every check passed.
  returned: always
  type: str
assets:
  description: The per-asset counts (C(assets), C(matched), C(mismatched), C(missing_in_backup), C(orphans),
    C(external), ..., C(examples), C(sample), C(seconds)).
  returned: state=prove and O(assets=true)
  type: dict
cleared:
  description: Whether maintenance mode was switched off before the server started.
  returned: state=maintenance
  type: bool
check:
  description: The maintenance check of O(state=maintenance).
  returned: state=maintenance
  type: dict
seconds:
  description: Wall time of the proof.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import proof


def maintenance(module, p, inst):
    step = proof.clear_maintenance(inst["db_container"], inst["db_user"], inst["db_name"], p["db_password"])
    module.exit_json(changed=step["cleared"], cleared=step["cleared"], before=step["before"], check=step["check"],
                     ok=step["check"]["ok"], msg=step["check"]["detail"], seconds=0.0)


def asset_checks(p, inst):
    """The per-asset proof as a check, and its counts."""
    try:
        rows = proof.stream_asset_rows(inst["db_container"], inst["db_user"], inst["db_name"], password=p["db_password"])
        res = proof.asset_proof(rows, inst["upload_location"], inst.get("media_location"),
                                sample=proof.parse_sample(p["sample"]), seed=p["seed"])
    except (proof.ProofError, dx.DockerError, ValueError) as exc:
        return proof.check("per-asset SHA-1", False, "the proof could not run: %s" % exc), None
    chk = proof.asset_check(res)
    chk["detail"] += " (%d originals, %.1f MB hashed in %.1f s)" % (res["hashed"], res["bytes_hashed"] / 1e6, res["seconds"])
    chk["seconds"] = res["seconds"]
    if not p["originals_restored"] and not chk["ok"]:
        chk = proof.check("per-asset SHA-1", True, "reported, not failed (a dump holds no photos; the originals in "
                          "UPLOAD_LOCATION were not restored): " + res["detail"])
    return chk, res


def boot_checks(p, inst):
    db, server = inst["db_container"], inst.get("server_container")
    checks = []
    try:
        facts = proof.read_boot_facts(db, inst["db_user"], inst["db_name"], p["db_password"])
        checks.append(proof.admin_check(facts["admins"]))
        checks.append(proof.maintenance_after_start(p["maintenance"], facts["maintenance"]))
    except (proof.ProofError, dx.DockerError, IndexError, ValueError) as exc:
        checks.append(proof.check("admin exists", False, "the database could not be read: %s" % exc))
    if server:
        try:
            checks.append(proof.schema_drift_log_check(proof.server_log_since(server, proof.server_started_at(server))))
        except (proof.ProofError, dx.DockerError) as exc:
            checks.append(proof.check("no schema drift logged", False, str(exc)))
        if p["schema_check"]:
            found = proof.run_schema_check(server)
            checks.append(proof.schema_check_verdict(found[0], rc=found[1]) if found is not None
                          else proof.schema_check_verdict("", available=False))
    return checks


def prove(module, p, inst):
    t0 = time.monotonic()
    checks = [dict(c) for c in p["checks"] if c]
    checks += boot_checks(p, inst)  # first: whether the instance works at all (an admin, the API, its schema)
    assets = None
    if p["assets"]:
        chk, assets = asset_checks(p, inst)
        checks.append(chk)
    ok, msg = proof.outcome(checks)
    module.exit_json(changed=False, ok=ok, msg=msg, checks=checks, assets=assets, seconds=round(time.monotonic() - t0, 3))


def main():
    module = AnsibleModule(argument_spec={
        "state": {"type": "str", "required": True, "choices": ["maintenance", "prove"]},
        "instance": {"type": "dict", "required": True},
        "db_password": {"type": "str", "no_log": True},
        "sample": {"type": "str", "default": "all"},
        "seed": {"type": "int", "default": 0},
        "assets": {"type": "bool", "default": True},
        "originals_restored": {"type": "bool", "default": True},
        "schema_check": {"type": "bool", "default": True},
        "maintenance": {"type": "dict", "default": {}},
        "checks": {"type": "list", "elements": "dict", "default": []},
    })
    p = module.params
    inst = p["instance"]
    missing = [k for k in ("db_container", "db_user", "db_name", "upload_location") if not inst.get(k)]
    if missing:
        module.fail_json(msg="instance lacks %s: pass the instance as homelab.immich.instance_info returns it." % ", ".join(missing))
    {"maintenance": maintenance, "prove": prove}[p["state"]](module, p, inst)


if __name__ == "__main__":
    main()
