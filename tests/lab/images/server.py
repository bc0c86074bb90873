"""Immich server stand-in for the homelab.immich lab: immich-server v2.7.5 where backup and restore touch it.

Stdlib Python only; talks to Postgres through psql (password in the environment, never on a command
line). What it models, in the order the real server does it (read from the Immich source):

Boot (main.ts Workers.bootstrap, DatabaseService, StorageService):
  - waits for the database; `system_metadata` key `maintenance-mode` {"isMaintenanceMode": true} starts
    the maintenance worker instead of the API (no migrations, no mount checks; only /api/server/ping,
    /version, /config and /api/admin/maintenance/* answer, everything else is 404);
  - Postgres >= 14; vector extension: DB_VECTOR_EXTENSION (vectorchord | pgvecto.rs | pgvector) or the
    first of vchord, vectors, vector in pg_available_extensions ("No vector extension found" and exit
    otherwise). Lab only: with LAB_ALLOW_NO_VECTOR=true and no vector extension at all in the image
    (our PG 15), it runs without one and says so; embeddings are real[] and have no vector index then.
    Version ranges, create/update, "the extension was downgraded" refusal, other vector extensions
    dropped, clip_index/face_index rebuilt when missing or of the wrong kind (embedding cast through
    real[] back to vector(dim));
  - migrations (tests/lab/immich_schema.sql, recorded in kysely_migrations) unless DB_SKIP_MIGRATIONS=true;
    an applied migration this version does not know stops the boot (a dump of a newer Immich), a
    TypeORM-only database (Immich < 1.132) stops it with the TypeORM upgrade error; then the schema drift
    check ("Detected schema drift" with what is missing, or "No schema drift detected");
  - mount checks: `system-flags`.mountChecks per folder (encoded-video, library, upload, profile, thumbs,
    backups): an unflagged folder gets its folder and `.immich` marker, then its flag; every folder is
    read, then its marker OVERWRITTEN with Date.now() at every boot; a flagged folder without marker
    stops the boot (exit 1) unless IMMICH_IGNORE_MOUNT_CHECK_ERRORS=true;
  - media location: IMMICH_MEDIA_LOCATION, else the one of /data, /usr/src/app/upload that exists;
    compared with `system_metadata` MediaLocation on a sample of asset_file paths: migrated
    (asset, asset_file, person, user paths) when the previous location explains them, otherwise
    "Detected an inconsistent media location" and exit 1.
API with Immich's paths and JSON shapes: auth (admin sign-up, login, bearer / cookie / x-api-key, API
keys; sessions and keys hashed in the database), uploads (original, SHA-1 checksum, exif, job status,
thumbnail + preview through the job queues), albums, statistics, originals, thumbnails (500 ENOENT when
the file is gone, 404 without a row), jobs (thumbnailGeneration force=false only for assets without
thumbnail/preview rows, force=true for all), users, and the lab-only GET /api/lab/stats.
IMMICH_VERSION < 1.137 models the TypeORM era (tests/lab/immich_schema_v1130.sql: plural tables,
`migrations`, paths relative to /usr/src/app such as upload/upload/<userId>/...).

`immich-standin admin CMD` is `immich-admin` (schema-check, list-users, version, enable-maintenance-mode,
disable-maintenance-mode); `immich-standin healthcheck` is the image's HEALTHCHECK.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

SHARE = os.environ.get("IMMICH_STANDIN_SHARE", "/usr/local/share")
DEFAULT_VERSION = (2, 7, 5)
NEW_NAMES_SINCE = (1, 137, 0)   # table renames (PR #19891), kysely only, absolute paths, media location
MAINTENANCE_SINCE = (2, 4, 0)
FOLDERS = ("encoded-video", "library", "upload", "profile", "thumbs", "backups")  # StorageFolder order
DOCS_FOLDER_CHECKS = "Please see https://docs.immich.app/administration/system-integrity#folder-checks for more information."
DOCS_FOLDER_CHECKS_OLD = "Please see https://immich.app/docs/administration/system-integrity#folder-checks for more information."
ERR_INCONSISTENT = ("Detected an inconsistent media location. For more information, see "
                    "https://docs.immich.app/errors#inconsistent-media-location")
ERR_DRIFT = "Detected schema drift. For more information, see https://docs.immich.app/errors#schema-drift"
ERR_TYPEORM = "Invalid upgrade path. For more information, see https://docs.immich.app/errors/#typeorm-upgrade"
# extension -> (name Immich prints, supported range [lo, hi), index access method)
VECTOR_EXTENSIONS = {
    "vchord": ("VectorChord", ((0, 3, 0), (2, 0, 0)), "vchordrq"),
    "vectors": ("pgvecto.rs", ((0, 2, 0), (0, 4, 0)), "vectors"),
    "vector": ("pgvector", ((0, 5, 0), (1, 0, 0)), "hnsw"),
}
VECTOR_ORDER = ("vchord", "vectors", "vector")
ENV_VECTOR = {"vectorchord": "vchord", "pgvecto.rs": "vectors", "pgvector": "vector"}
VECTOR_INDEXES = (("clip_index", "smart_search"), ("face_index", "face_search"))
QUEUES = ("thumbnailGeneration", "metadataExtraction", "videoConversion", "faceDetection", "facialRecognition",
          "smartSearch", "duplicateDetection", "backgroundTask", "storageTemplateMigration", "migration", "search",
          "sidecar", "library", "notifications", "backupDatabase", "ocr", "workflow")
IMAGE_EXT = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
             ".heic": "image/heic", ".heif": "image/heif", ".gif": "image/gif", ".tif": "image/tiff",
             ".tiff": "image/tiff", ".avif": "image/avif", ".bmp": "image/bmp", ".dng": "image/dng",
             ".nef": "image/nef", ".cr2": "image/x-canon-cr2", ".arw": "image/x-sony-arw", ".raw": "image/x-panasonic-raw"}
VIDEO_EXT = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm", ".mkv": "video/x-matroska",
             ".avi": "video/x-msvideo", ".3gp": "video/3gpp", ".m4v": "video/x-m4v", ".mts": "video/mp2t"}


class StartupError(Exception):
    """ImmichStartupError: the boot stops, the process exits 1 (and compose restarts it)."""


class DbError(Exception):
    pass


class HttpError(Exception):
    def __init__(self, status, message, **extra):
        super().__init__(message)
        self.status = status
        self.body = dict(extra, message=message)


# ---- small helpers ---------------------------------------------------------------------------------

def parse_version(text):
    found = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", (text or "").strip())
    return tuple(int(x) for x in found.groups()) if found else None


def server_version(env=None):
    return parse_version((env if env is not None else os.environ).get("IMMICH_VERSION")) or DEFAULT_VERSION


def version_text(ver):
    return "v%d.%d.%d" % ver


def ext_version(text):
    nums = [int(x) for x in re.findall(r"\d+", text or "")[:3]]
    return tuple(nums + [0] * (3 - len(nums))) if nums else None


def env_true(name, env=None):
    return ((env if env is not None else os.environ).get(name) or "").strip().lower() == "true"


def now_ms():
    return str(int(time.time() * 1000))


def lit(value):
    """A SQL literal (standard_conforming_strings on)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "'\\x%s'::bytea" % bytes(value).hex()
    if isinstance(value, (dict, list)):
        return lit(json.dumps(value)) + "::jsonb"
    text = str(value)
    if "\x00" in text:
        raise HttpError(400, "Validation failed")
    return "'" + text.replace("'", "''") + "'"


def ident(name):
    return '"%s"' % name.replace('"', '""')


def bytea(value):
    """A bytea as json_agg gives it ("\\x0a1b...") -> bytes."""
    if value is None:
        return None
    return bytes.fromhex(value[2:]) if value.startswith("\\x") else value.encode()


def b64(data):
    return base64.b64encode(data).decode() if data is not None else None


def is_uuid(text):
    try:
        uuid.UUID(str(text))
    except ValueError:
        return False
    return True


def sha1(data):
    return hashlib.sha1(data, usedforsecurity=False).digest()


def log(msg, ctx="Bootstrap", level="LOG", worker="Api"):
    """Immich's console format: [Nest] PID  - DATE     LEVEL [Worker:Context] message."""
    stamp = time.strftime("%m/%d/%Y, %I:%M:%S %p")
    print("[Nest] %d  - %s %7s [%s:%s] %s" % (os.getpid(), stamp, level, worker, ctx, msg), flush=True)


# ---- schema files --------------------------------------------------------------------------------

MIGRATION_RE = re.compile(r"^-- migration: (\S+)[ \t]*$", re.M)


def schema_path(old, share=None):
    return os.path.join(share or SHARE, "immich_schema_v1130.sql" if old else "immich_schema.sql")


def load_migrations(path):
    """[(name, sql)] of the `-- migration: NAME` sections of a schema file, in file order."""
    with open(path) as fh:
        parts = MIGRATION_RE.split(fh.read())
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]


def vector_index_sql(ext, index, table):
    if ext == "vector":
        return ("CREATE INDEX IF NOT EXISTS %s ON %s USING hnsw (embedding vector_cosine_ops) "
                "WITH (ef_construction = 300, m = 16)" % (index, table))
    if ext == "vchord":
        return ("CREATE INDEX IF NOT EXISTS %s ON %s USING vchordrq (embedding vector_cosine_ops) WITH (options = $$"
                "residual_quantization = false\n[build.internal]\nlists = [1]\nspherical_centroids = true\n"
                "build_threads = 4\nsampling_factor = 1024\n$$)" % (index, table))
    return ("CREATE INDEX IF NOT EXISTS %s ON %s USING vectors (embedding vector_cos_ops) WITH (options = $$"
            "optimizing.optimizing_threads = 4\n[indexing.hnsw]\nm = 16\nef_construction = 300\n$$)" % (index, table))


def render(sql, ext):
    """Fill the schema templates for the chosen vector extension (None: the lab's no-vector mode)."""
    sql = sql.replace("{{EMBEDDING}}", "vector(512)" if ext else "real[]")
    return re.sub(r"\{\{VECTOR_INDEX:(\w+):(\w+)\}\}",
                  lambda m: (vector_index_sql(ext, m.group(1), m.group(2)) + ";") if ext else "", sql)


def expected_schema(path, ext):
    """What the migrations create: ([tables], {index: ddl})."""
    sql = "\n".join(render(body, ext) for _name, body in load_migrations(path))
    tables = [t.strip('"') for t in re.findall(r'CREATE TABLE IF NOT EXISTS ("?\w+"?)', sql)]
    indexes = {}
    for m in re.finditer(r'CREATE (?:UNIQUE )?INDEX IF NOT EXISTS ("?\w+"?) ON [^;]+;', sql):
        indexes[m.group(1).strip('"')] = m.group(0)
    return tables, indexes


