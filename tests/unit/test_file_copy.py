"""file_copy: the one-pass backup copy (hard links to the previous set, hashes, manifest) and the verified restore copy."""
import os

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import file_copy, file_manifest as fm


def write(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


@pytest.fixture
def upload(tmp_path):
    root = tmp_path / "library"
    write(str(root / "upload/u/ab/cd/a.jpg"), b"a" * 100)
    write(str(root / "upload/u/ab/cd/b.jpg"), b"b" * 200)
    write(str(root / "profile/u/p.jpg"), b"p")
    write(str(root / "upload/.immich"), b"1")
    write(str(root / "thumbs/u/t.webp"), b"t")
    write(str(root / "encoded-video/u/v.mp4"), b"v")
    return str(root)


def backup(src, dest_set, previous=None, **kw):
    os.makedirs(os.path.join(dest_set, "files"))
    return file_copy.backup_copy(src, kw.pop("folders", ["upload", "profile", "thumbs"]), os.path.join(dest_set, "files"),
                                 os.path.join(dest_set, fm.NAME),
                                 previous_files=os.path.join(previous, "files") if previous else None,
                                 previous_manifest=os.path.join(previous, fm.NAME) if previous else None, **kw)


def test_first_copy_then_hard_links(upload, tmp_path):
    s1, s2 = str(tmp_path / "s1"), str(tmp_path / "s2")
    first = backup(upload, s1)
    assert (first["files"], first["copied"], first["linked"]) == (5, 5, 0)
    assert oct(os.stat(os.path.join(s1, "files/upload/u/ab/cd/a.jpg")).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.join(s1, "files/upload/u")).st_mode & 0o777) == "0o700"
    assert not os.path.exists(os.path.join(s1, "files/encoded-video"))
    write(os.path.join(upload, "upload/u/ab/cd/new.jpg"), b"n")
    second = backup(upload, s2, previous=s1)
    assert (second["copied"], second["linked"]) == (1, 5)
    a1, a2 = (os.stat(os.path.join(s, "files/upload/u/ab/cd/a.jpg")) for s in (s1, s2))
    assert a1.st_ino == a2.st_ino
    entries = {e.path: e for e in fm.read(os.path.join(s2, fm.NAME))}
    assert entries["upload/u/ab/cd/new.jpg"].sha1 == "d1854cae891ec7b29161ccaf79a24b00c274bdaa"  # sha1 of b"n"
    assert fm.verify(os.path.join(s2, "files"), os.path.join(s2, fm.NAME)).ok


def test_a_changed_file_is_copied_not_linked(upload, tmp_path):
    s1, s2 = str(tmp_path / "s1"), str(tmp_path / "s2")
    backup(upload, s1)
    path = os.path.join(upload, "profile/u/p.jpg")
    write(path, b"changed")
    second = backup(upload, s2, previous=s1)
    assert second["copied"] == 1
    assert os.stat(os.path.join(s2, "files/profile/u/p.jpg")).st_ino != os.stat(os.path.join(s1, "files/profile/u/p.jpg")).st_ino


def test_excludes_symlinks_and_missing_folders(upload, tmp_path):
    os.symlink("/etc/passwd", os.path.join(upload, "upload/u/link.jpg"))
    write(os.path.join(upload, "upload/u/tmp/x.part"))
    stats = backup(upload, str(tmp_path / "s"), folders=["upload", "library"], excludes=["*.part", "upload/u/ab/cd/b.jpg"])
    assert stats["symlinks"] == 1 and stats["symlinks_examples"] == ["upload/u/link.jpg"]
    assert stats["excluded"] == 2 and stats["missing_folders"] == 1
    paths = [e.path for e in fm.read(os.path.join(str(tmp_path / "s"), fm.NAME))]
    assert paths == ["upload/.immich", "upload/u/ab/cd/a.jpg"]


def test_a_folder_that_is_a_link_to_another_disk_is_followed(upload, tmp_path):
    disk = tmp_path / "disk2" / "library"
    write(str(disk / "admin/2024/x.jpg"), b"x")
    os.symlink(str(disk), os.path.join(upload, "library"))
    stats = backup(upload, str(tmp_path / "s"), folders=["library"])
    assert stats["files"] == 1 and stats["followed_folder_links"] == 1
    assert os.path.isfile(str(tmp_path / "s/files/library/admin/2024/x.jpg"))


def test_dry_run_counts_without_writing(upload, tmp_path):
    s1 = str(tmp_path / "s1")
    backup(upload, s1)
    write(os.path.join(upload, "upload/u/new.jpg"), b"new")
    plan = file_copy.backup_copy(upload, ["upload", "profile", "thumbs"], None, None, dry_run=True,
                                 previous_manifest=os.path.join(s1, fm.NAME))
    assert (plan["copied"], plan["linked"], plan["copied_bytes"]) == (1, 5, 3)


