"""The offline Immich lab: instances shaped like Immich's official compose project.

Used by the tests, the benchmarks and `make demo`; also a small CLI:

    lab.py images                         build (or reuse) the lab images, print their tags
    lab.py up NAME [--pg 15|17] [--seed small|large|api|none] [--immich-version v2.7.5]
    lab.py down NAME [--purge]            compose down -v; --purge also removes the folders
    lab.py ping NAME | stats NAME | counts NAME
    lab.py destroy-all                    every lab instance, containers and folders

An instance is a folder holding `docker-compose.yml` and `.env` exactly like a user's
(UPLOAD_LOCATION=./library, DB_DATA_LOCATION=./postgres), with the project name, container names,
the published port (127.0.0.1 only) and the folders as parameters, so several run side by side.

The images are parameters too: LAB_IMAGE_SERVER, LAB_IMAGE_POSTGRES (every Postgres major) and
LAB_IMAGE_REDIS replace the images build.sh gives (e.g. the real ghcr.io/immich-app images, loaded
beforehand: nothing is pulled). With a server image that is not the lab's stand-in every seeding goes
through the Immich API (api_seed.py), never through SQL: the real migrations own those tables.
Other environment: LAB_DB_VECTOR_EXTENSION and LAB_IMMICH_MEDIA_LOCATION are written into the
instance's .env as DB_VECTOR_EXTENSION / IMMICH_MEDIA_LOCATION.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
STATE = os.environ.get("LAB_STATE_DIR", "/var/tmp/homelab-immich-lab")
INSTANCES = os.path.join(STATE, "instances")
LABEL = "homelab.immich.lab=1"
_IMAGES = {}


def log(msg):
    print("lab: " + msg, file=sys.stderr, flush=True)


def run(cmd, check=True, **kw):
    kw.setdefault("text", True)
    kw.setdefault("capture_output", True)
    res = subprocess.run(cmd, check=False, **kw)
    if check and res.returncode != 0:
        raise RuntimeError("%s failed (rc=%s): %s" % (" ".join(cmd), res.returncode, (res.stderr or "").strip()[-2000:]))
    return res


def images():
    """Tags of the lab images, built on first use (a no-op when their recipes did not change)."""
    if not _IMAGES:
        out = run(["bash", os.path.join(HERE, "images", "build.sh")], stderr=None, capture_output=False, stdout=subprocess.PIPE).stdout
        for line in out.splitlines():
            key, _sep, val = line.partition("=")
            _IMAGES[key] = val
    return _IMAGES


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMPOSE = """\
# Lab instance {project}: shaped like Immich's official docker-compose.yml.
name: {project}

services:
  immich-server:
    container_name: {server}
    image: {server_image}
    pull_policy: never
    volumes:
      # /data since v1.137 (PR #20367), /usr/src/app/upload before: where that server looks for it.
      - ${{UPLOAD_LOCATION}}:{mount}
      - /etc/localtime:/etc/localtime:ro
    env_file:
      - .env
    ports:
      - '127.0.0.1:{port}:2283'
    depends_on:
      - redis
      - database
    restart: always
    healthcheck:
      disable: false  # the image's own HEALTHCHECK (immich-healthcheck), as the official compose file

  redis:
    container_name: {redis}
    image: {redis_image}
    pull_policy: never
    healthcheck:
      test: redis-cli ping || exit 1
      interval: 2s
    restart: always

  database:
    container_name: {postgres}
    image: {postgres_image}
    pull_policy: never
    environment:
      POSTGRES_PASSWORD: ${{DB_PASSWORD}}
      POSTGRES_USER: ${{DB_USERNAME}}
      POSTGRES_DB: ${{DB_DATABASE_NAME}}
      POSTGRES_INITDB_ARGS: '--data-checksums'
    volumes:
      - ${{DB_DATA_LOCATION}}:/var/lib/postgresql/data
    shm_size: 128mb
    stop_signal: SIGINT
    restart: always
    healthcheck:
      test: >-
        pg_isready --dbname="$${{POSTGRES_DB}}" --username="$${{POSTGRES_USER}}" || exit 1;
        Chksum="$$(psql --dbname="$${{POSTGRES_DB}}" --username="$${{POSTGRES_USER}}" --tuples-only --no-align
        --command='SELECT COALESCE(SUM(checksum_failures), 0) FROM pg_stat_database')";
        echo "checksum failure count is $$Chksum";
        [ "$$Chksum" = '0' ] || exit 1
      interval: 2s
      start_period: 10s
      retries: 30
