# -*- coding: utf-8 -*-
# Copyright (c) homelab.immich contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work behind db_dump, dump_rewrite, fresh_check and db_restore: streaming, verifying, refusing."""
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
from ansible_collections.homelab.immich.plugins.module_utils.rewrite import SearchPathRewriter

CHUNK = 1 << 20
EXT = {"gzip": ".sql.gz", "zstd": ".sql.zst", "none": ".sql"}
DEFAULT_LEVEL = {"gzip": 1, "zstd": 1}  # the compressor shares 2 cores with Postgres: bench/README.md


class OpError(Exception):
    """A failure with a message the user can act on; ``result`` holds facts worth returning."""

    def __init__(self, msg, **result):
        Exception.__init__(self, msg)
        self.result = result


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _mb(n):
    return "%.1f MB" % (n / 1e6)


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


def _write_json_atomic(path, data):
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
            problems.append("the dump is %s, below %d%% of the previous dump (%s)" % (_mb(bytes_), min_size_ratio * 100, _mb(pb)))
        prow = previous.get("rows_by_table") or {}
        ptotal = sum(prow.values())
        total = sum((rows or {}).values())
        if ptotal and total < ptotal * min_size_ratio:
            problems.append("the database holds %d rows, below %d%% of the previous dump's %d" % (total, min_size_ratio * 100, ptotal))
        missing = sorted(set(prow) - set(rows or {}))
        if missing:
            problems.append("tables of the previous dump are missing: %s" % ", ".join(missing[:10]))
    return problems


def dump(container, user, db_name, dest, *, dump_kind="cluster", compression="gzip", compression_level=None,
         immich_version=None, previous_manifest=None, min_size_ratio=0.5, on_shrink="fail",
         password=None, check_mode=False):
    """Stream pg_dumpall/pg_dump from the container into ``dest``; returns the result dict."""
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

    write = dx.write_all(fd)
    writeback = EarlyWriteback(fd)

    def to_file(buf):
        sha.update(buf)
        write(buf)
        state["written"] += len(buf)
        writeback.wrote(state["written"])

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
                sink = dx.write_all(comp.proc.stdin.fileno())
                try:
                    dx.pump(producer.proc.stdout.fileno(), [track, sink])
                except OSError as exc:  # compressor gone: reported through its exit code
                    state["error"] = exc
                finally:
                    comp.proc.stdin.close()

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            dx.pump(comp.proc.stdout.fileno(), [to_file])
            feeder.join()
        else:
            dx.pump(producer.proc.stdout.fileno(), [track, to_file])
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
                          "(pg_dump killed or the container stopped?). No dump was written." % _mb(state["plain"]))
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
        _write_json_atomic(manifest_path, manifest)
        _fsync_dir(dest)
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
                          % (dest, _mb(state["written"]), dest)) from exc
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    result.update(changed=True, bytes=state["written"], plain_bytes=state["plain"], sha256=manifest["sha256"],
                  seconds=round(seconds, 3), mb_per_s=round(state["plain"] / 1e6 / max(seconds, 1e-6), 1),
                  warnings=warnings, msg="Wrote %s (%s)." % (path, _mb(state["written"])))
    return result


# ------------------------------------------------------------------------------------------------
# dump_rewrite

