# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A restore stream that loads a dump into a Postgres without the dump's vector extension (opt-in,
``immich_restore_vector_portable: true``).

Immich keeps its CLIP and face embeddings in ``smart_search.embedding`` and ``face_search.embedding``,
typed by the vector extension of the instance: pgvector's ``public.vector(512)`` (also what VectorChord
indexes), or pgvecto.rs's ``vectors.vector(512)``; the indexes ``clip_index`` / ``face_index`` use the
extension's access method (vchordrq, hnsw/ivfflat, vectors). A dump of such a database does not load
into an image without that extension: psql stops at ``CREATE EXTENSION vchord``. When the target lacks
it, this transform rewrites, as the stream goes by:

- embedding columns whose type the target cannot provide -> ``real[]``, and their COPY values from
  the vector text form ``[0.1,0.2]`` to the array form ``{0.1,0.2}`` (only those columns of those
  tables: positions come from the COPY header);
- vector indexes whose access method the target lacks, or that index a column made ``real[]``: left out;
- ``CREATE EXTENSION`` of a missing extension, and its ``COMMENT ON EXTENSION`` / ``ALTER EXTENSION``:
  left out.

Nothing else changes: a dump without vector parts, or one whose extensions the target has, passes
through byte for byte. The way back is Immich's own: at its next start the server creates the
vector extension the image has, finds ``clip_index`` / ``face_index`` missing, and re-creates them,
casting ``embedding`` through ``real[]`` to the extension's type (DatabaseRepository.reindexVectors).
So the restored dump stays ``real[]`` until Immich starts on it. Immich reads the dimension from the
column type and assumes 512 for a ``real[]`` column: ``warnings`` names any column of another size.

``neutral=True`` (or ``target_extensions=None``) makes the dump depend on no vector extension at all.

The SQL between COPY blocks is followed with a small lexer (quotes, dollar quotes, comments), so a
statement is only ever recognised where one starts, never inside a function body. COPY data of other
tables is passed on with substring searches, as dump_format's scanners do. Line-complete chunks in,
line-complete chunks out (a missing final newline is kept); CRLF dumps (taken through a TTY) work.
Stdlib only.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

VECTOR_EXTENSIONS = ("vector", "vchord", "vectors")
# Index access methods and the extension that provides each.
ACCESS_METHODS = {b"hnsw": "vector", b"ivfflat": "vector", b"vchordrq": "vchord", b"vchordg": "vchord", b"vectors": "vectors"}
# An extension that cannot exist without another (VectorChord indexes pgvector's type).
REQUIRES = {"vchord": ("vector",)}
IMMICH_DIMENSIONS = 512
# The tables whose vector indexes (clip_index, face_index) Immich re-creates at start (VECTOR_INDEX_TABLES).
IMMICH_VECTOR_TABLES = ("smart_search", "face_search")

_IDENT = rb'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
# A column type of a vector extension: [schema.]vector(N) (pgvecto.rs's also as vecf16 ... are not Immich's).
_VECTOR_TYPE = re.compile(rb'(?:(?P<schema>' + _IDENT + rb')\.)?vector\((?P<dims>\d+)\)')
_COLUMN_LINE = re.compile(rb'^(?P<indent>[ \t]+)(?P<name>' + _IDENT + rb')[ \t]+(?P<type>(?:' + _IDENT + rb'\.)?vector\(\d+\))')
_CREATE_TABLE = re.compile(rb'^CREATE (?:UNLOGGED )?TABLE (?:IF NOT EXISTS )?(?P<table>(?:' + _IDENT + rb'\.)?' + _IDENT + rb')')
_CREATE_INDEX = re.compile(rb'^CREATE (?:UNIQUE )?INDEX (?:CONCURRENTLY )?(?:IF NOT EXISTS )?(?P<name>' + _IDENT + rb')? ?ON (?:ONLY )?'
                           rb'(?P<table>(?:' + _IDENT + rb'\.)?' + _IDENT + rb') USING (?P<am>' + _IDENT + rb')')
