# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What proves a restored instance works, checked the way Immich itself would check it.

Per-asset SHA-1 proof: Immich stores the SHA-1 of every uploaded original in ``asset.checksum``
(``checksumAlgorithm`` ``sha1``); external-library assets store the SHA-1 of ``path:<originalPath>``
(``sha1-path``), which says nothing about the file's bytes, so they are only counted here and left to
the caller's own file manifest. ``asset_proof`` streams the rows, maps each container path to the
host's UPLOAD_LOCATION, hashes the files (all, or a deterministic sample) in 1 MiB reads on worker
threads, and finds orphans (a file under upload/ or library/ without a row) with a merge of two
sorted streams: memory stays flat at 100k assets.

Boot proof: pure checks over what the caller read (admin count, the ``maintenance-mode`` row, the
server log since its start, ``immich-admin schema-check`` output); each returns one named check
``{name, ok, detail, skipped}`` for the restore summary and the drill's JUnit.

Stdlib only: this file also runs on managed hosts without Ansible.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import collections
import hashlib
import heapq
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import file_manifest as fm
from ansible_collections.homelab.immich.plugins.module_utils import immich
from ansible_collections.homelab.immich.plugins.module_utils._fsio import CHUNK

# The folders that hold originals (library/ when the storage template is on); orphans are looked for here.
ORIGINAL_FOLDERS = ("library", "upload")
MARKER = immich.MARKER
# Sidecars (.xmp) live beside the originals but are not assets: never reported as orphans.
IGNORED_SUFFIXES = (".xmp",)
EXAMPLES = 5
CONTENT = "sha1"
PATH_HASH = "sha1-path"

KINDS = ("matched", "mismatched", "missing_in_backup", "unreadable", "orphans", "external",
         "unmapped", "unknown_algorithm", "pending_delete", "not_hashed")
# What makes the proof fail: the backup does not hold what the database says it holds.
FAILING = ("mismatched", "missing_in_backup", "unreadable", "unmapped")


class ProofError(Exception):
    """The proof could not run (psql failed, no such folder); the message says what to do."""


# -- paths ------------------------------------------------------------------------------------
# One mapping of database paths to UPLOAD_LOCATION (immich.to_relative) and one order of paths
# (file_manifest.order_key) for the whole collection.
media_relpath = immich.to_relative  # the name bench/bench_sha1_proof.py uses
order_key = fm.order_key


def _listing(path):
    """Sorted (name, is_dir, is_file) of a folder, from the directory entries' types (no stat per file)."""
    try:
        with os.scandir(path) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in it]
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries.sort()
    return entries


def walk_files(top, folders=ORIGINAL_FOLDERS):
    """Regular files under ``top/<folder>`` for each folder, as relative paths in order_key order,
    one at a time (one folder listing in memory per level; symlinks are not followed or listed).

    Depth first with an explicit stack: every path is yielded from here, not passed up through one
    generator per folder level (which cost more than the listing itself on Immich's xx/yy shards).
    """
    base = top.rstrip("/") + "/"
    for folder in sorted(folders):
        stack = [(folder + "/", iter(_listing(base + folder)))]
        while stack:
            prefix, entries = stack[-1]
            for name, is_dir, is_file in entries:
                if is_dir:
                    child = prefix + name
                    stack.append((child + "/", iter(_listing(base + child))))
                    break
                if is_file:
                    yield prefix + name
            else:
                stack.pop()


class PathSorter:
    """An external sort of relative paths in order_key order, without duplicates.

    Up to ``run_size`` paths are held; beyond that, sorted runs go to temporary files (NUL-separated)
    and are merged on reading: 100k paths cost a few MB of disk and ``run_size`` strings of memory.
    """

    def __init__(self, run_size=20000, tmpdir=None):
        self.run_size = run_size
        self.tmpdir = tmpdir
        self._buf = []
        self._runs = []
        self.count = 0

    def add(self, relpath):
        self._buf.append(relpath)
        self.count += 1
        if len(self._buf) >= self.run_size:
            self._spill()

    def _spill(self):
        self._buf.sort(key=order_key)
        fh = tempfile.TemporaryFile(dir=self.tmpdir)
        for path in self._buf:
            fh.write(path.encode("utf-8", "surrogateescape") + b"\0")
        fh.seek(0)
        self._runs.append(fh)
        self._buf = []

    def settle(self):
        """Sort what is held now (iterating later then only merges)."""
        self._buf.sort(key=order_key)

    @staticmethod
    def _read_run(fh):
        tail = b""
        for block in iter(lambda: fh.read(CHUNK), b""):
            parts = (tail + block).split(b"\0")
            tail = parts.pop()
            for part in parts:
                yield part.decode("utf-8", "surrogateescape")

    def __iter__(self):
        self._buf.sort(key=order_key)
        streams = [self._read_run(fh) for fh in self._runs] + [iter(self._buf)]
        merged = heapq.merge(*streams, key=order_key) if len(streams) > 1 else streams[0]
        last = None
        for path in merged:
            if path != last:
                yield path
            last = path

    def close(self):
        for fh in self._runs:
            fh.close()
        self._runs = []
        self._buf = []


