"""reports: the drill's result and JUnit, the restore summary, the fleet rows (no Jinja builds any of them)."""
import re
import xml.etree.ElementTree as ET  # noqa: S405 - our own output

from ansible_collections.homelab.immich.plugins.module_utils import backup_run as br
from ansible_collections.homelab.immich.plugins.module_utils import reports

MARKS = [{"step": "select", "at": 100.0}, {"step": "scratch", "at": 101.0}, {"step": "restore", "at": 103.0},
         {"step": "verify", "at": 110.0}, {"step": "teardown", "at": 111.0}]
CHECK = {"ok": True, "rpo_seconds": 7200.0, "files_checked": 5,
         "checks": [{"name": "database rows", "ok": True, "detail": "19 tables"}, {"name": "server answers", "ok": True, "detail": "pong"}]}


SCREEN = 24  # lines of a terminal: every summary fits


def _plain(lines):
    """What a person reads: no Python reprs, no 'none' where a value should be, no zero rates."""
    text = "\n".join(lines)
    for bad in ("None", "kept at none", "{", "}"):
        assert bad not in text, (bad, text)
    assert not re.search(r"(?<![0-9.])0(\.0)? (bytes|KB|MB|GB)/s", text), text
    assert len(lines) <= SCREEN, text


def test_a_passing_drill():
    r = reports.drill_result("h1", "immich", MARKS, {}, CHECK, {"leftovers": []}, {"set_id": "S"}, "/b", "11.0", now=115.0)
    assert r["status"] == "ok" and r["failed_step"] is None and r["rto_seconds"] == "11.0"
    assert [s["seconds"] for s in r["steps"]] == [1.0, 2.0, 7.0, 1.0, 4.0]
    suite = ET.fromstring(reports.drill_junit(r)).find("testsuite")  # noqa: S314
    assert suite.get("tests") == "7" and suite.get("failures") == "0"
    lines = reports.drill_lines(r)
    assert lines[0] == "Immich disaster-recovery drill on h1 (immich): PASSED"
    assert "  backup set   S from /b" in lines
    assert "  RTO          11.0 s (start -> verified)" in lines
    assert "  RPO          2 h 00 min (age of the backup)" in lines
    assert "  files        5 originals compared with the set's sha256" in lines
    assert "  steps        select 1.0 s, scratch 2.0 s, restore 7.0 s, verify 1.0 s, teardown 4.0 s" in lines
    assert lines[-1] == "  scratch      removed"
    _plain(lines)


def test_a_failing_step_and_leftovers_are_named():
    failure = {"step": "restore", "task": "3. Verify the set", "msg": "checksum differs: upload/a.jpg"}
    r = reports.drill_result("h1", "immich", MARKS, failure, {}, {"leftovers": ["container x"]}, {"set_id": "S"}, "/b", None, now=115.0)
    assert r["status"] == "failed" and r["failed_step"] == "restore" and r["error"] == failure["msg"]
    steps = {s["name"]: s for s in r["steps"]}
    assert steps["restore"]["status"] == "failed" and "3. Verify the set: checksum differs" in steps["restore"]["message"]
    assert steps["teardown"]["message"] == "left behind: container x"
    failures = [f.get("message") for f in ET.fromstring(reports.drill_junit(r)).iter("failure")]  # noqa: S314
    assert any("Verify the set" in m for m in failures) and "left behind: container x" in failures
    lines = reports.drill_lines(r)
    assert lines[0].endswith("FAILED at step restore")
    assert "  RTO          - (start -> verified)" in lines and "  RPO          - (age of the backup)" in lines
    assert any(ln.startswith("  steps ") and "restore 7.0 s FAILED" in ln for ln in lines)
    assert "  step FAILED  restore: 3. Verify the set: checksum differs: upload/a.jpg" in lines
    assert "  scratch      LEFT BEHIND: container x" in lines and lines[-1] == "  error        checksum differs: upload/a.jpg"
    _plain([ln for ln in lines if "RTO" not in ln])


