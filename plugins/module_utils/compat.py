# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The compatibility gate: does this dump load into this target? Asked before anything destructive.

Facts of the dump come from one streaming scan of its plain SQL (``DumpFacts``: feed it the chunks of
the verification pass; COPY data is skipped at C speed): header kind and versions, every ``CREATE
EXTENSION``, ``SET transaction_timeout``, ``\\restrict`` lines, the roles it names, its vector types and
index methods. Facts of the target are a dict (``target_facts`` gathers them through ``docker exec``):
the Postgres major of the DB image, its psql, ``pg_available_extensions``, ``shared_preload_libraries``,
the roles, free disk for the data folder. ``check`` joins both into ONE answer: every incompatibility
with what it means and its fix, and one message that says the instance was not touched.

Why each check (shared/immich-facts.md sections 4 and 7): a restore that fails inside psql after
``compose down -v`` has already destroyed the instance it was meant to replace; everything here is
known before that.

Stdlib only: this file also runs on managed hosts without Ansible.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump_format as df
from ansible_collections.homelab.immich.plugins.module_utils.vector_portable import (
    ACCESS_METHODS, VECTOR_EXTENSIONS, DumpWalker, type_provider, unquote,
)

IMAGE = "ghcr.io/immich-app/postgres:%d-vectorchord0.4.3-pgvectors0.2.0"
# Extensions that only work when their library is preloaded (#18432, #31186): extension -> library.
PRELOAD = {"vchord": "vchord", "vectors": "vectors"}
# The first psql of each major that understands \restrict / \unrestrict (the Aug 2025 releases).
RESTRICT_PSQL = {13: (13, 22), 14: (14, 19), 15: (15, 14), 16: (16, 10), 17: (17, 6)}
BUILTIN_ROLES = {"public", "current_user", "session_user", "current_role"}
DISK_FACTOR = 1.5           # data + indexes of a restored plain dump, measured against its plain size
DISK_MARGIN = 256 << 20     # WAL and temporary files while it loads
EXTENSION_NAMES = {"vchord": "VectorChord", "vector": "pgvector", "vectors": "pgvecto.rs"}

_ID = rb'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_OWNER_TO = re.compile(rb"\bOWNER TO (" + _ID + rb")")
_GRANT_TO = re.compile(rb"^GRANT .*? TO ((?:" + _ID + rb")(?:, *" + _ID + rb")*)(?: WITH \w+ OPTION| GRANTED BY (" + _ID + rb"))*;")
_REVOKE_FROM = re.compile(rb"^REVOKE .*? FROM ((?:" + _ID + rb")(?:, *" + _ID + rb")*)")
_CREATE_ROLE = re.compile(rb"^CREATE (?:ROLE|USER) (" + _ID + rb")")
_ALTER_ROLE = re.compile(rb"^ALTER (?:ROLE|USER) (" + _ID + rb")")
_SESSION_AUTH = re.compile(rb"^SET SESSION AUTHORIZATION '?(" + _ID + rb")")
_DEFAULT_PRIVS = re.compile(rb"^ALTER DEFAULT PRIVILEGES FOR (?:ROLE|USER) (" + _ID + rb")")
_CREATE_EXTENSION = re.compile(rb"^CREATE EXTENSION (?:IF NOT EXISTS )?(" + _ID + rb")(?: WITH SCHEMA (" + _ID + rb"))?")
_VECTOR_COLUMN = re.compile(rb"^[ \t]+" + _ID + rb"[ \t]+(?:(" + _ID + rb")\.)?vector\(\d+\)", re.M)
_INDEX_AM = re.compile(rb"^CREATE (?:UNIQUE )?INDEX .*? USING (" + _ID + rb") ")