# -- rows ---------------------------------------------------------------------------------------

def parse_bytea(text):
    """The bytes of a bytea as psql prints it: hex output (``\\x0a1b..``), plain hex, or already bytes.
    None for NULL (an empty field)."""
    if text is None:
        return None
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    if text == "":
        return None
    if text.startswith("\\x"):
        text = text[2:]
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        # escape format (bytea_output = escape): \\ and \ooo octal, everything else literal
        out = bytearray()
        i = 0
        raw = text.encode("latin-1", "replace")
        while i < len(raw):
            if raw[i:i + 1] == b"\\":
                if raw[i + 1:i + 2] == b"\\":
                    out.append(0x5C)
                    i += 2
                    continue
                out.append(int(raw[i + 1:i + 4], 8))
                i += 4
                continue
            out.append(raw[i])
            i += 1
        return bytes(out)


def parse_unaligned(chunks, columns, field_sep=b"\0", record_sep=b"\0"):
    """Rows (lists of str, '' for NULL) of ``psql -A -t`` output, from an iterable of byte chunks.

    With ``-z -0`` (both separators a zero byte: what ``asset_rows_argv`` asks for, because a path
    may hold a tab or a newline but never a zero byte) the fields are grouped by ``columns``; with
    distinct separators (``-F '\\t'``, newline records) records are split first. psql terminates the
    last record as well; a trailing partial record is an error (a cut stream).
    """
    if field_sep == record_sep:
        sep = field_sep.decode("ascii")
        pending = b""
        fields = []
        for chunk in chunks:
            data = pending + chunk if pending else chunk
            cut = data.rfind(field_sep)
            if cut < 0:
                pending = data
                continue
            pending = data[cut + 1:]
            # A separator byte is never inside a UTF-8 sequence: decode everything before the last one at once.
            fields.extend(data[:cut].decode("utf-8", "surrogateescape").split(sep))
            whole = len(fields) - len(fields) % columns
            for i in range(0, whole, columns):
                yield fields[i:i + columns]
            fields = fields[whole:]
        if pending or fields:
            raise ProofError("psql output ended inside a row (%d of %d fields): the stream was cut." % (len(fields), columns))
        return
    pending = b""
    for chunk in chunks:
        records = (pending + chunk).split(record_sep)
        pending = records.pop()
        for raw in records:
            rec = raw[:-1] if raw.endswith(b"\r") else raw
            fields = rec.decode("utf-8", "surrogateescape").split(field_sep.decode("ascii"))
            if len(fields) != columns:
                raise ProofError("psql printed a row with %d fields where %d were asked for: %r" % (len(fields), columns, rec[:200]))
            yield fields
    if pending.strip():
        raise ProofError("psql output ended inside a row: the stream was cut.")


# -- the row producer: docker exec <db> psql ------------------------------------------------------

SCHEMA_SQL = (
    "SELECT table_name, column_name FROM information_schema.columns "
    "WHERE table_schema = 'public' AND table_name IN ('asset', 'assets') "
    "AND column_name IN ('originalPath', 'checksumAlgorithm', 'isExternal', 'status', 'libraryId') ORDER BY 1, 2;"
)


def asset_schema_from(columns):
    """The asset table's shape from (table_name, column_name) pairs (the answer to SCHEMA_SQL).

    Current Immich (PR #19891, Jul 2025) names the table ``asset``; before, ``assets``. When both
    exist (a half-migrated database), the current one wins.
    """
    by_table = collections.defaultdict(set)
    for table, column in columns:
        by_table[table].add(column)
    for table in ("asset", "assets"):
        if "originalPath" in by_table.get(table, ()):
            cols = by_table[table]
            return {"table": table, "algorithm": "checksumAlgorithm" in cols, "is_external": "isExternal" in cols,
                    "status": "status" in cols, "library": "libraryId" in cols}
    return None


def asset_rows_sql(schema):
    """SELECT of (id, originalPath, checksum, algorithm, libraryId, status) for either naming.

    Without the algorithm column (older schemas), the algorithm is derived the way Immich stored it:
    ``sha1-path`` for an external asset (``isExternal``; libraryId alone is not enough, since releases
    before 1.106 gave every asset an upload library), ``sha1`` otherwise. Ordered by path in byte
    order so that the hashing walks folders in order and the proof's sort finds sorted runs.
    """
    table = '"%s"' % schema["table"]
    if schema.get("algorithm"):
        algorithm = '"checksumAlgorithm"::text'
    elif schema.get("is_external"):
        algorithm = "CASE WHEN \"isExternal\" THEN '%s' ELSE '%s' END" % (PATH_HASH, CONTENT)
    else:
        algorithm = "NULL::text"
    library = '"libraryId"::text' if schema.get("library", True) else "NULL::text"
    status = "status::text" if schema.get("status") else "NULL::text"
    # Every piece is one of the fixed expressions above: nothing from the database or the user.
    return ('SELECT id::text, "originalPath", checksum, %s, %s, %s FROM public.%s ORDER BY "originalPath" COLLATE "C";'  # noqa: S608
            % (algorithm, library, status, table))


