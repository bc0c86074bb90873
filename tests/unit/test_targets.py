"""targets: kinds from the user's dicts, the SSH mirror's argv (quoted, no user string run), its listing parser,
and a local mirror that hard-links to its own previous set and proves the copy."""
import hashlib
import json
import os
import shlex

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import file_manifest as fm
from ansible_collections.homelab.immich.plugins.module_utils import sets
from ansible_collections.homelab.immich.plugins.module_utils.targets import kind_of
from ansible_collections.homelab.immich.plugins.module_utils.targets.local import LocalTarget
from ansible_collections.homelab.immich.plugins.module_utils.targets.ssh import SshTarget, parse_listing


def test_kind_of():
    assert kind_of({"path": "/b"}) == "local" and kind_of({"host": "nas", "path": "/b"}) == "ssh"
    assert kind_of({"restic": "rest:http://127.0.0.1:8000/"}) == "restic"
    with pytest.raises(ValueError, match="needs a path"):
        kind_of({"host": "nas"})
    with pytest.raises(ValueError, match="needs `path`"):
        kind_of({"user": "x"})


def test_ssh_argv_quotes_every_word():
    t = SshTarget({"host": "nas.lan", "user": "backup", "port": 2222, "path": "/srv/my backups",
                   "ssh_args": ["-i", "/root/.ssh/id nas"]}, "immich")
    argv = t.ssh_script('cd "$1" && ls', t.root)
    assert argv[:7] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-p", "2222"]
    assert argv[7:9] == ["-i", "/root/.ssh/id nas"] and argv[9] == "backup@nas.lan"
    assert shlex.split(argv[10]) == ["sh", "-c", 'cd "$1" && ls', "homelab-immich", "/srv/my backups/immich"]
    rsync = t.rsync_argv("/b/immich/S", "/srv/my backups/immich/.partial-S", link_dest="T")
    assert rsync[-2:] == ["/b/immich/S/", "backup@nas.lan:/srv/my backups/immich/.partial-S/"]
    assert "--link-dest=../T" in rsync and shlex.split(rsync[rsync.index("-e") + 1])[-2:] == ["-i", "/root/.ssh/id nas"]
    assert "--checksum" in t.rsync_argv("/a", "/b", check=True) and t.label == "backup@nas.lan:/srv/my backups"


def test_ssh_listing_parser():
    out = ("\x1e20261201T020000Z\n" + json.dumps({"status": "verified"}) + "\n"
           "\x1e20261130T020000Z\n{not json\n\x1enot-a-set\n{}\n\x1e20261202T020000Z\n")
    got = parse_listing(out)
    assert [(e["set_id"], e["good"]) for e in got] == [("20261130T020000Z", False), ("20261201T020000Z", True),
                                                       ("20261202T020000Z", False)]


def test_ssh_delete_refuses_non_set_names():
    t = SshTarget({"host": "nas", "path": "/srv"}, "immich", run=lambda *a, **k: (0, "", ""))
    with pytest.raises(Exception, match="not a set id"):
        t.delete(["../../etc"])


def _set(root, sid, files):
    begun = sets.begin(root, set_id=sid)
    data = b"-- dump " + sid.encode()
    dump = os.path.join(begun["db_dir"], "immich-db-backup.sql.gz")
    open(dump, "wb").write(data)
    sha = hashlib.sha256(data).hexdigest()
    json.dump({"sha256": sha, "bytes": len(data)}, open(dump + ".manifest.json", "w"))
    w = fm.Writer(begun["manifest"])
    for rel, content in sorted(files.items()):
        path = os.path.join(begun["files_dir"], rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").write(content)
        w.add(fm.Entry(rel, len(content), int(os.stat(path).st_mtime), hashlib.sha256(content).hexdigest()))
    w.close()
    info = dict(set_id=sid, status="verified", instance="immich", host="h", trigger="ansible", started=1.0, finished=2.0,
                seconds=1.0, immich_version=None, server_version="15", pg_dump_version="15", dump_kind="database",
                dump="db/immich-db-backup.sql.gz", dump_bytes=len(data), dump_sha256=sha, rows_by_table={}, files=len(files),
                files_bytes=0, files_new=0, files_linked=0, folders=["upload"], files_by_folder={}, excludes=[],
                consistency="online", previous=None, verification={}, coverage={})
    return sets.promote(root, begun["partial"], info)


def test_local_mirror_links_to_its_own_previous_set_and_proves_the_copy(tmp_path):
    primary = str(tmp_path / "primary" / "immich")
    s1 = _set(primary, "20261201T020000Z", {"upload/a.jpg": b"a", "upload/b.jpg": b"b"})
    mirror = LocalTarget({"path": str(tmp_path / "mirror")}, "immich")
    mirror.check()
    got = mirror.send(s1, sets.read_info(s1))
    assert got["verified"] and got["files_copied"] == 2
    s2 = _set(primary, "20261202T020000Z", {"upload/a.jpg": b"a", "upload/b.jpg": b"b", "upload/c.jpg": b"c"})
    os.utime(os.path.join(s2, "files/upload/a.jpg"), (os.stat(os.path.join(s1, "files/upload/a.jpg")).st_mtime,) * 2)
    got = mirror.send(s2, sets.read_info(s2))
    assert got["verified"] and got["files_linked"] >= 1
    assert [e["set_id"] for e in mirror.sets()] == ["20261201T020000Z", "20261202T020000Z"]
    assert os.readlink(os.path.join(mirror.root, "latest")) == "20261202T020000Z"
    mirror.delete(["20261201T020000Z"])
    assert [e["set_id"] for e in mirror.sets()] == ["20261202T020000Z"]


def test_local_mirror_refuses_a_copy_that_differs(tmp_path, monkeypatch):
    primary = str(tmp_path / "primary" / "immich")
    s1 = _set(primary, "20261201T020000Z", {"upload/a.jpg": b"a"})
    mirror = LocalTarget({"path": str(tmp_path / "mirror")}, "immich")
    monkeypatch.setattr(LocalTarget, "_compare", staticmethod(lambda a, b: ["upload/a.jpg: differs"]))
    with pytest.raises(Exception, match="differs from the original"):
        mirror.send(s1, sets.read_info(s1))
    assert mirror.sets() == [] and not [n for n in os.listdir(mirror.root) if n.startswith(".partial")]


def test_missing_disk_is_named(tmp_path):
    t = LocalTarget({"path": str(tmp_path / "not-mounted" / "backups")}, "immich")
    with pytest.raises(Exception, match="a disk that is not mounted"):
        t.check()
