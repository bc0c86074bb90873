"""sets: layout, the one set.json schema (and its reader for format 1), promotion, selection, verification."""
import hashlib
import json
import os

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import file_manifest as fm
from ansible_collections.homelab.immich.plugins.module_utils import sets


def info(sid, **over):
    base = dict(set_id=sid, status="verified", instance="immich", host="h", trigger="ansible", started=1.0, finished=2.0,
                seconds=1.0, immich_version="v2.3.1", server_version="15.14", pg_dump_version="15.14", dump_kind="database",
                dump="db/x.sql.gz", dump_bytes=10, dump_sha256=None, rows_by_table={"asset": 1}, files=1, files_bytes=1,
                files_new=1, files_linked=0, folders=["upload"], files_by_folder={"upload": [1, 1]}, excludes=[],
                consistency="online", previous=None, verification={"ok": True}, coverage={"ok": True})
    base.update(over)
    return base


def make_set(root, now, data=b"-- dump\n", files=None):
    begun = sets.begin(root, now=now)
    dump = os.path.join(begun["db_dir"], "immich-db-backup-x.sql.gz")
    with open(dump, "wb") as fh:
        fh.write(data)
    sha = hashlib.sha256(data).hexdigest()
    with open(dump + ".manifest.json", "w") as fh:
        json.dump({"sha256": sha, "bytes": len(data)}, fh)
    w = fm.Writer(begun["manifest"])
    for rel, content in sorted((files or {"upload/a.jpg": b"a"}).items()):
        path = os.path.join(begun["files_dir"], rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(content)
        w.add(fm.Entry(rel, len(content), int(os.stat(path).st_mtime), hashlib.sha256(content).hexdigest()))
    w.close()
    return sets.promote(root, begun["partial"], info(begun["set_id"], dump_sha256=sha))


def test_schema_has_fixed_keys_and_types():
    built = sets.build_info(**info("20261201T020000Z"))
    assert built["format"] == sets.SET_FORMAT and list(built) == list(sets.KEYS)
    with pytest.raises(sets.SetError, match="started must be float"):
        sets.build_info(**info("20261201T020000Z", started="20261201T020000Z"))
    with pytest.raises(sets.SetError, match="unknown key"):
        sets.build_info(**info("20261201T020000Z", extra=1))
    bad = info("20261201T020000Z")
    del bad["coverage"]
    with pytest.raises(sets.SetError, match="coverage is missing"):
        sets.build_info(**bad)


def test_reads_format_1_sets(tmp_path):
    d = tmp_path / "20261124T220000Z"
    d.mkdir()
    (d / "set.json").write_text(json.dumps({"status": "verified", "started": "20261124T215900Z", "finished": "20261124T220000Z",
                                            "dump_bytes": "12", "verification": {"files": 3, "bytes": 30, "dump_sha256": "ab"}}))
    got = sets.read_info(str(d))
    assert got["format"] == 1 and got["set_id"] == "20261124T220000Z" and got["files"] == 3 and got["files_bytes"] == 30
    assert got["started"] == 1795557540.0 and got["dump_bytes"] == 12 and got["dump_sha256"] == "ab"
    assert sets.is_good(got)


def test_begin_promote_latest_and_partials(tmp_path):
    root = str(tmp_path / "immich")
    first = make_set(root, 1796090400)
    assert os.path.basename(first) == "20261201T020000Z" and os.readlink(os.path.join(root, "latest")) == "20261201T020000Z"
    assert oct(os.stat(first).st_mode & 0o777) == "0o700"
    assert oct(os.stat(os.path.join(first, "set.json")).st_mode & 0o777) == "0o600"
    begun = sets.begin(root, now=1796090400)  # same second: the next id
    assert begun["set_id"] == "20261201T020001Z" and begun["previous"] == "20261201T020000Z"
    again = sets.begin(root, now=1796094000)
    assert again["removed_partials"] == [".partial-20261201T020001Z"]


def test_promote_refuses_a_set_that_is_not_good(tmp_path):
    root = str(tmp_path / "immich")
    begun = sets.begin(root, now=1796090400)
    with pytest.raises(sets.SetError, match="refusing to promote"):
        sets.promote(root, begun["partial"], info(begun["set_id"], status="failed-verification"))
    assert sets.list_sets(root) == []


def test_select_latest_named_and_errors(tmp_path):
    root = str(tmp_path / "immich")
    with pytest.raises(sets.SetError, match="No backup set"):
        sets.select(root)
    a = os.path.basename(make_set(root, 1796090400))
    b = os.path.basename(make_set(root, 1796176800))
    assert sets.select(root) == b and sets.select(root, a) == a
    sets.write_info(os.path.join(root, b), info(b, status="unknown"))
    assert sets.select(root) == a
    with pytest.raises(sets.SetError, match="not marked verified"):
        sets.select(root, b)
    with pytest.raises(sets.SetError, match="not found"):
        sets.select(root, "20200101T000000Z")


def test_verify_finds_a_damaged_dump_and_file(tmp_path):
    root = str(tmp_path / "immich")
    s = make_set(root, 1796090400, files={"upload/a.jpg": b"aaa", "upload/b.jpg": b"bbb"})
    assert sets.verify(s)["ok"]
    dump, _man = sets.find_dump(s)
    with open(dump, "r+b") as fh:
        fh.write(b"X")
    with open(os.path.join(s, "files/upload/b.jpg"), "r+b") as fh:
        fh.write(b"X")
    report = sets.verify(s)
    assert not report["ok"]
    assert any("dump sha256" in p for p in report["problems"]) and any("upload/b.jpg" in p for p in report["problems"])


def test_delete_refuses_non_set_names(tmp_path):
    with pytest.raises(sets.SetError, match="not a set id"):
        sets.delete(str(tmp_path), ["../etc"])