class DumpFacts(DumpWalker):
    """A streaming scan of a plain dump for the gate; ``feed(chunk)`` then ``finish()`` -> facts."""

    BUFFERED = re.compile(rb"^(?:CREATE (?:UNLOGGED )?TABLE |CREATE (?:UNIQUE )?INDEX )")
    EMIT = False

    def __init__(self):
        DumpWalker.__init__(self)
        self._head = b""
        self.plain_bytes = 0
        self.extensions = []          # [{"name", "schema"}] in dump order
        self.transaction_timeout = 0
        self.restrict = 0
        self.roles = set()
        self.roles_created = set()
        self.vector_types = {}        # providing extension -> number of columns
        self.access_methods = {}      # vector index method -> number of indexes
        self.locale_provider = False
        self.databases = []

    def feed(self, chunk):
        if len(self._head) < 8192:
            self._head += chunk[:8192 - len(self._head)]
        self.plain_bytes += len(chunk)
        DumpWalker.feed(self, chunk)

    def _role(self, ident):
        name = unquote(ident)
        if name.lower() not in BUILTIN_ROLES and not name.startswith("pg_"):
            self.roles.add(name)

    def _sql_line(self, line, starts):
        if not starts:
            return
        text = line.rstrip(b"\r\n")
        if text.startswith(b"\\"):
            if text.startswith(b"\\restrict"):
                self.restrict += 1
            elif text.startswith(b"\\connect"):
                name = df.parse_connect(text)
                if name is not None and name not in self.databases:
                    self.databases.append(name)
            return
        if text.startswith(b"SET transaction_timeout"):
            self.transaction_timeout += 1
            return
        m = _CREATE_EXTENSION.match(text)
        if m:
            self.extensions.append({"name": unquote(m.group(1)), "schema": unquote(m.group(2)) if m.group(2) else None})
            return
        if text.startswith(b"CREATE DATABASE") and b"LOCALE_PROVIDER" in text:
            self.locale_provider = True
        for rx in (_CREATE_ROLE, _SESSION_AUTH, _DEFAULT_PRIVS, _ALTER_ROLE):
            m = rx.match(text)
            if m:
                self._role(m.group(1))
                if rx is _CREATE_ROLE:
                    self.roles_created.add(unquote(m.group(1)))
                return
        m = _OWNER_TO.search(text)
        if m:
            self._role(m.group(1))
            return
        m = _GRANT_TO.match(text) or _REVOKE_FROM.match(text)
        if m:
            for ident in re.findall(_ID, m.group(1)):
                self._role(ident)
            if m.re is _GRANT_TO and m.group(2):
                self._role(m.group(2))

    def _statement(self, first_line, data):
        if first_line.startswith(b"CREATE INDEX") or first_line.startswith(b"CREATE UNIQUE INDEX"):
            m = _INDEX_AM.match(first_line)
            am = m.group(1).lower() if m else None
            if am in ACCESS_METHODS:
                key = am.decode()
                self.access_methods[key] = self.access_methods.get(key, 0) + 1
            return b""
        schemas = dict((e["name"], e["schema"] or "public") for e in self.extensions)
        for m in _VECTOR_COLUMN.finditer(data):
            provider = type_provider(unquote(m.group(1)) if m.group(1) else "public", schemas)
            self.vector_types[provider] = self.vector_types.get(provider, 0) + 1
        return b""

    def finish(self):
        DumpWalker.flush(self)
        header = df.parse_header(self._head)
        created = [e["name"] for e in self.extensions]
        vector = sorted(set(created) & set(VECTOR_EXTENSIONS) | set(self.vector_types)
                        | set(ACCESS_METHODS[am.encode()] for am in self.access_methods))
        return {
            "dump_kind": header["dump_kind"],
            "server_version": header["server_version"],
            "pg_dump_version": header["pg_dump_version"],
            "server_major": df.major_of(header["server_version"]),
            "pg_dump_major": df.major_of(header["pg_dump_version"]),
            "extensions": list(self.extensions),
            "transaction_timeout": self.transaction_timeout > 0,
            "restrict": self.restrict > 0,
            "roles": sorted(self.roles),
            "roles_created": sorted(self.roles_created),
            "vector_extensions": vector,
            "vector_types": dict(self.vector_types),
            "vector_access_methods": dict(self.access_methods),
            "preload": sorted(PRELOAD[e] for e in vector if e in PRELOAD),
            "locale_provider": self.locale_provider,
            "databases": list(self.databases),
            "plain_bytes": self.plain_bytes,
        }