def test_a_failed_check_fails_the_drill_at_verify():
    check = dict(CHECK, ok=False, checks=[{"name": "files equal the set", "ok": False, "detail": "1 changed: upload/a.jpg"}])
    r = reports.drill_result("h1", "immich", MARKS, {}, check, {"leftovers": []}, {"set_id": "S"}, "/b", None, now=115.0)
    assert r["status"] == "failed" and r["failed_step"] == "verify" and "upload/a.jpg" in r["error"]
    assert r["rto_seconds"] is None
    assert "  check        FAIL files equal the set: 1 changed: upload/a.jpg" in reports.drill_lines(r)


RESTORE = {"instance": "immich", "set_id": "S", "project_dir": "/opt/immich", "seconds": 4000,
           "db": {"rows_by_table": {"asset": 30000, "user": 1}, "seconds": 12.5, "rows_diff": {}},
           "files": {"files": 30000, "bytes": 250_000_000_000, "seconds": 3600, "mb_per_s": 69.4, "changed": True},
           "regenerate": {"absent": {"encoded_video": 2}, "jobs": ["videoConversion"]},
           "originals": {"assets": 30000, "missing_originals": 0, "missing_examples": []},
           "ping": "pong", "restore_point": "/var/backups/immich-restore-points/x.sql.gz"}


def test_restore_lines_name_sizes_durations_throughput_and_the_proof():
    lines = reports.restore_lines(RESTORE)
    assert lines[0] == "immich: restored set S into /opt/immich in 1 h 06 min"
    assert ("  database  2 tables, 30,001 rows loaded in 12.5 s (2,400 rows/s), row counts equal to the backup's manifest"
            in lines)
    assert ("  files     30,000 files (250.0 GB) copied in 1 h 00 min (8.3 files/s, 69.4 MB/s), each checked against "
            "the set's sha256" in lines)
    assert "  originals 30,000 assets, every original on disk" in lines
    assert "  server    answers the ping (pong)" in lines
    assert lines[-1] == "  restore point of the database it replaced: /var/backups/immich-restore-points/x.sql.gz"
    _plain(lines)


