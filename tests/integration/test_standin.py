"""The lab's immich-server stand-in (tests/lab/images/server.py) behaves like Immich v2.7.5 where backup and
restore touch it: boot (mount checks, markers, media location, vector extension, migrations, drift,
maintenance mode), API (auth, uploads, thumbnails, jobs, albums, statistics), immich-admin, the TypeORM-era
naming, and the lab's image parameters (a foreign server image is seeded through the API only).

Instances are shared per module group and put back into shape by the test that changed them; every test
asserts state (rows, files, HTTP codes, log lines, exit codes), never only a return code.
"""
# ruff: noqa: S608 - the SQL of these tests interpolates UUIDs the server returned
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_seed import multipart, png

FOLDERS = ("encoded-video", "library", "upload", "profile", "thumbs", "backups")


# ---- helpers ---------------------------------------------------------------------------------------

def _up(lab, name, seed=None, **kw):
    inst = lab.Instance("%s-%s" % (name, uuid.uuid4().hex[:6]), **kw)
    try:
        inst.up(seed=seed)
    except BaseException:
        inst.down(purge=True)
        raise
    return inst


def _teardown(inst):
    if os.environ.get("LAB_KEEP") != "1":
        inst.down(purge=True)


def markers(inst):
    out = {}
    for folder in FOLDERS:
        path = os.path.join(inst.upload_location, folder, ".immich")
        out[folder] = open(path).read() if os.path.exists(path) else None
    return out


def since():
    return "%.3f" % time.time()


def restart(inst):
    """docker restart and wait healthy: the logs of that boot."""
    mark = since()
    inst.restart_server(wait=True)
    return inst.server_logs(since=mark)


def restart_expecting_exit(inst):
    """docker restart; the boot must fail: (ExitCode, logs of that boot)."""
    base = inst.server_state().get("RestartCount", 0)
    mark = since()
    subprocess.run(["docker", "restart", "-t", "10", inst.server], check=True, capture_output=True)
    state = inst.wait_server_exit(timeout=60, restarts=base)
    return state["ExitCode"], inst.server_logs(since=mark)


def recreate_expecting_exit(inst):
    inst.start_server(wait=False, recreate=True)
    state = inst.wait_server_exit(timeout=60)
    return state["ExitCode"], inst.server_logs()


def token(inst):
    """Sign the admin up when there is none yet (201, then 400), log in: the bearer token."""
    status, body = inst.api("POST", "/api/auth/admin-sign-up",
                            {"email": inst.admin_email, "password": inst.admin_password, "name": "Admin"})
    assert status in (201, 400), (status, body)
    return inst.login()


def upload(inst, tok, data, name="photo.png"):
    stamp = "2024-05-01T10:00:00.000Z"
    return inst.api("POST", "/api/assets", multipart(
        {"deviceAssetId": name, "deviceId": "pytest", "fileCreatedAt": stamp, "fileModifiedAt": stamp},
        {"assetData": (name, "image/png", data)}), token=tok)


def host_path(inst, container_path):
    return os.path.join(inst.upload_location, os.path.relpath(container_path, inst.container_media))


def sha1(data):
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def shared(lab):
    """The three shared instances, brought up side by side (most of an `up` is waiting)."""
    specs = {"s15": dict(name="sti15", pg=15), "s17": dict(name="sti17", pg=17, seed="small"),
             "s130": dict(name="sti130", pg=15, immich_version="v1.130.3", seed="small")}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {key: pool.submit(_up, lab, **spec) for key, spec in specs.items()}
    done = {}
    try:
        for key, fut in futures.items():
            done[key] = fut.result()
    except BaseException:
        for inst in done.values():
            _teardown(inst)
        raise
    yield done
    for inst in done.values():
        _teardown(inst)


# ---- PG 15 (no vector extension: the lab's LAB_ALLOW_NO_VECTOR mode) ----------------------------------

@pytest.fixture(scope="module")
def s15(shared):
    return shared["s15"]