def scan_dump(chunks):
    """Facts of a whole plain dump from an iterable of chunks (see DumpFacts)."""
    facts = DumpFacts()
    for chunk in chunks:
        facts.feed(chunk)
    return facts.finish()


def scan_file(path):
    """Facts of a dump file (gzip, zstd or plain), read once as a stream."""
    facts = DumpFacts()
    reader = df.PlainReader(path)
    ok = False
    try:
        for chunk in reader.chunks():
            facts.feed(chunk)
        ok = True
    finally:
        reader.close(check=ok)
    return facts.finish()


# -- the target --------------------------------------------------------------------------------

def _version_tuple(version):
    m = re.search(r"(\d+)(?:\.(\d+))?", version or "")
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def preload_names(value):
    """``shared_preload_libraries`` ('vchord.so, "$libdir/vectors.so"', or a list) -> {'vchord', 'vectors'}."""
    items = value if isinstance(value, (list, tuple, set)) else (value or "").split(",")
    names = set()
    for item in items:
        name = item.strip().strip('"').strip("'").rsplit("/", 1)[-1]
        if name.endswith(".so"):
            name = name[:-3]
        if name:
            names.add(name)
    return names


def available_names(target):
    """Names of the extensions the target offers (a dict name -> version, or a list)."""
    avail = target.get("available_extensions") or {}
    return set(avail) if not isinstance(avail, dict) else set(avail.keys())


def usable_extensions(target):
    """Extensions that will really load on the target: offered, and preloaded where they must be.
    What to give vector_portable.VectorPortable as ``target_extensions``."""
    avail = available_names(target)
    preloaded = preload_names(target.get("shared_preload_libraries"))
    return sorted(e for e in avail if e not in PRELOAD or PRELOAD[e] in preloaded)


def _problem(code, what, fix):
    return {"code": code, "what": what, "fix": fix}


# DB_VECTOR_EXTENSION values of immich-server -> extension names.
IMMICH_VECTOR_SETTING = {"vectorchord": "vchord", "pgvecto.rs": "vectors", "pgvector": "vector"}


def _preload_problem(name, target, consequence):
    return _problem(
        "preload_missing",
        "The target image offers %s but shared_preload_libraries is %r: %s." % (
            name, target.get("shared_preload_libraries") or "", consequence),
        "Add `-c shared_preload_libraries=%s.so` back to the database service's command in docker-compose.yml "
        "(Immich's compose file has it), then `docker compose up -d database`." % PRELOAD[name])


def _gb(n):
    return "%.1f GB" % (n / 1e9)