ROW_COLUMNS = 6


def asset_rows_argv(container, user, database, sql, *, password=None, fetch_count=5000):
    """argv of ``docker exec <db> psql`` printing rows unaligned with zero-byte separators.

    FETCH_COUNT makes psql read the result through a cursor, so psql's memory in the container
    stays flat too; bytea_output is pinned to hex whatever the server's default.
    """
    extra = ["-A", "-t", "-z", "-0", "-v", "ON_ERROR_STOP=1", "-v", "FETCH_COUNT=%d" % fetch_count,
             "-c", "SET bytea_output = hex", "-c", sql]
    return dx.psql_argv(container, user, database, extra, interactive=False, password=password)


def _env(password):
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password  # `docker exec -e PGPASSWORD` takes it from here, never from argv
    return env


def read_asset_schema(container, user, database, password=None):
    """The asset table's shape in the database (see asset_schema_from); ProofError when it has none."""
    rows = dx.query(container, user, database, SCHEMA_SQL, password)
    schema = asset_schema_from((r[0], r[1]) for r in rows if len(r) >= 2)
    if schema is None:
        raise ProofError("Database %s in %s has no asset table (neither `asset` nor `assets`): this is not an Immich "
                         "database, or the restore left it empty. Run `docker exec %s psql -U %s -d %s -c '\\dt'` to see "
                         "its tables." % (database, container, container, user, database))
    return schema


def stream_asset_rows(container, user, database, *, password=None, schema=None, popen=subprocess.Popen):
    """Yield asset rows (id, originalPath, checksum bytes, algorithm, libraryId, status) straight from
    ``docker exec <db> psql``: argv only, read as it streams, never held whole.

    Raises ProofError when psql fails or its output is cut (the rows seen so far are not a proof).
    """
    schema = schema or read_asset_schema(container, user, database, password)
    argv = asset_rows_argv(container, user, database, asset_rows_sql(schema), password=password)
    try:
        proc = popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(password))
    except OSError as exc:
        raise ProofError("Cannot run `%s`: %s. Is the docker CLI installed and on PATH?" % (argv[0], exc)) from exc
    err = []
    drain = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    drain.start()
    finished = False
    try:
        for fields in parse_unaligned(iter(lambda: proc.stdout.read(CHUNK), b""), ROW_COLUMNS):
            yield (fields[0], fields[1], parse_bytea(fields[2]), fields[3] or None, fields[4] or None, fields[5] or None)
        finished = True
    finally:
        if not finished and proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        rc = proc.wait()
        drain.join(timeout=5)
    stderr = b"".join(e for e in err if e).decode("utf-8", "replace").strip()
    if rc != 0:
        raise ProofError("Reading the assets of database %s in %s failed (psql exited %s: %s). Nothing was proven; "  # noqa: S608
                         "check the database with `docker exec %s psql -U %s -d %s -c 'SELECT count(*) FROM %s'`."
                         % (database, container, rc, stderr[-400:], container, user, database, schema["table"]))


# -- hashing --------------------------------------------------------------------------------------

