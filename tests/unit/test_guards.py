"""guards: what may be wiped as DB_DATA_LOCATION, and whether a folder holds what the database references."""
import io
import os

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import compose, guards


@pytest.fixture
def inst(tmp_path):
    project = tmp_path / "immich"
    (project / "postgres").mkdir(parents=True)
    (project / "library").mkdir()
    return {"project_dir": str(project), "upload_location": str(project / "library"),
            "db_data_location": str(project / "postgres"), "db_data_mount": str(project / "postgres"),
            "db_data_kind": "bind"}


def test_accepts_the_db_bind_mount(inst):
    assert guards.reset_guard(inst, inst["db_data_location"]) == []


@pytest.mark.parametrize("bad", ["/", "/root", "/home", "UPLOAD", "PROJECT", "/var/lib/other"])
def test_refuses(inst, bad):
    path = {"UPLOAD": inst["upload_location"], "PROJECT": inst["project_dir"]}.get(bad, bad)
    assert guards.reset_guard(inst, path)


def test_outside_project_needs_permission(inst, tmp_path):
    other = tmp_path / "disk2" / "pg"
    other.mkdir(parents=True)
    inst["db_data_location"] = inst["db_data_mount"] = str(other)
    reasons = guards.reset_guard(inst, str(other))
    assert any("outside the compose project" in r for r in reasons)
    assert guards.reset_guard(inst, str(other), allow_outside_project=True) == []


def test_upload_inside_db_folder(inst):
    inst["upload_location"] = os.path.join(inst["db_data_location"], "photos")
    assert any("UPLOAD_LOCATION" in r for r in guards.reset_guard(inst, inst["db_data_location"]))


def test_an_override_that_is_not_the_mount_is_refused_naming_both(inst, tmp_path):
    elsewhere = tmp_path / "immich" / "old-postgres"
    elsewhere.mkdir()
    reasons = guards.reset_guard(inst, str(elsewhere))
    assert any(str(elsewhere) in r and inst["db_data_mount"] in r for r in reasons), reasons


def test_db_service_without_pg_data_mount_is_refused(tmp_path):
    """The defect of issue 9: with DB_DATA_LOCATION only in .env, the guard compared the folder with itself."""
    project = tmp_path / "immich"
    (project / "postgres").mkdir(parents=True)
    config = {"name": "immich", "services": {
        "database": {"image": "postgres:15", "volumes": [{"type": "bind", "source": str(project / "other"), "target": "/srv"}]},
        "immich-server": {"image": "immich-server", "volumes": [{"type": "bind", "source": str(project / "library"),
                                                                 "target": "/data"}]}}}
    inst = compose.discover(config, str(project), {"DB_DATA_LOCATION": "./postgres"})
    assert inst["db_data_kind"] == "unmounted" and inst["db_data_location"] is None
    assert inst["db_data_env"] == str(project / "postgres")
    reasons = guards.reset_guard(inst, inst["db_data_env"])
    assert reasons and "/var/lib/postgresql/data" in reasons[0] and str(project / "postgres") in reasons[0]
    # an explicit override pointing at the .env folder does not make it the database's folder either
    inst = compose.discover(config, str(project), {"DB_DATA_LOCATION": "./postgres"}, {"db_data_location": "./postgres"})
    assert guards.reset_guard(inst, inst["db_data_location"])


def test_named_volume_has_no_folder_to_reset(inst):
    inst.update(db_data_kind="volume", db_data_volume="immich_pgdata", db_data_location=None, db_data_mount=None)
    assert "named volume immich_pgdata" in guards.reset_guard(inst, None)[0]


def test_copy_unescape():
    assert guards.copy_unescape(r"a\tb\\c\nd\101") == "a\tb\\c\ndA"


class FakeProc:
    def __init__(self, out, rc=0, err=b""):
        self.stdout, self.stderr, self._rc = io.BytesIO(out), io.BytesIO(err), rc

    def wait(self):
        return self._rc


def test_coverage_maps_media_prefix_and_counts_external(tmp_path):
    upload = tmp_path / "library"
    (upload / "upload" / "u").mkdir(parents=True)
    (upload / "upload" / "u" / "a.jpg").write_bytes(b"x")
    (upload / "thumbs" / "u").mkdir(parents=True)
    rows = [["original", "/data/upload/u/a.jpg", "f"], ["original", "/data/upload/u/b.jpg", "f"],
            ["original", "/mnt/external/c.jpg", "t"], ["avatar", "upload/upload/u/a.jpg", "f"],
            ["generated", "/data/thumbs/u/a_thumbnail.webp", "f"], ["generated", "/data/encoded-video/u/x.mp4", "f"]]
    inst = {"media_location": "/data", "upload_location": str(upload)}
    res = guards.coverage(inst, str(upload), ["upload", "thumbs"], rows=rows)
    assert (res["referenced"], res["present"], res["missing"], res["external"], res["outside_folders"]) == (4, 2, 2, 1, 1)
    assert res["missing_examples"] == ["upload/u/b.jpg", "thumbs/u/a_thumbnail.webp"]
    assert res["by_kind"]["original"] == {"referenced": 2, "missing": 1} and not res["ok"]


def test_stream_copy_fails_with_the_psql_message():
    def popen(argv, **_kw):
        assert "COPY (SELECT 1) TO STDOUT" in argv
        return FakeProc(b"", rc=2, err=b'ERROR:  relation "asset" does not exist')

    inst = {"db_container": "db", "db_user": "postgres", "db_name": "immich"}
    with pytest.raises(guards.CoverageError, match='relation "asset" does not exist'):
        list(guards.stream_copy(inst, "SELECT 1", popen=popen))


def test_references_sql_for_both_namings():
    assert '"assets"' in guards.references_sql("legacy", ["upload"]) and '"users"' in guards.references_sql("legacy", [])
    current = guards.references_sql("current", ["upload", "thumbs", "encoded-video"])
    assert current.count("UNION ALL") == 4 and "encoded_video" in current
    assert "asset_file" not in guards.references_sql("current", ["upload"])