def rewrite_file(src, dest=None, compression=None, check_mode=False):
    """Rewrite src into dest in ONE streaming pass (temp in dest's folder, then rename); idempotent."""
    in_comp = df.sniff_file(src)
    out_comp = compression or in_comp
    dest = dest or src
    rw = SearchPathRewriter()
    if check_mode:
        info = df.inspect_dump(src, on_chunk=rw.feed, compression=in_comp, scan=False)
        rw.flush()
        return {"changed": rw.count > 0 or not _same_output(src, dest, in_comp, out_comp), "lines_rewritten": rw.count,
                "dest": dest, "compression": out_comp, "dump_kind": info["dump_kind"],
                "msg": "Would rewrite %d line(s) into %s." % (rw.count, dest)}
    folder = os.path.dirname(os.path.abspath(dest))
    tmp = os.path.join(folder, ".%s.%d.tmp" % (os.path.basename(dest), os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        cargv = compressor_argv(out_comp)
        comp = dx.Stage(cargv[0], cargv, stdin=subprocess.PIPE, stdout=fd) if cargv else None
        sink = dx.write_all(comp.proc.stdin.fileno() if comp else fd)
        reader = df.PlainReader(src, in_comp)
        ok = False
        try:
            for buf in reader.chunks():
                sink(rw.feed(buf))
            sink(rw.flush())
            ok = True
        finally:
            reader.close(check=ok)
        if comp:
            comp.proc.stdin.close()
            if comp.wait() != 0:
                raise OpError("%s failed while writing %s: %s" % (comp.name, dest, comp.stderr.strip()))
        if rw.count == 0 and _same_output(src, dest, in_comp, out_comp):
            os.close(fd)
            fd = None
            os.unlink(tmp)
            return {"changed": False, "lines_rewritten": 0, "dest": dest, "compression": out_comp,
                    "msg": "Nothing to rewrite: %s already has the search_path fix." % src}
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.rename(tmp, dest)
    except BaseException as exc:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OpError("No space left in %s for the rewritten dump; nothing was changed." % folder) from exc
        raise
    return {"changed": True, "lines_rewritten": rw.count, "dest": dest, "compression": out_comp,
            "msg": "Rewrote %d line(s) into %s." % (rw.count, dest)}


def _same_output(src, dest, in_comp, out_comp):
    """With nothing to rewrite, is dest already what we would write (src itself, or an identical copy)?"""
    if not os.path.exists(dest):
        return False
    if os.path.samefile(src, dest):
        return in_comp == out_comp
    return in_comp == out_comp and os.path.getsize(src) == os.path.getsize(dest) and _file_sha(src) == _file_sha(dest)


def _file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for buf in iter(lambda: fh.read(CHUNK), b""):
            h.update(buf)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# fresh_check

IMMICH_MARKERS = ("kysely_migrations", "migrations", "asset", "assets", "user", "users")


def fresh_check(container, user, db_name, *, server_container=None, password=None, allowed_databases=()):
    reasons = []
    checks = {}
    dbs = dx.databases(container, user, password)
    extra = sorted(set(dbs) - {"postgres", db_name} - set(allowed_databases or ()))
    checks["databases"] = dbs
    if extra:
        reasons.append("unexpected database(s): %s" % ", ".join(extra))
    tables = []
    if db_name not in dbs:
        reasons.append("database %s does not exist (wrong db_name, or not the Immich Postgres container?)" % db_name)
    else:
        tables = [r[0] for r in dx.query(container, user, db_name,
                                         "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1;", password)]
    checks["public_tables"] = len(tables)
    if tables:
        reasons.append("database %s already has %d table(s) in schema public (%s)"
                       % (db_name, len(tables), ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")))
    for mig in ("kysely_migrations", "migrations"):
        if mig in tables:
            n = int(dx.query(container, user, db_name, 'SELECT count(*) FROM public."%s";' % mig, password)[0][0])  # noqa: S608
            checks[mig + "_rows"] = n
            if n:
                reasons.append("%s holds %d migration row(s): an Immich server has already run against it" % (mig, n))
    if server_container:
        info = dx.inspect(server_container)
        if info is None:
            checks["server_started_at"] = None
        else:
            started = info.get("State", {}).get("StartedAt", "")
            checks["server_started_at"] = started
            if not started.startswith("0001-01-01"):
                reasons.append("server container %s has started since it was created (StartedAt %s)" % (server_container, started))
    return {"fresh": not reasons, "reasons": reasons, "checks": checks}


def not_fresh_message(container, reasons):
    return ("The target is not a fresh Immich install: %s. Restoring into it would fail with `relation already exists` "
            "or foreign-key errors, or mix two databases. Fix: `docker compose down -v`, remove the DB_DATA_LOCATION "
            "folder, `docker compose create`, `docker start %s`, then restore; or, when the server must start before "
            "the restore, set DB_SKIP_MIGRATIONS=true for it (and remove it after the restore)."
            % ("; ".join(reasons), container))


# ------------------------------------------------------------------------------------------------
# db_restore

BENIGN = (re.compile(r"current user cannot be dropped"),)
_ERROR_RE = re.compile(r"^(?:psql:[^:]*:\d+: )?(ERROR|FATAL|PANIC):\s+(.*)$")
_OWNER_RE = re.compile(rb"OWNER TO ([A-Za-z_][A-Za-z0-9_$]*|\"[^\"]+\");")


def _quote_ident(name):
    return name if re.match(r"^[a-z_][a-z0-9_$]*$", name) else '"%s"' % name.replace('"', '""')


class ErrorLog:
    """psql's stderr, classified line by line: benign (known harmless for cluster dumps) or fatal."""

    def __init__(self, user):
        self.benign = []
        self.fatal = []
        self.fatal_count = 0
        self._role_exists = 'role "%s" already exists' % user

    def __call__(self, raw):
        line = raw.decode("utf-8", "replace").rstrip()
        m = _ERROR_RE.match(line)
        if not m:
            return
        text = "%s: %s" % (m.group(1), m.group(2))
        if m.group(1) == "ERROR" and (self._role_exists in text or any(b.search(text) for b in BENIGN)):
            if len(self.benign) < 20:
                self.benign.append(text)
        else:
            self.fatal_count += 1
            if len(self.fatal) < 20:
                self.fatal.append(line)


def verify_dump(src, manifest=None, target_major=None, find_owner=True):
    """The verification pass: nothing is sent anywhere. Returns info; raises OpError when refused."""
    sha = hashlib.sha256()
    owner = {}

    def look_owner(buf):
        if "role" not in owner:
            m = _OWNER_RE.search(buf)
            if m:
                owner["role"] = m.group(1).decode("utf-8", "replace").strip('"')

    try:
        info = df.inspect_dump(src, on_chunk=look_owner if find_owner else None,
                               on_raw=sha.update if manifest and manifest.get("sha256") else None)
    except df.DumpError as exc:
        if manifest and manifest.get("sha256"):
            got = _file_sha(src)
            if got != manifest["sha256"]:
                raise OpError("Refusing to restore %s: its sha256 %s differs from the manifest's %s (file damaged or "
                              "replaced; %s) The target was not touched. Use another backup set."
                              % (src, got, manifest["sha256"], exc)) from exc
        raise OpError("Refusing to restore %s: %s The running instance was not touched." % (src, exc)) from exc
    info["owner"] = owner.get("role")
    untouched = "The target was not touched."
    if manifest and manifest.get("sha256") and sha.hexdigest() != manifest["sha256"]:
        raise OpError("Refusing to restore %s: its sha256 %s differs from the manifest's %s (file damaged or replaced). %s "
                      "Use another backup set." % (src, sha.hexdigest(), manifest["sha256"], untouched))
    if not info["dump_kind"]:
        raise OpError("Refusing to restore %s: it does not start like a pg_dump/pg_dumpall SQL dump (no "
                      "`-- PostgreSQL database dump` header). %s" % (src, untouched))
    if info["trailer"] != info["dump_kind"]:
        raise OpError("Refusing to restore %s: the dump ends without its completion trailer after %s of SQL: it is "
                      "truncated (disk full or killed job when it was written). %s Use an older complete dump."
                      % (src, _mb(info["plain_bytes"]), untouched))
    if info["dangerous"]:
        first = info["dangerous"][0]
        raise OpError("Refusing to restore %s: it contains psql meta-commands or SQL that run programs on the database "
                      "host (line %d: %s). A real pg_dump never writes these: the file was tampered with. %s"
                      % (src, first["line"], first["text"], untouched), dangerous=info["dangerous"])
    dump_major = df.major_of(info["server_version"])
    if target_major is not None and dump_major is not None and dump_major > target_major:
        raise OpError("Refusing to restore %s: it was dumped from PostgreSQL %s but the target server runs PostgreSQL %s; "
                      "a dump does not load into an older major. Restore into an instance with a Postgres %d image. %s"
                      % (src, info["server_version"], target_major, dump_major, untouched))
    info["sha256"] = sha.hexdigest() if manifest and manifest.get("sha256") else None
    return info


class OwnerRemap:
    """Owner and role statements of old -> new (streamed, line-complete chunks)."""

    def __init__(self, old, new):
        o = re.escape(_quote_ident(old).encode())
        self.new = _quote_ident(new).encode()
        self._re = re.compile(rb"(OWNER TO |OWNER = |CREATE ROLE |ALTER ROLE |DROP ROLE IF EXISTS |DROP ROLE )" + o + rb"(?=[;\s])")
        self._pending = b""
        self.count = 0

    def feed(self, chunk):
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        out, n = self._re.subn(lambda m: m.group(1) + self.new, data[:cut])
        self.count += n
        return out

    def flush(self):
        data, self._pending = self._pending, b""
        out, n = self._re.subn(lambda m: m.group(1) + self.new, data)
        self.count += n
        return out


def restore(container, user, db_name, src, *, manifest_path=None, rewrite_search_path=True, owner_remap="auto",
            verify_rows=True, password=None, check_mode=False):
    t0 = time.monotonic()
    if manifest_path is None and os.path.exists(src + ".manifest.json"):
        manifest_path = src + ".manifest.json"
    manifest = load_manifest(manifest_path)
    warnings = []
    try:
        target_version = dx.server_version(container, user, "postgres", password)
    except dx.DockerError as exc:
        if not check_mode:
            raise
        # Verifying a dump before a restore must not need a running target (a wiped instance has none):
        # the version check runs again, before the first byte is sent, when the dump is loaded.
        target_version = None
        warnings.append("The target database %s does not answer (%s): the dump was verified without the version "
                        "check, which runs again before it is loaded." % (container, str(exc)[:200]))
    info = verify_dump(src, manifest, df.major_of(target_version))
    kind = info["dump_kind"]
    old_owner = info["owner"]
    remap = None
    if owner_remap == "auto" and old_owner and old_owner != user:
        remap = old_owner
    elif owner_remap not in ("auto", "never", None, "") and owner_remap != user:
        remap = owner_remap
    result = {"dump_kind": kind, "compression": info["compression"], "server_version": info["server_version"],
              "pg_dump_version": info["pg_dump_version"], "target_server_version": target_version,
              "crlf": info["crlf"], "owner_remapped": bool(remap), "verify_seconds": round(time.monotonic() - t0, 3),
              "manifest": manifest_path}
    if check_mode:
        result.update(changed=False, warnings=warnings, msg="Verified %s (%s dump, PostgreSQL %s): it would be restored into %s."
                      % (src, kind, info["server_version"], container))
        return result

    if kind == "cluster":
        extra = ["-v", "ON_ERROR_STOP=0"]
        connect_db = "postgres"
    else:
        extra = ["--single-transaction", "-v", "ON_ERROR_STOP=1"]
        connect_db = db_name
    errors = ErrorLog(user)
    t1 = time.monotonic()
    psql = dx.Stage("psql", dx.psql_argv(container, user, connect_db, extra, password=password),
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, password=password, on_line=errors)
    rw = SearchPathRewriter() if rewrite_search_path else None
    rm = OwnerRemap(remap, user) if remap else None
    reader = df.PlainReader(src, info["compression"])
    sink = dx.write_all(psql.proc.stdin.fileno())
    broken = False
    ok = False
    try:
        for plain in reader.chunks():
            buf = rw.feed(plain) if rw is not None else plain
            if rm is not None:
                buf = rm.feed(buf)
            if buf:
                sink(buf)
        tail = rw.flush() if rw is not None else b""
        if rm is not None:
            tail = rm.feed(tail) + rm.flush()
        if tail:
            sink(tail)
        ok = True
    except BrokenPipeError:
        broken = True
    finally:
        reader.close(check=ok and not broken)
        try:
            psql.proc.stdin.close()
        except OSError:
            pass
    rc = psql.wait()
    seconds = time.monotonic() - t1
    result.update(seconds=round(seconds, 3), lines_rewritten=rw.count if rw is not None else 0,
                  errors={"benign": errors.benign, "fatal": errors.fatal, "fatal_count": errors.fatal_count})
    if rc != 0 or broken or errors.fatal_count:
        detail = "; ".join(errors.fatal[:5]) or psql.stderr.strip()[-800:] or "psql exited %s" % rc
        hint = ""
        if 'type "earth" does not exist' in detail and not rewrite_search_path:
            hint = " This is the earthdistance search_path problem: restore with rewrite_search_path=true."
        raise OpError("The restore into %s failed (%d error(s)): %s.%s The target database is incomplete: reset it "
                      "(down -v, remove DB_DATA_LOCATION, create, start the DB) before trying again."
                      % (container, max(errors.fatal_count, 1), detail, hint), **result)
    t2 = time.monotonic()
    rows = dx.row_counts(container, user, db_name, password)
    result.update(rows_by_table=rows, count_seconds=round(time.monotonic() - t2, 3))
    if verify_rows and manifest and manifest.get("rows_by_table") is not None:
        expected = manifest["rows_by_table"]
        diff = {t: {"expected": expected.get(t), "restored": rows.get(t)}
                for t in sorted(set(expected) | set(rows)) if expected.get(t) != rows.get(t)}
        result["rows_diff"] = diff
        if diff:
            raise OpError("The restore into %s finished but %d table(s) differ from the manifest: %s. Do not start "
                          "Immich on this database; check the dump and restore again."
                          % (container, len(diff), ", ".join("%s %s!=%s" % (t, d["restored"], d["expected"])
                                                             for t, d in list(diff.items())[:8])), **result)
    result.update(changed=True, msg="Restored %s into %s in %.1fs (%d tables, %d rows)."
                  % (os.path.basename(src), container, seconds, len(rows), sum(rows.values())))
    return result