def test_first_boot_migrates_sets_flags_and_markers(s15):
    logs = s15.server_logs()
    assert "LAB_ALLOW_NO_VECTOR=true" in logs and "No schema drift detected" in logs
    for folder in FOLDERS:
        assert "Writing initial mount file for the %s folder" % folder in logs
    flags = json.loads(s15.psql("SELECT value FROM system_metadata WHERE key = 'system-flags'"))
    assert flags == {"mountChecks": dict.fromkeys(FOLDERS, True)}
    assert json.loads(s15.psql("SELECT value FROM system_metadata WHERE key = 'MediaLocation'")) == {"location": "/data"}
    names = s15.psql("SELECT name FROM kysely_migrations ORDER BY name").split()
    assert names[0] == "1744910873969-Initial" and len(names) >= 5
    for folder, content in markers(s15).items():
        assert content and content.isdigit() and abs(int(content) / 1000 - time.time()) < 600, (folder, content)
    assert s15.psql("SELECT udt_name FROM information_schema.columns WHERE table_name = 'smart_search' "
                    "AND column_name = 'embedding'") == "_float4"
    status, body = s15.api("GET", "/api/server/version")
    assert status == 200 and body == {"major": 2, "minor": 7, "patch": 5}


def test_markers_are_rewritten_at_every_boot(s15):
    before = markers(s15)
    time.sleep(0.01)
    logs = restart(s15)
    after = markers(s15)
    for folder in FOLDERS:
        assert after[folder] != before[folder] and int(after[folder]) > int(before[folder]), folder
    assert "Writing initial mount file" not in logs and "Successfully verified system mount folder checks" in logs


def test_mount_checks_refuse_a_flagged_folder_without_marker(s15):
    os.unlink(os.path.join(s15.upload_location, "thumbs", ".immich"))
    try:
        code, logs = restart_expecting_exit(s15)
        assert code == 1
        assert "Failed to read" in logs and "<UPLOAD_LOCATION>/thumbs/.immich" in logs
        assert "system-integrity#folder-checks" in logs
        assert "Immich Server is listening" not in logs and not s15.ping()
        # IMMICH_IGNORE_MOUNT_CHECK_ERRORS=true: logged, and the server starts anyway
        s15.server_env["IMMICH_IGNORE_MOUNT_CHECK_ERRORS"] = "true"
        s15.start_server(recreate=True)
        logs = s15.server_logs()
        assert "Failed to read" in logs and "Ignoring mount folder errors" in logs and s15.ping()
        assert not os.path.exists(os.path.join(s15.upload_location, "thumbs", ".immich"))
    finally:
        s15.server_env.pop("IMMICH_IGNORE_MOUNT_CHECK_ERRORS", None)
        with open(os.path.join(s15.upload_location, "thumbs", ".immich"), "w") as fh:
            fh.write("1")
        s15.start_server(recreate=True)
    assert s15.ping()


def test_an_unflagged_folder_gets_folder_marker_and_flag(s15):
    s15.psql("UPDATE system_metadata SET value = value #- '{mountChecks,backups}' WHERE key = 'system-flags'")
    shutil.rmtree(os.path.join(s15.upload_location, "backups"))
    logs = restart(s15)
    assert "Writing initial mount file for the backups folder" in logs
    assert "Writing initial mount file for the thumbs folder" not in logs
    assert markers(s15)["backups"].isdigit()
    assert s15.psql("SELECT value->'mountChecks'->>'backups' FROM system_metadata WHERE key = 'system-flags'") == "true"


def test_no_vector_extension_without_the_lab_allowance_stops_the_boot(s15):
    s15.server_env["LAB_ALLOW_NO_VECTOR"] = "false"
    try:
        code, logs = recreate_expecting_exit(s15)
        assert code == 1 and "No vector extension found. Available extensions: vchord, vectors, vector" in logs
    finally:
        s15.server_env.pop("LAB_ALLOW_NO_VECTOR")
        s15.start_server(recreate=True)


