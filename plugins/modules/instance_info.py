#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: instance_info
short_description: Discover an Immich instance from its Docker Compose project
version_added: 0.1.0
description:
  - Reads the compose model (C(docker compose config --format json), so interpolation and C(.env) are
    resolved by Compose itself) and the project's C(.env).
  - Finds UPLOAD_LOCATION (the host folder mounted at C(/data) or C(/usr/src/app/upload) in the server
    service), DB_DATA_LOCATION (the bind source at C(/var/lib/postgresql/data) of the database service,
    or its named volume), the database user and name (POSTGRES_USER, POSTGRES_DB) and the container names.
  - Every discovered value can be overridden. The database password is never returned.
author: homelab.immich developers (@homelab)
attributes:
  check_mode:
    support: full
    description: Read only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
options:
  project_dir:
    description: Folder holding the instance's C(docker-compose.yml) and C(.env). Required unless O(project_name) is set.
    type: path
  project_name:
    description: Compose project name of a project known to Docker (C(docker compose ls --all)); used when O(project_dir) is not set.
    type: str
  compose_files:
    description: Compose files relative to O(project_dir) when they are not the default C(docker-compose.yml)/C(compose.yaml).
    type: list
    elements: str
    default: []
  instance_name:
    description: Name of the instance in backup targets (the folder under each target). Defaults to the compose project name.
    type: str
  overrides:
    description:
      - Values that win over discovery. Keys C(upload_location), C(db_data_location), C(db_user), C(db_name),
        C(db_container), C(server_container), C(db_service), C(server_service), C(media_location), C(project_name).
    type: dict
    default: {}
  check_originals:
    description:
      - Also count the assets in the database and check that every original (C(originalPath), mapped from
        the media location to UPLOAD_LOCATION) exists on disk. Needs the database container running.
    type: bool
    default: false
  reset_guard_path:
    description:
      - A folder the caller intends to wipe as DB_DATA_LOCATION. The reasons it must not be wiped are returned in
        RV(reset_refusals) (empty when it is this project's database bind mount inside the project).
    type: path
  check_reset:
    description: Return RV(reset_refusals) for the discovered DB_DATA_LOCATION (or O(reset_guard_path) when set).
    type: bool
    default: false
  allow_outside_project:
    description: With O(reset_guard_path), accept a database folder outside the compose project (Postgres on another disk).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Find the instance in /opt/immich
  homelab.immich.instance_info:
    project_dir: /opt/immich
  register: immich

- name: A second instance whose containers were renamed by hand
  homelab.immich.instance_info:
    project_name: immich-family
    overrides:
      db_container: family_db
"""

RETURN = r"""
reset_refusals:
  description: Why O(reset_guard_path) must not be wiped; empty when it may.
  returned: when O(reset_guard_path) or O(check_reset) is set
  type: list
  elements: str
originals:
  description: Assets counted in the database and originals missing on disk.
  returned: when O(check_originals=true)
  type: dict
  contains:
    assets: {description: Rows of the asset table., type: int}
    missing_originals: {description: Assets whose original file is not on disk., type: int}
    missing_examples: {description: Up to 10 missing paths., type: list, elements: str}
    external_assets: {description: Assets outside the media location (external libraries; not checked)., type: int}
instance:
  description: The instance, as every role of the collection consumes it.
  returned: success
  type: dict
  contains:
    project_name: {description: Compose project name., type: str}
    project_dir: {description: Compose project folder., type: str}
    instance_name: {description: Folder name of this instance under each backup target., type: str}
    db_container: {description: Container name of the database service., type: str}
    server_container: {description: Container name of the immich-server service., type: str}
    db_service: {description: Compose service name of the database., type: str}
    server_service: {description: Compose service name of the server., type: str}
    db_user: {description: POSTGRES_USER of the database service., type: str}
    db_name: {description: POSTGRES_DB of the database service., type: str}
    db_data_location: {description: Host folder of the Postgres data (null for a named volume)., type: str}
    db_data_volume: {description: "Named volume holding the Postgres data, when not a bind mount.", type: str}
    upload_location: {description: Host folder of UPLOAD_LOCATION., type: str}
    media_location: {description: Where the server sees UPLOAD_LOCATION (C(/data) or C(/usr/src/app/upload))., type: str}
    server_url: {description: "URL of the server's published port (for C(/api/server/ping)); null when not published.", type: str}
    compose_argv: {description: "The argv prefix of compose commands on this instance (C(docker compose --project-directory ... --file=...)).",
                   type: list, elements: str}
    db_running: {description: Whether the database container is running., type: bool}
    server_running: {description: Whether the server container is running., type: bool}
    postgres_version: {description: "Version of the running database server (null when it is not running).", type: str}
    pg_major: {description: "Major version of the running database server (null when it is not running).", type: int}
  sample:
    project_name: immich
    db_container: immich_postgres
    upload_location: /opt/immich/library
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec, dump_format, guards, immich
from ansible_collections.homelab.immich.plugins.module_utils.compose import DiscoveryError, discover_instance

OVERRIDE_KEYS = ("upload_location", "db_data_location", "db_user", "db_name", "db_container", "server_container",
                 "db_service", "server_service", "media_location", "project_name", "server_url")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path"),
            project_name=dict(type="str"),
            compose_files=dict(type="list", elements="str", default=[]),
            instance_name=dict(type="str"),
            overrides=dict(type="dict", default={}),
            check_originals=dict(type="bool", default=False),
            reset_guard_path=dict(type="path"),
            check_reset=dict(type="bool", default=False),
            allow_outside_project=dict(type="bool", default=False),
        ),
        required_one_of=[("project_dir", "project_name")],
        supports_check_mode=True,
    )
    p = module.params
    unknown = sorted(set(p["overrides"]) - set(OVERRIDE_KEYS))
    if unknown:
        module.fail_json(msg="Unknown override(s) %s; allowed: %s" % (", ".join(unknown), ", ".join(OVERRIDE_KEYS)))
    overrides = dict(p["overrides"], instance_name=p["instance_name"])
    try:
        inst = discover_instance(p["project_dir"], p["project_name"], p["compose_files"], overrides)
    except DiscoveryError as exc:
        module.fail_json(msg=str(exc))
    inst["db_running"] = docker_exec.running(inst["db_container"])
    inst["server_running"] = docker_exec.running(inst["server_container"])
    inst["postgres_version"] = None
    if inst["db_running"]:
        try:
            inst["postgres_version"] = docker_exec.server_version(inst["db_container"], inst["db_user"], "postgres")
        except docker_exec.DockerError as exc:
            module.warn("Cannot ask the database %s for its version: %s" % (inst["db_container"], exc))
    inst["pg_major"] = dump_format.major_of(inst["postgres_version"])
    result = dict(changed=False, instance=inst)
    if p["reset_guard_path"] or p["check_reset"]:
        result["reset_refusals"] = guards.reset_guard(
            inst, p["reset_guard_path"] or inst["db_data_location"] or inst.get("db_data_env"), p["allow_outside_project"])
    if p["check_originals"]:
        try:
            cov = guards.coverage(inst, inst["upload_location"], immich.ORIGINAL_FOLDERS)
        except guards.CoverageError as exc:
            module.fail_json(msg=str(exc), **result)
        result["originals"] = {"assets": cov["by_kind"].get("original", {}).get("referenced", 0) + cov["external"],
                               "missing_originals": cov["missing"], "missing_examples": cov["missing_examples"],
                               "external_assets": cov["external"], "coverage": cov}
    for warning in inst.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
