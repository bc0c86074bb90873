# -*- coding: utf-8 -*-
# Copyright (c) homelab.immich contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database restore: verify first (nothing is sent), then decompress -> search_path rewrite ->
owner remap -> psql in ONE stream, with psql's errors classified and the rows proven afterwards."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import subprocess
import time

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump_format as df
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError, mb
from ansible_collections.homelab.immich.plugins.module_utils._fsio import sha256_file, write_all
from ansible_collections.homelab.immich.plugins.module_utils.dump import load_manifest
from ansible_collections.homelab.immich.plugins.module_utils.rewrite import SearchPathRewriter

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
            got = sha256_file(src)
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
                      % (src, mb(info["plain_bytes"]), untouched))
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
    sink = write_all(psql.proc.stdin.fileno())
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

