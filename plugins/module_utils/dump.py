# -*- coding: utf-8 -*-
# Copyright (c) homelab.immich contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database dump: pg_dump/pg_dumpall run INSIDE the database container (no TTY), streamed
through a compressor into a temporary file, proven complete (trailer, every stage's exit code, row
counts and size against the previous dump) and only then renamed into place with its manifest."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump_format as df
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError, mb
from ansible_collections.homelab.immich.plugins.module_utils._fsio import fsync_dir, pump, write_all, write_json_atomic

EXT = {"gzip": ".sql.gz", "zstd": ".sql.zst", "none": ".sql"}
DEFAULT_LEVEL = {"gzip": 1, "zstd": 1}  # the compressor shares 2 cores with Postgres: bench/README.md


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def compressor_argv(compression, level=None):
    level = DEFAULT_LEVEL.get(compression) if level is None else level
    if compression == "gzip":
        binary = shutil.which("pigz") or shutil.which("gzip")
        if not binary:
            raise OpError("gzip is not installed on this host: `apt-get install gzip`.")
        return [binary, "-c", "-%d" % level]
    if compression == "zstd":
        if not shutil.which("zstd"):
            raise OpError("compression=zstd needs the `zstd` binary on this host, and it is missing: %s. "
                          "Or use compression=gzip." % df.ZSTD_INSTALL)
        return ["zstd", "-q", "-c", "-T0", "-%d" % level]
    return []


def load_manifest(path):
    if not path:
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise OpError("Cannot read the manifest %s: %s" % (path, exc)) from exc


class EarlyWriteback:
    """Start writing the dump to disk while it streams, not all at the final fsync.

    Every 8 MiB, POSIX_FADV_DONTNEED on what was written since: Linux starts the write-back of
    those pages at once (without waiting) and drops the ones already on disk, so the final fsync
    has little left to do and the dump does not push Postgres's own pages out of the page cache.
    Best effort: a no-op where posix_fadvise is missing.
    """

    STEP = 8 << 20

    def __init__(self, fd):
        self.fd = fd
        self.started = 0  # write-back asked for below this offset
        self.dropped = 0  # and pages below this one asked to leave the cache
        self.enabled = hasattr(os, "posix_fadvise")

    def wrote(self, offset):
        if not self.enabled or offset - self.started < self.STEP:
            return
        try:
            os.posix_fadvise(self.fd, self.dropped, offset - self.dropped, os.POSIX_FADV_DONTNEED)
        except OSError:
            self.enabled = False
        self.dropped, self.started = self.started, offset


def _remove_stale_partials(dest):
    """Partials left by a killed run (their pid is gone) are removed; a running one is left alone."""
    for path in glob.glob(os.path.join(dest, ".immich-db-backup-*.tmp")):
        try:
            pid = int(path.rsplit(".", 2)[1])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            continue
        except OSError:
            pass
        try:
            os.unlink(path)
        except OSError:
            pass


def _terminate(signum, _frame):
    # SIGTERM (Ansible's timeout, systemd stop) unwinds like an error: stages killed, partial removed.
    raise SystemExit("db_dump terminated by signal %d: the partial dump was removed, the previous one is intact." % signum)


def pg_dump_version(container, password=None):
    rc, out, err = dx.run(dx.exec_argv(container, ["pg_dump", "--version"]), password=password)
    if rc != 0:
        raise OpError("Cannot run pg_dump in container %s: %s" % (container, err.strip()))
    m = re.search(r"(\d+(?:\.\d+)*)", out)
    return m.group(1) if m else out.strip()


def dump_filename(when, immich_version, server_version, compression):
    ver = (immich_version or "unknown").lstrip("vV") or "unknown"
    return "immich-db-backup-%s-v%s-pg%s%s" % (when.strftime("%Y%m%dT%H%M%S"), ver,
                                               df.major_of(server_version), EXT[compression])