def _sha1_file(path, buf):
    """(digest, size) of one file, read in ``len(buf)`` pieces into a reused buffer."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        h = hashlib.sha1()  # noqa: S324 - Immich's own checksum algorithm, compared, not trusted for security
        view = memoryview(buf)
        size = 0
        while True:
            n = os.readv(fd, [buf])
            if not n:
                break
            size += n
            h.update(view[:n])
        return h.digest(), size
    finally:
        os.close(fd)


def _hash_batch(batch, local):
    buf = getattr(local, "buf", None)
    if buf is None:
        buf = local.buf = bytearray(CHUNK)
    out = []
    for item in batch:
        try:
            out.append((item, _sha1_file(item[1], buf), None))
        except OSError as exc:
            out.append((item, None, exc))
    return out


class _HashPool:
    """Hash files on ``workers`` threads (hashlib and reads release the GIL), in batches so that the
    hand-over costs little per file; results come back in submission order, at most a few batches
    in flight (memory flat whatever the number of files). ``workers=0`` hashes inline."""

    def __init__(self, workers, on_result, batch=32):
        self._on_result = on_result
        self._batch_size = batch
        self._batch = []
        self._local = threading.local()
        self._inflight = collections.deque()
        self._executor = None
        self._max_inflight = max(2, workers * 3)
        if workers > 0:
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only when threads are asked for
            self._executor = ThreadPoolExecutor(max_workers=workers)

    def submit(self, item):
        self._batch.append(item)
        if len(self._batch) >= self._batch_size:
            self._flush()

    def _flush(self):
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self._executor is None:
            for res in _hash_batch(batch, self._local):
                self._on_result(*res)
            return
        self._inflight.append(self._executor.submit(_hash_batch, batch, self._local))
        while len(self._inflight) > self._max_inflight:
            self._collect()

    def _collect(self):
        for res in self._inflight.popleft().result():
            self._on_result(*res)

    def close(self):
        """Hash what is left and hand over every result."""
        self._flush()
        while self._inflight:
            self._collect()

    def shutdown(self):
        """Stop the threads (after close(), or on an error: batches still queued are dropped)."""
        for fut in self._inflight:
            fut.cancel()
        self._inflight.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _sample_key(seed, asset_id):
    """A stable pseudo-random number in [0, 2**64) per asset: the same seed picks the same assets,
    whatever order the rows come in."""
    digest = hashlib.sha1(("%s\0%s" % (seed, asset_id)).encode("utf-8", "surrogateescape")).digest()  # noqa: S324
    return int.from_bytes(digest[:8], "big")


def _sample_mode(sample):
    """('all', None) | ('fraction', f) | ('count', n) from None/'all', a float < 1 or '10%', or a count."""
    if sample is None or sample == "all":
        return "all", None
    if isinstance(sample, str):
        text = sample.strip()
        if text.endswith("%"):
            sample = float(text[:-1]) / 100.0
        elif "." in text:
            sample = float(text)
        else:
            sample = int(text)
    if isinstance(sample, bool):
        raise ValueError("sample must be a number of assets or a fraction, not %r" % sample)
    if isinstance(sample, float):
        if sample <= 0:
            raise ValueError("sample fraction must be above 0, got %r" % sample)
        return ("all", None) if sample >= 1 else ("fraction", sample)
    if int(sample) < 1:
        raise ValueError("sample count must be at least 1, got %r" % sample)
    return "count", int(sample)


class _Report:
    def __init__(self, examples):
        self.counts = dict((k, 0) for k in KINDS)
        self.examples = dict((k, []) for k in KINDS)
        self._limit = examples
        self.hashed = 0
        self.bytes_hashed = 0

    def note(self, kind, path, detail=None):
        self.counts[kind] += 1
        if len(self.examples[kind]) < self._limit:
            self.examples[kind].append(path if not detail else "%s (%s)" % (path, detail))


def asset_proof(rows, upload_location, media_location=None, *, sample=None, seed=0, examples=EXAMPLES,
                workers=2, folders=ORIGINAL_FOLDERS, ignored_suffixes=IGNORED_SUFFIXES, find_orphans=True,
                on_external=None, run_size=20000, tmpdir=None):
    """Prove the originals under ``upload_location`` (the host's UPLOAD_LOCATION) against asset rows.

    ``rows`` yields (id, originalPath, checksum, checksumAlgorithm, libraryId[, status]): checksum as
    bytes, ``\\x..`` or hex text; algorithm None when the schema has no such column (then an asset
    with a libraryId is external, everything else a content SHA-1). ``sample``: None (every file),
    a count (that many assets, the same ones for the same ``seed``), or a fraction (0.1 or "10%").
    Files not sampled are still checked for presence. ``on_external(row)`` receives each external
    asset for the caller's manifest check.

    Returns {"ok", "assets", "hashed", "bytes_hashed", <each of KINDS>: count, "examples": {kind:
    [path, ...]}, "sample", "seconds", "empty_database", "detail"}; ``ok`` is False on any of FAILING,
    and when no row names any asset while originals are on disk. Orphans alone are reported, not
    failed: a backup that dumps first and copies second may hold files the dump's snapshot has not
    seen yet.
    """
    started = time.monotonic()
    if not os.path.isdir(upload_location):
        raise ProofError("UPLOAD_LOCATION %s is not a folder on this host: nothing to prove the originals against. "
                         "Check the instance's .env (UPLOAD_LOCATION) and that the restore copied the originals."
                         % upload_location)
    mode, amount = _sample_mode(sample)
    base = upload_location.rstrip("/") + "/"
    report = _Report(examples)
    sorter = walker = None
    chosen = []  # count mode: heap of (-key, n, item), the `amount` smallest keys
    threshold = int(amount * (1 << 64)) if mode == "fraction" else None
    total = 0
    present = 0

    def on_result(item, result, error):
        display = item[2]
        if error is not None:
            if isinstance(error, FileNotFoundError):
                report.note("missing_in_backup", display)
            else:
                report.note("unreadable", display, error.strerror or str(error))
            return
        digest, size = result
        report.hashed += 1
        report.bytes_hashed += size
        if digest == item[0]:
            report.counts["matched"] += 1
        else:
            report.note("mismatched", display)

    pool = _HashPool(workers, on_result)
    try:
        if find_orphans:
            sorter = PathSorter(run_size=run_size, tmpdir=tmpdir)
            walker = _BackgroundWalk(upload_location, folders, tmpdir)
        for row in rows:
            total += 1
            asset_id, original, checksum, algorithm, library = row[0], row[1], row[2], row[3], row[4]
            status = row[5] if len(row) > 5 else None
            rel = immich.to_relative(original, media_location)
            if sorter is not None and rel is not None and rel.split("/", 1)[0] in folders:
                sorter.add(rel)
            if algorithm is None:
                algorithm = PATH_HASH if library else CONTENT
            if algorithm == PATH_HASH:
                report.note("external", original)
                if on_external is not None:
                    on_external(row)
                continue
            if algorithm != CONTENT:
                report.note("unknown_algorithm", original, algorithm)
                continue
            if rel is None:
                report.note("unmapped", original, "not under %s" % " or ".join(
                    [media_location or "/data"] + [m for m in immich.MEDIA_TARGETS if m != (media_location or "/data")]))
                continue
            full = base + rel
            if status == "deleted":
                # Trash emptied, file deletion queued in Immich: its file may already be gone.
                report.note("pending_delete", original)
                continue
            expected = parse_bytea(checksum)
            if expected is None or len(expected) != 20:
                report.note("mismatched", original, "the database holds no SHA-1 for it")
                continue
            item = (expected, full, original)
            if mode == "all" or (mode == "fraction" and _sample_key(seed, asset_id) < threshold):
                pool.submit(item)
                continue
            try:
                os.stat(full)
            except FileNotFoundError:
                report.note("missing_in_backup", original)
                continue
            except OSError as exc:
                report.note("unreadable", original, exc.strerror)
                continue
            present += 1
            if mode == "count":
                entry = (-_sample_key(seed, asset_id), total, item)
                if len(chosen) < amount:
                    heapq.heappush(chosen, entry)
                elif entry > chosen[0]:
                    heapq.heapreplace(chosen, entry)
        for _key, _n, item in sorted(chosen, key=lambda e: e[2][1]):  # in path order: folders read in turn
            pool.submit(item)
        pool.close()
        not_hashed = present - (len(chosen) if mode == "count" else 0)
        report.counts["not_hashed"] = not_hashed
        if sorter is not None:
            _orphans(sorter, walker.files(), report, ignored_suffixes)
    finally:
        pool.shutdown()
        if sorter is not None:
            sorter.close()
        if walker is not None:
            walker.close()
    result = {"assets": total, "hashed": report.hashed, "bytes_hashed": report.bytes_hashed,
              "examples": dict((k, v) for k, v in report.examples.items() if v and k != "matched"),
              "sample": {"mode": mode, "value": amount, "seed": seed if mode != "all" else None},
              "seconds": round(time.monotonic() - started, 3)}
    result.update(report.counts)
    # No asset at all beside originals on disk: the dump is empty or of another database.
    result["empty_database"] = total == 0 and report.counts["orphans"] > 0
    result["ok"] = not any(report.counts[k] for k in FAILING) and not result["empty_database"]
    result["detail"] = summarize(result)
    return result


class _BackgroundWalk:
    """The orphan walk beside the hashing, written to a temporary file as it goes (NUL-separated):
    memory stays flat.

    Where the host has ``find`` (findutils on every Debian and Ubuntu; busybox elsewhere) the walk is
    a child process: its syscalls run on the other core and outside this process's GIL, which the
    hash threads need (measured on 2 busy cores, 100k files in one xx/yy folder each: the whole proof
    0.9-1.0x sha1sum with the child, 1.2-1.5x with a thread). The child's list is unsorted and is
    sorted here (an external sort) when it is read. Without ``find``, walk_files runs on a thread.
    Both list regular files only, follow a symlinked upload/ or library/ folder itself (find -H) and
    nothing below it.
    """

    def __init__(self, top, folders, tmpdir=None, find=None):
        self._fh = tempfile.TemporaryFile(dir=tmpdir)
        self._tmpdir = tmpdir
        self._error = None
        self._stop = threading.Event()
        self._thread = self._child = self._sorter = None
        self._base = top.rstrip("/") + "/"
        find = find if find is not None else shutil.which("find")
        starts = [self._base + f for f in sorted(folders) if os.path.isdir(self._base + f)]
        if find and starts:
            self._errors = tempfile.TemporaryFile(dir=tmpdir)
            self._child = subprocess.Popen([find, "-H"] + starts + ["-type", "f", "-print0"],
                                           stdin=subprocess.DEVNULL, stdout=self._fh, stderr=self._errors)
            # the child's list is sorted as soon as it is complete, while the hashing goes on
            self._thread = threading.Thread(target=self._sort_child, daemon=True)
            self._thread.start()
        elif starts:
            self._thread = threading.Thread(target=self._run, args=(top, folders), daemon=True)
            self._thread.start()

    def _run(self, top, folders):
        out = []
        size = 0
        try:
            for rel in walk_files(top, folders):
                if self._stop.is_set():
                    return
                item = rel.encode("utf-8", "surrogateescape") + b"\0"
                out.append(item)
                size += len(item)
                if size >= CHUNK:
                    self._fh.write(b"".join(out))
                    out, size = [], 0
            self._fh.write(b"".join(out))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by files()
            self._error = exc

    def _sort_child(self):
        try:
            rc = self._child.wait()
            if rc != 0:
                self._errors.seek(0)
                said = self._errors.read(2000).decode("utf-8", "replace").strip().splitlines()
                self._error = ProofError(
                    "Listing the originals under UPLOAD_LOCATION failed (find exited %d%s): the orphan check cannot say "
                    "which files no row names; nothing was changed. Make every folder under UPLOAD_LOCATION readable "
                    "to the user the proof runs as, then run it again." % (rc, (": " + said[0]) if said else ""))
                return
            self._fh.seek(0)
            sorter = PathSorter(tmpdir=self._tmpdir)
            self._sorter = sorter
            cut = len(self._base)
            for path in PathSorter._read_run(self._fh):
                if self._stop.is_set():
                    return
                sorter.add(path[cut:])
            sorter.settle()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by files()
            self._error = exc

    def files(self):
        """The walked relative paths in order_key order."""
        if self._thread is not None:
            self._thread.join()
        if isinstance(self._error, ProofError):
            raise self._error
        if self._error is not None:
            raise ProofError("Listing the originals under UPLOAD_LOCATION failed: %s" % self._error)
        if self._sorter is not None:
            return iter(self._sorter)
        self._fh.seek(0)
        return PathSorter._read_run(self._fh)

    def close(self):
        self._stop.set()  # after files() the walk is over; on an error this ends it early
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
        if self._thread is not None:
            self._thread.join()
        if self._child is not None:
            self._child.wait()
            self._errors.close()
        if self._sorter is not None:
            self._sorter.close()
        self._fh.close()


def _orphans(sorter, walked, report, ignored_suffixes):
    """Files under the original folders that no row names: a merge of two sorted streams."""
    known = iter(sorter)
    want = next(known, None)
    ignored = tuple(ignored_suffixes)
    for rel in walked:
        name = rel.rsplit("/", 1)[-1]
        key = order_key(rel)
        while want is not None and order_key(want) < key:
            want = next(known, None)
        if want == rel:
            continue
        if name == MARKER or (ignored and name.endswith(ignored)):
            continue
        report.note("orphans", rel)


def summarize(result):
    """One line for the summary: counts first, then a few examples of what is wrong."""
    if result.get("empty_database"):
        return ("the database names no asset, yet UPLOAD_LOCATION holds %d originals (%s): the restored dump is empty "
                "or of another database" % (result["orphans"], ", ".join(result["examples"].get("orphans", [])[:3])))
    parts = ["%d of %d assets" % (result["matched"], result["assets"]) + (" matched their SHA-1" if result["hashed"] else "")]
    for kind, label in (("mismatched", "changed since Immich stored its checksum"),
                        ("missing_in_backup", "missing (a row, no file)"), ("unreadable", "unreadable"),
                        ("unmapped", "outside the media location"), ("orphans", "orphans (a file, no row)"),
                        ("external", "external (checked against the file manifest)"),
                        ("unknown_algorithm", "with an unknown checksum algorithm"),
                        ("pending_delete", "pending deletion"), ("not_hashed", "present, not in the sample")):
        n = result.get(kind, 0)
        if n:
            shown = result.get("examples", {}).get(kind, [])[:3] if kind in FAILING + ("orphans",) else []
            parts.append("%d %s%s" % (n, label, (": " + ", ".join(shown) + (", ..." if n > len(shown) else "")) if shown else ""))
    return "; ".join(parts)


def asset_check(result):
    """The per-asset proof as a named check for the summary and the JUnit report."""
    detail = result["detail"]
    if not result["ok"]:
        detail += (". The restored originals differ from what Immich recorded: those photos are damaged or absent "
                   "in this backup; restore them from an older set (see `immich_restore_set`) or the source disk.")
    return check("per-asset SHA-1", result["ok"], detail)


# -- boot proof ---------------------------------------------------------------------------------

def check(name, ok, detail, skipped=False, **extra):
    out = {"name": name, "ok": bool(ok), "detail": detail, "skipped": bool(skipped)}
    out.update(extra)
    return out


def admin_sql(table="user"):
    """Count of admins as Immich's hasAdmin sees them (not deleted); table 'user' (current) or 'users'."""
    if table not in ("user", "users"):
        raise ValueError("admin_sql: table is 'user' or 'users', not %r" % table)
    return 'SELECT count(*) FROM public."%s" WHERE "isAdmin" AND "deletedAt" IS NULL;' % table  # noqa: S608 - one of two names


def admin_check(admins):
    """An admin must exist: Immich's web restore rolls back a restore without one, and the UI offers
    a fresh sign-up to anyone who reaches it."""
    admins = int(admins or 0)
    if admins > 0:
        return check("admin exists", True, "%d admin user%s" % (admins, "" if admins == 1 else "s"))
    return check("admin exists", False,
                 "The restored database has no admin user: the dump is empty or from the wrong database, and the "
                 "first visitor of the web page could sign up as admin. Restore another set, or inspect it with "
                 "`docker exec <db> psql -U <user> -d <db> -c 'SELECT email, \"isAdmin\" FROM \"user\"'`.")


MAINTENANCE_KEY = "maintenance-mode"
MAINTENANCE_SQL = "SELECT value::text FROM public.system_metadata WHERE key = 'maintenance-mode';"
# What `immich-admin disable-maintenance-mode` writes (CliService.disableMaintenanceMode).
CLEAR_MAINTENANCE_SQL = ("UPDATE public.system_metadata SET value = '{\"isMaintenanceMode\": false}'::jsonb "
                         "WHERE key = 'maintenance-mode' AND value->>'isMaintenanceMode' = 'true';")


def in_maintenance(value):
    """Does the ``maintenance-mode`` value (jsonb text, a dict, or None for no row) put Immich in maintenance?"""
    if value is None or value == "":
        return False
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return False
    return isinstance(value, dict) and value.get("isMaintenanceMode") is True


def maintenance_check(value, cleared=False):
    """The restored instance must not boot into maintenance mode (a dump taken during maintenance
    restores into it: the server reads the row at boot and starts the maintenance worker instead of
    the API). ``cleared``: the caller ran CLEAR_MAINTENANCE_SQL before the server started.

    Returns the check with ``finding``: "none", "to clear" (with ``sql``) or "cleared".
    """
    if not in_maintenance(value):
        return check("not in maintenance mode", True, "system_metadata holds no active maintenance mode", finding="none")
    if cleared:
        return check("not in maintenance mode", True,
                     "cleared: the dump was taken while Immich was in maintenance mode; maintenance mode was switched "
                     "off in the restored database before the server started", finding="cleared", sql=CLEAR_MAINTENANCE_SQL)
    return check("not in maintenance mode", False,
                 "to clear: the dump was taken while Immich was in maintenance mode, so the restored server boots into "
                 "it and serves no API. Run `%s` in the database (or `immich-admin disable-maintenance-mode` in the "
                 "server container), then restart immich-server." % CLEAR_MAINTENANCE_SQL,
                 finding="to clear", sql=CLEAR_MAINTENANCE_SQL)


SCHEMA_DRIFT_LINE = "Detected schema drift"


def schema_drift_log_check(log_text, limit=3):
    """No "Detected schema drift" line in the server's log since its start (Immich only logs it)."""
    hits = [ln.strip() for ln in (log_text or "").splitlines() if SCHEMA_DRIFT_LINE in ln]
    if not hits:
        return check("no schema drift logged", True, "the server's log since its start has no \"%s\" line" % SCHEMA_DRIFT_LINE)
    return check("no schema drift logged", False,
                 "the server logged schema drift %d time%s since its start (%s): the restored schema is not what this "
                 "Immich release expects (a dump from another release, or objects changed after the dump). Run "
                 "`docker exec <server> immich-admin schema-check` for the list."
                 % (len(hits), "" if len(hits) == 1 else "s", " | ".join(h[:200] for h in hits[:limit])))


MIGRATIONS_OK = "Migrations are up to date"
NO_DRIFT = "No schema drift detected"


def schema_check_verdict(output, rc=0, available=True):
    """The verdict of ``immich-admin schema-check``: both "Migrations are up to date" and "No schema
    drift detected", exit 0; anything else fails with the lines it printed. ``available=False``
    (an image without the command) gives a skipped check."""
    if not available:
        return check("immich-admin schema-check", True, "this server image has no `immich-admin schema-check`", skipped=True)
    text = output or ""
    if rc == 0 and MIGRATIONS_OK in text and NO_DRIFT in text:
        return check("immich-admin schema-check", True, "%s; %s" % (MIGRATIONS_OK, NO_DRIFT.lower()))
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip() and not ln.startswith("```")]
    problems = [ln for ln in lines if ln not in (MIGRATIONS_OK, NO_DRIFT)]
    return check("immich-admin schema-check", False,
                 "schema-check (exit %s) did not confirm the schema: %s. The restored database does not match this "
                 "Immich release; restore a dump of the same release or run the release the dump came from."
                 % (rc, " | ".join(problems[:6])[:600] or "no output"))


