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

from ansible_collections.homelab.immich.plugins.module_utils.docker_exec import DOCKER
from ansible_collections.homelab.immich.plugins.module_utils.immich import MEDIA_TARGETS

PG_DATA = "/var/lib/postgresql/data"
DB_SERVICE_NAMES = ("database", "immich_postgres", "postgres", "db")
SERVER_SERVICE_NAMES = ("immich-server", "immich_server", "server")
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


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
    rc, out, err = run([DOCKER, "compose", "ls", "--all", "--format", "json"])
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
    argv = [DOCKER, "compose", "--project-directory", project_dir]
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

    # DB_DATA_LOCATION is where the database service really keeps PG_DATA: its bind mount (or named
    # volume). .env's DB_DATA_LOCATION is only a variable; when nothing is mounted at PG_DATA it
    # names no folder of this database at all (the guard refuses to wipe it).
    db_data_location, db_data_volume, db_data_kind, db_data_mount = None, None, None, None
    mount = _mount_at(db, (PG_DATA,)) if db else None
    if mount and mount["type"] == "bind":
        db_data_location = db_data_mount = _abs(project_dir, mount["source"])
        db_data_kind = "bind"
    elif mount and mount["type"] == "volume":
        db_data_volume, db_data_kind = _volume_name(config, project, mount["source"]), "volume"
    else:
        db_data_kind = "unmounted"
        if env.get("DB_DATA_LOCATION"):
            warnings.append("The database service mounts nothing at %s, so DB_DATA_LOCATION=%s from .env is not "
                            "where its data is." % (PG_DATA, env["DB_DATA_LOCATION"]))
    if ov.get("db_data_location"):
        db_data_location = _abs(project_dir, ov["db_data_location"])

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

    env_files = []
    for svc in services.values():
        for item in svc.get("env_file") or []:
            path = item.get("path") if isinstance(item, dict) else item
            if path and _abs(project_dir, path) not in env_files:
                env_files.append(_abs(project_dir, path))
    instance = {
        "env_files": env_files,
        "project_name": project,
        "server_url": server_url,
        "project_dir": os.path.normpath(project_dir),
        "compose_files": [],
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
        "db_data_mount": db_data_mount,
        "db_data_env": _abs(project_dir, env["DB_DATA_LOCATION"]) if env.get("DB_DATA_LOCATION") else None,
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
    env = read_env_file(os.path.join(project_dir, ".env"))
    if not compose_files and env.get("COMPOSE_FILE"):
        # what `docker compose` itself uses in this folder (hwaccel files, a dumper sidecar, ...)
        compose_files = [f for f in env["COMPOSE_FILE"].split(env.get("COMPOSE_PATH_SEPARATOR") or ":") if f]
    if not compose_files:
        # Compose's own default file, named explicitly so that an override can be layered on it
        compose_files = [f for f in DEFAULT_FILES if os.path.isfile(os.path.join(project_dir, f))][:1]
    # relative names are the project's (as COMPOSE_FILE means them), whatever folder we run from
    compose_files = [os.path.abspath(os.path.join(project_dir, f)) for f in compose_files]
    config = load_config(project_dir, compose_files, run=run)
    inst = discover(config, project_dir, env, overrides)
    inst["compose_files"] = compose_files
    # the argv prefix of every compose command the roles run on this instance (its files named explicitly)
    inst["compose_argv"] = [DOCKER, "compose", "--project-directory", inst["project_dir"]] + \
        ["--file=%s" % f for f in inst["compose_files"]]
    inst["instance_name"] = (overrides or {}).get("instance_name") or inst["project_name"]
    return inst


PROJECT_FILE_SUFFIXES = (".yml", ".yaml", ".json", ".env")
PROJECT_FILE_MAX = 1 << 20


def project_files(instance):
    """The files that rebuild the compose project: its compose files, `.env`, the services' env
    files and the small YAML/JSON/env files beside them (hwaccel.*.yml that `extends` names).
    Returns [(absolute path, name inside the set's compose/ folder)]; names outside the project
    folder go under `outside/`."""
    project = instance["project_dir"]
    found = []
    for path in list(instance.get("compose_files") or []) + [os.path.join(project, ".env")] + list(instance.get("env_files") or []):
        if os.path.isfile(path) and path not in found:
            found.append(path)
    try:
        names = sorted(os.listdir(project))
    except OSError:
        names = []
    for name in names:
        path = os.path.join(project, name)
        if (name.endswith(PROJECT_FILE_SUFFIXES) or name.startswith(".env")) and os.path.isfile(path) \
                and not os.path.islink(path) and os.path.getsize(path) <= PROJECT_FILE_MAX and path not in found:
            found.append(path)
    out = []
    for path in found:
        rel = os.path.relpath(path, project)
        out.append((path, rel if not rel.startswith("..") else os.path.join("outside", os.path.basename(path))))
    return out


def image_facts(image, run=_run):
    """Id and repo digests of an image as the engine knows it ({} when unknown)."""
    if not image:
        return {}
    rc, out, _err = run([DOCKER, "image", "inspect", "--format", "{{json .Id}} {{json .RepoDigests}}", image])
    if rc != 0:
        return {"image": image}
    ident, _sp, digests = out.strip().partition(" ")
    try:
        return {"image": image, "id": json.loads(ident), "repo_digests": json.loads(digests or "[]")}
    except ValueError:
        return {"image": image}
