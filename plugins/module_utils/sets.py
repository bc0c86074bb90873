# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a backup set is: its folder layout and its summary, ``set.json`` (one schema, one reader).

    <target>/<instance>/
      .lock                      held (flock) by the run writing this instance's sets
      .partial-<set id>/         a set being written: never selected, removed by the next run
      <set id>/                  a promoted set: complete, verified, covering what the database references
        set.json                 the summary below (format SET_FORMAT)
        instance.json            the instance it came from (versions, images, folders, database)
        db/<dump> + <dump>.manifest.json
        files.manifest.tsv       path, size, mtime, sha256, sha1 of every file under files/
        files/<media folder>/..  unchanged files are hard links to the previous set
        compose/                 the compose project (compose files, .env 0600, referenced files)
      latest -> <set id>
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import time

from ansible_collections.homelab.immich.plugins.module_utils import file_manifest, retention
from ansible_collections.homelab.immich.plugins.module_utils._fsio import (
    fsync_dir,
    mkdir_private,
    read_json,
    sha256_file,
    symlink_atomic,
    write_json_atomic,
)

SET_FORMAT = 2
SET_ID_RE = re.compile(r"^\d{8}T\d{6}Z$")
PARTIAL_PREFIX = ".partial-"
SET_JSON = "set.json"
SET_MAC = "set.mac"
INSTANCE_JSON = "instance.json"
LATEST = "latest"
GOOD = "verified"


class SetError(Exception):
    """A backup set problem, worded for the user."""


# The set.json schema: every key always present, with its type (None allowed where the type is a tuple).
SCHEMA = (
    ("format", int), ("set_id", str), ("status", str), ("instance", str), ("host", str), ("trigger", str),
    ("started", float), ("finished", float), ("seconds", float),
    ("immich_version", (str, type(None))), ("server_version", (str, type(None))),
    ("pg_dump_version", (str, type(None))), ("dump_kind", (str, type(None))),
    ("dump", (str, type(None))), ("dump_bytes", int), ("dump_sha256", (str, type(None))), ("rows_by_table", dict),
    ("files", int), ("files_bytes", int), ("files_new", int), ("files_linked", int),
    ("folders", list), ("files_by_folder", dict), ("excludes", list), ("consistency", str),
    ("previous", (str, type(None))), ("verification", dict), ("coverage", dict),
)
KEYS = tuple(k for k, _t in SCHEMA)


def new_set_id(now=None):
    return time.strftime(retention.SET_ID_FORMAT, time.gmtime(now if now is not None else time.time()))


def build_info(**values):
    """set.json content with fixed keys and types; raises SetError on a missing or mistyped key."""
    values.setdefault("format", SET_FORMAT)
    info = {}
    for key, kind in SCHEMA:
        if key not in values:
            raise SetError("set.json: %s is missing" % key)
        value = values.pop(key)
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SetError("set.json: %s must be %s, not %r" % (key, getattr(kind, "__name__", kind), value))
        info[key] = value
    if values:
        raise SetError("set.json: unknown key(s) %s" % ", ".join(sorted(values)))
    return info


def read_info(set_dir):
    """set.json of a set in the current schema, whatever format wrote it (None when unreadable).

    Format 1 (before the one engine) wrote `started` as a set id or an epoch, `bytes` instead of
    `files_bytes`, and no format number; its values are carried over under the current names.
    """
    raw = read_json(os.path.join(set_dir, SET_JSON))
    if not isinstance(raw, dict):
        return None
    if raw.get("format") == SET_FORMAT:
        return raw
    sid = raw.get("set_id") or os.path.basename(os.path.normpath(set_dir))
    ver = raw.get("verification") or {}
    started = raw.get("started")
    if isinstance(started, str):
        try:
            started = float(started) if not SET_ID_RE.match(started) else float(retention.set_time(started))
        except ValueError:
            started = None
    finished = raw.get("finished")
    if isinstance(finished, str) and SET_ID_RE.match(finished):
        finished = float(retention.set_time(finished))
    return {
        "format": 1, "set_id": sid, "status": raw.get("status") or "unknown", "instance": raw.get("instance") or "",
        "host": raw.get("host") or "", "trigger": raw.get("trigger") or "ansible",
        "started": float(started or 0), "finished": float(finished or 0),
        "seconds": float(raw.get("seconds") or 0),
        "immich_version": raw.get("immich_version"), "server_version": raw.get("server_version"),
        "pg_dump_version": raw.get("pg_dump_version"), "dump_kind": raw.get("dump_kind"), "dump": raw.get("dump"),
        "dump_bytes": int(raw.get("dump_bytes") or 0), "dump_sha256": ver.get("dump_sha256"),
        "rows_by_table": raw.get("rows_by_table") or {}, "files": int(ver.get("files") or raw.get("files") or 0),
        "files_bytes": int(ver.get("bytes") or 0), "files_new": 0, "files_linked": 0,
        "folders": raw.get("folders") or [], "files_by_folder": {}, "excludes": raw.get("excludes") or [],
        "consistency": raw.get("consistency") or "online", "previous": raw.get("previous"),
        "verification": ver, "coverage": {},
    }