BOOT_TABLES_SQL = "SELECT to_regclass('public.\"user\"') IS NOT NULL, to_regclass('public.users') IS NOT NULL;"


def read_boot_facts(container, user, database, password=None, query=None):
    """What the boot checks need from the restored database: {"admins": n, "maintenance": jsonb text or None}.

    ``query`` replaces docker_exec.query (tests). Works on both table namings (``"user"`` / ``users``).
    """
    query = query or dx.query
    has_user, has_users = (query(container, user, database, BOOT_TABLES_SQL, password) or [["f", "f"]])[0][:2]
    table = "user" if has_user == "t" else "users" if has_users == "t" else None
    if table is None:
        raise ProofError("Database %s in %s has no user table (neither \"user\" nor users): the restore left no Immich "
                         "schema behind. Check the restore's psql output, then restore again." % (database, container))
    admins = int(query(container, user, database, admin_sql(table), password)[0][0])
    rows = query(container, user, database, MAINTENANCE_SQL, password)
    return {"admins": admins, "maintenance": rows[0][0] if rows and rows[0] else None, "user_table": table}


def boot_proof(admins, maintenance, log_text=None, schema_check=None, cleared=False):
    """The boot checks in one list: admin, maintenance mode, schema drift in the log (when a log is
    given) and schema-check (``schema_check``: (output, rc) or None when the image has no such command)."""
    checks = [admin_check(admins), maintenance_check(maintenance, cleared=cleared)]
    if log_text is not None:
        checks.append(schema_drift_log_check(log_text))
    if schema_check is None:
        checks.append(schema_check_verdict("", available=False))
    else:
        checks.append(schema_check_verdict(schema_check[0], rc=schema_check[1]))
    return checks


