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

CHUNK = 1 << 20

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
    major = int(m.group(1))
    return major if major >= 10 else major  # 9.x majors compare fine by their first number here


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
_CONNECT_RE = re.compile(rb"""^\\connect (?:-reuse-previous=on )?(?:"dbname='((?:[^']|'')*)'"|'((?:[^']|'')*)'|(\S+))""")


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
            connect = _CONNECT_RE.match(line)
            if connect:
                name = next(g for g in connect.groups() if g is not None)
                self.current_db = name.replace(b"''", b"'").decode("utf-8", "replace")
                continue
            header = _COPY_HEADER_RE.match(line)
            if header and line.startswith((b"COPY public.", b'COPY "public".')) and self._wanted():
                name = header.group(1)
                if name.startswith(b'"'):
                    name = name[1:-1].replace(b'""', b'"')
                self._table = name.decode("utf-8", "replace")
                self.counts.setdefault(self._table, 0)
                pos = nl + 1  # the rows start here; the terminator search starts at the newline before
        self._line_start = data[end - 1:end] == b"\n"  # consumed up to a line end (pos == end)

    def _wanted(self):
        return self.database is None or self.current_db is None or self.current_db == self.database

    def rows(self):
        return dict(sorted(self.counts.items()))


# psql meta-commands and SQL that run programs on the database host. A backslash only starts a
# meta-command when it is not itself escaped (odd run of backslashes). COPY data (between
# `COPY ... FROM stdin;` and `\.`) goes to the server verbatim and is skipped.
_SCAN_RE = re.compile(
    rb"(?P<copy>^COPY [^\n]* FROM stdin;\r?$)"
    rb"|(?P<end>^\\\.\r?$)"
    rb"|(?P<bad>(?<!\\)(?:\\\\)*(?:\\!"
    rb"|\\(?:o|out|g|gx|w|write)[ \t]*\|"
    rb"|\\copy\b[^\n]*\b[Pp][Rr][Oo][Gg][Rr][Aa][Mm]\b))"
    rb"|(?P<sql>\b(?:[Ff][Rr][Oo][Mm]|[Tt][Oo])[ \t\r\n]+[Pp][Rr][Oo][Gg][Rr][Aa][Mm][ \t\r\n]+'"
    rb"[^\n]*)",
    re.M,
)


class MetaCommandScanner:
    """Streaming scan for dangerous meta-commands; feed chunks, then ``finish()``."""

    def __init__(self, limit=5):
        self.findings = []
        self._limit = limit
        self._pending = b""
        self._in_copy = False
        self._line = 1

    @staticmethod
    def _looks_clean(data):
        # Fast path (C-speed substring tests): nothing that could start a dangerous command.
        return b"\\!" not in data and b"|" not in data and b"program" not in data.lower()

    def _track_copy_state(self, data):
        """In COPY data at the end of this block? Found from the last COPY / `\\.` line."""
        data = b"\n" + data
        end = max(data.rfind(b"\n\\.\n"), data.rfind(b"\n\\.\r\n"))
        pos = len(data)
        while True:
            pos = data.rfind(b"\nCOPY ", 0, pos)
            if pos < 0 or pos < end:
                break
            eol = data.find(b"\n", pos + 1)
            line = data[pos + 1:eol if eol >= 0 else len(data)].rstrip(b"\r")
            if line.endswith(b" FROM stdin;"):
                self._in_copy = True
                return
        if end >= 0:
            self._in_copy = False

    def _scan(self, data):
        if self._looks_clean(data):
            self._track_copy_state(data)
            self._line += data.count(b"\n")
            return
        pos = 0
        for m in _SCAN_RE.finditer(data):
            kind = m.lastgroup
            if kind == "copy":
                self._in_copy = True
            elif kind == "end":
                self._in_copy = False
            elif not self._in_copy and len(self.findings) < self._limit:
                line = self._line + data.count(b"\n", pos, m.start())
                text = data[data.rfind(b"\n", 0, m.start()) + 1:].split(b"\n", 1)[0]
                self.findings.append({"line": line, "text": text[:120].decode("utf-8", "replace").rstrip()})
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


def decompressor_argv(compression):
    """argv of a decompressing filter (stdin -> stdout), or None for plain."""
    if compression == "gzip":
        return [shutil.which("pigz") or "gzip", "-dc"] if shutil.which("gzip") or shutil.which("pigz") else None
    if compression == "zstd":
        if not shutil.which("zstd"):
            raise DumpError("This dump is zstd-compressed but the `zstd` binary is missing on this host: %s." % ZSTD_INSTALL)
        return ["zstd", "-dc", "-q"]
    return []


class PlainReader:
    """Stream the plain SQL of a dump file: ``read()`` chunks, ``close()`` checks the decompressor.

    gzip/zstd are decompressed by their C binaries in a child process (a second core for free);
    plain files are read directly. Only ``CHUNK`` bytes are ever held.
    """

    def __init__(self, path, compression=None, on_raw=None):
        self.path = path
        self.compression = compression or sniff_file(path)
        self._fh = open(path, "rb")
        self._proc = None
        self._on_raw = on_raw
        argv = decompressor_argv(self.compression)
        if argv is None:
            self._fh.close()
            raise DumpError("This dump is gzip-compressed but neither `gzip` nor `pigz` is installed.")
        if argv:
            if on_raw is None:
                self._proc = subprocess.Popen(argv, stdin=self._fh, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            else:
                # The caller hashes the compressed bytes as they go by: we feed the decompressor.
                import threading  # noqa: PLC0415
                self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                self._feeder = threading.Thread(target=self._feed_raw, daemon=True)
                self._feeder.start()
            self._out = self._proc.stdout

    def _feed_raw(self):
        try:
            while True:
                buf = self._fh.read(CHUNK)
                if not buf:
                    break
                self._on_raw(buf)
                self._proc.stdin.write(buf)
        except (BrokenPipeError, ValueError, OSError):
            pass
        finally:
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass

    def read(self, n=CHUNK):
        if self._proc is None:
            buf = self._fh.read(n)
            if buf and self._on_raw is not None:
                self._on_raw(buf)
            return buf
        return self._out.read1(n) if hasattr(self._out, "read1") else self._out.read(n)

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
        while True:
            buf = reader.read(CHUNK)
            if not buf:
                break
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
