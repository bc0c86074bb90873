#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: restore_files
short_description: Copy a backup set's files back into UPLOAD_LOCATION, verified as they are copied
version_added: 0.1.0
description:
  - Copies every file of the set's file manifest from C(<set>/files/) into O(dest), comparing each file's sha256 with
    the manifest while it is copied (one read; a mismatch fails the module and the file is not put in place).
  - Then makes sure all six media folders Immich checks at boot exist with their C(.immich) marker (a restored
    database carries the mount-check flags of the instance it came from, so a missing folder or marker stops
    the server from starting).
  - Files already in O(dest) are replaced by the set's copy; files in O(dest) that the set does not hold are left alone.
  - With O(move) a staging copy fetched from a repository gives its files up instead (renamed into O(dest) after the same
    sha256 check), so the library is not written a second time.
author: homelab.immich developers (@homelab)
extends_documentation_fragment:
  - homelab.immich.attributes
  - homelab.immich.progress
attributes:
  check_mode:
    support: full
    details: Counts what would be copied; writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run copies the set's files again (they are verified as they are copied).
options:
  set_dir:
    description: The backup set (C(<target>/<instance>/<set id>)). Without it only the media folders and markers are made.
    type: path
  dest:
    description: UPLOAD_LOCATION of the instance (the host folder the server mounts at its media location).
    type: path
    required: true
  folders:
    description: Only these media folders of the set (all the set holds when not given).
    type: list
    elements: str
  dir_mode:
    description: Mode of the folders created.
    type: str
    default: "0755"
  file_mode:
    description: Mode of the files written.
    type: str
    default: "0644"
  move:
    description:
      - O(set_dir) is a staging copy fetched from a repository (M(homelab.immich.repository) C(operation=fetch) marks it
        so), so each verified file is moved into O(dest) instead of copied (one read and a rename; a copy across
        filesystems). The staging copy is not a whole set afterwards, and its marker says so.
      - Ignored, with a warning, for a set that carries no such marker, so that a backup set itself is never emptied.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Put the originals and thumbnails back
  homelab.immich.restore_files:
    set_dir: /mnt/backup/immich/immich/20261201T023000Z
    dest: /opt/immich/library
"""

RETURN = r"""
files:
  description: Files copied (and verified) into O(dest).
  returned: always
  type: int
bytes:
  description: Bytes copied.
  returned: always
  type: int
moved:
  description: Files of them moved (renamed) out of a staging copy instead of copied (O(move)).
  returned: when O(set_dir) is given
  type: int
seconds:
  description: Duration of the copy.
  returned: always
  type: float
markers_created:
  description: Media folders that had no C(.immich) marker and got one.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.homelab.immich.plugins.module_utils import file_copy, file_manifest, immich, sets
from ansible_collections.homelab.immich.plugins.module_utils.backup_run import PROGRESS_ARGS, progress_file_of

STEP = "restore files"


def totals(manifest, only):
    """Files and bytes the copy will make (one read of the manifest: the ETA of the progress lines)."""
    files = size = 0
    for entry in file_manifest.read(manifest):
        if only is None or immich.folder_of(entry.path) in only:
            files += 1
            size += entry.size
    return files, size


def ensure_markers(dest, dir_mode, check_mode):
    """The six media folders with a `.immich` marker each (the server rewrites markers at boot)."""
    created = []
    for folder in immich.MEDIA_FOLDERS:
        marker = os.path.join(dest, folder, immich.MARKER)
        if os.path.exists(marker):
            continue
        created.append(folder)
        if check_mode:
            continue
        os.makedirs(os.path.join(dest, folder), mode=dir_mode, exist_ok=True)
        with open(marker, "w") as fh:
            fh.write("")
        os.chmod(marker, 0o644)
    return created


