# -*- coding: utf-8 -*-
# Copyright (c) homelab.immich contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a dump is: compression (by magic bytes), kind and versions (header), completeness (trailer)
and whether it holds psql meta-commands that would run programs. Everything streams."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shutil
import subprocess
import sys
import threading

from ansible_collections.homelab.immich.plugins.module_utils._fsio import CHUNK, iter_chunks, widen_pipe

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

CLUSTER_HEADER = b"-- PostgreSQL database cluster dump"
DATABASE_HEADER = b"-- PostgreSQL database dump"
CLUSTER_TRAILER = b"-- PostgreSQL database cluster dump complete"
DATABASE_TRAILER = b"-- PostgreSQL database dump complete"
TAIL_BYTES = 4096  # the trailer must be within the last few lines (\unrestrict <key> may follow)

_SERVER_RE = re.compile(rb"^-- Dumped from database version (\S+)", re.M)
_PGDUMP_RE = re.compile(rb"^-- Dumped by pg_dump(?:all)? version (\S+)", re.M)

ZSTD_INSTALL = "install it with `apt-get install zstd` (Debian/Ubuntu) or `dnf install zstd`"


class DumpError(Exception):
    """A dump that cannot be used; the message says why and what to do."""


def detect_compression(head):
    """'gzip', 'zstd' or 'none' from the first bytes of a file (never from its name)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def sniff_file(path):
    with open(path, "rb") as fh:
        return detect_compression(fh.read(4))


def major_of(version):
    """'15.14 (Debian 15.14-1.pgdg120+1)' -> 15; '9.6.24' -> 9; None when unknown."""
    if not version:
        return None
    m = re.match(r"(\d+)(?:\.(\d+))?", version)
    if not m:
        return None
    return int(m.group(1))  # 9.x majors compare fine by their first number here


def parse_header(head):
    """Kind and versions from the first KiBs of the plain dump (CRLF or LF)."""
    head = head.replace(b"\r\n", b"\n")
    kind = None
    for raw in head.split(b"\n")[:20]:
        line = raw.strip()
        if line == CLUSTER_HEADER:
            kind = "cluster"
            break
        if line == DATABASE_HEADER:
            kind = "database"
            break
    server = _SERVER_RE.search(head)
    pg_dump = _PGDUMP_RE.search(head)
    return {
        "dump_kind": kind,
        "server_version": server.group(1).decode("ascii", "replace") if server else None,
        "pg_dump_version": pg_dump.group(1).decode("ascii", "replace") if pg_dump else None,
    }


def find_trailer(tail):
    """The completion trailer found in the last lines of the plain dump, or None."""
    lines = [ln.strip() for ln in tail.replace(b"\r", b"").split(b"\n")]
    lines = [ln for ln in lines if ln]
    for line in reversed(lines[-8:]):
        if line == CLUSTER_TRAILER:
            return "cluster"
        if line == DATABASE_TRAILER:
            return "database"
        if line.startswith(b"\\unrestrict ") or line == b"--":
            continue
        return None
    return None


_COPY_HEADER_RE = re.compile(rb'^COPY (?:public\.)?("(?:[^"]|"")+"|[^ (]+) [^\n]*FROM stdin;$')
_CONNECT_RE = re.compile(rb'^\\connect (-reuse-previous=on )?("(?:[^"]|"")*"|\S+)')
_CONNSTR_DBNAME_RE = re.compile(rb"^dbname=(?:'((?:[^'\\]|\\.)*)'|(\S+))$")


def parse_connect(line):
    """The database name of a ``\\connect`` line as pg_dump/pg_dumpall write it, or None.

    Three shapes (appendPsqlMetaConnect): ``\\connect immich``; an identifier that needs quoting,
    ``\\connect "Immich"`` (``""`` inside); and a name with other characters,
    ``\\connect -reuse-previous=on "dbname='my db'"`` (a conninfo value: ``\\'`` and ``\\\\`` inside).
    """
    m = _CONNECT_RE.match(line.rstrip(b"\r"))
    if not m:
        return None
    word = m.group(2)
    if word.startswith(b'"'):
        word = word[1:-1].replace(b'""', b'"')
    if m.group(1):
        conn = _CONNSTR_DBNAME_RE.match(word)
        if not conn:
            return None
        word = re.sub(rb"\\(.)", rb"\1", conn.group(1)) if conn.group(1) is not None else conn.group(2)
    return word.decode("utf-8", "replace")


_SKIPPED = "\x00skipped"


class CopyRowCounter:
    """Exact per-table row counts of a plain dump, read from its own COPY blocks as it streams by.

    Counting the stream (not the live database) gives the rows the dump really holds, from the
    dump's own snapshot, at no extra query: COPY text rows are one line each (newlines inside
    values are escaped), a block ends with a line holding only backslash-dot. Only tables of the
    public schema of `database` are kept (for a cluster dump: the blocks after its ``\\connect``;
    a database dump holds one database). C-speed per chunk: find() and count(), no per-line Python.
    """

    def __init__(self, database=None):
        self.database = database
        self.current_db = None
        self.counts = {}
        self._table = None
        self._carry = b""
        self._line_start = True  # does the next chunk begin a line?

    def feed(self, buf):
        if not buf:
            return
        data = self._carry + buf if self._carry else buf
        self._carry = b""
        line_start = self._line_start
        self._line_start = False
        pos = 0
        end = len(data)
        while pos < end:
            if self._table is not None:
                term = data.find(b"\\.\n", pos)
                while term >= 0 and not (data[term - 1:term] == b"\n" if term else line_start):
                    term = data.find(b"\\.\n", term + 1)  # an escaped backslash before a dot, not the end
                if term < 0:
                    cut = max(pos, end - 2)  # the end-of-data line may straddle the next chunk
                    self.counts[self._table] += data.count(b"\n", pos, cut)
                    self._carry = data[cut:]
                    self._line_start = data[cut - 1:cut] == b"\n" if cut else line_start
                    return
                self.counts[self._table] += data.count(b"\n", pos, term)
                self._table = None
                pos = term + 3
                continue
            frm = pos - 1 if pos else 0
            hits = [i for i in (data.find(b"\nCOPY ", frm), data.find(b"\n\\connect ", frm)) if i >= 0]
            if pos == 0 and line_start and (data.startswith(b"COPY ") or data.startswith(b"\\connect ")):
                hits.append(-1)
            if not hits:
                cut = max(pos, end - 10)  # a header may straddle the next chunk
                self._carry = data[cut:]
                self._line_start = cut == pos and (pos == 0 and line_start or pos > 0 and data[pos - 1:pos] == b"\n")
                return
            start = min(hits) + 1
            nl = data.find(b"\n", start)
            if nl < 0:
                self._carry = b"\n" + data[start:]
                return
            line = data[start:nl]
            pos = nl + 1
            if line.startswith(b"\\connect "):
                name = parse_connect(line)
                self.current_db = name if name is not None else "\x00unparsed"  # never counted as ours
                continue
            header = _COPY_HEADER_RE.match(line)
            if header:
                table = _SKIPPED  # another schema or database: its data is skipped, not counted
                if line.startswith((b"COPY public.", b'COPY "public".')) and self._wanted():
                    name = header.group(1)
                    if name.startswith(b'"'):
                        name = name[1:-1].replace(b'""', b'"')
                    table = name.decode("utf-8", "replace")
                self._table = table
                self.counts.setdefault(table, 0)
                pos = nl + 1  # the rows start here; the terminator search starts at the newline before
        self._line_start = data[end - 1:end] == b"\n"  # consumed up to a line end (pos == end)

    def _wanted(self):
        return self.database is None or self.current_db is None or self.current_db == self.database

    def rows(self):
        return dict(sorted((t, n) for t, n in self.counts.items() if t != _SKIPPED))


# psql meta-commands and SQL that run programs on the database host. A backslash only starts a
# meta-command when it is not itself escaped (odd run of backslashes). COPY data (between
# `COPY ... FROM stdin;` and `\.`) goes to the server verbatim and is skipped.
_SCAN_RE = re.compile(
    rb"(?P<bad>(?<!\\)(?:\\\\)*(?:\\!"
    rb"|\\(?:o|out|g|gx|w|write)[ \t]*\|"
    rb"|\\copy\b[^\n]*\b[Pp][Rr][Oo][Gg][Rr][Aa][Mm]\b))"
    rb"|(?P<sql>\b(?:[Ff][Rr][Oo][Mm]|[Tt][Oo])[ \t\r\n]+[Pp][Rr][Oo][Gg][Rr][Aa][Mm][ \t\r\n]+'"
    rb"[^\n]*)",
)
_COPY_LINE_RE = re.compile(rb"COPY [^\n]* FROM stdin;\r?\n")
_END_OF_DATA = (b"\n\\.\n", b"\n\\.\r\n")


class MetaCommandScanner:
    """Streaming scan for dangerous meta-commands; feed chunks, then ``finish()``.

    COPY blocks (almost all of a dump's bytes) are skipped with C-speed searches for their header
    and ``\\.`` lines; only the SQL between them goes through the regular expression.
    """

    def __init__(self, limit=5):
        self.findings = []
        self._limit = limit
        self._pending = b""
        self._in_copy = False
        self._line = 1

    def _end_of_copy(self, data, pos):
        """Index just after the ``\\.`` line ending the COPY block that runs at ``pos``, or -1."""
        if pos == 0:
            for end in (b"\\.\n", b"\\.\r\n"):
                if data.startswith(end):
                    return len(end)
        best = None
        for end in _END_OF_DATA:
            i = data.find(end, max(pos - 1, 0))
            if i >= 0 and (best is None or i < best[0]):
                best = (i, len(end))
        return best[0] + best[1] if best else -1

    def _next_copy(self, data, pos):
        """(start, end) of the next ``COPY ... FROM stdin;`` line at or after ``pos``, or None."""
        m = _COPY_LINE_RE.match(data) if pos == 0 else None
        if m:
            return 0, m.end()
        i = max(pos - 1, 0)
        while True:
            i = data.find(b"\nCOPY ", i)
            if i < 0:
                return None
            m = _COPY_LINE_RE.match(data, i + 1)
            if m:
                return i + 1, m.end()
            i += 1

    def _scan_sql(self, data, start, end):
        for m in _SCAN_RE.finditer(data, start, end):
            if len(self.findings) >= self._limit:
                return
            line = self._line + data.count(b"\n", 0, m.start())
            text = data[data.rfind(b"\n", 0, m.start()) + 1:].split(b"\n", 1)[0]
            self.findings.append({"line": line, "text": text[:120].decode("utf-8", "replace").rstrip()})

    def _scan(self, data):
        pos = 0
        size = len(data)
        while pos < size:
            if self._in_copy:
                pos = self._end_of_copy(data, pos)
                if pos < 0:
                    break
                self._in_copy = False
                continue
            nxt = self._next_copy(data, pos)
            self._scan_sql(data, pos, nxt[0] if nxt else size)
            if nxt is None:
                break
            pos = nxt[1]
            self._in_copy = True
        self._line += data.count(b"\n")

    def feed(self, chunk):
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._pending += chunk
            return
        data = self._pending + chunk[:cut + 1]
        self._pending = chunk[cut + 1:]
        self._scan(data)

    def finish(self):
        if self._pending:
            self._scan(self._pending)
            self._pending = b""
        return self.findings


# gzip is inflated by zlib in a child Python (the interpreter running us: nothing to install).
# zlib inflates about 1.8x faster than the gzip binary here, checks each member's CRC32 and size,
# and a child process keeps it on its own core. Exit 1 with the reason on a bad or cut stream.
_INFLATE_CHILD = r"""
import os, sys, zlib
CHUNK = 1 << 20
inp, out = sys.stdin.fileno(), sys.stdout.fileno()
def write(buf):
    view = memoryview(buf)
    while view:
        view = view[os.write(out, view):]
inflater = None
try:
    for raw in iter(lambda: os.read(inp, CHUNK), b""):
        data = raw
        while data:
            if inflater is None:
                inflater = zlib.decompressobj(31)
            buf = inflater.decompress(data, CHUNK)
            write(buf)
            if inflater.eof:
                data, inflater = inflater.unused_data, None
                continue
            data = inflater.unconsumed_tail
            while not data and len(buf) == CHUNK:
                buf = inflater.decompress(b"", CHUNK)
                write(buf)
    if inflater is not None:
        raise zlib.error("unexpected end of file")
except zlib.error as exc:
    sys.stderr.write("gzip: %s\n" % exc)
    sys.exit(1)
except BrokenPipeError:
    sys.exit(141)
"""


def decompressor_argv(compression):
    """argv of a decompressing filter (stdin -> stdout), or [] for plain."""
    if compression == "gzip":
        return [sys.executable or "python3", "-I", "-c", _INFLATE_CHILD]
    if compression == "zstd":
        if not shutil.which("zstd"):
            raise DumpError("This dump is zstd-compressed but the `zstd` binary is missing on this host: %s." % ZSTD_INSTALL)
        return ["zstd", "-dc", "-q"]
    return []


class PlainReader:
    """Stream the plain SQL of a dump file: ``chunks()``, then ``close()`` checks the decompressor.

    gzip and zstd are decompressed in a child process (a second core for free, see
    ``decompressor_argv``); plain files are read directly. Only a few ``CHUNK``s are ever held.
    """

    def __init__(self, path, compression=None, on_raw=None):
        self.path = path
        self.compression = compression or sniff_file(path)
        self._on_raw = on_raw
        self._proc = None
        self._fh = open(path, "rb")
        argv = decompressor_argv(self.compression)
        if argv:
            if on_raw is None:
                self._proc = subprocess.Popen(argv, stdin=self._fh, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            else:
                # The caller hashes the compressed bytes as they go by: we feed the decompressor.
                self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                widen_pipe(self._proc.stdin.fileno())
                self._feeder = threading.Thread(target=self._feed_raw, daemon=True)
                self._feeder.start()
            self._out = self._proc.stdout
            widen_pipe(self._out.fileno())

    def _raw_chunks(self):
        for buf in iter(lambda: self._fh.read(CHUNK), b""):
            if self._on_raw is not None:
                self._on_raw(buf)
            yield buf

    def _feed_raw(self):
        try:
            for buf in self._raw_chunks():
                self._proc.stdin.write(buf)
        except (BrokenPipeError, ValueError, OSError):
            pass
        finally:
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

    def chunks(self):
        """The plain SQL, in pieces of ``CHUNK`` bytes (the last one shorter)."""
        if self._proc is not None:
            yield from iter_chunks(self._out.fileno())
        else:
            yield from self._raw_chunks()

    def close(self, check=True):
        """Close; raise DumpError when the decompressor failed (corrupt or truncated stream)."""
        if self._proc is None:
            self._fh.close()
            return
        if not check:
            try:
                self._proc.kill()
            except OSError:
                pass
        self._out.close()
        err = self._proc.stderr.read().decode("utf-8", "replace").strip()
        self._proc.stderr.close()
        rc = self._proc.wait()
        if self._on_raw is not None:
            self._feeder.join()
        self._fh.close()
        if check and rc != 0:
            raise DumpError("The %s stream of %s is corrupt or truncated (%s exited %s: %s)."
                            % (self.compression, self.path, "decompressor", rc, err[-300:]))


def inspect_dump(path, on_chunk=None, compression=None, on_raw=None, scan=True):
    """One streaming pass over a dump: compression, header, trailer, meta-commands, plain size.

    ``on_chunk(plain_bytes)`` sees every plain chunk (a rewrite counter, ...); ``on_raw`` every
    compressed byte (sha256). Raises DumpError when the file cannot be decompressed.
    """
    reader = PlainReader(path, compression, on_raw=on_raw)
    scanner = MetaCommandScanner() if scan else None
    head = b""
    tail = b""
    plain_bytes = 0
    ok = False
    try:
        for buf in reader.chunks():
            plain_bytes += len(buf)
            if len(head) < 8192:
                head += buf[:8192 - len(head)]
            tail = (tail + buf)[-TAIL_BYTES:] if len(buf) < TAIL_BYTES else buf[-TAIL_BYTES:]
            if scanner is not None:
                scanner.feed(buf)
            if on_chunk is not None:
                on_chunk(buf)
        ok = True
    finally:
        reader.close(check=ok)
    info = parse_header(head)
    info.update({
        "compression": reader.compression,
        "plain_bytes": plain_bytes,
        "trailer": find_trailer(tail),
        "crlf": b"\r\n" in head,
        "dangerous": scanner.finish() if scanner is not None else [],
    })
    return info
