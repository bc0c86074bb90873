"""manifest.py: set layout, file manifest, verification, retention, selection, lock (no Docker)."""
import json
import os
import time

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import manifest as m


def write(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def fake_dump(db_dir, data=b"-- PostgreSQL database dump\n-- PostgreSQL database dump complete\n"):
    import hashlib  # noqa: PLC0415

    path = os.path.join(db_dir, "immich-db-backup-20261124T220000-v2.3.1-pg15.sql.gz")
    write(path, data)
    with open(path + ".manifest.json", "w") as fh:
        json.dump({"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "dump_kind": "database",
                   "rows_by_table": {"asset": 2}}, fh)
    return path


def make_set(root, files, now):
    info = m.begin(root, now=now)
    fake_dump(info["db_dir"])
    for rel, data in files.items():
        write(os.path.join(info["files_dir"], rel), data)
    prev = m.latest_verified(root)
    pdir = os.path.join(root, prev) if prev else None
    m.write_file_manifest(info["files_dir"], os.path.join(info["partial"], m.FILES_MANIFEST),
                          os.path.join(pdir, m.FILES_MANIFEST) if pdir else None,
                          os.path.join(pdir, "files") if pdir else None)
    return m.finish(root, info["partial"], {"note": "t"}, now=now)


def test_set_ids_sort_and_parse():
    sid = m.set_id(0)
    assert sid == "19700101T000000Z"
    assert m.set_time(sid) == 0


def test_begin_finish_promote_and_latest(tmp_path):
    root = str(tmp_path / "t" / "immich")
    final, info = make_set(root, {"upload/u/a.jpg": b"aaa", "upload/.immich": b""}, now=1000)
    assert info["status"] == "verified"
    assert os.readlink(os.path.join(root, "latest")) == os.path.basename(final)
    assert m.list_sets(root) == [os.path.basename(final)]
    assert os.stat(root).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(final, m.SET_JSON)).st_mode & 0o777 == 0o600
    assert info["rows_by_table"] == {"asset": 2}


def test_begin_removes_partials_of_dead_runs(tmp_path):
    root = str(tmp_path / "immich")
    first = m.begin(root, now=1000)
    second = m.begin(root, now=2000)
    assert not os.path.exists(first["partial"])
    assert os.path.basename(first["partial"]) in second["removed_partials"]
    assert m.list_sets(root) == []  # partials are never sets


def test_manifest_escapes_and_order(tmp_path):
    top = tmp_path / "files"
    names = ["a/b", "a-c", "tab\there", "new\nline", "back\\slash", "ü.jpg"]
    for n in names:
        write(str(top / n), n.encode())
    out = str(tmp_path / "files.manifest.tsv")
    counts = m.write_file_manifest(str(top), out)
    assert counts["files"] == len(names)
    got = [e[0] for e in m.read_manifest(out)]
    assert sorted(got, key=m.order_key) == got
    assert set(got) == set(names)
    assert list(m.walk_files(str(top))) == got
    assert m.verify_files(str(top), out)["ok"]


def test_hard_linked_files_are_not_rehashed(tmp_path):
    root = str(tmp_path / "immich")
    make_set(root, {"upload/a": b"1" * 100, "upload/b": b"2"}, now=1000)
    info = m.begin(root, now=2000)
    fake_dump(info["db_dir"])
    prev = os.path.join(root, m.latest_verified(root))
    os.makedirs(os.path.join(info["files_dir"], "upload"))
    os.link(os.path.join(prev, "files/upload/a"), os.path.join(info["files_dir"], "upload/a"))
    write(os.path.join(info["files_dir"], "upload/b"), b"changed")
    counts = m.write_file_manifest(info["files_dir"], os.path.join(info["partial"], m.FILES_MANIFEST),
                                   os.path.join(prev, m.FILES_MANIFEST), os.path.join(prev, "files"))
    assert counts["files"] == 2 and counts["hashed_files"] == 1
    assert m.verify_files(info["files_dir"], os.path.join(info["partial"], m.FILES_MANIFEST))["ok"]


def test_verify_finds_missing_changed_extra_and_bad_dump(tmp_path):
    root = str(tmp_path / "immich")
    final, _files = make_set(root, {"upload/a": b"abc", "upload/b": b"def"}, now=1000)
    write(os.path.join(final, "files/upload/a"), b"abd")  # same size, other bytes
    os.unlink(os.path.join(final, "files/upload/b"))
    write(os.path.join(final, "files/upload/c"), b"new")
    dump = m.find_dump(os.path.join(final, "db"))[0]
    with open(dump, "ab") as fh:
        fh.write(b"junk")
    rep = m.verify_set(final)
    assert not rep["ok"]
    f = rep["files"]
    assert (f["missing"], f["changed"], f["extra"]) == (1, 1, 1)
    assert any("truncated or replaced" in p for p in rep["dump"]["problems"])
    assert m.verify_set(final, deep=False)["files"]["changed"] == 0  # size-only check misses same-size damage


