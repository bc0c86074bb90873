# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reports people and CI read: one-screen summaries, the JSON report of every run (schema in
docs/reports.md), the drill's JUnit XML and the fleet table. Pure functions over the results the
roles registered, so that every line is reached by a unit test (no report is built in Jinja).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
import xml.etree.ElementTree as ET  # noqa: S405 - we write XML, we never parse untrusted XML here

REPORT_FORMAT = 1


# -- units a person reads ---------------------------------------------------------------------------

def size(n):
    """Bytes in decimal units (what `df -H` and disk vendors say): 999 bytes, 1.0 KB, 12.3 GB."""
    n = float(n or 0)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return ("%d %s" % (n, unit)) if unit == "bytes" else "%.1f %s" % (n, unit)
        n /= 1000.0
    return "%.1f TB" % n  # pragma: no cover - the loop returns at TB


def duration(seconds, precise=True):
    """12.5 s (or 12 s when not ``precise``), 3 min 05 s, 2 h 07 min, 3 d 04 h."""
    seconds = max(0.0, float(seconds or 0))
    if seconds < 59.95:
        return "%.1f s" % seconds if precise else "%d s" % round(seconds)
    seconds = int(round(seconds))
    if seconds < 3600:
        return "%d min %02d s" % (seconds // 60, seconds % 60)
    if seconds < 48 * 3600:
        return "%d h %02d min" % (seconds // 3600, (seconds % 3600) // 60)
    return "%d d %02d h" % (seconds // 86400, (seconds % 86400) // 3600)


def rate(nbytes, seconds):
    """``nbytes`` per second in decimal units (12.3 MB/s); None without a duration."""
    if not seconds or float(seconds) <= 0:
        return None
    return "%s/s" % size(float(nbytes or 0) / float(seconds))


def count(n):
    return "{:,}".format(int(n or 0))


def per_second(n, seconds, what):
    """'1,234 files/s' (None without a duration or a count)."""
    if not seconds or float(seconds) <= 0 or not n:
        return None
    value = float(n) / float(seconds)
    return "%s %s/s" % (count(value) if value >= 10 else "%.1f" % value, what)


def _join(*parts):
    return ", ".join(p for p in parts if p)


DUMP_TOOLS = {"database": "pg_dump", "cluster": "pg_dumpall"}


# -- backup ----------------------------------------------------------------------------------------

def _step_seconds(report, name):
    return next((s.get("seconds") for s in report.get("steps") or [] if s.get("name") == name), None)


def _target_line(t):
    """One target of a backup: what was sent, how fast, verified or why not."""
    head = "  target    %s %s: " % (t.get("kind"), t.get("label"))
    if t.get("status") != "ok":
        return head + "FAILED: %s" % t.get("error")
    if t.get("note") == "already there":
        return head + "the set was already there"
    seconds = t.get("seconds")
    kind = t.get("kind")
    if kind == "restic":
        sent, what, took = t.get("bytes_added"), "added to the repository", t.get("backup_seconds") or seconds
    elif kind == "ssh":
        sent, what, took = t.get("bytes_sent"), "sent", seconds
    else:
        sent, what, took = t.get("bytes_copied"), "copied", seconds
    verified = "verified" if t.get("verified") else "sent (not verified)"
    if sent is None:
        return head + "%s in %s" % (verified, duration(seconds))
    if not sent:
        linked = " (%s files hard-linked)" % count(t["files_linked"]) if t.get("files_linked") else ""
        return head + "nothing new to copy%s, %s in %s" % (linked, verified, duration(seconds))
    return head + "%s %s in %s (%s), %s" % (size(sent), what, duration(took), rate(sent, took), verified)


def backup_lines(report):
    """The end-of-run summary of a backup, one screen: instance, set, sizes, durations, throughput of
    every step, verification, targets, retention, warnings (backup_run.summary_lines)."""
    lines = []
    name = report.get("instance")
    if report.get("status") == "failed":
        where = " at step %s" % report["failed_step"] if report.get("failed_step") else ""
        lines.append("%sbackup FAILED%s: %s" % ("%s: " % name if name else "", where, report.get("error")))
        steps = report.get("steps") or []
        if steps:
            lines.append("  steps     %s" % ", ".join(
                "%s %s" % (s["name"], "FAILED after %s" % duration(s.get("seconds")) if s.get("status") == "failed"
                           else duration(s.get("seconds"))) for s in steps))
        return lines
    dump = report.get("dump") or {}
    files = report.get("files") or {}
    ver = report.get("verification") or {}
    cov = report.get("coverage") or {}
    verdict = "verified" if report.get("status") == "ok" else "verified, but a target FAILED"
    lines.append("%s: set %s %s in %s (%s)" % (
        name, report.get("set_id"), verdict, duration(report.get("seconds")), report.get("set_dir")))
    dump_seconds = dump.get("seconds") or 0
    if dump.get("plain_bytes"):
        lines.append("  database  %s of SQL dumped in %s (%s), %s on disk (%s, %s)" % (
            size(dump["plain_bytes"]), duration(dump_seconds), rate(dump["plain_bytes"], dump_seconds) or "-",
            size(dump.get("bytes")), DUMP_TOOLS.get(dump.get("dump_kind"), dump.get("dump_kind")), dump.get("compression") or "?"))
    else:
        speed = ", %s MB/s" % dump["mb_per_s"] if dump.get("mb_per_s") else ""
        lines.append("  database  %s dump (%s) in %s%s" % (size(dump.get("bytes")), dump.get("dump_kind"), duration(dump_seconds), speed))
    fsec = files.get("seconds")
    took = " in %s" % duration(fsec) if fsec is not None else ""
    head = "  originals %s files (%s)%s" % (count(files.get("files")), size(files.get("bytes")), took)
    speed = per_second(files.get("files"), fsec, "files")
    head += " (%s)" % speed if speed else ""
    if files.get("copied"):
        copy_rate = rate(files.get("copied_bytes"), fsec)
        if copy_rate is None and files.get("mb_per_s") is not None:
            copy_rate = "%s MB/s" % files["mb_per_s"]
        lines.append("%s: %s copied (%s), %s unchanged hard links" % (
            head, count(files["copied"]), _join(size(files.get("copied_bytes")), copy_rate), count(files.get("linked"))))
    else:
        lines.append("%s: nothing new to copy, all %s are hard links to the previous set" % (head, count(files.get("linked"))))
    if cov:
        present = ("all %s files the database references are in the set" % count(cov.get("referenced"))
                   if cov.get("present") == cov.get("referenced") else
                   "%s of %s files the database references are in the set" % (count(cov.get("present")), count(cov.get("referenced"))))
        lines.append("  coverage  %s%s" % (present, "; %d external-library assets not covered" % cov["external"]
                                           if cov.get("external") else ""))
    if ver:
        vsec = _step_seconds(report, "verify")
        lines.append("  verified  %s: %s files hashed%s%s, the dump read back" % (
            "full check" if ver.get("full") else "new files + a sample", count(ver.get("hashed")),
            " in %s" % duration(vsec) if vsec is not None else "",
            " (%s)" % per_second(ver.get("hashed"), vsec, "files") if per_second(ver.get("hashed"), vsec, "files") else ""))
    stop = _step_seconds(report, "stop server")
    if stop is not None:
        lines.append("  server    immich-server stopped for the dump and the copy, started again (healthy) after %s" %
                     duration(_step_seconds(report, "start server")))
    for t in report.get("targets") or []:
        lines.append(_target_line(t))
    for label, pruned in sorted((report.get("retention") or {}).items()):
        kept = pruned.get("kept")
        deleted = ", ".join(pruned["deleted"]) if pruned.get("deleted") else "nothing to delete"
        sets_kept = " (%d set%s kept)" % (len(kept), "" if len(kept) == 1 else "s") if kept else ""
        lines.append("  pruned    %s: %s%s" % (label, deleted, sets_kept))
    for warning in report.get("warnings") or []:
        lines.append("  WARNING   %s" % warning)
    return lines


# -- restore -------------------------------------------------------------------------------------

def restore_lines(r):
    """Summary of a restore: what was restored, the database, the files, regeneration, the proof."""
    what = ("dump file %s (database only; the originals were not touched)" % r.get("dump_file")) if r.get("dump_file") \
        else "set %s" % r.get("set_id")
    if r.get("repository"):
        what += " of %s (fetched in %s)" % (r["repository"], duration(r.get("fetch_seconds")))
    lines = ["%s: restored %s into %s in %s" % (r.get("instance"), what, r.get("project_dir"), duration(r.get("seconds")))]
    signature = r.get("signature") or {}
    if signature.get("status") == "ok":
        lines.append("  signature the set is exactly as it was signed (key id %s)" % signature.get("key_id"))
    elif signature.get("status"):
        lines.append("  signature %s" % signature.get("message"))
    db = r.get("db") or {}
    rows = db.get("rows_by_table") or {}
    if rows:
        total = sum(rows.values())
        lines.append("  database  %s tables, %s rows loaded in %s%s, %s" % (
            count(len(rows)), count(total), duration(db.get("seconds")),
            " (%s)" % per_second(total, db.get("seconds"), "rows") if per_second(total, db.get("seconds"), "rows") else "",
            "row counts equal to the backup's manifest" if db.get("rows_diff") is not None
            else "row counts not compared (no manifest)"))
    files = r.get("files") or {}
    if files.get("files"):
        fsec = files.get("seconds")
        moved = files.get("moved") or 0
        how = ("moved out of the fetched copy" if moved == files["files"] else
               "put in place (%s moved out of the fetched copy, the rest copied)" % count(moved)) if moved else "copied"
        lines.append("  files     %s files (%s) %s in %s (%s), each checked against the set's sha256" % (
            count(files["files"]), size(files.get("bytes")), how, duration(fsec),
            _join(per_second(files["files"], fsec, "files"), rate(files.get("bytes"), fsec)) or "-"))
    elif files.get("skipped") and not r.get("dump_file"):
        lines.append("  files     not restored (immich_restore_files=false): UPLOAD_LOCATION was left as it was")
    regen = r.get("regenerate") or {}
    absent = regen.get("absent") or {}
    if absent:
        counts = ", ".join("%d %s" % (n, k) for k, n in sorted(absent.items()))
        if r.get("jobs_started"):
            lines.append("  generated %s were not in the backup: Immich is regenerating them (%s started)" % (
                counts, ", ".join(r["jobs_started"])))
        else:
            lines.append("  generated %s were not in the backup: start Administration -> Jobs -> %s -> Missing in Immich "
                         "(or give immich_restore_api_key) to regenerate them" % (
                             counts, " and ".join(regen.get("jobs") or ["Generate Thumbnails"])))
    orig = r.get("originals") or {}
    if orig:
        if orig.get("missing_originals"):
            lines.append("  originals %s assets, %s originals MISSING on disk (e.g. %s)" % (
                count(orig.get("assets")), count(orig["missing_originals"]), ", ".join(orig.get("missing_examples", [])[:3])))
        else:
            lines.append("  originals %s assets, every original on disk" % count(orig.get("assets")))
    proof = r.get("proof") or {}
    if proof.get("assets") is not None:
        bad = _join(*("%s %s" % (count(proof[k]), k.replace("_", " ")) for k in ("mismatched", "missing_in_backup")
                      if proof.get(k)))
        lines.append("  proof     %s of %s assets match the backup's SHA-1%s%s" % (
            count(proof.get("matched")), count(proof["assets"]), " (%s)" % bad if bad else "",
            " in %s" % duration(r["proof_seconds"]) if r.get("proof_seconds") is not None else ""))
    for check in r.get("checks") or []:
        if not isinstance(check, dict) or not check.get("name"):
            continue  # a gate that did not run
        mark = "skip" if check.get("skipped") else "ok  " if check.get("ok") else "FAIL"
        lines.append("  check     %s %s: %s" % (mark, check["name"], check.get("detail") or ""))
    lines.append("  server    %s" % ("answers the ping (pong)" if r.get("ping") == "pong"
                                     else "did not answer the ping (%s)" % r.get("ping")))
    if r.get("restore_point"):
        lines.append("  restore point of the database it replaced: %s" % r["restore_point"])
    else:
        lines.append("  no restore point: %s" % (r.get("restore_point_reason") or "none was taken"))
    return lines


# -- drill -----------------------------------------------------------------------------------------

def drill_steps(marks, failure, now=None):
    """Durations of the drill's steps from the times they started ([{step, at}]); the failing one marked."""
    now = time.time() if now is None else now
    steps = []
    failed_step = (failure or {}).get("step")
    for i, mark in enumerate(marks):
        end = float(marks[i + 1]["at"]) if i + 1 < len(marks) else now
        failed = failed_step == mark["step"]
        steps.append({"name": mark["step"], "seconds": round(end - float(mark["at"]), 2),
                      "status": "failed" if failed else "ok",
                      "message": ("%s: %s" % (failure.get("task"), failure.get("msg"))) if failed else ""})
    return steps


def drill_result(host, instance, marks, failure, check, teardown, chosen, source, rto, now=None):  # noqa: PLR0917
    """The drill's machine-readable result (docs/reports.md)."""
    now = time.time() if now is None else now
    failure = failure or {}
    steps = drill_steps(marks, failure, now)
    leftovers = (teardown or {}).get("leftovers")
    if leftovers is None:
        leftovers = ["teardown did not run"]
    kept = (teardown or {}).get("kept")
    if leftovers and steps:
        steps[-1].update(status="failed", message="left behind: " + ", ".join(leftovers))
    ok = not failure and not leftovers and bool((check or {}).get("ok", False))
    failed_check = next((c for c in (check or {}).get("checks", []) if not c.get("ok")), None)
    if failure:
        error = failure.get("msg")
        failed_step = failure.get("step")
    elif leftovers:
        error, failed_step = "scratch instance left behind: " + ", ".join(leftovers), "teardown"
    elif failed_check is not None:
        error, failed_step = "%s: %s" % (failed_check["name"], failed_check.get("detail")), "verify"
    else:
        error, failed_step = None, None
    return {
        "format": REPORT_FORMAT, "kind": "drill", "host": host, "instance": instance,
        "status": "ok" if ok else "failed", "failed_step": failed_step, "failed_task": failure.get("task"),
        "error": error, "set_id": (chosen or {}).get("set_id"), "source": source,
        "rto_seconds": rto if ok else None, "rpo_seconds": (check or {}).get("rpo_seconds"),
        "checks": (check or {}).get("checks", []), "files_checked": (check or {}).get("files_checked"),
        "steps": steps, "leftovers": leftovers, "scratch_kept": kept,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }


def drill_junit(result):
    """JUnit XML of a drill: one test case per step and per check; failures carry their message."""
    checks = result.get("checks") or []
    steps = result.get("steps") or []
    failures = sum(1 for s in steps if s["status"] == "failed") + sum(1 for c in checks if not c.get("ok"))
    suites = ET.Element("testsuites", name="homelab.immich drill")
    suite = ET.SubElement(suites, "testsuite", name="drill.%s" % result["host"], tests=str(len(steps) + len(checks)),
                          failures=str(failures), errors="0", time="%.2f" % sum(s["seconds"] for s in steps),
                          timestamp=result.get("finished") or "")
    props = ET.SubElement(suite, "properties")
    for key in ("set_id", "source", "rto_seconds", "rpo_seconds"):
        value = result.get(key)
        ET.SubElement(props, "property", name=key, value="" if value is None else str(value))
    for s in steps:
        case = ET.SubElement(suite, "testcase", classname="drill.%s.steps" % result["host"], name=s["name"],
                             time="%.2f" % s["seconds"])
        if s["status"] == "failed":
            ET.SubElement(case, "failure", message=s["message"]).text = s["message"]
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname="drill.%s.checks" % result["host"], name=c["name"], time="0")
        if not c.get("ok"):
            ET.SubElement(case, "failure", message=c.get("detail") or "").text = c.get("detail") or ""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def drill_lines(result):
    """Summary of a drill, one screen: PASSED or where it failed, the set, RTO and RPO, checks, steps."""
    r = result
    lines = ["Immich disaster-recovery drill on %s (%s): %s" % (
        r["host"], r.get("instance"), "PASSED" if r["status"] == "ok" else "FAILED at step %s" % r.get("failed_step"))]
    lines.append("  backup set   %s from %s" % (r.get("set_id") or "-", r.get("source")))
    rto = r.get("rto_seconds")
    lines.append("  RTO          %s (start -> verified)" % (duration(rto) if rto not in (None, "") else "-"))
    rpo = r.get("rpo_seconds")
    lines.append("  RPO          %s (age of the backup)" % (duration(rpo) if rpo is not None else "-"))
    if r.get("files_checked") is not None:
        lines.append("  files        %s originals compared with the set's sha256" % count(r["files_checked"]))
    for c in r.get("checks") or []:
        lines.append("  check        %s %s: %s" % ("ok  " if c.get("ok") else "FAIL", c["name"], c.get("detail", "")))
    steps = r.get("steps") or []
    if steps:
        lines.append("  steps        %s" % ", ".join("%s %s%s" % (s["name"], duration(s["seconds"]),
                                                                  " FAILED" if s["status"] != "ok" else "") for s in steps))
    for s in steps:
        if s["status"] != "ok" and s.get("message"):
            lines.append("  step FAILED  %s: %s" % (s["name"], s["message"]))
    if r.get("scratch_kept"):
        lines.append("  scratch      kept for inspection in %s (immich_drill_keep_scratch)" % r["scratch_kept"])
    else:
        lines.append("  scratch      %s" % ("removed" if not r.get("leftovers") else "LEFT BEHIND: " + ", ".join(r["leftovers"])))
    if r["status"] != "ok" and r.get("error"):
        lines.append("  error        %s" % r["error"])
    return lines


# -- fleet -----------------------------------------------------------------------------------------

def fleet_row(host, freshness, backup_result, drill):
    """One host of the fleet: the status of this run's backup (what the backup playbook recorded), the
    newest verified set's age and size, the last backup's duration, the last drill."""
    freshness = freshness or {}
    backup_result = backup_result or {}
    drill = drill or {}
    info = freshness.get("set_info") or {}
    if freshness.get("unreachable"):
        status = "unreachable"
    elif backup_result.get("status") in ("failed", "partial"):
        status = backup_result["status"]
    elif backup_result.get("status") == "ok" or freshness.get("fresh"):
        status = "ok"
    else:
        status = "stale"
    return {
        "host": host, "status": status,
        "error": backup_result.get("error") or (freshness.get("msg") if status != "ok" else None),
        "newest": freshness.get("newest"), "age_hours": freshness.get("age_hours"),
        "size_bytes": freshness.get("size_bytes"),
        "duration_seconds": backup_result.get("seconds") or info.get("seconds"),
        "last_drill": "%s (%s)" % (drill["status"], drill.get("finished")) if drill.get("status") else "never",
    }


def fleet_text(rows):
    """The fleet table, one line per host, and a closing count."""
    fmt = "%-16s %-11s %-12s %-10s %-12s %s"
    out = [fmt % ("host", "status", "newest-age", "size", "duration", "last-drill")]
    for r in rows:
        age = r.get("age_hours")
        out.append(fmt % (r["host"], r["status"], duration(float(age) * 3600, precise=False) if age is not None else "none",
                          size(r["size_bytes"]) if r.get("size_bytes") else "-",
                          duration(r["duration_seconds"]) if r.get("duration_seconds") else "-", r["last_drill"]))
    bad = [r for r in rows if r["status"] != "ok"]
    out.append("%d of %d hosts ok%s" % (len(rows) - len(bad), len(rows), "; " + ", ".join(
        "%s %s" % (r["host"], r["status"]) for r in bad) if bad else ""))
    return out