def _shrink_problems(bytes_, rows, previous, min_size_ratio):
    problems = []
    if not rows:
        problems.append("the database has no tables in schema public (wrong container or db_name?)")
    elif sum(rows.values()) == 0:
        problems.append("every table is empty")
    if previous:
        pb = previous.get("bytes") or 0
        if pb and bytes_ < pb * min_size_ratio:
            problems.append("the dump is %s, below %d%% of the previous dump (%s)" % (mb(bytes_), min_size_ratio * 100, mb(pb)))
        prow = previous.get("rows_by_table") or {}
        ptotal = sum(prow.values())
        total = sum((rows or {}).values())
        if ptotal and total < ptotal * min_size_ratio:
            problems.append("the database holds %d rows, below %d%% of the previous dump's %d" % (total, min_size_ratio * 100, ptotal))
        missing = sorted(set(prow) - set(rows or {}))
        if missing:
            problems.append("tables of the previous dump are missing: %s" % ", ".join(missing[:10]))
    return problems


class MaintenanceFlagCleared(object):
    """A filter of the plain SQL: the `maintenance-mode` row of Immich's system_metadata written as "off".

    A dump taken while the server is in maintenance mode (the backup's consistency=maintenance) would
    otherwise restore into maintenance mode. The row is one COPY line, `maintenance-mode<TAB>{..., "isMaintenanceMode":
    true}`; only such a line changes, every other byte passes through untouched (line-complete chunks)."""

    # jsonb orders keys by length: {"secret": ..., "isMaintenanceMode": true}
    _RE = re.compile(rb'(?m)^maintenance-mode\t\{[^\n]*"isMaintenanceMode": ?true[^\n]*$')
    _OFF = b'maintenance-mode\t{"isMaintenanceMode": false}'

    def __init__(self):
        self.count = 0
        self._pending = b""

    def feed(self, chunk):
        data = self._pending + chunk if self._pending else chunk
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        return self._sub(data[:cut])

    def flush(self):
        data, self._pending = self._pending, b""
        return self._sub(data)

    def _sub(self, data):
        if b"maintenance-mode\t" not in data:  # C-speed: nearly every chunk
            return data
        out, n = self._RE.subn(self._OFF, data)
        self.count += n
        return out