def check(dump, target, *, remap_owners=False, vector_portable=False, reset_data=True,
          disk_factor=DISK_FACTOR, disk_margin=DISK_MARGIN):
    """Every incompatibility between a dump (``DumpFacts.finish()``) and a target (``target_facts``).

    ``remap_owners``: the restore hands ownership to the target's owner (a missing owner role is then
    fine, and said so). ``vector_portable``: the restore runs vector_portable, so a missing vector
    extension is a warning. ``reset_data``: the restore empties the data folder first, so the current
    cluster's size counts as free. Returns {"ok", "incompatibilities": [{code, what, fix}],
    "warnings": [str], "message"}.
    """
    problems = []
    warnings = []
    unchecked = list(target.get("unchecked") or ())
    major = target.get("server_major") or df.major_of(target.get("server_version"))
    src_major = dump.get("server_major")
    dump_major = dump.get("pg_dump_major")

    if major and src_major and src_major > major:
        problems.append(_problem(
            "postgres_older",
            "The dump comes from PostgreSQL %s (pg_dump %s) and the target image runs PostgreSQL %d: a dump does not "
            "load into an older server." % (dump.get("server_version"), dump.get("pg_dump_version"), major),
            "Use an image with Postgres %d or newer (e.g. %s) for the database service." % (src_major, IMAGE % src_major)))
    elif major and dump_major and dump_major > major:
        warnings.append("The dump was written by pg_dump %s, newer than the target's PostgreSQL %d: only the statements "
                        "checked here are known to differ." % (dump.get("pg_dump_version"), major))

    if major and major < 17 and dump.get("transaction_timeout"):
        problems.append(_problem(
            "transaction_timeout",
            "The dump sets transaction_timeout (written by pg_dump %s), a setting PostgreSQL %d does not know: psql "
            "stops at that line under ON_ERROR_STOP." % (dump.get("pg_dump_version") or ">= 17", major),
            "Take the dump with the database container's own pg_dump (`docker exec <db> pg_dump`, same major as the "
            "server), or use an image with Postgres 17 or newer."))

    if dump.get("restrict") and not target.get("psql_version"):
        unchecked.append("whether the target's psql accepts the dump's \\restrict lines (its version is unknown)")
    if dump.get("restrict"):
        psql = _version_tuple(target.get("psql_version"))
        if psql and psql[0] < 18 and (psql[0] not in RESTRICT_PSQL or psql < RESTRICT_PSQL[psql[0]]):
            problems.append(_problem(
                "restrict_unsupported",
                "The dump holds \\restrict lines (pg_dump 17.6/16.10/15.14/14.19/13.22 or newer) and the target's psql "
                "is %s, which rejects them." % target.get("psql_version"),
                "Use an image whose psql is from the August 2025 releases or newer (%s), e.g. a current %s."
                % ("/".join("%d.%d" % v for v in sorted(RESTRICT_PSQL.values(), reverse=True)), IMAGE % (psql[0] if psql[0] >= 14 else 14))))

    if major and major < 15 and dump.get("locale_provider"):
        problems.append(_problem(
            "locale_provider",
            "The cluster dump creates databases with LOCALE_PROVIDER (PostgreSQL 15 or newer) and the target runs %d."
            % major, "Use an image with Postgres 15 or newer (e.g. %s)." % (IMAGE % max(15, src_major or 15))))

    extensions_known = target.get("available_extensions") is not None
    preload_known = target.get("shared_preload_libraries") is not None
    avail = available_names(target)
    preloaded = preload_names(target.get("shared_preload_libraries"))
    vector_needed = set(dump.get("vector_extensions") or ())
    if not extensions_known:
        unchecked.append("the extensions the target offers (%s)" % ", ".join(
            e["name"] for e in dump.get("extensions") or ()) if dump.get("extensions") else "the target's extensions")
    for ext in (dump.get("extensions") or ()) if extensions_known else ():
        name = ext["name"]
        if name in avail:
            continue
        if name in VECTOR_EXTENSIONS:
            continue  # below, with what vector search needs
        problems.append(_problem(
            "extension_missing",
            "The dump creates extension %s, which the target image does not offer." % name,
            "Use an image that ships %s (Immich's %s does)." % (name, IMAGE % (major or 16))))
    # The extension Immich will use: DB_VECTOR_EXTENSION, else the first of vchord, vectors, vector offered.
    pick = IMMICH_VECTOR_SETTING.get(target.get("vector_extension") or "") or next(
        (e for e in ("vchord", "vectors", "vector") if e in avail), None)
    if not preload_known and (avail & set(PRELOAD)):
        unchecked.append("shared_preload_libraries (%s needs it; it is set when the database starts)"
                         % " and ".join(sorted(avail & set(PRELOAD))))
    for name in sorted(vector_needed) if extensions_known else ():
        label = EXTENSION_NAMES.get(name, name)
        if name in avail:
            if name in PRELOAD and PRELOAD[name] not in preloaded and name != pick and preload_known:
                problems.append(_preload_problem(name, target, "CREATE EXTENSION %s in the dump fails" % name))
            continue
        offered = sorted(avail & set(VECTOR_EXTENSIONS))
        what = ("The dump uses the vector extension %s (%s) and the target image offers %s." %
                (name, label, ("only " + ", ".join(offered)) if offered else "no vector extension at all"))
        if vector_portable:
            warnings.append(what + " immich_restore_vector_portable is on: its columns load as real[] (or keep the "
                            "target's vector type), its indexes and CREATE EXTENSION are left out, and Immich re-creates "
                            "them at its next start.")
            continue
        if name == "vectors":
            fix = ("Use an image that still has pgvecto.rs (%s) or restore with immich_restore_vector_portable: true."
                   % (IMAGE % (src_major or major or 16)))
        elif name == "vchord":
            fix = ("Use an image with VectorChord (ghcr.io/immich-app/postgres, e.g. %s) or restore with "
                   "immich_restore_vector_portable: true." % (IMAGE % (src_major or major or 16)))
        else:
            fix = ("Use an image with pgvector (ghcr.io/immich-app/postgres has it) or restore with "
                   "immich_restore_vector_portable: true.")
        problems.append(_problem("vector_extension_missing", what, fix))
    if pick in PRELOAD and PRELOAD[pick] not in preloaded and preload_known:
        problems.append(_preload_problem(pick, target, "Immich's start fails (it uses %s%s)" % (
            pick, " as DB_VECTOR_EXTENSION says" if target.get("vector_extension") else ", the first vector extension offered")
            + (", and so does CREATE EXTENSION %s in the dump" % pick if pick in vector_needed else "")))

    if target.get("roles") is None:
        unchecked.append("the roles the dump names")
    roles = set(target.get("roles") or ())
    missing_roles = sorted(set(dump.get("roles") or ()) - roles - set(dump.get("roles_created") or ())) \
        if target.get("roles") is not None else []
    if missing_roles:
        what = ("The dump names role%s %s (OWNER TO / GRANT) that the target does not have."
                % ("" if len(missing_roles) == 1 else "s", ", ".join(missing_roles)))
        if remap_owners:
            warnings.append(what + " Fine: the restore hands ownership to the target's owner.")
        else:
            problems.append(_problem(
                "owner_missing", what,
                "Restore with owner remapping (the instance's DB_USERNAME differs from the dump's: #27239), or create "
                "the role first: `docker exec <db> psql -U <user> -c 'CREATE ROLE \"%s\"'`." % missing_roles[0]))

    free = target.get("free_bytes")
    plain = dump.get("plain_bytes") or 0
    if free is None:
        unchecked.append("free disk for the data folder")
    if not major:
        unchecked.append("the target's Postgres version")
    if free is not None and plain:
        reclaim = (target.get("cluster_bytes") or 0) if reset_data else 0
        need = int(plain * disk_factor) + disk_margin
        if free + reclaim < need:
            problems.append(_problem(
                "disk",
                "The dump is %s of SQL; restored it needs about %s, and the data folder %s has %s free%s."
                % (_gb(plain), _gb(need), target.get("data_path") or "", _gb(free),
                   (" (+%s of the current database, reset first)" % _gb(reclaim)) if reclaim else ""),
                "Free %s on the disk of DB_DATA_LOCATION, or move DB_DATA_LOCATION to a larger disk."
                % _gb(need - free - reclaim)))

    return {"ok": not problems, "incompatibilities": problems, "warnings": warnings, "unchecked": unchecked,
            "message": message(problems, unchecked)}