# ---- the database --------------------------------------------------------------------------------

def psql_binary():
    """The real psql (Debian's /usr/bin/psql is a perl wrapper that costs ~70 ms a call)."""
    found = sorted(p for p in (os.path.join("/usr/lib/postgresql", v, "bin", "psql")
                               for v in (os.listdir("/usr/lib/postgresql") if os.path.isdir("/usr/lib/postgresql") else []))
                   if os.path.exists(p))
    return found[-1] if found else "psql"


MESSAGE_RE = re.compile(r"^(?:psql:[^:]*:\d+: )?(ERROR|FATAL|PANIC|WARNING|NOTICE|INFO|LOG|DEBUG\d?):  ")


class Session:
    """One long-running psql: a statement batch in, its output up to a sentinel line out."""

    SENTINEL = "__immich_standin_batch_done__"

    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, text=True, encoding="utf-8", errors="replace", bufsize=1)
        self.query("SET client_min_messages TO warning")

    def query(self, sql):
        try:
            self.proc.stdin.write("BEGIN;\n%s\n;\nCOMMIT;\n\\echo %s\n" % (sql, self.SENTINEL))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise DbError("database connection lost: %s" % exc) from exc
        out, errors = [], []
        for line in self.proc.stdout:
            line = line.rstrip("\n")  # noqa: PLW2901 - the line without its end
            if line == self.SENTINEL:
                break
            found = MESSAGE_RE.match(line)
            if found and found.group(1) in ("ERROR", "FATAL", "PANIC"):
                errors.append(line[found.start(1):])
            elif line.startswith("psql: error:"):
                errors.append(line)
            elif found or line.startswith(("psql:", "DETAIL:", "HINT:", "CONTEXT:", "QUERY:")):
                if errors:
                    errors.append(line)
            elif errors and (line.startswith("LINE ") or line.strip() == "^" or re.match(r"^\s+\^$", line)):
                errors.append(line)
            else:
                out.append(line)
        else:
            self.close()
            raise DbError("\n".join(errors) or "psql ended: database connection lost")
        if errors:
            raise DbError("\n".join(errors))
        return "\n".join(out).strip()

    def alive(self):
        return self.proc.poll() is None

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Database:
    """psql sessions (SQL on stdin, never argv; password in the environment); rows come back as JSON.

    Every call is one transaction: all of its statements or none."""

    def __init__(self, env=None):
        env = env if env is not None else os.environ
        self.url = env.get("DB_URL") or ""
        self.host = env.get("DB_HOSTNAME", "database")
        self.port = env.get("DB_PORT", "5432")
        self.user = env.get("DB_USERNAME", "postgres")
        self.name = env.get("DB_DATABASE_NAME", "immich")
        self.env = dict(os.environ, PGPASSWORD=env.get("DB_PASSWORD", "postgres"), PGCONNECT_TIMEOUT="5",
                        PGCLIENTENCODING="UTF8")
        self.lock = threading.Lock()
        self.idle = []

    def cmd(self):
        cmd = [psql_binary(), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=0"]
        return cmd + (["-d", self.url] if self.url else ["-h", self.host, "-p", self.port, "-U", self.user, "-d", self.name])

    def run(self, sql, single_tx=False):  # noqa: ARG002 - every call is a transaction
        with self.lock:
            session = self.idle.pop() if self.idle else None
        if session is None or not session.alive():
            session = Session(self.cmd(), self.env)
            result = session.query(sql)
        else:
            try:
                result = session.query(sql)
            except DbError:
                if session.alive():
                    raise
                session = Session(self.cmd(), self.env)  # the pooled one lost its connection (a DB restart)
                result = session.query(sql)
        with self.lock:
            if session.alive() and len(self.idle) < 8:
                self.idle.append(session)
            else:
                session.close()
        return result

    def rows(self, sql):
        if re.match(r"\s*(INSERT|UPDATE|DELETE)\b", sql, re.I):  # data-modifying: RETURNING through a CTE
            out = self.run("WITH t AS (%s) SELECT coalesce(json_agg(t), '[]'::json) FROM t" % sql)
        else:
            out = self.run("SELECT coalesce(json_agg(t), '[]'::json) FROM (%s) t" % sql)
        return json.loads(out) if out else []

    def row(self, sql):
        found = self.rows(sql)
        return found[0] if found else None

    def table_exists(self, name):
        return self.run("SELECT to_regclass(%s) IS NOT NULL" % lit("public." + ident(name))) == "t"

    def meta_get(self, key):
        out = self.run("SELECT value::text FROM system_metadata WHERE key = %s" % lit(key))
        return json.loads(out) if out else None

    def meta_set(self, key, value):
        self.run("INSERT INTO system_metadata (key, value) VALUES (%s, %s) "
                 "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value" % (lit(key), lit(value)))

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.run("SELECT 1")
            except DbError as exc:
                if time.monotonic() > deadline:
                    raise StartupError("Database connection failed: %s" % exc) from exc
                time.sleep(1)


class Naming:
    """Table names of the modelled version: singular since 1.137, plural (TypeORM) before."""

    def __init__(self, old):
        self.old = old
        self.asset = "assets" if old else "asset"
        self.user = "users" if old else '"user"'
        self.user_plain = "users" if old else "user"
        self.exif = "exif" if old else "asset_exif"
        self.file = "asset_files" if old else "asset_file"
        self.album = "albums" if old else "album"
        self.album_asset = "albums_assets_assets" if old else "album_asset"
        self.aa_album = '"albumsId"' if old else '"albumId"'
        self.aa_asset = '"assetsId"' if old else '"assetId"'
        self.face = "asset_faces" if old else "asset_face"
        self.session = "sessions" if old else "session"
        self.api_key = "api_keys" if old else "api_key"
        self.thumb_sep = "-" if old else "_"   # <id>-thumbnail.webp before, <id>_thumbnail.webp now

    def secret(self, value):
        """How a session token / API key is stored: sha256 (base64 text before, bytea now)."""
        digest = hashlib.sha256(value.encode()).digest()
        return lit(b64(digest)) if self.old else lit(digest)

    def visibility(self, alias="a"):
        if self.old:
            return ("CASE WHEN %s.\"isArchived\" THEN 'archive' WHEN NOT %s.\"isVisible\" THEN 'hidden' "
                    "ELSE 'timeline' END" % (alias, alias))
        return "%s.visibility" % alias


# ---- boot ----------------------------------------------------------------------------------------

class Boot:
    """DatabaseService + StorageService bootstrap; the state the API then runs with."""

    def __init__(self, env=None, share=None):
        self.env = env if env is not None else dict(os.environ)
        self.version = server_version(self.env)
        self.old = self.version < NEW_NAMES_SINCE
        self.naming = Naming(self.old)
        self.db = Database(self.env)
        self.schema = schema_path(self.old, share)
        self.ext = None
        self.media = None

    # -- database ----------------------------------------------------------------------------------
    def postgres(self):
        raw = self.db.run("SHOW server_version")
        ver = ext_version(raw)
        if not ver or ver < (14, 0, 0):
            raise StartupError("Invalid PostgreSQL version. Found %s, but needed >=14.0.0. Please use a supported version." % raw)

    def available_vector_extensions(self):
        rows = self.db.rows("SELECT name, default_version AS available, installed_version AS installed "
                            "FROM pg_available_extensions WHERE name IN ('vchord', 'vectors', 'vector')")
        return {r["name"]: r for r in rows}

    def vector_extension(self):
        """The extension Immich would use, created/updated/checked; None only in the lab's no-vector mode."""
        avail = self.available_vector_extensions()
        want = (self.env.get("DB_VECTOR_EXTENSION") or "").strip()
        if self.old:  # v1.130: pgvecto.rs unless DB_VECTOR_EXTENSION=pgvector
            ext = "vector" if want == "pgvector" else "vectors"
        elif want:
            if want not in ENV_VECTOR:
                raise StartupError("Invalid environment variables: DB_VECTOR_EXTENSION must be one of pgvector, "
                                   "pgvecto.rs, vectorchord (got %s)" % want)
            ext = ENV_VECTOR[want]
        else:
            ext = next((e for e in VECTOR_ORDER if e in avail), None)
        if not avail and env_true("LAB_ALLOW_NO_VECTOR", self.env):
            log("LAB_ALLOW_NO_VECTOR=true: this Postgres has no vector extension (vchord, vectors, vector); the lab "
                "runs without one: embeddings are real[], clip_index/face_index are not built. Real Immich refuses "
                "to start here.", "DatabaseService", "WARN")
            return None
        if ext is None:
            raise StartupError("No vector extension found. Available extensions: %s" % ", ".join(VECTOR_ORDER))
        name, (low, high), _method = VECTOR_EXTENSIONS[ext]
        row = avail.get(ext)
        if not row or not row.get("available"):
            raise StartupError("The %s extension is not available in this Postgres instance.\n    If using a container "
                               "image, ensure the image has the extension installed." % name)
        available = ext_version(row["available"])
        installed = ext_version(row.get("installed"))
        if (0, 0, 0) in (available, installed):
            raise StartupError("The %s extension version is 0.0.0, which means it is a nightly release." % name)
        if not low <= available < high:
            raise StartupError("The %s extension version is %s, but Immich only supports >=%s <%s." % (
                name, row["available"], ".".join(map(str, low[:2])), ".".join(map(str, high[:2]))))
        if not installed:
            log("Creating %s extension" % name, "DatabaseRepository")
            self.db.run("CREATE EXTENSION IF NOT EXISTS %s CASCADE" % ext)
            if ext == "vchord":
                self.db.run("ALTER DATABASE %s SET vchordrq.probes = 1" % ident(self.db.name))
        elif available > installed:
            log("Updating %s extension to %s" % (name, row["available"]), "DatabaseService")
            self.db.run("ALTER EXTENSION %s UPDATE TO %s" % (ext, lit(row["available"])))
            for index, table in VECTOR_INDEXES:
                if self.db.table_exists(table):
                    self.reindex(ext, index, table)
        elif not low <= installed < high:
            raise StartupError("The %s extension version is %s, but Immich only supports >=%s <%s." % (
                name, row["installed"], ".".join(map(str, low[:2])), ".".join(map(str, high[:2]))))
        elif available < installed:
            raise StartupError(
                "The database currently has %s %s activated, but the Postgres instance only has %s available.\n"
                "    This most likely means the extension was downgraded.\n    If %s %s is compatible with Immich, please "
                "ensure the Postgres instance has this available." % (name, row["installed"], row["available"], name,
                                                                      row["installed"]))
        return ext

    def reindex_if_needed(self, ext):
        """DatabaseRepository.reindexVectorsIfNeeded: a missing or foreign vector index is rebuilt."""
        found = {r["indexname"]: r["indexdef"] for r in self.db.rows(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexname IN ('clip_index', 'face_index')")}
        method = VECTOR_EXTENSIONS[ext][2]
        for index, table in VECTOR_INDEXES:
            definition = found.get(index)
            if definition is None or ("using %s" % method) not in definition.lower():
                self.reindex(ext, index, table)

    def reindex(self, ext, index, table):
        log("Reindexing %s (This may take a while, do not restart)" % index, "DatabaseRepository")
        cols = {r["column_name"]: r for r in self.db.rows(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = %s" % lit(table))}
        if not cols:
            log("Table %s does not exist, skipping reindexing. This is only normal if this is a new Immich instance."
                % table, "DatabaseRepository", "WARN")
            return
        dim = self.db.run("SELECT atttypmod FROM pg_attribute f JOIN pg_class c ON c.oid = f.attrelid "
                          "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public' "
                          "AND f.attnum > 0 AND c.relname = %s AND f.attname = 'embedding'" % lit(table))
        size = int(dim) if dim.lstrip("-").isdigit() and 1 <= int(dim) <= 65536 else None
        if size is None:
            log("Could not retrieve dimension size of column 'embedding' in table '%s', assuming 512" % table,
                "DatabaseRepository", "WARN")
            size = 512
        steps = ["DROP INDEX IF EXISTS %s;" % index]
        if "embedding" not in cols:
            log("Column 'embedding' does not exist in table '%s', truncating and adding column." % table,
                "DatabaseRepository", "WARN")
            steps += ["TRUNCATE TABLE %s;" % table, "ALTER TABLE %s ADD COLUMN embedding real[] NOT NULL;" % table]
        steps += ["ALTER TABLE %s ALTER COLUMN embedding SET DATA TYPE real[];" % table,
                  "ALTER TABLE %s ALTER COLUMN embedding SET DATA TYPE vector(%d);" % (table, size),
                  vector_index_sql(ext, index, table) + ";"]
        self.db.run("SET LOCAL search_path TO \"$user\", public, vectors;\n" + "\n".join(steps), single_tx=True)
        log("Reindexed %s" % index, "DatabaseRepository")

    def drop_other_vector_extensions(self, ext):
        for other, row in self.available_vector_extensions().items():
            if other == ext or not row.get("installed") or (other == "vector" and ext == "vchord"):
                continue
            name = VECTOR_EXTENSIONS[other][0]
            log("Dropping %s extension" % name, "DatabaseRepository")
            try:
                self.db.run("DROP EXTENSION IF EXISTS %s" % other)
            except DbError as exc:
                log("The %s extension is no longer needed, but could not be dropped.\n    Please run 'DROP EXTENSION %s "
                    "CASCADE;' manually as a superuser. (%s)" % (name, other, exc), "DatabaseService", "WARN")

    def migrate(self):
        if self.old:
            return self.migrate_typeorm()
        if self.db.table_exists("migrations") and not self.db.table_exists("kysely_migrations"):
            raise StartupError(ERR_TYPEORM)
        self.db.run("CREATE TABLE IF NOT EXISTS kysely_migrations (name varchar(255) PRIMARY KEY NOT NULL, "
                    "\"timestamp\" varchar(255) NOT NULL);\n"
                    "CREATE TABLE IF NOT EXISTS kysely_migrations_lock (id varchar(255) PRIMARY KEY NOT NULL, "
                    "is_locked integer NOT NULL DEFAULT 0);\n"
                    "INSERT INTO kysely_migrations_lock (id, is_locked) VALUES ('migration_lock', 0) ON CONFLICT DO NOTHING;")
        applied = [r["name"] for r in self.db.rows("SELECT name FROM kysely_migrations ORDER BY name")]
        known = load_migrations(self.schema)
        names = [n for n, _body in known]
        unknown = [a for a in applied if a not in names]
        if unknown:
            log("Migrations failed: Error: corrupted migrations: previously executed migration %s is missing" % unknown[0],
                "DatabaseRepository", "ERROR")
            raise StartupError("corrupted migrations: previously executed migration %s is missing" % unknown[0])
        log("Running migrations", "DatabaseRepository")
        for name, body in known:
            if name in applied:
                continue
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            self.db.run(render(body, self.ext) + "\nINSERT INTO kysely_migrations (name, \"timestamp\") VALUES (%s, %s);"
                        % (lit(name), lit(stamp)), single_tx=True)
            log('Migration "%s" succeeded' % name, "DatabaseRepository")
        log("Finished running migrations", "DatabaseRepository")
        return None

    def migrate_typeorm(self):
        self.db.run("CREATE TABLE IF NOT EXISTS migrations (id SERIAL PRIMARY KEY, \"timestamp\" bigint NOT NULL, "
                    "name varchar NOT NULL)")
        applied = {r["name"] for r in self.db.rows("SELECT name FROM migrations")}
        log("Running migrations, this may take a while", "DatabaseService")
        for name, body in load_migrations(self.schema):
            if name in applied:
                continue
            stamp = int(re.findall(r"\d{13}", name)[-1])
            self.db.run(render(body, self.ext) + "\nINSERT INTO migrations (\"timestamp\", name) VALUES (%d, %s);"
                        % (stamp, lit(name)), single_tx=True)
            log("Migration %s has been executed successfully." % name, "TypeORM")

    def drift(self):
        """What the database lacks of what the migrations create: [(type, human, sql)]."""
        tables, indexes = expected_schema(self.schema, self.ext)
        have_t = set(self.db.run("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())
        have_i = set(self.db.run("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'").split())
        items = [("TableCreate", 'The table "%s" is missing' % t, "-- CREATE TABLE \"%s\" (see the migrations)" % t)
                 for t in tables if t not in have_t]
        items += [("IndexCreate", 'The index "%s" is missing' % i, ddl.replace(" IF NOT EXISTS", ""))
                  for i, ddl in indexes.items() if i not in have_i]
        want = "vector" if self.ext else "_float4"
        for _index, table in VECTOR_INDEXES:
            if table not in have_t:
                continue
            got = self.db.run("SELECT udt_name FROM information_schema.columns WHERE table_schema = 'public' "
                              "AND table_name = %s AND column_name = 'embedding'" % lit(table))
            if got and got != want:
                items.append(("ColumnAlter", 'The column "%s"."embedding" is %s, expected %s' % (table, got, want),
                              "ALTER TABLE \"%s\" ALTER COLUMN \"embedding\" TYPE %s;" % (
                                  table, "vector(512)" if self.ext else "real[]")))
        return items

    def database_service(self):
        """DatabaseService.onBootstrap (+ the drift check that follows the migrations)."""
        self.postgres()
        self.ext = self.vector_extension()
        if self.ext and not self.old:
            try:
                self.reindex_if_needed(self.ext)
            except DbError:
                log("Could not run vector reindexing checks. If the extension was updated, please restart the Postgres "
                    "instance.", "DatabaseService", "WARN")
                raise
            self.drop_other_vector_extensions(self.ext)
        if env_true("DB_SKIP_MIGRATIONS", self.env):
            log("Skipping migrations (DB_SKIP_MIGRATIONS=true)", "DatabaseService")
            return
        self.migrate()
        if not self.old:
            items = self.drift()
            if items:
                log(ERR_DRIFT + "\n" + "\n".join("  - %s: %s" % (t, h) for t, h, _s in items), "DatabaseService", "WARN")
            else:
                log("No schema drift detected", "DatabaseService")

    # -- storage -----------------------------------------------------------------------------------
    def detect_media_location(self):
        if self.old:
            return os.path.normpath(self.env.get("IMMICH_MEDIA_LOCATION") or "./upload")
        if self.env.get("IMMICH_MEDIA_LOCATION"):
            return self.env["IMMICH_MEDIA_LOCATION"]
        found = [c for c in ("/data", "/usr/src/app/upload") if os.path.exists(c)]
        return found[0] if len(found) == 1 else "/usr/src/app/upload"

    def storage_service(self):
        """StorageService.onBootstrap: mount checks, then the media location."""
        self.media = self.detect_media_location()
        log("Storage write backend: disk (media location %s)" % self.media, "StorageService")
        flags = self.db.meta_get("system-flags") or {"mountChecks": {}}
        flags.setdefault("mountChecks", {})
        log("Verifying system mount folder checks, current state: %s" % json.dumps(flags, separators=(",", ":")),
            "StorageService")
        updated = False
        try:
            for folder in FOLDERS:
                if not flags["mountChecks"].get(folder):
                    log("Writing initial mount file for the %s folder" % folder, "StorageService")
                    self.create_mount_file(folder)
                self.verify_read(folder)
                self.verify_write(folder)
                if not flags["mountChecks"].get(folder):
                    flags["mountChecks"][folder] = True
                    updated = True
            if updated:
                self.db.meta_set("system-flags", flags)
                log("Successfully enabled system mount folders checks", "StorageService")
            log("Successfully verified system mount folder checks", "StorageService")
        except StartupError as exc:
            if not env_true("IMMICH_IGNORE_MOUNT_CHECK_ERRORS", self.env):
                raise
            log("ImmichStartupError: %s" % exc, "StorageService", "ERROR")
            log("Ignoring mount folder errors", "StorageService", "WARN")
        if not self.old:
            self.media_location()

    def mount_paths(self, folder):
        base = os.path.join(self.media, folder)
        return base, os.path.join(base, ".immich"), "<UPLOAD_LOCATION>/%s/.immich" % folder

    def create_mount_file(self, folder):
        base, internal, external = self.mount_paths(folder)
        try:
            os.makedirs(base, exist_ok=True)
            with open(internal, "x") as fh:
                fh.write(now_ms())
        except FileExistsError:
            log("Found existing mount file, skipping creation", "StorageService", "WARN")
        except OSError as exc:
            log("Failed to create %s: Error: %s" % (internal, exc), "StorageService", "ERROR")
            raise StartupError('Failed to create "%s - %s"' % (external, self.docs)) from exc

    @property
    def docs(self):
        return DOCS_FOLDER_CHECKS_OLD if self.old else DOCS_FOLDER_CHECKS

    def verify_read(self, folder):
        _base, internal, external = self.mount_paths(folder)
        try:
            with open(internal, "rb") as fh:
                fh.read()
        except OSError as exc:
            err = "Error: ENOENT: no such file or directory, open '%s'" % internal if isinstance(
                exc, FileNotFoundError) else "Error: %s" % exc
            if self.old:
                log("Failed to read %s: %s" % (internal, err), "StorageService", "ERROR")
                raise StartupError('Failed to read "%s - %s"' % (external, self.docs)) from exc
            log("Failed to read (%s): %s" % (internal, err), "StorageService", "ERROR")
            raise StartupError('Failed to read: "%s (%s) - %s"' % (external, internal, self.docs)) from exc

    def verify_write(self, folder):
        _base, internal, external = self.mount_paths(folder)
        try:
            with open(internal, "w") as fh:
                fh.write(now_ms())
        except OSError as exc:
            log("Failed to write %s: Error: %s" % (internal, exc), "StorageService", "ERROR")
            raise StartupError('Failed to write "%s - %s"' % (external, self.docs)) from exc

    def media_location(self):
        current = self.media
        samples = self.db.rows('SELECT "assetId", path FROM asset_file LIMIT 3')
        saved = self.db.meta_get("MediaLocation") or {}
        if samples:
            path = samples[0]["path"]
            previous = saved.get("location") or ""
            if not previous and self.env.get("IMMICH_MEDIA_LOCATION"):
                previous = current
            if not previous:
                previous = "upload" if path.startswith("upload/") else "/usr/src/app/upload"
            if previous != current:
                log("Media location changed (from=%s, to=%s)" % (previous, current), "StorageService")
                if not path.startswith(previous):
                    log("Error: %s (sample path %s, previous %s, current %s)" % (ERR_INCONSISTENT, path, previous, current),
                        "StorageService", "ERROR")
                    raise StartupError("InconsistentMediaLocation: " + ERR_INCONSISTENT)
                log("Detected a change to media location, performing an automatic migration of file paths from %s to %s, "
                    "this may take awhile" % (previous, current), "StorageService", "WARN")
                self.migrate_file_paths(previous, current)
        if saved.get("location") != current:
            self.db.meta_set("MediaLocation", {"location": current})

    def migrate_file_paths(self, source, target):
        """DatabaseRepository.migrateFilePaths: one regexp_replace of the prefix, in one transaction."""
        source, target = source.rstrip("/"), target.rstrip("/")
        rx = lit("^" + re.sub(r"([-\[\]{}()*+?.,\\^$|#\s])", r"\\\1", source))
        tgt = lit(target)
        self.db.run(
            'UPDATE asset SET "originalPath" = regexp_replace("originalPath", %(rx)s, %(t)s);\n'
            'UPDATE asset_file SET path = regexp_replace(path, %(rx)s, %(t)s);\n'
            'UPDATE person SET "thumbnailPath" = regexp_replace("thumbnailPath", %(rx)s, %(t)s);\n'
            'UPDATE "user" SET "profileImagePath" = regexp_replace("profileImagePath", %(rx)s, %(t)s);'
            % {"rx": rx, "t": tgt}, single_tx=True)

    # -- whole boot --------------------------------------------------------------------------------
    def maintenance_state(self):
        if self.old or self.version < MAINTENANCE_SINCE:
            return None
        try:
            state = self.db.meta_get("maintenance-mode")
        except DbError as exc:
            if "does not exist" in str(exc):  # 42P01: migrations never ran
                return None
            raise
        return state if state and state.get("isMaintenanceMode") else None

    def installed_vector_extension(self):
        installed = {r["extname"] for r in self.db.rows("SELECT extname FROM pg_extension")}
        want = ENV_VECTOR.get((self.env.get("DB_VECTOR_EXTENSION") or "").strip())
        if want in installed:
            return want
        return next((e for e in VECTOR_ORDER if e in installed), None)


# ---- jobs ----------------------------------------------------------------------------------------

class Queues:
    """BullMQ as far as a client sees it: per-queue counts, one worker thread, removeOnComplete."""

    def __init__(self):
        self.cv = threading.Condition()
        self.waiting = {name: deque() for name in QUEUES}
        self.active = dict.fromkeys(QUEUES, 0)
        self.failed = dict.fromkeys(QUEUES, 0)
        self.paused = set()
        threading.Thread(target=self._work, name="queue-worker", daemon=True).start()

    def add(self, queue, func, *args):
        with self.cv:
            self.waiting[queue].append((func, args))
            self.cv.notify_all()

    def busy(self, queue):
        with self.cv:
            return self.active[queue] > 0 or len(self.waiting[queue]) > 0

    def _next(self):
        for name in QUEUES:
            if name not in self.paused and self.waiting[name]:
                func, args = self.waiting[name].popleft()
                self.active[name] += 1
                return name, func, args
        return None

    def _work(self):
        while True:
            with self.cv:
                item = self._next()
                while item is None:
                    self.cv.wait()
                    item = self._next()
            name, func, args = item
            try:
                func(*args)
            except Exception as exc:  # noqa: BLE001 - a failed job is counted, never kills the worker
                log("Unable to run job %s: %s" % (getattr(func, "__name__", "job"), exc), "JobService", "ERROR",
                    "Microservices")
                with self.cv:
                    self.failed[name] += 1
            finally:
                with self.cv:
                    self.active[name] -= 1
                    self.cv.notify_all()

    def status(self, name):
        with self.cv:
            return {"jobCounts": {"active": self.active[name], "completed": 0, "failed": self.failed[name],
                                  "delayed": 0, "waiting": len(self.waiting[name]),
                                  "paused": len(self.waiting[name]) if name in self.paused else 0},
                    "queueStatus": {"isActive": self.active[name] > 0, "isPaused": name in self.paused}}

    def command(self, name, command):
        with self.cv:
            if command == "pause":
                self.paused.add(name)
            elif command == "resume":
                self.paused.discard(name)
                self.cv.notify_all()
            elif command == "empty":
                self.waiting[name].clear()
            elif command == "clear-failed":
                self.failed[name] = 0


# ---- HTTP ----------------------------------------------------------------------------------------

class Raw:
    def __init__(self, data, content_type, headers=None):
        self.data = data
        self.content_type = content_type
        self.headers = headers or {}


class Request:
    def __init__(self, handler, method, path, query, params):
        self.handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.params = params
        self.user = None
        self.cookies_out = []
        length = int(handler.headers.get("Content-Length") or 0)
        self.body = handler.rfile.read(length) if length else b""

    def header(self, name):
        return self.handler.headers.get(name)

    def cookie(self, name):
        for part in (self.header("Cookie") or "").split(";"):
            key, _sep, val = part.strip().partition("=")
            if key == name:
                return val
        return None

    def json(self):
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, "Validation failed") from exc
        if not isinstance(data, dict):
            raise HttpError(400, "Validation failed")
        return data

    def arg(self, name, default=None):
        vals = self.query.get(name)
        return vals[0] if vals else default

    def multipart(self):
        """{name: (filename or None, bytes)} of a multipart/form-data body."""
        ctype = self.header("Content-Type") or ""
        found = re.search(r'boundary="?([^";]+)"?', ctype)
        if "multipart/form-data" not in ctype or not found:
            raise HttpError(400, "Validation failed", errors=["multipart/form-data expected"])
        boundary = b"--" + found.group(1).encode()
        fields = {}
        for part in self.body.split(boundary)[1:]:
            if part.startswith(b"--"):
                break
            part = part[2:] if part.startswith(b"\r\n") else part  # noqa: PLW2901 - trimmed in place
            head, _sep, data = part.partition(b"\r\n\r\n")
            if data.endswith(b"\r\n"):
                data = data[:-2]
            disp = re.search(rb'name="([^"]*)"', head)
            fname = re.search(rb'filename="([^"]*)"', head)
            if disp:
                fields[disp.group(1).decode()] = (fname.group(1).decode("utf-8", "replace") if fname else None, data)
        return fields


def user_columns(alias="u"):
    return ("{a}.id, {a}.email, {a}.name, {a}.\"isAdmin\", {a}.\"storageLabel\", {a}.\"profileImagePath\", "
            "{a}.\"profileChangedAt\", {a}.\"avatarColor\", {a}.\"shouldChangePassword\", {a}.\"createdAt\", "
            "{a}.\"updatedAt\", {a}.\"deletedAt\", {a}.\"oauthId\", {a}.\"quotaSizeInBytes\", "
            "{a}.\"quotaUsageInBytes\", {a}.status").format(a=alias)


def user_dto(u):
    return {"id": u["id"], "email": u["email"], "name": u["name"], "profileImagePath": u["profileImagePath"],
            "avatarColor": u.get("avatarColor") or "primary", "profileChangedAt": u.get("profileChangedAt")}


def user_admin_dto(u):
    dto = user_dto(u)
    dto.update({"storageLabel": u.get("storageLabel"), "shouldChangePassword": u.get("shouldChangePassword", False),
                "isAdmin": u["isAdmin"], "createdAt": u.get("createdAt"), "deletedAt": u.get("deletedAt"),
                "updatedAt": u.get("updatedAt"), "oauthId": u.get("oauthId") or "",
                "quotaSizeInBytes": u.get("quotaSizeInBytes"), "quotaUsageInBytes": u.get("quotaUsageInBytes") or 0,
                "status": u.get("status") or "active", "license": None})
    return dto


def route(method, pattern, auth=None):
    def wrap(func):
        func.route = (method, pattern, auth)
        return func
    return wrap


class App:
    """The API worker (or, with maintenance set, the maintenance worker)."""

    def __init__(self, boot, maintenance=None):
        self.boot = boot
        self.db = boot.db
        self.n = boot.naming
        self.media = boot.media or boot.detect_media_location()
        self.maintenance = maintenance
        self.queues = Queues() if not maintenance else None
        self.routes = []
        for attr in dir(self):
            func = getattr(self, attr)
            spec = getattr(func, "route", None)
            if not spec:
                continue
            method, pattern, auth = spec
            if maintenance and auth != "maintenance" and not pattern.startswith("/api/server/") \
                    and pattern != "/api/lab/stats":
                continue
            if not maintenance and auth == "maintenance":
                continue
            if maintenance and pattern in ("/api/server/statistics", "/api/server/about", "/api/server/features"):
                continue
            rx = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern))
            self.routes.append((method, rx, func, auth))

    # -- auth --------------------------------------------------------------------------------------
    def authenticate(self, req):
        token = None
        bearer = req.header("Authorization") or ""
        if bearer.lower().startswith("bearer "):
            token = bearer[7:].strip()
        token = token or req.cookie("immich_access_token")
        if token:
            user = self.db.row('SELECT %s FROM %s s JOIN %s u ON u.id = s."userId" WHERE s.token = %s '
                               'AND u."deletedAt" IS NULL' % (user_columns(), self.n.session, self.n.user,
                                                              self.n.secret(token)))
            if not user:
                raise HttpError(401, "Invalid user token")
            return user
        key = req.header("x-api-key") or req.arg("apiKey")
        if key:
            user = self.db.row('SELECT %s FROM %s k JOIN %s u ON u.id = k."userId" WHERE k.key = %s '
                               'AND u."deletedAt" IS NULL' % (user_columns(), self.n.api_key, self.n.user,
                                                              self.n.secret(key)))
            if not user:
                raise HttpError(401, "Invalid API key")
            return user
        raise HttpError(401, "Authentication required")

    @staticmethod
    def hash_password(password):
        salt = secrets.token_bytes(16)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 20000)
        return "pbkdf2_sha256$20000$%s$%s" % (b64(salt), b64(digest))

    @staticmethod
    def check_password(password, stored):
        try:
            _kind, rounds, salt, digest = (stored or "").split("$")
            got = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(rounds))
        except ValueError:
            return False
        return hmac.compare_digest(got, base64.b64decode(digest))

    def create_user(self, email, password, name, is_admin, label=None):
        email = (email or "").strip().lower()
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email) or not isinstance(password, str) or not password:
            raise HttpError(400, "Validation failed", errors=["email must be an email", "password must be a string"])
        if self.db.row("SELECT id FROM %s WHERE email = %s" % (self.n.user, lit(email))):
            raise HttpError(400, "User exists")
        return self.db.row(
            'INSERT INTO %s (email, name, password, "isAdmin", "storageLabel", "shouldChangePassword") '
            "VALUES (%s, %s, %s, %s, %s, false) RETURNING %s"
            % (self.n.user, lit(email), lit(name or ""), lit(self.hash_password(password)), lit(is_admin), lit(label),
               user_columns(self.n.user)))

    @route("POST", "/api/auth/admin-sign-up")
    def admin_sign_up(self, req):
        body = req.json()
        if self.db.row('SELECT id FROM %s WHERE "isAdmin" AND "deletedAt" IS NULL' % self.n.user):
            raise HttpError(400, "The server already has an admin")
        return 201, user_admin_dto(self.create_user(body.get("email"), body.get("password"), body.get("name"),
                                                    True, "admin"))

    @route("POST", "/api/auth/login")
    def login(self, req):
        body = req.json()
        email = str(body.get("email") or "").strip().lower()
        user = self.db.row('SELECT %s, password FROM %s u WHERE email = %s AND "deletedAt" IS NULL'
                           % (user_columns(), self.n.user, lit(email)))
        if not user or not self.check_password(str(body.get("password") or ""), user.get("password")):
            log("Failed login attempt for user %s from ip address %s" % (email, req.handler.client_address[0]),
                "AuthService", "WARN")
            raise HttpError(401, "Incorrect email or password")
        token = base64.b64encode(secrets.token_bytes(32)).decode().replace("+", "").replace("/", "").replace("=", "")
        agent = (req.header("User-Agent") or "")[:100]
        self.db.run('INSERT INTO %s (token, "userId", "deviceType", "deviceOS") VALUES (%s, %s, %s, \'\')'
                    % (self.n.session, self.n.secret(token), lit(user["id"]), lit(agent)))
        req.cookies_out = ["immich_access_token=%s; Max-Age=34560000; Path=/; HttpOnly; SameSite=Lax" % token,
                           "immich_auth_type=password; Max-Age=34560000; Path=/; HttpOnly; SameSite=Lax",
                           "immich_is_authenticated=true; Max-Age=34560000; Path=/; SameSite=Lax"]
        return 201, {"accessToken": token, "userId": user["id"], "userEmail": user["email"], "name": user["name"],
                     "profileImagePath": user["profileImagePath"], "isAdmin": user["isAdmin"],
                     "shouldChangePassword": user.get("shouldChangePassword", False), "isOnboarded": False}

    @route("POST", "/api/auth/logout", "user")
    def logout(self, req):
        token = (req.header("Authorization") or "")[7:].strip() or req.cookie("immich_access_token")
        if token:
            self.db.run("DELETE FROM %s WHERE token = %s" % (self.n.session, self.n.secret(token)))
        return 200, {"successful": True, "redirectUri": "/auth/login?autoLaunch=0"}

    @route("POST", "/api/auth/validateToken", "user")
    def validate_token(self, _req):
        return 200, {"authStatus": True}

    @route("POST", "/api/api-keys", "user")
    def create_api_key(self, req):
        body = req.json()
        perms = body.get("permissions") or ["all"]
        if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
            raise HttpError(400, "Validation failed")
        secret = base64.b64encode(secrets.token_bytes(32)).decode().replace("+", "").replace("/", "").replace("=", "")
        row = self.db.row('INSERT INTO %s (name, key, "userId", permissions) VALUES (%s, %s, %s, %s::varchar[]) '
                          'RETURNING id, name, "createdAt", "updatedAt", permissions'
                          % (self.n.api_key, lit(body.get("name") or "API Key"), self.n.secret(secret),
                             lit(req.user["id"]), lit("{%s}" % ",".join(perms))))
        return 201, {"secret": secret, "apiKey": row}

    @route("GET", "/api/api-keys", "user")
    def list_api_keys(self, req):
        return 200, self.db.rows('SELECT id, name, "createdAt", "updatedAt", permissions FROM %s WHERE "userId" = %s '
                                 'ORDER BY "createdAt"' % (self.n.api_key, lit(req.user["id"])))

    # -- users -------------------------------------------------------------------------------------
    @route("GET", "/api/users/me", "user")
    def me(self, req):
        return 200, user_admin_dto(req.user)

    @route("GET", "/api/admin/users", "admin")
    def admin_users(self, _req):
        return 200, [user_admin_dto(u) for u in self.db.rows(
            'SELECT %s FROM %s u WHERE u."deletedAt" IS NULL ORDER BY u."createdAt"' % (user_columns(), self.n.user))]

    @route("POST", "/api/admin/users", "admin")
    def admin_create_user(self, req):
        body = req.json()
        user = self.create_user(body.get("email"), body.get("password"), body.get("name"), bool(body.get("isAdmin")),
                                body.get("storageLabel"))
        return 201, user_admin_dto(user)

    @route("POST", "/api/users/profile-image", "user")
    def profile_image(self, req):
        fields = req.multipart()
        fname, data = fields.get("file", (None, None))
        if fname is None:
            raise HttpError(400, "Validation failed", errors=["file is required"])
        ext = os.path.splitext(fname)[1].lower()
        if ext not in IMAGE_EXT:
            raise HttpError(400, "Unsupported file type %s" % fname)
        path = os.path.join(self.media, "profile", req.user["id"], "%s%s" % (uuid.uuid4(), ext))
        self.write_file(path, data)
        row = self.db.row('UPDATE %s SET "profileImagePath" = %s, "profileChangedAt" = now() WHERE id = %s '
                          'RETURNING id AS "userId", "profileImagePath", "profileChangedAt"'
                          % (self.n.user, lit(path), lit(req.user["id"])))
        return 201, row

    @route("GET", "/api/users/{id}/profile-image", "user")
    def get_profile_image(self, req):
        uid = req.params["id"]
        if not is_uuid(uid):
            raise HttpError(400, "Validation failed", errors=["id must be a UUID"])
        row = self.db.row('SELECT "profileImagePath" FROM %s WHERE id = %s' % (self.n.user, lit(uid)))
        if not row or not row["profileImagePath"]:
            raise HttpError(404, "User does not have a profile image")
        return 200, self.send_file(row["profileImagePath"], IMAGE_EXT.get(
            os.path.splitext(row["profileImagePath"])[1].lower(), "application/octet-stream"))

    # -- server ------------------------------------------------------------------------------------
    @route("GET", "/api/server/ping")
    def ping(self, _req):
        return 200, {"res": "pong"}

    @route("GET", "/api/server/version")
    def version(self, _req):
        major, minor, patch = self.boot.version
        return 200, {"major": major, "minor": minor, "patch": patch}

    @route("GET", "/api/server/about", "user")
    def about(self, _req):
        return 200, {"version": version_text(self.boot.version), "versionUrl": "https://github.com/immich-app/immich/"
                     "releases/tag/" + version_text(self.boot.version), "licensed": False,
                     "build": "homelab.immich lab stand-in"}

    @route("GET", "/api/server/config")
    def config(self, _req):
        if self.maintenance:
            return 200, {"maintenanceMode": True}
        has_admin = bool(self.db.row('SELECT id FROM %s WHERE "isAdmin" AND "deletedAt" IS NULL' % self.n.user))
        return 200, {"loginPageMessage": "", "trashDays": 30, "userDeleteDelay": 7, "oauthButtonText": "Login with OAuth",
                     "isInitialized": has_admin, "isOnboarded": has_admin, "externalDomain": "", "publicUsers": True,
                     "mapDarkStyleUrl": "https://tiles.immich.cloud/v1/style/dark.json",
                     "mapLightStyleUrl": "https://tiles.immich.cloud/v1/style/light.json", "maintenanceMode": False}

    @route("GET", "/api/server/features")
    def features(self, _req):
        return 200, {"smartSearch": False, "duplicateDetection": False, "configFile": False, "facialRecognition": False,
                     "map": True, "trash": True, "reverseGeocoding": True, "importFaces": False, "oauth": False,
                     "oauthAutoLaunch": False, "passwordLogin": True, "sidecar": True, "search": True, "email": False,
                     "ocr": False}

    @route("GET", "/api/server/statistics", "admin")
    def statistics(self, _req):
        a, n = "a", self.n
        rows = self.db.rows(
            'SELECT u.id AS "userId", u.name AS "userName", u."quotaSizeInBytes", '
            "count(a.id) FILTER (WHERE a.type = 'IMAGE')::int AS photos, "
            "count(a.id) FILTER (WHERE a.type = 'VIDEO')::int AS videos, "
            'coalesce(sum(e."fileSizeInByte"), 0)::bigint AS usage, '
            "coalesce(sum(e.\"fileSizeInByte\") FILTER (WHERE a.type = 'IMAGE'), 0)::bigint AS \"usagePhotos\", "
            "coalesce(sum(e.\"fileSizeInByte\") FILTER (WHERE a.type = 'VIDEO'), 0)::bigint AS \"usageVideos\" "
            'FROM %s u LEFT JOIN %s a ON a."ownerId" = u.id AND a."deletedAt" IS NULL AND %s != \'hidden\' '
            'LEFT JOIN %s e ON e."assetId" = a.id WHERE u."deletedAt" IS NULL GROUP BY u.id ORDER BY u."createdAt"'
            % (n.user, n.asset, n.visibility(a), n.exif))
        by_user = [{"userId": r["userId"], "userName": r["userName"], "photos": r["photos"], "videos": r["videos"],
                    "usage": r["usage"], "usagePhotos": r["usagePhotos"], "usageVideos": r["usageVideos"],
                    "quotaSizeInBytes": r["quotaSizeInBytes"]} for r in rows]
        total = {k: sum(r[k] for r in by_user) for k in ("photos", "videos", "usage", "usagePhotos", "usageVideos")}
        total["usageByUser"] = by_user
        return 200, total

    # -- lab only ----------------------------------------------------------------------------------
    @route("GET", "/api/lab/stats")
    def lab_stats(self, _req):
        rows = self.db.rows('SELECT id, "originalPath" FROM %s WHERE "deletedAt" IS NULL' % self.n.asset)
        missing = [{"id": r["id"], "originalPath": r["originalPath"]} for r in rows if not os.path.isfile(r["originalPath"])]
        return 200, {"assets": len(rows), "missing": missing, "missingCount": len(missing),
                     "maintenanceMode": bool(self.maintenance), "mediaLocation": self.media,
                     "vectorExtension": self.boot.ext, "version": version_text(self.boot.version)}

    # -- assets ------------------------------------------------------------------------------------
    def asset_columns(self):
        cols = ('a.id, a."deviceAssetId", a."ownerId", a."deviceId", a."libraryId", a.type, a."originalPath", '
                'a."originalFileName", a."fileCreatedAt", a."fileModifiedAt", a."localDateTime", a."updatedAt", '
                'a."createdAt", a."isFavorite", a."isOffline", a."deletedAt", a.duration, a.checksum, a.thumbhash, '
                'a."duplicateId", a."livePhotoVideoId", %s AS visibility' % self.n.visibility())
        return cols + ("" if self.n.old else ', a."checksumAlgorithm"')

    def asset_dto(self, a, files=None):
        mime = IMAGE_EXT.get(os.path.splitext(a["originalFileName"])[1].lower()) or VIDEO_EXT.get(
            os.path.splitext(a["originalFileName"])[1].lower())
        dto = {"id": a["id"], "deviceAssetId": a["deviceAssetId"], "ownerId": a["ownerId"], "deviceId": a["deviceId"],
               "libraryId": a["libraryId"], "type": a["type"], "originalPath": a["originalPath"],
               "originalFileName": a["originalFileName"], "originalMimeType": mime,
               "thumbhash": b64(bytea(a["thumbhash"])), "fileCreatedAt": a["fileCreatedAt"],
               "fileModifiedAt": a["fileModifiedAt"], "localDateTime": a["localDateTime"], "updatedAt": a["updatedAt"],
               "createdAt": a["createdAt"], "isFavorite": a["isFavorite"], "isArchived": a["visibility"] == "archive",
               "isTrashed": a["deletedAt"] is not None, "isOffline": a["isOffline"], "visibility": a["visibility"],
               "duration": a["duration"] or "0:00:00.00000", "checksum": b64(bytea(a["checksum"])),
               "duplicateId": a["duplicateId"], "livePhotoVideoId": a["livePhotoVideoId"], "hasMetadata": True,
               "isEdited": False}
        if files is not None:
            dto["resized"] = any(f["type"] == "preview" for f in files)
        return dto

    def get_asset(self, req, name="id"):
        aid = req.params.get(name)
        row = self.db.row("SELECT %s FROM %s a WHERE a.id = %s" % (self.asset_columns(), self.n.asset, lit(aid))) \
            if is_uuid(aid) else None
        if not row or row["ownerId"] != req.user["id"]:
            raise HttpError(400, "Not found or no asset.read access")
        return row

    def write_file(self, path, data):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = "%s.%s.tmp" % (path, uuid.uuid4().hex[:8])
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def send_file(self, path, content_type, name=None):
        """utils/file.ts sendFile: access(R_OK) first; a missing file is a 500 of the ENOENT error."""
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError as exc:
            log("Unable to send file: Error", "Api:AssetMediaService", "ERROR")
            raise HttpError(500, "ENOENT: no such file or directory, access '%s'" % path) from exc
        except OSError as exc:
            log("Unable to send file: Error", "Api:AssetMediaService", "ERROR")
            raise HttpError(500, "Internal server error") from exc
        headers = {"Cache-Control": "private, max-age=86400, no-transform"}
        if name:
            headers["Content-Disposition"] = "inline; filename*=UTF-8''%s" % quote(name)
        return Raw(data, content_type, headers)

    @route("POST", "/api/assets", "user")
    def upload(self, req):
        fields = req.multipart()
        fname, data = fields.get("assetData", (None, None))
        if fname is None:
            raise HttpError(400, "Validation failed", errors=["assetData is required"])
        text = {k: v[1].decode("utf-8", "replace") for k, v in fields.items() if v[0] is None}
        missing = [k for k in ("deviceAssetId", "deviceId", "fileCreatedAt", "fileModifiedAt") if k not in text]
        if missing:
            raise HttpError(400, "Validation failed", errors=["%s is required" % k for k in missing])
        name = text.get("filename") or fname
        ext = os.path.splitext(name)[1].lower()
        kind = "IMAGE" if ext in IMAGE_EXT else "VIDEO" if ext in VIDEO_EXT else None
        if kind is None:
            raise HttpError(400, "Unsupported file type %s" % name)
        for key in ("fileCreatedAt", "fileModifiedAt"):
            if not re.match(r"^\d{4}-\d{2}-\d{2}", text[key]):
                raise HttpError(400, "Validation failed", errors=["%s must be a date" % key])
        owner = req.user["id"]
        checksum = sha1(data)
        dup = self.db.row('SELECT id FROM %s WHERE "ownerId" = %s AND checksum = %s AND "libraryId" IS NULL'
                          % (self.n.asset, lit(owner), lit(checksum)))
        if dup:
            return 200, {"id": dup["id"], "status": "duplicate"}
        file_id = str(uuid.uuid4())
        path = os.path.join(self.media, "upload", owner, file_id[0:2], file_id[2:4], file_id + ext)
        self.write_file(path, data)
        extra_cols, extra_vals = ("", "") if self.n.old else (', "checksumAlgorithm"', ", 'sha1'")
        favorite = text.get("isFavorite", "false").lower() == "true"
        try:
            row = self.db.row(
                'INSERT INTO %s ("deviceAssetId", "ownerId", "deviceId", type, "originalPath", "originalFileName", '
                'checksum, "fileCreatedAt", "fileModifiedAt", "localDateTime", "isFavorite", duration%s) '
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s%s) RETURNING id"
                % (self.n.asset, extra_cols, lit(text["deviceAssetId"]), lit(owner), lit(text["deviceId"]), lit(kind),
                   lit(path), lit(name), lit(checksum), lit(text["fileCreatedAt"]), lit(text["fileModifiedAt"]),
                   lit(text["fileCreatedAt"]), lit(favorite), lit(text.get("duration")), extra_vals))
        except DbError as exc:
            os.unlink(path)
            if "duplicate key" in str(exc):
                dup = self.db.row('SELECT id FROM %s WHERE "ownerId" = %s AND checksum = %s AND "libraryId" IS NULL'
                                  % (self.n.asset, lit(owner), lit(checksum)))
                if dup:
                    return 200, {"id": dup["id"], "status": "duplicate"}
            raise
        self.db.run('INSERT INTO %s ("assetId", "fileSizeInByte") VALUES (%s, %d);\n'
                    'UPDATE %s SET "quotaUsageInBytes" = "quotaUsageInBytes" + %d WHERE id = %s;'
                    % (self.n.exif, lit(row["id"]), len(data), self.n.user, len(data), lit(owner)))
        self.queues.add("metadataExtraction", self.extract_metadata, row["id"])
        return 201, {"id": row["id"], "status": "created"}

    @route("GET", "/api/assets/{id}", "user")
    def asset_info(self, req):
        a = self.get_asset(req)
        files = self.db.rows('SELECT type, path FROM %s WHERE "assetId" = %s' % (self.n.file, lit(a["id"])))
        dto = self.asset_dto(a, files)
        dto["exifInfo"] = self.db.row('SELECT * FROM %s WHERE "assetId" = %s' % (self.n.exif, lit(a["id"])))
        return 200, dto

    @route("GET", "/api/assets/{id}/original", "user")
    def original(self, req):
        a = self.get_asset(req)
        ext = os.path.splitext(a["originalFileName"])[1].lower()
        return 200, self.send_file(a["originalPath"], IMAGE_EXT.get(ext) or VIDEO_EXT.get(ext) or
                                   "application/octet-stream", a["originalFileName"])

    @route("GET", "/api/assets/{id}/thumbnail", "user")
    def thumbnail(self, req):
        a = self.get_asset(req)
        size = req.arg("size", "thumbnail")
        if size not in ("thumbnail", "preview", "fullsize"):
            raise HttpError(400, "Validation failed", errors=["size must be one of thumbnail, preview, fullsize"])
        files = {f["type"]: f["path"] for f in self.db.rows(
            'SELECT type, path FROM %s WHERE "assetId" = %s' % (self.n.file, lit(a["id"])))}
        path = files.get(size) or (files.get("preview") if size == "fullsize" else None)
        if not path:
            raise HttpError(404, "Asset media not found")
        return 200, self.send_file(path, "image/webp" if path.endswith(".webp") else "image/jpeg")

    # -- albums ------------------------------------------------------------------------------------
    def album_dto(self, album, with_assets):
        owner = self.db.row("SELECT %s FROM %s u WHERE u.id = %s" % (user_columns(), self.n.user,
                                                                     lit(album["ownerId"])))
        assets = self.db.rows('SELECT %s FROM %s a JOIN %s aa ON aa.%s = a.id WHERE aa.%s = %s AND a."deletedAt" IS NULL '
                              'ORDER BY a."fileCreatedAt" DESC' % (self.asset_columns(), self.n.asset, self.n.album_asset,
                                                                   self.n.aa_asset, self.n.aa_album, lit(album["id"])))
        dates = sorted(a["fileCreatedAt"] for a in assets)
        return {"id": album["id"], "ownerId": album["ownerId"], "albumName": album["albumName"],
                "description": album["description"], "createdAt": album["createdAt"], "updatedAt": album["updatedAt"],
                "albumThumbnailAssetId": album["albumThumbnailAssetId"], "shared": False, "albumUsers": [],
                "hasSharedLink": False, "assets": [self.asset_dto(a) for a in assets] if with_assets else [],
                "owner": user_dto(owner), "assetCount": len(assets),
                "startDate": dates[0] if dates else None, "endDate": dates[-1] if dates else None,
                "lastModifiedAssetTimestamp": max((a["updatedAt"] for a in assets), default=None),
                "isActivityEnabled": album["isActivityEnabled"], "order": album["order"]}

    def album_columns(self):
        return ('id, "ownerId", "albumName", description, "createdAt", "updatedAt", "albumThumbnailAssetId", '
                '"isActivityEnabled", "order"')

    def add_to_album(self, album_id, user_id, ids):
        results = []
        for aid in ids:
            if not is_uuid(aid):
                raise HttpError(400, "Validation failed", errors=["each value in ids must be a UUID"])
            owner = self.db.row('SELECT "ownerId" FROM %s WHERE id = %s AND "deletedAt" IS NULL' % (self.n.asset, lit(aid)))
            if not owner:
                results.append({"id": aid, "success": False, "error": "not_found"})
            elif owner["ownerId"] != user_id:
                results.append({"id": aid, "success": False, "error": "no_permission"})
            elif self.db.row("SELECT 1 AS x FROM %s WHERE %s = %s AND %s = %s" % (
                    self.n.album_asset, self.n.aa_album, lit(album_id), self.n.aa_asset, lit(aid))):
                results.append({"id": aid, "success": False, "error": "duplicate"})
            else:
                self.db.run("INSERT INTO %s (%s, %s) VALUES (%s, %s)" % (
                    self.n.album_asset, self.n.aa_album, self.n.aa_asset, lit(album_id), lit(aid)))
                results.append({"id": aid, "success": True})
        if any(r["success"] for r in results):
            self.db.run('UPDATE %s SET "updatedAt" = now(), "albumThumbnailAssetId" = coalesce("albumThumbnailAssetId", '
                        '%s) WHERE id = %s' % (self.n.album, lit(next(r["id"] for r in results if r["success"])),
                                               lit(album_id)))
        return results

    @route("POST", "/api/albums", "user")
    def create_album(self, req):
        body = req.json()
        name = body.get("albumName")
        ids = body.get("assetIds") or []
        if not isinstance(name, str) or not isinstance(ids, list):
            raise HttpError(400, "Validation failed", errors=["albumName must be a string"])
        album = self.db.row('INSERT INTO %s ("ownerId", "albumName", description) VALUES (%s, %s, %s) RETURNING %s'
                            % (self.n.album, lit(req.user["id"]), lit(name), lit(body.get("description") or ""),
                               self.album_columns()))
        self.add_to_album(album["id"], req.user["id"], [i for i in ids if is_uuid(i)])
        album = self.db.row("SELECT %s FROM %s WHERE id = %s" % (self.album_columns(), self.n.album, lit(album["id"])))
        return 201, self.album_dto(album, True)

    def get_album(self, req):
        aid = req.params["id"]
        album = self.db.row('SELECT %s FROM %s WHERE id = %s AND "deletedAt" IS NULL'
                            % (self.album_columns(), self.n.album, lit(aid))) if is_uuid(aid) else None
        if not album or album["ownerId"] != req.user["id"]:
            raise HttpError(400, "Not found or no album.read access")
        return album

    @route("GET", "/api/albums", "user")
    def list_albums(self, req):
        albums = self.db.rows('SELECT %s FROM %s WHERE "ownerId" = %s AND "deletedAt" IS NULL ORDER BY "createdAt" DESC'
                              % (self.album_columns(), self.n.album, lit(req.user["id"])))
        return 200, [self.album_dto(a, False) for a in albums]

    @route("GET", "/api/albums/{id}", "user")
    def album_info(self, req):
        return 200, self.album_dto(self.get_album(req), req.arg("withoutAssets", "false") != "true")

    @route("PUT", "/api/albums/{id}/assets", "user")
    def album_add(self, req):
        album = self.get_album(req)
        ids = req.json().get("ids")
        if not isinstance(ids, list):
            raise HttpError(400, "Validation failed", errors=["ids must be an array"])
        return 200, self.add_to_album(album["id"], req.user["id"], ids)

    # -- jobs --------------------------------------------------------------------------------------
    def thumb_path(self, owner, aid, kind):
        ext = "webp" if kind == "thumbnail" else "jpeg"
        return os.path.join(self.media, "thumbs", owner, aid[0:2], aid[2:4], "%s%s%s.%s" % (aid, self.n.thumb_sep, kind, ext))

    @staticmethod
    def derived(kind, data):
        """Deterministic stand-ins for sharp's output (we do not decode images): a header + sha256 of the source."""
        head = {"thumbnail": b"RIFF\x00\x00\x00\x00WEBPVP8 lab-thumbnail ", "preview": b"\xff\xd8\xff\xe0lab-preview ",
                "person": b"\xff\xd8\xff\xe0lab-face "}[kind]
        return head + hashlib.sha256(data).hexdigest().encode() + b"\n"

    def extract_metadata(self, aid):
        """MetadataService.handleMetadataExtraction: exif + job status, then the thumbnails are queued."""
        a = self.db.row('SELECT id, "originalPath", "fileCreatedAt", "fileModifiedAt" FROM %s WHERE id = %s'
                        % (self.n.asset, lit(aid)))
        if not a:
            return
        with open(a["originalPath"], "rb") as fh:
            head = fh.read(32)
        size = os.path.getsize(a["originalPath"])
        width = height = None
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        self.db.run(
            'INSERT INTO %s ("assetId", "fileSizeInByte", "exifImageWidth", "exifImageHeight", "dateTimeOriginal", '
            '"modifyDate", "timeZone") VALUES (%s, %d, %s, %s, %s, %s, \'UTC\') ON CONFLICT ("assetId") DO UPDATE SET '
            '"fileSizeInByte" = EXCLUDED."fileSizeInByte", "exifImageWidth" = EXCLUDED."exifImageWidth", '
            '"exifImageHeight" = EXCLUDED."exifImageHeight", "dateTimeOriginal" = EXCLUDED."dateTimeOriginal", '
            '"modifyDate" = EXCLUDED."modifyDate", "timeZone" = EXCLUDED."timeZone";\n'
            'INSERT INTO asset_job_status ("assetId", "metadataExtractedAt") VALUES (%s, now()) '
            'ON CONFLICT ("assetId") DO UPDATE SET "metadataExtractedAt" = now();'
            % (self.n.exif, lit(aid), size, lit(width), lit(height), lit(a["fileCreatedAt"]), lit(a["fileModifiedAt"]),
               lit(aid)))
        self.queues.add("thumbnailGeneration", self.generate_thumbnails, aid)

    def generate_thumbnails(self, aid):
        """MediaService.handleGenerateThumbnails: thumbnail + preview files, their rows, the thumbhash."""
        a = self.db.row('SELECT id, "ownerId", "originalPath" FROM %s WHERE id = %s' % (self.n.asset, lit(aid)))
        if not a:
            return
        with open(a["originalPath"], "rb") as fh:  # a missing original fails the job, as in Immich
            data = fh.read()
        sql = []
        for kind in ("thumbnail", "preview"):
            path = self.thumb_path(a["ownerId"], aid, kind)
            self.write_file(path, self.derived(kind, data))
            sql.append('INSERT INTO %s ("assetId", type, path) VALUES (%s, %s, %s) ON CONFLICT ("assetId", type) '
                       'DO UPDATE SET path = EXCLUDED.path, "updatedAt" = now();' % (self.n.file, lit(aid), lit(kind), lit(path)))
        thumbhash = hashlib.sha256(b"thumbhash" + data).digest()[:24]
        sql.append('UPDATE %s SET thumbhash = %s WHERE id = %s;' % (self.n.asset, lit(thumbhash), lit(aid)))
        if self.n.old:
            sql.append('INSERT INTO asset_job_status ("assetId", "previewAt", "thumbnailAt") VALUES (%s, now(), now()) '
                       'ON CONFLICT ("assetId") DO UPDATE SET "previewAt" = now(), "thumbnailAt" = now();' % lit(aid))
        self.db.run("\n".join(sql), single_tx=True)

    def generate_person_thumbnail(self, pid):
        person = self.db.row('SELECT p.id, p."ownerId", a."originalPath" FROM person p JOIN %s f ON f."personId" = p.id '
                             'JOIN %s a ON a.id = f."assetId" WHERE p.id = %s ORDER BY f.id LIMIT 1'
                             % (self.n.face, self.n.asset, lit(pid)))
        if not person:
            return  # no face to crop: Immich skips it too
        with open(person["originalPath"], "rb") as fh:
            data = fh.read()
        path = os.path.join(self.media, "thumbs", person["ownerId"], pid[0:2], pid[2:4], "%s.jpeg" % pid)
        self.write_file(path, self.derived("person", pid.encode() + data))
        self.db.run('UPDATE person SET "thumbnailPath" = %s, "updatedAt" = now() WHERE id = %s' % (lit(path), lit(pid)))

    def queue_thumbnails(self, force):
        """MediaService.handleQueueGenerateThumbnails over AssetJobRepository.streamForThumbnailJob."""
        n = self.n
        if force:
            where = ""
        elif n.old:  # <= 1.136: the job status timestamps
            where = ('JOIN asset_job_status j ON j."assetId" = a.id WHERE (j."previewAt" IS NULL OR j."thumbnailAt" IS NULL '
                     "OR a.thumbhash IS NULL) AND")
        else:  # now: the asset_file rows; a row whose file is gone does not count as missing
            where = ('JOIN asset_job_status j ON j."assetId" = a.id WHERE (NOT EXISTS (SELECT 1 FROM %(f)s WHERE '
                     '"assetId" = a.id AND type = \'thumbnail\') OR NOT EXISTS (SELECT 1 FROM %(f)s WHERE "assetId" = a.id '
                     "AND type = 'preview') OR a.thumbhash IS NULL) AND" % {"f": n.file})
        ids = self.db.run('SELECT a.id FROM %s a %s %s a."deletedAt" IS NULL AND %s != \'hidden\' ORDER BY a."createdAt"'
                          % (n.asset, where, "" if where else "WHERE", n.visibility())).split()
        for aid in ids:
            self.queues.add("thumbnailGeneration", self.generate_thumbnails, aid)
        people = self.db.run("SELECT id FROM person %s ORDER BY id" % ("" if force else "WHERE \"thumbnailPath\" = ''")).split()
        for pid in people:
            self.queues.add("thumbnailGeneration", self.generate_person_thumbnail, pid)
        log("Queued %d asset and %d person thumbnail jobs (force=%s)" % (len(ids), len(people), force), "MediaService",
            worker="Microservices")

    def queue_metadata(self, force):
        n = self.n
        where = "" if force else ('LEFT JOIN asset_job_status j ON j."assetId" = a.id WHERE (j."metadataExtractedAt" IS NULL '
                                  'OR j."assetId" IS NULL) AND')
        for aid in self.db.run('SELECT a.id FROM %s a %s %s a."deletedAt" IS NULL' % (n.asset, where, "" if where else "WHERE")).split():
            self.queues.add("metadataExtraction", self.extract_metadata, aid)

    @route("GET", "/api/jobs", "admin")
    def jobs(self, _req):
        return 200, {name: self.queues.status(name) for name in QUEUES}

    @route("PUT", "/api/jobs/{name}", "admin")
    def job_command(self, req):
        name = req.params["name"]
        body = req.json()
        command = body.get("command")
        force = body.get("force")
        if name not in QUEUES or command not in ("start", "pause", "resume", "empty", "clear-failed") \
                or (force is not None and not isinstance(force, bool)):
            raise HttpError(400, "Validation failed")
        if command == "start":
            if self.queues.busy(name):
                raise HttpError(400, "Job is already running")
            if name == "thumbnailGeneration":
                self.queues.add(name, self.queue_thumbnails, bool(force))
            elif name == "metadataExtraction":
                self.queues.add(name, self.queue_metadata, bool(force))
        else:
            self.queues.command(name, command)
        return 200, self.queues.status(name)

    # -- maintenance -------------------------------------------------------------------------------
    @route("POST", "/api/admin/maintenance", "admin")
    def start_maintenance(self, req):
        if req.json().get("action") != "start":
            raise HttpError(400, "Validation failed")
        set_maintenance(self.db, True)
        restart_soon()
        return 201, None

    @route("GET", "/api/admin/maintenance/status", "maintenance")
    def maintenance_status(self, _req):
        return 200, {"active": True, "action": (self.maintenance.get("action") or {}).get("action", "start")}

    @route("POST", "/api/admin/maintenance/login", "maintenance")
    def maintenance_login(self, req):
        token = req.json().get("token") or req.cookie("immich_maintenance_token")
        if not token:
            raise HttpError(401, "Missing JWT Token")
        payload = jwt_verify(token, self.maintenance.get("secret") or "")
        if payload is None:
            raise HttpError(401, "Invalid JWT Token")
        req.cookies_out = ["immich_maintenance_token=%s; Path=/; HttpOnly; SameSite=Lax" % token]
        return 201, {"username": payload.get("username")}

    @route("POST", "/api/admin/maintenance", "maintenance")
    def end_maintenance(self, req):
        if jwt_verify(req.cookie("immich_maintenance_token") or "", self.maintenance.get("secret") or "") is None:
            raise HttpError(401, "Missing JWT Token")
        if req.json().get("action") == "end":
            set_maintenance(self.db, False)
            restart_soon()
        return 201, None


