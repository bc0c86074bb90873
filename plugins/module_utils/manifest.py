# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a backup set is, and how it is proven complete (layout in docs/design.md).

    <target>/<instance>/
      .lock                     owner pid + pid start time, host, start time
      .partial-<id>/            a set being written: never selected, removed by the next run
      <id>/                     a promoted set: set.json, db/<dump> + manifest, files.manifest.tsv, files/
      latest -> <id>

Everything streams: the file manifest is written and verified one file at a time, and a previous
manifest is read alongside (merge join on the same ordering), so 100k files cost no memory.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import time

SET_ID_RE = re.compile(r"^\d{8}T\d{6}Z$")
PARTIAL_PREFIX = ".partial-"
LOCK_NAME = ".lock"
SET_JSON = "set.json"
FILES_MANIFEST = "files.manifest.tsv"
MANIFEST_HEADER = "# homelab.immich file manifest v1\tpath\tsize\tmtime\tsha256"
CHUNK = 1024 * 1024
MAX_LISTED = 20


class SetError(Exception):
    """A backup set problem, worded for the user."""


# -- layout -------------------------------------------------------------------------------------
def set_id(now=None):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))


def set_time(sid):
    return calendar.timegm(time.strptime(sid, "%Y%m%dT%H%M%SZ"))


def instance_root(target, instance_name):
    return os.path.join(target, instance_name)


def _mkdir_private(path):
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700)
    os.chmod(path, 0o700)


def list_sets(root):
    """Promoted set ids, oldest first."""
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if SET_ID_RE.match(n) and os.path.isdir(os.path.join(root, n)))


def read_set_json(set_dir):
    path = os.path.join(set_dir, SET_JSON)
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def write_json(path, data):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.rename(tmp, path)


def is_verified(set_dir):
    info = read_set_json(set_dir)
    return bool(info and info.get("status") == "verified")


def latest_verified(root):
    for sid in reversed(list_sets(root)):
        if is_verified(os.path.join(root, sid)):
            return sid
    return None