def test_db_skip_migrations_leaves_the_database_empty(s15):
    s15.reset_db()
    s15.server_env["DB_SKIP_MIGRATIONS"] = "true"
    try:
        code, logs = recreate_expecting_exit(s15)
        assert code == 1
        assert "Skipping migrations (DB_SKIP_MIGRATIONS=true)" in logs
        assert 'relation "system_metadata" does not exist' in logs  # StorageService needs the schema
        assert s15.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"
    finally:
        s15.server_env.pop("DB_SKIP_MIGRATIONS")
        s15.start_server(recreate=True)
    assert s15.psql("SELECT count(*) FROM kysely_migrations") != "0"
    assert "Found existing mount file, skipping creation" in s15.server_logs()  # new flags, old markers


def test_auth_upload_original_and_thumbnails(s15):
    assert s15.api("GET", "/api/server/statistics")[0] == 401
    assert s15.api("GET", "/api/server/statistics", token="not-a-token")[0] == 401
    tok = token(s15)
    status, body = s15.api("POST", "/api/auth/admin-sign-up", {"email": "x@y.lab.invalid", "password": "p", "name": "X"})
    assert status == 400 and "already has an admin" in body["message"]
    assert s15.api("POST", "/api/auth/login", {"email": s15.admin_email, "password": "wrong"})[0] == 401
    data = png(9, 7, b"upload-test")
    status, body = upload(s15, tok, data)
    assert status == 201 and body["status"] == "created"
    aid = body["id"]
    me = s15.api("GET", "/api/users/me", token=tok)[1]
    row = json.loads(s15.psql('SELECT row_to_json(a) FROM (SELECT "originalPath", encode(checksum, \'hex\') AS sha1, '
                              '"checksumAlgorithm", "ownerId" FROM asset WHERE id = \'%s\') a' % aid))
    assert row["sha1"] == sha1(data) and row["checksumAlgorithm"] == "sha1" and row["ownerId"] == me["id"]
    prefix = "/data/upload/%s/" % me["id"]
    assert row["originalPath"].startswith(prefix) and row["originalPath"].endswith(".png")
    file_uuid = os.path.basename(row["originalPath"])[:-4]
    assert row["originalPath"] == prefix + "%s/%s/%s.png" % (file_uuid[:2], file_uuid[2:4], file_uuid)
    assert open(host_path(s15, row["originalPath"]), "rb").read() == data
    assert s15.psql('SELECT "fileSizeInByte" FROM asset_exif WHERE "assetId" = \'%s\'' % aid) == str(len(data))
    s15.wait_jobs(tok)
    assert s15.psql('SELECT count(*) FROM asset_job_status WHERE "assetId" = \'%s\' AND "metadataExtractedAt" IS NOT NULL'
                    % aid) == "1"
    files = dict(line.split("|") for line in s15.psql('SELECT type, path FROM asset_file WHERE "assetId" = \'%s\''
                                                      % aid).splitlines())
    base = "/data/thumbs/%s/%s/%s/%s" % (me["id"], aid[:2], aid[2:4], aid)
    assert files == {"thumbnail": base + "_thumbnail.webp", "preview": base + "_preview.jpeg"}
    status, got = s15.api("GET", "/api/assets/%s/original" % aid, token=tok, raw=True)
    assert status == 200 and sha1(got) == sha1(data)
    for size, path in (("thumbnail", files["thumbnail"]), ("preview", files["preview"])):
        status, got = s15.api("GET", "/api/assets/%s/thumbnail?size=%s" % (aid, size), token=tok, raw=True)
        assert status == 200 and got == open(host_path(s15, path), "rb").read()
    status, body = upload(s15, tok, data, "again.png")
    assert status == 200 and body == {"id": aid, "status": "duplicate"}
    # other auth: the cookie and an API key (stored hashed)
    status, key = s15.api("POST", "/api/api-keys", {"name": "pytest", "permissions": ["all"]}, token=tok)
    assert status == 201 and key["secret"] and key["apiKey"]["name"] == "pytest"
    assert s15.api("GET", "/api/users/me", api_key=key["secret"])[1]["id"] == me["id"]
    assert s15.api("GET", "/api/users/me", headers={"Cookie": "immich_access_token=" + tok})[0] == 200
    assert key["secret"] not in s15.psql("SELECT key::text FROM api_key")
    # a second, non-admin user: same bytes are a new asset for them; admin routes answer 403
    status, user = s15.api("POST", "/api/admin/users", {"email": "u2@sti.lab.invalid", "password": "pw2", "name": "U2"},
                           token=tok)
    assert status == 201 and user["isAdmin"] is False
    utok = s15.login("u2@sti.lab.invalid", "pw2")
    assert upload(s15, utok, data)[0] == 201
    assert s15.api("GET", "/api/server/statistics", token=utok)[0] == 403
    assert s15.api("GET", "/api/assets/%s/original" % aid, token=utok)[0] == 400  # no asset.read access


