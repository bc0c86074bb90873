# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The file manifest of a backup set: one line per file (path, size, mtime, sha256, sha1), in ONE
order (path components compared one by one), so that two manifests, or a manifest and a folder,
are compared by a streaming merge: 100k files cost no memory.

    # homelab.immich file manifest v2<TAB>path<TAB>size<TAB>mtime<TAB>sha256<TAB>sha1
    upload/<user>/ab/cd/<uuid>.jpg<TAB>12345<TAB>1764633600<TAB><sha256><TAB><sha1 or ->

v1 manifests (no sha1 column) are read as well. sha1 is what Immich stores in ``asset.checksum``.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import random

from ansible_collections.homelab.immich.plugins.module_utils import immich
from ansible_collections.homelab.immich.plugins.module_utils._fsio import hash_file

NAME = "files.manifest.tsv"
HEADER = "# homelab.immich file manifest v2\tpath\tsize\tmtime\tsha256\tsha1"
MAX_LISTED = 20


class ManifestError(Exception):
    """A manifest that cannot be read; the message names the file and the line."""


def escape(path):
    return path.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def unescape(field):
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 1 < len(field):
            out.append({"t": "\t", "n": "\n", "\\": "\\"}.get(field[i + 1], field[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def order_key(relpath):
    """The one ordering of manifests and walks: path components, compared one by one (a folder's
    files sort right after its name, never between `a` and `a.jpg`).

    Comparing the strings with "/" replaced by a zero byte (below every character a path can hold)
    gives exactly the order of ``relpath.split("/")`` lists, at the cost of one string (the per-asset
    proof sorts 100k paths with it).
    """
    return relpath.replace("/", "\0")


class Entry(tuple):
    """(path, size, mtime, sha256, sha1) with names."""

    __slots__ = ()

    def __new__(cls, path, size, mtime, sha256, sha1=None):
        return tuple.__new__(cls, (path, size, mtime, sha256, sha1))

    path = property(lambda self: self[0])
    size = property(lambda self: self[1])
    mtime = property(lambda self: self[2])
    sha256 = property(lambda self: self[3])
    sha1 = property(lambda self: self[4])


def format_line(entry):
    return "%s\t%d\t%d\t%s\t%s\n" % (escape(entry[0]), entry[1], entry[2], entry[3], entry[4] or "-")


def read(path):
    """Entries of a manifest, one at a time (v1 and v2)."""
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) not in (4, 5):
                raise ManifestError("File manifest %s is damaged at line %d (%r)." % (path, number, line[:200]))
            sha1 = parts[4] if len(parts) == 5 and parts[4] != "-" else None
            try:
                yield Entry(unescape(parts[0]), int(parts[1]), int(parts[2]), parts[3], sha1)
            except ValueError:
                raise ManifestError("File manifest %s is damaged at line %d (%r)." % (path, number, line[:200])) from None


def read_or_empty(path):
    if path and os.path.exists(path):
        return read(path)
    return iter(())


class Writer(object):
    """Append entries in order to ``<path>.tmp``; ``close()`` renames it into place. Counts as it goes."""

    def __init__(self, path):
        self.path = path
        self._tmp = path + ".tmp"
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._fh = os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape")
        self._fh.write(HEADER + "\n")
        self.files = 0
        self.bytes = 0
        self._last = None

    def add(self, entry):
        if self._last is not None and order_key(entry[0]) <= order_key(self._last):
            raise ManifestError("manifest entries out of order: %s after %s" % (entry[0], self._last))
        self._last = entry[0]
        self._fh.write(format_line(entry))
        self.files += 1
        self.bytes += entry[1]

    def close(self):
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.rename(self._tmp, self.path)

    def abort(self):
        self._fh.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


def merge(left, right):
    """Merge-join two iterables of tuples whose first item is a relpath, both in order_key order:
    yields (l or None, r or None)."""
    left, right = iter(left), iter(right)
    lv, rv = next(left, None), next(right, None)
    while lv is not None or rv is not None:
        if rv is None or (lv is not None and order_key(lv[0]) < order_key(rv[0])):
            yield lv, None
            lv = next(left, None)
        elif lv is None or order_key(rv[0]) < order_key(lv[0]):
            yield None, rv
            rv = next(right, None)
        else:
            yield lv, rv
            lv, rv = next(left, None), next(right, None)


def walk(top, rel=""):
    """Regular files under ``top`` as relative paths in order_key order, one at a time (symlinks
    and special files are not files of a set)."""
    base = os.path.join(top, rel) if rel else top
    try:
        with os.scandir(base) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        relp = rel + "/" + entry.name if rel else entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from walk(top, relp)
        elif entry.is_file(follow_symlinks=False):
            yield relp


class Report(object):
    """Counters and a few examples of what a comparison found."""

    KINDS = ("missing", "changed", "extra")

    def __init__(self):
        self.files = 0
        self.bytes = 0
        self.hashed = 0
        self.counts = dict((k, 0) for k in self.KINDS)
        self.examples = dict((k, []) for k in self.KINDS)

    def note(self, kind, path, detail=""):
        self.counts[kind] += 1
        if len(self.examples[kind]) < MAX_LISTED:
            self.examples[kind].append(path + (" (%s)" % detail if detail else ""))

    @property
    def ok(self):
        return not any(self.counts.values())

    def problems(self, limit=5):
        out = []
        for kind in self.KINDS:
            if self.counts[kind]:
                out.append("%d %s: %s%s" % (self.counts[kind], kind, ", ".join(self.examples[kind][:limit]),
                                            ", ..." if self.counts[kind] > limit else ""))
        return out

    def as_dict(self):
        return {"ok": self.ok, "files": self.files, "bytes": self.bytes, "hashed": self.hashed,
                "missing": self.counts["missing"], "changed": self.counts["changed"], "extra": self.counts["extra"],
                "examples": dict((k, v[:MAX_LISTED]) for k, v in self.examples.items() if v),
                "problems": self.problems()}


def verify(folder, manifest_path, *, deep=True, sample=None, markers="presence", allow_extra=False, seed=None,
           previous_manifest=None):
    """Compare a folder with a manifest: missing files, changed ones (size; sha256 when hashed), extra files.

    ``deep``: hash every file; otherwise hash a ``sample`` (a count, or a fraction < 1), plus every
    entry that is new or different against ``previous_manifest``, and compare the sizes of the rest.
    ``markers="presence"``: a `.immich` marker counts when it exists (Immich rewrites markers at
    every boot, so their bytes say nothing once a server has run).
    """
    if not os.path.exists(manifest_path):
        raise ManifestError("The file manifest %s is missing: the set was never finished." % manifest_path)
    report = Report()
    pick = _sampler(manifest_path, deep, sample, seed)
    index = -1
    wanted = _annotated(manifest_path, previous_manifest)
    for cur, want_new in merge(((p,) for p in walk(folder)), wanted):
        want = want_new[1] if want_new is not None else None
        if want is None:
            if not allow_extra:
                report.note("extra", cur[0])
            continue
        index += 1
        if cur is None:
            report.note("missing", want.path)
            continue
        full = os.path.join(folder, want.path)
        size = os.stat(full).st_size
        report.files += 1
        report.bytes += size
        if markers == "presence" and immich.is_marker(want.path):
            continue
        if size != want.size:
            report.note("changed", want.path, "%d bytes, manifest says %d" % (size, want.size))
            continue
        if pick(index) or want_new[2]:
            report.hashed += 1
            if hash_file(full)["sha256"] != want.sha256:
                report.note("changed", want.path, "checksum differs")
    return report


def _annotated(manifest_path, previous_manifest):
    """(path, entry, new?) of a manifest; new = absent from, or of another size/mtime in, the previous one."""
    if not previous_manifest:
        for entry in read(manifest_path):
            yield entry.path, entry, False
        return
    for entry, old in merge(read(manifest_path), read_or_empty(previous_manifest)):
        if entry is not None:
            yield entry.path, entry, old is None or (old.size, old.mtime, old.sha256) != (entry.size, entry.mtime, entry.sha256)


def count(manifest_path):
    """Number of entries of a manifest (a quick pass over its lines)."""
    with open(manifest_path, "rb") as fh:
        return sum(1 for line in fh if line.strip() and not line.startswith(b"#"))


def _sampler(manifest_path, deep, sample, seed):
    """A function index -> hash this entry? Everything when deep; else a fraction, or exactly
    `sample` entries chosen at random among the manifest's (memory: the chosen indices only)."""
    if deep:
        return lambda _index: True
    if not sample:
        return lambda _index: False
    rng = random.Random(seed)  # noqa: S311 - choosing files to re-read, not a secret
    if float(sample) < 1:
        fraction = float(sample)
        return lambda _index: rng.random() < fraction
    total = count(manifest_path)
    chosen = set(rng.sample(range(total), min(int(sample), total)))
    return chosen.__contains__