def write_info(set_dir, info):
    write_json_atomic(os.path.join(set_dir, SET_JSON), build_info(**dict(info)))


# A set fetched from a repository into a staging folder carries this sibling (``<set>.fetched.json``): it
# says the folder is a disposable copy (its files may be MOVED into an instance instead of copied) and,
# once they were, that it is no longer whole.
FETCHED_SUFFIX = ".fetched.json"


def fetched_marker(set_dir):
    return os.path.normpath(set_dir) + FETCHED_SUFFIX


def mark_fetched(set_dir, **facts):
    """Record that ``set_dir`` is a staging copy fetched from a repository (facts: snapshot_id, repository)."""
    write_json_atomic(fetched_marker(set_dir), dict(facts, moved=False))


def fetched_state(set_dir):
    """None for a set that was not fetched here; else the marker ({"moved": bool, ...})."""
    marker = fetched_marker(set_dir)
    if not os.path.exists(marker):
        return None
    return read_json(marker) or {"moved": True}  # unreadable: never trust the copy as whole


def mark_moved(set_dir):
    state = fetched_state(set_dir) or {}
    write_json_atomic(fetched_marker(set_dir), dict(state, moved=True))


def instance_root(target, instance_name):
    return os.path.join(target, instance_name)


def list_sets(root):
    """Promoted set ids under an instance folder, oldest first."""
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if SET_ID_RE.match(n) and os.path.isdir(os.path.join(root, n))
                  and not os.path.islink(os.path.join(root, n)))


def is_good(info):
    return bool(info) and info.get("status") == GOOD


def entries(root):
    """[(set id, good, info)] of an instance folder, oldest first."""
    out = []
    for sid in list_sets(root):
        info = read_info(os.path.join(root, sid))
        out.append((sid, is_good(info), info))
    return out


def latest_good(root):
    """The newest good set id, or None."""
    for sid, good, _info in reversed(entries(root)):
        if good:
            return sid
    return None


