"""Per-asset SHA-1 proof and boot proof: counts, examples and messages, with no Docker."""
import hashlib
import io
import os
import random
import shutil

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import file_manifest, immich, proof
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx

USER = "0b1c2d3e-0000-4000-8000-000000000001"


def sha1(data):
    return hashlib.sha1(data).digest()  # noqa: S324 - Immich's checksum


def write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


@pytest.fixture
def library(tmp_path):
    """An UPLOAD_LOCATION with originals, markers, a sidecar and an orphan; and the rows of its DB."""
    root = str(tmp_path / "library")
    rows = []
    for i in range(12):
        data = os.urandom(100 + i * 37)
        rel = "upload/%s/%02x/%02x/asset-%d.jpg" % (USER, i, i, i)
        write(root, rel, data)
        rows.append(("id-%d" % i, "/data/" + rel, "\\x" + sha1(data).hex(), "sha1", None))
    for folder in ("upload", "library", "thumbs"):
        write(root, folder + "/.immich", b"1764633600000")
    write(root, "upload/%s/00/00/asset-0.jpg.xmp" % USER, b"<x:xmpmeta/>")
    write(root, "upload/%s/ff/ff/orphan.jpg" % USER, b"no row names me")
    write(root, "thumbs/%s/00/00/id-0_thumbnail.webp" % USER, b"regenerable, not an original")
    return root, rows


def test_every_file_matches(library):
    root, rows = library
    res = proof.asset_proof(iter(rows), root, media_location="/data")
    assert res["ok"] is True
    assert (res["assets"], res["matched"], res["hashed"]) == (12, 12, 12)
    assert res["orphans"] == 1
    assert res["examples"]["orphans"] == ["upload/%s/ff/ff/orphan.jpg" % USER]
    assert res["mismatched"] == res["missing_in_backup"] == res["external"] == 0
    assert res["detail"].startswith("12 of 12 assets matched their SHA-1; 1 orphans (a file, no row): upload/")


def test_flipped_byte_and_deleted_file_are_named(library):
    root, rows = library
    flipped = os.path.join(root, rows[3][1][len("/data/"):])
    with open(flipped, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0x01]))
    os.unlink(os.path.join(root, rows[7][1][len("/data/"):]))
    res = proof.asset_proof(iter(rows), root, media_location="/data", workers=2)
    assert res["ok"] is False
    assert res["matched"] == 10
    assert res["mismatched"] == 1 and res["examples"]["mismatched"] == [rows[3][1]]
    assert res["missing_in_backup"] == 1 and res["examples"]["missing_in_backup"] == [rows[7][1]]
    assert res["orphans"] == 1  # the deleted file's row is no orphan, the unnamed file still is
    check = proof.asset_check(res)
    assert check["name"] == "per-asset SHA-1" and check["ok"] is False
    assert rows[3][1] in check["detail"] and rows[7][1] in check["detail"]
    assert "restore them from an older set" in check["detail"]


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_workers_give_the_same_answer(library, workers):
    root, rows = library
    os.unlink(os.path.join(root, rows[0][1][len("/data/"):]))
    res = proof.asset_proof(iter(rows), root, media_location="/data", workers=workers)
    assert (res["matched"], res["missing_in_backup"], res["hashed"]) == (11, 1, 11)
    assert res["bytes_hashed"] == sum(100 + i * 37 for i in range(1, 12))


def test_external_assets_are_counted_and_handed_to_the_caller(library):
    root, rows = library
    path = "/mnt/photos/2019/beach.jpg"
    external = ("ext-1", path, sha1(b"path:" + path.encode()), "sha1-path", "lib-1")
    seen = []
    res = proof.asset_proof(iter(rows + [external]), root, media_location="/data", on_external=seen.append)
    assert res["external"] == 1 and res["examples"]["external"] == [path]
    assert seen == [external]
    assert res["ok"] is True and res["matched"] == 12


def test_old_schema_without_algorithm_column(library):
    root, rows = library
    old = [(r[0], r[1], r[2], None, None) for r in rows]
    old.append(("ext", "/import/x.jpg", b"\x00" * 20, None, "library-id"))  # libraryId set: external
    res = proof.asset_proof(iter(old), root, media_location="/data")
    assert (res["matched"], res["external"], res["ok"]) == (12, 1, True)