def test_restore_copy_verifies_every_file(upload, tmp_path):
    s1 = str(tmp_path / "s1")
    backup(upload, s1)
    dest = str(tmp_path / "restored")
    stats = file_copy.restore_copy(os.path.join(s1, "files"), os.path.join(s1, fm.NAME), dest)
    assert stats["files"] == 5 and stats["mismatched"] == 0
    assert open(os.path.join(dest, "upload/u/ab/cd/b.jpg"), "rb").read() == b"b" * 200
    assert oct(os.stat(os.path.join(dest, "upload/u/ab/cd/b.jpg")).st_mode & 0o777) == "0o644"
    # a damaged copy in the set is counted and never put in place
    victim = os.path.join(s1, "files/upload/u/ab/cd/a.jpg")
    os.chmod(victim, 0o600)
    with open(victim, "r+b") as fh:
        fh.write(b"X")
    dest2 = str(tmp_path / "restored2")
    stats = file_copy.restore_copy(os.path.join(s1, "files"), os.path.join(s1, fm.NAME), dest2)
    assert stats["mismatched"] == 1 and stats["mismatched_examples"] == ["upload/u/ab/cd/a.jpg"]
    assert not os.path.exists(os.path.join(dest2, "upload/u/ab/cd/a.jpg"))


def test_restore_move_renames_verified_files_and_keeps_the_bad_ones(upload, tmp_path):
    s1 = str(tmp_path / "s1")
    backup(upload, s1)
    files = os.path.join(s1, "files")
    bad = os.path.join(files, "upload/u/ab/cd/a.jpg")
    os.chmod(bad, 0o600)
    with open(bad, "r+b") as fh:
        fh.write(b"X")
    os.unlink(os.path.join(files, "profile/u/p.jpg"))
    good = os.path.join(files, "upload/u/ab/cd/b.jpg")
    inode = os.stat(good).st_ino
    dest = str(tmp_path / "restored")
    write(os.path.join(dest, "upload/u/ab/cd/b.jpg"), b"old")  # replaced
    stats = file_copy.restore_copy(files, os.path.join(s1, fm.NAME), dest, move=True)
    assert (stats["files"], stats["moved"], stats["copied"]) == (3, 3, 0)
    assert stats["mismatched_examples"] == ["upload/u/ab/cd/a.jpg"] and stats["vanished_examples"] == ["profile/u/p.jpg"]
    moved = os.path.join(dest, "upload/u/ab/cd/b.jpg")
    assert os.stat(moved).st_ino == inode and open(moved, "rb").read() == b"b" * 200  # renamed, not copied
    assert oct(os.stat(moved).st_mode & 0o777) == "0o644" and not os.path.exists(good)
    entry = dict((e.path, e) for e in fm.read(os.path.join(s1, fm.NAME)))["upload/u/ab/cd/b.jpg"]
    assert int(os.stat(moved).st_mtime) == entry.mtime
    assert os.path.exists(bad) and not os.path.exists(os.path.join(dest, "upload/u/ab/cd/a.jpg"))


def test_restore_move_refuses_a_symlink_where_the_manifest_has_a_file(upload, tmp_path):
    s1 = str(tmp_path / "s1")
    backup(upload, s1)
    staged = os.path.join(s1, "files/upload/u/ab/cd/b.jpg")
    os.unlink(staged)
    os.symlink("/etc/hostname", staged)
    stats = file_copy.restore_copy(os.path.join(s1, "files"), os.path.join(s1, fm.NAME), str(tmp_path / "d"), move=True)
    assert stats["mismatched_examples"] == ["upload/u/ab/cd/b.jpg"]
    assert not os.path.lexists(str(tmp_path / "d/upload/u/ab/cd/b.jpg"))


def test_restore_move_copies_across_filesystems(upload, tmp_path, monkeypatch):
    s1 = str(tmp_path / "s1")
    backup(upload, s1)
    real = os.rename
    calls = []

    def rename(src, dst):
        if ".homelab-restore.tmp" not in src:
            calls.append(src)
            raise OSError(file_copy.errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)
    monkeypatch.setattr(file_copy.os, "rename", rename)
    dest = str(tmp_path / "d")
    stats = file_copy.restore_copy(os.path.join(s1, "files"), os.path.join(s1, fm.NAME), dest, move=True)
    assert (stats["files"], stats["moved"], stats["copied"], len(calls)) == (5, 0, 5, 1)  # one try, then copies
    assert open(os.path.join(dest, "upload/u/ab/cd/a.jpg"), "rb").read() == b"a" * 100
    assert os.path.exists(os.path.join(s1, "files/upload/u/ab/cd/a.jpg"))


@pytest.mark.parametrize(("path", "patterns", "expected"), [
    ("upload/u/x.tmp", ["*.tmp"], True), ("upload/cache/x.jpg", ["cache"], True),
    ("upload/u/x.jpg", ["upload/u/*"], True), ("library/u/x.jpg", ["upload/*"], False),
    ("upload/u/x.jpg", [], False)])
def test_excluded(path, patterns, expected):
    assert file_copy.excluded(path, patterns) is expected
