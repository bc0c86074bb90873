# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Backup targets: where a verified backup set is kept. One file per kind:

    local.py    a folder on this host (the first local target is where every set is written first)
    ssh.py      a mirror on another host over SSH (rsync; hard links to its previous set)
    restic.py   an encrypted, deduplicated restic repository (local path, sftp:, rest:, ...)

The backup engine (backup_run.py) writes and verifies a set on the primary local target, then hands
the promoted set to every other target through this interface and applies ONE retention policy
(retention.py) everywhere. A target never decides what a good set is: set.json says it.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class TargetError(Exception):
    """A target cannot be used. The message names the target, what failed, what it means for the
    backups, and the next command to run. ``reason`` is a short machine-readable word
    (unreachable, auth, missing, locked, full, corrupt, failed)."""

    def __init__(self, msg, reason="failed", **facts):
        Exception.__init__(self, msg)
        self.reason = reason
        self.facts = facts


class Target(object):
    """What every target kind offers. ``spec`` is the user's dict from immich_backup_targets."""

    kind = None

    def __init__(self, spec, instance_name):
        self.spec = dict(spec)
        self.instance_name = instance_name

    @property
    def label(self):
        """A human name without secrets, for messages and reports."""
        raise NotImplementedError

    def describe(self):
        return {"kind": self.kind, "label": self.label}

    def check(self):
        """Preflight before anything is written: reachable, initialised, writable. Returns facts
        (version, free bytes, ...); raises TargetError naming what is wrong."""
        raise NotImplementedError

    def lock(self, holder, stale_seconds, wait_seconds):
        """Hold this target for the run (``holder`` is lock.holder_record()); raises TargetError."""

    def unlock(self, holder):
        """Release what lock() took; never raises."""

    def send(self, set_dir, set_info, previous=None, progress=None):
        """Store the promoted set at ``set_dir`` and prove the copy; returns a dict with at least
        ``set_id``, ``verified`` (bool), ``seconds``; raises TargetError."""
        raise NotImplementedError

    def sets(self):
        """What the target holds: [{"set_id", "good", "info"}], oldest first."""
        raise NotImplementedError

    def delete(self, set_ids):
        """Remove these sets (retention decided which)."""
        raise NotImplementedError


def kind_of(spec):
    """'local', 'ssh' or 'restic' from a target dict (raises ValueError with the fix)."""
    if not isinstance(spec, dict):
        raise ValueError("a backup target is a dict such as {path: /mnt/backup} or {host: nas, path: /srv}, not %r" % (spec,))
    if spec.get("restic"):
        return "restic"
    if spec.get("host"):
        if not spec.get("path"):
            raise ValueError("the SSH target %s needs a path" % spec.get("host"))
        return "ssh"
    if spec.get("path"):
        return "local"
    raise ValueError("a backup target needs `path` (a folder), `host` + `path` (SSH) or `restic` (a repository): %r"
                     % sorted(spec))