_EXTENSION_STMT = re.compile(rb'^(?:CREATE EXTENSION (?:IF NOT EXISTS )?|COMMENT ON EXTENSION |ALTER EXTENSION |DROP EXTENSION (?:IF EXISTS )?)'
                             rb'(?P<name>' + _IDENT + rb')(?: WITH SCHEMA (?P<schema>' + _IDENT + rb'))?')
_COPY_HEADER = re.compile(rb'^COPY (?P<table>(?:' + _IDENT + rb'\.)?' + _IDENT + rb') \((?P<columns>[^)]*)\) FROM stdin;\r?\n?$')
_COPY_ANY = re.compile(rb'^COPY [^\n]* FROM stdin;\r?\n?$')

# What starts a statement this module may have to rewrite (everything else is passed on as it comes).
_BUFFERED = re.compile(rb'^(?:CREATE (?:UNLOGGED )?TABLE |CREATE (?:UNIQUE )?INDEX |CREATE EXTENSION |COMMENT ON EXTENSION |ALTER EXTENSION )')


def unquote(ident):
    """SQL identifier bytes -> str: quotes removed ("a""b" -> a"b), unquoted names folded to lower case."""
    if ident.startswith(b'"'):
        return ident[1:-1].replace(b'""', b'"').decode("utf-8", "replace")
    return ident.decode("utf-8", "replace").lower()


def quote_ident(name):
    """An identifier as SQL: bare when it is a plain lower-case name, else double-quoted."""
    if re.match(r"^[a-z_][a-z0-9_]*$", name):
        return name
    return '"%s"' % name.replace('"', '""')


def split_qualified(name):
    """b'public."face_search"' -> ('public', 'face_search'); an unqualified name gets schema None."""
    m = re.match(rb'^(?:(' + _IDENT + rb')\.)?(' + _IDENT + rb')$', name)
    if not m:
        return None, name.decode("utf-8", "replace")
    return (unquote(m.group(1)) if m.group(1) else None), unquote(m.group(2))


def split_columns(text):
    """The column list of a COPY header: b'"assetId", embedding' -> ['assetId', 'embedding']."""
    return [unquote(m.group(0)) for m in re.finditer(_IDENT, text)]


def type_provider(schema, ext_schemas):
    """The extension behind ``<schema>.vector``: the one the dump created in that schema
    (``ext_schemas``: extension -> schema), else pgvector for public (and unqualified), pgvecto.rs
    for its own ``vectors`` schema (very old pgvecto.rs installs lived in public)."""
    for ext in ("vectors", "vector"):
        if ext_schemas.get(ext) == schema:
            return ext
    return "vectors" if schema == "vectors" else "vector"


# -- the SQL lexer -------------------------------------------------------------------------------

_TOP = re.compile(rb"""--|/\*|;|\\|(?<![A-Za-z0-9_$])[Ee]'|'|"|(?<![A-Za-z0-9_$])\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$""")
_E_STRING_END = re.compile(rb"(?:[^'\\]|\\.)*'", re.S)
_COMMENT_TOKENS = re.compile(rb"/\*|\*/")


