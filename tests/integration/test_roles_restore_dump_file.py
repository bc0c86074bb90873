"""The restore role restores a dump the user already has (immich_restore_dump_file), not only backup sets."""
import gzip
import os
import shutil
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rolerun import report, run_playbook, write_inventory  # noqa: E402


def seed_dump(inst, dest):
    """The seed's own backup line, TTY included: `docker exec -t ... pg_dumpall ... | gzip > file`."""
    cmd = "docker exec -t %s pg_dumpall --clean --if-exists --username=postgres | gzip > %s" % (inst.db, dest)
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, stdin=subprocess.DEVNULL, timeout=300)
    return dest


def started_at(container):
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_seed_dump_restores_into_a_wiped_database_and_a_truncated_one_is_refused(make_instance, tmp_path):
    inst = make_instance(pg=15, seed="small", name="rdf-%s" % uuid.uuid4().hex[:8])
    before = inst.row_counts()
    dump = seed_dump(inst, str(tmp_path / "dump.sql.gz"))
    with gzip.open(dump, "rb") as fh:
        plain = fh.read()
    assert b"\r\n" in plain[:4096], "docker exec -t should have written CRLF line endings"

    # (2) first, on the running instance: a truncated dump is refused before anything is touched
    truncated = str(tmp_path / "truncated.sql.gz")
    with gzip.open(truncated, "wb") as fh:
        fh.write(plain[: len(plain) // 2])
    server_started, db_started = started_at(inst.server), started_at(inst.db)
    inv = write_inventory(tmp_path, inst)
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true",
                           "-e", "immich_restore_dump_file=%s" % truncated)
    assert rc != 0
    assert "truncated" in out and "not touched" in out, out[-3000:]
    assert inst.ping(), "the running instance must still answer pong"
    assert started_at(inst.db) == db_started, "the database was restarted by a refused restore"
    assert started_at(inst.server) == server_started, "immich-server was restarted by a refused restore"
    assert inst.row_counts() == before
    # check mode with the good dump: verified, nothing touched
    rc, out = run_playbook(inv, "restore", "--check", "-e", "immich_restore_confirm=true",
                           "-e", "immich_restore_dump_file=%s" % dump)
    assert rc == 0, out[-3000:]
    assert "Check mode: dump file %s is verified" % dump in out
    assert started_at(inst.server) == server_started

    # (1) the disaster: database gone, photos still on disk; restore the seed's dump
    inst.compose("down", "-v", check=False)
    shutil.rmtree(inst.db_data_location, ignore_errors=True)
    assert os.path.isdir(inst.upload_location)
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true",
                           "-e", "immich_restore_dump_file=%s" % dump)
    assert rc == 0, out[-4000:]
    assert "(database only; the originals were not touched)" in out
    assert "no restore point: there was no running database to save" in out and "kept at none" not in out
    assert inst.row_counts() == before
    assert inst.ping()
    stats = inst.stats()
    assert stats["missingCount"] == 0 and stats["assets"] == before["asset"]
    result = report(tmp_path, "restore")
    assert result["dump_file"] == dump and result["set_id"] is None
    assert result["originals"]["missing_originals"] == 0
    assert result["restore_point"] is None  # the database was not running: nothing to roll back to

    # a dump that verifies but fails to load: after down -v, so the role rolls back to its restore point; in
    # skip_migrations mode the rollback must not leave the DB_SKIP_MIGRATIONS override behind
    broken = str(tmp_path / "broken.sql")
    with open(broken, "w") as fh:
        fh.write("--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.14\n"
                 "-- Dumped by pg_dump version 15.14\n\nSELECT 1/0;\n\n--\n-- PostgreSQL database dump complete\n--\n")
    for start in ("alone", "skip_migrations"):
        rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true", "-e", "immich_restore_dump_file=%s" % broken,
                               "-e", "immich_restore_db_start=%s" % start)
        assert rc != 0
        assert "ROLLED BACK" in out and "division by zero" in out, out[-4000:]
        assert inst.ping()
        assert inst.row_counts() == before
        assert not os.path.exists(os.path.join(inst.root, ".homelab-immich-restore.override.yml"))
        env_now = subprocess.run(["docker", "inspect", "-f", "{{json .Config.Env}}", inst.server],
                                 capture_output=True, text=True, check=True).stdout
        assert "DB_SKIP_MIGRATIONS=true" not in env_now