def message(problems, unchecked=()):
    """One message for the user: each incompatibility and its fix; the instance was not touched."""
    if not problems:
        return "The dump and the target are compatible%s." % (
            " (not checked: %s)" % "; ".join(unchecked) if unchecked else "")
    lines = ["Refusing to restore: %d incompatibilit%s between the dump and the target. The instance was not touched "
             "(nothing was stopped, reset or deleted)." % (len(problems), "y" if len(problems) == 1 else "ies")]
    for p in problems:
        lines.append("- %s Fix: %s" % (p["what"], p["fix"]))
    if unchecked:
        lines.append("Not checked: %s." % "; ".join(unchecked))
    return "\n".join(lines)


def gate_check(result, dump, target):
    """The gate's answer as a named check for the restore summary and the drill's JUnit: what the dump
    needs, what the target offers (and where that was read), what could not be checked."""
    exts = ", ".join(e["name"] for e in dump.get("extensions") or ()) or "none"
    where = target.get("source") or "the target"
    detail = ("%s dump of PostgreSQL %s (pg_dump %s; extensions %s) into PostgreSQL %s (%s)" % (
        dump.get("dump_kind") or "?", dump.get("server_version") or "?", dump.get("pg_dump_version") or "?", exts,
        target.get("server_version") or "?", where))
    if result["ok"]:
        detail = "compatible: " + detail
    else:
        detail = "; ".join(p["what"] for p in result["incompatibilities"]) + " (" + detail + ")"
    if result.get("warnings"):
        detail += "; " + " ".join(result["warnings"])
    if result.get("unchecked"):
        detail += "; not checked: " + "; ".join(result["unchecked"])
    return {"name": "compatibility gate", "ok": bool(result["ok"]), "detail": detail, "skipped": False}