def test_thumbnail_regeneration_force_false_and_true(s15):
    tok = token(s15)
    ids = [upload(s15, tok, png(10, 10, b"thumb-%d" % i), "t%d.png" % i)[1]["id"] for i in range(3)]
    s15.wait_jobs(tok)
    gone, no_row, _untouched = ids
    path = s15.psql("SELECT path FROM asset_file WHERE \"assetId\" = '%s' AND type = 'thumbnail'" % gone)
    os.unlink(host_path(s15, path))
    status, body = s15.api("GET", "/api/assets/%s/thumbnail" % gone, token=tok)
    assert status == 500 and "ENOENT" in body["message"]
    s15.psql("DELETE FROM asset_file WHERE \"assetId\" = '%s'" % no_row)
    assert s15.api("GET", "/api/assets/%s/thumbnail" % no_row, token=tok)[0] == 404
    # a person without thumbnail: the "missing" job makes it
    s15.psql("INSERT INTO person (id, \"ownerId\", name) SELECT '%s', \"ownerId\", 'P' FROM asset WHERE id = '%s';"
             "INSERT INTO asset_face (\"assetId\", \"personId\") VALUES ('%s', '%s')"
             % ("11111111-2222-4333-8444-555555555555", gone, gone, "11111111-2222-4333-8444-555555555555"))
    status, body = s15.api("PUT", "/api/jobs/thumbnailGeneration", {"command": "start", "force": False}, token=tok)
    assert status == 200 and set(body) == {"jobCounts", "queueStatus"}
    jobs = s15.wait_jobs(tok)
    assert set(jobs["thumbnailGeneration"]["jobCounts"]) == {"active", "completed", "failed", "delayed", "waiting", "paused"}
    assert s15.api("GET", "/api/assets/%s/thumbnail" % gone, token=tok)[0] == 500   # the row exists: not missing
    assert s15.api("GET", "/api/assets/%s/thumbnail" % no_row, token=tok)[0] == 200  # no row: regenerated
    person = s15.psql("SELECT \"thumbnailPath\" FROM person WHERE name = 'P'")
    assert person.endswith("/11111111-2222-4333-8444-555555555555.jpeg") and os.path.exists(host_path(s15, person))
    status, _body = s15.api("PUT", "/api/jobs/thumbnailGeneration", {"command": "start", "force": True}, token=tok)
    assert status == 200
    s15.wait_jobs(tok)
    assert s15.api("GET", "/api/assets/%s/thumbnail" % gone, token=tok)[0] == 200
    assert os.path.exists(host_path(s15, path))
    assert s15.api("PUT", "/api/jobs/nope", {"command": "start"}, token=tok)[0] == 400