def test_legacy_paths_relative_and_usr_src_app(library):
    root, rows = library
    legacy = []
    for n, r in enumerate(rows):
        rel = r[1][len("/data/"):]
        legacy.append((r[0], ("upload/" + rel) if n % 2 else ("/usr/src/app/upload/" + rel), r[2], "sha1", None))
    res = proof.asset_proof(iter(legacy), root)  # no media_location: both mount points are tried
    assert (res["matched"], res["orphans"], res["ok"]) == (12, 1, True)
    # Told the media location is /data, a /usr/src/app/upload path still names a file of UPLOAD_LOCATION (each
    # mount point maps it; Immich migrates such paths at its start: immich.to_relative, the one mapping).
    res = proof.asset_proof(iter(legacy), root, media_location="/data")
    assert res["matched"] == 12 and res["unmapped"] == 0 and res["ok"] is True
    # A path no mount point explains is unmapped: a failure, named.
    res = proof.asset_proof(iter(legacy + [("o", "/mnt/other/a.jpg", b"\x00" * 20, "sha1", None)]), root, media_location="/data")
    assert res["unmapped"] == 1 and res["ok"] is False
    assert "not under /data" in res["examples"]["unmapped"][0]


def test_unknown_algorithm_trash_pending_delete_and_bad_checksum(library):
    root, rows = library
    extra = [
        ("a", "/data/upload/x/new.jpg", "\\x00", "blake3", None),
        ("b", "/data/upload/x/gone.jpg", "\\x" + "00" * 20, "sha1", None, "deleted"),
        ("c", rows[0][1], "", "sha1", None),
    ]
    res = proof.asset_proof(iter(rows + extra), root, media_location="/data")
    assert res["unknown_algorithm"] == 1 and res["examples"]["unknown_algorithm"] == ["/data/upload/x/new.jpg (blake3)"]
    assert res["pending_delete"] == 1 and res["missing_in_backup"] == 0
    assert res["mismatched"] == 1 and "holds no SHA-1" in res["examples"]["mismatched"][0]


def test_paths_that_leave_the_media_folder_are_never_read(library, tmp_path):
    root, rows = library
    secret = write(str(tmp_path), "secret.txt", b"outside")
    evil = ("e", "/data/upload/../../secret.txt", sha1(b"outside"), "sha1", None)
    res = proof.asset_proof(iter(rows + [evil]), root, media_location="/data")
    assert os.path.exists(secret)
    assert res["unmapped"] == 1 and res["matched"] == 12


def _many(tmp_path, n):
    root = str(tmp_path / "many")
    rows = []
    for i in range(n):
        rel = "upload/u%d/%02x/f%d.bin" % (i % 3, i % 7, i)
        data = b"%d" % i
        write(root, rel, data)
        rows.append(("asset-%d" % i, "/data/" + rel, b"\x00" * 20, "sha1", None))  # every checksum wrong
    return root, rows


def test_sample_count_is_deterministic_and_independent_of_row_order(tmp_path):
    root, rows = _many(tmp_path, 60)
    a = proof.asset_proof(iter(rows), root, sample=10, seed=7, examples=100)
    b = proof.asset_proof(iter(reversed(rows)), root, sample="10", seed=7, examples=100)
    c = proof.asset_proof(iter(rows), root, sample=10, seed=8, examples=100)
    assert a["hashed"] == b["hashed"] == 10 and a["mismatched"] == 10
    assert sorted(a["examples"]["mismatched"]) == sorted(b["examples"]["mismatched"])
    assert sorted(a["examples"]["mismatched"]) != sorted(c["examples"]["mismatched"])
    assert a["not_hashed"] == 50 and a["sample"] == {"mode": "count", "value": 10, "seed": 7}


def test_sample_fraction_and_missing_outside_the_sample(tmp_path):
    root, rows = _many(tmp_path, 200)
    os.unlink(os.path.join(root, rows[5][1][len("/data/"):]))
    res = proof.asset_proof(iter(rows), root, sample="25%", seed=1)
    assert 25 <= res["hashed"] <= 75  # about 50 of 199 present files
    assert res["missing_in_backup"] == 1  # presence is checked for every asset, sampled or not
    assert res["hashed"] + res["not_hashed"] + res["missing_in_backup"] == 200
    again = proof.asset_proof(iter(rows), root, sample=0.25, seed=1)
    assert again["hashed"] == res["hashed"]
    assert proof.asset_proof(iter(rows), root, sample=1.0)["hashed"] == 199


