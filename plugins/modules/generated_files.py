#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: generated_files
short_description: Let Immich regenerate the thumbnails, previews and transcodes a restore did not bring back
version_added: 0.1.0
description:
  - Immich does not notice that a generated file its database names is gone - the thumbnail answers HTTP 500 and
    Immich's "missing" thumbnail job skips it, because the C(asset_file) row says the file exists.
  - O(state=repair) removes the C(asset_file) rows of thumbnails, previews, full-size previews and encoded videos
    whose files are absent from UPLOAD_LOCATION (and clears their C(asset_job_status) timestamps and the face crop path
    of people whose crop is absent), in one transaction, so that Immich's own "missing" jobs regenerate exactly those.
    Run it after a restore and before the server starts. O(state=report) only counts them.
  - O(state=trigger) starts those jobs through Immich's API (C(PUT /api/jobs/thumbnailGeneration) and
    C(videoConversion) with C(force=false)); it needs an API key of an admin (O(api_key)).
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
attributes:
  check_mode:
    support: full
    details: Counts the absent files; changes nothing and starts no job.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A second O(state=repair) finds nothing left to repair.
options:
  state:
    description: What to do.
    type: str
    choices: [report, repair, trigger]
    default: report
  instance:
    description: The instance as M(homelab.immich.instance_info) returns it (its database must be running for report and repair).
    type: dict
    required: true
  jobs:
    description: With O(state=trigger), the Immich jobs to start (the RV(jobs) of a repair).
    type: list
    elements: str
    default: [thumbnailGeneration]
  api_url:
    description: With O(state=trigger), the server's URL (defaults to the instance's published port).
    type: str
  api_key:
    description: With O(state=trigger), an API key of an Immich admin (kept out of logs).
    type: str
"""

EXAMPLES = r"""
- name: Let Immich regenerate what the restore did not bring back
  homelab.immich.generated_files:
    state: repair
    instance: "{{ immich_instance }}"
  register: regen
"""

RETURN = r"""
absent:
  description: Absent generated files by kind (thumbnail, preview, fullsize, encoded_video, person).
  returned: report, repair
  type: dict
examples:
  description: A few of the absent files (UPLOAD_LOCATION-relative).
  returned: report, repair
  type: list
  elements: str
jobs:
  description: The Immich jobs that regenerate them.
  returned: report, repair
  type: list
  elements: str
started:
  description: The jobs started (O(state=trigger)).
  returned: trigger
  type: list
  elements: str
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.homelab.immich.plugins.module_utils import guards, regenerate


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="report", choices=["report", "repair", "trigger"]),
            instance=dict(type="dict", required=True),
            jobs=dict(type="list", elements="str", default=["thumbnailGeneration"]),
            api_url=dict(type="str"),
            api_key=dict(type="str", no_log=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    inst = p["instance"]
    if p["state"] == "trigger":
        url = p["api_url"] or inst.get("server_url")
        if not (url and p["api_key"]):
            module.fail_json(msg="Starting Immich's jobs needs api_url (or a published server port) and api_key.")
        if module.check_mode:
            module.exit_json(changed=bool(p["jobs"]), started=[], msg="Would start %s." % ", ".join(p["jobs"]))
        started = []
        for job in p["jobs"]:
            method, target, body, headers = regenerate.job_request(url, p["api_key"], job)
            try:
                resp = open_url(target, data=body, headers=headers, method=method, timeout=30)
                json.loads(resp.read() or b"{}")
            except Exception as exc:  # noqa: BLE001 - any HTTP or network failure is reported the same way
                module.fail_json(msg="Immich did not start the %s job (%s: %s): start it from Administration -> Jobs -> "
                                     "Missing. The restore itself stands." % (job, type(exc).__name__, exc), started=started)
            started.append(job)
        module.exit_json(changed=True, started=started, msg="Started %s." % ", ".join(started))
    try:
        naming = guards.schema_naming(inst)
        found = regenerate.absent_generated(inst, naming)
        result = dict(absent=found["counts"], examples=found["examples"], jobs=regenerate.jobs_for(found["counts"]),
                      checked=found["checked"])
        missing = sum(found["counts"].values())
        if p["state"] == "report" or module.check_mode or not missing:
            module.exit_json(changed=bool(missing) and p["state"] == "repair", **result)
        result.update(regenerate.repair(inst, found, naming))
    except (guards.CoverageError, regenerate.RegenerateError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=True, msg="%d generated files were absent; Immich's missing jobs (%s) will regenerate them."
                     % (missing, ", ".join(result["jobs"])), **result)


if __name__ == "__main__":
    main()
