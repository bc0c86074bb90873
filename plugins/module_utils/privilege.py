# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Least-privilege restores: a dump's SQL runs as a role that cannot act outside the database.

A pg_dump is SQL that a restore runs as the Postgres superuser. A tampered one can write files
(``COPY ... TO '<file>'``, ``lo_export``), read them (``pg_read_file``, ``COPY ... FROM``), change
the server's configuration (``ALTER SYSTEM``), run programs (an untrusted language, a C function)
or plant code for later. Scanning the text cannot catch all of it: SQL is built at run time. So the
dump runs as a role that has none of those privileges, and the server refuses them inside the
transaction, whatever the text looks like.

The plan (a DATABASE dump, i.e. pg_dump of the Immich database, into an EMPTY database):

1. **prepare** (superuser, one transaction, committed): create ``homelab_immich_restore_<random>``
   LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT, member of no role,
   with a random password (sent as a SCRAM verifier: the plain password never reaches the server,
   its log or argv) that expires in a few hours; CONNECT on the database (no CREATE: it cannot make
   schemas or extensions itself, trusted ones included); ownership of schema public; the extensions
   the dump names, ONLY those on the allowlist (Immich's own), created by the superuser from the
   target's image; the schemas the dump creates (owned by the role); and a *gate*: a schema of the
   superuser with two tables and ``seal()`` (below). An audit then fails the prepare when the role
   could reach outside the database anyway (EXECUTE on pg_read_file/lo_export/... granted to
   PUBLIC, membership of pg_read_server_files/pg_write_server_files/pg_execute_server_program,
   ALTER SYSTEM granted on a parameter, an untrusted language made usable).
2. **load** (the role, its OWN connection, ONE transaction: ``psql -1 -v ON_ERROR_STOP=1``): the
   stream is ``\\restrict <random key>`` (psql then refuses every meta-command: ``\\!``, ``\\o``,
   ``\\connect``..., whatever the lexing), one row into the gate's ``pending`` table, the filtered
   dump, and ``seal(<random token>)``. ``seal`` checks that the load is still the transaction that
   began it, that only allowlisted extensions exist, and compares the database with the recorded
   fingerprint (fingerprint.py: unknown or changed functions, triggers, defaults, ... by name);
   then it writes the token. ``pending`` references ``done`` through a DEFERRED foreign key on the
   token's sha256, so COMMIT succeeds only if seal ran to its end: a dump that ends inside a
   string, a COMMIT in the dump, a killed restore, a truncated stream, all roll back.
3. **finish** (superuser, one transaction): the gate dropped, ``REASSIGN OWNED BY role TO owner``,
   public given back to its previous owner, ``DROP OWNED BY role``, ``DROP ROLE role``.
   **abort** (after any failure): the role's sessions terminated first (so psql can never reach
   its COMMIT), then the gate, everything the role owns (``DROP OWNED``: even what a ROLLBACK in the
   dump let it commit outside the transaction), the extensions, schemas and roles prepare created,
   and the role: the database is as it was before.

Why not ``SET ROLE`` in the superuser's session: the dump would just run ``RESET ROLE``
(or ``SELECT set_config('role', 'postgres', false)``, or the same in a DO block) and be superuser
again. SET ROLE and SET SESSION AUTHORIZATION are not boundaries when the session's login is a
superuser; a separate login as the restricted role is.

The streaming filter (``DumpFilter``) prepares the text for that role, as pg_dump writes it: the
extension and schema statements are taken out (the superuser made them; a non-allowlisted
extension refuses the restore naming it, before anything is touched), ``ALTER ... OWNER TO`` is
dropped (the role owns what it creates; finish hands it all to the instance's owner), the dump's
own ``\\restrict`` lines are dropped. It lexes the SQL the way psql does (quotes, dollar quotes,
comments, BEGIN ATOMIC bodies, COPY data) and refuses a dump holding a psql meta-command or a
transaction-control statement, naming the line: an early, clear message. It is not the boundary:
the privileges, ``\\restrict`` and the gate are.

Cluster dumps (pg_dumpall: roles, then ``\\connect`` per database) get the same treatment for the
instance's database (``ClusterFilter``): its part (after ``\\connect <db>`` up to its completion
trailer) goes through the same filter into the same plan, in ONE transaction, which the seed's way
(psql on the whole file, no transaction) never had. From the rest only the role NAMES are used:
roles the target lacks are created NOLOGIN by the superuser, with no attribute, password,
membership or setting from the dump. What is NOT restored from a cluster dump, because it cannot
be made safe: role attributes and passwords (a dump could make a role SUPERUSER with a password it
knows: the target keeps its own roles), role and database settings other than the database's
search_path (``ALTER ROLE/DATABASE ... SET session_preload_libraries`` loads a library into every
later session), role memberships, database ACLs and properties, and the other databases of the
cluster (Immich uses one). Each is reported in ``skipped``.