@pytest.mark.parametrize("bad", [0, -1, 0.0, True, "0"])
def test_bad_samples_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        proof.asset_proof(iter([]), str(tmp_path), sample=bad)


def test_orphans_with_spilled_runs_equal_an_in_memory_answer(tmp_path):
    root, rows = _many(tmp_path, 150)
    rng = random.Random(3)
    kept = [r for r in rows if rng.random() < 0.7]
    rng.shuffle(kept)
    expected = sorted(r[1][len("/data/"):] for r in rows if r not in kept)
    res = proof.asset_proof(iter(kept), root, sample=1, run_size=7, examples=1000)
    assert res["orphans"] == len(expected)
    assert sorted(res["examples"]["orphans"]) == expected


def test_path_sorter_orders_by_components_and_drops_duplicates(tmp_path):
    paths = ["a.jpg", "a/b", "a/a", "a-b/c", "a/b", "b", "a.jpg/x", "a/b/c"]
    for run in (2, 3, 100):
        sorter = proof.PathSorter(run_size=run, tmpdir=str(tmp_path))
        for p in paths:
            sorter.add(p)
        got = list(sorter)
        sorter.close()
        assert got == ["a/a", "a/b", "a/b/c", "a-b/c", "a.jpg", "a.jpg/x", "b"]


def test_walk_order_matches_the_sort(tmp_path):
    root = str(tmp_path)
    for rel in ("upload/a.jpg", "upload/a/x", "upload/a-b", "library/z", "upload/a/y/z"):
        write(root, rel, b"")
    os.symlink("/etc/hostname", os.path.join(root, "upload", "link"))
    walked = list(proof.walk_files(root))
    assert walked == ["library/z", "upload/a/x", "upload/a/y/z", "upload/a-b", "upload/a.jpg"]
    assert walked == sorted(walked, key=proof.order_key)


def _walked(root, find, tmp_path):
    walk = proof._BackgroundWalk(root, proof.ORIGINAL_FOLDERS, str(tmp_path), find=find)
    try:
        return list(walk.files())
    finally:
        walk.close()


def test_the_find_child_and_the_thread_walk_list_the_same_files_in_order(tmp_path):
    root = str(tmp_path / "ul")
    elsewhere = str(tmp_path / "disk2")
    for rel in ("upload/a.jpg", "upload/a/x", "upload/a-b", "upload/a/y/z", "upload/new\nline.jpg"):
        write(root, rel, b"")
    write(elsewhere, "admin/2020/b.jpg", b"")
    os.makedirs(os.path.join(elsewhere, "empty"))
    os.symlink(elsewhere, os.path.join(root, "library"))  # a symlinked library/ folder is followed itself
    os.symlink("/etc", os.path.join(root, "upload", "dirlink"))  # nothing below it is
    os.symlink("/etc/hostname", os.path.join(root, "upload", "link"))
    raw = os.path.join(root, "upload").encode() + b"/caf\xe9.jpg"  # not UTF-8
    open(raw, "wb").close()
    want = ["library/admin/2020/b.jpg", "upload/a/x", "upload/a/y/z", "upload/a-b", "upload/a.jpg",
            "upload/caf\udce9.jpg", "upload/new\nline.jpg"]
    assert _walked(root, "", tmp_path) == want  # no find: walk_files on a thread
    assert _walked(root, shutil.which("find"), tmp_path) == want


def test_a_walk_of_no_folder_lists_nothing(tmp_path):
    assert _walked(str(tmp_path), shutil.which("find"), tmp_path) == []


