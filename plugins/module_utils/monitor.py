# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Monitoring for backups: start/success/failure pings and the freshness of the newest verified set.

Stdlib only: this file also runs on managed hosts without Ansible (the scheduled entry point of
roles/schedule imports it, and so does its cron / Nagios-style CLI, roles/schedule/files/immich_monitor.py).

A ping never raises: a dead monitoring endpoint must not fail a backup. It returns a result the
caller turns into a warning.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import socket
import time

from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from urllib.request import Request, build_opener

from ansible_collections.homelab.immich.plugins.module_utils import retention, sets

EVENTS = ("start", "success", "failure")
STYLES = ("healthchecks", "uptime_kuma", "ntfy")
NTFY_PRIORITY = {"start": "2", "success": "3", "failure": "5"}
NTFY_TAGS = {"start": "hourglass_flowing_sand", "success": "white_check_mark", "failure": "rotating_light"}


def detect_style(url):
    """Guess the style from the URL: Kuma push URLs contain /api/push/, ntfy topics live on ntfy hosts."""
    parts = urlsplit(url)
    if "/api/push/" in parts.path:
        return "uptime_kuma"
    if "ntfy" in parts.netloc:
        return "ntfy"
    return "healthchecks"


def build_request(url, event, *, style=None, message="", title=None, headers=None):
    """The HTTP request one ping is: (method, url, body bytes or None, headers), or None to skip.

    healthchecks.io: `<url>/start`, `<url>`, `<url>/fail`, the message as POST body (kept in the log).
    Uptime Kuma push: `<url>?status=up|down&msg=...`; it has no "start" state, so start is skipped.
    ntfy: POST the message to the topic URL, with Title/Priority/Tags headers.
    """
    if event not in EVENTS:
        raise ValueError("event must be one of %s, not %r" % (", ".join(EVENTS), event))
    style = style or detect_style(url)
    if style not in STYLES:
        raise ValueError("style must be one of %s, not %r" % (", ".join(STYLES), style))
    hdrs = {"User-Agent": "homelab.immich-monitor/1"}
    hdrs.update(headers or {})
    body = (message or "").encode("utf-8")
    if style == "healthchecks":
        suffix = {"start": "/start", "success": "", "failure": "/fail"}[event]
        parts = urlsplit(url)
        target = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + suffix, parts.query, ""))
        hdrs.setdefault("Content-Type", "text/plain; charset=utf-8")
        return "POST", target, body, hdrs
    if style == "uptime_kuma":
        if event == "start":
            return None
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("status", "msg")]
        query += [("status", "up" if event == "success" else "down"), ("msg", message or event)]
        target = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        return "GET", target, None, hdrs
    # ntfy
    verb = {"start": "started", "success": "succeeded", "failure": "FAILED"}[event]
    hdrs.setdefault("Title", title or "Immich backup %s" % verb)
    hdrs.setdefault("Priority", NTFY_PRIORITY[event])
    hdrs.setdefault("Tags", NTFY_TAGS[event])
    return "POST", url, body or event.encode("ascii"), hdrs


def _redact(url):
    """A URL fit for logs: the path of a ping URL is its secret (healthchecks uuid, Kuma token)."""
    parts = urlsplit(url)
    return "%s://%s/..." % (parts.scheme, parts.netloc) if parts.path.strip("/") else url


def _open(req, timeout):
    """Ansible's open_url when running as a module; the stdlib where the scheduled run has no Ansible."""
    try:
        from ansible.module_utils.urls import open_url  # noqa: PLC0415
    except ImportError:
        return build_opener().open(req, timeout=timeout)
    return open_url(req.full_url, data=req.data, headers=dict(req.header_items()), method=req.get_method(),
                    timeout=timeout, follow_redirects="safe")