def main():
    module = AnsibleModule(
        argument_spec=dict(
            set_dir=dict(type="path"),
            dest=dict(type="path", required=True),
            folders=dict(type="list", elements="str"),
            dir_mode=dict(type="str", default="0755"),
            file_mode=dict(type="str", default="0644"),
            move=dict(type="bool", default=False),
            **PROGRESS_ARGS
        ),
        supports_check_mode=True,
    )
    p = module.params
    dir_mode, file_mode = int(p["dir_mode"], 8), int(p["file_mode"], 8)
    if not p["set_dir"]:
        markers = ensure_markers(p["dest"], dir_mode, module.check_mode)
        module.exit_json(changed=bool(markers), files=0, bytes=0, seconds=0.0, markers_created=markers,
                         msg=("Media folders and markers in place: created %s." % ", ".join(markers)) if markers
                         else "Media folders and markers in place: all were already there.")
    manifest = os.path.join(p["set_dir"], file_manifest.NAME)
    if not os.path.exists(manifest):
        module.fail_json(msg="%s is not a backup set (no %s). Nothing was copied." % (p["set_dir"], file_manifest.NAME))
    only = set(p["folders"]) if p["folders"] else None
    staged = sets.fetched_state(p["set_dir"]) is not None
    if module.check_mode:
        files = sum(1 for e in file_manifest.read(manifest) if only is None or immich.folder_of(e.path) in only)
        module.exit_json(changed=files > 0, files=files, bytes=0, seconds=0.0,
                         markers_created=ensure_markers(p["dest"], dir_mode, True),
                         msg="Would %s %d files of %s into %s." % (
                             "move (copy across filesystems)" if p["move"] and staged else "copy", files, p["set_dir"],
                             p["dest"]))
    move = p["move"]
    if move and not staged:
        module.warn("move=true ignored: %s is no staging copy fetched from a repository (no %s), so its files are "
                    "copied and the set stays whole." % (p["set_dir"], os.path.basename(sets.fetched_marker(p["set_dir"]))))
        move = False
    os.makedirs(p["dest"], mode=dir_mode, exist_ok=True)
    progress = progress_file_of(p)
    try:
        on_copy = None
        if p["progress_file"]:
            files_total, bytes_total = totals(manifest, only)
            progress({"step": STEP, "files": 0, "bytes": 0, "files_total": files_total, "bytes_total": bytes_total})

            def on_copy(**counters):
                progress(dict(counters, step=STEP, files_total=files_total, bytes_total=bytes_total))
        try:
            stats = file_copy.restore_copy(os.path.join(p["set_dir"], "files"), manifest, p["dest"], dir_mode=dir_mode,
                                           file_mode=file_mode, only_folders=only, progress=on_copy, move=move)
        finally:
            progress.close({"step": "done"})
            if move:
                sets.mark_moved(p["set_dir"])
    except (OSError, file_manifest.ManifestError) as exc:
        module.fail_json(msg="Copying the files of %s into %s failed: %s. The database restore stands; run the restore "
                             "of the files again once the cause is fixed." % (p["set_dir"], p["dest"], exc))
    if stats["mismatched"] or stats["vanished"]:
        module.fail_json(msg="%d file(s) of the set do not match its manifest (%s) and %d are missing from it (%s): they were "
                             "NOT put into %s. The set is damaged: restore those from another set."
                             % (stats["mismatched"], ", ".join(stats.get("mismatched_examples", [])[:5]), stats["vanished"],
                                ", ".join(stats.get("vanished_examples", [])[:5]), p["dest"]), **stats)
    markers = ensure_markers(p["dest"], dir_mode, False)
    how = ("moved %d of them out of the staging copy, " % stats["moved"]) if move else ""
    module.exit_json(changed=True, markers_created=markers,
                     msg="Put %d files (%.1f MB) into %s (%seach verified against the set's manifest)." % (
                         stats["files"], stats["bytes"] / 1e6, p["dest"], how), **stats)


if __name__ == "__main__":
    main()