# ---- maintenance helpers ---------------------------------------------------------------------------

def jwt_sign(payload, secret):
    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=")
    head = enc({"alg": "HS256", "typ": "JWT"}) + b"." + enc(dict(payload, iat=int(time.time()), exp=int(time.time()) + 14400))
    sig = base64.urlsafe_b64encode(hmac.new(secret.encode(), head, hashlib.sha256).digest()).rstrip(b"=")
    return (head + b"." + sig).decode()


def jwt_verify(token, secret):
    try:
        head, body, sig = token.encode().split(b".")
        want = base64.urlsafe_b64encode(hmac.new(secret.encode(), head + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
        if not secret or not hmac.compare_digest(want, sig):
            return None
        payload = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
    except ValueError:
        return None
    return payload if payload.get("exp", 0) > time.time() else None


def set_maintenance(db, enabled):
    """CliService.enable/disableMaintenanceMode: the state; the caller restarts the server."""
    state = db.meta_get("maintenance-mode") or {"isMaintenanceMode": False}
    if enabled and state.get("isMaintenanceMode"):
        return state, True
    if not enabled and not state.get("isMaintenanceMode"):
        return state, True
    state = {"isMaintenanceMode": True, "secret": secrets.token_hex(64)} if enabled else {"isMaintenanceMode": False}
    db.meta_set("maintenance-mode", state)
    return state, False


def login_url(secret):
    return "http://localhost:%s/maintenance?token=%s" % (os.environ.get("IMMICH_PORT", "2283"),
                                                         jwt_sign({"username": "immich-admin"}, secret))


def restart_soon():
    """AppRestart: every worker stops and the server bootstraps again (in the same container)."""
    threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGHUP)).start()


