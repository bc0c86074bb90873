"""compose.py: discovery from a compose model + .env, overrides, reset guard (no Docker)."""
import json

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import compose


def model(project="immich", db_mount=None, media_target="/data", upload_src=None,  # noqa: PLR0917
          container_names=True, db_env=None, ports=None):
    root = "/srv/immich"
    db = {
        "image": "ghcr.io/immich-app/postgres:14-vectorchord0.4.3-pgvectors0.2.0",
        "environment": db_env or {"POSTGRES_USER": "postgres", "POSTGRES_DB": "immich", "POSTGRES_PASSWORD": "s3cret"},
        "volumes": [db_mount or {"type": "bind", "source": root + "/postgres", "target": "/var/lib/postgresql/data"}],
    }
    server = {
        "image": "ghcr.io/immich-app/immich-server:v2.3.1",
        "volumes": [{"type": "bind", "source": upload_src or root + "/library", "target": media_target},
                    {"type": "bind", "source": "/etc/localtime", "target": "/etc/localtime", "read_only": True}],
        "environment": {"DB_PASSWORD": "s3cret"},
        "ports": ports if ports is not None else [{"target": 2283, "published": "2283", "protocol": "tcp"}],
    }
    if container_names:
        db["container_name"] = "immich_postgres"
        server["container_name"] = "immich_server"
    return {"name": project, "services": {"database": db, "immich-server": server, "redis": {"image": "valkey"}}}


def test_default_project():
    inst = compose.discover(model(), "/srv/immich", {"UPLOAD_LOCATION": "./library", "IMMICH_VERSION": "v2.3.1"})
    assert inst["db_container"] == "immich_postgres"
    assert inst["server_container"] == "immich_server"
    assert inst["upload_location"] == "/srv/immich/library"
    assert inst["db_data_location"] == "/srv/immich/postgres"
    assert inst["db_data_kind"] == "bind"
    assert (inst["db_user"], inst["db_name"]) == ("postgres", "immich")
    assert inst["media_location"] == "/data"
    assert inst["server_url"] == "http://127.0.0.1:2283"
    assert inst["immich_version"] == "v2.3.1"


def test_no_secret_is_returned():
    inst = compose.discover(model(), "/srv/immich", {"DB_PASSWORD": "s3cret"})
    assert "s3cret" not in json.dumps(inst)


def test_renamed_services_containers_and_folders():
    m = model(project="family", db_env={"POSTGRES_USER": "admin", "POSTGRES_DB": "photos"},
              upload_src="/mnt/disk2/photos", container_names=False)
    m["services"]["pg"] = m["services"].pop("database")
    m["services"]["web"] = m["services"].pop("immich-server")
    inst = compose.discover(m, "/srv/family")
    assert inst["db_service"] == "pg" and inst["server_service"] == "web"
    assert inst["db_container"] == "family-pg-1" and inst["server_container"] == "family-web-1"
    assert (inst["db_user"], inst["db_name"]) == ("admin", "photos")
    assert inst["upload_location"] == "/mnt/disk2/photos"


def test_old_mount_point_and_named_volume():
    m = model(media_target="/usr/src/app/upload",
              db_mount={"type": "volume", "source": "pgdata", "target": "/var/lib/postgresql/data"})
    m["volumes"] = {"pgdata": {}}
    inst = compose.discover(m, "/srv/immich")
    assert inst["media_location"] == "/usr/src/app/upload"
    assert inst["db_data_location"] is None
    assert inst["db_data_volume"] == "immich_pgdata"
    assert inst["db_data_kind"] == "volume"


def test_short_volume_syntax():
    m = model()
    m["services"]["database"]["volumes"] = ["./pg:/var/lib/postgresql/data"]
    inst = compose.discover(m, "/srv/immich")
    assert inst["db_data_location"] == "/srv/immich/pg"


def test_overrides_win():
    inst = compose.discover(model(), "/srv/immich", overrides={
        "db_container": "x_db", "upload_location": "/data/photos", "db_user": "u", "server_url": "http://h:1"})
    assert inst["db_container"] == "x_db"
    assert inst["upload_location"] == "/data/photos"
    assert inst["db_user"] == "u"
    assert inst["server_url"] == "http://h:1"


def test_missing_database_service_is_explained():
    m = model()
    del m["services"]["database"]
    with pytest.raises(compose.DiscoveryError, match="No database service"):
        compose.discover(m, "/srv/immich")


def test_env_file(tmp_path):
    p = tmp_path / ".env"
    p.write_text("# comment\nUPLOAD_LOCATION=./library\nexport TZ=Etc/UTC\nDB_PASSWORD='a b'\nX=1 # note\n")
    env = compose.read_env_file(str(p))
    assert env == {"UPLOAD_LOCATION": "./library", "TZ": "Etc/UTC", "DB_PASSWORD": "a b", "X": "1"}


def test_discover_instance_with_fake_docker(tmp_path):
    calls = []

    def run(argv):
        calls.append(argv)
        if argv[2] == "ls":
            return 0, json.dumps([{"Name": "immich", "ConfigFiles": str(tmp_path / "docker-compose.yml")}]), ""
        return 0, json.dumps(model()), ""

    inst = compose.discover_instance(project_name="immich", run=run)
    assert inst["project_dir"] == str(tmp_path)
    assert inst["instance_name"] == "immich"
    assert ["-f", str(tmp_path / "docker-compose.yml")] == calls[1][4:6]


def test_unknown_project_name():
    with pytest.raises(compose.DiscoveryError, match="No compose project named"):
        compose.discover_instance(project_name="nope", run=lambda argv: (0, "[]", ""))