Stdlib only (runs on managed hosts without Ansible); SQL reaches psql on stdin, never argv.
"""
from __future__ import absolute_import, division, print_function

# ruff: noqa: S608 - SQL is built here from quote_ident/quote_literal of our own names, allowlisted extension names
# and identifiers parsed strictly from the dump; it reaches psql on stdin

__metaclass__ = type

import base64
import binascii
import bisect
import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
import time

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump_format as df
from ansible_collections.homelab.immich.plugins.module_utils import fingerprint as fp
from ansible_collections.homelab.immich.plugins.module_utils._fsio import write_all

# Immich's own extensions (facts §3): everything else in a dump is refused.
ALLOWED_EXTENSIONS = ("uuid-ossp", "unaccent", "cube", "earthdistance", "pg_trgm", "plpgsql", "vector", "vchord", "vectors")
ROLE_PREFIX = "homelab_immich_restore_"
ROLE_RE = re.compile(r"^homelab_immich_restore_[0-9a-f]{12}$")
PASSWORD_HOURS = 6
# psql learnt \restrict in the August 2025 minor releases.
RESTRICT_SINCE = {13: (13, 22), 14: (14, 19), 15: (15, 14), 16: (16, 10), 17: (17, 6)}
# Functions that reach outside the database; PUBLIC must not have EXECUTE on any (checked by the audit).
SERVER_FILE_FUNCTIONS = (
    "pg_read_file(text)", "pg_read_file(text,bigint,bigint)", "pg_read_file(text,bigint,bigint,boolean)",
    "pg_read_file(text,boolean)", "pg_read_binary_file(text)", "pg_read_binary_file(text,bigint,bigint)",
    "pg_read_binary_file(text,bigint,bigint,boolean)", "pg_read_binary_file(text,boolean)",
    "pg_ls_dir(text)", "pg_ls_dir(text,boolean,boolean)", "pg_stat_file(text)", "pg_stat_file(text,boolean)",
    "pg_ls_logdir()", "pg_ls_waldir()", "pg_ls_tmpdir()", "pg_ls_tmpdir(oid)", "pg_ls_archive_statusdir()",
    "pg_ls_logicalsnapdir()", "pg_ls_logicalmapdir()", "pg_ls_replslotdir(text)",
    "lo_import(text)", "lo_import(text,oid)", "lo_export(oid,text)", "pg_reload_conf()", "pg_rotate_logfile()",
    "pg_file_write(text,text,boolean)", "pg_file_rename(text,text,text)", "pg_file_unlink(text)",
    "pg_logdir_ls()", "pg_file_sync(text)",
)
SERVER_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
UNTRUSTED_LANGUAGES = ("c", "internal", "plpython3u", "plpythonu", "plpython2u", "plperlu", "pltclu", "plv8u", "plsh")
# Parameters whose SET (granted on PG15+) would reach files or libraries.
FILE_PARAMETERS = ("session_preload_libraries", "local_preload_libraries", "shared_preload_libraries",
                   "dynamic_library_path", "log_directory", "log_filename", "archive_command", "restore_command")

_IDENT = rb'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_LITERAL = rb"'(?:[^']|'')*'"


class PrivilegeError(Exception):
    """The restore was refused or failed; the message says what, what it means and what to do.
    ``facts`` holds what is worth returning (findings, skipped statements, the guard's names)."""

    def __init__(self, msg, **facts):
        Exception.__init__(self, msg)
        self.facts = facts


class TamperedDumpError(PrivilegeError):
    """The dump holds something pg_dump never writes (a meta-command, a transaction control, an
    extension that is not Immich's); the message names the line."""


# -- small helpers ---------------------------------------------------------------------------------------

def quote_ident(name):
    if re.match(r"^[a-z_][a-z0-9_]*$", name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


_RESERVED = frozenset(("all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case",
                       "cast", "check", "collate", "column", "constraint", "create", "current_catalog", "current_date",
                       "current_role", "current_time", "current_timestamp", "current_user", "default", "deferrable",
                       "desc", "distinct", "do", "else", "end", "except", "false", "fetch", "for", "foreign", "from",
                       "grant", "group", "having", "in", "initially", "intersect", "into", "lateral", "leading",
                       "limit", "localtime", "localtimestamp", "not", "null", "offset", "on", "only", "or", "order",
                       "placing", "primary", "references", "returning", "select", "session_user", "some", "symmetric",
                       "system_user", "table", "then", "to", "trailing", "true", "union", "unique", "user", "using",
                       "variadic", "when", "where", "window", "with"))


def quote_literal(text):
    """A standard string literal ('' doubled). Only ever sent in OUR sessions, where
    standard_conforming_strings is on (psql's default, never changed there)."""
    if "\x00" in text:
        raise PrivilegeError("a NUL byte cannot be sent to the server")
    return "'" + text.replace("'", "''") + "'"


def _unquote_ident(raw):
    text = raw.decode("utf-8", "replace")
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()


def new_role_name():
    return ROLE_PREFIX + binascii.hexlify(os.urandom(6)).decode("ascii")


def scram_verifier(password, salt=None, iterations=4096):
    """The SCRAM-SHA-256 verifier Postgres stores for ``password`` (so only the verifier is sent)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data):
        return base64.b64encode(data).decode("ascii")

    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored_key), b64(server_key))


def psql_has_restrict(version_text):
    """Does this psql (``psql --version`` output) know ``\\restrict``? None when it cannot tell."""
    m = re.search(r"(\d+)(?:\.(\d+))?", version_text or "")
    if not m:
        return None
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    if major >= 18:
        return True
    since = RESTRICT_SINCE.get(major)
    if since is None:
        return False
    return (major, minor) >= since


# -- the lexer: psql's view of where statements and meta-commands are ----------------------------------

_NORMAL, _SQUOTE, _ESTRING, _DQUOTE, _DOLLAR, _BLOCK = range(6)
_TOKEN_RE = re.compile(
    rb"(?P<ident>[A-Za-z\x80-\xff_][A-Za-z0-9_$\x80-\xff]*)"
    rb"|(?P<num>(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9_]*)?[A-Za-z0-9_$\x80-\xff]*)"
    rb"|(?P<dolq>\$(?:[A-Za-z\x80-\xff_][A-Za-z0-9_\x80-\xff]*)?\$)"
    rb"|(?P<param>\$[0-9]+)"
    rb"|(?P<sq>')|(?P<dq>\")|(?P<line>--)|(?P<block>/\*)|(?P<meta>\\)|(?P<semi>;)|(?P<open>\()|(?P<close>\))"
)
_SPECIAL_RE = re.compile(rb"[A-Za-z\x80-\xff_0-9.$'\"\\;()]|--|/\*")
_TX_RE = re.compile(rb"^(?:BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
                    re.I)
_COPY_STDIN_RE = re.compile(rb"^COPY\s.*\sFROM\s+stdin\s*$", re.I | re.S)
_STMT_CAP = 512
_ESTRING_RE = re.compile(rb"[\\']")
_BLOCK_RE = re.compile(rb"/\*|\*/")
_JUNK_RE = re.compile(rb"[A-DF-Za-df-z_$\x80-\xff]|[eE].*[eE]")


class SqlLexer(object):
    """Tracks, line by line, what psql's lexer tracks: quotes (E'' escapes), "identifiers",
    $tag$ quotes, nested /* */ comments, -- comments, parentheses and BEGIN ... END of a
    CREATE FUNCTION/PROCEDURE body (psql's own heuristic), so a ';' is a statement end exactly when
    psql sends the statement, and a backslash outside all of them is a meta-command."""

    def __init__(self):
        self.state = _NORMAL
        self.tag = b""
        self.depth = 0
        self.parens = 0
        self.begin_depth = 0
        self.idents = []
        self.stmt = bytearray()
        self.dirty = False  # a statement has started (something but whitespace/comments seen)
        self.std_strings = True

    def at_statement_start(self):
        return self.state == _NORMAL and not self.dirty

    def _ident(self, word):
        low = word.lower()
        if len(self.idents) < 4:
            self.idents.append(low)
        ids = self.idents
        is_routine = len(ids) >= 2 and ids[0] == b"create" and (
            ids[1] in (b"function", b"procedure")
            or (len(ids) >= 4 and ids[1] == b"or" and ids[2] == b"replace" and ids[3] in (b"function", b"procedure")))
        if is_routine and self.parens == 0:
            if low == b"begin":
                self.begin_depth += 1
            elif low == b"case" and self.begin_depth > 0:
                self.begin_depth += 1
            elif low == b"end" and self.begin_depth > 0:
                self.begin_depth -= 1

    def _add(self, text):
        if len(self.stmt) < _STMT_CAP:
            self.stmt += text[:_STMT_CAP - len(self.stmt)]

    def _end(self):
        stmt = bytes(self.stmt).strip()
        self.stmt = bytearray()
        self.dirty = False
        self.parens = 0
        self.begin_depth = 0
        self.idents = []
        return stmt

    def line(self, data):
        """Lex one line (with its newline); returns events: ("end", statement head, offset after ';'),
        ("meta", offset), ("junk", offset) for a token psql versions read differently."""
        events = []
        pos = 0
        size = len(data)
        while pos < size:
            st = self.state
            if st == _NORMAL:
                m = _SPECIAL_RE.search(data, pos)
                if m is None:
                    if data[pos:].strip():
                        self.dirty = True
                    self._add(data[pos:])
                    return events
                if data[pos:m.start()].strip():
                    self.dirty = True
                self._add(data[pos:m.start()])
                tok = _TOKEN_RE.match(data, m.start())
                if tok is None:  # a lone '.' or '$'
                    self.dirty = True
                    self._add(data[m.start():m.start() + 1])
                    pos = m.start() + 1
                    continue
                kind = tok.lastgroup
                pos = tok.end()
                text = tok.group(0)
                if kind == "ident":
                    self.dirty = True
                    self._add(text)
                    if pos < size and data[pos:pos + 1] == b"'" and text in (b"e", b"E"):
                        self.state = _ESTRING
                        self._add(b"'")
                        pos += 1
                    else:
                        self._ident(text)
                elif kind == "num":
                    self.dirty = True
                    self._add(text)
                    if _JUNK_RE.search(text.lstrip(b"0123456789._")) \
                            or text.rstrip(b"0123456789_").endswith((b"e", b"E", b"+", b"-")):
                        events.append(("junk", tok.start()))
                elif kind == "dolq":
                    self.dirty = True
                    self._add(b"$$")
                    self.state = _DOLLAR
                    self.tag = text
                elif kind == "param":
                    self.dirty = True
                    self._add(text)
                elif kind == "sq":
                    self.dirty = True
                    self._add(b"'")
                    self.state = _SQUOTE if self.std_strings else _ESTRING
                elif kind == "dq":
                    self.dirty = True
                    self._add(b'"')
                    self.state = _DQUOTE
                elif kind == "line":
                    self._add(b" ")
                    return events
                elif kind == "block":
                    self.state = _BLOCK
                    self.depth = 1
                    self._add(b" ")
                elif kind == "meta":
                    events.append(("meta", tok.start()))
                    self.dirty = True
                    self._add(b"\\")
                elif kind == "semi":
                    if self.parens == 0 and self.begin_depth == 0:
                        events.append(("end", self._end(), pos))
                    else:
                        self._add(b";")
                elif kind == "open":
                    self.dirty = True
                    self.parens += 1
                    self._add(b"(")
                elif kind == "close":
                    self.dirty = True
                    self.parens = max(self.parens - 1, 0)
                    self._add(b")")
            elif st == _SQUOTE:
                i = data.find(b"'", pos)
                if i < 0:
                    self._add(data[pos:])
                    return events
                if data[i + 1:i + 2] == b"'":
                    self._add(data[pos:i + 2])
                    pos = i + 2
                    continue
                self.state = _NORMAL
                self._add(data[pos:i + 1])
                pos = i + 1
            elif st == _ESTRING:
                m = _ESTRING_RE.search(data, pos)
                if m is None:
                    self._add(data[pos:])
                    return events
                i = m.start()
                if data[i:i + 1] == b"\\" or data[i + 1:i + 2] == b"'":
                    self._add(data[pos:i + 2])
                    pos = i + 2
                    continue
                self.state = _NORMAL
                self._add(data[pos:i + 1])
                pos = i + 1
            elif st == _DQUOTE:
                i = data.find(b'"', pos)
                if i < 0:
                    self._add(data[pos:])
                    return events
                if data[i + 1:i + 2] == b'"':
                    self._add(data[pos:i + 2])
                    pos = i + 2
                    continue
                self._add(data[pos:i + 1])
                self.state = _NORMAL
                pos = i + 1
            elif st == _DOLLAR:
                i = data.find(self.tag, pos)
                if i < 0:
                    return events
                self.state = _NORMAL
                pos = i + len(self.tag)
            else:  # block comment, nested
                m = _BLOCK_RE.search(data, pos)
                if m is None:
                    return events
                self.depth += 1 if m.group(0) == b"/*" else -1
                pos = m.end()
                if self.depth == 0:
                    self.state = _NORMAL
        return events


# -- the filter for the restricted role ------------------------------------------------------------------

_RESTRICT_LINE = re.compile(rb"^\\(?:un)?restrict [A-Za-z0-9]+$")
_CREATE_EXT = re.compile(rb"^CREATE EXTENSION IF NOT EXISTS (" + _IDENT + rb") WITH SCHEMA (" + _IDENT + rb");$")
_CREATE_EXT_ANY = re.compile(rb"^CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?(" + _IDENT + rb")", re.I)
_COMMENT_EXT = re.compile(rb"^COMMENT ON EXTENSION (" + _IDENT + rb") IS " + _LITERAL + rb";$")
_DROP_EXT = re.compile(rb"^DROP EXTENSION (?:IF EXISTS )?(" + _IDENT + rb")(?: CASCADE)?;$")
_CREATE_SCHEMA = re.compile(rb"^CREATE SCHEMA (?:IF NOT EXISTS )?(" + _IDENT + rb");$")
_SCHEMA_OTHER = re.compile(rb"^(?:ALTER SCHEMA " + _IDENT + rb" OWNER TO " + _IDENT + rb"|COMMENT ON SCHEMA " + _IDENT
                           + rb" IS " + _LITERAL + rb"|DROP SCHEMA (?:IF EXISTS )?" + _IDENT + rb"(?: CASCADE)?);$")
_OWNER_TO = re.compile(rb"^ALTER [A-Z][A-Z ]* .+ OWNER TO (" + _IDENT + rb");$")
_SESSION_AUTH = re.compile(rb"^(?:SET SESSION AUTHORIZATION .+|RESET SESSION AUTHORIZATION);$")
_DEFAULT_PRIVS = re.compile(rb"^ALTER DEFAULT PRIVILEGES .+;$")
_DB_SEARCH_PATH = re.compile(rb"^ALTER DATABASE (" + _IDENT + rb") SET search_path TO ((?:'[^'\\]*'|" + _IDENT
                             + rb")(?:, (?:'[^'\\]*'|" + _IDENT + rb"))*);$")
_DB_OTHER = re.compile(rb"^(?:ALTER DATABASE .+|COMMENT ON DATABASE .+|(?:GRANT|REVOKE) .+ ON DATABASE .+);$")
_SCS_OFF = re.compile(rb"^SET standard_conforming_strings = off;$", re.I)
_HEAD_OK = re.compile(
    rb"^(?:SET |RESET |SELECT pg_catalog\.set_config\(|DROP |ALTER TABLE IF EXISTS |CREATE EXTENSION |COMMENT ON EXTENSION "
    rb"|CREATE SCHEMA |ALTER SCHEMA |COMMENT ON SCHEMA |ALTER DATABASE |COMMENT ON DATABASE |(?:GRANT|REVOKE) .* ON (?:DATABASE|SCHEMA) "
    rb"|CREATE COLLATION |ALTER COLLATION |COMMENT ON COLLATION )")
_TRAILER = df.DATABASE_TRAILER
_HEAD_LIMIT = 16 << 20
_MAX_SKIPPED = 20


class DumpFilter(object):
    """Streaming filter of a DATABASE dump's plain SQL for the restricted role.

    ``feed(chunk)`` returns the bytes to send; nothing until the head (everything before the first
    object that may need an extension) is complete: ``ready`` then says the plan is known
    (``extensions``, ``schemas``, ``db_settings``) and the prepare step must run BEFORE the returned
    bytes are sent. ``finish()`` returns the rest and raises when the dump ends inside a statement
    or COPY block. Raises TamperedDumpError naming the line for what pg_dump never writes.
    ``stop_at_trailer``: stop at the completion trailer (a cluster dump's part); ``stopped`` and
    ``leftover`` then hold the bytes after it.
    """

    def __init__(self, database=None, allowed=ALLOWED_EXTENSIONS, stop_at_trailer=False, line_offset=0):
        self.database = database
        self.allowed = tuple(allowed)
        self.extensions = []  # [(name, schema)] in the dump's order
        self.schemas = []
        self.db_settings = []  # [("search_path", "<SQL value list>")]
        self.owners = set()
        self.skipped = []
        self.skipped_count = 0
        self.stripped = 0
        self.lineno = line_offset
        self.ready = False
        self.stopped = False
        self.leftover = b""
        self.copy_blocks = 0
        self._stop_at_trailer = stop_at_trailer
        self._lex = SqlLexer()
        self._carry = b""
        self._copy = False
        self._head = []
        self._head_bytes = 0
        self.out_lines = 0
        self._map = [(1, 1 + line_offset)]  # (first output line, its input line) after each dropped line

    def dump_line(self, out_line):
        """The dump's line number of a line we sent (psql's error messages count the lines it read)."""
        i = bisect.bisect_right([m[0] for m in self._map], out_line) - 1
        start_out, start_in = self._map[max(i, 0)]
        return start_in + (out_line - start_out)

    # -- what the plan needs ------------------------------------------------------------------------------
    def _skip(self, line, why):
        self.skipped_count += 1
        if len(self.skipped) < _MAX_SKIPPED:
            self.skipped.append("line %d: %s (%s)" % (self.lineno, line[:160].decode("utf-8", "replace"), why))

    def _refuse(self, what, line):
        raise TamperedDumpError("Refusing to restore: line %d of the dump holds %s: %s. A real pg_dump of the Immich database "
                                "never writes this, so the file was tampered with (or is not a plain pg_dump). Nothing was "
                                "restored." % (self.lineno, what, line[:160].decode("utf-8", "replace").strip()),
                                line=self.lineno, text=line[:160].decode("utf-8", "replace"))

    def _extension(self, name, schema, line):
        if name not in self.allowed:
            raise TamperedDumpError(
                "Refusing to restore: the dump creates extension %s (line %d), which is not one of Immich's (%s). An "
                "extension runs code as the superuser when it is created, so a dump that asks for another one is "
                "refused before anything is touched. If you added it to your Immich database yourself, create it "
                "after the restore." % (name, self.lineno, ", ".join(self.allowed)), extension=name, line=self.lineno)
        if (name, schema) not in self.extensions:
            if any(n == name for n, _s in self.extensions):
                self._refuse("extension %s a second time, in another schema" % name, line)
            self.extensions.append((name, schema))

    def _route(self, text):
        """What to do with a statement that starts this line: None (send), "strip", or raise."""
        if _RESTRICT_LINE.match(text):
            return "strip"
        m = _CREATE_EXT.match(text)
        if m:
            name, schema = _unquote_ident(m.group(1)), _unquote_ident(m.group(2))
            if not self.ready:
                self._extension(name, schema, text)
            elif (name, schema) not in self.extensions:
                if name not in self.allowed:
                    self._extension(name, schema, text)
                self._refuse("CREATE EXTENSION after the dump's first objects (pg_dump writes extensions first)", text)
            return "strip"
        m = _CREATE_EXT_ANY.match(text)
        if m:
            name = _unquote_ident(m.group(1))
            if name not in self.allowed:
                self._extension(name, None, text)
            self._refuse("CREATE EXTENSION in a form pg_dump does not write", text)
        if _COMMENT_EXT.match(text) or _DROP_EXT.match(text):
            return "strip"
        m = _CREATE_SCHEMA.match(text)
        if m:
            name = _unquote_ident(m.group(1))
            if self.ready and name not in self.schemas and name != "public":
                self._refuse("CREATE SCHEMA after the dump's first objects (pg_dump writes schemas first)", text)
            if name != "public" and name not in self.schemas:
                self.schemas.append(name)
            return "strip"
        if _SCHEMA_OTHER.match(text):
            return "strip"
        m = _OWNER_TO.match(text)
        if m:
            self.owners.add(_unquote_ident(m.group(1)))
            self.stripped += 1
            return "strip"
        if _SESSION_AUTH.match(text):
            self._skip(text, "the restore role creates every object; finish hands them to the instance's owner")
            return "strip"
        if _DEFAULT_PRIVS.match(text):
            self._skip(text, "default privileges of other roles are not restored: run it again after the restore")
            return "strip"
        m = _DB_SEARCH_PATH.match(text)
        if m:
            if self.database is None or _unquote_ident(m.group(1)) == self.database:
                self.db_settings.append(("search_path", m.group(2).decode("utf-8")))
                return "strip"
            self._skip(text, "a setting of another database")
            return "strip"
        if _DB_OTHER.match(text):
            self._skip(text, "database properties, settings and ACLs are the target's own")
            return "strip"
        if _SCS_OFF.match(text):
            self._refuse("standard_conforming_strings = off", text)
        return None

    # -- streaming --------------------------------------------------------------------------------------------
    def _out(self, data):
        if self.ready:
            return data
        self._head.append(data)
        self._head_bytes += len(data)
        if self._head_bytes > _HEAD_LIMIT:
            raise TamperedDumpError("Refusing to restore: the dump's first %d MiB hold no table, function or data; that is "
                                    "not how pg_dump writes a database. Nothing was restored." % (_HEAD_LIMIT >> 20))
        return b""

    def _become_ready(self):
        self.ready = True
        head, self._head = b"".join(self._head), []
        return head

    def _sql_line(self, line):
        """One line outside COPY data: bytes to send (possibly the held head)."""
        self.lineno += 1
        text = line.rstrip(b"\r\n")
        prefix = b""
        if self._lex.at_statement_start():
            stripped = text.strip()
            if self._stop_at_trailer and stripped == _TRAILER:
                self.stopped = True
                return self._become_ready() if not self.ready else b""
            if stripped and not stripped.startswith(b"--"):
                if not self.ready and not _HEAD_OK.match(stripped) and not _RESTRICT_LINE.match(stripped):
                    prefix = self._become_ready()
                if self._route(stripped) == "strip":
                    self._map.append((self.out_lines + 1, self.lineno + 1))
                    return prefix
        for event in self._lex.line(line):
            if event[0] == "meta":
                self._refuse("a psql meta-command (a backslash outside quotes: it runs on the database host)", text)
            elif event[0] == "junk":
                self._refuse("a number glued to a name, which psql versions split differently", text)
            elif event[0] == "end":
                stmt, after = event[1], event[2]
                if _TX_RE.match(stmt):
                    self._refuse("a transaction-control statement (it would end the restore's single transaction)", text)
                if b"standard_conforming_strings" in stmt.lower() and stmt != b"SET standard_conforming_strings = on":
                    self._refuse("a change of standard_conforming_strings (it changes how psql reads every later quote)", text)
                if _CREATE_EXT_ANY.match(stmt) or _CREATE_SCHEMA.match(stmt + b";"):
                    self._refuse("a CREATE EXTENSION/SCHEMA split over lines or after another statement", text)
                if _COPY_STDIN_RE.match(stmt):
                    if line[after:].strip():
                        self._refuse("data after a COPY ... FROM stdin on the same line", text)
                    self._copy = True
                    self.copy_blocks += 1
        self.out_lines += 1
        return prefix + self._out(line)

    def _copy_data(self, data, pos):
        """Skip COPY rows from ``pos``: (end offset of the block or None, offset consumed)."""
        if pos == 0 or data[pos - 1:pos] == b"\n":
            for end in (b"\\.\n", b"\\.\r\n"):
                if data.startswith(end, pos):
                    return pos + len(end), pos + len(end)
        best = None
        for end in (b"\n\\.\n", b"\n\\.\r\n"):
            i = data.find(end, max(pos - 1, 0))
            if i >= 0 and (best is None or i < best[0]):
                best = (i, len(end))
        if best is None:
            keep = max(pos, len(data) - 3)  # the end marker may straddle the next chunk
            return None, keep
        return best[0] + best[1], best[0] + best[1]

    def feed(self, chunk):
        if self.stopped:
            self.leftover += chunk
            return b""
        data = self._carry + chunk if self._carry else chunk
        self._carry = b""
        out = []
        pos = 0
        size = len(data)
        while pos < size:
            if self._copy:
                end, consumed = self._copy_data(data, pos)
                out.append(self._out(data[pos:consumed]))
                rows = data.count(b"\n", pos, consumed)
                self.lineno += rows
                self.out_lines += rows
                if end is None:
                    self._carry = data[consumed:]
                    return b"".join(out)
                self._copy = False
                pos = end
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._carry = data[pos:]
                break
            out.append(self._sql_line(data[pos:nl + 1]))
            pos = nl + 1
            if self.stopped:
                self.leftover = data[pos:]
                break
        return b"".join(out)

    def finish(self):
        """The last bytes; raises when the dump ends inside a statement, a quote or COPY data."""
        out = []
        if self._carry and not self.stopped:
            rest, self._carry = self._carry, b""
            if self._copy:
                self.lineno += rest.count(b"\n")
                self._refuse_end("inside COPY data (truncated?)")
            out.append(self._sql_line(rest))
        if self._copy:
            self._refuse_end("inside COPY data (truncated?)")
        if not self._lex.at_statement_start():
            self._refuse_end("inside a statement, a quoted string or a comment")
        if not self.ready:
            out.insert(0, self._become_ready())
        return b"".join(out)

    def _refuse_end(self, where):
        raise TamperedDumpError("Refusing to commit the restore: the dump ends %s at line %d. Whatever followed it (the "
                                "restore's own checks) would have become part of it. Nothing was restored." % (where, self.lineno))

    def facts(self):
        return {"extensions": [n for n, _s in self.extensions], "schemas": list(self.schemas),
                "db_settings": [k for k, _v in self.db_settings], "owners_in_dump": sorted(self.owners),
                "owner_statements_dropped": self.stripped, "skipped": list(self.skipped),
                "skipped_count": self.skipped_count, "copy_blocks": self.copy_blocks}


_CREATE_ROLE = re.compile(rb"^CREATE ROLE (" + _IDENT + rb");\r?$")
_SUPERUSER_ROLE = re.compile(rb"^ALTER ROLE (" + _IDENT + rb") WITH SUPERUSER\b")


class ClusterFilter(object):
    """A CLUSTER dump (pg_dumpall): the part of ``database`` through DumpFilter; from the rest only the
    role names (``roles``). Same interface as DumpFilter."""

    def __init__(self, database, allowed=ALLOWED_EXTENSIONS):
        self.database = database
        self.roles = []
        self.superusers = []
        self.databases = []
        self.inner = None
        self.done = False
        self.lineno = 0
        self._carry = b""
        self._globals = True
        self._skipped_lines = 0
        self._allowed = allowed

    @property
    def ready(self):
        return self.inner is not None and self.inner.ready

    def __getattr__(self, name):
        if name in ("extensions", "schemas", "db_settings", "owners", "skipped", "skipped_count", "copy_blocks"):
            inner = self.__dict__.get("inner")
            if inner is None:
                return [] if name != "skipped_count" else 0
            return getattr(inner, name)
        raise AttributeError(name)

    def dump_line(self, out_line):
        return self.inner.dump_line(out_line) if self.inner is not None else None

    def _connect(self, line):
        name = df.parse_connect(line.rstrip(b"\r\n"))
        if name is None:
            raise TamperedDumpError("Refusing to restore: line %d of the cluster dump is a \\connect pg_dumpall never writes: %s. "
                                    "Nothing was restored." % (self.lineno, line[:160].decode("utf-8", "replace").strip()))
        self._globals = False
        if name not in self.databases:
            self.databases.append(name)
        if name == self.database:
            if self.inner is not None:
                raise TamperedDumpError("Refusing to restore: the cluster dump connects to database %s a second time (line %d); "
                                        "pg_dumpall writes each database once. Nothing was restored." % (name, self.lineno))
            self.inner = DumpFilter(self.database, self._allowed, stop_at_trailer=True, line_offset=self.lineno)

    def _scan(self, data):
        """Lines outside the wanted part: \\connect switches, CREATE ROLE names; nothing is sent."""
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._carry = data[pos:]
                return b""
            line = data[pos:nl + 1]
            self.lineno += 1
            pos = nl + 1
            if line.startswith(b"\\connect "):
                self._connect(line)
                if self.inner is not None and not self.inner.stopped and not self.done:
                    return data[pos:]
            elif self._globals:
                m = _CREATE_ROLE.match(line.rstrip(b"\n"))
                if m:
                    role = _unquote_ident(m.group(1))
                    if role not in self.roles:
                        self.roles.append(role)
                m = _SUPERUSER_ROLE.match(line)
                if m:
                    role = _unquote_ident(m.group(1))
                    if role not in self.superusers:
                        self.superusers.append(role)
            else:
                self._skipped_lines += 1

    def feed(self, chunk):
        data = self._carry + chunk if self._carry else chunk
        self._carry = b""
        out = []
        while data:
            if self.inner is not None and not self.done:
                out.append(self.inner.feed(data))
                if not self.inner.stopped:
                    return b"".join(out)
                self.done = True
                self.lineno = self.inner.lineno
                data, self.inner.leftover = self.inner.leftover, b""
                continue
            data = self._scan(data)
        return b"".join(out)

    def finish(self):
        rest, self._carry = self._carry, b""
        out = [self.feed(rest + b"\n")] if rest else []
        if self.inner is None:
            raise PrivilegeError("The cluster dump holds no database %s (it connects to: %s): nothing to restore. Nothing "
                                 "was touched; check immich's DB_DATABASE_NAME against the dump."
                                 % (self.database, ", ".join(self.databases) or "none"))
        if not self.inner.stopped:
            raise TamperedDumpError("Refusing to commit the restore: database %s's part of the cluster dump has no completion "
                                    "trailer (truncated?). Nothing was restored." % self.database)
        out.append(self.inner.finish() if not self.inner.ready else b"")
        return b"".join(out)

    def facts(self):
        facts = self.inner.facts() if self.inner is not None else {}
        facts.update(roles_in_dump=list(self.roles), databases_in_dump=list(self.databases),
                     superuser_roles_in_dump=list(self.superusers))
        others = [d for d in self.databases if d not in (self.database, "template1", "postgres")]
        notes = ["role attributes, passwords, memberships and settings of the dump are not restored (the target keeps its "
                 "own roles)"]
        if others:
            notes.append("other databases of the cluster dump are not restored: %s" % ", ".join(others))
        facts["not_restored"] = notes
        return facts


def make_filter(dump_kind, database, allowed=ALLOWED_EXTENSIONS):
    if dump_kind == "cluster":
        return ClusterFilter(database, allowed)
    if dump_kind == "database":
        return DumpFilter(database, allowed)
    raise PrivilegeError("Unknown dump kind %r (database or cluster)." % (dump_kind,))


# -- the plan: SQL of each step ---------------------------------------------------------------------------

class Plan(object):
    """Names and secrets of one restore; build with ``Plan.new`` and ``with_filter``. repr hides secrets."""

    def __init__(self, database, owner, role, *, password, restrict_key, token, allowed=ALLOWED_EXTENSIONS):
        self.database = database
        self.owner = owner
        self.role = role
        self.gate = role  # the gate schema is named like the role (the superuser owns it)
        self._password = password
        self.restrict_key = restrict_key
        self._token = token
        self.allowed = tuple(allowed)
        self.extensions = []
        self.schemas = []
        self.db_settings = []
        self.roles = []
        self.recorded = None

    @classmethod
    def new(cls, database, owner, allowed=ALLOWED_EXTENSIONS):
        return cls(database, owner, new_role_name(), password=binascii.hexlify(os.urandom(24)).decode("ascii"),
                   restrict_key=binascii.hexlify(os.urandom(24)).decode("ascii"), token=os.urandom(32), allowed=allowed)

    @property
    def password(self):
        return self._password

    def __repr__(self):
        return "Plan(database=%r, owner=%r, role=%r)" % (self.database, self.owner, self.role)

    def with_filter(self, filt):
        self.extensions = list(filt.extensions)
        self.schemas = list(filt.schemas)
        self.db_settings = list(filt.db_settings)
        # Roles a cluster dump names, minus its superusers (the old DB_USERNAME: its objects go to ``owner``).
        supers = getattr(filt, "superusers", []) or []
        self.roles = [r for r in getattr(filt, "roles", []) or [] if r not in supers]
        return self


STATE_SQL = """SET search_path = pg_catalog;
SELECT pg_catalog.json_build_object(
  'superuser', (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
  'user', current_user::text,
  'public_owner', (SELECT r.rolname::text FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                   WHERE n.nspname = 'public'),
  'extensions', (SELECT COALESCE(pg_catalog.json_agg(extname::text ORDER BY extname), '[]') FROM pg_catalog.pg_extension),
  'schemas', (SELECT COALESCE(pg_catalog.json_agg(nspname::text ORDER BY nspname), '[]') FROM pg_catalog.pg_namespace),
  'roles', (SELECT COALESCE(pg_catalog.json_agg(rolname::text ORDER BY rolname), '[]') FROM pg_catalog.pg_roles),
  'leftover_roles', (SELECT COALESCE(pg_catalog.json_agg(rolname::text ORDER BY rolname), '[]') FROM pg_catalog.pg_roles
                     WHERE rolname LIKE 'homelab\\_immich\\_restore\\_%%'),
  'db_settings', (SELECT COALESCE(pg_catalog.array_to_json(s.setconfig), '[]') FROM pg_catalog.pg_db_role_setting s
                  JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database() AND s.setrole = 0),
  'objects', (SELECT pg_catalog.json_agg(x ORDER BY x) FROM (
      SELECT c.oid::pg_catalog.regclass::text AS x FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                        AND d.objid = c.oid AND d.deptype = 'e')
      UNION ALL
      SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                        AND d.objid = p.oid AND d.deptype = 'e')
      LIMIT 20) o)
)::text;
"""


def state_sql():
    """One line of JSON: who we are, the owner of public, extensions, schemas, roles, database settings and
    (up to 20) objects that make the database non-empty."""
    return STATE_SQL.replace("%%", "%")


def _audit_sql(plan):
    role = quote_literal(plan.role)
    funcs = ", ".join(quote_literal("pg_catalog." + f) for f in SERVER_FILE_FUNCTIONS)
    roles = ", ".join(quote_literal(r) for r in SERVER_ROLES)
    untrusted = ", ".join(quote_literal(x) for x in UNTRUSTED_LANGUAGES)
    params = ", ".join(quote_literal(x) for x in FILE_PARAMETERS)
    return """DO $audit$
DECLARE
  found text[] := '{}';
  x text;
BEGIN
  PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  FOREACH x IN ARRAY ARRAY[%(funcs)s]::text[] LOOP
    IF pg_catalog.to_regprocedure(x) IS NOT NULL
       AND pg_catalog.has_function_privilege(%(role)s, pg_catalog.to_regprocedure(x), 'EXECUTE') THEN
      found := found || ('EXECUTE on ' || x);
    END IF;
  END LOOP;
  FOREACH x IN ARRAY ARRAY[%(roles)s]::text[] LOOP
    IF pg_catalog.to_regrole(x) IS NOT NULL AND pg_catalog.pg_has_role(%(role)s, x, 'USAGE') THEN
      found := found || ('membership of ' || x);
    END IF;
  END LOOP;
  SELECT found || COALESCE(pg_catalog.array_agg('usage of language ' || l.lanname), '{}') INTO found
    FROM pg_catalog.pg_language l
   WHERE l.lanpltrusted AND l.lanname = ANY (ARRAY[%(untrusted)s]::text[])
     AND pg_catalog.has_language_privilege(%(role)s, l.oid, 'USAGE');
  SELECT found || COALESCE(pg_catalog.array_agg('membership of ' || r.rolname), '{}') INTO found
    FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
   WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(role)s);
  IF pg_catalog.current_setting('server_version_num')::int >= 150000 THEN
    EXECUTE $q$SELECT COALESCE(pg_catalog.array_agg(a.parname || ' (' || p || ')'), '{}')
               FROM pg_catalog.pg_parameter_acl a, pg_catalog.unnest(ARRAY['ALTER SYSTEM', 'SET']) AS p
              WHERE pg_catalog.has_parameter_privilege($1, a.parname, p)
                AND (p = 'ALTER SYSTEM' OR a.parname = ANY ($2))$q$
      INTO x USING %(role)s, ARRAY[%(params)s]::text[];
    found := found || x::text[];
  END IF;
  IF pg_catalog.cardinality(found) > 0 THEN
    RAISE EXCEPTION 'homelab.immich restore audit: the restore role would reach outside the database through: %%',
      pg_catalog.array_to_string(found, ', ');
  END IF;
END
$audit$;
""" % {"funcs": funcs, "role": role, "roles": roles, "untrusted": untrusted, "params": params}


def _seal_sql(plan):
    """The gate's seal(): runs as the restore role (SECURITY INVOKER) at the very end of the load."""
    gate = quote_ident(plan.gate)
    allowed = ", ".join(quote_literal(x) for x in plan.allowed)
    compare = ""
    if plan.recorded is not None:
        compare = """
  WITH %(cte)s,
  cur AS (SELECT o.kind, o.name, pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(COALESCE(o.def, ''), 'UTF8')), 'hex') AS hash
          FROM objs o),
  bad AS (SELECT CASE WHEN r.hash IS NULL THEN 'unknown ' ELSE 'changed ' END
                 || pg_catalog.replace(c.kind, '_', ' ') || ' ' || c.name AS what
          FROM cur c LEFT JOIN %(gate)s.recorded r ON r.kind = c.kind AND r.name = c.name
          WHERE r.hash IS DISTINCT FROM c.hash ORDER BY 1 LIMIT 50)
  SELECT pg_catalog.string_agg(what, '; ') INTO found FROM bad;
  IF found IS NOT NULL THEN
    RAISE EXCEPTION 'homelab.immich restore guard: the dump planted or changed code: %%', found;
  END IF;""" % {"cte": fp.cte_sql(plan.role, ignore_schema=plan.gate), "gate": gate}
    return """CREATE FUNCTION %(gate)s.seal(token bytea) RETURNS void LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp AS $seal$
DECLARE
  found text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM %(gate)s.pending p WHERE p.xmin = pg_catalog.pg_current_xact_id()::xid) THEN
    RAISE EXCEPTION 'homelab.immich restore guard: the dump ended the restore''s transaction (a COMMIT or ROLLBACK in it)';
  END IF;
  SELECT pg_catalog.string_agg(pg_catalog.quote_ident(extname), ', ') INTO found FROM pg_catalog.pg_extension
   WHERE extname <> ALL (ARRAY[%(allowed)s]::text[]);
  IF found IS NOT NULL THEN
    RAISE EXCEPTION 'homelab.immich restore guard: extension(s) not on the allowlist: %%', found;
  END IF;%(compare)s
  INSERT INTO %(gate)s.done (token) VALUES (token);
END
$seal$;
""" % {"gate": gate, "allowed": allowed, "compare": compare}


def prepare_sql(plan, state):
    """The superuser's prepare transaction (psql -1 -v ON_ERROR_STOP=1, in the target database)."""
    role, gate, db = quote_ident(plan.role), quote_ident(plan.gate), quote_ident(plan.database)
    until = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(time.time() + PASSWORD_HOURS * 3600))
    out = ["SET search_path = pg_catalog;",
           "SET client_min_messages = warning;",
           "CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 2 "
           "PASSWORD %s VALID UNTIL %s;" % (role, quote_literal(scram_verifier(plan.password)), quote_literal(until)),
           # PUBLIC has CONNECT on a new database: granted only where it was revoked, so the ACL stays as it was
           "DO $c$ BEGIN IF NOT pg_catalog.has_database_privilege(%s, pg_catalog.current_database(), 'CONNECT') THEN "
           "EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %%I TO %%I', pg_catalog.current_database(), %s); "
           "END IF; END $c$;" % (quote_literal(plan.role), quote_literal(plan.role)),
           "ALTER SCHEMA public OWNER TO %s;" % role]
    for name in plan.schemas:
        if name in state.get("schemas", []):
            raise PrivilegeError("The target database already has schema %s, which the dump creates: it is not empty. "
                                 "Reset it (down -v) first. Nothing was touched." % name)
        out.append("CREATE SCHEMA %s AUTHORIZATION %s;" % (quote_ident(name), role))
    for name, schema in plan.extensions:
        out.append("CREATE EXTENSION IF NOT EXISTS %s WITH SCHEMA %s;" % (quote_ident(name), quote_ident(schema)))
    for key, value in plan.db_settings:
        out.append("ALTER DATABASE %s SET %s TO %s;" % (db, key, value))
    for name in plan.roles:
        if name not in state.get("roles", []) and name != plan.owner:
            out.append("CREATE ROLE %s NOLOGIN;" % quote_ident(name))
    out += ["CREATE SCHEMA %s;" % gate,
            "REVOKE ALL ON SCHEMA %s FROM PUBLIC;" % gate,
            "CREATE TABLE %s.done (token bytea NOT NULL, h bytea GENERATED ALWAYS AS (pg_catalog.sha256(token)) STORED UNIQUE);" % gate,
            "CREATE TABLE %s.pending (h bytea NOT NULL REFERENCES %s.done (h) DEFERRABLE INITIALLY DEFERRED);" % (gate, gate),
            "CREATE TABLE %s.recorded (kind text NOT NULL, name text NOT NULL, hash text NOT NULL);" % gate]
    if plan.recorded is not None:
        rows = [(o["kind"], o["name"], o["hash"]) for o in plan.recorded.get("objects") or []]
        for start in range(0, len(rows), 500):
            out.append("INSERT INTO %s.recorded VALUES %s;" % (gate, ", ".join(
                "(%s, %s, %s)" % tuple(quote_literal(v) for v in row) for row in rows[start:start + 500])))
    out += [_seal_sql(plan),
            "REVOKE ALL ON FUNCTION %s.seal(bytea) FROM PUBLIC;" % gate,
            "GRANT USAGE ON SCHEMA %s TO %s;" % (gate, role),
            "GRANT SELECT, INSERT ON %s.pending TO %s;" % (gate, role),
            "GRANT INSERT ON %s.done TO %s;" % (gate, role),
            "GRANT SELECT ON %s.recorded TO %s;" % (gate, role),
            "GRANT EXECUTE ON FUNCTION %s.seal(bytea) TO %s;" % (gate, role),
            _audit_sql(plan)]
    return "\n".join(out) + "\n"