def test_unverified_partial_is_not_promoted(tmp_path):
    root = str(tmp_path / "immich")
    info = m.begin(root, now=1000)
    write(os.path.join(info["files_dir"], "upload/a"), b"a")
    m.write_file_manifest(info["files_dir"], os.path.join(info["partial"], m.FILES_MANIFEST))
    with pytest.raises(m.SetError, match="NOT promoted"):
        m.finish(root, info["partial"])  # no dump
    assert m.list_sets(root) == []


def test_select_latest_named_and_errors(tmp_path):
    root = str(tmp_path / "immich")
    with pytest.raises(m.SetError, match="No backup set"):
        m.select(root)
    a, _files = make_set(root, {"upload/a": b"a"}, now=1000)
    b, _files = make_set(root, {"upload/a": b"a"}, now=2000)
    assert m.select(root) == os.path.basename(b)
    assert m.select(root, os.path.basename(a)) == os.path.basename(a)
    with pytest.raises(m.SetError, match="not found"):
        m.select(root, "20000101T000000Z")
    info = m.read_set_json(b)
    info["status"] = "failed-verification"
    m.write_json(os.path.join(b, m.SET_JSON), info)
    assert m.select(root) == os.path.basename(a)
    with pytest.raises(m.SetError, match="not marked verified"):
        m.select(root, os.path.basename(b))


def sid(days_ago, hour=2, base=1_790_000_000):
    return m.set_id(base - days_ago * 86400 + hour * 3600)


def test_retention_last_n_and_buckets():
    sets = [(sid(d), True) for d in range(0, 120)]  # one set a day for 4 months
    keep, delete = m.plan_retention(sets, keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=3)
    assert set(s for s, _when in sets[:7]) <= set(keep)
    assert len(keep) < 20
    assert set(keep) | set(delete) == set(s for s, _when in sets)
    assert not set(keep) & set(delete)


def test_retention_never_deletes_newest_verified():
    sets = [(sid(0), False), (sid(1), False), (sid(30), True)]
    keep, delete = m.plan_retention(sets, keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert sid(30) in keep
    assert sid(0) in keep


def test_prune_deletes_folders(tmp_path):
    root = str(tmp_path / "immich")
    for n in range(4):
        make_set(root, {"upload/a": b"a"}, now=1_790_000_000 + n * 86400 * 40)
    keep, delete = m.prune(root, keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0, dry_run=True)
    assert len(delete) == 2 and len(m.list_sets(root)) == 4
    m.prune(root, keep_last=2, keep_daily=0, keep_weekly=0, keep_monthly=0)
    assert m.list_sets(root) == keep


def test_lock_acquire_release_and_conflict(tmp_path):
    path = str(tmp_path / "immich" / ".lock")
    got = m.acquire_lock(path, "run-1")
    assert got["acquired"]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert m.acquire_lock(path, "run-1")["acquired"] is False  # re-entrant
    with pytest.raises(m.SetError, match="Another backup of this instance is running"):
        m.acquire_lock(path, "run-2", wait_seconds=0)
    assert m.release_lock(path, "run-2") is False
    assert m.release_lock(path, "run-1") is True
    assert m.acquire_lock(path, "run-2")["acquired"]


def test_stale_lock_dead_pid_or_age(tmp_path):
    import socket  # noqa: PLC0415

    path = str(tmp_path / ".lock")
    with open(path, "w") as fh:
        json.dump({"pid": 4_000_000, "host": socket.gethostname(), "started": time.time(), "run_id": "old"}, fh)
    holder, stale, why = m.lock_state(path, 3600)
    assert stale and "gone" in why
    with open(path, "w") as fh:
        json.dump({"pid": os.getpid(), "host": "elsewhere", "started": time.time() - 7200, "run_id": "old"}, fh)
    assert m.lock_state(path, 3600)[1]
    assert m.acquire_lock(path, "new", stale_seconds=3600)["acquired"]


def test_owner_pid_is_a_live_ancestor():
    pid = m.owner_pid()
    assert pid is None or m.pid_alive(pid)