def test_albums_and_statistics(s15):
    tok = token(s15)
    ids = [upload(s15, tok, png(11, 12, b"album-%d" % i), "a%d.png" % i)[1]["id"] for i in range(3)]
    status, album = s15.api("POST", "/api/albums", {"albumName": "Holidays", "assetIds": ids[:1]}, token=tok)
    assert status == 201 and album["assetCount"] == 1 and [a["id"] for a in album["assets"]] == ids[:1]
    missing = str(uuid.uuid4())
    status, res = s15.api("PUT", "/api/albums/%s/assets" % album["id"], {"ids": ids[1:] + [ids[0], missing]}, token=tok)
    assert status == 200
    assert res == [{"id": ids[1], "success": True}, {"id": ids[2], "success": True},
                   {"id": ids[0], "success": False, "error": "duplicate"},
                   {"id": missing, "success": False, "error": "not_found"}]
    listed = {a["id"]: a for a in s15.api("GET", "/api/albums", token=tok)[1]}
    assert listed[album["id"]]["assetCount"] == 3 and listed[album["id"]]["assets"] == []
    full = s15.api("GET", "/api/albums/%s" % album["id"], token=tok)[1]
    assert sorted(a["id"] for a in full["assets"]) == sorted(ids) and full["albumName"] == "Holidays"
    assert s15.psql("SELECT count(*) FROM album_asset WHERE \"albumId\" = '%s'" % album["id"]) == "3"
    status, stats = s15.api("GET", "/api/server/statistics", token=tok)
    assert status == 200
    assert stats["photos"] == int(s15.psql("SELECT count(*) FROM asset WHERE type = 'IMAGE' AND \"deletedAt\" IS NULL"))
    assert stats["usage"] == int(s15.psql('SELECT sum("fileSizeInByte") FROM asset_exif'))
    assert {u["userId"] for u in stats["usageByUser"]} == set(s15.psql('SELECT id FROM "user"').split())


def test_sessions_and_api_keys_survive_dump_and_restore(s15, tmp_path):
    tok = token(s15)
    key = s15.api("POST", "/api/api-keys", {"name": "restore", "permissions": ["all"]}, token=tok)[1]["secret"]
    dump = subprocess.run(["docker", "exec", s15.db, "pg_dump", "--clean", "--if-exists", "-U", s15.user, s15.database],
                          capture_output=True, check=True).stdout
    assert tok.encode() not in dump and key.encode() not in dump  # hashed in the database
    # the search_path rewrite every restore of this lab's PG 15 needs (earthdistance, #5630)
    dump = dump.replace(b"SELECT pg_catalog.set_config('search_path', '', false);",
                        b"SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);")
    s15.reset_db()
    subprocess.run(["docker", "exec", "-i", s15.db, "psql", "-q", "-v", "ON_ERROR_STOP=1", "-U", s15.user, "-d",
                    s15.database], input=dump, capture_output=True, check=True)
    s15.start_server()
    assert s15.api("GET", "/api/users/me", token=tok)[0] == 200
    assert s15.api("GET", "/api/users/me", api_key=key)[0] == 200
    assert s15.api("GET", "/api/users/me", api_key=key + "x")[0] == 401


def test_media_location_is_migrated_when_the_previous_one_explains_the_paths(s15):
    tok = token(s15)
    aid = upload(s15, tok, png(5, 5, b"media-move"), "m.png")[1]["id"]
    s15.wait_jobs(tok)
    old = "/usr/src/app/upload"
    s15.psql("UPDATE asset SET \"originalPath\" = regexp_replace(\"originalPath\", '^/data', '%(o)s');"
             "UPDATE asset_file SET path = regexp_replace(path, '^/data', '%(o)s');"
             "UPDATE system_metadata SET value = '{\"location\": \"%(o)s\"}' WHERE key = 'MediaLocation'" % {"o": old})
    logs = restart(s15)
    assert "Media location changed (from=%s, to=/data)" % old in logs
    assert "performing an automatic migration of file paths from %s to /data" % old in logs
    assert s15.psql("SELECT count(*) FROM asset WHERE \"originalPath\" NOT LIKE '/data/%'") == "0"
    assert s15.psql("SELECT count(*) FROM asset_file WHERE path NOT LIKE '/data/%'") == "0"
    assert json.loads(s15.psql("SELECT value FROM system_metadata WHERE key = 'MediaLocation'")) == {"location": "/data"}
    assert s15.api("GET", "/api/assets/%s/original" % aid, token=tok)[0] == 200