# ---- the HTTP server ---------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    server_version = "immich-standin"

    def do_GET(self):  # noqa: N802 - http.server API
        self.dispatch("GET")

    def do_POST(self):  # noqa: N802
        self.dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self.dispatch("PUT")

    def do_DELETE(self):  # noqa: N802
        self.dispatch("DELETE")

    def do_PATCH(self):  # noqa: N802
        self.dispatch("PATCH")

    def reply(self, status, body, cookies=()):
        if isinstance(body, Raw):
            data, ctype, headers = body.data, body.content_type, body.headers
        else:
            data = b"" if body is None else json.dumps(body).encode()
            ctype, headers = "application/json; charset=utf-8", {}
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-immich-cid", uuid.uuid4().hex[:16])
        for key, val in headers.items():
            self.send_header(key, val)
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def dispatch(self, method):
        app = self.server.app
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        req = None
        try:
            for m, rx, func, auth in app.routes:
                found = rx.fullmatch(path)
                if not found or m != method:
                    continue
                req = Request(self, method, path, parse_qs(url.query), found.groupdict())
                if auth in ("user", "admin"):
                    req.user = app.authenticate(req)
                    if auth == "admin" and not req.user["isAdmin"]:
                        raise HttpError(403, "Forbidden")
                status, body = func(req)
                return self.reply(status, body, req.cookies_out)
            raise HttpError(404, "Cannot %s %s" % (method, url.path))
        except HttpError as exc:
            return self.reply(exc.status, exc.body)
        except (DbError, OSError) as exc:
            log("Unknown error: %s" % exc, "GlobalExceptionFilter", "ERROR")
            return self.reply(500, {"message": "Internal server error"})

    def log_message(self, fmt, *args):
        pass