def _token_hash(plan):
    return hashlib.sha256(plan._token).hexdigest()


def load_prologue(plan, restrict=True):
    """The first bytes of the restricted session's stream: \\restrict, the gate's pending row."""
    lines = []
    if restrict:
        lines.append("\\restrict %s" % plan.restrict_key)
    lines.append("INSERT INTO %s.pending (h) VALUES (pg_catalog.decode(%s, 'hex'));"
                 % (quote_ident(plan.gate), quote_literal(_token_hash(plan))))
    return ("\n".join(lines) + "\n").encode("ascii")


def load_epilogue(plan):
    """The last bytes: seal(token). Only this lets the transaction commit."""
    return ("\nSELECT %s.seal(pg_catalog.decode(%s, 'hex'));\n"
            % (quote_ident(plan.gate), quote_literal(binascii.hexlify(plan._token).decode("ascii")))).encode("ascii")


def finish_sql(plan, state):
    """The superuser's finish transaction: gate gone, everything to the owner, the role dropped."""
    role = quote_ident(plan.role)
    return "\n".join([
        "SET search_path = pg_catalog;",
        "SET client_min_messages = warning;",
        "DROP SCHEMA %s CASCADE;" % quote_ident(plan.gate),
        "REASSIGN OWNED BY %s TO %s;" % (role, quote_ident(plan.owner)),
        "ALTER SCHEMA public OWNER TO %s;" % quote_ident(state.get("public_owner") or plan.owner),
        "DROP OWNED BY %s;" % role,
        "DROP ROLE %s;" % role,
    ]) + "\n"


