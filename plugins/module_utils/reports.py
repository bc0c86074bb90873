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


def _mb(n):
    return "%.1f MB" % ((n or 0) / 1e6)


def _hours(seconds):
    return "-" if seconds is None else "%.1f h" % (float(seconds) / 3600.0)


# -- restore -------------------------------------------------------------------------------------

def restore_lines(r):
    """Summary of a restore: what was restored, the database, the files, regeneration, the proof."""
    what = ("dump file %s (database only; the originals were not touched)" % r.get("dump_file")) if r.get("dump_file") \
        else "set %s" % r.get("set_id")
    lines = ["%s: restored %s into %s in %s s" % (r.get("instance"), what, r.get("project_dir"), r.get("seconds"))]
    db = r.get("db") or {}
    rows = db.get("rows_by_table") or {}
    if rows:
        lines.append("  database  %d tables, %d rows loaded in %s s, equal to the backup's manifest%s" % (
            len(rows), sum(rows.values()), db.get("seconds"),
            "" if db.get("rows_diff") is not None else " (no manifest: not compared)"))
    files = r.get("files") or {}
    if files.get("files"):
        lines.append("  files     %d files (%s) copied, each checked against the set's sha256 (%s MB/s)" % (
            files["files"], _mb(files.get("bytes")), files.get("mb_per_s")))
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
        lines.append("  originals %d assets, %d originals missing on disk%s" % (
            orig.get("assets", 0), orig.get("missing_originals", 0),
            " (e.g. %s)" % ", ".join(orig.get("missing_examples", [])[:3]) if orig.get("missing_originals") else ""))
    for check in r.get("checks") or []:
        lines.append("  check     %s %s: %s" % ("ok  " if check["ok"] else "FAIL", check["name"], check.get("detail", "")))
    lines.append("  server    %s" % ("answers pong" if r.get("ping") == "pong" else "did not answer the ping (%s)" % r.get("ping")))
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
    r = result
    lines = ["Immich disaster-recovery drill on %s (%s): %s" % (
        r["host"], r.get("instance"), "PASSED" if r["status"] == "ok" else "FAILED at step %s" % r.get("failed_step"))]
    lines.append("  backup set   %s from %s" % (r.get("set_id") or "-", r.get("source")))
    lines.append("  RTO          %s (start -> verified)" % ("%s s" % r["rto_seconds"] if r.get("rto_seconds") is not None else "-"))
    lines.append("  RPO          %s (age of the backup)" % _hours(r.get("rpo_seconds")))
    for c in r.get("checks") or []:
        lines.append("  check        %s %s: %s" % ("ok  " if c.get("ok") else "FAIL", c["name"], c.get("detail", "")))
    for s in r.get("steps") or []:
        lines.append("  step         %s %s (%s s)%s" % ("ok  " if s["status"] == "ok" else "FAIL", s["name"], s["seconds"],
                                                       ": " + s["message"] if s["message"] else ""))
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
    fmt = "%-16s %-11s %-12s %-10s %-9s %s"
    out = [fmt % ("host", "status", "newest-age", "size", "duration", "last-drill")]
    for r in rows:
        out.append(fmt % (r["host"], r["status"], "%s h" % r["age_hours"] if r["age_hours"] is not None else "none",
                          "%.1f MiB" % (r["size_bytes"] / 1048576.0) if r["size_bytes"] else "-",
                          "%s s" % r["duration_seconds"] if r["duration_seconds"] else "-", r["last_drill"]))
    return out