def begin(root, now=None, set_id=None):
    """Open `.partial-<id>/{db,files}` under an instance folder (the caller holds the lock); partials
    left by runs that died are removed first. ``set_id`` names a copy of an existing set (a mirror).
    Returns the facts of the new set."""
    mkdir_private(root)
    removed = []
    for name in sorted(os.listdir(root)):
        if name.startswith(PARTIAL_PREFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed.append(name)
    now = time.time() if now is None else now
    sid = set_id or new_set_id(now)
    while set_id is None and os.path.exists(os.path.join(root, sid)):  # two runs within one second
        now += 1
        sid = new_set_id(now)
    partial = os.path.join(root, PARTIAL_PREFIX + sid)
    for sub in ("", "db", "files"):
        mkdir_private(os.path.join(partial, sub))
    previous = latest_good(root)
    return {"set_id": sid, "partial": partial, "db_dir": os.path.join(partial, "db"),
            "files_dir": os.path.join(partial, "files"), "manifest": os.path.join(partial, file_manifest.NAME),
            "previous": previous, "previous_dir": os.path.join(root, previous) if previous else None,
            "removed_partials": removed}


def promote(root, partial, info):
    """Write set.json (status verified) into the partial set, rename it into place, move `latest`.
    ``info`` None: set.json is already in the partial set (a copy of a set, byte for byte)."""
    sid = os.path.basename(partial)[len(PARTIAL_PREFIX):]
    current = info if info is not None else (read_info(partial) or {})
    if current.get("status") != GOOD:
        raise SetError("refusing to promote set %s whose status is %r" % (sid, current.get("status")))
    if info is not None:
        write_info(partial, info)
    final = os.path.join(root, sid)
    os.rename(partial, final)
    symlink_atomic(sid, os.path.join(root, LATEST))
    fsync_dir(root)
    return final


def find_dump(set_dir):
    """(dump path, its manifest path or None) of a set; (None, None) when there is no dump."""
    db_dir = os.path.join(set_dir, "db")
    if not os.path.isdir(db_dir):
        return None, None
    dumps = sorted(n for n in os.listdir(db_dir)
                   if not n.endswith((".json", ".tmp")) and not n.startswith(".") and os.path.isfile(os.path.join(db_dir, n)))
    if not dumps:
        return None, None
    dump = os.path.join(db_dir, dumps[-1])
    man = dump + ".manifest.json"
    return dump, man if os.path.exists(man) else None


def select(root, name=None, require_good=True):
    """The set to restore: a named one, or the newest good one. Raises SetError saying what exists."""
    found = entries(root)
    ids = [sid for sid, _good, _info in found]
    if not ids:
        raise SetError("No backup set of this instance in %s. Nothing was touched." % root)
    if name in (None, "", LATEST):
        good = [sid for sid, is_ok, _info in found if is_ok]
        if not good:
            raise SetError("No verified backup set in %s (sets: %s). Nothing was touched." % (root, ", ".join(ids[-5:])))
        return good[-1]
    if name not in ids:
        raise SetError("Backup set %r not found in %s (newest: %s). Nothing was touched." % (name, root, ", ".join(ids[-5:])))
    if require_good and not dict((s, g) for s, g, _i in found)[name]:
        raise SetError("Backup set %s is not marked verified (set.json). Nothing was touched; choose another "
                       "set or take a new backup." % name)
    return name


def delete(root, set_ids):
    for sid in set_ids:
        if not SET_ID_RE.match(sid):
            raise SetError("refusing to delete %r: not a set id" % sid)
        shutil.rmtree(os.path.join(root, sid))
    if set_ids:
        fsync_dir(root)


def verify(set_dir, deep=True, sample=None):
    """Everything a restore relies on, checked without touching any instance: set.json says good, the
    dump is there with its manifest and the sha256 both record, every file matches the file manifest."""
    if not os.path.isdir(set_dir):
        raise SetError("Backup set %s does not exist." % set_dir)
    info = read_info(set_dir) or {}
    problems = []
    if not is_good(info):
        problems.append("set.json does not mark the set verified (status %r)" % info.get("status"))
    dump, man = find_dump(set_dir)
    dump_report = {"path": dump, "manifest_path": man}
    if dump is None:
        problems.append("no database dump in %s/db" % set_dir)
    elif man is None:
        problems.append("the dump has no manifest (%s.manifest.json)" % os.path.basename(dump))
    else:
        meta = read_json(man) or {}
        size = os.path.getsize(dump)
        if meta.get("bytes") is not None and int(meta["bytes"]) != size:
            problems.append("dump size %d differs from its manifest (%s): truncated or replaced" % (size, meta["bytes"]))
        want = meta.get("sha256")
        if not want:
            problems.append("the dump manifest records no sha256")
        else:
            got = sha256_file(dump)
            dump_report["sha256"] = got
            if got != want:
                problems.append("dump sha256 %s differs from its manifest (%s): the file was damaged" % (got, want))
            if info.get("dump_sha256") and info["dump_sha256"] != want:
                problems.append("the dump manifest's sha256 differs from set.json's: one of them was replaced")
        for key in ("dump_kind", "server_version", "pg_dump_version", "rows_by_table", "immich_version"):
            if key in meta:
                dump_report[key] = meta[key]
    files = file_manifest.verify(os.path.join(set_dir, "files"), os.path.join(set_dir, file_manifest.NAME),
                                 deep=deep, sample=sample, markers="bytes")
    problems += files.problems()
    return {"ok": not problems, "problems": problems, "dump": dump_report, "files": files.as_dict(), "deep": deep,
            "info": info}
