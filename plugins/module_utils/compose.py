# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Find an Immich instance from its Docker Compose project: folders, users, container names.

Nothing assumes Immich's defaults: the compose model (`docker compose config --format json`,
interpolation and `.env` already resolved by Compose itself) says which service is the database
(it mounts /var/lib/postgresql/data), which is the server (it mounts /data or the pre-Aug-2025
/usr/src/app/upload), where those mounts come from on the host and what the containers are called.
Every discovered value can be overridden. Secrets (DB_PASSWORD) are never returned.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess

PG_DATA = "/var/lib/postgresql/data"
MEDIA_TARGETS = ("/data", "/usr/src/app/upload")
DB_SERVICE_NAMES = ("database", "immich_postgres", "postgres", "db")
SERVER_SERVICE_NAMES = ("immich-server", "immich_server", "server")
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDABLE = ("project_name", "server_url", "upload_location", "db_data_location", "db_user", "db_name",
               "db_container", "server_container", "db_service", "server_service", "media_location")


class DiscoveryError(Exception):
    """Discovery could not say something it must know; the message tells the user what to set."""


def read_env_file(path):
    """KEY=VALUE lines of a compose `.env` (comments, `export`, quotes); {} when absent."""
    env = {}
    if not path or not os.path.isfile(path):
        return env
    with open(path, "r") as fh:
        for raw in fh:
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            if line.startswith("export "):
                line = line[len("export "):].strip()
            key, _sep, value = line.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            elif " #" in value:
                value = value.split(" #", 1)[0].rstrip()
            env[key.strip()] = value
    return env


def _run(argv):
    res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return res.returncode, res.stdout.decode("utf-8", "replace"), res.stderr.decode("utf-8", "replace")


def project_dir_from_name(name, run=_run):
    """The folder of a running (or stopped) compose project known to the engine, by project name."""
    rc, out, err = run(["docker", "compose", "ls", "--all", "--format", "json"])
    if rc != 0:
        raise DiscoveryError("`docker compose ls` failed: %s" % err.strip())
    for proj in json.loads(out or "[]"):
        if proj.get("Name") == name:
            files = [f for f in (proj.get("ConfigFiles") or "").split(",") if f]
            if files:
                return os.path.dirname(files[0]), files
    raise DiscoveryError("No compose project named %r is known to Docker (docker compose ls --all); "
                         "set project_dir to the folder holding its docker-compose.yml." % name)


def load_config(project_dir, compose_files=None, run=_run):
    """The compose model as Compose resolves it (interpolation, .env, profiles, overrides)."""
    argv = ["docker", "compose", "--project-directory", project_dir]
    for f in compose_files or []:
        argv += ["-f", f]
    argv += ["config", "--format", "json"]
    rc, out, err = run(argv)
    if rc != 0:
        raise DiscoveryError("Cannot read the compose project in %s: %s" % (project_dir, err.strip()[-800:]))
    return json.loads(out)


def _mounts(service):
    """Normalised mounts of a service: [{type, source, target}] (short syntax too)."""
    result = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            parts = vol.split(":")
            if len(parts) >= 2:
                src = parts[0]
                kind = "bind" if src.startswith((".", "/", "~")) else "volume"
                result.append({"type": kind, "source": src, "target": parts[1]})
            continue
        result.append({"type": vol.get("type", "volume"), "source": vol.get("source"), "target": vol.get("target")})
    return result


def _mount_at(service, targets):
    for m in _mounts(service):
        if (m.get("target") or "").rstrip("/") in targets:
            return m
    return None


def _pick_service(services, names, targets, image_hint, override=None):
    if override:
        if override not in services:
            raise DiscoveryError("Service %r is not in the compose project (services: %s)." % (override, ", ".join(sorted(services))))
        return override
    for name in sorted(services):
        if _mount_at(services[name], targets):
            return name
    for name in names:
        if name in services:
            return name
    for name in sorted(services):
        if image_hint in (services[name].get("image") or ""):
            return name
    return None


def _env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return env


def _container_name(project, service_name, service):
    # Compose's default name when container_name is not set: <project>-<service>-1
    return service.get("container_name") or "%s-%s-1" % (project, service_name)


def _volume_name(config, project, source):
    decl = (config.get("volumes") or {}).get(source) or {}
    return decl.get("name") or "%s_%s" % (project, source)


