"""reports: the drill's result and JUnit, the restore summary, the fleet rows (no Jinja builds any of them)."""
import xml.etree.ElementTree as ET  # noqa: S405 - our own output

from ansible_collections.homelab.immich.plugins.module_utils import reports

MARKS = [{"step": "select", "at": 100.0}, {"step": "scratch", "at": 101.0}, {"step": "restore", "at": 103.0},
         {"step": "verify", "at": 110.0}, {"step": "teardown", "at": 111.0}]
CHECK = {"ok": True, "rpo_seconds": 7200.0, "files_checked": 5,
         "checks": [{"name": "database rows", "ok": True, "detail": "19 tables"}, {"name": "server answers", "ok": True, "detail": "pong"}]}


def test_a_passing_drill():
    r = reports.drill_result("h1", "immich", MARKS, {}, CHECK, {"leftovers": []}, {"set_id": "S"}, "/b", "11.0", now=115.0)
    assert r["status"] == "ok" and r["failed_step"] is None and r["rto_seconds"] == "11.0"
    assert [s["seconds"] for s in r["steps"]] == [1.0, 2.0, 7.0, 1.0, 4.0]
    suite = ET.fromstring(reports.drill_junit(r)).find("testsuite")  # noqa: S314
    assert suite.get("tests") == "7" and suite.get("failures") == "0"
    assert reports.drill_lines(r)[0] == "Immich disaster-recovery drill on h1 (immich): PASSED"
    assert "  RPO          2.0 h (age of the backup)" in reports.drill_lines(r)


def test_a_failing_step_and_leftovers_are_named():
    failure = {"step": "restore", "task": "3. Verify the set", "msg": "checksum differs: upload/a.jpg"}
    r = reports.drill_result("h1", "immich", MARKS, failure, {}, {"leftovers": ["container x"]}, {"set_id": "S"}, "/b", None, now=115.0)
    assert r["status"] == "failed" and r["failed_step"] == "restore" and r["error"] == failure["msg"]
    steps = {s["name"]: s for s in r["steps"]}
    assert steps["restore"]["status"] == "failed" and "3. Verify the set: checksum differs" in steps["restore"]["message"]
    assert steps["teardown"]["message"] == "left behind: container x"
    failures = [f.get("message") for f in ET.fromstring(reports.drill_junit(r)).iter("failure")]  # noqa: S314
    assert any("Verify the set" in m for m in failures) and "left behind: container x" in failures


def test_a_failed_check_fails_the_drill_at_verify():
    check = dict(CHECK, ok=False, checks=[{"name": "files equal the set", "ok": False, "detail": "1 changed: upload/a.jpg"}])
    r = reports.drill_result("h1", "immich", MARKS, {}, check, {"leftovers": []}, {"set_id": "S"}, "/b", None, now=115.0)
    assert r["status"] == "failed" and r["failed_step"] == "verify" and "upload/a.jpg" in r["error"]
    assert r["rto_seconds"] is None


def test_restore_lines_are_plain():
    lines = reports.restore_lines({"instance": "immich", "set_id": "S", "project_dir": "/opt/immich", "seconds": 40,
                                   "db": {"rows_by_table": {"asset": 3, "user": 1}, "seconds": 1.2, "rows_diff": {}},
                                   "regenerate": {"absent": {"encoded_video": 2}, "jobs": ["videoConversion"]},
                                   "ping": "pong", "restore_point": None,
                                   "restore_point_reason": "there was no running database to save"})
    assert lines[0] == "immich: restored set S into /opt/immich in 40 s"
    assert "  no restore point: there was no running database to save" in lines
    assert not any("kept at none" in ln for ln in lines)
    assert any("2 encoded_video were not in the backup" in ln and "videoConversion" in ln for ln in lines)


def test_fleet_status_comes_from_what_the_backup_recorded():
    rows = [reports.fleet_row("a", {"fresh": True, "newest": "S", "age_hours": 0.1, "size_bytes": 1048576}, {"status": "ok", "seconds": 9}, None),
            reports.fleet_row("b", {"fresh": False}, {"status": "failed", "error": "dump: no such container"}, None),
            reports.fleet_row("c", {"unreachable": True, "msg": "ssh: timeout"}, {}, {"status": "ok", "finished": "T"}),
            reports.fleet_row("d", {"fresh": False}, {}, None)]
    assert [r["status"] for r in rows] == ["ok", "failed", "unreachable", "stale"]
    assert rows[1]["error"] == "dump: no such container" and rows[2]["last_drill"] == "ok (T)"
    text = reports.fleet_text(rows)
    assert text[1].split() == ["a", "ok", "0.1", "h", "1.0", "MiB", "9", "s", "never"]
