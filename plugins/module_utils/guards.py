# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What may be destroyed, and whether a copy holds everything the database references.

- reset_guard: may this folder be wiped as the instance's DB_DATA_LOCATION? Only the folder the
  database service really mounts at PG_DATA, never UPLOAD_LOCATION, a home, `/` or the project.
- references / coverage: every file the database names (originals, avatars, and the generated
  files of folders that are backed up), streamed from psql, checked against a folder (a new set's
  files/, or UPLOAD_LOCATION after a restore). A backup that covers less than the database says is
  not a good backup.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

from ansible_collections.homelab.immich.plugins.module_utils import immich
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils.compose import PG_DATA

MAX_LISTED = 10


class CoverageError(Exception):
    """The database could not be read for the cross-check; the message says why."""


def _inside(a, b):
    return a == b or a.startswith(b.rstrip("/") + "/")


def reset_guard(instance, path, allow_outside_project=False, home_dirs=None):
    """Reasons (empty = allowed) why ``path`` must not be wiped as this instance's DB_DATA_LOCATION.

    The folder must be the bind mount of the database service at PG_DATA, as the compose model says
    (not the .env value, not an override that points elsewhere). ``allow_outside_project`` lifts only
    the "outside the compose project" rule (Postgres on another disk).
    """
    kind = instance.get("db_data_kind")
    if not path:
        return ["there is no DB_DATA_LOCATION folder to reset (the database keeps its data in %s)"
                % ("the named volume %s" % instance.get("db_data_volume") if kind == "volume" else "no folder")]
    real = os.path.realpath(path)
    mount = instance.get("db_data_mount")
    reasons = []
    if kind == "unmounted":
        reasons.append("the database service mounts nothing at %s, so %s%s is not its data folder (its data lives in "
                       "the container's anonymous volume, which `compose down -v` removes); restore with "
                       "immich_restore_reset_db=false, or mount the folder at %s in the compose file"
                       % (PG_DATA, real, " (DB_DATA_LOCATION in .env)" if instance.get("db_data_env") else "", PG_DATA))
    elif kind == "volume":
        reasons.append("the database keeps its data in the named volume %s (removed by `compose down -v`), not in %s"
                       % (instance.get("db_data_volume"), real))
    elif not mount or os.path.realpath(mount) != real:
        reasons.append("%s is not the folder the database service mounts at %s (%s)" % (real, PG_DATA, mount))
    project = os.path.realpath(instance.get("project_dir") or "/")
    upload = os.path.realpath(instance.get("upload_location") or "/nonexistent-upload")
    homes = set(os.path.realpath(h) for h in (home_dirs or []))
    homes.update(["/root", "/home", os.path.realpath(os.path.expanduser("~"))])
    if real.rstrip("/").count("/") < 2:
        reasons.append("%s is / or a top-level folder" % real)
    if real in homes or os.path.dirname(real) == "/home":
        reasons.append("%s is a home folder" % real)
    if _inside(real, upload) or _inside(upload, real):
        reasons.append("%s overlaps UPLOAD_LOCATION %s (your photos)" % (real, upload))
    if _inside(project, real):
        reasons.append("%s is the compose project folder or one of its parents" % real)
    if not allow_outside_project and not _inside(real, project):
        reasons.append("%s is outside the compose project %s (allow it explicitly if Postgres lives on another disk)"
                       % (real, project))
    return reasons


