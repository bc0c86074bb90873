"""Immich server stand-in for the homelab.immich lab.

Behaves like immich-server where backup and restore touch it:
- at start, unless DB_SKIP_MIGRATIONS=true, it runs "migrations" (creates the Immich schema when
  absent), so a server that has started once makes the database non-fresh;
- it refuses to start when a media folder that the database knows is missing its `.immich` marker;
  on a brand-new install it creates the folders and markers, as Immich does;
- GET /api/server/ping answers {"res":"pong"};
- GET /api/lab/stats reports the asset count and the assets whose originalPath is not on disk.
It talks to Postgres through psql (password in the environment, never on a command line).
"""
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MEDIA = os.environ.get("IMMICH_MEDIA_LOCATION", "/data")
FOLDERS = ("library", "upload", "profile", "thumbs", "encoded-video", "backups")
SCHEMA = "/usr/local/share/immich_schema.sql"


def log(msg):
    print("[immich-standin] " + msg, flush=True)


def psql(sql=None, file=None):
    env = dict(os.environ, PGPASSWORD=os.environ.get("DB_PASSWORD", ""))
    cmd = [
        "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
        "-h", os.environ.get("DB_HOSTNAME", "database"),
        "-p", os.environ.get("DB_PORT", "5432"),
        "-U", os.environ.get("DB_USERNAME", "postgres"),
        "-d", os.environ.get("DB_DATABASE_NAME", "immich"),
    ]
    cmd += ["-f", file] if file else ["-c", sql]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip())
    return res.stdout.strip()


def wait_for_db(timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psql("SELECT 1")
        except RuntimeError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError("database not reachable: %s" % exc) from exc
            time.sleep(1)


def schema_present():
    return psql("SELECT to_regclass('public.kysely_migrations') IS NOT NULL") == "t"


def check_media(new_install):
    for folder in FOLDERS:
        path = os.path.join(MEDIA, folder)
        marker = os.path.join(path, ".immich")
        if os.path.exists(marker):
            continue
        if new_install:
            os.makedirs(path, exist_ok=True)
            with open(marker, "w"):
                pass
            continue
        log("Failed to read (%s): ENOENT: no such file or directory" % marker)
        log("Please see https://immich.app/docs/administration/system-integrity#folder-checks")
        sys.exit(1)


def stats():
    rows = psql('SELECT id, "originalPath" FROM asset WHERE "deletedAt" IS NULL')
    missing = []
    count = 0
    for line in filter(None, rows.splitlines()):
        count += 1
        asset_id, path = line.split("|", 1)
        if not os.path.isfile(path):
            missing.append({"id": asset_id, "originalPath": path})
    return {"assets": count, "missing": missing, "missingCount": len(missing)}


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path == "/api/server/ping":
            return self._send(200, {"res": "pong"})
        if self.path == "/api/lab/stats":
            try:
                return self._send(200, stats())
            except RuntimeError as exc:
                return self._send(500, {"error": str(exc)})
        if self.path == "/api/server/version":
            return self._send(200, {"major": 2, "minor": 3, "patch": 1})
        return self._send(404, {"error": "not found"})

    def log_message(self, fmt, *args):
        pass


def main():
    # PID 1 in its container: without a handler SIGTERM is ignored and `compose down` waits 10 s.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    wait_for_db()
    had_schema = schema_present()
    check_media(new_install=not had_schema)
    if os.environ.get("DB_SKIP_MIGRATIONS", "").lower() == "true":
        log("DB_SKIP_MIGRATIONS=true: not running migrations")
    else:
        psql(file=SCHEMA)
        log("migrations done (schema %s)" % ("up to date" if had_schema else "created"))
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("IMMICH_PORT", "2283"))), Handler)
    log("listening on %s" % (server.server_address,))
    server.serve_forever()


if __name__ == "__main__":
    main()
