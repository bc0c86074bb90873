# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A backup folder on this host (a second disk, a mounted NAS share).

The first local target is where the engine writes and verifies every new set. Any other local
target receives a copy of the promoted set: same set id, its unchanged originals hard links to
that folder's own previous set, proven by re-creating the file manifest as it copies and comparing
it with the set's, and the dump's sha256 with its manifest.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import time

from ansible_collections.homelab.immich.plugins.module_utils import file_copy, file_manifest, sets
from ansible_collections.homelab.immich.plugins.module_utils._fsio import free_bytes, hash_file, mkdir_private
from ansible_collections.homelab.immich.plugins.module_utils.lock import LOCK_NAME, Lock, LockBusyError
from ansible_collections.homelab.immich.plugins.module_utils.targets import Target, TargetError


class LocalTarget(Target):
    kind = "local"

    def __init__(self, spec, instance_name):
        Target.__init__(self, spec, instance_name)
        self.path = os.path.abspath(os.path.expanduser(spec["path"]))
        self.root = sets.instance_root(self.path, instance_name)
        self._lock = Lock(os.path.join(self.root, LOCK_NAME))

    @property
    def label(self):
        return self.path

    def check(self, create=True):
        if not os.path.isdir(self.path):
            parent = os.path.dirname(self.path.rstrip("/")) or "/"
            if not os.path.isdir(parent):
                raise TargetError("Backup folder %s does not exist, nor its parent %s (a disk that is not mounted?). "
                                  "Nothing was written. Mount the disk or create the folder, then run the backup again."
                                  % (self.path, parent), reason="missing")
        if not create:
            return {"free_bytes": free_bytes(self.path if not os.path.isdir(self.root) else self.root)}
        try:
            mkdir_private(self.root)
        except OSError as exc:
            raise TargetError("Cannot create %s: %s. Nothing was written; check that the disk is mounted read-write."
                              % (self.root, exc), reason="failed") from exc
        if not os.access(self.root, os.W_OK):
            raise TargetError("%s is not writable. Nothing was written." % self.root, reason="failed")
        return {"free_bytes": free_bytes(self.root)}

    def lock(self, holder, stale_seconds=None, wait_seconds=0):
        try:
            self._lock.acquire(holder, wait_seconds=wait_seconds)
        except LockBusyError as exc:
            raise TargetError(str(exc), reason="locked", holder=exc.holder) from exc

    def unlock(self, holder=None):
        self._lock.release()

    def sets(self):
        return [{"set_id": sid, "good": good, "info": info} for sid, good, info in sets.entries(self.root)]

    def delete(self, set_ids):
        sets.delete(self.root, set_ids)

    def send(self, set_dir, set_info, previous=None, progress=None):
        """Copy a promoted set here (same id), hard-linking unchanged originals to this folder's previous set."""
        t0 = time.monotonic()
        sid = set_info["set_id"]
        if os.path.isdir(os.path.join(self.root, sid)):
            return {"set_id": sid, "verified": True, "seconds": 0.0, "note": "already there"}
        begun = sets.begin(self.root, set_id=sid)
        partial = begun["partial"]
        prev_dir = begun["previous_dir"]
        try:
            for sub in ("db", "compose"):
                src = os.path.join(set_dir, sub)
                if os.path.isdir(src):
                    dest = os.path.join(partial, sub)
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(src, dest, copy_function=shutil.copy2)
            for name in (sets.INSTANCE_JSON, sets.SET_JSON, sets.SET_MAC):  # byte for byte: set.mac signs them
                if os.path.exists(os.path.join(set_dir, name)):
                    shutil.copy2(os.path.join(set_dir, name), os.path.join(partial, name))
            src_files = os.path.join(set_dir, "files")
            folders = sorted(os.listdir(src_files)) if os.path.isdir(src_files) else []
            stats = file_copy.backup_copy(
                src_files, folders, begun["files_dir"], begun["manifest"],
                previous_files=os.path.join(prev_dir, "files") if prev_dir else None,
                previous_manifest=os.path.join(prev_dir, file_manifest.NAME) if prev_dir else None,
                progress=progress)
            problems = self._compare(set_dir, partial)
            if problems:
                raise TargetError("The copy of set %s in %s differs from the original (%s): it was not promoted there; "
                                  "the set itself is fine." % (sid, self.path, "; ".join(problems[:5])), reason="corrupt")
            sets.promote(self.root, partial, None)  # set.json and set.mac as the set has them
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return {"set_id": sid, "verified": True, "seconds": round(time.monotonic() - t0, 3),
                "files_linked": stats["linked"], "files_copied": stats["copied"], "bytes_copied": stats["copied_bytes"]}

    @staticmethod
    def _compare(set_dir, copy_dir):
        """The copy's file manifest equals the set's (paths, sizes, mtimes, sha256), and its dump has the
        sha256 the dump manifest records."""
        problems = []
        ours = file_manifest.read(os.path.join(copy_dir, file_manifest.NAME))
        theirs = file_manifest.read(os.path.join(set_dir, file_manifest.NAME))
        for a, b in file_manifest.merge(ours, theirs):
            if a is None or b is None or tuple(a[:4]) != tuple(b[:4]):
                problems.append("%s: %s" % ((a or b)[0], "missing" if a is None else "extra" if b is None else "differs"))
                if len(problems) >= 5:
                    break
        dump, man = sets.find_dump(copy_dir)
        want = sets.read_info(set_dir) or {}
        if dump is None:
            problems.append("no dump")
        elif want.get("dump_sha256") and hash_file(dump)["sha256"] != want["dump_sha256"]:
            problems.append("dump sha256 differs")
        elif man is None:
            problems.append("no dump manifest")
        return problems
