#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: fresh_check
version_added: 0.1.0
short_description: Tell whether an Immich database is a fresh install, safe to restore into
description:
  - Fresh means no tables in schema public and no migration rows (C(kysely_migrations), C(migrations)) in
    O(db_name), no databases besides C(postgres) and O(db_name) (and O(allowed_databases)), and the server
    container never started since it was created (C(State.StartedAt) of C(docker inspect)).
  - The seed's restore needs exactly that; restoring into anything else fails half-way.
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.instance
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: Read only.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Never changes anything.
options:
  server_container:
    description: The Immich server container (C(immich_server)); its start time is checked when given.
    type: str
  mode:
    description: C(report) returns RV(fresh); C(assert) fails when the target is not fresh, naming the fix.
    type: str
    choices: [report, assert]
    default: report
  allowed_databases:
    description: Databases that may exist besides C(postgres) and O(db_name).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Refuse to restore into a database a server has already migrated
  homelab.immich.fresh_check:
    container: immich_postgres
    server_container: immich_server
    mode: assert
"""

RETURN = r"""
fresh:
  description: Whether the target is a fresh install.
  returned: always
  type: bool
reasons:
  description: Why it is not fresh (empty when fresh).
  returned: always
  type: list
  elements: str
checks:
  description: What was looked at (table count, migration rows, databases, server StartedAt).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import _common, fresh


def main():
    module = AnsibleModule(
        argument_spec=_common.instance_args(
            server_container=dict(type="str"),
            mode=dict(type="str", choices=["report", "assert"], default="report"),
            allowed_databases=dict(type="list", elements="str", default=[]),
        ),
        required_one_of=_common.INSTANCE_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    p = module.params
    container = _common.container_of(module)
    result = _common.run_op(module, fresh.fresh_check, container, p["db_user"], p["db_name"],
                            server_container=p["server_container"], password=p["db_password"],
                            allowed_databases=p["allowed_databases"])
    if p["mode"] == "assert" and not result["fresh"]:
        module.fail_json(msg=fresh.not_fresh_message(container, result["reasons"]), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
