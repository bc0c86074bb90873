#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: notify
short_description: Send a start, success or failure ping for an Immich backup to a monitoring service
version_added: 0.1.0
description:
  - Sends one ping in the style of healthchecks.io (C(<url>/start), C(<url>), C(<url>/fail)),
    Uptime Kuma push monitors (C(?status=up|down&msg=...)) or ntfy (a POST of the message with
    C(Title), C(Priority) and C(Tags) headers).
  - Bounded by O(timeout) and O(retries). A ping that cannot be delivered never fails the task
    (unless O(fail_on_error=true)); it returns C(ok=false) and a warning, so a dead monitoring
    endpoint never fails a backup.
  - Uses only the Python standard library on the managed host.
options:
  url:
    description:
      - The check URL (healthchecks.io ping URL, Uptime Kuma push URL, ntfy topic URL).
      - Treated as a secret (its path is the check's token) and never logged.
    type: str
    required: true
  event:
    description: Which moment of the run this ping reports.
    type: str
    choices: [start, success, failure]
    required: true
  style:
    description:
      - The monitoring service's style. V(auto) guesses from the URL (C(/api/push/) is Uptime Kuma,
        a host name containing C(ntfy) is ntfy, anything else healthchecks.io).
      - Uptime Kuma has no "started" state, so a V(start) ping is skipped for it.
    type: str
    choices: [auto, healthchecks, uptime_kuma, ntfy]
    default: auto
  text:
    aliases: [body]
    description: Text sent with the ping (healthchecks.io log body, Kuma C(msg), ntfy message).
    type: str
    default: ''
  title:
    description: ntfy title; defaults to "Immich backup started/succeeded/FAILED".
    type: str
  headers:
    description: Extra HTTP headers, for example C(Authorization) for a protected ntfy topic.
    type: dict
    default: {}
  timeout:
    description: Seconds for one attempt.
    type: float
    default: 10
  retries:
    description: Attempts after the first one (client errors other than 408/429 are not retried).
    type: int
    default: 2
  fail_on_error:
    description: Fail the task when the ping cannot be delivered. Leave false for backups.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: In check mode nothing is sent.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: none
    details: Every run sends a ping; it changes nothing on the host and reports C(changed=false).
author:
  - homelab.immich developers (@homelab)
"""

EXAMPLES = r"""
- name: Tell healthchecks.io the backup started
  homelab.immich.notify:
    url: "{{ immich_monitor_url }}"
    event: start

- name: Report the failure to ntfy with the failing step
  homelab.immich.notify:
    url: https://ntfy.example.org/immich-backups
    style: ntfy
    event: failure
    text: "Backup of {{ inventory_hostname }} failed at {{ ansible_failed_task.name }}"

- name: Uptime Kuma push monitor
  homelab.immich.notify:
    url: https://kuma.example.org/api/push/AbCdEf123
    event: success
    text: "set 20261124T220000Z verified"
"""

RETURN = r"""
ok:
  description: Whether the ping was delivered (or skipped because the style has no such event).
  returned: always
  type: bool
skipped:
  description: True when the style has no such event (Uptime Kuma start).
  returned: always
  type: bool
status:
  description: HTTP status of the last attempt.
  returned: when an HTTP answer came
  type: int
attempts:
  description: Number of attempts made.
  returned: always
  type: int
error:
  description: Why the last attempt failed.
  returned: always
  type: str
style:
  description: The style used.
  returned: always
  type: str
  sample: healthchecks
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.homelab.immich.plugins.module_utils.monitor import ping, warning_for


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True, no_log=True),
            event=dict(type="str", required=True, choices=["start", "success", "failure"]),
            style=dict(type="str", default="auto", choices=["auto", "healthchecks", "uptime_kuma", "ntfy"]),
            text=dict(type="str", default="", aliases=["body"]),
            title=dict(type="str"),
            headers=dict(type="dict", default={}, no_log=True),
            timeout=dict(type="float", default=10),
            retries=dict(type="int", default=2),
            fail_on_error=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    style = None if p["style"] == "auto" else p["style"]
    if module.check_mode:
        module.exit_json(changed=False, ok=True, skipped=True, attempts=0, error=None, style=style or "auto")
    result = ping(p["url"], p["event"], style=style, message=p["text"], title=p["title"],
                  headers=p["headers"], timeout=p["timeout"], retries=p["retries"])
    warning = warning_for(result)
    result.pop("url", None)
    if warning and p["fail_on_error"]:
        module.fail_json(msg=warning, changed=False, **result)
    if warning:
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