def copy_unescape(field):
    """A field of COPY ... TO STDOUT text format back to its value (\\\\, \\t, \\n, \\r, octal)."""
    if "\\" not in field:
        return field
    out, i, n = [], 0, len(field)
    simple = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "\\": "\\"}
    while i < n:
        c = field[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = field[i + 1]
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt in "01234567":
            j = i + 1
            while j < n and j < i + 4 and field[j] in "01234567":
                j += 1
            out.append(chr(int(field[i + 1:j], 8)))
            i = j
        else:
            out.append(nxt)
            i += 2
    return "".join(out)


def stream_copy(instance, sql, popen=subprocess.Popen):
    """Rows (lists of str, None for NULL) of ``COPY (sql) TO STDOUT`` in the DB container, one at a time."""
    argv = dx.psql_argv(instance["db_container"], instance["db_user"], instance["db_name"],
                        ["-v", "ON_ERROR_STOP=1", "-c", "COPY (%s) TO STDOUT" % sql], interactive=False)
    proc = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
            yield [None if f == "\\N" else copy_unescape(f) for f in line.split("\t")]
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        rc = proc.wait()
    if rc != 0:
        raise CoverageError("Cannot read the database %s in %s: %s" % (instance["db_name"], instance["db_container"],
                                                                       err.strip()[-400:]))


def schema_naming(instance):
    """'current' or 'legacy' (Immich <= 1.136 plural tables) of the instance's database."""
    tables = [r[0] for r in stream_copy(instance, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    kind = immich.naming(tables)
    if kind is None:
        raise CoverageError("The database %s in %s has no Immich asset table (wrong container or db_name?)."
                            % (instance["db_name"], instance["db_container"]))
    return kind


_REFERENCES = (
    (None, "SELECT 'original', \"originalPath\", (\"libraryId\" IS NOT NULL) FROM \"{asset}\""),
    (None, "SELECT 'avatar', \"profileImagePath\", false FROM \"{user}\" WHERE \"profileImagePath\" <> ''"),
    ("thumbs", "SELECT 'generated', path, false FROM \"{asset_file}\" WHERE type IN ('thumbnail', 'preview', 'fullsize')"),
    ("thumbs", "SELECT 'generated', \"thumbnailPath\", false FROM \"{person}\" WHERE \"thumbnailPath\" <> ''"),
    ("encoded-video", "SELECT 'generated', path, false FROM \"{asset_file}\" WHERE type = 'encoded_video'"),
)


def references_sql(naming, folders):
    """One query listing (kind, path, external) of every file the database names in ``folders``
    (table names are immich.TABLES constants, never user input)."""
    tables = immich.TABLES[naming]
    return " UNION ALL ".join(sql.format(**tables) for folder, sql in _REFERENCES if folder is None or folder in folders)


class Coverage(object):
    """What a folder holds of what the database references."""

    def __init__(self):
        self.referenced = self.present = self.missing = self.external = self.outside = 0
        self.by_kind = {}
        self.examples = []

    def as_dict(self):
        return {"ok": self.missing == 0, "referenced": self.referenced, "present": self.present,
                "missing": self.missing, "external": self.external, "outside_folders": self.outside,
                "by_kind": self.by_kind, "missing_examples": list(self.examples)}


def coverage(instance, folder, folders, rows=None, naming=None):
    """Check that every file the database references in ``folders`` exists under ``folder`` (a set's
    files/ or UPLOAD_LOCATION). External-library assets are counted, not checked (Immich does not own
    them); a path outside the backed-up folders (thumbs when thumbs are not backed up) is not expected."""
    media = instance.get("media_location") or "/data"
    if rows is None:
        naming = naming or schema_naming(instance)
        rows = stream_copy(instance, references_sql(naming, folders))
    result = Coverage()
    for kind, path, external in rows:
        if external in ("t", True):
            result.external += 1
            continue
        rel = immich.to_relative(path, media)
        if rel is None:
            result.external += 1
            continue
        if immich.folder_of(rel) not in folders:
            result.outside += 1
            continue
        result.referenced += 1
        counts = result.by_kind.setdefault(kind, {"referenced": 0, "missing": 0})
        counts["referenced"] += 1
        if os.path.isfile(os.path.join(folder, rel)):
            result.present += 1
        else:
            result.missing += 1
            counts["missing"] += 1
            if len(result.examples) < MAX_LISTED:
                result.examples.append(rel)
    return result.as_dict()
