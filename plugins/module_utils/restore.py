# -*- coding: utf-8 -*-
# Copyright (c) homelab.immich contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database restore: decompress -> search_path rewrite -> owner remap -> [vector-portable] -> psql
in ONE stream, checked on its way (sha256, header, meta-commands, transaction control, trailer, rows)
and, for a database dump, committed only when every check passed; a cluster dump, which no
transaction protects, is verified in a separate pass first. psql's errors are classified and the rows
proven afterwards."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import subprocess
import time

from ansible_collections.homelab.immich.plugins.module_utils import compat
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump_format as df
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError, mb
from ansible_collections.homelab.immich.plugins.module_utils._fsio import sha256_file, write_all
from ansible_collections.homelab.immich.plugins.module_utils.dump import load_manifest
from ansible_collections.homelab.immich.plugins.module_utils.rewrite import SearchPathRewriter
from ansible_collections.homelab.immich.plugins.module_utils.vector_portable import DumpWalker, VectorPortable

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


def verify_dump(src, manifest=None, target_major=None, find_owner=True, on_chunk=None):
    """The verification pass: nothing is sent anywhere. Returns info; raises OpError when refused.

    ``on_chunk(plain)`` sees every plain chunk as well (the compatibility gate's compat.DumpFacts):
    one read of the dump serves both."""
    sha = hashlib.sha256()
    owner = {}

    def look_owner(buf):
        if "role" not in owner:
            m = _OWNER_RE.search(buf)
            if m:
                owner["role"] = m.group(1).decode("utf-8", "replace").strip('"')

    def each(buf):
        if find_owner:
            look_owner(buf)
        if on_chunk is not None:
            on_chunk(buf)

    try:
        info = df.inspect_dump(src, on_chunk=each if find_owner or on_chunk is not None else None,
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
    """Owner and role statements of old -> new (streamed, line-complete chunks).

    ``old=None`` finds the dump's owner in the stream itself (the first ``OWNER TO``, as the
    verification pass does): until then the output is held back, so that the role statements a
    cluster dump writes before it are remapped too (an owner appears before any table data, so
    little is held); ``new`` equal to the owner found means nothing to do. ``owner`` says who it was.
    """

    HOLD_LIMIT = 64 << 20  # no OWNER TO in the first 64 MiB of SQL: nothing to remap

    def __init__(self, old, new):
        self.new_name = new
        self.new = _quote_ident(new).encode()
        self.owner = old
        self._re = self._compile(old) if old else None
        self._searching = old is None
        self._held = []
        self._held_size = 0
        self._pending = b""
        self.count = 0

    @staticmethod
    def _compile(old):
        o = re.escape(_quote_ident(old).encode())
        return re.compile(rb"(OWNER TO |OWNER = |CREATE ROLE |ALTER ROLE |DROP ROLE IF EXISTS |DROP ROLE )" + o + rb"(?=[;\s])")

    @property
    def active(self):
        return self._re is not None

    def _sub(self, data):
        if self._re is None or not data:
            return data
        out, n = self._re.subn(lambda m: m.group(1) + self.new, data)
        self.count += n
        return out

    def _search(self, data):
        """Still looking for the owner: hold ``data`` back; release everything once it is known."""
        m = _OWNER_RE.search(data)
        if m is None and self._held_size + len(data) <= self.HOLD_LIMIT:
            self._held.append(data)
            self._held_size += len(data)
            return b""
        self._searching = False
        if m is not None:
            self.owner = m.group(1).decode("utf-8", "replace").strip('"')
            if self.owner != self.new_name:
                self._re = self._compile(self.owner)
        held, self._held, self._held_size = b"".join(self._held) + data, [], 0
        return self._sub(held)

    def feed(self, chunk):
        data = self._pending + chunk if self._pending else chunk
        if not self._searching and self._re is None:
            self._pending = b""
            return data  # the owner is the target's own: nothing to rewrite, no copy of the chunk
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        data = data[:cut]
        if self._searching:
            return self._search(data)
        return self._sub(data)

    def flush(self):
        data, self._pending = self._pending, b""
        if self._searching:
            self._searching = False
            held, self._held, self._held_size = b"".join(self._held) + data, [], 0
            return held
        return self._sub(data)


# What ends, or leaves, the one transaction of a database restore. pg_dump never writes any of it in a
# database dump; a tampered dump could, to commit its part before the checks at the end have run.
_TX_CONTROL = re.compile(rb"(?:COMMIT|END|ROLLBACK|ABORT|BEGIN|START[ \t\r\n]+TRANSACTION|PREPARE[ \t\r\n]+TRANSACTION)\b",
                         re.IGNORECASE)
# The only psql meta-commands in a pg_dump database dump (17.6/16.10/15.14/14.19/13.22 and newer).
ALLOWED_META = (b"\\restrict", b"\\unrestrict")
# SQL-standard function bodies (PG 14+): pg_dump writes `BEGIN ATOMIC`, one statement a line, then `END;`.
_ROUTINE = re.compile(rb"CREATE[ \t]+(?:OR[ \t]+REPLACE[ \t]+)?(?:FUNCTION|PROCEDURE)\b", re.IGNORECASE)
_BEGIN_ATOMIC = re.compile(rb"\bBEGIN[ \t]+ATOMIC\b", re.IGNORECASE)
_NEVER = re.compile(rb"(?!)")


class TransactionGuard(DumpWalker):
    """A streaming scan of a database dump for what would take statements out of the restore's
    transaction: transaction control at the start of any statement (``COMMIT``, ``ROLLBACK``, ``END``,
    ``BEGIN``, ``PREPARE TRANSACTION``...) and any psql meta-command but ``\\restrict``/``\\unrestrict``
    (``\\connect`` opens a new session outside it, ``\\gexec`` runs what a query returns, ``\\i`` reads a
    file no scan saw). Statements are found with the SQL lexer (quotes, dollar quotes, comments), so a
    function body's ``BEGIN ... END`` is never taken for one. ``feed(chunk)`` then ``finish()``."""

    BUFFERED = _NEVER
    EMIT = False

    def __init__(self, limit=5):
        DumpWalker.__init__(self)
        self.findings = []
        self._limit = limit
        self._routine = False     # the open statement is CREATE FUNCTION/PROCEDURE
        self._atomic = False      # inside its SQL-standard body (BEGIN ATOMIC ... END), whose ; end no statement
        self._body_end = False
        self.lexer.on_statement = self._statement_start
        self.lexer.on_meta = self._meta

    def _note(self, line, what):
        if len(self.findings) < self._limit:
            text = line.decode("utf-8", "replace").strip()[:120]
            self.findings.append({"line": self.line_no, "text": text, "what": what})

    def _statement_start(self, line, pos):
        if self._atomic or self._body_end:
            self._body_end = False
            return  # a statement of a BEGIN ATOMIC body (pg_dump writes one a line), or its END
        self._routine = bool(_ROUTINE.match(line, pos))
        if _TX_CONTROL.match(line, pos):
            self._note(line, "transaction control")

    def _meta(self, line, pos):
        word = line[pos:].split(None, 1)[0] if line[pos:].strip() else b"\\"
        if word not in ALLOWED_META:
            self._note(line, "psql meta-command %s" % word.decode("utf-8", "replace"))

    def _sql_line(self, line, starts):
        if starts and line[:1] == b"\\":  # DumpWalker hands over meta-command lines without lexing them
            self._meta(line, 0)
            return
        if self._atomic:
            if line.strip().upper() == b"END;":
                self._atomic, self._body_end = False, True
        elif self._routine and self.lexer.state is None and _BEGIN_ATOMIC.search(line):
            self._atomic = True

    def finish(self):
        DumpWalker.flush(self)
        return self.findings


class LineHold:
    """The last stage before psql: only complete lines go on (the rest waits for its newline), so that
    when a check refuses the dump and psql's input is closed, psql holds no partial line it would run
    at end of input - every byte it has was scanned as part of a whole line."""

    def __init__(self):
        self._pending = b""

    def feed(self, data):
        if not data:
            return b""
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            self._pending += data
            return b""
        if self._pending:
            out, self._pending = self._pending + data[:cut], data[cut:]
            return out
        self._pending = data[cut:]
        return data if cut == len(data) else data[:cut]

    def flush(self):
        data, self._pending = self._pending, b""
        return data


VERIFY_MODES = ("auto", "pass", "stream")


class _RefusedError(Exception):
    """A check of the stream refused the dump; the message says which (raised before the chunk is sent)."""


def _peek_kind(src, compression):
    """Kind of a dump from its first plain chunk (the header), without reading on."""
    reader = df.PlainReader(src, compression)
    head = b""
    try:
        for buf in reader.chunks():
            head = buf[:8192]
            break
    finally:
        reader.close(check=False)
    return df.parse_header(head).get("dump_kind")


def _usable_extensions(container, user, db_name, password):
    """What the target will really load: pg_available_extensions, less those needing a preload it lacks."""
    rows = dx.query(container, user, db_name, "SELECT name FROM pg_available_extensions ORDER BY 1;", password)
    avail = [r[0] for r in rows]
    spl = dx.query(container, user, db_name, "SHOW shared_preload_libraries;", password)
    return compat.usable_extensions({"available_extensions": avail, "shared_preload_libraries": spl[0][0] if spl and spl[0] else ""})


def restore(container, user, db_name, src, *, manifest_path=None, rewrite_search_path=True, owner_remap="auto",
            verify_rows=True, password=None, check_mode=False, verify="auto", vector_portable=False):
    """Load a dump into the target, checked while it streams.

    ``verify``: ``auto`` streams database dumps with every check done on the way (sha256 against the
    manifest, header and versions before the first byte, meta-commands and transaction control in each
    chunk before it is sent, the trailer, the decompressor's exit, the rows against the manifest) and
    sends the COMMIT of their one transaction only when all passed; cluster dumps, which no transaction
    protects, get the separate verification pass first. ``pass`` always runs that pass first; ``stream``
    never (the caller verified the file before anything destructive: the restore role's gate).
    ``vector_portable``: a vector_portable.VectorPortable stage for the extensions the target offers.
    """
    if verify not in VERIFY_MODES:
        raise OpError("verify must be one of %s, not %r." % (", ".join(VERIFY_MODES), verify))
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
    target_major = df.major_of(target_version)
    compression = df.sniff_file(src)
    kind = None if check_mode or verify == "pass" else _peek_kind(src, compression)
    passed = None
    if check_mode or verify == "pass" or (verify == "auto" and kind != "database"):
        passed = verify_dump(src, manifest, target_major)
        kind = passed["dump_kind"]
    result = {"dump_kind": kind, "compression": compression, "target_server_version": target_version,
              "verify_seconds": round(time.monotonic() - t0, 3) if passed else 0.0, "manifest": manifest_path,
              "verification": "pass, then in the stream" if passed else "in the stream"}
    if passed:
        result.update(server_version=passed["server_version"], pg_dump_version=passed["pg_dump_version"],
                      crlf=passed["crlf"])
    if check_mode:
        result.update(changed=False, warnings=warnings, owner_remapped=bool(_remap_role(owner_remap, passed["owner"], user)),
                      msg="Verified %s (%s dump, PostgreSQL %s): it would be restored into %s."
                      % (src, kind, passed["server_version"], container))
        return result
    if kind not in ("cluster", "database"):
        raise OpError("Refusing to restore %s: it does not start like a pg_dump/pg_dumpall SQL dump (no "
                      "`-- PostgreSQL database dump` header). The target was not touched." % src)
    target_ext = _usable_extensions(container, user, db_name if kind == "database" else "postgres", password) \
        if vector_portable else None
    return _stream(container, user, db_name, src, kind=kind, compression=compression, manifest=manifest,
                   result=result, warnings=warnings, rewrite_search_path=rewrite_search_path, owner_remap=owner_remap, verify_rows=verify_rows,
                   password=password, target_major=target_major, known_owner=(passed or {}).get("owner"),
                   owner_known=passed is not None, target_ext=target_ext)


def _remap_role(owner_remap, dump_owner, user):
    """The role to rewrite to ``user``: the dump's own owner (auto), a named one, or None."""
    if owner_remap == "auto":
        return dump_owner if dump_owner and dump_owner != user else None
    if owner_remap in ("never", None, ""):
        return None
    return owner_remap if owner_remap != user else None


class _Checks:
    """What the stream checks on its way to psql; every method raises _RefusedError with the message."""

    def __init__(self, src, kind, *, manifest, target_major, verify_rows, db_name):
        self.src = src
        self.kind = kind
        self.manifest = manifest or {}
        self.target_major = target_major
        self.verify_rows = verify_rows
        self.scanner = df.MetaCommandScanner()
        self.guard = TransactionGuard() if kind == "database" else None
        self.counter = df.CopyRowCounter(db_name if kind == "cluster" else None)
        self.sha = hashlib.sha256() if self.manifest.get("sha256") else None
        self.head = b""
        self.header = None
        self.tail = b""
        self.plain_bytes = 0

    def chunk(self, buf):
        """Every check that can run on this chunk, before it is sent."""
        self.plain_bytes += len(buf)
        if self.header is None:
            self.head += buf[:8192 - len(self.head)]
            if len(self.head) >= 8192 or len(buf) < 8192:
                self._check_header()
        self.tail = (self.tail + buf)[-df.TAIL_BYTES:] if len(buf) < df.TAIL_BYTES else buf[-df.TAIL_BYTES:]
        self.scanner.feed(buf)
        if self.scanner.findings:
            self._dangerous(self.scanner.findings)
        if self.guard is not None:
            self.guard.feed(buf)
            if self.guard.findings:
                self._escapes(self.guard.findings)
        self.counter.feed(buf)

    def _check_header(self):
        self.header = df.parse_header(self.head)
        if self.header["dump_kind"] != self.kind:
            raise _RefusedError("it starts like a %s dump, not the %s dump it was taken for" % (self.header["dump_kind"], self.kind))
        major = df.major_of(self.header["server_version"])
        if self.target_major is not None and major is not None and major > self.target_major:
            raise _RefusedError("it was dumped from PostgreSQL %s but the target server runs PostgreSQL %s; a dump does not load "
                                "into an older major. Restore into an instance with a Postgres %d image"
                                % (self.header["server_version"], self.target_major, major))

    def _dangerous(self, findings):
        first = findings[0]
        raise _RefusedError("it contains psql meta-commands or SQL that run programs on the database host (line %d: %s). A real "
                            "pg_dump never writes these: the file was tampered with" % (first["line"], first["text"]))

    def _escapes(self, findings):
        first = findings[0]
        hint = (" (or it was made with pg_dump --create, which no transaction can restore: dump without --create, as "
                "Immich does)") if "\\connect" in first["what"] else ""
        raise _RefusedError("line %d holds %s (%s), which a pg_dump database dump never holds: it would take statements out "
                            "of the restore's one transaction. The file was tampered with%s"
                            % (first["line"], first["what"], first["text"], hint))

    def end(self):
        """The checks that need the whole stream: nothing was committed yet."""
        if self.header is None:
            self._check_header()
        findings = self.scanner.finish()
        if findings:
            self._dangerous(findings)
        if self.guard is not None and self.guard.finish():
            self._escapes(self.guard.findings)
        if self.sha is not None and self.sha.hexdigest() != self.manifest["sha256"]:
            raise _RefusedError("its sha256 %s differs from the manifest's %s (file damaged or replaced)"
                                % (self.sha.hexdigest(), self.manifest["sha256"]))
        if df.find_trailer(self.tail) != self.kind:
            raise _RefusedError("the dump ends without its completion trailer after %s of SQL: it is truncated (disk full or "
                                "killed job when it was written)" % mb(self.plain_bytes))
        expected = self.manifest.get("rows_by_table")
        if self.verify_rows and expected is not None and self.kind == "database":
            got = self.counter.rows()
            diff = sorted(t for t in set(expected) | set(got) if expected.get(t) != got.get(t))
            if diff:
                raise _RefusedError("its COPY data holds other row counts than the manifest records (%s)"
                                    % ", ".join("%s %s!=%s" % (t, got.get(t), expected.get(t)) for t in diff[:8]))


def _stream(container, user, db_name, src, *, kind, compression, manifest, result, warnings, rewrite_search_path,
            owner_remap, verify_rows, password, target_major, known_owner, owner_known, target_ext):
    one_tx = kind == "database"
    connect_db = db_name if one_tx else "postgres"
    checks = _Checks(src, kind, manifest=manifest, target_major=target_major, verify_rows=verify_rows, db_name=db_name)
    errors = ErrorLog(user)
    rw = SearchPathRewriter() if rewrite_search_path else None
    if owner_known:
        remap = _remap_role(owner_remap, known_owner, user)
        rm = OwnerRemap(remap, user) if remap else None
    elif owner_remap == "auto":
        rm = OwnerRemap(None, user)  # the owner is found in the stream
    else:
        remap = _remap_role(owner_remap, None, user)
        rm = OwnerRemap(remap, user) if remap else None
    vp = VectorPortable(target_ext) if target_ext is not None else None
    hold = LineHold()
    reader = df.PlainReader(src, compression, on_raw=checks.sha.update if checks.sha is not None else None)
    psql = None
    sink = None
    broken = False
    refused = None
    committed = False
    t1 = time.monotonic()

    def send(buf):
        nonlocal psql, sink
        if not buf:
            return
        if psql is None:
            # Started once the header passed its checks: a refused dump never reaches the target.
            psql = dx.Stage("psql", dx.psql_argv(container, user, connect_db, ["-v", "ON_ERROR_STOP=%d" % (1 if one_tx else 0)],
                                                 password=password),
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, password=password, on_line=errors)
            sink = write_all(psql.proc.stdin.fileno())
            if one_tx:
                sink(b"BEGIN;\n")  # the COMMIT is ours too: sent only when every check of the stream passed
        sink(buf)

    def stages(buf, last=False):
        if rw is not None:
            buf = rw.feed(buf) + (rw.flush() if last else b"") if buf or last else buf
        if rm is not None:
            buf = rm.feed(buf) + (rm.flush() if last else b"")
        if vp is not None:
            buf = vp.feed(buf) + (vp.flush() if last else b"")
        out = hold.feed(buf)
        return out + hold.flush() if last else out

    ok = False
    try:
        for plain in reader.chunks():
            checks.chunk(plain)
            send(stages(plain))
        done, reader = reader, None
        try:
            done.close(check=True)
        except df.DumpError as exc:
            raise _RefusedError(str(exc).rstrip(".")) from exc
        checks.end()
        send(stages(b"", last=True))
        if psql is not None and one_tx:
            sink(b"\nCOMMIT;\n")
            committed = True
        ok = True
    except _RefusedError as exc:
        refused = str(exc)
    except BrokenPipeError:
        broken = True  # psql stopped (ON_ERROR_STOP): its error says why; nothing was committed
    finally:
        if reader is not None:
            reader.close(check=False)
        if psql is not None:
            try:
                psql.proc.stdin.close()  # end of input without COMMIT: the server rolls the transaction back
            except OSError:
                pass
    rc = psql.wait() if psql is not None else 0
    seconds = time.monotonic() - t1
    header = checks.header or {}
    result.update(seconds=round(seconds, 3), lines_rewritten=rw.count if rw is not None else 0,
                  server_version=result.get("server_version") or header.get("server_version"),
                  pg_dump_version=result.get("pg_dump_version") or header.get("pg_dump_version"),
                  crlf=result.get("crlf", b"\r\n" in checks.head), owner_remapped=bool(rm is not None and rm.active),
                  owner_remap_count=rm.count if rm is not None else 0, plain_bytes=checks.plain_bytes,
                  errors={"benign": errors.benign, "fatal": errors.fatal, "fatal_count": errors.fatal_count},
                  single_transaction=one_tx)
    if vp is not None:
        result["vector_portable"] = vp.counts()
        warnings.extend(vp.warnings)
        result["portable_check"] = {"name": "vector-portable restore", "ok": True, "skipped": False,
                                    "detail": " ".join([vp.summary()] + vp.warnings)}
    result["warnings"] = warnings
    if refused is not None:
        if psql is None:
            state = "Nothing was sent to it: the target was not touched."
        elif one_tx:
            state = ("Its one transaction was never committed: psql's input ended without the COMMIT, so the server rolled "
                     "it back and the target database is as it was.")
        else:
            state = ("A cluster dump is not restored in one transaction: what went before is in the target, which is "
                     "incomplete: reset it (down -v, remove DB_DATA_LOCATION, create, start the DB) before trying again.")
        raise OpError("Refusing to restore %s: %s. %s Use another backup set or dump." % (src, refused, state), **result)
    if rc != 0 or broken or errors.fatal_count or not ok:
        detail = "; ".join(errors.fatal[:5]) or (psql.stderr.strip()[-800:] if psql is not None else "") or "psql exited %s" % rc
        hint = ""
        if 'type "earth" does not exist' in detail and not rewrite_search_path:
            hint = " This is the earthdistance search_path problem: restore with rewrite_search_path=true."
        state = ("Nothing was committed (one transaction, rolled back): the target database is as it was before."
                 if one_tx else "The target database is incomplete: reset it (down -v, remove DB_DATA_LOCATION, create, "
                 "start the DB) before trying again.")
        if one_tx and committed and rc == 0 and errors.fatal_count:
            state = "The dump's own settings let psql go on after an error; the COMMIT of an aborted transaction rolls back."
        raise OpError("The restore into %s failed (%d error(s)): %s.%s %s"
                      % (container, max(errors.fatal_count, 1), detail, hint, state), **result)
    t2 = time.monotonic()
    rows = dx.row_counts(container, user, db_name, password)
    result.update(rows_by_table=rows, count_seconds=round(time.monotonic() - t2, 3))
    if one_tx:
        result["stream_rows_by_table"] = checks.counter.rows()
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
    result.update(changed=True, msg="Restored %s into %s in %.1fs (%d tables, %d rows%s)."
                  % (os.path.basename(src), container, seconds, len(rows), sum(rows.values()),
                     "; " + vp.summary() if vp is not None and vp.changed else ""))
    return result