def ping(url, event, *, style=None, message="", title=None, headers=None, timeout=10.0, retries=2,
         backoff=1.0, opener=None, sleep=time.sleep):
    """Send one ping; never raises. Returns a dict: ok, skipped, status, attempts, error, style, url.

    Bounded: at most `retries + 1` attempts of `timeout` seconds each, `backoff * attempt` apart.
    HTTP 4xx other than 408/429 is not retried (a wrong URL stays wrong).
    """
    opener = opener or _open
    style = style or detect_style(url)
    result = {"ok": False, "skipped": False, "status": None, "attempts": 0, "error": None,
              "style": style, "event": event, "url": _redact(url)}
    try:
        req = build_request(url, event, style=style, message=message, title=title, headers=headers)
    except ValueError as exc:
        result["error"] = str(exc)
        return result
    if req is None:
        result.update(ok=True, skipped=True)
        return result
    method, target, body, hdrs = req
    for attempt in range(1, int(retries) + 2):
        result["attempts"] = attempt
        try:
            if not target.lower().startswith(("http://", "https://")):
                raise ValueError("only http(s) URLs can be pinged, not %s" % _redact(target))
            resp = opener(Request(target, data=body, headers=hdrs, method=method), timeout=timeout)  # noqa: S310 - scheme checked above
            try:
                result["status"] = resp.getcode()
            finally:
                resp.close()
            result["ok"] = 200 <= (result["status"] or 0) < 300
            result["error"] = None if result["ok"] else "HTTP %s" % result["status"]
            if result["ok"]:
                return result
        except HTTPError as exc:
            result["status"] = exc.code
            result["error"] = "HTTP %s %s" % (exc.code, exc.reason)
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                return result
        except (URLError, socket.timeout, OSError, ValueError) as exc:
            result["error"] = "%s: %s" % (type(exc).__name__, getattr(exc, "reason", exc))
        if attempt <= int(retries):
            sleep(backoff * attempt)
    return result


def warning_for(result):
    """The warning a failed ping becomes (None when it went through)."""
    if result["ok"]:
        return None
    return ("Monitoring ping '%s' to %s failed after %d attempt(s): %s. The backup itself is not affected; "
            "check the URL and that this host can reach it." % (result["event"], result["url"],
                                                                result["attempts"], result["error"]))


# -- freshness ---------------------------------------------------------------------------------

def verified_sets(instance_dir):
    """Promoted, verified sets under `<target>/<instance>` as [(set id, epoch, set.json)], oldest first.

    The set layout and what a good set is are sets.py's; `.partial-*` folders are never sets.
    """
    return [(sid, retention.set_time(sid), info) for sid, good, info in sets.entries(instance_dir) if good]


def newest_dumper_dump(db_dumps_dir):
    """The dumper sidecar's layout: `<BACKUP_DIR>/last/*-latest.sql.gz` -> (path, mtime) or (None, None)."""
    links = sorted(glob.glob(os.path.join(db_dumps_dir, "last", "*-latest.sql.gz")))
    best = (None, None)
    for link in links:
        try:
            mtime = os.stat(link).st_mtime  # follows the link to the real dump
        except OSError:
            continue
        if best[1] is None or mtime > best[1]:
            best = (os.path.realpath(link), mtime)
    return best


def freshness(target, instance=None, warn_hours=26.0, crit_hours=50.0, *, now=None, layout="sets"):
    """How fresh is the newest verified backup? Returns a dict with `code` in Nagios style.

    code 0 OK (younger than warn_hours), 1 WARNING (older than warn_hours), 2 CRITICAL (older than
    crit_hours, or no verified backup at all), 3 UNKNOWN (target unreadable). `line` is one line.
    layout `sets`: backup sets under `<target>/<instance>`; `dumper`: a dumper's `<target>/last/`.
    """
    now = time.time() if now is None else now
    res = {"code": 3, "state": "UNKNOWN", "newest": None, "age_hours": None, "count": 0,
           "size_bytes": None, "target": target, "instance": instance}
    newest_epoch = None
    if layout == "dumper":
        where = target
        path, mtime = newest_dumper_dump(target) if os.path.isdir(target) else (None, None)
        if path:
            res.update(newest=path, count=1, size_bytes=os.path.getsize(path))
            newest_epoch = mtime
    else:
        where = os.path.join(target, instance) if instance else target
        sets = verified_sets(where) if os.path.isdir(where) else []
        path = None
        if sets:
            name, newest_epoch, data = sets[-1]
            path = os.path.join(where, name)
            size = (data.get("files_bytes") or 0) + (data.get("dump_bytes") or 0)
            res.update(newest=name, count=len(sets), size_bytes=size, set_info=data)
    if not os.path.isdir(where):
        res["line"] = "BACKUP UNKNOWN - %s is not a readable folder" % where
        return res
    if not path:
        res.update(code=2, state="CRITICAL", line="BACKUP CRITICAL - no verified backup under %s" % where)
        return res
    age = max(0.0, (now - newest_epoch) / 3600.0)
    res["age_hours"] = round(age, 2)
    if age >= float(crit_hours):
        res.update(code=2, state="CRITICAL")
    elif age >= float(warn_hours):
        res.update(code=1, state="WARNING")
    else:
        res.update(code=0, state="OK")
    res["line"] = "BACKUP %s - newest verified backup %s is %.1f h old (warn %s h, crit %s h) | age_hours=%.2f" % (
        res["state"], res["newest"], age, warn_hours, crit_hours, age)
    return res