class SqlLexer:
    """Where a line of SQL leaves us: at top level or inside a string, a quoted identifier, a dollar
    quote or a block comment; and whether a statement is open (text since the last top-level ``;``).

    Only what decides those two things is lexed; ``''`` inside a string lexes as close-then-open,
    which leaves the same state. A backslash at top level starts a psql meta-command that runs to the
    end of the line (as psql's own lexer has it). Two optional hooks, for scanners:
    ``on_statement(line, pos)`` where a statement begins (its first character), ``on_meta(line, pos)``
    where a meta-command begins.
    """

    def __init__(self):
        self.state = None        # None (top), b"'", b"E'", b'"', b"/*", or a dollar tag b"$x$"
        self.depth = 0           # nesting of block comments
        self.open = False        # a statement has started and not ended
        self.on_statement = None
        self.on_meta = None

    @property
    def at_statement_start(self):
        return self.state is None and not self.open

    def _begin(self, line, start, stop):
        """Text at top level in line[start:stop]: a statement opens at its first character."""
        if self.open:
            return
        seg = line[start:stop]
        if not seg.strip():
            return
        self.open = True
        if self.on_statement is not None:
            self.on_statement(line, start + len(seg) - len(seg.lstrip()))

    def feed_line(self, line):
        """Advance over one line (bytes, with its newline); returns True when a statement ended in it."""
        ended = False
        pos = 0
        end = len(line)
        while pos < end:
            st = self.state
            if st is None:
                m = _TOP.search(line, pos)
                if m is None:
                    self._begin(line, pos, end)
                    return ended
                self._begin(line, pos, m.start())
                tok = m.group(0)
                pos = m.end()
                if tok == b";":
                    self.open = False
                    ended = True
                elif tok == b"--":
                    return ended
                elif tok == b"/*":
                    self.state, self.depth = b"/*", 1
                elif tok == b"\\":
                    if self.on_meta is not None:
                        self.on_meta(line, m.start())
                    # The rest of the line is the meta-command's; the \g family sends what came before it, so
                    # the next text is taken for a new statement (for a scanner, the careful reading).
                    self.open = False
                    return ended
                else:
                    self._begin(line, m.start(), m.end())
                    self.state = b"E'" if tok[-1:] == b"'" and len(tok) == 2 else tok
            elif st in (b"'", b'"'):
                i = line.find(st, pos)
                if i < 0:
                    return ended
                self.state, pos = None, i + 1
            elif st == b"E'":
                m = _E_STRING_END.match(line, pos)
                if m is None:
                    return ended
                self.state, pos = None, m.end()
            elif st == b"/*":
                m = _COMMENT_TOKENS.search(line, pos)
                if m is None:
                    return ended
                pos = m.end()
                self.depth += 1 if m.group(0) == b"/*" else -1
                if self.depth == 0:
                    self.state = None
            else:  # dollar quote: only the same tag ends it
                i = line.find(st, pos)
                if i < 0:
                    return ended
                self.state, pos = None, i + len(st)
        return ended


def _is_end_of_data(line):
    return line in (b"\\.\n", b"\\.\r\n", b"\\.")


