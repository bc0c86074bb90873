"""db_dump / db_restore / dump_rewrite / fresh_check against real PG 15 lab instances (+ faults)."""
import gzip
import json
import os
import signal
import subprocess
import time
import uuid

import pytest
from lab_helpers import instance, public_tables, reset_db, schema, teardown
from modrun import run_module, start_module


@pytest.fixture(scope="module")
def src(lab):
    inst = instance(lab, "15s", 15, seed="small")
    yield inst
    teardown(inst)


@pytest.fixture(scope="module")
def target(lab):
    inst = instance(lab, "15t", 15, start="db")
    yield inst
    teardown(inst)


@pytest.fixture(scope="module")
def dumps(src, tmp_path_factory):
    d = tmp_path_factory.mktemp("dumps15")
    res = run_module("db_dump", container=src.db, dest=str(d / "cluster"), immich_version="v2.3.1")
    assert res.get("changed") and not res.get("failed"), res
    return {"dir": d, "cluster": res}


def sh(cmd):
    """The seed's own shell pipelines, verbatim."""
    return subprocess.run(cmd, shell=True, capture_output=True, check=True).stdout  # noqa: S602


def restore(target, path, **kw):
    return run_module("db_restore", container=target.db, db_user=target.user, db_name=target.database, src=str(path), **kw)


def test_dump_writes_verified_file_and_manifest(src, dumps):
    res = dumps["cluster"]
    assert os.path.basename(res["path"]).startswith("immich-db-backup-") and res["path"].endswith("-v2.3.1-pg15.sql.gz")
    assert oct(os.stat(res["path"]).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.dirname(res["path"])).st_mode & 0o777) == "0o700"
    man = json.load(open(res["manifest_path"]))
    for key in ("dump_kind", "server_version", "pg_dump_version", "immich_version", "databases", "rows_by_table",
                "bytes", "sha256", "compression", "timings", "created_at"):
        assert key in man
    assert man["rows_by_table"] == src.row_counts()
    assert man["bytes"] == os.path.getsize(res["path"])
    with gzip.open(res["path"]) as fh:
        assert b"\r\n" not in fh.read(65536)  # never through a TTY