def serve(app):
    port = int(os.environ.get("IMMICH_PORT", "2283"))
    httpd = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    httpd.daemon_threads = True
    httpd.app = app
    log("Immich Server is listening on http://[::1]:%d [%s] [production]" % (port, version_text(app.boot.version)),
        "Bootstrap", worker="Maintenance" if app.maintenance else "Api")
    httpd.serve_forever()


def restart(_signum, _frame):
    log("api worker shutdown for restart", "Workers")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable] + sys.argv)  # noqa: S606 - the same program again


def main():
    # PID 1 in its container: without a handler SIGTERM is ignored and `compose down` waits 10 s.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    signal.signal(signal.SIGHUP, restart)
    boot = Boot()
    if boot.old and os.path.isdir("/usr/src/app"):
        os.chdir("/usr/src/app")  # <= 1.136 stored paths relative to the server's working directory
    try:
        boot.db.wait(int(os.environ.get("LAB_DB_WAIT_SECONDS", "120")))
        maintenance = boot.maintenance_state()
        if maintenance:
            print("Starting maintenance worker", flush=True)
            boot.media = boot.detect_media_location()
            app = App(boot, maintenance)
            log("\n\n\U0001f6a7 Immich is in maintenance mode, you can log in using the following URL:\n%s\n"
                % login_url(maintenance.get("secret") or ""), "MaintenanceWorkerService", worker="Maintenance")
            return serve(app)
        print("Starting api worker", flush=True)
        print("Starting microservices worker", flush=True)
        boot.database_service()
        boot.storage_service()
    except (StartupError, DbError) as exc:
        log("%s" % exc, "Bootstrap", "ERROR")
        print("api worker exited with code 1", flush=True)
        sys.exit(1)
    return serve(App(boot))