# -- the boot proof against a running instance (docker exec / docker logs) -----------------------------------

def clear_maintenance(container, user, database, password=None, query=None):
    """Before the restored server starts: a dump taken during maintenance mode restores into it, and the
    server would boot its maintenance worker instead of the API. Switch it off in the database (what
    ``immich-admin disable-maintenance-mode`` writes) and say so. Returns {"before", "cleared", "check"};
    the check fails (it never raises) when the database cannot be read: the proof after the start says more."""
    query = query or dx.query
    try:
        facts = read_boot_facts(container, user, database, password, query=query)
    except (ProofError, dx.DockerError, IndexError, ValueError) as exc:
        return {"before": None, "cleared": False,
                "check": check("not in maintenance mode", False, "could not be read before the start: %s" % exc)}
    before = facts["maintenance"]
    if not in_maintenance(before):
        return {"before": before, "cleared": False, "check": maintenance_check(before)}
    query(container, user, database, CLEAR_MAINTENANCE_SQL, password)
    return {"before": before, "cleared": True, "check": maintenance_check(before, cleared=True)}


def maintenance_after_start(step, now):
    """The maintenance check after the start: the value read now, and what ``clear_maintenance`` did before it."""
    if in_maintenance(now):
        return maintenance_check(now)
    if (step or {}).get("cleared"):
        return maintenance_check((step or {}).get("before"), cleared=True)
    return maintenance_check(now)