def test_restore_lines_are_plain_about_what_was_not_done():
    lines = reports.restore_lines({"instance": "immich", "set_id": "S", "project_dir": "/opt/immich", "seconds": 40,
                                   "db": {"rows_by_table": {"asset": 3, "user": 1}, "seconds": 1.2},
                                   "files": {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"},
                                   "regenerate": {"absent": {"encoded_video": 2}, "jobs": ["videoConversion"]},
                                   "originals": {"assets": 3, "missing_originals": 1, "missing_examples": ["upload/a.jpg"]},
                                   "ping": "connection refused", "restore_point": None,
                                   "restore_point_reason": "there was no running database to save"})
    assert lines[0] == "immich: restored set S into /opt/immich in 40.0 s"
    assert any(ln.endswith("row counts not compared (no manifest)") for ln in lines)
    assert "  files     not restored (immich_restore_files=false): UPLOAD_LOCATION was left as it was" in lines
    assert "  originals 3 assets, 1 originals MISSING on disk (e.g. upload/a.jpg)" in lines
    assert "  server    did not answer the ping (connection refused)" in lines
    assert "  no restore point: there was no running database to save" in lines
    assert any("2 encoded_video were not in the backup" in ln and "videoConversion" in ln for ln in lines)
    _plain(lines)


def test_restore_lines_give_the_proofs():
    lines = reports.restore_lines(dict(RESTORE, proof={"assets": 30000, "matched": 29998, "mismatched": 1, "missing_in_backup": 1},
                                       proof_seconds=42.0,
                                       checks=[{}, {"name": "admin can log in", "ok": True, "detail": "admin@example.org"},
                                               {"name": "schema drift", "ok": True, "skipped": True, "detail": "no log"},
                                               {"name": "maintenance mode", "ok": False, "detail": "still on"}]))
    assert ("  proof     29,998 of 30,000 assets match the backup's SHA-1 (1 mismatched, 1 missing in backup) in 42.0 s"
            in lines)
    assert "  check     ok   admin can log in: admin@example.org" in lines
    assert "  check     skip schema drift: no log" in lines and "  check     FAIL maintenance mode: still on" in lines
    _plain(lines)


def test_restore_of_a_dump_file_says_the_originals_were_not_touched():
    lines = reports.restore_lines({"instance": "immich", "dump_file": "/srv/immich.sql.gz", "project_dir": "/opt/immich",
                                   "seconds": 5, "db": {}, "files": {}, "ping": "pong", "restore_point": None})
    assert lines[0] == ("immich: restored dump file /srv/immich.sql.gz (database only; the originals were not touched) "
                        "into /opt/immich in 5.0 s")
    assert not any(ln.startswith("  files") for ln in lines) and lines[-1] == "  no restore point: none was taken"


BACKUP = {"status": "ok", "instance": "immich", "set_id": "20261201T020000Z", "seconds": 5400, "set_dir": "/b/immich/x",
          "dump": {"bytes": 2_000_000_000, "plain_bytes": 9_000_000_000, "dump_kind": "database", "compression": "gzip",
                   "seconds": 300, "mb_per_s": 30.0},
          "files": {"files": 120000, "bytes": 400_000_000_000, "copied": 2000, "copied_bytes": 8_000_000_000, "seconds": 200,
                    "mb_per_s": 40.0, "linked": 118000},
          "coverage": {"present": 119000, "referenced": 119000, "external": 0},
          "verification": {"full": False, "hashed": 2256},
          "steps": [{"name": "dump", "seconds": 300, "status": "ok"}, {"name": "verify", "seconds": 45.0, "status": "ok"}],
          "targets": [{"kind": "local", "label": "/mnt/usb", "status": "ok", "verified": True, "seconds": 50,
                       "files_copied": 2000, "files_linked": 118000, "bytes_copied": 10_000_000_000},
                      {"kind": "local", "label": "/mnt/usb2", "status": "ok", "verified": True, "seconds": 0.0, "note": "already there"},
                      {"kind": "ssh", "label": "nas:/srv", "status": "ok", "verified": True, "seconds": 4, "bytes_sent": 0},
                      {"kind": "restic", "label": "restic:/r", "status": "ok", "verified": True, "seconds": 130,
                       "backup_seconds": 100, "bytes_added": 8_000_000_000}],
          "retention": {"/b": {"deleted": [], "kept": ["20261201T020000Z"]}, "/mnt/usb": {"deleted": ["20261101T020000Z"],
                                                                                          "kept": ["a", "b"]}},
          "warnings": []}


def test_backup_lines_give_every_step_its_throughput():
    lines = br.summary_lines(BACKUP)
    assert lines == reports.backup_lines(BACKUP)
    assert lines[0] == "immich: set 20261201T020000Z verified in 1 h 30 min (/b/immich/x)"
    assert lines[1] == "  database  9.0 GB of SQL dumped in 5 min 00 s (30.0 MB/s), 2.0 GB on disk (pg_dump, gzip)"
    assert lines[2] == ("  originals 120,000 files (400.0 GB) in 3 min 20 s (600 files/s): 2,000 copied (8.0 GB, 40.0 MB/s), "
                        "118,000 unchanged hard links")
    assert lines[3] == "  coverage  all 119,000 files the database references are in the set"
    assert lines[4] == "  verified  new files + a sample: 2,256 files hashed in 45.0 s (50 files/s), the dump read back"
    assert lines[5] == "  target    local /mnt/usb: 10.0 GB copied in 50.0 s (200.0 MB/s), verified"
    assert lines[6] == "  target    local /mnt/usb2: the set was already there"
    assert lines[7] == "  target    ssh nas:/srv: nothing new to copy, verified in 4.0 s"
    assert lines[8] == "  target    restic restic:/r: 8.0 GB added to the repository in 1 min 40 s (80.0 MB/s), verified"
    assert lines[9] == "  pruned    /b: nothing to delete (1 set kept)"
    assert lines[10] == "  pruned    /mnt/usb: 20261101T020000Z (2 sets kept)"
    _plain(lines)


def test_a_backup_of_nothing_new_prints_no_zero_rate():
    report = dict(BACKUP, files={"files": 10, "bytes": 5_000_000, "copied": 0, "copied_bytes": 0, "seconds": 0.5,
                                 "mb_per_s": 0.0, "linked": 10},
                  targets=[{"kind": "local", "label": "/mnt/usb", "status": "ok", "verified": True, "seconds": 0.2,
                            "files_copied": 0, "files_linked": 10, "bytes_copied": 0}])
    lines = reports.backup_lines(report)
    assert ("  originals 10 files (5.0 MB) in 0.5 s (20 files/s): nothing new to copy, all 10 are hard links to the "
            "previous set") in lines
    assert "  target    local /mnt/usb: nothing new to copy (10 files hard-linked), verified in 0.2 s" in lines
    _plain(lines)


def test_a_partial_backup_and_a_stopped_server_are_said():
    report = dict(BACKUP, status="partial", coverage={"present": 9, "referenced": 10, "external": 3},
                  steps=BACKUP["steps"] + [{"name": "stop server", "seconds": 1.0, "status": "ok"},
                                           {"name": "start server", "seconds": 12.0, "status": "ok"}],
                  targets=[{"kind": "ssh", "label": "nas:/srv", "status": "failed", "error": "ssh: connection refused"}],
                  warnings=["1 symlinks not copied: upload/x"])
    lines = reports.backup_lines(report)
    assert lines[0].startswith("immich: set 20261201T020000Z verified, but a target FAILED in 1 h 30 min")
    assert "  coverage  9 of 10 files the database references are in the set; 3 external-library assets not covered" in lines
    assert ("  server    immich-server stopped for the dump and the copy, started again (healthy) after 12.0 s" in lines)
    assert "  target    ssh nas:/srv: FAILED: ssh: connection refused" in lines
    assert lines[-1] == "  WARNING   1 symlinks not copied: upload/x"
    _plain(lines)


def test_a_failed_backup_names_the_step_and_what_ran():
    report = {"status": "failed", "instance": "immich", "failed_step": "coverage", "error": "3 files missing",
              "steps": [{"name": "preflight", "seconds": 0.01, "status": "ok"}, {"name": "dump", "seconds": 75, "status": "ok"},
                        {"name": "coverage", "seconds": 0.2, "status": "failed", "error": "3 files missing"}]}
    assert reports.backup_lines(report) == ["immich: backup FAILED at step coverage: 3 files missing",
                                            "  steps     preflight 0.0 s, dump 1 min 15 s, coverage FAILED after 0.2 s"]
    # before the engine started (options refused): the role's record has only status and error
    assert reports.backup_lines({"status": "failed", "error": "Invalid backup options: x"}) == [
        "backup FAILED: Invalid backup options: x"]


def test_units():
    assert [reports.size(n) for n in (None, 0, 999, 1000, 1_500_000, 2.25e9, 3e12)] == [
        "0 bytes", "0 bytes", "999 bytes", "1.0 KB", "1.5 MB", "2.2 GB", "3.0 TB"]
    assert [reports.duration(s) for s in (None, 0.04, 12.5, 59.96, 61, 3600, 7325, 200000)] == [
        "0.0 s", "0.0 s", "12.5 s", "1 min 00 s", "1 min 01 s", "1 h 00 min", "2 h 02 min", "2 d 07 h"]
    assert reports.duration(12.5, precise=False) == "12 s"
    assert reports.rate(5e6, 2) == "2.5 MB/s" and reports.rate(5e6, 0) is None and reports.rate(5e6, None) is None
    assert reports.per_second(5, 2, "files") == "2.5 files/s" and reports.per_second(5000, 2, "rows") == "2,500 rows/s"
    assert reports.per_second(0, 2, "files") is None and reports.per_second(5, 0, "files") is None
    assert br._size(1234) == "1.2 KB"  # the engine's own messages use the same units


def test_fleet_status_comes_from_what_the_backup_recorded():
    rows = [reports.fleet_row("a", {"fresh": True, "newest": "S", "age_hours": 0.1, "size_bytes": 1048576}, {"status": "ok", "seconds": 9}, None),
            reports.fleet_row("b", {"fresh": False}, {"status": "failed", "error": "dump: no such container"}, None),
            reports.fleet_row("c", {"unreachable": True, "msg": "ssh: timeout"}, {}, {"status": "ok", "finished": "T"}),
            reports.fleet_row("d", {"fresh": False, "newest": "S0", "age_hours": 50.0, "size_bytes": 4e11}, {"seconds": 5400}, None)]
    assert [r["status"] for r in rows] == ["ok", "failed", "unreachable", "stale"]
    assert rows[1]["error"] == "dump: no such container" and rows[2]["last_drill"] == "ok (T)"
    text = reports.fleet_text(rows)
    assert text[0].split() == ["host", "status", "newest-age", "size", "duration", "last-drill"]
    assert text[1].split() == ["a", "ok", "6", "min", "00", "s", "1.0", "MB", "9.0", "s", "never"]
    assert text[2].split() == ["b", "failed", "none", "-", "-", "never"]
    assert text[4].split() == ["d", "stale", "2", "d", "02", "h", "400.0", "GB", "1", "h", "30", "min", "never"]
    assert text[-1] == "1 of 4 hosts ok; b failed, c unreachable, d stale"
    assert reports.fleet_text(rows[:1])[-1] == "1 of 1 hosts ok"
    _plain(text)


def test_restore_lines_name_the_repository_and_the_signature():
    base = {"instance": "immich", "set_id": "S", "project_dir": "/opt/immich", "seconds": 400}
    lines = reports.restore_lines(dict(base, repository="restic:rest:http://u:***@nas:8000/immich", fetch_seconds=125,
                                       signature={"status": "ok", "checked": True, "key_id": "13fdadbf0d7ec5a7"}))
    assert lines[0].startswith("immich: restored set S of restic:rest:http://u:***@nas:8000/immich (fetched in 2 min")
    assert "  signature the set is exactly as it was signed (key id 13fdadbf0d7ec5a7)" in lines
    lines = reports.restore_lines(dict(base, signature={"status": "not_checked", "message": "The signature of set S was "
                                                        "not checked: there is no signing key at /etc/k on this host."}))
    assert lines[0] == "immich: restored set S into /opt/immich in " + reports.duration(400)
    assert any(line.startswith("  signature The signature of set S was not checked") for line in lines)
    assert not any("signature" in line for line in reports.restore_lines(base))


def test_restore_lines_say_whether_the_files_were_moved_or_copied():
    base = {"instance": "immich", "set_id": "S", "project_dir": "/opt/immich", "seconds": 400}
    files = {"files": 10, "bytes": 1000, "seconds": 2.0}
    line = [x for x in reports.restore_lines(dict(base, files=dict(files, moved=10))) if x.startswith("  files")][0]
    assert line.startswith("  files     10 files (1.0 KB) moved out of the fetched copy in ")
    line = [x for x in reports.restore_lines(dict(base, files=dict(files, moved=4))) if x.startswith("  files")][0]
    assert "(4 moved out of the fetched copy, the rest copied)" in line
    line = [x for x in reports.restore_lines(dict(base, files=dict(files, moved=0))) if x.startswith("  files")][0]
    assert " copied in " in line and "moved" not in line
