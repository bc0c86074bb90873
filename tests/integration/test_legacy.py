"""Immich <= 1.136 (plural tables `assets`, `users`, TypeORM `migrations`, paths relative to the old
/usr/src/app working folder): backed up, wiped, restored and proven with equal counts (issue 9)."""
import os

from rolerun import report, rows_after_restore, run_playbook, wipe, write_inventory


def test_a_130_era_instance_round_trips(make_instance, tmp_path):
    inst = make_instance(pg=15, seed="small", name="l15-130-" + os.urandom(3).hex(), immich_version="v1.130.3")
    tables = inst.row_counts()
    assert "assets" in tables and "users" in tables and "asset" not in tables  # the old naming, for real
    inv = write_inventory(tmp_path, inst)
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    backup = report(tmp_path, "backup")
    assert backup["coverage"]["ok"] and backup["coverage"]["by_kind"]["original"]["referenced"] == tables["assets"]
    before = inst.row_counts()
    wipe(inst)
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true")
    assert rc == 0, out[-4000:]
    restored = report(tmp_path, "restore")
    assert inst.row_counts() == rows_after_restore(before, restored)
    assert restored["originals"]["assets"] == before["assets"] and restored["originals"]["missing_originals"] == 0
    assert restored["ping"] == "pong" and inst.ping()