def terminate_sql(plan):
    """Run FIRST when anything fails: the role can no longer log in and its session is gone, so its open
    transaction rolls back and psql never reaches a COMMIT."""
    role = quote_literal(plan.role)
    return ("SET search_path = pg_catalog;\n"
            "DO $t$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s) THEN "
            "EXECUTE pg_catalog.format('ALTER ROLE %%I NOLOGIN', %s); END IF; END $t$;\n"
            "SELECT pg_catalog.count(pg_catalog.pg_terminate_backend(pid, 10000)) FROM pg_catalog.pg_stat_activity "
            "WHERE usename = %s;\n" % (role, role, role))


def abort_sql(plan, state):
    """Undo prepare (and anything the role managed to commit): the database as it was before."""
    role = quote_ident(plan.role)
    lit = quote_literal(plan.role)
    out = ["SET search_path = pg_catalog;",
           "SET client_min_messages = warning;",
           "DROP SCHEMA IF EXISTS %s CASCADE;" % quote_ident(plan.gate),
           "ALTER SCHEMA public OWNER TO %s;" % quote_ident(state.get("public_owner") or plan.owner),
           "DO $a$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s) THEN "
           "EXECUTE pg_catalog.format('DROP OWNED BY %%I CASCADE', %s); END IF; END $a$;" % (lit, lit)]
    for name, _schema in reversed(plan.extensions):
        if name not in state.get("extensions", []):
            out.append("DROP EXTENSION IF EXISTS %s CASCADE;" % quote_ident(name))
    for name in reversed(plan.schemas):
        if name not in state.get("schemas", []):
            out.append("DROP SCHEMA IF EXISTS %s CASCADE;" % quote_ident(name))
    if plan.db_settings:
        db = quote_ident(plan.database)
        before = dict(s.split("=", 1) for s in state.get("db_settings") or [] if "=" in s)
        for key, _value in plan.db_settings:
            out.append("ALTER DATABASE %s SET %s TO %s;" % (db, key, before[key]) if key in before
                       else "ALTER DATABASE %s RESET %s;" % (db, key))
    for name in plan.roles:
        if name not in state.get("roles", []) and name != plan.owner:
            out.append("DROP ROLE IF EXISTS %s;" % quote_ident(name))
    out.append("DROP ROLE IF EXISTS %s;" % role)
    return "\n".join(out) + "\n"