def test_inconsistent_media_location_stops_the_boot(s15):
    tok = token(s15)
    upload(s15, tok, png(6, 5, b"inconsistent"), "i.png")
    s15.wait_jobs(tok)
    s15.psql("UPDATE system_metadata SET value = '{\"location\": \"/mnt/elsewhere\"}' WHERE key = 'MediaLocation'")
    try:
        code, logs = restart_expecting_exit(s15)
        assert code == 1
        assert "Media location changed (from=/mnt/elsewhere, to=/data)" in logs
        assert "InconsistentMediaLocation" in logs and "errors#inconsistent-media-location" in logs
        assert s15.psql("SELECT count(*) FROM asset WHERE \"originalPath\" NOT LIKE '/data/%'") == "0"  # untouched
    finally:
        s15.psql("UPDATE system_metadata SET value = '{\"location\": \"/data\"}' WHERE key = 'MediaLocation'")
        restart(s15)


def test_maintenance_mode(s15):
    tok = token(s15)
    before = markers(s15)
    res = s15.admin("enable-maintenance-mode")
    assert res.returncode == 0 and "Maintenance mode has been enabled." in res.stdout
    url = res.stdout.strip().splitlines()[-1]
    assert url.startswith("http://localhost:2283/maintenance?token=")
    try:
        deadline = time.monotonic() + 30
        while s15.api("GET", "/api/server/config")[1] != {"maintenanceMode": True}:
            assert time.monotonic() < deadline, "the server never entered maintenance mode"
            time.sleep(0.3)
        assert s15.ping()  # the maintenance worker answers pong...
        assert s15.api("GET", "/api/server/statistics", token=tok)[0] == 404  # ...and nothing of the API
        assert s15.api("POST", "/api/assets", token=tok)[0] == 404
        assert s15.api("GET", "/api/admin/maintenance/status")[1]["active"] is True
        assert s15.api("POST", "/api/admin/maintenance/login", {"token": "bad"})[0] == 401
        status, body = s15.api("POST", "/api/admin/maintenance/login", {"token": url.split("token=", 1)[1]})
        assert status == 201 and body == {"username": "immich-admin"}
        assert "Immich is in maintenance mode, you can log in using the following URL" in s15.server_logs()
        # the state lives in the database: a restart (or a restored dump) boots into maintenance again
        mark = since()
        subprocess.run(["docker", "restart", s15.server], check=True, capture_output=True)
        s15.wait_healthy()
        assert s15.api("GET", "/api/server/config")[1] == {"maintenanceMode": True}
        assert "Starting maintenance worker" in s15.server_logs(since=mark)
        assert markers(s15) == before  # no mount checks in maintenance mode
    finally:
        res = s15.admin("disable-maintenance-mode")
    assert res.returncode == 0 and "Maintenance mode has been disabled." in res.stdout
    deadline = time.monotonic() + 30
    while s15.api("GET", "/api/server/statistics", token=tok)[0] != 200:
        assert time.monotonic() < deadline, "the server never left maintenance mode"
        time.sleep(0.3)
    assert s15.api("GET", "/api/server/config")[1]["maintenanceMode"] is False


def test_schema_drift_and_immich_admin(s15):
    res = s15.admin("schema-check")
    assert res.returncode == 0 and "Migrations are up to date" in res.stdout and "No schema drift detected" in res.stdout
    assert s15.admin("version").stdout.strip() == "v2.7.5"
    assert s15.admin_email in s15.admin("list-users").stdout
    assert s15.admin("no-such-command").returncode == 1
    s15.psql('DROP INDEX "asset_originalFilename_trigram_idx"')
    try:
        logs = restart(s15)  # the migrations ran long ago: nothing recreates it, the check reports it
        assert "Detected schema drift" in logs and "asset_originalFilename_trigram_idx" in logs
        assert "No schema drift detected" not in logs
        res = s15.admin("schema-check")
        assert res.returncode == 0 and "Detected schema drift" in res.stdout
        assert 'CREATE INDEX "asset_originalFilename_trigram_idx" ON asset USING gin' in res.stdout
    finally:
        s15.psql('CREATE INDEX IF NOT EXISTS "asset_originalFilename_trigram_idx" ON asset USING gin '
                 '(f_unaccent("originalFileName") gin_trgm_ops)')
    assert "No schema drift detected" in restart(s15)