class DumpWalker:
    """Line-complete streaming over a plain dump: SQL lines through the lexer, COPY blocks skipped at
    C speed (or handed line by line to a row transform). Subclasses decide what a statement becomes.

    ``feed(chunk)`` returns the output for the complete lines seen so far; ``flush()`` the rest.
    Hooks: ``_statement(first_line, data)`` for statements matched by ``BUFFERED`` (returns the bytes
    to emit), ``_sql_line(line, starts)`` for every other SQL line, ``_copy(header)`` returns a row
    transform (bytes line -> bytes line) or None to pass the block on untouched.
    """

    BUFFERED = _BUFFERED
    EMIT = True  # False: only look (a scanner), return nothing and copy nothing

    def __init__(self):
        self.lexer = SqlLexer()
        self.line_no = 0
        self._pending = b""
        self._stmt = None          # lines of a buffered statement
        self._copy_rows = None     # row transform of the COPY block we are in
        self._in_copy = False

    # -- hooks ----------------------------------------------------------------------------------
    def _statement(self, first_line, data):
        return data

    def _sql_line(self, line, starts):
        return None

    def _copy(self, header):
        return None

    # -- streaming ------------------------------------------------------------------------------
    def feed(self, chunk):
        if not chunk:
            return b""
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._pending += chunk
            return b""
        # No copy of the chunk: the partial line carried over is completed on its own, the rest is
        # worked on in place (bounds, not slices).
        out = []
        start = 0
        if self._pending:
            nl = chunk.find(b"\n")
            head = self._pending + chunk[:nl + 1]
            out.append(self._process(head, 0, len(head)))
            start = nl + 1
        if start <= cut:
            out.append(self._process(chunk, start, cut + 1))
        self._pending = chunk[cut + 1:]
        return b"".join(out)

    def flush(self):
        data, self._pending = self._pending, b""
        out = self._process(data, 0, len(data)) if data else b""
        if self._stmt is not None:  # a statement cut by the end of the stream: emit what we have
            out += self._statement(self._stmt[0], b"".join(self._stmt))
            self._stmt = None
        return out

    def _process(self, data, pos, size):
        """Work on data[pos:size] (complete lines, or the stream's last bytes); returns the output."""
        out = []
        while pos < size:
            if self._in_copy:
                if self._copy_rows is None:
                    end = self._end_of_copy(data, pos, size)
                    if end < 0:
                        self.line_no += data.count(b"\n", pos, size)
                        if self.EMIT:
                            out.append(data if pos == 0 and size == len(data) else data[pos:size])
                        return b"".join(out)
                    self.line_no += data.count(b"\n", pos, end)
                    if self.EMIT:
                        out.append(data[pos:end])
                    self._in_copy = False
                    pos = end
                    continue
                nl = data.find(b"\n", pos, size)
                nxt = size if nl < 0 else nl + 1
                line = data[pos:nxt]
                pos = nxt
                self.line_no += 1
                if _is_end_of_data(line):
                    self._in_copy, self._copy_rows = False, None
                    out.append(line)
                else:
                    out.append(self._copy_rows(line))
                continue
            nl = data.find(b"\n", pos, size)
            nxt = size if nl < 0 else nl + 1
            line = data[pos:nxt]
            pos = nxt
            self.line_no += 1
            emitted = self._line(line)
            if self.EMIT:
                out.append(emitted)
        return b"".join(out)

    @staticmethod
    def _end_of_copy(data, pos, size):
        """Index just after the ``\\.`` line ending the COPY block that runs from ``pos``, or -1.
        One substring search per chunk: COPY text rows escape a backslash, so a line starting with
        backslash-dot is the end marker (followed by LF, CRLF, or the end of the stream)."""
        def after(k):  # k: index of the backslash of a line starting with backslash-dot
            j = k + 2
            if data.startswith(b"\n", j, size):
                return j + 1
            if data.startswith(b"\r\n", j, size):
                return j + 2
            return size if j == size == len(data) else -1  # the stream's last line, without a newline

        if data.startswith(b"\\.", pos, size):
            end = after(pos)
            if end >= 0:
                return end
        i = data.find(b"\n\\.", pos, size)
        while i >= 0:
            end = after(i + 1)
            if end >= 0:
                return end
            i = data.find(b"\n\\.", i + 1, size)
        return -1

    def _line(self, line):
        if self._stmt is not None:
            self._stmt.append(line)
            if self.lexer.feed_line(line):
                lines, self._stmt = self._stmt, None
                return self._statement(lines[0], b"".join(lines))
            return b""
        starts = self.lexer.at_statement_start
        if starts and line[:1] == b"\\":
            self._sql_line(line, True)  # a psql meta-command: it ends at its newline
            return line
        if starts and line.startswith(b"COPY ") and _COPY_ANY.match(line):
            self.lexer.feed_line(line)
            self._in_copy = True
            self._copy_rows = self._copy(line)
            return line
        if starts and self.BUFFERED.match(line):
            if self.lexer.feed_line(line):
                return self._statement(line, line)
            self._stmt = [line]
            return b""
        self._sql_line(line, starts)
        self.lexer.feed_line(line)
        return line


# -- the transform ----------------------------------------------------------------------------

def _to_array(field):
    """A vector's text form to a Postgres array literal: [0.1,0.2] -> {0.1,0.2}; NULL stays NULL."""
    if field[:1] == b"[" and field[-1:] == b"]":
        return b"{" + field[1:-1] + b"}"
    return field