def test_a_failing_find_names_its_exit_and_message(tmp_path):
    root = str(tmp_path)
    write(root, "upload/a.jpg", b"x")
    fake = tmp_path / "find"
    fake.write_text("#!/bin/sh\necho 'find: upload/x: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(proof.ProofError, match=r"find exited 1: find: upload/x: Permission denied.*nothing was changed"):
        _walked(root, str(fake), tmp_path)


def test_missing_upload_location_says_what_to_check(tmp_path):
    with pytest.raises(proof.ProofError, match="UPLOAD_LOCATION .* is not a folder"):
        proof.asset_proof(iter([]), str(tmp_path / "nope"))


@pytest.mark.parametrize("path,media,want", [
    ("/data/upload/u/a.jpg", None, "upload/u/a.jpg"),
    ("/data/upload/u/a.jpg", "/data/", "upload/u/a.jpg"),
    ("/usr/src/app/upload/library/admin/a.jpg", None, "library/admin/a.jpg"),
    # another known mount point still maps UPLOAD_LOCATION (Immich migrates such paths at its start)
    ("/usr/src/app/upload/library/admin/a.jpg", "/data", "library/admin/a.jpg"),
    ("upload/upload/u/a.jpg", "/data", "upload/u/a.jpg"),
    ("upload/library/admin/2020/a.jpg", None, "library/admin/2020/a.jpg"),
    ("/srv/photos/a.jpg", "/srv/photos", "a.jpg"),
    ("/mnt/external/a.jpg", None, None),
    ("/data/../etc/passwd", None, None),
    ("/database/upload/a", None, None),
    ("relative/a.jpg", None, None),
    ("", None, None),
])
def test_media_relpath_is_immich_to_relative(path, media, want):
    assert immich.to_relative(path, media) == want
    assert proof.media_relpath is immich.to_relative and proof.order_key is file_manifest.order_key


# -- psql output ----------------------------------------------------------------------------------

ROWS_NUL = (b"id-1\0/data/upload/u/a\tb.jpg\0\\x" + b"ab" * 20 + b"\0sha1\0\0active\0"
            b"id-2\0/data/upload/u/new\nline.jpg\0\\x" + b"cd" * 20 + b"\0sha1-path\0lib-1\0\0")


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_parse_unaligned_zero_bytes_any_chunking(step):
    chunks = [ROWS_NUL[i:i + step] for i in range(0, len(ROWS_NUL), step)]
    rows = list(proof.parse_unaligned(chunks, 6))
    assert rows == [
        ["id-1", "/data/upload/u/a\tb.jpg", "\\x" + "ab" * 20, "sha1", "", "active"],
        ["id-2", "/data/upload/u/new\nline.jpg", "\\x" + "cd" * 20, "sha1-path", "lib-1", ""],
    ]


def test_parse_unaligned_cut_stream_is_an_error():
    with pytest.raises(proof.ProofError, match="stream was cut"):
        list(proof.parse_unaligned([ROWS_NUL[:-3]], 6))


def test_parse_unaligned_tab_and_newline_separated():
    out = b"a\t/data/x\t\\x00ff\tsha1\t\t\r\nb\t/data/y\t\\x01\tsha1\tlib\tdeleted\n"
    rows = list(proof.parse_unaligned([out[:9], out[9:]], 6, field_sep=b"\t", record_sep=b"\n"))
    assert rows[0] == ["a", "/data/x", "\\x00ff", "sha1", "", ""]
    assert rows[1][5] == "deleted"
    with pytest.raises(proof.ProofError, match="3 fields where 6"):
        list(proof.parse_unaligned([b"a\tb\tc\n"], 6, field_sep=b"\t", record_sep=b"\n"))


@pytest.mark.parametrize("text,want", [
    ("\\x00ff10", b"\x00\xff\x10"), ("00ff", b"\x00\xff"), ("\\x", b""), ("", None), (None, None),
    (b"\x01\x02", b"\x01\x02"), ("a\\\\b\\001", b"a\\b\x01"),
])
def test_parse_bytea(text, want):
    assert proof.parse_bytea(text) == want


@pytest.mark.parametrize("columns,table,algo", [
    ([("asset", "originalPath"), ("asset", "checksumAlgorithm"), ("asset", "isExternal"), ("asset", "libraryId"),
      ("asset", "status")], "asset", '"checksumAlgorithm"::text'),
    ([("assets", "originalPath"), ("assets", "isExternal"), ("assets", "libraryId")], "assets",
     "CASE WHEN \"isExternal\" THEN 'sha1-path' ELSE 'sha1' END"),
    ([("assets", "originalPath"), ("assets", "libraryId")], "assets", "NULL::text"),
])
def test_rows_sql_for_each_schema(columns, table, algo):
    schema = proof.asset_schema_from(columns)
    assert schema["table"] == table
    sql = proof.asset_rows_sql(schema)
    assert 'FROM public."%s" ORDER BY "originalPath" COLLATE "C";' % table in sql
    assert sql.startswith('SELECT id::text, "originalPath", checksum, %s, ' % algo)
    assert ("status::text" in sql) == (table == "asset")


def test_schema_prefers_current_table_and_none_without_assets():
    both = [("assets", "originalPath"), ("asset", "originalPath"), ("asset", "checksumAlgorithm")]
    assert proof.asset_schema_from(both)["table"] == "asset"
    assert proof.asset_schema_from([("album", "originalPath")]) is None


def test_rows_argv_is_argv_only_and_keeps_the_password_out():
    argv = proof.asset_rows_argv("immich_postgres", "postgres", "immich", "SELECT 1;", password="s3cret")
    assert argv[:5] == [proof.dx.DOCKER, "exec", "-e", "PGPASSWORD", "immich_postgres"]
    assert "s3cret" not in " ".join(argv)
    for flag in ("-A", "-t", "-z", "-0", "ON_ERROR_STOP=1", "SET bytea_output = hex", "SELECT 1;"):
        assert flag in argv
    assert "-i" not in argv and "-t" in argv[argv.index("psql"):]


class FakeProc:
    def __init__(self, out, rc=0, err=b""):
        self.stdout = io.BytesIO(out)
        self.stderr = io.BytesIO(err)
        self._rc = rc
        self.killed = False

    def poll(self):
        return None

    def kill(self):
        self.killed = True

    def wait(self):
        return self._rc


SCHEMA = {"table": "asset", "algorithm": True, "is_external": True, "status": True, "library": True}


def test_stream_asset_rows_parses_the_producer_output():
    seen = {}

    def popen(argv, **kw):
        seen["argv"] = argv
        return FakeProc(ROWS_NUL)

    rows = list(proof.stream_asset_rows("db", "postgres", "immich", schema=SCHEMA, popen=popen))
    assert rows[0] == ("id-1", "/data/upload/u/a\tb.jpg", b"\xab" * 20, "sha1", None, "active")
    assert rows[1][3:] == ("sha1-path", "lib-1", None)
    assert seen["argv"][-1].startswith("SELECT id::text")


def test_stream_asset_rows_failure_names_the_database():
    def popen(argv, **kw):
        return FakeProc(b"", rc=2, err=b'psql: error: FATAL:  database "immich" does not exist\n')

    with pytest.raises(proof.ProofError, match='database immich in db failed .*does not exist.*Nothing was proven'):
        list(proof.stream_asset_rows("db", "postgres", "immich", schema=SCHEMA, popen=popen))


def test_rows_from_the_producer_feed_the_proof(library):
    root, rows = library
    out = b"".join(b"\0".join([r[0].encode(), r[1].encode(), r[2].encode(), b"sha1", b"", b"active"]) + b"\0" for r in rows)
    res = proof.asset_proof(proof.stream_asset_rows("db", "u", "d", schema=SCHEMA, popen=lambda a, **k: FakeProc(out)),
                            root, media_location="/data")
    assert (res["matched"], res["ok"]) == (12, True)


# -- boot proof -------------------------------------------------------------------------------------

def test_admin_check():
    assert proof.admin_check(1) == {"name": "admin exists", "ok": True, "detail": "1 admin user", "skipped": False}
    failed = proof.admin_check("0")
    assert failed["ok"] is False and "no admin user" in failed["detail"]
    assert proof.admin_sql() == 'SELECT count(*) FROM public."user" WHERE "isAdmin" AND "deletedAt" IS NULL;'
    assert '"users"' in proof.admin_sql("users")


@pytest.mark.parametrize("value,cleared,ok,finding", [
    (None, False, True, "none"),
    ('{"isMaintenanceMode": false}', False, True, "none"),
    ('{"isMaintenanceMode": true, "secret": "x"}', False, False, "to clear"),
    ({"isMaintenanceMode": True}, True, True, "cleared"),
    ("not json", False, True, "none"),
])
def test_maintenance_check(value, cleared, ok, finding):
    res = proof.maintenance_check(value, cleared=cleared)
    assert (res["ok"], res["finding"]) == (ok, finding)
    if finding != "none":
        assert res["sql"] == proof.CLEAR_MAINTENANCE_SQL
        assert "maintenance mode" in res["detail"]
    if finding == "to clear":
        assert proof.CLEAR_MAINTENANCE_SQL in res["detail"] and "restart immich-server" in res["detail"]


def test_schema_drift_log():
    clean = "[Nest] 7  - LOG [Api:DatabaseService] No schema drift detected\n"
    assert proof.schema_drift_log_check(clean)["ok"] is True
    log = clean + "[Nest] 7  - WARN [Microservices:DatabaseService] Detected schema drift (2 items)\n"
    res = proof.schema_drift_log_check(log)
    assert res["ok"] is False and "1 time since its start" in res["detail"] and "Detected schema drift (2 items)" in res["detail"]


def test_schema_check_verdict():
    good = "Migrations are up to date\n\nNo schema drift detected\n"
    assert proof.schema_check_verdict(good)["ok"] is True
    drift = ("Migrations are up to date\n\nDetected schema drift\n  - ColumnMissing: asset.checksumAlgorithm\n\n"
             "```sql\nALTER TABLE ...\n```\n")
    res = proof.schema_check_verdict(drift)
    assert res["ok"] is False and "ColumnMissing: asset.checksumAlgorithm" in res["detail"]
    pending = "Migration issues detected:\n  - 1760000000000-X exists on disk, but has not been applied to the database\n\nNo schema drift detected\n"
    assert "has not been applied" in proof.schema_check_verdict(pending)["detail"]
    assert proof.schema_check_verdict(good, rc=1)["ok"] is False
    skipped = proof.schema_check_verdict("", available=False)
    assert skipped["skipped"] is True and skipped["ok"] is True


def test_a_failing_row_source_stops_the_proof_and_its_threads(library):
    import threading  # noqa: PLC0415

    root, rows = library

    def source():
        yield from rows[:5]
        raise proof.ProofError("psql output ended inside a row")

    before = threading.active_count()
    with pytest.raises(proof.ProofError, match="ended inside a row"):
        proof.asset_proof(source(), root, media_location="/data", workers=2)
    assert threading.active_count() == before


def test_read_boot_facts_for_both_namings():
    def fake(tables):
        def query(container, user, database, sql, password):
            if sql == proof.BOOT_TABLES_SQL:
                return [tables]
            if sql.startswith("SELECT count(*)"):
                assert ('"users"' in sql) == (tables == ["f", "t"])
                return [["2"]]
            return [['{"isMaintenanceMode": true, "secret": "s"}']]
        return query

    facts = proof.read_boot_facts("db", "postgres", "immich", query=fake(["t", "f"]))
    assert facts == {"admins": 2, "maintenance": '{"isMaintenanceMode": true, "secret": "s"}', "user_table": "user"}
    assert proof.read_boot_facts("db", "postgres", "immich", query=fake(["f", "t"]))["user_table"] == "users"
    with pytest.raises(proof.ProofError, match="no user table"):
        proof.read_boot_facts("db", "postgres", "immich", query=fake(["f", "f"]))


def test_boot_proof_lists_every_check():
    checks = proof.boot_proof(0, '{"isMaintenanceMode": true}', log_text="Detected schema drift\n",
                              schema_check=("Migrations are up to date\n\nNo schema drift detected\n", 0))
    assert [(c["name"], c["ok"]) for c in checks] == [
        ("admin exists", False), ("not in maintenance mode", False), ("no schema drift logged", False),
        ("immich-admin schema-check", True)]
    assert proof.boot_proof(1, None)[-1]["skipped"] is True


def test_no_rows_but_originals_on_disk_fails(library):
    root, _rows = library
    res = proof.asset_proof(iter([]), root, media_location="/data")
    assert res["ok"] is False and res["empty_database"] is True and res["orphans"] == 13
    assert res["detail"].startswith("the database names no asset, yet UPLOAD_LOCATION holds 13 originals")
    assert proof.asset_proof(iter([]), str(os.path.dirname(root)), folders=("nothing-here",))["ok"] is True


# -- the boot proof against a running instance -------------------------------------------------------------

def maintenance_db(value):
    """A query function for read_boot_facts / clear_maintenance: one admin, the maintenance row given."""
    state = {"value": value, "cleared": 0}

    def query(container, user, database, sql, password):
        if sql == proof.BOOT_TABLES_SQL:
            return [["t", "f"]]
        if sql.startswith("SELECT count(*)"):
            return [["1"]]
        if sql == proof.CLEAR_MAINTENANCE_SQL:
            state["cleared"] += 1
            state["value"] = '{"isMaintenanceMode": false}'
            return []
        return [[state["value"]]] if state["value"] is not None else []
    return state, query


def test_maintenance_mode_is_cleared_before_the_start_and_said_so():
    state, query = maintenance_db('{"isMaintenanceMode": true, "secret": "s"}')
    step = proof.clear_maintenance("db", "postgres", "immich", query=query)
    assert step["cleared"] is True and state["cleared"] == 1 and step["check"]["ok"]
    assert step["check"]["detail"].startswith("cleared:") and step["check"]["finding"] == "cleared"
    after = proof.maintenance_after_start(step, state["value"])
    assert after["ok"] and after["detail"].startswith("cleared:")
    # Back in maintenance mode after the start (someone enabled it, or the clear did not hold): a failure.
    assert proof.maintenance_after_start(step, '{"isMaintenanceMode": true}')["ok"] is False
    state, query = maintenance_db(None)
    step = proof.clear_maintenance("db", "postgres", "immich", query=query)
    assert step["cleared"] is False and state["cleared"] == 0 and step["check"]["finding"] == "none"
    assert proof.maintenance_after_start(step, None)["detail"].startswith("system_metadata holds no active")


def test_clear_maintenance_never_raises():
    def broken(*a):
        raise dx.DockerError("psql failed: relation \"system_metadata\" does not exist")
    step = proof.clear_maintenance("db", "postgres", "immich", query=broken)
    assert step["check"]["ok"] is False and "could not be read before the start" in step["check"]["detail"]


def test_schema_check_of_an_image_without_it_is_skipped():
    assert proof.run_schema_check("srv", run=lambda argv, **kw: (127, "", 'exec: "immich-admin": executable file not found')) is None
    assert proof.run_schema_check("srv", run=lambda argv, **kw: (1, "", "error: unknown command 'schema-check'")) is None
    out = "Migrations are up to date\n\nNo schema drift detected\n"
    calls = []

    def run(argv, **kw):
        calls.append(argv)
        return 0, out, ""
    assert proof.run_schema_check("srv", run=run) == (out, 0)
    assert calls == [[dx.DOCKER, "exec", "srv", "immich-admin", "schema-check"]]


def test_server_log_since_its_start():
    calls = []

    def run(argv, **kw):
        calls.append(argv)
        return (0, "2026-12-01T18:00:00.123Z\n", "") if argv[1] == "inspect" else (0, "out\n", "Detected schema drift\n")
    since = proof.server_started_at("srv", run=run)
    assert since == "2026-12-01T18:00:00.123Z"
    assert "Detected schema drift" in proof.server_log_since("srv", since, run=run)
    assert calls[-1] == [dx.DOCKER, "logs", "--since", since, "srv"]
    with pytest.raises(proof.ProofError, match="Cannot read the log"):
        proof.server_log_since("srv", since, run=lambda argv, **kw: (1, "", "No such container: srv"))


@pytest.mark.parametrize("value,want", [(None, None), ("", None), ("all", None), (0, None), ("0", None), (200, 200),
                                        ("200", 200), ("10%", "10%"), ("0.1", "0.1")])
def test_parse_sample(value, want):
    assert proof.parse_sample(value) == want


def test_outcome_says_the_restore_stands():
    ok, msg = proof.outcome([proof.check("a", True, "fine"), proof.check("b", True, "fine")])
    assert ok and msg == "every check passed: a, b"
    ok, msg = proof.outcome([proof.check("admin exists", False, "no admin"), proof.check("x", True, "")])
    assert not ok and msg.startswith("The restore stands (its rows matched the backup), but 1 check") and "admin exists: no admin" in msg


def test_the_drill_takes_the_restores_checks_as_its_own():
    from ansible_collections.homelab.immich.plugins.modules import drill_scratch  # noqa: PLC0415

    restore = {"checks": [{"name": "compatibility gate", "ok": True, "detail": "compatible"}, {},
                          {"name": "admin exists", "ok": False, "detail": "no admin", "skipped": False},
                          {"name": "per-asset SHA-1", "ok": True, "detail": "150 of 150", "seconds": 0.4},
                          {"name": "server answers", "ok": False, "detail": "a name the drill has already"}]}
    got = drill_scratch.restore_checks(restore, ["database rows", "server answers"])
    assert [c["name"] for c in got] == ["compatibility gate", "admin exists", "per-asset SHA-1"]
    assert got[1] == {"name": "admin exists", "ok": False, "detail": "no admin", "skipped": False}
    assert got[2]["seconds"] == 0.4 and drill_scratch.restore_checks({}, []) == []