def test_a_migration_this_version_does_not_know_stops_the_boot(s15):
    s15.psql("INSERT INTO kysely_migrations VALUES ('1799999999999-FromANewerImmich', '2027-01-01T00:00:00.000Z')")
    try:
        code, logs = restart_expecting_exit(s15)
        assert code == 1 and "corrupted migrations: previously executed migration 1799999999999-FromANewerImmich" in logs
    finally:
        s15.psql("DELETE FROM kysely_migrations WHERE name = '1799999999999-FromANewerImmich'")
        restart(s15)
    res = s15.admin("schema-check")
    assert "Migrations are up to date" in res.stdout


# ---- PG 17 (pgvector) ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s17(shared):
    return shared["s17"]


def index_defs(inst):
    return dict(line.split("|", 1) for line in inst.psql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN ('clip_index', 'face_index')").splitlines())


def test_pgvector_is_chosen_with_its_indexes(s17):
    assert "Creating pgvector extension" in s17.server_logs()
    assert s17.psql("SELECT extname FROM pg_extension WHERE extname IN ('vector', 'vchord', 'vectors')") == "vector"
    assert s17.psql("SELECT udt_name FROM information_schema.columns WHERE table_name = 'face_search' "
                    "AND column_name = 'embedding'") == "vector"
    defs = index_defs(s17)
    assert set(defs) == {"clip_index", "face_index"} and all("USING hnsw" in d for d in defs.values())
    assert s17.stats()["vectorExtension"] == "vector" and s17.stats()["missingCount"] == 0


def test_missing_or_wrong_vector_indexes_are_rebuilt_and_embeddings_cast_back(s17):
    probe = 'SELECT md5(string_agg(embedding::real[]::text, \',\' ORDER BY "faceId")) FROM face_search'
    before, rows = s17.psql(probe), s17.row_counts()
    s17.psql('DROP INDEX face_index; ALTER TABLE face_search ALTER COLUMN embedding TYPE real[];'
             'DROP INDEX clip_index; CREATE INDEX clip_index ON smart_search USING btree ("assetId")')
    logs = restart(s17)
    assert "Reindexing clip_index" in logs and "Reindexed clip_index" in logs and "Reindexed face_index" in logs
    assert "Could not retrieve dimension size of column 'embedding' in table 'face_search', assuming 512" in logs
    defs = index_defs(s17)
    assert all("USING hnsw" in d for d in defs.values()) and len(defs) == 2
    assert s17.psql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'face_search'::regclass "
                    "AND attname = 'embedding'") == "vector(512)"
    assert s17.psql(probe) == before and s17.row_counts() == rows
    assert "No schema drift detected" in logs


def test_db_vector_extension_names_an_extension_the_image_lacks(s17):
    s17.server_env["DB_VECTOR_EXTENSION"] = "vectorchord"
    try:
        code, logs = recreate_expecting_exit(s17)
        assert code == 1 and "The VectorChord extension is not available in this Postgres instance." in logs
    finally:
        s17.server_env.pop("DB_VECTOR_EXTENSION")
        s17.start_server(recreate=True)
    assert s17.ping()


# ---- Immich <= 1.136 naming ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s130(shared):
    return shared["s130"]


