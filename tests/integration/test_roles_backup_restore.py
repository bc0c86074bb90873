"""Acceptance tests of the backup/restore roles that are simplest from pytest (issue 4)."""
import json
import os
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from modrun import run_module  # noqa: E402
from rolerun import env, playbook_argv, report, rows_after_restore, run_playbook, sets, wipe, write_inventory  # noqa: E402

from ansible_collections.homelab.immich.plugins.module_utils import lock  # noqa: E402
from ansible_collections.homelab.immich.plugins.module_utils import sets as set_store  # noqa: E402


@pytest.fixture(scope="module")
def shared_instance(lab, tmp_path_factory):
    """One seeded PG15 instance reused by the tests that do not destroy it (CI budget)."""
    inst = lab.Instance("r15-shared-%d" % os.getpid(), pg=15)
    inst.up(seed="small")
    yield inst
    if os.environ.get("LAB_KEEP") != "1":
        inst.down(purge=True)


def test_second_backup_of_unchanged_instance_copies_nothing_and_shares_inodes(shared_instance, tmp_path):
    inv = write_inventory(tmp_path, shared_instance)
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    first = report(tmp_path, "backup")
    assert first["files"]["copied"] > 100
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    second = report(tmp_path, "backup")
    assert second["files"]["copied"] == 0, "originals of an unchanged instance were copied again"
    assert second["files"]["files"] == first["files"]["files"] == second["files"]["linked"]
    a, b = first["set_dir"], second["set_dir"]
    for rel in ("files/profile", "files/upload"):
        for root, _dirs, names in os.walk(os.path.join(b, rel)):
            for n in names:
                path_b = os.path.join(root, n)
                path_a = os.path.join(a, os.path.relpath(path_b, b))
                assert os.stat(path_a).st_ino == os.stat(path_b).st_ino, path_b
    assert os.stat(b).st_mode & 0o777 == 0o700
    manifest = os.path.join(b, "files.manifest.tsv")
    assert os.stat(manifest).st_mode & 0o777 == 0o600


def test_corrupted_set_fails_before_compose_down(shared_instance, tmp_path):
    inv = write_inventory(tmp_path, shared_instance)
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    set_dir = report(tmp_path, "backup")["set_dir"]
    victim = None
    for root, _dirs, names in os.walk(os.path.join(set_dir, "files", "upload")):
        for n in names:
            if n != ".immich":
                victim = os.path.join(root, n)
                break
        if victim:
            break
    # a new inode: the previous sets' hard links keep their bytes
    data = bytearray(open(victim, "rb").read())
    data[0] ^= 0xFF
    os.unlink(victim)
    with open(victim, "wb") as fh:
        fh.write(bytes(data))
    started = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", shared_instance.server],
                             capture_output=True, text=True, check=True).stdout
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true")
    assert rc != 0
    assert "failed verification" in out and "checksum differs" in out
    assert shared_instance.ping(), "the running instance must still answer pong"
    again = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", shared_instance.server],
                           capture_output=True, text=True, check=True).stdout
    assert again == started, "immich-server was restarted by a refused restore"