"""

ENV = """\
# Lab instance {project}: the keys of Immich's example.env.
UPLOAD_LOCATION={upload}
DB_DATA_LOCATION={db_data}
TZ=Etc/UTC
IMMICH_VERSION={immich_version}
DB_PASSWORD={password}
DB_USERNAME={user}
DB_DATABASE_NAME={database}
"""
DEFAULT_IMMICH_VERSION = "v2.7.5"
NEW_LAYOUT_SINCE = (1, 137, 0)  # /data mount (PR #20367), singular tables, absolute paths


def parse_version(text):
    found = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(x) for x in found.groups()) if found else None


class Instance:
    """One lab Immich instance. Every name is a parameter; defaults follow the project name.

    immich_version: the IMMICH_VERSION the server models (< v1.137: the TypeORM-era naming, paths relative
    to /usr/src/app and UPLOAD_LOCATION mounted there, as the compose file of that era did).
    server_env: extra .env lines for the server (DB_SKIP_MIGRATIONS, IMMICH_IGNORE_MOUNT_CHECK_ERRORS, ...).
    server_image / postgres_image / redis_image: override LAB_IMAGE_* and build.sh's tags.
    pgvector=False (pg=17 only): build.sh's PG 17 image without pgvector (LAB_IMAGE_POSTGRES17_NOVECTOR), a target
    lacking the vector extension of a dump; the stand-in runs there in its no-vector mode (LAB_ALLOW_NO_VECTOR).
    """

    def __init__(self, name, *, pg=15, root=None, port=None, prefix=None, user="postgres",
                 database="immich", password=None, upload="./library", db_data="./postgres",
                 immich_version=None, server_env=None, vector_extension=None, media_location=None,
                 server_image=None, postgres_image=None, redis_image=None, pgvector=True):
        self.name = name
        self.pg = int(pg)
        self.root = root or os.path.join(INSTANCES, name)
        self.prefix = prefix or name
        self.user = user
        self.database = database
        self.password = password or ("lab-" + name + "-secret")
        self._upload = upload
        self._db_data = db_data
        self.port = port
        self.immich_version = immich_version or DEFAULT_IMMICH_VERSION
        self.server_env = dict(server_env or {})
        self.vector_extension = vector_extension if vector_extension is not None else os.environ.get("LAB_DB_VECTOR_EXTENSION")
        self.media_location = media_location if media_location is not None else os.environ.get("LAB_IMMICH_MEDIA_LOCATION")
        # Images: explicit, else the environment, else build.sh's (resolved lazily: constructing is cheap).
        self._images = {"server": server_image or os.environ.get("LAB_IMAGE_SERVER") or None,
                        "postgres": postgres_image or os.environ.get("LAB_IMAGE_POSTGRES") or None,
                        "redis": redis_image or os.environ.get("LAB_IMAGE_REDIS") or None}
        self.pgvector = bool(pgvector)
        if not self.pgvector and self.pg != 17:
            raise ValueError("pgvector=False exists for pg=17 only (our PG 15 has no vector extension anyway)")
        self.seed_result = None
        self.containers = {
            "server": self.prefix + "_server",
            "postgres": self.prefix + "_postgres",
            "redis": self.prefix + "_redis",
        }

    # -- what it runs ------------------------------------------------------------------------------
    @property
    def version(self):
        return parse_version(self.immich_version) or parse_version(DEFAULT_IMMICH_VERSION)

    @property
    def old_naming(self):
        """Immich <= 1.136: plural tables, TypeORM `migrations`, UPLOAD_LOCATION at /usr/src/app/upload."""
        return self.version < NEW_LAYOUT_SINCE

    @property
    def container_media(self):
        """Where the server container sees UPLOAD_LOCATION (its mount point)."""
        return "/usr/src/app/upload" if self.old_naming else "/data"

    def image(self, kind):
        if self._images.get(kind):
            return self._images[kind]
        img = images()
        return img["LAB_IMAGE_SERVER"] if kind == "server" else img["LAB_IMAGE_REDIS"] if kind == "redis" \
            else img["LAB_IMAGE_POSTGRES%d%s" % (self.pg, "" if self.pgvector else "_NOVECTOR")]

    @property
    def api_seeding(self):
        """True when the server is not build.sh's stand-in: then every seeding goes through the API."""
        return self.image("server") != images()["LAB_IMAGE_SERVER"]

    @property
    def own_postgres(self):
        return self.image("postgres") in (images().get("LAB_IMAGE_POSTGRES15"), images().get("LAB_IMAGE_POSTGRES17"),
                                          images().get("LAB_IMAGE_POSTGRES17_NOVECTOR"))

    def env_lines(self):
        """The server environment beyond example.env's keys: what the modelled server needs here."""
        env = {}
        vector = self.vector_extension
        if vector is None and self.own_postgres:
            # Our PG 17 has pgvector (v2 finds it alone; <= 1.136 defaulted to pgvecto.rs and needs it named);
            # our PG 15 has none: the stand-in may run without one (LAB_ALLOW_NO_VECTOR), the real server not.
            vector = "pgvector" if self.pg >= 17 and self.old_naming and self.pgvector else ""
            if self.pg < 17 or not self.pgvector:
                env["LAB_ALLOW_NO_VECTOR"] = "true"
        if vector:
            env["DB_VECTOR_EXTENSION"] = vector
        if self.media_location:
            env["IMMICH_MEDIA_LOCATION"] = self.media_location
        env.update({k: str(v) for k, v in self.server_env.items() if v is not None})
        return "".join("%s=%s\n" % (k, v) for k, v in env.items() if v != "")

    # -- paths as the user's .env gives them ---------------------------------------------------
    def _abs(self, p):
        return os.path.normpath(os.path.join(self.root, p))

    @property
    def upload_location(self):
        return self._abs(self._upload)

    @property
    def db_data_location(self):
        return self._abs(self._db_data)

    @property
    def compose_file(self):
        return os.path.join(self.root, "docker-compose.yml")

    @property
    def db(self):
        return self.containers["postgres"]

    @property
    def server(self):
        return self.containers["server"]

    def write(self):
        """(Re)write docker-compose.yml and .env; keeps the published port of an existing instance."""
        os.makedirs(self.root, exist_ok=True)
        env_path = os.path.join(self.root, ".env")
        if self.port is None and os.path.exists(self.compose_file):
            with open(self.compose_file) as fh:
                found = re.search(r"'127\.0\.0\.1:(\d+):2283'", fh.read())
            self.port = int(found.group(1)) if found else None
        if self.port is None:
            self.port = free_port()
        with open(self.compose_file, "w") as fh:
            fh.write(COMPOSE.format(
                project=self.name, port=self.port, mount=self.container_media,
                server=self.containers["server"], redis=self.containers["redis"],
                postgres=self.containers["postgres"],
                server_image=self.image("server"), redis_image=self.image("redis"),
                postgres_image=self.image("postgres")))
        with open(env_path, "w") as fh:
            fh.write(ENV.format(project=self.name, upload=self._upload, db_data=self._db_data,
                                password=self.password, user=self.user, database=self.database,
                                immich_version=self.immich_version))
            fh.write(self.env_lines())
        os.chmod(env_path, 0o600)
        with open(os.path.join(self.root, "lab-instance.json"), "w") as fh:
            json.dump(self.params(), fh, indent=2)
        os.makedirs(self.upload_location, exist_ok=True)
        os.makedirs(self.db_data_location, exist_ok=True)
        return self

    # -- compose ----------------------------------------------------------------------------------
    def compose(self, *args, check=True, timeout=600):
        return run(["docker", "compose", "--project-directory", self.root, "-f", self.compose_file, *args],
                   check=check, timeout=timeout)

    def up(self, seed=None):
        """compose up --wait, then seed: "small"/"large" (SQL, or the API when api_seeding), "api", None/"none"."""
        self.write()
        self.compose("up", "-d", "--wait")
        if seed and seed != "none":
            self.seed(seed)
        return self

    def seed(self, kind="small"):
        if kind == "api" or self.api_seeding:
            from api_seed import seed as api_seed  # noqa: PLC0415 - optional import
            if kind not in ("api", "small"):
                raise RuntimeError("seed=%r needs the SQL seeder, which writes tables the real migrations own: with "
                                   "server image %s only seed='small'/'api' (through the API) exist"
                                   % (kind, self.image("server")))
            self.seed_result = api_seed(self)
        else:
            from seeder import seed as do_seed  # noqa: PLC0415 - optional heavy import
            self.seed_result = do_seed(self, size=kind)
        return self.seed_result

    def start_db_only(self):
        """The seed's `docker compose create` + `docker start immich_postgres`, then wait healthy."""
        self.write()
        self.compose("create")
        run(["docker", "start", self.db])
        self.wait_db()
        return self

    def wait_db(self, timeout=120):
        """Ready = accepting TCP: the init script's temporary server listens on the socket only."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = run(["docker", "exec", self.db, "pg_isready", "-h", "127.0.0.1", "-U", self.user,
                       "-d", self.database], check=False)
            if res.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError("database %s not ready after %ss" % (self.db, timeout))

    def down(self, purge=False):
        if os.path.exists(self.compose_file):
            self.compose("down", "-v", "--remove-orphans", check=False)
        if purge and os.path.isdir(self.root):
            shutil.rmtree(self.root)

    # -- the server container -----------------------------------------------------------------------
    def start_server(self, wait=True, recreate=False, timeout=120):
        """(Re)create immich-server from the current compose file and .env; wait=True waits for healthy."""
        self.write()
        args = ["up", "-d", "--no-deps"] + (["--force-recreate"] if recreate else []) + (["--wait"] if wait else [])
        self.compose(*(args + ["immich-server"]), timeout=timeout + 30)
        return self

    def restart_server(self, wait=True, timeout=120):
        """`docker restart`: the same container boots again (markers rewritten, migrations checked...)."""
        run(["docker", "restart", "-t", "10", self.server])
        if wait:
            self.wait_healthy(timeout)
        return self

    def server_state(self):
        out = run(["docker", "inspect", "-f", "{{json .State}}|{{.RestartCount}}", self.server], check=False)
        if out.returncode != 0:
            return {}
        state, _sep, count = out.stdout.strip().rpartition("|")
        data = json.loads(state)
        data["RestartCount"] = int(count or 0)
        return data

    def wait_healthy(self, timeout=120):
        """Until the server runs and answers pong (it listens only once its boot is through)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.server_state()
            if state.get("Status") == "running" and self.ping():
                return state
            time.sleep(0.2)
        raise RuntimeError("%s not healthy after %ss:\n%s" % (self.server, timeout, self.server_logs()[-3000:]))

    def wait_server_exit(self, timeout=60, restarts=None):
        """Until the server process has exited (restart: always brings it back), beyond `restarts` exits
        already counted when given: its State, with the ExitCode of that exit. (Docker may show ExitCode 0
        for a moment while it restarts: the code is read from a later state of the restart loop.)"""
        deadline = time.monotonic() + timeout
        base = restarts if restarts is not None else 0
        seen, settle = None, None
        while time.monotonic() < (settle or deadline):
            state = self.server_state()
            if state.get("RestartCount", 0) > base or (restarts is None and state.get("Status") == "exited"):
                if seen is None:
                    seen, settle = state, min(deadline, time.monotonic() + 20)
                if state.get("Status") in ("exited", "restarting") and state.get("ExitCode"):
                    return state
            time.sleep(0.1)
        if seen:
            return seen
        raise RuntimeError("%s did not exit within %ss:\n%s" % (self.server, timeout, self.server_logs()[-3000:]))

    def reset_db(self):
        """Stop the server, drop and recreate the database: as after `down -v` (the folders stay)."""
        run(["docker", "stop", "-t", "10", self.server], check=False)
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.database, database="postgres")
        self.psql('CREATE DATABASE "%s" OWNER "%s"' % (self.database, self.user), database="postgres")
        return self

    def server_logs(self, since=None):
        cmd = ["docker", "logs"] + (["--since", since] if since else []) + [self.server]
        res = run(cmd, check=False)
        return (res.stdout or "") + (res.stderr or "")

    def admin(self, *args):
        """`docker exec immich_server immich-admin ARGS`: the CompletedProcess."""
        return run(["docker", "exec", self.server, "immich-admin", *args], check=False)

    # -- talking to it ----------------------------------------------------------------------------
    def psql(self, sql, database=None, check=True):
        res = run(["docker", "exec", "-i", self.db, "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                   "-U", self.user, "-d", database or self.database], input=sql, check=check)
        return res.stdout.strip() if check else res

    def row_counts(self, database=None):
        """Exact per-table row counts of the public schema ({table: rows})."""
        tables = self.psql("SELECT tablename FROM pg_tables WHERE schemaname='public' ORDER BY 1", database).split()
        if not tables:
            return {}
        sql = " UNION ALL ".join("SELECT '%s', count(*) FROM public.\"%s\"" % (t, t) for t in tables)
        out = self.psql(sql, database)
        return {line.split("|")[0]: int(line.split("|")[1]) for line in out.splitlines()}

    def http(self, path, timeout=5):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=timeout) as r:
            return json.loads(r.read())

    def api(self, method, path, body=None, *, token=None, api_key=None, headers=None, timeout=30, raw=False):
        """One Immich API call: (status, JSON or bytes); status 0 when nothing answered.
        body: a dict (sent as JSON) or (content_type, bytes)."""
        hdrs = dict(headers or {})
        data = None
        if isinstance(body, tuple):
            hdrs["Content-Type"], data = body
        elif body is not None:
            hdrs["Content-Type"], data = "application/json", json.dumps(body).encode()
        if token:
            hdrs["Authorization"] = "Bearer " + token
        if api_key:
            hdrs["x-api-key"] = api_key
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, payload, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            status, payload, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
        except (urllib.error.URLError, OSError) as err:  # no server (yet, or restarting): status 0
            return 0, str(err)
        if raw or "json" not in ctype:
            return status, payload
        return status, json.loads(payload) if payload else None

    @property
    def admin_email(self):
        """The API-seeded admin: deterministic per instance."""
        return "admin@%s.lab.invalid" % re.sub(r"[^a-z0-9-]", "-", self.name.lower())

    @property
    def admin_password(self):
        return "lab-" + hashlib.sha256(("admin:" + self.name).encode()).hexdigest()[:20]

    def login(self, email=None, password=None):
        """POST /api/auth/login (the admin by default): the accessToken."""
        status, body = self.api("POST", "/api/auth/login", {"email": email or self.admin_email,
                                                            "password": password or self.admin_password})
        if status not in (200, 201):
            raise RuntimeError("login as %s failed: %s %s" % (email or self.admin_email, status, body))
        return body["accessToken"]

    def wait_jobs(self, token, timeout=120, queues=("metadataExtraction", "thumbnailGeneration")):
        """Until the queues have nothing active or waiting (GET /api/jobs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.api("GET", "/api/jobs", token=token)
            if status == 200 and all(body[q]["jobCounts"]["active"] + body[q]["jobCounts"]["waiting"] == 0
                                     for q in queues):
                return body
            time.sleep(0.3)
        raise RuntimeError("jobs of %s still running after %ss" % (self.name, timeout))

    def ping(self):
        try:
            return self.http("/api/server/ping").get("res") == "pong"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def stats(self):
        return self.http("/api/lab/stats", timeout=60)

    def params(self):
        return {"name": self.name, "pg": self.pg, "root": self.root, "port": self.port, "prefix": self.prefix,
                "user": self.user, "database": self.database, "password": self.password,
                "upload": self._upload, "db_data": self._db_data, "immich_version": self.immich_version,
                "server_env": self.server_env, "vector_extension": self.vector_extension,
                "media_location": self.media_location, "server_image": self._images["server"],
                "postgres_image": self._images["postgres"], "redis_image": self._images["redis"],
                "pgvector": self.pgvector}

    def as_dict(self):
        return {
            "name": self.name, "root": self.root, "compose_file": self.compose_file, "port": self.port,
            "pg": self.pg, "containers": self.containers, "upload_location": self.upload_location,
            "db_data_location": self.db_data_location, "db_user": self.user, "database": self.database,
            "immich_version": self.immich_version, "container_media": self.container_media,
            "server_image": self.image("server"), "api_seeding": self.api_seeding,
        }


def load(name, root=None):
    """An existing instance, with the parameters it was created with."""
    root = root or os.path.join(INSTANCES, name)
    path = os.path.join(root, "lab-instance.json")
    if not os.path.exists(path):
        return Instance(name, root=root)
    with open(path) as fh:
        return Instance(**json.load(fh))


def destroy_all():
    if not os.path.isdir(INSTANCES):
        return
    for name in sorted(os.listdir(INSTANCES)):
        log("destroying " + name)
        load(name).down(purge=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("images")
    p = sub.add_parser("up")
    p.add_argument("name")
    p.add_argument("--pg", type=int, default=15, choices=(15, 17))
    p.add_argument("--seed", default="small", choices=("none", "small", "large", "api"))
    p.add_argument("--prefix")
    p.add_argument("--immich-version", default=None, help="IMMICH_VERSION the server models (default %s)"
                   % DEFAULT_IMMICH_VERSION)
    p = sub.add_parser("down")
    p.add_argument("name")
    p.add_argument("--purge", action="store_true")
    for c in ("ping", "stats", "counts", "info"):
        sub.add_parser(c).add_argument("name")
    sub.add_parser("destroy-all")
    a = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    if a.cmd == "images":
        for k, v in images().items():
            print("%s=%s" % (k, v))
    elif a.cmd == "up":
        inst = Instance(a.name, pg=a.pg, prefix=a.prefix, immich_version=a.immich_version).up(seed=a.seed)
        print(json.dumps(inst.as_dict(), indent=2))
    elif a.cmd == "down":
        load(a.name).down(purge=a.purge)
    elif a.cmd == "ping":
        ok = load(a.name).ping()
        print("pong" if ok else "no answer")
        return 0 if ok else 1
    elif a.cmd == "stats":
        print(json.dumps(load(a.name).stats(), indent=2))
    elif a.cmd == "counts":
        print(json.dumps(load(a.name).row_counts(), indent=2))
    elif a.cmd == "info":
        print(json.dumps(load(a.name).as_dict(), indent=2))
    elif a.cmd == "destroy-all":
        destroy_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