class VectorPortable(DumpWalker):
    """The streaming transform; feed()/flush() like rewrite.SearchPathRewriter.

    ``target_extensions``: the names the target offers (pg_available_extensions); None or
    ``neutral=True``: the result depends on no vector extension. ``counts()`` says what changed.
    """

    def __init__(self, target_extensions=None, neutral=False):
        DumpWalker.__init__(self)
        available = set(target_extensions or ())
        if neutral or target_extensions is None:
            available -= set(VECTOR_EXTENSIONS)
        for ext, needs in REQUIRES.items():
            if any(n not in available for n in needs):
                available.discard(ext)
        self.available = available
        self.neutral = neutral or target_extensions is None
        self.ext_schemas = {}             # extension -> schema it was created in (from the dump)
        self.converted = {}               # (schema, table) -> {column: dims}
        self.columns = []                 # "table.column" made real[]
        self.dimensions = {}
        self.indexes = []                 # indexes left out
        self.extensions = []              # CREATE EXTENSION left out
        self.statements_dropped = 0       # COMMENT ON / ALTER EXTENSION left out
        self.rows = {}                    # table -> COPY rows rewritten
        self.unhandled = []               # (line, text) of statements that still need a missing extension

    def missing(self, extension):
        return extension in VECTOR_EXTENSIONS and extension not in self.available

    def _type_provider(self, schema):
        return type_provider(schema, self.ext_schemas)

    def _statement(self, first_line, data):
        m = _EXTENSION_STMT.match(first_line)
        if m:
            name = unquote(m.group("name"))
            if first_line.startswith(b"CREATE EXTENSION"):
                self.ext_schemas[name] = unquote(m.group("schema")) if m.group("schema") else "public"
            if not self.missing(name):
                return data
            if first_line.startswith(b"CREATE EXTENSION"):
                self.extensions.append(name)
            else:
                self.statements_dropped += 1
            return b""
        m = _CREATE_INDEX.match(first_line)
        if m:
            am = m.group("am").lower()
            table = split_qualified(m.group("table"))
            provider = ACCESS_METHODS.get(am)
            if (provider is not None and self.missing(provider)) or (provider is not None and table in self.converted):
                self.indexes.append(unquote(m.group("name")) if m.group("name") else table[1])
                return b""
            if table in self.converted and any(c.encode() in data for c in self.converted[table]):
                self._unhandled(data)
            return data
        m = _CREATE_TABLE.match(first_line)
        if m:
            return self._table(split_qualified(m.group("table")), data)
        return data

    def _table(self, table, data):
        out = []
        changed = False
        for raw in data.splitlines(True):
            line = raw
            col = _COLUMN_LINE.match(line)
            if col:
                typ = _VECTOR_TYPE.match(col.group("type"))
                schema = unquote(typ.group("schema")) if typ.group("schema") else "public"
                if self.missing(self._type_provider(schema)):
                    name = unquote(col.group("name"))
                    dims = int(typ.group("dims"))
                    self.converted.setdefault(table, {})[name] = dims
                    label = "%s.%s" % (table[1], name)
                    self.columns.append(label)
                    self.dimensions[label] = dims
                    line = line[:col.start("type")] + b"real[]" + line[col.end("type"):]
                    changed = True
            out.append(line)
        return b"".join(out) if changed else data

    def _copy(self, header):
        m = _COPY_HEADER.match(header)
        if not m:
            return None
        table = split_qualified(m.group("table"))
        wanted = self.converted.get(table)
        if not wanted:
            return None
        names = split_columns(m.group("columns"))
        positions = [i for i, n in enumerate(names) if n in wanted]
        if not positions:
            return None
        label = table[1]
        self.rows.setdefault(label, 0)
        last = len(names) - 1

        def rows(line):
            body = line
            tail = b""
            if body.endswith(b"\r\n"):
                body, tail = body[:-2], b"\r\n"
            elif body.endswith(b"\n"):
                body, tail = body[:-1], b"\n"
            fields = body.split(b"\t")
            if len(fields) != last + 1:
                return line  # not a row of this table's shape: psql will say so, we change nothing
            for i in positions:
                fields[i] = _to_array(fields[i])
            self.rows[label] += 1
            return b"\t".join(fields) + tail
        return rows

    def _sql_line(self, line, starts):
        if starts and line.startswith(b"\\connect"):
            # A cluster dump's next database: its tables and extensions are its own.
            self.converted = {}
            self.ext_schemas = {}
            return
        if not self.converted and not self.extensions:
            return
        if line.lstrip().startswith(b"--"):
            return
        for ext in VECTOR_EXTENSIONS:
            if self.missing(ext) and ext in self.ext_schemas:
                schema = self.ext_schemas[ext].encode()
                if (ext != "vchord" and (schema + b".vector(") in line) or (ext == "vchord" and b"USING vchordrq" in line):
                    self._unhandled(line)
                    return

    def _unhandled(self, data):
        if len(self.unhandled) < 20:
            self.unhandled.append((self.line_no, data.decode("utf-8", "replace").strip()[:200]))

    @property
    def changed(self):
        return bool(self.columns or self.indexes or self.extensions or self.statements_dropped)

    @property
    def warnings(self):
        out = []
        for label, dims in sorted(self.dimensions.items()):
            table, column = label.split(".", 1)
            fix = "ALTER TABLE %s ALTER COLUMN %s SET DATA TYPE vector(%d)" % (quote_ident(table), quote_ident(column), dims)
            if table not in IMMICH_VECTOR_TABLES:
                out.append("%s stays real[]: Immich only re-creates the embedding columns of %s. Once the image's vector "
                           "extension exists, run `%s` if something needs it as a vector." % (label, " and ".join(IMMICH_VECTOR_TABLES), fix))
            elif dims != IMMICH_DIMENSIONS:
                out.append("%s had %d dimensions: Immich assumes %d when it turns the real[] column back into a vector at "
                           "its next start, which fails for this column. Before starting immich-server, run `%s` in the "
                           "database (once the image's vector extension is created), or clear and re-run the Smart Search "
                           "job." % (label, dims, IMMICH_DIMENSIONS, fix))
        for line, text in self.unhandled:
            out.append("line %d still needs a vector extension the target lacks: %s" % (line, text))
        return out

    def counts(self):
        """What changed, for the restore summary."""
        return {
            "changed": self.changed,
            "columns": list(self.columns),
            "dimensions": dict(self.dimensions),
            "indexes": list(self.indexes),
            "extensions": list(self.extensions),
            "statements": self.statements_dropped,
            "rows": dict(self.rows),
            "rows_total": sum(self.rows.values()),
            "warnings": self.warnings,
            "summary": self.summary(),
        }

    def summary(self):
        if not self.changed:
            return "vector-portable: nothing to change (the target has every vector extension the dump uses)"
        parts = []
        if self.extensions:
            parts.append("left out CREATE EXTENSION %s" % ", ".join(self.extensions))
        if self.columns:
            parts.append("%s as real[] (%d rows rewritten)" % (", ".join(self.columns), sum(self.rows.values())))
        if self.indexes:
            parts.append("dropped %s" % ", ".join(self.indexes))
        return ("vector-portable: " + "; ".join(parts) +
                ". Immich re-creates the vector type and indexes with the image's extension at its next start.")


def transform_chunks(chunks, target_extensions=None, neutral=False):
    """Generator over a whole stream: yields transformed chunks; returns the VectorPortable (its
    counts) as the generator's value (``yield from``)."""
    vp = VectorPortable(target_extensions, neutral=neutral)
    for chunk in chunks:
        out = vp.feed(chunk)
        if out:
            yield out
    out = vp.flush()
    if out:
        yield out
    return vp