def check_state(plan, state):
    """Refusals before anything is touched: not a superuser, not an empty database, an unlisted extension."""
    untouched = "Nothing was touched."
    if not state.get("superuser"):
        raise PrivilegeError("The restore connects as %s, which is not a superuser: it cannot create the extensions a "
                             "restricted restore needs. Use the instance's DB_USERNAME (POSTGRES_USER). %s"
                             % (state.get("user"), untouched))
    if state.get("objects"):
        raise PrivilegeError("The target database %s is not empty (%s%s): a least-privilege restore loads into an empty "
                             "database, as after `docker compose down -v` and a fresh start of the database. Reset it first. %s"
                             % (plan.database, ", ".join(state["objects"][:8]), ", ..." if len(state["objects"]) > 8 else "",
                                untouched))
    extra = [e for e in state.get("extensions") or [] if e not in plan.allowed]
    if extra:
        raise PrivilegeError("The target database %s already has extension(s) %s, which are not Immich's: the restore "
                             "guard would refuse them. Reset the database (down -v) first. %s"
                             % (plan.database, ", ".join(extra), untouched))
    if plan.owner not in (state.get("roles") or []):
        raise PrivilegeError("The instance's owner role %s does not exist in the target cluster. %s" % (plan.owner, untouched))


# -- the driver -----------------------------------------------------------------------------------------

