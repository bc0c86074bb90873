"""set_mac: keys (created once, 0600, never overwritten, clear errors), signing and verification of a set
naming the file that changed, a wrong key named as such, unsigned and re-arranged sets refused."""
import hashlib
import json
import os
import stat

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import file_manifest as fm
from ansible_collections.homelab.immich.plugins.module_utils import set_mac, sets

DUMP = "immich-db-backup-20261201T020000-v2.7.5-pg15.sql.gz"


def info(sid, **over):
    base = dict(set_id=sid, status="verified", instance="immich", host="h", trigger="ansible", started=1.0, finished=2.0,
                seconds=1.0, immich_version="v2.7.5", server_version="15.14", pg_dump_version="15.14", dump_kind="database",
                dump="db/" + DUMP, dump_bytes=10, dump_sha256=None, rows_by_table={"asset": 1}, files=1, files_bytes=1,
                files_new=1, files_linked=0, folders=["upload"], files_by_folder={"upload": [1, 1]}, excludes=[],
                consistency="online", previous=None, verification={"ok": True}, coverage={"ok": True})
    base.update(over)
    return base


def make_set(root, now=1764554400, data=b"-- PostgreSQL database dump\nSELECT 1;\n", key=None, promote=True):
    """A complete fake set (dump + manifest, file manifest, compose/.env), signed when ``key`` is given."""
    begun = sets.begin(str(root), now=now)
    dump = os.path.join(begun["db_dir"], DUMP)
    with open(dump, "wb") as fh:
        fh.write(data)
    sha = hashlib.sha256(data).hexdigest()
    with open(dump + ".manifest.json", "w") as fh:
        json.dump({"sha256": sha, "bytes": len(data)}, fh)
    w = fm.Writer(begun["manifest"])
    path = os.path.join(begun["files_dir"], "upload", "a.jpg")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as fh:
        fh.write(b"photo")
    w.add(fm.Entry("upload/a.jpg", 5, int(os.stat(path).st_mtime), hashlib.sha256(b"photo").hexdigest()))
    w.close()
    os.makedirs(os.path.join(begun["partial"], "compose"))
    with open(os.path.join(begun["partial"], "compose", ".env"), "w") as fh:
        fh.write("DB_PASSWORD=x\n")
    with open(os.path.join(begun["partial"], "instance.json"), "w") as fh:
        json.dump({"instance_name": "immich"}, fh)
    inf = info(begun["set_id"], dump_sha256=sha, dump_bytes=len(data))
    if key is not None and promote:
        return set_mac.promote_signed(str(root), begun["partial"], inf, key, dump_sha256=sha)
    return sets.promote(str(root), begun["partial"], inf)


@pytest.fixture
def key(tmp_path):
    return set_mac.load_key(str(tmp_path / "keys" / "immich.key"), create=True)


def rewrite_dump_and_manifests(set_dir, new_data):
    """What an attacker with write access to the target does: new dump, manifests edited to match."""
    dump, man = sets.find_dump(set_dir)
    with open(dump, "wb") as fh:
        fh.write(new_data)
    sha = hashlib.sha256(new_data).hexdigest()
    with open(man, "w") as fh:
        json.dump({"sha256": sha, "bytes": len(new_data)}, fh)
    inf = sets.read_info(set_dir)
    inf.update(dump_sha256=sha, dump_bytes=len(new_data))
    sets.write_info(set_dir, inf)
    return dump


# -- keys ---------------------------------------------------------------------------------------------

def test_key_created_once_private_and_reloaded(tmp_path):
    path = str(tmp_path / "etc" / "immich.key")
    k1 = set_mac.load_key(path, create=True)
    assert k1.created and len(k1.secret) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert open(path).read().strip() == k1.secret.hex()
    k2 = set_mac.load_key(path, create=True)
    assert not k2.created and k2.secret == k1.secret and k2.key_id == k1.key_id
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]


def test_key_never_overwritten_by_a_racing_create(tmp_path, monkeypatch):
    path = str(tmp_path / "immich.key")
    other = set_mac.load_key(path, create=True)
    # another run won the race: our link() finds the file there and loads it instead of replacing it
    got = set_mac._create_key(path)
    assert got.secret == other.secret and not got.created


def test_key_id_is_public_and_repr_hides_the_secret(key):
    assert len(key.key_id) == 16 and key.key_id != hashlib.sha256(key.secret).hexdigest()[:16]
    text = repr(key) + str(key)
    assert key.secret.hex() not in text and key.key_id in text


def test_missing_key_on_restore_says_what_it_means_and_how_to_copy(tmp_path):
    path = str(tmp_path / "immich.key")
    with pytest.raises(set_mac.MacError) as err:
        set_mac.load_key(path, instance="immich", expected_key_id="0123456789abcdef")
    msg = str(err.value)
    assert path in msg and "0123456789abcdef" in msg and "new host" in msg and "ssh OLDHOST sudo cat" in msg
    assert "Nothing was touched" in msg and not os.path.exists(path)