def server_started_at(server, run=None):
    """The server container's State.StartedAt (the start of its log that counts), or None."""
    run = run or dx.run
    rc, out, _err = run([dx.DOCKER, "inspect", "-f", "{{.State.StartedAt}}", server], timeout=60)
    return out.strip() or None if rc == 0 else None


def server_log_since(server, since, run=None):
    """``docker logs --since <start>`` of the server (stdout and stderr): what it logged since it started."""
    run = run or dx.run
    rc, out, err = run([dx.DOCKER, "logs", "--since", since, server] if since else [dx.DOCKER, "logs", server], timeout=120)
    if rc != 0:
        raise ProofError("Cannot read the log of %s: %s" % (server, err.strip()[-300:]))
    return out + err


_NO_COMMAND = ("executable file not found", "unknown command", "command not found", "no such file or directory")


def run_schema_check(server, run=None):
    """(output, rc) of ``immich-admin schema-check`` in the server container; None where the image has no such
    command (immich-admin missing, or a release before schema-check)."""
    run = run or dx.run
    rc, out, err = run(dx.exec_argv(server, ["immich-admin", "schema-check"]), timeout=300)
    text = out + err
    if rc != 0 and (rc in (126, 127) or any(s in text.lower() for s in _NO_COMMAND)):
        return None
    return text, rc


def parse_sample(value):
    """The drill's / role's sample: '', 'all', 0 or '0' -> None (every original); '200' -> 200; '10%' and
    '0.1' stay as they are (asset_proof understands them)."""
    if value is None:
        return None
    text = str(value).strip()
    if text in ("", "all", "0"):
        return None
    if text.isdigit():
        return int(text)
    return text


def outcome(checks):
    """ok, and the one message a failed proof gives: the restore stands (its rows matched), what failed."""
    failed = [c for c in checks if not c.get("ok")]
    if not failed:
        return True, "every check passed: %s" % ", ".join(c["name"] for c in checks)
    named = " | ".join("%s: %s" % (c["name"], c["detail"]) for c in failed)
    return False, ("The restore stands (its rows matched the backup), but %d check%s of the restored instance failed: %s."
                   % (len(failed), "" if len(failed) == 1 else "s", named))