def _psql_script(container, user, database, script, *, password=None, single=True, timeout=600):
    extra = (["-1"] if single else []) + ["-v", "ON_ERROR_STOP=1", "-A", "-t"]
    argv = dx.psql_argv(container, user, database, extra, password=password)
    rc, out, err = dx.run(argv, input_bytes=script.encode("utf-8"), password=password, timeout=timeout)
    return rc, out, err


def _first_error(text):
    for line in text.splitlines():
        m = re.search(r"(ERROR|FATAL|PANIC):\s+(.*)$", line)
        if m:
            return m.group(2).strip()
    return text.strip()[-500:]


def read_state(container, user, database, password=None):
    rc, out, err = _psql_script(container, user, database, state_sql(), password=password, single=False)
    if rc != 0:
        raise PrivilegeError("Cannot read the target database %s in %s: %s. Nothing was touched."
                             % (database, container, _first_error(err)))
    for line in out.splitlines():
        if line.startswith("{"):
            state = json.loads(line)
            state["objects"] = state.get("objects") or []
            return state
    raise PrivilegeError("Cannot read the target database %s in %s: no answer. Nothing was touched." % (database, container))


def psql_version(container):
    rc, out, _err = dx.run(dx.exec_argv(container, ["psql", "--version"]), timeout=60)
    return out.strip() if rc == 0 else ""