# ---- immich-admin ----------------------------------------------------------------------------------

def node_repr(value, indent=0):
    """console.dir-like output (what immich-admin list-users prints)."""
    pad = "  " * indent
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(pad + "  " + node_repr(v, indent + 1) for v in value) + "\n" + pad + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{\n" + ",\n".join("%s  %s: %s" % (pad, k, node_repr(v, indent + 1)) for k, v in value.items()) + "\n" + pad + "}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return "'%s'" % str(value).replace("'", "\\'")


def admin_main(argv):
    boot = Boot()
    db = boot.db
    cmd = argv[0] if argv else "help"
    commands = ["schema-check", "list-users", "version", "enable-maintenance-mode", "disable-maintenance-mode", "help"]
    if boot.old:
        commands = ["list-users", "version", "help"]
    if cmd not in commands:
        print("error: unknown command '%s'" % cmd, file=sys.stderr)
        return 1
    if cmd == "help":
        print("Usage: immich-admin [options] [command]\n\nCommands:\n" + "\n".join("  " + c for c in commands))
        return 0
    if cmd == "version":
        print(version_text(boot.version))
        return 0
    try:
        if cmd == "list-users":
            app_users = db.rows('SELECT %s FROM %s u ORDER BY u."createdAt"' % (user_columns(), boot.naming.user))
            print(node_repr([user_admin_dto(u) for u in app_users]))
        elif cmd == "schema-check":
            schema_check(boot)
        else:
            state, already = set_maintenance(db, cmd == "enable-maintenance-mode")
            if cmd == "enable-maintenance-mode":
                print("Maintenance mode has been enabled.")
                print(login_url(state.get("secret") or ""))
            else:
                print("Maintenance mode has been disabled.")
            if not already:
                signal_server_restart()
    except DbError as exc:
        print(exc, file=sys.stderr)
        print({"list-users": "Unable to load users", "schema-check": "Unable to debug migrations"}.get(
            cmd, "Unable to change maintenance mode"), file=sys.stderr)
    return 0