def test_old_naming_schema_paths_and_mount(s130):
    assert "/usr/src/app/upload" in open(s130.compose_file).read() and s130.container_media == "/usr/src/app/upload"
    tables = set(s130.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())
    assert {"assets", "users", "exif", "asset_files", "albums", "albums_assets_assets", "migrations"} <= tables
    assert not tables & {"asset", "user", "album_asset", "kysely_migrations"}
    assert s130.psql("SELECT count(*) FROM assets WHERE \"originalPath\" NOT LIKE 'upload/%'") == "0"
    thumb = s130.psql("SELECT path FROM asset_files WHERE type = 'thumbnail' LIMIT 1")
    assert thumb.startswith("upload/thumbs/") and thumb.endswith("-thumbnail.webp")
    assert os.path.exists(os.path.join(s130.upload_location, thumb[len("upload/"):]))
    assert markers(s130)["upload"].isdigit()
    assert s130.stats()["missingCount"] == 0 and s130.stats()["assets"] == 150
    assert s130.api("GET", "/api/server/version")[1] == {"major": 1, "minor": 130, "patch": 3}
    tok = s130.login()  # the SQL seeder's admin is inst.admin_email / inst.admin_password
    data = png(7, 7, b"old-era")
    status, body = upload(s130, tok, data)
    assert status == 201
    s130.wait_jobs(tok)
    path = s130.psql("SELECT \"originalPath\" FROM assets WHERE id = '%s'" % body["id"])
    assert path.startswith("upload/upload/") and open(os.path.join(s130.upload_location, path[7:]), "rb").read() == data
    assert s130.psql("SELECT path FROM asset_files WHERE \"assetId\" = '%s' AND type = 'preview'" % body["id"]).endswith(
        "%s-preview.jpeg" % body["id"])
    assert s130.psql("SELECT count(*) FROM asset_job_status WHERE \"assetId\" = '%s' AND \"thumbnailAt\" IS NOT NULL"
                     % body["id"]) == "1"
    assert s130.admin("schema-check").returncode == 1  # not a command of that version


def test_a_typeorm_database_under_v2_is_an_invalid_upgrade_path(s130):
    s130.immich_version = "v2.7.5"
    try:
        code, logs = recreate_expecting_exit(s130)
        assert code == 1 and "Invalid upgrade path" in logs and "typeorm-upgrade" in logs
        assert s130.psql("SELECT to_regclass('public.kysely_migrations') IS NULL") == "t"
    finally:
        s130.immich_version = "v1.130.3"
        s130.start_server(recreate=True)


# ---- image parameters: a server image that is not build.sh's is seeded through the API only -------------

def test_foreign_server_image_is_seeded_through_the_api_only(lab, monkeypatch):
    import seeder  # noqa: PLC0415

    ours = lab.images()["LAB_IMAGE_SERVER"]
    foreign = "homelab-immich-lab/server-foreign:%s" % uuid.uuid4().hex[:8]
    subprocess.run(["docker", "tag", ours, foreign], check=True)
    inst = None
    try:
        monkeypatch.setenv("LAB_IMAGE_SERVER", foreign)

        def no_sql(*_a, **_kw):
            raise AssertionError("the SQL seeder ran for a foreign server image")

        monkeypatch.setattr(seeder, "seed", no_sql)
        inst = lab.Instance("stiapi-%s" % uuid.uuid4().hex[:6], pg=15)
        assert inst.api_seeding and not lab.Instance("x", pg=15, server_image=ours).api_seeding
        inst.up(seed="small")
        assert "image: %s" % foreign in open(inst.compose_file).read()
        result = inst.seed_result
        assert len(result["assets"]) == 26 and result["album"]["assetIds"] and result["avatar"]
        tok = inst.login()
        stats = inst.api("GET", "/api/server/statistics", token=tok)[1]
        assert stats["photos"] == 26 and stats["photos"] == result["statistics"]["photos"]
        counts = inst.row_counts()
        assert counts["asset"] == 26 and counts["geodata_places"] == 0 and counts["person"] == 0  # no SQL dataset
        for asset in result["assets"][:3]:
            status, data = inst.api("GET", "/api/assets/%s/original" % asset["id"], token=tok, raw=True)
            assert status == 200 and sha1(data) == asset["sha1"] == result["sha1"][asset["id"]]
        assert len(inst.api("GET", "/api/albums/%s" % result["album"]["id"], token=tok)[1]["assets"]) == 12
    finally:
        if inst is not None:
            _teardown(inst)
        subprocess.run(["docker", "rmi", foreign], check=False, capture_output=True)