# -- gathering the target's facts through docker exec -------------------------------------------------

DATA_DIR = "/var/lib/postgresql/data"
TARGET_SQL = {
    "server_version": "SHOW server_version;",
    "server_version_num": "SHOW server_version_num;",
    "shared_preload_libraries": "SHOW shared_preload_libraries;",
    "available_extensions": "SELECT name, coalesce(default_version, '') FROM pg_available_extensions ORDER BY 1;",
    "roles": "SELECT rolname FROM pg_roles ORDER BY 1;",
    "cluster_bytes": "SELECT sum(pg_database_size(datname))::bigint FROM pg_database;",
}


def _run_text(container, cmd):
    rc, out, err = dx.run(dx.exec_argv(container, cmd))
    return rc, (out or err).strip()


def image_postgres_version(container):
    """'16.4' from the binaries in the container (works while the server is down): `postgres --version`,
    else the Debian layout's /usr/lib/postgresql/<major>/bin/postgres."""
    rc, out = _run_text(container, ["postgres", "--version"])
    if rc != 0:
        rc, listing = _run_text(container, ["ls", "/usr/lib/postgresql"])
        majors = sorted((int(x) for x in listing.split() if x.isdigit()), reverse=True) if rc == 0 else []
        if not majors:
            return None
        rc, out = _run_text(container, ["/usr/lib/postgresql/%d/bin/postgres" % majors[0], "--version"])
    m = re.search(r"\(PostgreSQL\) (\S+)", out) if rc == 0 else None
    return m.group(1) if m else None


def psql_version(container):
    rc, out = _run_text(container, ["psql", "--version"])
    m = re.search(r"\(PostgreSQL\) (\S+)", out) if rc == 0 else None
    return m.group(1) if m else None


def free_bytes(container=None, data_path=None, data_dir=DATA_DIR):
    """Free bytes for the data folder: statvfs of DB_DATA_LOCATION on this host when it is here (a bind
    mount), else `df` inside the container (a named volume). None when neither answers."""
    if data_path:
        probe = data_path
        while probe and not os.path.exists(probe):
            probe = os.path.dirname(probe.rstrip("/"))  # a data folder to be created: its parent's disk
        if probe:
            st = os.statvfs(probe)
            return st.f_bavail * st.f_frsize
    if container:
        rc, out = _run_text(container, ["df", "-P", "-k", data_dir])
        if rc == 0:
            rows = out.splitlines()
            if len(rows) >= 2 and len(rows[-1].split()) >= 4:
                return int(rows[-1].split()[3]) * 1024
    return None