def schema_check(boot):
    db = boot.db
    boot.ext = boot.installed_vector_extension()
    applied = [r["name"] for r in db.rows("SELECT name FROM kysely_migrations ORDER BY name")] \
        if db.table_exists("kysely_migrations") else []
    names = [n for n, _b in load_migrations(boot.schema)]
    deleted = [a for a in applied if a not in names]
    missing = [n for n in names if n not in applied]
    if not deleted and not missing:
        print("Migrations are up to date")
    else:
        print("Migration issues detected:")
        for name in deleted:
            print("  - %s was applied, but the file no longer exists on disk" % name)
        for name in missing:
            print("  - %s exists on disk, but has not been applied to the database" % name)
    items = boot.drift()
    if not items:
        print("\nNo schema drift detected")
        return
    print("\n" + ERR_DRIFT)
    for kind, human, _sql in items:
        print("  - %s: %s" % (kind, human))
    print("\n\nThe below SQL is automatically generated and may be helpful for resolving drift. ** Use at your own risk! **"
          "\n\n```sql\n%s\n```\n" % "\n".join(s for _k, _h, s in items))


def signal_server_restart():
    """sendOneShotAppRestart: the running server (PID 1 of this container) bootstraps again."""
    try:
        with open("/proc/1/cmdline", "rb") as fh:
            if b"immich-standin" in fh.read():
                os.kill(1, signal.SIGHUP)
    except OSError:
        pass


def healthcheck():
    import urllib.request  # noqa: PLC0415 - only the healthcheck needs it

    try:
        with urllib.request.urlopen("http://127.0.0.1:%s/api/server/ping" % os.environ.get("IMMICH_PORT", "2283"),
                                    timeout=3) as res:
            return 0 if json.loads(res.read()).get("res") == "pong" else 1
    except (OSError, ValueError):
        return 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "admin":
        sys.exit(admin_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "healthcheck":
        sys.exit(healthcheck())
    main()