def _abs(base, path):
    if path is None:
        return None
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def discover(config, project_dir, env=None, overrides=None):
    """The instance dict every role uses, from a compose model (load_config) and the .env."""
    env = env or {}
    ov = dict((k, v) for k, v in (overrides or {}).items() if v not in (None, ""))
    services = config.get("services") or {}
    project = ov.get("project_name") or config.get("name") or os.path.basename(os.path.normpath(project_dir))

    db_service = _pick_service(services, DB_SERVICE_NAMES, (PG_DATA,), "postgres", ov.get("db_service"))
    server_service = _pick_service(services, SERVER_SERVICE_NAMES, MEDIA_TARGETS, "immich-server", ov.get("server_service"))
    if db_service is None and not ov.get("db_container"):
        raise DiscoveryError("No database service found in %s (none mounts %s); set db_service or db_container."
                             % (project_dir, PG_DATA))
    warnings = []
    db = services.get(db_service, {}) if db_service else {}
    server = services.get(server_service, {}) if server_service else {}
    db_env = _env_of(db)

    db_data_location, db_data_volume, db_data_kind = None, None, None
    mount = _mount_at(db, (PG_DATA,)) if db else None
    if mount and mount["type"] == "bind":
        db_data_location, db_data_kind = _abs(project_dir, mount["source"]), "bind"
    elif mount and mount["type"] == "volume":
        db_data_volume, db_data_kind = _volume_name(config, project, mount["source"]), "volume"
    elif env.get("DB_DATA_LOCATION"):
        db_data_location, db_data_kind = _abs(project_dir, env["DB_DATA_LOCATION"]), "env"
        warnings.append("The database service does not mount %s; DB_DATA_LOCATION taken from .env." % PG_DATA)
    if ov.get("db_data_location"):
        db_data_location, db_data_kind = _abs(project_dir, ov["db_data_location"]), "override"

    media_mount = _mount_at(server, MEDIA_TARGETS) if server else None
    upload_location = None
    media_location = "/data"
    if media_mount:
        media_location = media_mount["target"].rstrip("/")
        if media_mount["type"] == "bind":
            upload_location = _abs(project_dir, media_mount["source"])
    if upload_location is None and env.get("UPLOAD_LOCATION"):
        upload_location = _abs(project_dir, env["UPLOAD_LOCATION"])
    if ov.get("upload_location"):
        upload_location = _abs(project_dir, ov["upload_location"])
    if ov.get("media_location"):
        media_location = ov["media_location"].rstrip("/")
    if upload_location is None:
        raise DiscoveryError("UPLOAD_LOCATION not found: the server service mounts neither /data nor "
                             "/usr/src/app/upload from a host folder; set upload_location.")
    media_env = _env_of(server).get("IMMICH_MEDIA_LOCATION")
    if media_env and not ov.get("media_location"):
        media_location = media_env.rstrip("/")

    server_url = ov.get("server_url")
    if not server_url:
        for port in server.get("ports") or []:
            if isinstance(port, dict) and int(port.get("target") or 0) == 2283 and port.get("published"):
                host = port.get("host_ip") or "127.0.0.1"
                host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - a wildcard bind is reached on loopback
                server_url = "http://%s:%s" % (host, port["published"])
                break

    instance = {
        "project_name": project,
        "server_url": server_url,
        "project_dir": os.path.normpath(project_dir),
        "compose_files": list(config.get("x-compose-files") or []),
        "db_service": db_service,
        "server_service": server_service,
        "db_container": ov.get("db_container") or (_container_name(project, db_service, db) if db_service else None),
        "server_container": ov.get("server_container") or (
            _container_name(project, server_service, server) if server_service else None),
        "db_user": ov.get("db_user") or db_env.get("POSTGRES_USER") or env.get("DB_USERNAME") or "postgres",
        "db_name": ov.get("db_name") or db_env.get("POSTGRES_DB") or env.get("DB_DATABASE_NAME") or "immich",
        "db_image": db.get("image"),
        "server_image": server.get("image"),
        "db_data_location": db_data_location,
        "db_data_volume": db_data_volume,
        "db_data_kind": db_data_kind,
        "upload_location": upload_location,
        "media_location": media_location,
        "immich_version": env.get("IMMICH_VERSION") or "",
        "skip_migrations_env": _env_of(server).get("DB_SKIP_MIGRATIONS", ""),
        "warnings": warnings,
    }
    return instance