def test_a_set_rewritten_with_its_manifests_is_refused_by_its_signature(shared_instance, tmp_path):
    """What someone with write access to the backup disk does: a new dump, its manifest and set.json edited to
    match, every checksum right. The set's signature (set.mac, the host's key) refuses it before compose down."""
    import gzip  # noqa: PLC0415
    import hashlib  # noqa: PLC0415

    inv = write_inventory(tmp_path, shared_instance)
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-3000:]
    sid = report(tmp_path, "backup")["set_id"]
    set_dir = os.path.join(str(tmp_path), "backups", shared_instance.name, sid)
    dump, man = set_store.find_dump(set_dir)
    planted = b"-- PostgreSQL database dump\nCOPY (SELECT 1) TO PROGRAM 'id > /tmp/pwned';\n-- PostgreSQL database dump complete\n"
    data = gzip.compress(planted) if dump.endswith(".gz") else planted
    os.unlink(dump)
    with open(dump, "wb") as fh:
        fh.write(data)
    meta = json.load(open(man))
    meta.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    json.dump(meta, open(man, "w"))
    info = json.load(open(os.path.join(set_dir, "set.json")))
    info.update(dump_sha256=meta["sha256"], dump_bytes=len(data))
    json.dump(info, open(os.path.join(set_dir, "set.json"), "w"))
    assert set_store.verify(set_dir)["ok"], "the checksums alone are fooled"
    rows = shared_instance.row_counts()
    started = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", shared_instance.server, shared_instance.db],
                             capture_output=True, text=True, check=True).stdout
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true")
    assert rc != 0
    assert "failed its signature check" in out and "was changed after it was signed" in out
    assert os.path.relpath(dump, set_dir) in out and "Nothing was touched" in out
    assert shared_instance.ping() and shared_instance.row_counts() == rows
    assert subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", shared_instance.server, shared_instance.db],
                          capture_output=True, text=True, check=True).stdout == started
    assert not os.path.exists(os.path.join(str(tmp_path), "restore-points")) or not os.listdir(
        os.path.join(str(tmp_path), "restore-points")), "no restore point: nothing was about to be replaced"


def test_a_held_lock_refuses_naming_its_holder_and_a_waiting_run_gets_it(shared_instance, tmp_path):
    """Contention made certain: this test holds the instance's lock the way a running backup does."""
    inv = write_inventory(tmp_path, shared_instance)
    lock_path = os.path.join(str(tmp_path), "backups", shared_instance.name, lock.LOCK_NAME)
    held = lock.Lock(lock_path).acquire(lock.holder_record("nightly-1", "scheduled backup"))
    try:
        rc, out = run_playbook(inv, "backup")
        assert rc != 0 and "Another backup of this instance is running" in out and "nightly-1" in out, out[-3000:]
        assert "pid %d" % os.getpid() in out
        assert sets(tmp_path, shared_instance.name) == []
        proc = subprocess.Popen(playbook_argv(inv, "backup", "-e", "immich_backup_lock_wait_seconds=300"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env())
        time.sleep(3)
        assert proc.poll() is None, "the waiting run ended while the lock was held"
    finally:
        held.release()
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    assert len(sets(tmp_path, shared_instance.name)) == 1


def test_restore_into_non_fresh_database_needs_force(shared_instance, tmp_path):
    inst = shared_instance
    inv = write_inventory(tmp_path, inst, immich_restore_reset_db=False)
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    before = inst.row_counts()
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true")
    assert rc != 0
    assert "fresh" in out.lower() and "Check that the database is fresh" in out
    assert "ROLLED BACK" in out
    assert inst.ping()
    assert inst.row_counts() == before
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true", "-e", "immich_restore_force=true")
    assert rc == 0, out[-4000:]
    assert inst.row_counts() == before
    assert inst.ping()


def test_restore_of_renamed_instance_through_discovery(make_instance, tmp_path):
    inst = make_instance(pg=15, seed="small", name="r15-ren-%d" % os.getpid(), prefix="rfamily%d" % os.getpid(),
                         upload="./photos-disk", db_data="./pg-data", user="immichadmin", database="ImmichPhotos")  # pg_dumpall: \\connect "ImmichPhotos"
    inv = write_inventory(tmp_path, inst)
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    before = inst.row_counts()
    # The seed's cluster dump of the same instance: its rows are counted under the quoted name.
    cluster = run_module("db_dump", container=inst.db, db_user=inst.user, db_name=inst.database,
                         dest=str(tmp_path / "cluster"))
    assert not cluster.get("failed"), cluster.get("msg")
    assert cluster["rows_by_table"] == before
    wipe(inst)
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true")
    assert rc == 0, out[-4000:]
    result = report(tmp_path, "restore")
    assert result["regenerate"]["asset_file_rows_removed"] == 15  # the transcodes: encoded-video/ is not backed up
    assert inst.row_counts() == rows_after_restore(before, result)
    assert inst.ping()
    stats = inst.stats()
    assert stats["missingCount"] == 0 and stats["assets"] == before["asset"]
    assert result["originals"]["missing_originals"] == 0


def test_restore_refuses_without_confirm_and_with_unsafe_db_folder(shared_instance, tmp_path):
    inv = write_inventory(tmp_path, shared_instance)
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    rc, out = run_playbook(inv, "restore")
    assert rc != 0 and "immich_restore_confirm=true" in out and "Nothing was touched" in out
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true",
                           "-e", '{"immich_overrides": {"db_data_location": "%s"}}' % shared_instance.upload_location)
    assert rc != 0 and "Refusing to reset DB_DATA_LOCATION" in out and "UPLOAD_LOCATION" in out
    assert shared_instance.ping()