def test_group_readable_key_refused(tmp_path, key):
    os.chmod(key.path, 0o640)
    with pytest.raises(set_mac.MacError, match="chmod 600"):
        set_mac.load_key(key.path)


def test_symlinked_or_garbage_key_refused(tmp_path, key):
    link = str(tmp_path / "link.key")
    os.symlink(key.path, link)
    with pytest.raises(set_mac.MacError, match="symbolic link"):
        set_mac.load_key(link)
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    os.chmod(str(bad), 0o600)
    with pytest.raises(set_mac.MacError, match="64 hexadecimal"):
        set_mac.load_key(str(bad))


def test_key_from_vault_text(key):
    again = set_mac.key_from_text("  %s\n" % key.secret.hex())
    assert again.key_id == key.key_id and again.path is None
    with pytest.raises(set_mac.MacError):
        set_mac.key_from_text("abc")


def test_instance_name_cannot_escape_the_key_folder():
    assert set_mac.default_key_path("immich") == "/etc/homelab-immich/immich.key"
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(set_mac.MacError):
            set_mac.default_key_path(bad)


# -- signing and verifying ------------------------------------------------------------------------------

def test_signed_set_verifies_and_covers_what_a_restore_trusts(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    doc = json.load(open(os.path.join(final, set_mac.NAME)))
    paths = [e["path"] for e in doc["files"]]
    assert paths == sorted(paths)
    for want in ("set.json", "instance.json", "files.manifest.tsv", "db/" + DUMP, "db/" + DUMP + ".manifest.json",
                 "compose/.env"):
        assert want in paths
    assert not [p for p in paths if p.startswith("files/")]
    assert doc["dump"] == "db/" + DUMP and doc["key_id"] == key.key_id and doc["set_id"] == os.path.basename(final)
    assert stat.S_IMODE(os.stat(os.path.join(final, set_mac.NAME)).st_mode) == 0o600
    res = set_mac.verify(final, key)
    assert res["ok"] and res["status"] == "ok" and res["problems"] == [], res
    assert res["dump_sha256"] == sets.read_info(final)["dump_sha256"]
    assert key.secret.hex() not in json.dumps(res) and key.secret.hex() not in open(os.path.join(final, set_mac.NAME)).read()


def test_dump_edited_with_its_manifests_to_match_is_refused_naming_the_dump(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    assert sets.verify(final)["ok"]
    rewrite_dump_and_manifests(final, b"-- PostgreSQL database dump\nCOPY (SELECT 1) TO '/tmp/x';\n")
    assert sets.verify(final)["ok"]  # the manifests alone cannot tell
    res = set_mac.verify(final, key)
    assert not res["ok"] and res["status"] == "changed"
    assert "db/" + DUMP in res["changed"]
    assert "db/%s.manifest.json" % DUMP in res["changed"] and "set.json" in res["changed"]
    assert "db/%s was changed" % DUMP in res["message"] and "must not be run" in res["message"]
    assert "Nothing was touched" in res["message"]


def test_dump_of_the_same_size_changed(tmp_path, key):
    final = make_set(tmp_path / "t", data=b"SELECT 1;\n", key=key)
    dump, _man = sets.find_dump(final)
    with open(dump, "wb") as fh:
        fh.write(b"SELECT 2;\n")
    res = set_mac.verify(final, key)
    assert res["changed"] == ["db/" + DUMP] and "sha256" in res["problems"][0]


def test_wrong_key_is_named_as_a_wrong_key(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    other = set_mac.load_key(str(tmp_path / "other.key"), create=True)
    res = set_mac.verify(final, other)
    assert not res["ok"] and res["status"] == "wrong_key"
    assert key.key_id in res["message"] and other.key_id in res["message"] and "wrong key" in res["message"]
    assert res["changed"] == [] and "ssh OLDHOST" in res["message"]


def test_verify_with_key_file_missing_key_names_the_expected_key_id(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    with pytest.raises(set_mac.MacError) as err:
        set_mac.verify_with_key_file(final, str(tmp_path / "absent.key"), instance="immich")
    assert key.key_id in str(err.value)
    assert set_mac.verify_with_key_file(final, key.path)["ok"]


def test_unsigned_set_refused(tmp_path, key):
    final = make_set(tmp_path / "t")
    res = set_mac.verify(final, key)
    assert not res["ok"] and res["status"] == "unsigned" and "no set.mac" in res["message"]


def test_a_second_dump_added_is_named_and_would_not_be_picked_silently(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    extra = os.path.join(final, "db", "zzz.sql")
    with open(extra, "w") as fh:
        fh.write("SELECT 1;\n")
    res = set_mac.verify(final, key)
    assert "db/zzz.sql" in res["added"]
    assert any("the dump a restore would pick is db/zzz.sql" in p for p in res["problems"])


def test_removed_and_compose_and_file_manifest_changes_named(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    os.unlink(os.path.join(final, "instance.json"))
    with open(os.path.join(final, "compose", ".env"), "a") as fh:
        fh.write("IMMICH_VERSION=evil\n")
    with open(os.path.join(final, fm.NAME), "a") as fh:
        fh.write("upload/b.jpg\t1\t1\t%s\t-\n" % ("0" * 64))
    res = set_mac.verify(final, key)
    assert res["removed"] == ["instance.json"]
    assert sorted(res["changed"]) == ["compose/.env", fm.NAME]


def test_set_mac_itself_edited_or_copied_from_another_set(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    path = os.path.join(final, set_mac.NAME)
    doc = json.load(open(path))
    doc["files"] = [e for e in doc["files"] if e["path"] != "compose/.env"]
    json.dump(doc, open(path, "w"))
    res = set_mac.verify(final, key)
    assert not res["ok"] and "compose/.env" in res["added"] and any("does not verify" in p for p in res["problems"])
    # a genuine set.mac of another set, copied over this one: the set id is named
    other = make_set(tmp_path / "t", now=1764640800, key=key)
    with open(os.path.join(other, set_mac.NAME), "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    res = set_mac.verify(final, key)
    assert not res["ok"] and any("belongs to set %s" % os.path.basename(other) in p for p in res["problems"])


def test_attacker_written_junk_in_set_mac_does_not_crash(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    path = os.path.join(final, set_mac.NAME)
    doc = json.load(open(path))
    doc["key_id"] = "\u00e9" * 16
    json.dump(doc, open(path, "w"))
    assert set_mac.verify(final, key)["status"] == "wrong_key"
    doc["key_id"] = key.key_id
    doc["files"][0]["mac"] = ["x"]
    doc["files"][1]["size"] = "big"
    json.dump(doc, open(path, "w"))
    assert not set_mac.verify(final, key)["ok"]
    with open(path, "w") as fh:
        fh.write("{not json")
    res = set_mac.verify(final, key)
    assert res["status"] == "damaged" and not res["ok"]


def test_dump_hash_supplied_by_the_caller_or_left_to_the_stream(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    signed = sets.read_info(final)["dump_sha256"]
    assert set_mac.verify(final, key, dump_sha256=signed)["ok"]
    res = set_mac.verify(final, key, dump_sha256="f" * 64)
    assert res["changed"] == ["db/" + DUMP]
    dump, _man = sets.find_dump(final)
    with open(dump, "r+b") as fh:
        fh.write(b"X")  # same size, other bytes: only the stream's own hash can tell now
    res = set_mac.verify(final, key, hash_dump=False)
    assert res["ok"] and res["dump_sha256"] == signed


def test_symlink_in_a_set_refused_at_signing_and_named_at_verification(tmp_path, key):
    final = make_set(tmp_path / "t", key=key)
    os.symlink("/etc/passwd", os.path.join(final, "compose", "docker-compose.yml"))
    with pytest.raises(set_mac.MacError, match="not a regular file"):
        set_mac.sign(final, key)
    assert "compose/docker-compose.yml" in set_mac.verify(final, key)["added"]


def test_signature_policy_of_a_restore(tmp_path, key):
    signed = make_set(tmp_path / "t", key=key)
    absent = str(tmp_path / "absent.key")
    # a key here: checked, and a set changed after signing refused
    res = set_mac.check_signature(signed, key.path, instance="immich")
    assert res["ok"] and res["checked"] and res["status"] == "ok" and res["key_id"] == key.key_id
    # no key here (a bare host recovering from its encrypted repository): restored, and said so with the copy command
    res = set_mac.check_signature(signed, absent, instance="immich")
    assert res["ok"] and not res["checked"] and res["status"] == "not_checked"
    assert absent in res["message"] and "was not checked" in res["message"] and "cat >" in res["message"]
    assert res["signed_key_id"] == key.key_id
    # required: no key is a refusal that names the key id the set expects
    res = set_mac.check_signature(signed, absent, instance="immich", policy="required")
    assert not res["ok"] and res["status"] == "no_key" and key.key_id in res["message"]
    # skip: the one restore of an unsigned set, said so
    unsigned = make_set(tmp_path / "u")
    res = set_mac.check_signature(unsigned, key.path, policy="skip")
    assert res["ok"] and not res["checked"] and res["status"] == "skipped"
    # with the key present an unsigned set is refused (set.mac removed on the target looks the same)
    res = set_mac.check_signature(unsigned, key.path, instance="immich")
    assert not res["ok"] and res["status"] == "unsigned"
    rewrite_dump_and_manifests(signed, b"-- PostgreSQL database dump\nCOPY x FROM PROGRAM 'id';\n")
    res = set_mac.check_signature(signed, key.path, instance="immich")
    assert not res["ok"] and res["status"] == "changed" and "was changed" in res["message"]
    with pytest.raises(set_mac.MacError):
        set_mac.check_signature(signed, key.path, policy="sometimes")
