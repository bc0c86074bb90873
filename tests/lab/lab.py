"""The offline Immich lab: instances shaped like Immich's official compose project.

Used by the tests, the benchmarks and `make demo`; also a small CLI:

    lab.py images                         build (or reuse) the lab images, print their tags
    lab.py up NAME [--pg 15|17] [--seed small|large|none]
    lab.py down NAME [--purge]            compose down -v; --purge also removes the folders
    lab.py ping NAME | stats NAME | counts NAME
    lab.py destroy-all                    every lab instance, containers and folders

An instance is a folder holding `docker-compose.yml` and `.env` exactly like a user's
(UPLOAD_LOCATION=./library, DB_DATA_LOCATION=./postgres), with the project name, container names,
the published port (127.0.0.1 only) and the folders as parameters, so several run side by side.
"""
import argparse
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
      - ${{UPLOAD_LOCATION}}:/data
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
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:2283/api/server/ping', timeout=3)"]
      interval: 2s
      timeout: 5s
      retries: 30
      start_period: 5s

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
IMMICH_VERSION=v2.3.1
DB_PASSWORD={password}
DB_USERNAME={user}
DB_DATABASE_NAME={database}
"""


class Instance:
    """One lab Immich instance. Every name is a parameter; defaults follow the project name."""

    def __init__(self, name, *, pg=15, root=None, port=None, prefix=None, user="postgres",
                 database="immich", password=None, upload="./library", db_data="./postgres"):
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
        self.containers = {
            "server": self.prefix + "_server",
            "postgres": self.prefix + "_postgres",
            "redis": self.prefix + "_redis",
        }

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
        img = images()
        with open(self.compose_file, "w") as fh:
            fh.write(COMPOSE.format(
                project=self.name, port=self.port,
                server=self.containers["server"], redis=self.containers["redis"],
                postgres=self.containers["postgres"],
                server_image=img["LAB_IMAGE_SERVER"], redis_image=img["LAB_IMAGE_REDIS"],
                postgres_image=img["LAB_IMAGE_POSTGRES%d" % self.pg]))
        with open(env_path, "w") as fh:
            fh.write(ENV.format(project=self.name, upload=self._upload, db_data=self._db_data,
                                password=self.password, user=self.user, database=self.database))
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
        self.write()
        self.compose("up", "-d", "--wait")
        if seed and seed != "none":
            from seeder import seed as do_seed  # noqa: PLC0415 - optional heavy import
            do_seed(self, size=seed)
        return self

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
                "upload": self._upload, "db_data": self._db_data}

    def as_dict(self):
        return {
            "name": self.name, "root": self.root, "compose_file": self.compose_file, "port": self.port,
            "pg": self.pg, "containers": self.containers, "upload_location": self.upload_location,
            "db_data_location": self.db_data_location, "db_user": self.user, "database": self.database,
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
    p.add_argument("--seed", default="small", choices=("none", "small", "large"))
    p.add_argument("--prefix")
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
        inst = Instance(a.name, pg=a.pg, prefix=a.prefix).up(seed=a.seed)
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