def begin(root, now=None):
    """Create `.partial-<id>/{db,files}`, removing partials left by runs that died. Needs the lock."""
    parent = os.path.dirname(root.rstrip("/"))
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o700)
    _mkdir_private(root)
    removed = []
    for name in os.listdir(root):
        if name.startswith(PARTIAL_PREFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed.append(name)
    sid = set_id(now)
    while os.path.exists(os.path.join(root, sid)):  # two runs within one second
        now = (now if now is not None else time.time()) + 1
        sid = set_id(now)
    partial = os.path.join(root, PARTIAL_PREFIX + sid)
    for sub in ("", "db", "files"):
        _mkdir_private(os.path.join(partial, sub))
    previous = latest_verified(root)
    return {
        "set_id": sid,
        "partial": partial,
        "db_dir": os.path.join(partial, "db"),
        "files_dir": os.path.join(partial, "files"),
        "previous": previous,
        "previous_dir": os.path.join(root, previous) if previous else None,
        "removed_partials": removed,
    }


# -- file manifest ------------------------------------------------------------------------------
def _escape(path):
    return path.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _unescape(field):
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 1 < len(field):
            out.append({"t": "\t", "n": "\n", "\\": "\\"}.get(field[i + 1], field[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def order_key(relpath):
    """The one ordering of manifests and walks: path components, compared one by one."""
    return relpath.split("/")


def walk_files(top, rel=""):
    """Regular files under `top` as relative paths, in order_key order, one at a time."""
    base = os.path.join(top, rel) if rel else top
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return
    for name in names:
        relp = rel + "/" + name if rel else name
        full = os.path.join(top, relp)
        if os.path.isdir(full) and not os.path.islink(full):
            yield from walk_files(top, relp)
        elif os.path.isfile(full) and not os.path.islink(full):
            yield relp


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def read_manifest(path):
    """Entries (path, size, mtime, sha256) of a file manifest, one at a time."""
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 4:
                raise SetError("File manifest %s is damaged (line %r)." % (path, line[:200]))
            yield _unescape(parts[0]), int(parts[1]), int(parts[2]), parts[3]


def _merge(left, right):
    """Merge-join two iterables of (relpath, ...) sorted by order_key: yields (l or None, r or None)."""
    left, right = iter(left), iter(right)
    lv, rv = next(left, None), next(right, None)
    while lv is not None or rv is not None:
        if rv is None or (lv is not None and order_key(lv[0]) < order_key(rv[0])):
            yield lv, None
            lv = next(left, None)
        elif lv is None or order_key(rv[0]) < order_key(lv[0]):
            yield None, rv
            rv = next(right, None)
        else:
            yield lv, rv
            lv, rv = next(left, None), next(right, None)


def write_file_manifest(files_dir, out_path, previous_manifest=None, previous_files_dir=None):
    """Write path/size/mtime/sha256 of every file under files_dir; returns counts.

    A file that is the same inode as the previous set's copy (rsync --link-dest made it a hard
    link) has the same bytes, so its checksum is taken from the previous manifest, not re-read.
    """
    prev = read_manifest(previous_manifest) if previous_manifest and os.path.exists(previous_manifest) else iter(())
    files = files_bytes = hashed = hashed_bytes = 0
    tmp = out_path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as out:
        out.write(MANIFEST_HEADER + "\n")
        for cur, old in _merge(((p,) for p in walk_files(files_dir)), prev):
            if cur is None:
                continue
            rel = cur[0]
            full = os.path.join(files_dir, rel)
            st = os.stat(full)
            digest = None
            if old is not None and previous_files_dir and old[1] == st.st_size and old[2] == int(st.st_mtime):
                try:
                    pst = os.stat(os.path.join(previous_files_dir, rel))
                    if (pst.st_ino, pst.st_dev) == (st.st_ino, st.st_dev):
                        digest = old[3]
                except OSError:
                    pass
            if digest is None:
                digest = sha256_file(full)
                hashed += 1
                hashed_bytes += st.st_size
            out.write("%s\t%d\t%d\t%s\n" % (_escape(rel), st.st_size, int(st.st_mtime), digest))
            files += 1
            files_bytes += st.st_size
    os.rename(tmp, out_path)
    return {"files": files, "bytes": files_bytes, "hashed_files": hashed, "hashed_bytes": hashed_bytes,
            "manifest_sha256": sha256_file(out_path)}


def verify_files(files_dir, manifest_path, deep=True):
    """Compare a folder with its manifest: missing, changed (size, or sha256 when deep), extra files."""
    result = {"files": 0, "bytes": 0, "missing": 0, "changed": 0, "extra": 0, "problems": []}

    def note(kind, msg):
        result[kind] += 1
        if len(result["problems"]) < MAX_LISTED:
            result["problems"].append(msg)

    if not os.path.exists(manifest_path):
        raise SetError("The file manifest %s is missing: the set was never finished." % manifest_path)
    for cur, want in _merge(((p,) for p in walk_files(files_dir)), read_manifest(manifest_path)):
        if want is None:
            note("extra", "extra file not in the manifest: %s" % cur[0])
            continue
        rel, size, _mtime, digest = want
        if cur is None:
            note("missing", "missing: %s" % rel)
            continue
        full = os.path.join(files_dir, rel)
        st = os.stat(full)
        result["files"] += 1
        result["bytes"] += st.st_size
        if st.st_size != size:
            note("changed", "size differs: %s (%d bytes, manifest says %d)" % (rel, st.st_size, size))
        elif deep and sha256_file(full) != digest:
            note("changed", "checksum differs: %s" % rel)
    result["ok"] = result["missing"] == 0 and result["changed"] == 0 and result["extra"] == 0
    return result


def find_dump(db_dir):
    """(dump path, its manifest path or None) in a set's db/ folder."""
    if not os.path.isdir(db_dir):
        return None, None
    dumps = sorted(n for n in os.listdir(db_dir)
                   if not n.endswith((".json", ".tmp")) and os.path.isfile(os.path.join(db_dir, n)))
    if not dumps:
        return None, None
    dump = os.path.join(db_dir, dumps[-1])
    man = dump + ".manifest.json"
    return dump, man if os.path.exists(man) else None


def verify_dump(db_dir):
    """The dump is there, and its size and sha256 match what db_dump recorded when it wrote it."""
    dump, man = find_dump(db_dir)
    problems = []
    info = {"path": dump, "manifest_path": man}
    if dump is None:
        return dict(info, ok=False, problems=["no database dump in %s" % db_dir])
    if man is None:
        problems.append("the dump has no manifest (%s.manifest.json)" % os.path.basename(dump))
    else:
        try:
            with open(man) as fh:
                meta = json.load(fh)
        except (OSError, ValueError) as exc:
            meta = {}
            problems.append("the dump manifest cannot be read: %s" % exc)
        size = os.path.getsize(dump)
        info["bytes"] = size
        want_size = meta.get("bytes", meta.get("size"))
        if want_size is not None and int(want_size) != size:
            problems.append("dump size %d differs from its manifest (%s): truncated or replaced" % (size, want_size))
        want_sha = meta.get("sha256")
        if want_sha:
            got = sha256_file(dump)
            info["sha256"] = got
            if got != want_sha:
                problems.append("dump sha256 %s differs from its manifest (%s): the file was damaged" % (got, want_sha))
        else:
            problems.append("the dump manifest records no sha256")
        for key in ("dump_kind", "server_version", "pg_dump_version", "rows_by_table", "immich_version"):
            if key in meta:
                info[key] = meta[key]
    info["problems"] = problems
    info["ok"] = not problems
    return info


def verify_set(set_dir, deep=True):
    """Everything a restore relies on, checked without touching any instance."""
    if not os.path.isdir(set_dir):
        raise SetError("Backup set %s does not exist." % set_dir)
    dump = verify_dump(os.path.join(set_dir, "db"))
    files = verify_files(os.path.join(set_dir, "files"), os.path.join(set_dir, FILES_MANIFEST), deep=deep)
    problems = list(dump["problems"]) + list(files["problems"])
    return {"ok": dump["ok"] and files["ok"], "dump": dump, "files": files, "problems": problems, "deep": deep}


def finish(root, partial, summary=None, deep=True, now=None):
    """Verify a partial set, then promote it (rename) and point `latest` at it."""
    sid = os.path.basename(partial)[len(PARTIAL_PREFIX):]
    report = verify_set(partial, deep=deep)
    info = dict(summary or {})
    info.update({
        "set_id": sid,
        "finished": set_id(now),
        "host": socket.gethostname(),
        "verification": {"ok": report["ok"], "deep": deep, "problems": report["problems"],
                         "files": report["files"]["files"], "bytes": report["files"]["bytes"],
                         "dump_sha256": report["dump"].get("sha256")},
        "dump": os.path.relpath(report["dump"]["path"], partial) if report["dump"].get("path") else None,
        "status": "verified" if report["ok"] else "failed-verification",
    })
    for key in ("dump_kind", "server_version", "pg_dump_version", "rows_by_table"):
        if key in report["dump"] and key not in info:
            info[key] = report["dump"][key]
    write_json(os.path.join(partial, SET_JSON), info)
    if not report["ok"]:
        raise SetError("The new backup set failed its verification and was NOT promoted (%s): %s"
                       % (partial, "; ".join(report["problems"][:5])))
    final = os.path.join(root, sid)
    os.rename(partial, final)
    link = os.path.join(root, "latest")
    tmp = link + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(sid, tmp)
    os.rename(tmp, link)
    return final, info


def select(root, name=None, require_verified=True):
    """The set to restore: a named one, or the newest verified."""
    sets = list_sets(root)
    if not sets:
        raise SetError("No backup set in %s. Nothing was touched." % root)
    if name in (None, "", "latest"):
        sid = latest_verified(root)
        if sid is None:
            raise SetError("No verified backup set in %s (sets: %s). Nothing was touched." % (root, ", ".join(sets[-5:])))
        return sid
    if name not in sets:
        raise SetError("Backup set %r not found in %s (newest: %s). Nothing was touched." % (name, root, ", ".join(sets[-5:])))
    if require_verified and not is_verified(os.path.join(root, name)):
        raise SetError("Backup set %s is not marked verified (set.json). Nothing was touched." % name)
    return name


# -- retention ----------------------------------------------------------------------------------
def plan_retention(sets, keep_last=7, keep_daily=7, keep_weekly=4, keep_monthly=6):  # noqa: PLR0917
    """(keep, delete) lists of set ids. `sets` = [(set_id, verified)], any order.

    Keep: the last N sets; the newest set of each of the last `keep_daily` days, `keep_weekly` ISO
    weeks and `keep_monthly` months that have sets; and always the newest verified set.
    """
    ordered = sorted(sets, key=lambda s: s[0], reverse=True)
    keep = {sid for sid, _verified in ordered[:max(keep_last, 0)]}
    buckets = (
        (keep_daily, lambda d: d.strftime("%Y-%m-%d")),
        (keep_weekly, lambda d: "%d-W%02d" % d.isocalendar()[:2]),
        (keep_monthly, lambda d: d.strftime("%Y-%m")),
    )
    for count, key_of in buckets:
        seen = []
        for sid, verified in ordered:
            if not verified:
                continue
            day = datetime.datetime.fromtimestamp(set_time(sid), tz=datetime.timezone.utc)
            key = key_of(day)
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.add(sid)
    for sid, verified in ordered:
        if verified:
            keep.add(sid)
            break
    delete = [sid for sid, _verified in ordered if sid not in keep]
    return sorted(keep), sorted(delete)


def prune(root, keep_last=7, keep_daily=7, keep_weekly=4, keep_monthly=6, dry_run=False):  # noqa: PLR0917
    sets = [(sid, is_verified(os.path.join(root, sid))) for sid in list_sets(root)]
    keep, delete = plan_retention(sets, keep_last, keep_daily, keep_weekly, keep_monthly)
    if not dry_run:
        for sid in delete:
            shutil.rmtree(os.path.join(root, sid))
    return keep, delete


# -- lock -----------------------------------------------------------------------------------------
def _proc_stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            data = fh.read()
    except (OSError, ValueError):
        return None
    rest = data[data.rindex(")") + 2:].split()
    comm = data[data.index("(") + 1:data.rindex(")")]
    return {"comm": comm, "ppid": int(rest[1]), "start": int(rest[19])}


def owner_pid(pid=None):
    """The process whose life is the run's life, seen from the managed host.

    A module lives for one task, so its own pid says nothing. Locally the run is the outermost
    `ansible-playbook` ancestor; over SSH it is the connection's sshd session (it ends when the
    controller goes away). None when /proc is not there: then only the age makes a lock stale.
    """
    pid = pid or os.getpid()
    found = None
    seen = 0
    while pid and pid > 1 and seen < 64:
        st = _proc_stat(pid)
        if st is None:
            break
        comm = st["comm"]
        if comm.startswith("ansible"):
            found = pid  # keep climbing: the task's worker is a fork of the main process
        elif comm.startswith("sshd") and found is None:
            return pid
        elif found is not None:
            return found
        pid = st["ppid"]
        seen += 1
    return found


def pid_alive(pid, start=None):
    if not pid:
        return False
    st = _proc_stat(int(pid))
    if st is None:
        try:
            os.kill(int(pid), 0)
        except OSError:
            return False
        return True
    return start is None or st["start"] == start


def lock_state(path, stale_seconds, now=None):
    """(holder dict or None, stale bool, why)"""
    now = now if now is not None else time.time()
    try:
        with open(path) as fh:
            holder = json.load(fh)
    except OSError:
        return None, False, "free"
    except ValueError:
        return {}, True, "unreadable lock file"
    age = now - float(holder.get("started", 0))
    if age > stale_seconds:
        return holder, True, "older than %d s" % stale_seconds
    if holder.get("host") == socket.gethostname() and holder.get("pid") and not pid_alive(holder["pid"], holder.get("pid_start")):
        return holder, True, "its process %s is gone" % holder["pid"]
    return holder, False, "held"


def acquire_lock(path, run_id, stale_seconds=6 * 3600, wait_seconds=0, poll=1.0, purpose="backup"):  # noqa: PLR0917
    """Take the lock or raise SetError naming the holder. Re-entrant for the same run_id."""
    deadline = time.time() + max(wait_seconds, 0)
    pid = owner_pid()
    st = _proc_stat(pid) if pid else None
    mine = {"pid": pid, "pid_start": st["start"] if st else None, "host": socket.gethostname(),
            "started": time.time(), "run_id": run_id, "purpose": purpose}
    _mkdir_private(os.path.dirname(path))
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(mine, fh)
            return {"acquired": True, "lock": mine, "broke_stale": None}
        except OSError:
            pass
        holder, stale, why = lock_state(path, stale_seconds)
        if holder is not None and holder.get("run_id") == run_id:
            return {"acquired": False, "lock": holder, "broke_stale": None}
        if stale:
            # rename first: of two runs breaking the same stale lock, only one rename succeeds
            grave = "%s.stale-%s" % (path, run_id)
            try:
                os.rename(path, grave)
                os.unlink(grave)
            except OSError:
                pass
            continue
        if holder is None:
            continue
        if time.time() >= deadline:
            raise SetError(
                "Another %s of this instance is running: lock %s held by pid %s on %s since %s (run %s). "
                "Nothing was written. Wait for it to finish; if it is dead, the lock becomes stale when its "
                "process is gone or after %d s, or remove %s by hand."
                % (holder.get("purpose") or purpose, path, holder.get("pid"), holder.get("host"),
                   time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder.get("started", 0)))),
                   holder.get("run_id"), stale_seconds, path))
        time.sleep(poll)


def release_lock(path, run_id):
    try:
        with open(path) as fh:
            holder = json.load(fh)
    except (OSError, ValueError):
        return False
    if holder.get("run_id") != run_id:
        return False
    os.unlink(path)
    return True