def test_restore_with_db_skip_migrations(shared_instance, tmp_path):
    inst = shared_instance
    inv = write_inventory(tmp_path, inst, immich_restore_db_start="skip_migrations")
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    before = inst.row_counts()
    wipe(inst)
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true")
    assert rc == 0, out[-4000:]
    assert "DB_SKIP_MIGRATIONS=true" in out
    assert not os.path.exists(os.path.join(inst.root, ".homelab-immich-restore.override.yml"))
    env_now = subprocess.run(["docker", "inspect", "-f", "{{json .Config.Env}}", inst.server],
                             capture_output=True, text=True, check=True).stdout
    assert "DB_SKIP_MIGRATIONS=true" not in env_now
    assert inst.row_counts() == rows_after_restore(before, report(tmp_path, "restore"))
    assert inst.ping()


def test_stop_server_consistency_always_restarts_the_server(shared_instance, tmp_path):
    inst = shared_instance

    def started():
        return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", inst.server],
                              capture_output=True, text=True, check=True).stdout.strip()

    inv = write_inventory(tmp_path, inst, immich_backup_consistency="stop_server")
    before = started()
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    steps = [s["name"] for s in report(tmp_path, "backup")["steps"]]
    assert steps.index("quiesce server") < steps.index("dump") < steps.index("originals") < steps.index("resume server")
    assert started() != before and inst.ping()
    # a failure while the server is stopped (the dump fails: no such role) still starts it again
    before = started()
    rc, out = run_playbook(inv, "backup", "-e", '{"immich_overrides": {"db_user": "nobody"}}')
    assert rc != 0
    failed = report(tmp_path, "backup")
    assert failed["failed_step"] == "dump" and [s["status"] for s in failed["steps"] if s["name"] == "resume server"] == ["ok"]
    assert started() != before
    assert inst.ping()
    assert len(sets(tmp_path, inst.name)) == 1  # the failed run promoted nothing, pruned nothing


def test_restore_refuses_a_db_folder_the_database_does_not_mount(make_instance, tmp_path):
    """Issue 9: a compose model whose database service mounts nothing at PG_DATA, with DB_DATA_LOCATION in .env."""
    inst = make_instance(pg=15, seed="small", name="r15-unm-" + os.urandom(3).hex())
    inv = write_inventory(tmp_path, inst)
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    with open(inst.compose_file) as fh:
        text = fh.read()
    with open(inst.compose_file, "w") as fh:
        fh.write(text.replace("      - ${DB_DATA_LOCATION}:/var/lib/postgresql/data\n", "      - ./unrelated:/srv/unrelated\n"))
    keep = os.path.join(inst.db_data_location, "PG_VERSION")
    assert os.path.exists(keep)
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true")
    assert rc != 0
    assert "Refusing to reset DB_DATA_LOCATION" in out and "/var/lib/postgresql/data" in out
    assert inst.db_data_location in out, out[-3000:]
    assert os.path.exists(keep) and inst.ping()  # the folder untouched, the instance running