def target_facts(container, user, database="postgres", *, password=None, data_path=None, query=None):
    """What the gate needs to know about the target, read from its running database container.

    ``data_path``: DB_DATA_LOCATION on this host (for statvfs); ``query`` replaces dx.query in tests.
    Raises dx.DockerError when the database does not answer (the caller decides whether to fall back
    on ``image_postgres_version`` and the control files).
    """
    query = query or dx.query

    def one(key):
        return query(container, user, database, TARGET_SQL[key], password)

    version = one("server_version")[0][0]
    num = one("server_version_num")[0][0]
    facts = {
        "server_version": version.split()[0],
        "server_major": int(num) // 10000 if num.isdigit() and int(num) >= 100000 else df.major_of(version),
        "psql_version": psql_version(container),
        "shared_preload_libraries": (one("shared_preload_libraries") or [[""]])[0][0],
        "available_extensions": dict((r[0], r[1] if len(r) > 1 else "") for r in one("available_extensions")),
        "roles": [r[0] for r in one("roles")],
        "data_path": data_path or DATA_DIR,
    }
    rows = one("cluster_bytes")
    facts["cluster_bytes"] = int(rows[0][0]) if rows and rows[0] and rows[0][0].isdigit() else 0
    facts["free_bytes"] = free_bytes(container, data_path)
    return facts


def gate(dump_facts, target, **options):
    """check() with the gate's refusal as an exception: raises GateError (message, result) or returns the result."""
    result = check(dump_facts, target, **options)
    if not result["ok"]:
        raise GateError(result["message"], result)
    return result


class GateError(Exception):
    """The dump does not fit the target; ``result`` holds every incompatibility."""

    def __init__(self, msg, result):
        Exception.__init__(self, msg)
        self.result = result


# -- the target when its database is not running: the image the restore will start ---------------------

_PRELOAD_ARG = re.compile(r"shared_preload_libraries\s*=\s*(.*)$")
_CONFIG_FILE_ARG = re.compile(r"config_file\s*=\s*(\S+)$")


def _image_argv(image, entrypoint, *args):
    """``docker run --rm`` of the DB image with another entrypoint: no network, never pulled, nothing of the
    instance mounted (its containers are not touched)."""
    return [dx.DOCKER, "run", "--rm", "--pull=never", "--network=none", "--entrypoint", entrypoint, image] + list(args)


def _conf_value(text):
    """The value of a ``shared_preload_libraries = 'a,b'  # comment`` line (the last one wins)."""
    value = None
    for raw in (text or "").splitlines():
        line = raw.split("#", 1)[0].strip()
        m = _PRELOAD_ARG.search(line)
        if m and line.startswith("shared_preload_libraries"):
            value = m.group(1).strip().strip("'\"")
    return value


def preload_from_args(args):
    """(shared_preload_libraries, config_file) named by a command line (``-c key=value`` or ``--key=value``)."""
    preload = config = None
    for arg in args or ():
        text = str(arg).lstrip("-")
        m = _PRELOAD_ARG.match(text)
        if m:
            preload = m.group(1).strip().strip("'\"")
        m = _CONFIG_FILE_ARG.match(text)
        if m:
            config = m.group(1)
    return preload, config


