# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one argument spec of a backup target dict (doc fragment homelab.immich.target), used by every
module that takes targets or a repository: Ansible checks the keys and masks the secrets (no_log)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

# keys of a local folder, an SSH mirror and a restic repository, in one spec (the kind is told by the keys)
TARGET_OPTIONS = dict(
    path=dict(type="str"),
    host=dict(type="str"),
    user=dict(type="str"),
    port=dict(type="int"),
    ssh_args=dict(type="raw"),
    restic=dict(type="str"),
    password=dict(type="str", no_log=True),
    password_file=dict(type="path"),
    init=dict(type="bool", default=False),
    ssh_key=dict(type="path"),
    ssh_command=dict(type="str"),
    options=dict(type="list", elements="str"),
    env=dict(type="dict", no_log=True),
    restic_binary=dict(type="str"),
    snapshot_host=dict(type="str"),
    cache_dir=dict(type="path"),
    cacert=dict(type="path"),
    compression=dict(type="str"),
    limit_upload=dict(type="int"),
    limit_download=dict(type="int"),
    lock_wait=dict(type="int"),
    stall_seconds=dict(type="int"),
    connect_seconds=dict(type="int"),
    progress_fps=dict(type="float"),
    tmp_dir=dict(type="path"),
    prune_days=dict(type="int"),
    check_days=dict(type="int"),
    check_subset=dict(type="str"),
)


def clean(spec):
    """A target dict as the engine reads it: the keys Ansible filled with None left out."""
    return dict((k, v) for k, v in (spec or {}).items() if v is not None and not (k == "init" and v is False))