def restore(container, user, database, chunks, *, dump_kind="database", owner=None, recorded=None, password=None,
            allowed=ALLOWED_EXTENSIONS, require_restrict=True, timeout=None, log=None):
    """Load a dump's plain SQL (an iterable of chunks, already decompressed and rewritten) into the EMPTY
    ``database`` of ``container`` with the least-privilege plan. ``user``: the superuser the restore
    connects as; ``owner``: who owns everything afterwards (default: ``user``); ``recorded``: the
    fingerprint the backup recorded (fingerprint.read of the set's file; None: not compared, said in
    the result). ``timeout``: seconds the load may take before its session is terminated (rolled back).
    Returns facts; raises PrivilegeError (TamperedDumpError for the dump's own content) after the abort
    step left the database as before."""
    t0 = time.monotonic()
    say = log or (lambda _msg: None)
    owner = owner or user
    plan = Plan.new(database, owner, allowed)
    plan.recorded = recorded
    # With require_restrict the stream simply starts with \\restrict: a psql that predates it stops at that first line
    # (ON_ERROR_STOP), before any SQL, and the message says so. Without it, psql is asked first.
    restrict = True if require_restrict else bool(psql_has_restrict(psql_version(container)))
    state = read_state(container, user, database, password)
    check_state(plan, state)
    filt = make_filter(dump_kind, database, allowed)
    it = iter(chunks)
    head = b""
    finished = False
    for chunk in it:
        head += filt.feed(chunk)
        if filt.ready:
            break
    else:
        head += filt.finish()
        finished = True
    plan.with_filter(filt)
    facts = {"role": plan.role, "restrict": bool(restrict), "fingerprint_checked": recorded is not None}
    prepared = False
    stage = None
    watchdog = None
    try:
        rc, _out, err = _psql_script(container, user, database, prepare_sql(plan, state), password=password)
        if rc != 0:
            raise PrivilegeError("The restore could not prepare its restricted role in %s: %s. Nothing was restored; the "
                                 "database is as before." % (container, _first_error(err)), step="prepare")
        prepared = True
        say("prepared %s: extensions %s" % (plan.role, ", ".join(n for n, _s in plan.extensions) or "none"))
        argv = dx.psql_argv(container, plan.role, database, ["-1", "-v", "ON_ERROR_STOP=1", "-f", "-"], password=plan.password)
        stage = dx.Stage("psql", argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, password=plan.password)
        prologue_lines = 0
        sink = write_all(stage.proc.stdin.fileno())
        t1 = time.monotonic()
        expired = []
        if timeout:
            def expire():
                expired.append(True)
                _psql_script(container, user, database, terminate_sql(plan), password=password, single=False)

            watchdog = threading.Timer(timeout, expire)
            watchdog.daemon = True
            watchdog.start()
        try:
            prologue = load_prologue(plan, restrict=bool(restrict))
            prologue_lines = prologue.count(b"\n")
            sink(prologue)
            if head:
                sink(head)
            for chunk in it:
                out = filt.feed(chunk)
                if out:
                    sink(out)
            tail = filt.finish() if not finished else b""
            if tail:
                sink(tail)
            sink(load_epilogue(plan))
        except BrokenPipeError:
            pass  # psql stopped at an error: its message says which
        except BaseException:
            _psql_script(container, user, database, terminate_sql(plan), password=password, single=False)
            raise
        try:
            stage.proc.stdin.close()
        except OSError:
            pass
        rc = stage.wait()
        if watchdog is not None:
            watchdog.cancel()
        facts["load_seconds"] = round(time.monotonic() - t1, 3)
        if expired:
            raise PrivilegeError("The restore into %s was still loading after %d s and was stopped: its transaction rolled "
                                 "back and the database is as before. A dump that keeps the server busy (pg_sleep, a "
                                 "huge cross join) does that; if the dump is just large, allow more time."
                                 % (container, timeout), step="load", error="timeout")
        if rc != 0:
            if re.search(r"invalid command \\restrict\b", stage.stderr):
                raise PrivilegeError(_OLD_PSQL % container, step="load", error="psql without \\restrict")
            detail = _first_error(stage.stderr)
            guard = "homelab.immich restore guard: " in detail
            where = _stream_line(stage.stderr)
            line = filt.dump_line(where - prologue_lines) if where and where > prologue_lines else None
            if line is not None and not guard:
                detail = "line %d of the dump: %s" % (line, detail)
            raise PrivilegeError(
                "The restore into %s failed inside its transaction, which rolled back: %s. %s"
                % (container, detail, _explain(detail)),
                step="load", error=detail, guard=guard, planted=_planted(detail), line=line)
        rc, _out, err = _psql_script(container, user, database, finish_sql(plan, state), password=password)
        if rc != 0:
            raise PrivilegeError("The restore loaded but could not hand its objects to %s: %s. The loaded data was "
                                 "removed again; the database is as before." % (owner, _first_error(err)), step="finish")
        prepared = False
    except BaseException as exc:
        if watchdog is not None:
            watchdog.cancel()
        if stage is not None:
            stage.kill()
        if prepared:
            rc, _out, err = _psql_script(container, user, database, terminate_sql(plan) + "BEGIN;\n" + abort_sql(plan, state)
                                         + "COMMIT;\n", password=password, single=False)
            if rc != 0 and isinstance(exc, PrivilegeError):
                exc.args = (str(exc) + " Cleaning up failed too (%s): reset the database (down -v) before trying again."
                            % _first_error(err),)
        if isinstance(exc, PrivilegeError):
            exc.facts.update(facts, filter=filt.facts())
        raise
    facts.update(filt.facts())
    if recorded is not None:  # the guard compared inside the transaction; this is the report (names, versions, missing)
        try:
            facts["fingerprint"] = fp.compare(recorded, fp.take(container, user, database, password=password))
        except fp.FingerprintError as exc:
            facts["fingerprint_error"] = str(exc)
    facts["seconds"] = round(time.monotonic() - t0, 3)
    return facts