def dump(container, user, db_name, dest, *, dump_kind="cluster", compression="gzip", compression_level=None,
         immich_version=None, previous_manifest=None, min_size_ratio=0.5, on_shrink="fail",
         password=None, check_mode=False, progress=None, clear_maintenance=False):
    """Stream pg_dumpall/pg_dump from the container into ``dest``; returns the result dict.

    ``progress(bytes=, bytes_expected=, written_bytes=)`` is called as the dump streams: bytes of SQL
    so far, the previous dump's SQL size (None without one) and the bytes written to disk."""
    warnings = []
    server_version = dx.server_version(container, user, db_name, password)
    dump_version = pg_dump_version(container, password)
    cargv = compressor_argv(compression, compression_level)
    started = _now()
    name = dump_filename(started, immich_version, server_version, compression)
    path = os.path.join(dest, name)
    manifest_path = path + ".manifest.json"
    previous = load_manifest(previous_manifest)
    dbs = dx.databases(container, user, password) if dump_kind == "cluster" else [db_name]
    result = {"path": path, "manifest_path": manifest_path, "dump_kind": dump_kind, "server_version": server_version,
              "pg_dump_version": dump_version, "databases": dbs, "compression": compression}
    if check_mode:
        rows = dx.row_counts(container, user, db_name, password)
        result["rows_by_table"] = rows
        result.update(changed=True, bytes=None, sha256=None, seconds=0.0, mb_per_s=None, warnings=warnings,
                      msg="Would write %s (%s dump of %s, %d tables) and its manifest." % (path, dump_kind, container, len(rows)))
        return result

    if not os.path.isdir(dest):
        os.makedirs(dest, 0o700)
    _remove_stale_partials(dest)
    if dump_kind == "cluster":
        cmd = ["pg_dumpall", "--clean", "--if-exists", "-U", user]
    else:
        cmd = ["pg_dump", "--clean", "--if-exists", "-U", user, "-d", db_name]
    tmp = os.path.join(dest, ".%s.%d.tmp" % (name, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    stages = []
    sha = hashlib.sha256()
    state = {"tail": b"", "plain": 0, "written": 0, "error": None}
    # Rows are counted in the stream itself: exactly what the dump holds, from its own snapshot
    # (a live count beside an online Immich would race with uploads), at no extra query.
    counter = df.CopyRowCounter(db_name)

    def track(buf):
        counter.feed(buf)
        state["plain"] += len(buf)
        state["tail"] = (state["tail"] + buf[-df.TAIL_BYTES:])[-df.TAIL_BYTES:]

    write = write_all(fd)
    writeback = EarlyWriteback(fd)

    expected = (previous or {}).get("plain_bytes")

    def to_file(buf):
        sha.update(buf)
        write(buf)
        state["written"] += len(buf)
        writeback.wrote(state["written"])
        if progress is not None:
            progress(bytes=state["plain"], bytes_expected=expected, written_bytes=state["written"])

    plain_filter = MaintenanceFlagCleared() if clear_maintenance else None

    def stream_plain(src_fd, sinks):
        """The plain SQL from src_fd into sinks, through the filter when there is one."""
        if plain_filter is None:
            return pump(src_fd, sinks)

        def filtered(buf):
            out = plain_filter.feed(buf)
            for s in sinks:
                s(out)
        pump(src_fd, [filtered])
        tail = plain_filter.flush()
        for s in sinks:
            s(tail)
        return None

    t1 = time.monotonic()
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        producer = dx.Stage("pg_dump", dx.exec_argv(container, cmd, password=password), password=password)
        stages.append(producer)
        if cargv:
            comp = dx.Stage(cargv[0], cargv, stdin=subprocess.PIPE)
            stages.append(comp)

            def feed():
                sink = write_all(comp.proc.stdin.fileno())
                try:
                    stream_plain(producer.proc.stdout.fileno(), [track, sink])
                except OSError as exc:  # compressor gone: reported through its exit code
                    state["error"] = exc
                finally:
                    comp.proc.stdin.close()

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            pump(comp.proc.stdout.fileno(), [to_file])
            feeder.join()
        else:
            stream_plain(producer.proc.stdout.fileno(), [track, to_file])
        t_sync = time.monotonic()
        os.fsync(fd)
        fsync_seconds = time.monotonic() - t_sync
        os.close(fd)
        fd = None
        failed = [(s, s.wait()) for s in stages]
        failed = [(s, rc) for s, rc in failed if rc != 0]
        if failed:
            s, rc = failed[0]
            raise OpError("The dump failed: %s exited %s (%s). No dump was written; the previous dump is untouched."
                          % (s.name, rc, s.stderr.strip()[-500:] or "no message"))
        kind = df.find_trailer(state["tail"])
        if kind != dump_kind:
            raise OpError("The dump stream ended without its completion trailer after %s: it is incomplete "
                          "(pg_dump killed or the container stopped?). No dump was written." % mb(state["plain"]))
        seconds = time.monotonic() - t1
        rows = counter.rows()
        result["rows_by_table"] = rows
        problems = _shrink_problems(state["written"], rows, previous, min_size_ratio)
        if problems:
            text = "Suspicious dump of %s: %s." % (container, "; ".join(problems))
            if on_shrink == "fail":
                raise OpError(text + " Not kept, the previous dump is untouched. If the shrink is expected, "
                              "run again with on_shrink=warn.", rows_by_table=rows)
            warnings.append(text)
        os.rename(tmp, path)
        manifest = {
            "file": name, "dump_kind": dump_kind, "server_version": server_version, "pg_dump_version": dump_version,
            "immich_version": immich_version, "databases": dbs, "db_name": db_name, "db_user": user,
            "rows_by_table": rows, "bytes": state["written"], "plain_bytes": state["plain"],
            "sha256": sha.hexdigest(), "compression": compression, "container": container,
            "timings": {"dump_seconds": round(seconds, 3), "fsync_seconds": round(fsync_seconds, 3)},
            "created_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        write_json_atomic(manifest_path, manifest)
        fsync_dir(dest)
    except BaseException as exc:
        for s in stages:
            s.kill()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OpError("No space left in %s after writing %s of the dump: the partial file was removed and "
                          "the previous dump is untouched. Free space there (`df -h %s`) or choose another dest."
                          % (dest, mb(state["written"]), dest)) from exc
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    if plain_filter is not None:
        result["maintenance_flag_cleared"] = plain_filter.count
    result.update(changed=True, bytes=state["written"], plain_bytes=state["plain"], sha256=manifest["sha256"],
                  seconds=round(seconds, 3), mb_per_s=round(state["plain"] / 1e6 / max(seconds, 1e-6), 1),
                  warnings=warnings, msg="Wrote %s (%s)." % (path, mb(state["written"])))
    return result
