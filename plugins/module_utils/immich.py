# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What Immich is, where backup and restore touch it: its media folders and their markers, the
table names of old and new releases, and how a path stored in the database maps to the host.

One list of media folders for every role and module (facts: shared/immich-facts.md sections 2, 3, 7).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath

# The six folders Immich checks at every boot (StorageFolder): each holds a `.immich` marker.
MEDIA_FOLDERS = ("encoded-video", "library", "upload", "profile", "thumbs", "backups")
# Originals (must be backed up) and what Immich can regenerate (optional, but a restore without
# thumbs/ shows broken images until the forced thumbnail job has run: facts section 7).
ORIGINAL_FOLDERS = ("library", "upload", "profile", "backups")
GENERATED_FOLDERS = ("thumbs", "encoded-video")
DEFAULT_BACKUP_FOLDERS = ORIGINAL_FOLDERS + ("thumbs",)
MARKER = ".immich"

# Where the server container sees UPLOAD_LOCATION: /data since Aug 2025, /usr/src/app/upload before.
MEDIA_TARGETS = ("/data", "/usr/src/app/upload")
LEGACY_APP_DIR = "/usr/src/app"
# Releases before absolute paths stored `upload/<folder>/..`, relative to LEGACY_APP_DIR.
LEGACY_RELATIVE_PREFIX = "upload/"

# Table names: current (singular, PR #19891, Jul 2025) and legacy (plural, Immich <= 1.136).
TABLES = {
    "current": {"asset": "asset", "user": "user", "asset_file": "asset_file", "person": "person",
                "album_asset": "album_asset", "migrations": "kysely_migrations"},
    "legacy": {"asset": "assets", "user": "users", "asset_file": "asset_files", "person": "person",
               "album_asset": "albums_assets_assets", "migrations": "migrations"},
}
# asset_file types whose files Immich regenerates with its jobs (rows name files under thumbs/ or encoded-video/)
GENERATED_FILE_TYPES = ("thumbnail", "preview", "fullsize", "encoded_video")


def is_marker(relpath):
    """Is this (set-relative) path a folder marker? Immich rewrites markers at every boot: compare
    their presence, never their bytes, once a server has run on the folder."""
    return posixpath.basename(relpath) == MARKER


def naming(tables):
    """'current' or 'legacy' from the public table names of a database; None when neither is there."""
    names = set(tables)
    if "asset" in names:
        return "current"
    if "assets" in names:
        return "legacy"
    return None


def table(kind, name):
    """SQL identifier of an Immich table in a naming: table('legacy', 'asset') -> 'assets'."""
    return '"%s"' % TABLES[kind][name]


def folder_of(relpath):
    """The media folder of an UPLOAD_LOCATION-relative path ('upload/ab/..' -> 'upload')."""
    return relpath.split("/", 1)[0]


def to_relative(db_path, media_location="/data"):
    """The UPLOAD_LOCATION-relative path of a path stored in the database, or None when it is not
    under the media location (an external library, or a path another mount point explains).

    Three shapes are Immich's own: absolute under the media location (``/data/upload/..``, current),
    absolute under the pre-Aug-2025 mount (``/usr/src/app/upload/..``), and relative to the old
    working directory (``upload/upload/..``, releases before absolute paths). ``media_location`` is
    the container path of UPLOAD_LOCATION (IMMICH_MEDIA_LOCATION, or the server's mount point; None
    means /data); both known mount points are tried after it, since each maps UPLOAD_LOCATION.
    A path that would leave the media folder (``..``) gives None. Called once per asset by the
    per-asset proof: the common case costs two string tests.
    """
    if not db_path:
        return None
    media = (media_location or "/data").rstrip("/") + "/"
    if db_path.startswith(media):
        return _clean(db_path[len(media):])
    if not db_path.startswith("/"):
        if db_path.startswith(LEGACY_RELATIVE_PREFIX):  # APP_MEDIA_LOCATION=./upload inside /usr/src/app
            return _clean(db_path[len(LEGACY_RELATIVE_PREFIX):])
        return None
    for other in MEDIA_TARGETS:
        if db_path.startswith(other + "/"):
            return _clean(db_path[len(other) + 1:])
    return None


def _clean(rel):
    """A normalized relative path inside the media folder, or None when it would leave it (or is empty)."""
    if not rel:
        return None
    if "/." not in rel and "//" not in rel and rel[0] != "." and rel[-1] != "/":
        return rel  # already normal (nearly every path Immich writes): normpath costs more than this test
    norm = posixpath.normpath(rel)
    if norm in (".", "..") or norm.startswith("../") or norm.startswith("/"):
        return None
    return norm