def image_facts(image, command=None, run=None):
    """What the gate needs from a DB image whose container is not running (a wiped or bare host), read with
    ``docker run --rm --entrypoint ...`` of the image: its Postgres major and version, its psql, the
    extensions it ships (their control files) and shared_preload_libraries (the compose ``command``, the
    image's own command, a ``config_file`` it names, or the sample that initdb copies). What cannot be
    read is None and named in ``unchecked``: check() then says so instead of guessing."""
    run = run or dx.run
    facts = {"source": "image %s (its database was not running)" % image, "unchecked": [], "server_version": None,
             "server_major": None, "psql_version": None, "available_extensions": None, "shared_preload_libraries": None,
             "image": image}
    if not image:
        facts["unchecked"].append("the database image (the compose file names none)")
        return facts
    rc, out, err = run(_image_argv(image, "find", "/usr/lib/postgresql", "/usr/share/postgresql", "-maxdepth", "3",
                                   "(", "-name", "*.control", "-o", "-path", "*/bin/postgres", ")"), timeout=180)
    paths = out.split() if rc == 0 or out else []
    majors = sorted(int(p.split("/")[4]) for p in paths
                    if p.startswith("/usr/lib/postgresql/") and p.endswith("/bin/postgres") and p.split("/")[4].isdigit())
    if not majors:
        facts["unchecked"].append("the image %s could not be read (%s)" % (image, (err or out).strip()[-200:] or "no Postgres in it"))
        return facts
    major = majors[-1]
    bindir = "/usr/lib/postgresql/%d/bin" % major
    prefix = "/usr/share/postgresql/%d/extension/" % major
    facts["available_extensions"] = dict((p[len(prefix):-len(".control")], "") for p in sorted(paths)
                                         if p.startswith(prefix) and p.endswith(".control"))
    for key, binary in (("server_version", "postgres"), ("psql_version", "psql")):
        rc, out, _err = run(_image_argv(image, "%s/%s" % (bindir, binary), "--version"), timeout=120)
        m = re.search(r"\(PostgreSQL\) (\S+)", out) if rc == 0 else None
        facts[key] = m.group(1) if m else None
    facts["server_major"] = df.major_of(facts["server_version"]) or major
    facts["shared_preload_libraries"] = _image_preload(image, command, run, set(facts["available_extensions"]))
    return facts


def _image_preload(image, command, run, offered):
    preload, config = preload_from_args(command)
    if preload is not None:
        return preload
    rc, out, _err = run([dx.DOCKER, "image", "inspect", "--format", "{{json .Config.Entrypoint}} {{json .Config.Cmd}}", image])
    if rc == 0:
        args = []
        for part in out.strip().split(" ", 1):
            try:
                args += json.loads(part) or []
            except ValueError:
                pass
        preload, config2 = preload_from_args(args)
        if preload is not None:
            return preload
        config = config or config2
    # the file the image's command names, and the samples initdb copies (Debian keeps one per major)
    rc, out, _err = run(_image_argv(image, "grep", "-rhs", "shared_preload_libraries", *([config] if config else [])
                                    + ["/usr/share/postgresql"]), timeout=120)
    value = _conf_value(out) if rc in (0, 1) else None
    if value is not None:
        return value
    if not offered & set(PRELOAD):
        return ""  # nothing in this image needs a preload: the setting cannot matter
    return None


def gather_target(instance, *, reset_data=True, password=None, run=None, query=None, command=None):
    """The facts of the target a restore will create: the running database container when it runs the image the
    compose file names, else that image (``image_facts``). ``reset_data``: the restore empties the data folder,
    so the new cluster's only role is the instance's DB_USERNAME (POSTGRES_USER). ``command``: the database
    service's compose ``command`` (or a function returning it, called only when the image is read)."""
    container = instance.get("db_container")
    image = instance.get("db_image")
    user = instance.get("db_user") or "postgres"
    data_path = instance.get("db_data_location") if instance.get("db_data_kind") == "bind" else None
    running_image = None
    if container and dx.running(container):
        info = dx.inspect(container) or {}
        running_image = (info.get("Config") or {}).get("Image")
    facts = None
    notes = []
    if running_image is not None and (not image or running_image == image):
        try:
            facts = target_facts(container, user, "postgres", password=password, data_path=data_path, query=query)
            facts["source"] = "the running database container %s (%s)" % (container, running_image)
            facts["unchecked"] = []
        except dx.DockerError as exc:
            notes.append("the running database %s did not answer (%s): its image was read instead" % (container, str(exc)[:160]))
    elif running_image is not None:
        notes.append("the database container runs %s but the compose file names %s, which the restore will start: "
                     "that image was read" % (running_image, image))
    if facts is None:
        facts = image_facts(image, command=command() if callable(command) else command, run=run)
        facts["free_bytes"] = free_bytes(None, data_path) if data_path else None
        facts["cluster_bytes"] = 0
        facts["roles"] = None
        facts["data_path"] = data_path or DATA_DIR
    if reset_data:
        facts["roles"] = [user]
    facts["notes"] = notes
    return facts