def test_dump_check_mode_writes_nothing(src, tmp_path):
    res = run_module("db_dump", _check_mode=True, container=src.db, dest=str(tmp_path / "x"))
    assert res["changed"] and res["path"].startswith(str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_round_trip_identical_counts_and_schema(src, target, dumps):
    reset_db(target)
    fresh = run_module("fresh_check", container=target.db, server_container=target.server, mode="assert")
    assert fresh["fresh"] is True, fresh
    check = restore(target, dumps["cluster"]["path"], _check_mode=True)
    assert not check.get("failed") and not check["changed"] and public_tables(target) == []
    res = restore(target, dumps["cluster"]["path"])
    assert not res.get("failed"), res["msg"]
    assert res["rows_by_table"] == src.row_counts() == target.row_counts()
    assert res["rows_diff"] == {}
    assert res["lines_rewritten"] >= 1
    assert all("already exists" in e or "cannot be dropped" in e for e in res["errors"]["benign"])
    assert schema(target) == schema(src)
    after = run_module("fresh_check", container=target.db, mode="assert")
    assert after.get("failed") and "DB_SKIP_MIGRATIONS" in after["msg"] and "DB_DATA_LOCATION" in after["msg"]


def test_pg15_without_rewrite_shows_earth_cause(target, dumps):
    reset_db(target)
    res = restore(target, dumps["cluster"]["path"], rewrite_search_path=False)
    assert res.get("failed")
    assert 'type "earth" does not exist' in res["msg"]


def test_seed_crlf_dump_restores(src, target, tmp_path):
    # The seed's exact command line; `docker exec -t` works without a terminal here and gives CRLF.
    path = tmp_path / "dump.sql.gz"
    sh("docker exec -t %s pg_dumpall --clean --if-exists --username=postgres | gzip > %s" % (src.db, path))
    with gzip.open(path) as fh:
        assert fh.read(4096).count(b"\r\n") > 10
    reset_db(target)
    res = restore(target, path)
    assert not res.get("failed"), res["msg"]
    assert res["crlf"] is True
    assert target.row_counts() == src.row_counts()


def test_immich_style_database_dump_restores(src, target, tmp_path):
    path = tmp_path / "immich-db-backup-20261124T020000-v2.5.0-pg15.sql.gz"
    sh("docker exec %s pg_dump --clean --if-exists --dbname=immich --username=postgres | gzip --rsyncable > %s"
       % (src.db, path))
    reset_db(target)
    res = restore(target, path)
    assert not res.get("failed"), res["msg"]
    assert res["dump_kind"] == "database"
    assert target.row_counts() == src.row_counts()


def test_database_dump_zstd_round_trip(src, target, tmp_path):
    res = run_module("db_dump", container=src.db, dest=str(tmp_path), dump_kind="database", compression="zstd")
    assert not res.get("failed"), res
    assert open(res["path"], "rb").read(4) == b"\x28\xb5\x2f\xfd"
    reset_db(target)
    out = restore(target, res["path"])
    assert not out.get("failed"), out["msg"]
    assert out["rows_diff"] == {} and target.row_counts() == src.row_counts()


def test_dump_rewrite_module_idempotent(dumps, tmp_path):
    dest = tmp_path / "fixed.sql.gz"
    first = run_module("dump_rewrite", src=dumps["cluster"]["path"], dest=str(dest))
    assert first["changed"] and first["lines_rewritten"] >= 1
    again = run_module("dump_rewrite", src=str(dest))
    assert again["changed"] is False and again["lines_rewritten"] == 0
    seed_sed = sh("gunzip < %s | LC_ALL=C sed \"s/SELECT pg_catalog.set_config('search_path', '', false);/"
                  "SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);/g\" | sha256sum"
                  % dumps["cluster"]["path"])
    ours = sh("gunzip < %s | sha256sum" % dest)
    assert ours == seed_sed


# ---- faults: nothing reaches the target -------------------------------------------------------

def _untouched_target(target):
    reset_db(target)
    target.psql("CREATE TABLE untouched_marker (x int);")


def _assert_untouched(target):
    assert public_tables(target) == ["untouched_marker"]


def test_truncated_at_half_refused(target, dumps, tmp_path):
    _untouched_target(target)
    blob = open(dumps["cluster"]["path"], "rb").read()
    half = tmp_path / "half.sql.gz"
    half.write_bytes(blob[: len(blob) // 2])
    res = restore(target, half)
    assert res.get("failed") and "Refusing" in res["msg"] and "not touched" in res["msg"]
    plain_half = tmp_path / "plainhalf.sql.gz"  # a complete gzip stream of half the SQL: the trailer check
    raw = gzip.decompress(blob)
    plain_half.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    res = restore(target, plain_half)
    assert res.get("failed") and "trailer" in res["msg"]
    _assert_untouched(target)


def test_flipped_byte_refused(target, dumps, tmp_path):
    _untouched_target(target)
    for with_manifest in (True, False):
        blob = bytearray(open(dumps["cluster"]["path"], "rb").read())
        blob[len(blob) // 2] ^= 0x01
        path = tmp_path / ("flip-%s.sql.gz" % with_manifest)
        path.write_bytes(bytes(blob))
        kw = {"manifest": dumps["cluster"]["manifest_path"]} if with_manifest else {}
        res = restore(target, path, **kw)
        assert res.get("failed") and "Refusing" in res["msg"], res["msg"]
        if with_manifest:
            assert "sha256" in res["msg"]
    _assert_untouched(target)


def test_tampered_shell_escape_refused(target, dumps, tmp_path):
    _untouched_target(target)
    marker = "/tmp/pwned-%s" % uuid.uuid4().hex[:8]
    raw = gzip.decompress(open(dumps["cluster"]["path"], "rb").read())
    cut = raw.index(b"\nSET ") + 1
    bad = tmp_path / "tampered.sql.gz"
    bad.write_bytes(gzip.compress(raw[:cut] + b"\\! touch " + marker.encode() + b"\n" + raw[cut:]))
    res = restore(target, bad)
    assert res.get("failed") and "meta-commands" in res["msg"], res["msg"]
    assert not os.path.exists(marker)
    assert subprocess.run(["docker", "exec", target.db, "test", "-e", marker], check=False).returncode != 0
    _assert_untouched(target)


def test_killed_dump_leaves_no_final_file(src, dumps, tmp_path):
    dest = tmp_path / "killed"
    prev = run_module("db_dump", container=src.db, dest=str(dest))
    prev_bytes = open(prev["path"], "rb").read()
    # pg_dumpall dumps `immich`, then `postgres`: a lock on a table of `postgres` (not counted by db_dump)
    # stops it half-way with the whole immich database already streamed; then kill -9 the module.
    src.psql("CREATE TABLE IF NOT EXISTS m_lock (x int);", database="postgres")
    locker = subprocess.Popen(["docker", "exec", "-i", src.db, "psql", "-U", src.user, "-d", "postgres"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        locker.stdin.write(b"BEGIN; LOCK TABLE m_lock IN ACCESS EXCLUSIVE MODE; SELECT 1;\n")
        locker.stdin.flush()
        time.sleep(2.1)  # the lock is held, and a new second: the new dump gets another file name
        proc = start_module("db_dump", container=src.db, dest=str(dest))
        # Half-way: the temporary file exists and pg_dump waits for the lock, the immich database already
        # streamed (db_dump gathers 1 MiB before it passes data on, so the file may still be small).
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name LIKE 'pg_dump%';"
        partial = []
        deadline = time.time() + 60
        while time.time() < deadline:
            partial = [dest / n for n in os.listdir(dest) if n.endswith(".tmp")]
            if partial and src.psql(waiting, database="postgres").strip() == "1":
                break
            time.sleep(0.2)
        assert partial and src.psql(waiting, database="postgres").strip() == "1", "the dump never got half-way"
        assert proc.poll() is None, "the dump finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        locker.stdin.close()
        locker.wait()
        src.psql("DROP TABLE IF EXISTS m_lock;", database="postgres")
    finals = sorted(n for n in os.listdir(dest) if n.startswith("immich-db-backup-") and not n.endswith(".json"))
    assert finals == [os.path.basename(prev["path"])]
    assert open(prev["path"], "rb").read() == prev_bytes
    # The next run removes the dead run's partial file.
    time.sleep(1.1)
    nxt = run_module("db_dump", container=src.db, dest=str(dest), previous_manifest=prev["manifest_path"])
    assert not nxt.get("failed"), nxt
    assert not [n for n in os.listdir(dest) if n.endswith(".tmp")]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_dest_too_small_clear_message_no_partial(src, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(small)], check=True)
    try:
        res = run_module("db_dump", container=src.db, dest=str(small))
        assert res.get("failed") and "No space left" in res["msg"] and "previous dump is untouched" in res["msg"]
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_empty_dump_is_refused(src, tmp_path):
    res = run_module("db_dump", container=src.db, db_name="postgres", dest=str(tmp_path))
    assert res.get("failed") and "no tables" in res["msg"]
    assert [n for n in os.listdir(tmp_path) if not n.startswith(".")] == []
    warn = run_module("db_dump", container=src.db, db_name="postgres", dest=str(tmp_path), on_shrink="warn")
    assert not warn.get("failed") and warn["warnings"]


def test_project_dir_finds_container(src, tmp_path):
    res = run_module("fresh_check", project_dir=src.root, server_container=src.server)
    assert res["fresh"] is False and any("started" in r for r in res["reasons"])
    assert any(src.server in r for r in res["reasons"]), res["reasons"]  # found through the project, named