_OLD_PSQL = ("The psql in %s predates \\restrict (it needs 13.22, 14.19, 15.14, 16.10, 17.6 or newer), which the "
             "restore uses to refuse every psql meta-command of a tampered dump; it stopped at that first line, before any "
             "SQL of the dump, and the database is as before. Update the database image to a current minor of its "
             "Postgres major (docker compose pull database), or restore with require_restrict=false, which relies on the "
             "filter's own refusal of meta-commands.")
_REFUSED = ("the server refused it inside the restore's single transaction, so nothing of the dump was committed and the "
            "database is as before. This backup must not be trusted: restore another set and check who can write to the "
            "backup target.")
_EXPLAIN = (
    (r"to COPY (to|from) a file|pg_write_server_files|pg_read_server_files",
     "The dump tried to write or read a file on the database server (COPY ... TO/FROM a file): " + _REFUSED),
    (r"permission denied for function (lo_export|lo_import)",
     "The dump tried to move a large object to or from a server file: " + _REFUSED),
    (r"permission denied for function pg_(read|ls|stat)", "The dump tried to read the database server's files: " + _REFUSED),
    (r"ALTER SYSTEM|permission denied to set parameter", "The dump tried to change the server's configuration: " + _REFUSED),
    (r"permission denied for language|permission denied to create extension|not on the allowlist",
     "The dump tried to run code outside SQL (an untrusted language, a C function or another extension): " + _REFUSED),
    (r"PROGRAM|pg_execute_server_program", "The dump tried to run a program on the database server: " + _REFUSED),
    (r"backslash commands are restricted", "The dump holds a psql meta-command (it would run on the database host): psql "
     "refused it and nothing of the dump was committed. This backup must not be trusted: restore another set."),
    (r"planted or changed code",
     "The dump planted or changed functions, triggers, defaults or the like that the backed-up database did not have; "
     "they would run later with the privileges of whoever uses the tables (Immich connects as a superuser). The restore's "
     "guard found them before the commit: nothing of the dump was committed and the database is as before. Restore "
     "another set and check who can write to the backup target."),
    (r"ended the restore's transaction|violates foreign key constraint \"pending_h_fkey\"",
     "The load did not reach its end inside one transaction (a COMMIT or ROLLBACK in the dump, or a cut stream): it was "
     "not committed, and what it committed outside the transaction was removed; the database is as before."),
)


def _explain(detail):
    for pattern, text in _EXPLAIN:
        if re.search(pattern, detail):
            return text
    return "Nothing of the dump was committed and the database is as before; fix the cause and restore again."


def _stream_line(stderr):
    m = re.search(r"^psql:<stdin>:(\d+): (?:ERROR|FATAL)", stderr, re.M)
    return int(m.group(1)) if m else None


def _planted(detail):
    m = re.search(r"planted or changed code: (.*)$", detail)
    return [x.strip() for x in m.group(1).split(";")] if m else []