def discover_instance(project_dir=None, project_name=None, compose_files=None, overrides=None, run=_run):
    """discover() from a folder or a project name known to Docker."""
    if not project_dir:
        if not project_name:
            raise DiscoveryError("Set project_dir (the folder holding docker-compose.yml) or project_name.")
        project_dir, found_files = project_dir_from_name(project_name, run=run)
        compose_files = compose_files or found_files
    project_dir = os.path.abspath(os.path.expanduser(project_dir))
    if not os.path.isdir(project_dir):
        raise DiscoveryError("Compose project folder %s does not exist." % project_dir)
    config = load_config(project_dir, compose_files, run=run)
    env = read_env_file(os.path.join(project_dir, ".env"))
    inst = discover(config, project_dir, env, overrides)
    if not compose_files:
        # Compose's own default file, named explicitly so that an override can be layered on it
        for default in DEFAULT_FILES:
            if os.path.isfile(os.path.join(project_dir, default)):
                compose_files = [default]
                break
    inst["compose_files"] = [os.path.abspath(os.path.join(project_dir, f)) for f in (compose_files or [])]
    inst["instance_name"] = (overrides or {}).get("instance_name") or inst["project_name"]
    return inst


def reset_guard(instance, path, allow_outside_project=False, home_dirs=None):
    """Reasons (empty list = allowed) why `path` must not be wiped as this instance's DB_DATA_LOCATION.

    `allow_outside_project` lifts only the "outside the compose project" rule (Postgres on another
    disk); `/`, home folders, UPLOAD_LOCATION, the project folder and anything that is not the
    database service's own bind mount are always refused.
    """
    if not path:
        return ["DB_DATA_LOCATION is unknown (named volume or not discovered): there is no folder to reset"]
    real = os.path.realpath(path)
    project = os.path.realpath(instance.get("project_dir") or "/")
    upload = os.path.realpath(instance.get("upload_location") or "/nonexistent-upload")
    homes = set(os.path.realpath(h) for h in (home_dirs or []))
    homes.update(["/root", "/home", os.path.realpath(os.path.expanduser("~"))])
    reasons = []
    if real.rstrip("/").count("/") < 2:
        reasons.append("%s is / or a top-level folder" % real)
    if real in homes or os.path.dirname(real) == "/home":
        reasons.append("%s is a home folder" % real)

    def inside(a, b):
        return a == b or a.startswith(b.rstrip("/") + "/")

    if inside(real, upload) or inside(upload, real):
        reasons.append("%s overlaps UPLOAD_LOCATION %s (your photos)" % (real, upload))
    if inside(project, real):
        reasons.append("%s is the compose project folder or one of its parents" % real)
    disc = instance.get("db_data_location")
    if not disc or os.path.realpath(disc) != real:
        reasons.append("%s is not the bind mount of the database service at %s (%s)" % (real, PG_DATA, disc))
    if not allow_outside_project and not inside(real, project):
        reasons.append("%s is outside the compose project %s (allow it explicitly if Postgres lives on "
                       "another disk)" % (real, project))
    return reasons


def check_originals(instance, popen=subprocess.Popen, limit=20):
    """Count assets in the DB and the originals missing on disk (originalPath mapped to UPLOAD_LOCATION).

    Paths are streamed from psql one line at a time: 100k assets cost no memory. Assets of external
    libraries (outside the media location) are counted but not checked: Immich does not own them.
    """
    argv = ["docker", "exec", instance["db_container"], "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-U", instance["db_user"], "-d", instance["db_name"], "-c", 'SELECT "originalPath" FROM asset']
    media = (instance.get("media_location") or "/data").rstrip("/") + "/"
    upload = instance["upload_location"]
    proc = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assets = missing = external = 0
    examples = []
    for raw in proc.stdout:
        path = raw.decode("utf-8", "surrogateescape").rstrip("\n")
        if not path:
            continue
        assets += 1
        if not path.startswith(media):
            external += 1
            continue
        if not os.path.isfile(os.path.join(upload, path[len(media):])):
            missing += 1
            if len(examples) < limit:
                examples.append(path)
    err = proc.stderr.read().decode("utf-8", "replace")
    if proc.wait() != 0:
        raise DiscoveryError("Cannot list assets in %s: %s" % (instance["db_container"], err.strip()[-500:]))
    return {"assets": assets, "missing_originals": missing, "missing_examples": examples, "external_assets": external}
