"""file_manifest: the one ordering, escaping, v1/v2 reading, verification with samples and markers."""
import os

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import file_manifest as fm
from ansible_collections.homelab.immich.plugins.module_utils._fsio import hash_file


def write(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def manifest_of(folder, out):
    w = fm.Writer(out)
    for rel in fm.walk(folder):
        full = os.path.join(folder, rel)
        st = os.stat(full)
        h = hash_file(full, ("sha256", "sha1"))
        w.add(fm.Entry(rel, st.st_size, int(st.st_mtime), h["sha256"], h["sha1"]))
    w.close()
    return out


def test_escapes_and_order_roundtrip(tmp_path):
    names = ["a/b.jpg", "a-b/c.jpg", "a\tb/d.jpg", "a/b/c.jpg", "x\ny.jpg", "z\\w.jpg"]
    for n in names:
        write(str(tmp_path / "f" / n), n.encode())
    path = manifest_of(str(tmp_path / "f"), str(tmp_path / "m.tsv"))
    got = [e.path for e in fm.read(path)]
    assert got == sorted(names, key=fm.order_key)
    assert all(e.sha1 and len(e.sha1) == 40 for e in fm.read(path))


def test_writer_refuses_out_of_order(tmp_path):
    w = fm.Writer(str(tmp_path / "m.tsv"))
    w.add(fm.Entry("b", 1, 1, "s"))
    with pytest.raises(fm.ManifestError, match="out of order"):
        w.add(fm.Entry("a", 1, 1, "s"))
    w.abort()
    assert not os.path.exists(str(tmp_path / "m.tsv.tmp"))


def test_reads_v1_manifests(tmp_path):
    path = tmp_path / "v1.tsv"
    path.write_text("# homelab.immich file manifest v1\tpath\tsize\tmtime\tsha256\nupload/a.jpg\t3\t100\tabc\n")
    assert list(fm.read(str(path))) == [("upload/a.jpg", 3, 100, "abc", None)]
    path.write_text("upload/a.jpg\t3\n")
    with pytest.raises(fm.ManifestError, match="damaged at line 1"):
        list(fm.read(str(path)))


def test_verify_finds_missing_changed_extra(tmp_path):
    folder = tmp_path / "f"
    for rel in ("upload/a.jpg", "upload/b.jpg", "upload/c.jpg", "upload/.immich"):
        write(str(folder / rel), rel.encode() * 3)
    path = manifest_of(str(folder), str(tmp_path / "m.tsv"))
    assert fm.verify(str(folder), path).ok
    os.unlink(str(folder / "upload/a.jpg"))
    write(str(folder / "upload/b.jpg"), b"upload/b.jpgupload/b.jpgupload/b.jpX")  # same size, other bytes
    write(str(folder / "upload/new.jpg"))
    report = fm.verify(str(folder), path)
    assert (report.counts["missing"], report.counts["changed"], report.counts["extra"]) == (1, 1, 1)
    assert report.examples["changed"] == ["upload/b.jpg (checksum differs)"]
    assert fm.verify(str(folder), path, allow_extra=True).counts["extra"] == 0


def test_markers_count_by_presence_once_a_server_has_run(tmp_path):
    """Immich rewrites every .immich marker with Date.now() at boot: its bytes must not fail a comparison."""
    folder = tmp_path / "f"
    write(str(folder / "upload/.immich"), b"1764600000000")
    write(str(folder / "upload/a.jpg"), b"photo")
    path = manifest_of(str(folder), str(tmp_path / "m.tsv"))
    write(str(folder / "upload/.immich"), b"1764699999999")  # what the server wrote at its next start
    assert fm.verify(str(folder), path, markers="presence").ok
    bytes_report = fm.verify(str(folder), path, markers="bytes")
    assert not bytes_report.ok and bytes_report.examples["changed"] == ["upload/.immich (checksum differs)"]
    os.unlink(str(folder / "upload/.immich"))
    assert fm.verify(str(folder), path, markers="presence").counts["missing"] == 1


def test_sample_hashes_exactly_n_and_new_entries(tmp_path):
    folder = tmp_path / "f"
    for n in range(50):
        write(str(folder / "upload" / ("%02d.jpg" % n)), b"%d" % n)
    prev = manifest_of(str(folder), str(tmp_path / "prev.tsv"))
    write(str(folder / "upload" / "new.jpg"), b"new")
    cur = manifest_of(str(folder), str(tmp_path / "cur.tsv"))
    report = fm.verify(str(folder), cur, deep=False, sample=10, seed=1)
    assert report.ok and report.hashed == 10 and report.files == 51
    report = fm.verify(str(folder), cur, deep=False, sample=5, seed=1, previous_manifest=prev)
    assert report.hashed in (5, 6)  # the new file is always among the hashed ones
    assert fm.verify(str(folder), cur, deep=False, sample=0, previous_manifest=prev).hashed == 1
    assert fm.count(cur) == 51
