"""db_dump / db_restore on PG 17 (pgvector), and PG 17 -> PG 15 refused before a byte is sent."""
import hashlib
import json

import pytest
from lab_helpers import instance, public_tables, reset_db, schema, teardown
from modrun import run_module


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def src(lab):
    inst = instance(lab, "17s", 17, seed="small")
    yield inst
    teardown(inst)


@pytest.fixture(scope="module")
def target(lab):
    inst = instance(lab, "17t", 17, start="db")
    yield inst
    teardown(inst)


@pytest.fixture(scope="module")
def cluster_dump(src, tmp_path_factory):
    res = run_module("db_dump", container=src.db, dest=str(tmp_path_factory.mktemp("dumps17")), immich_version="v2.3.1")
    assert not res.get("failed"), res
    return res


def test_round_trip_identical_counts_and_schema(src, target, cluster_dump):
    assert cluster_dump["path"].endswith("-pg17.sql.gz")
    reset_db(target)
    assert run_module("fresh_check", container=target.db, server_container=target.server)["fresh"] is True
    res = run_module("db_restore", container=target.db, src=cluster_dump["path"])
    assert not res.get("failed"), res["msg"]
    assert res["rows_by_table"] == src.row_counts() == target.row_counts()
    assert schema(target) == schema(src)


def test_database_dump_zstd_round_trip(src, target, tmp_path):
    dump = run_module("db_dump", container=src.db, dest=str(tmp_path), dump_kind="database", compression="zstd")
    assert not dump.get("failed"), dump
    reset_db(target)
    res = run_module("db_restore", container=target.db, src=dump["path"])
    assert not res.get("failed"), res["msg"]
    assert res["dump_kind"] == "database" and res["rows_diff"] == {}
    assert schema(target) == schema(src)


def test_pg17_dump_into_pg15_refused_naming_both(lab, cluster_dump):
    old = instance(lab, "15o", 15, start="db")
    try:
        res = run_module("db_restore", container=old.db, src=cluster_dump["path"])
        assert res.get("failed")
        assert "PostgreSQL 17" in res["msg"] and "PostgreSQL 15" in res["msg"], res["msg"]
        assert public_tables(old) == []
    finally:
        teardown(old)
    with open(cluster_dump["manifest_path"]) as fh:  # the refused dump is left exactly as it was
        assert _sha256(cluster_dump["path"]) == json.load(fh)["sha256"]
