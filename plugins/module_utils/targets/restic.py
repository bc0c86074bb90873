# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A restic repository as a backup target: encrypted, deduplicated, offsite.

    immich_backup_targets:
      - restic: sftp:backup@nas:/srv/restic/immich     # or /mnt/usb/restic, rest:http://host:8000/immich/
        password_file: /etc/immich-backup/restic.pass  # or password: "{{ vault_restic_password }}"
        init: false                                    # true once, to create the repository

One promoted set = one snapshot (``restic backup .`` run inside the set folder, so every night's tree
has the same paths), tagged ``instance:<name>``, ``set:<set id>``, ``immich:<version>``, ``pg:<major>``,
with the instance name as restic's host. Unchanged originals are hard links to the previous set: same
inode and mtime, but a new ctime (the link count changed), so the backup runs with ``--ignore-ctime
--ignore-inode`` and an explicit ``--parent`` (the set folder's path changes every night, restic's own
parent search would find nothing): a nightly snapshot of an unchanged library reads no file content.

Secrets: the password reaches restic through RESTIC_PASSWORD_FILE, the repository string (which may
carry REST credentials) through RESTIC_REPOSITORY; neither is ever in argv, a message or a log.
The retention POLICY is the engine's (retention.plan); this target only forgets the snapshots it is
told to. Locks are restic's own: stale ones go only through ``restic unlock`` (restic's rules decide).

Stdlib only: this file also runs on managed hosts without Ansible (the scheduled backup).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import collections
import inspect
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from ansible_collections.homelab.immich.plugins.module_utils._fsio import CHUNK, read_json
from ansible_collections.homelab.immich.plugins.module_utils.targets import Target, TargetError

MIN_VERSION = (0, 14, 0)
SET_ID_RE = re.compile(r"^\d{8}T\d{6}Z$")
SNAPSHOT_ID_RE = re.compile(r"^[0-9a-f]{8,64}$")
FILES_MANIFEST = "files.manifest.tsv"
MAX_EXAMPLES = 10
STDERR_TAIL = 200

# What each restic version can do. (name, first version, what it is.) Newer features are used only
# when the installed restic has them; describe() and check() list the ones present.
FEATURES = (
    ("compression", (0, 14, 0), "repository format v2, --compression auto|off|max"),
    ("restore_verify", (0, 9, 2), "restore --verify re-reads every restored file against its blobs"),
    ("read_data_subset", (0, 13, 0), "check --read-data-subset n/t, x% or a size"),
    ("init_json", (0, 15, 0), "init --json"),
    ("backup_full_snapshot_id", (0, 15, 0), "backup --json summary carries the full snapshot id (short before)"),
    ("retry_lock", (0, 16, 0), "--retry-lock <duration> waits for a lock instead of failing at once"),
    ("subfolder_syntax", (0, 16, 0), "<snapshot>:<subfolder> in restore/dump/ls"),
    ("restore_json", (0, 16, 0), "restore --json status and summary lines"),
    ("sftp_args", (0, 16, 1), "-o sftp.args"),
    ("repair_packs", (0, 16, 1), "repair packs salvages a damaged pack (rebuild-index and a manual delete before)"),
    ("exit_codes", (0, 17, 0), "exit 10 = no repository, 11 = locked"),
    ("ls_message_type", (0, 17, 0), "ls --json lines carry message_type (struct_type only before)"),
    ("stdin_from_command", (0, 17, 0), "backup --stdin-from-command"),
    ("version_json", (0, 17, 0), "version --json"),
    ("skip_if_unchanged", (0, 17, 0), "backup --skip-if-unchanged"),
    ("restore_dry_run", (0, 17, 0), "restore --dry-run"),
    ("snapshot_summary", (0, 17, 0), "snapshots --json carries each snapshot's backup summary"),
    ("exit_code_password", (0, 17, 1), "exit 12 = wrong password"),
    ("backup_error_text", (0, 17, 1), "backup --json error lines carry the error text ({} before)"),
    ("json_exit_errors", (0, 18, 0), "fatal errors as a JSON exit_error line with --json"),
    ("check_json", (0, 18, 0), "check --json"),
    ("backup_start_end", (0, 18, 0), "backup --json summary has backup_start/backup_end"),
    ("rest_full_no_retry", (0, 18, 1), "a full rest-server (507) fails at once instead of retrying"),
    ("forget_failure_exit", (0, 19, 0), "forget exits 3 when a snapshot could not be removed (0 before)"),
)

# restic's environment variables that would change what our explicit settings mean.
_FOREIGN_ENV = ("RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND", "RESTIC_PASSWORD_FILE", "RESTIC_REPOSITORY",
                "RESTIC_REPOSITORY_FILE", "RESTIC_HOST", "RESTIC_KEY_HINT", "RESTIC_FROM_REPOSITORY",
                "RESTIC_FROM_REPOSITORY_FILE", "RESTIC_FROM_PASSWORD", "RESTIC_FROM_PASSWORD_FILE",
                "RESTIC_FROM_PASSWORD_COMMAND", "RESTIC_FROM_KEY_HINT", "RESTIC_PROGRESS_FPS", "RESTIC_COMPRESSION")

SPEC_KEYS = ("restic", "password", "password_file", "init", "port", "ssh_key", "ssh_args", "ssh_command",
             "options", "env", "restic_binary", "snapshot_host", "cache_dir", "cacert", "compression",
             "limit_upload", "limit_download", "lock_wait", "stall_seconds", "connect_seconds",
             "progress_fps", "tmp_dir")

APPEND_ONLY_NOTE = "skipped: the repository is append-only; run forget/prune with the other credential"


# -- versions and features ----------------------------------------------------------------------
def parse_version(text):
    """(major, minor, patch) from ``restic version`` output (text or --json); ValueError otherwise."""
    text = (text or "").strip()
    if text.startswith("{"):
        try:
            text = "restic " + str(json.loads(text).get("version") or "")
        except ValueError:
            pass
    m = re.search(r"restic\s+v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise ValueError("not restic's version output: %r" % text[:200])
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def features_of(version):
    """{feature name: bool} for a version tuple."""
    return dict((name, tuple(version) >= first) for name, first, _what in FEATURES)


def version_string(version):
    return "%d.%d.%d" % tuple(version)


# -- repository strings, redaction ---------------------------------------------------------------
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@/\s]*)@")


def redact(text):
    """``text`` with the password of every URL in it replaced by *** (restic's own convention)."""
    return _URL_CREDENTIALS.sub(lambda m: "%s%s:***@" % (m.group("scheme"), m.group("user")), text or "")


def repository_kind(repository):
    """local, sftp, rest or the backend prefix (s3, b2, rclone, ...: documented as untested)."""
    repo = repository.strip()
    if repo.startswith("local:") or repo.startswith("/") or repo.startswith("./") or ":" not in repo:
        return "local"
    return repo.split(":", 1)[0].lower()


def parse_sftp(repository):
    """(user, host, port, path) of ``sftp:user@host:/path`` or ``sftp://user@host:port//path``."""
    rest = repository[len("sftp:"):]
    port = None
    if rest.startswith("//"):
        m = re.match(r"^//(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?(?P<path>/.*)?$", rest)
        if not m:
            raise ValueError("cannot read the sftp repository %r (sftp://user@host:port//path)" % redact(repository))
        path = m.group("path") or "/"
        if path.startswith("//"):
            path = path[1:]
        return m.group("user"), m.group("host"), int(m.group("port")) if m.group("port") else None, path
    m = re.match(r"^(?:(?P<user>[^@]+)@)?(?P<host>\[[^\]]+\]|[^:]+):(?P<path>.*)$", rest)
    if not m:
        raise ValueError("cannot read the sftp repository %r (sftp:user@host:/path)" % redact(repository))
    return m.group("user"), m.group("host"), port, m.group("path")


def _shell_word(arg):
    """One argument as restic's sftp.command splitter reads it (whitespace splits, quotes group,
    a backslash splits too): plain when safe, else in the quote it does not contain."""
    arg = str(arg)
    if "\\" in arg:
        raise ValueError("restic's sftp.command cannot carry a backslash (%r): use a path without one" % arg)
    if arg and not re.search(r"[\s'\"]", arg):
        return arg
    if '"' not in arg:
        return '"%s"' % arg
    if "'" not in arg:
        return "'%s'" % arg
    raise ValueError("restic's sftp.command cannot carry both quote characters in one argument (%r)" % arg)


def sftp_command(spec, repository):
    """The ``-o sftp.command=...`` value for an sftp repository, or None when restic's own ssh
    invocation does (no port, key or ssh options given). Pure; no secret goes into it."""
    if spec.get("ssh_command"):
        return str(spec["ssh_command"])
    port, key, extra = spec.get("port"), spec.get("ssh_key"), list(spec.get("ssh_args") or [])
    if port is None and not key and not extra:
        return None
    user, host, url_port, _path = parse_sftp(repository)
    words = ["ssh"]
    if port is not None or url_port is not None:
        words += ["-p", str(int(port if port is not None else url_port))]
    if key:
        words += ["-i", str(key)]
    words += [str(a) for a in extra]
    if not any("batchmode" in str(a).lower() for a in extra):
        words += ["-o", "BatchMode=yes"]  # never wait for a password prompt nobody answers
    words += ["%s@%s" % (user, host) if user else host, "-s", "sftp"]
    return " ".join(_shell_word(w) for w in words)


# -- argv builders (pure) -------------------------------------------------------------------------
def global_args(spec, repository, features):
    """Options every restic command of this target gets (never a secret)."""
    out = []
    if spec.get("cache_dir"):
        out += ["--cache-dir", str(spec["cache_dir"])]
    if spec.get("cacert"):
        out += ["--cacert", str(spec["cacert"])]
    if spec.get("limit_upload"):
        out += ["--limit-upload", str(int(spec["limit_upload"]))]
    if spec.get("limit_download"):
        out += ["--limit-download", str(int(spec["limit_download"]))]
    if spec.get("compression") and features.get("compression"):
        out += ["--compression", str(spec["compression"])]
    if repository_kind(repository) == "sftp":
        cmd = sftp_command(spec, repository)
        if cmd:
            out += ["-o", "sftp.command=%s" % cmd]
    for key, value in sorted((spec.get("options") or {}).items()):
        out += ["-o", "%s=%s" % (key, value)]
    return out


def tag_value(value):
    """restic splits --tag values on commas: keep a tag one tag."""
    return re.sub(r"[,\s]+", "_", str(value).strip()) or "unknown"


def set_tags(instance_name, set_id, immich_version, pg_major):
    return ["instance:%s" % tag_value(instance_name), "set:%s" % set_id,
            "immich:%s" % tag_value(str(immich_version or "unknown").lstrip("vV") or "unknown"),
            "pg:%s" % tag_value(pg_major if pg_major not in (None, "") else "unknown")]


def backup_argv(host, tags, parent=None):
    """``restic backup`` of the current folder (the set), as one tree whose paths do not depend on
    where the set lives; hard-linked unchanged files are not re-read."""
    argv = ["backup", "--json", "--host", host, "--ignore-ctime", "--ignore-inode"]
    for tag in tags:
        argv += ["--tag", tag]
    if parent:
        argv += ["--parent", parent]
    return argv + ["."]


def snapshots_argv(instance_name):
    return ["snapshots", "--json", "--no-lock", "--tag", "instance:%s" % tag_value(instance_name)]


def ls_argv(snapshot_id):
    return ["ls", "--json", "--no-lock", snapshot_id]


def forget_argv(snapshot_ids):
    return ["forget"] + list(snapshot_ids)


def check_argv(read_data_subset=None):
    argv = ["check"]
    if read_data_subset:
        if not re.match(r"^(\d+(\.\d+)?%|\d+/\d+|\d+(\.\d+)?[kKmMgGtT]?)$", str(read_data_subset)):
            raise ValueError("read_data_subset is 'x%%', 'n/t' or a size such as 500M, not %r" % (read_data_subset,))
        argv += ["--read-data-subset", str(read_data_subset)]
    return argv


def restore_argv(snapshot_id, target_dir, features, subfolder=None, include=None):
    """``restic restore`` with restic's own verification. With ``subfolder`` the folder's CONTENT
    lands in ``target_dir`` when restic has the <snapshot>:<subfolder> syntax (0.16+); before, the
    folder itself is restored under ``target_dir`` (the caller moves it up)."""
    sub = (subfolder or "").strip("/")
    argv = ["restore"]
    if features.get("restore_json"):
        argv.append("--json")
    if sub and features.get("subfolder_syntax"):
        argv.append("%s:/%s" % (snapshot_id, sub))
        prefix = ""
    else:
        argv.append(snapshot_id)
        prefix = "/" + sub if sub else ""
    argv += ["--target", target_dir, "--verify"]
    includes = ["%s/%s" % (prefix, p.strip("/")) for p in (include or []) if p.strip("/")]
    if not includes and prefix:
        includes = [prefix]
    for inc in includes:
        argv += ["--include", inc]
    return argv


def dump_argv(snapshot_id, path):
    return ["dump", "--no-lock", snapshot_id, "/" + path.lstrip("/")]


def build_env(base, repository, password_file, extra=None, progress_fps=1):
    """restic's environment: the caller's, without restic variables that would override ours, plus
    the repository and the password FILE (never the password)."""
    env = dict((k, v) for k, v in base.items() if k not in _FOREIGN_ENV)
    for key, value in (extra or {}).items():
        env[str(key)] = str(value)
    env["RESTIC_REPOSITORY"] = repository
    env["RESTIC_PASSWORD_FILE"] = password_file
    env["RESTIC_PROGRESS_FPS"] = str(progress_fps)
    env["TZ"] = "UTC"  # lock times and messages in UTC, whatever the host's zone
    return env


class PasswordFile(object):
    """The password in a 0600 file for restic, removed before restic even starts.

    The file is created in a private temporary folder, written, and unlinked at once; restic reads
    it through /dev/fd/<n> (the descriptor is handed to the child only). A kill of this process at
    any moment leaves no file behind. Where /dev/fd does not exist the named file is kept for the
    run and removed on exit (also on an exception)."""

    def __init__(self, secret, tmp_dir=None):
        self.secret = secret
        self.tmp_dir = tmp_dir
        self.fd = None
        self.path = None
        self._folder = None

    def __enter__(self):
        self._folder = tempfile.mkdtemp(prefix="immich-restic-", dir=self.tmp_dir)
        named = os.path.join(self._folder, "password")
        self.fd = os.open(named, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            data = self.secret.encode("utf-8") + b"\n"
            while data:
                data = data[os.write(self.fd, data):]
            if os.path.isdir("/dev/fd"):
                os.unlink(named)
                os.rmdir(self._folder)
                self._folder = None
                self.path = "/dev/fd/%d" % self.fd
            else:
                self.path = named
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def pass_fds(self):
        return (self.fd,) if self.path and self.path.startswith("/dev/fd/") else ()

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


class _UserPasswordFile(object):
    """The user's own password file, passed by path."""

    pass_fds = ()

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


# -- parsers of restic's output -------------------------------------------------------------------
def parse_json_line(line):
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def message_type(obj):
    """message_type (0.17+) or struct_type (ls before 0.17)."""
    return obj.get("message_type") or obj.get("struct_type")


def status_progress(obj, step="restic"):
    """A backup or restore status line as the engine's progress counters."""
    return {
        "step": step,
        "bytes_done": int(obj.get("bytes_done") or obj.get("bytes_restored") or 0),
        "bytes_total": int(obj.get("total_bytes") or 0),
        "files_done": int(obj.get("files_done") or obj.get("files_restored") or 0),
        "files_total": int(obj.get("total_files") or 0),
        "percent": round(float(obj.get("percent_done") or 0) * 100, 1),
        "seconds": int(obj.get("seconds_elapsed") or 0),
    }


def summary_facts(obj):
    """The counters of a backup summary that say what the night cost."""
    keys = ("files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed", "dirs_unmodified",
            "data_blobs", "tree_blobs", "data_added", "data_added_packed", "total_files_processed",
            "total_bytes_processed", "total_duration")
    out = dict((k, obj.get(k)) for k in keys if k in obj)
    out["bytes_added"] = int(obj.get("data_added") or 0)
    out["files_read"] = int(obj.get("files_new") or 0) + int(obj.get("files_changed") or 0)
    return out


def parse_snapshots(text):
    """restic snapshots --json -> list of dicts (empty for 'null' or nothing)."""
    text = (text or "").strip()
    if not text or text == "null":
        return []
    value = json.loads(text)
    return value if isinstance(value, list) else []


def tags_dict(tags):
    """{"instance": ..., "set": ..., ...} from our key:value tags (first wins)."""
    out = {}
    for tag in tags or []:
        if ":" in tag:
            key, value = tag.split(":", 1)
            out.setdefault(key, value)
    return out


def group_sets(snapshots, instance_name):
    """Our sets in a snapshot list: [{"set_id", "good", "info"}], oldest first. A set id held by
    several snapshots (a set sent twice) is one set; its newest snapshot is the one used, all of
    them go when the set is deleted."""
    by_set = {}
    want = tag_value(instance_name)
    for snap in snapshots:
        tags = tags_dict(snap.get("tags"))
        sid = tags.get("set")
        if tags.get("instance") != want or not sid or not SET_ID_RE.match(sid):
            continue
        by_set.setdefault(sid, []).append(snap)
    out = []
    for sid in sorted(by_set):
        snaps = sorted(by_set[sid], key=lambda s: s.get("time") or "")
        newest = snaps[-1]
        info = {
            "snapshot_id": newest.get("id"), "short_id": newest.get("short_id") or (newest.get("id") or "")[:8],
            "time": newest.get("time"), "tags": newest.get("tags") or [], "hostname": newest.get("hostname"),
            "paths": newest.get("paths") or [], "snapshots": [s.get("id") for s in snaps],
            "immich_version": tags_dict(newest.get("tags")).get("immich"),
            "pg_major": tags_dict(newest.get("tags")).get("pg"),
        }
        if newest.get("summary"):
            info["summary"] = newest["summary"]
        out.append({"set_id": sid, "good": True, "info": info})
    return out


def parse_lock(text, lock_id=None):
    """restic cat lock -> {"id", "exclusive", "hostname", "pid", "username", "time"}."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    return {"id": lock_id, "exclusive": bool(obj.get("exclusive")), "hostname": obj.get("hostname"),
            "pid": obj.get("pid"), "username": obj.get("username"), "time": obj.get("time")}


def describe_lock(lock):
    kind = "exclusive" if lock.get("exclusive") else "shared"
    when = (lock.get("time") or "?")[:19].replace("T", " ")
    return "%s lock %s of pid %s on %s (user %s) since %s UTC" % (
        kind, (lock.get("id") or "?")[:8], lock.get("pid"), lock.get("hostname"), lock.get("username"), when)


# Error classification: (reason, pattern), first match wins. Exit codes first where restic has them.
UNREACHABLE_RE = (r"connection refused|no route to host|no such host|network is unreachable|i/o timeout|"
                  r"connection reset|connection timed out|timed out|unable to start the sftp session|"
                  r"Could not resolve hostname|ssh: connect to host|server unexpectedly closed|broken pipe|"
                  r"Connection closed by|lost connection|connection lost")
FULL_RE = r"no space left on device|Insufficient Storage|\b507\b|\b413\b|quota exceeded|disk quota|file too large"
CORRUPT_RE = (r"ciphertext verification failed|Pack ID does not match|repository contains errors|damaged pack|"
              r"invalid data returned|hash does not match|checksum mismatch|decrypting blob .* failed|"
              r"contains \d+ errors")
_CLASSES = (
    ("auth", r"wrong password or no key found"),
    ("auth", r"\b401\b|Unauthorized"),
    ("auth", r"Permission denied \((publickey|password|keyboard)|Host key verification failed|"
             r"REMOTE HOST IDENTIFICATION HAS CHANGED|Too many authentication failures"),
    ("locked", r"repository is already locked|unable to create lock in backend"),
    ("full", FULL_RE),
    ("appendonly", r"\b403\b|Forbidden|append-only mode"),
    ("unreachable", UNREACHABLE_RE),
    ("corrupt", CORRUPT_RE),
    ("missing", r"repository does not exist|unable to open config file|Is there a repository at the following|"
                r"<config/> does not exist"),
    ("permission", r"permission denied|operation not permitted|read-only file system"),
)
_EXIT_CODES = {10: "missing", 11: "locked", 12: "auth"}


def classify(rc, text, features=None):
    """(reason, the line of restic's output that says it) for a failed restic command."""
    features = features or {}
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    reason = None
    if rc in _EXIT_CODES and (features.get("exit_codes") or rc != 12 or features.get("exit_code_password")):
        reason = _EXIT_CODES[rc]
    if reason is None and (rc == 130 or (isinstance(rc, int) and rc < 0)):
        reason = "interrupted"  # restic's exit on SIGINT, or killed by a signal
    hit = None
    for name, pattern in _CLASSES:
        if reason is not None and name != reason:
            continue
        found = [ln for ln in lines if re.search(pattern, ln, re.IGNORECASE)]
        if found:
            reason = name
            hit = next((ln for ln in found if ln.startswith("Fatal:")), found[-1])
            break
    reason = reason or "failed"
    fatal = [ln for ln in lines if ln.startswith("Fatal:") or ln.startswith("{")]
    detail = _plain(hit or (fatal[-1] if fatal else (lines[-1] if lines else "exit code %s" % rc)))
    ssh = [ln for ln in lines if ln.startswith("subprocess ssh:") and "Warning: Permanently added" not in ln]
    if ssh and reason in ("unreachable", "auth") and ssh[-1] != detail:
        detail = "%s; %s" % (ssh[-1][len("subprocess ssh: "):], detail)
    return reason, detail


def _plain(line):
    """A JSON message line of restic (exit_error, error) as its text."""
    obj = parse_json_line(line)
    if not obj:
        return line
    if obj.get("message"):
        return obj["message"].splitlines()[0]
    err = obj.get("error")
    if isinstance(err, dict) and err.get("message"):
        return "%s%s" % ("%s: " % obj["item"] if obj.get("item") else "", err["message"])
    return line


def _manifest_entries(path):
    """(components, path, size) of a files.manifest.tsv, one at a time (v1 and v2 lines)."""
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) < 4:
                raise ValueError("%s: damaged line %r" % (path, line[:200]))
            rel = _unescape(parts[0])
            yield _key(rel), rel, int(parts[1])


def _unescape(field):
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 1 < len(field):
            out.append({"t": "\t", "n": "\n", "\\": "\\"}.get(field[i + 1], field[i + 1]))
            i += 2
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _key(relpath):
    """Sort key of a path the way restic orders a tree (names as bytes, component by component)."""
    return [c.encode("utf-8", "surrogateescape") for c in relpath.split("/")]


class SnapshotProof(object):
    """Every file of a snapshot against what the set says it holds, as ``restic ls --json`` streams:

    - files/...: against files.manifest.tsv (merge join: both are in path-component order);
    - db/<dump>: against the dump's manifest (bytes);
    - everything else (set.json, instance.json, the manifest, compose/): against the set folder.
    Memory stays flat with the number of originals. A manifest that is not in that order (not
    written by this collection) is compared with ``ordered=False``: held in memory instead."""

    def __init__(self, set_dir, ordered=True):
        self.set_dir = set_dir
        self.expected = 0
        self.seen = 0
        self.bytes = 0
        self.missing = 0
        self.extra = 0
        self.mismatched = 0
        self.examples = []
        self.unordered = False
        self._last_key = None
        self._others = self._small_files(set_dir)
        self._dumps = self._dump_sizes(set_dir)
        path = os.path.join(set_dir, FILES_MANIFEST)
        self._manifest = _manifest_entries(path) if os.path.exists(path) else iter(())
        self._next = None
        self._held = None
        if ordered:
            self._advance()
        else:
            self._held = dict((rel, size) for _key, rel, size in self._manifest)
            self.expected = len(self._held)

    @staticmethod
    def _small_files(set_dir):
        out = {}
        for top, dirs, files in os.walk(set_dir):
            rel_top = os.path.relpath(top, set_dir)
            if rel_top == ".":
                dirs[:] = [d for d in dirs if d != "files"]
            for name in files:
                full = os.path.join(top, name)
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                rel = name if rel_top == "." else os.path.join(rel_top, name)
                out[rel] = os.lstat(full).st_size
        return out

    @staticmethod
    def _dump_sizes(set_dir):
        out = {}
        db = os.path.join(set_dir, "db")
        for name in sorted(os.listdir(db)) if os.path.isdir(db) else []:
            if name.endswith(".manifest.json"):
                man = read_json(os.path.join(db, name)) or {}
                size = man.get("bytes", man.get("size"))
                if size is not None:
                    out["db/" + name[:-len(".manifest.json")]] = int(size)
        return out

    def _advance(self):
        prev = self._next
        self._next = next(self._manifest, None)
        if self._next is not None:
            self.expected += 1
            if prev is not None and self._next[0] < prev[0]:
                self.unordered = True

    def _example(self, what):
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(what)

    def node(self, obj):
        """One ``restic ls --json`` line (already parsed)."""
        if message_type(obj) != "node" or obj.get("type") != "file":
            return
        rel = (obj.get("path") or "").lstrip("/")
        size = int(obj.get("size") or 0)
        self.seen += 1
        self.bytes += size
        if rel.startswith("files/") and self._held is not None:
            want = self._held.pop(rel[len("files/"):], None)
            if want is None:
                self.extra += 1
                self._example("extra %s" % rel)
            elif want != size:
                self.mismatched += 1
                self._example("size of %s: %d in the snapshot, %d in the manifest" % (rel, size, want))
            return
        if rel.startswith("files/"):
            key = _key(rel[len("files/"):])
            if self._last_key is not None and key < self._last_key:
                self.unordered = True
            self._last_key = key
            while self._next is not None and self._next[0] < key:
                self.missing += 1
                self._example("missing files/%s" % self._next[1])
                self._advance()
            if self._next is not None and self._next[0] == key:
                if self._next[2] != size:
                    self.mismatched += 1
                    self._example("size of %s: %d in the snapshot, %d in the manifest" % (rel, size, self._next[2]))
                self._advance()
            else:
                self.extra += 1
                self._example("extra %s" % rel)
            return
        local = self._others.pop(rel, None)
        expect = self._dumps.get(rel, local)
        if expect is None:
            self.extra += 1
            self._example("extra %s" % rel)
        elif expect != size or (local is not None and local != size):
            self.mismatched += 1
            self._example("size of %s: %d in the snapshot, %s in the set" % (rel, size, expect))

    def finish(self):
        for rel in sorted(self._held or {}):
            self.missing += 1
            self._example("missing files/%s" % rel)
        while self._next is not None:
            self.missing += 1
            self._example("missing files/%s" % self._next[1])
            self._advance()
        for rel in sorted(self._others):
            self.missing += 1
            self._example("missing %s" % rel)
        self._others = {}
        return self.result()

    def result(self):
        return {"files_in_snapshot": self.seen, "bytes_in_snapshot": self.bytes, "manifest_files": self.expected,
                "missing": self.missing, "extra": self.extra, "mismatched": self.mismatched,
                "examples": list(self.examples), "ok": not (self.missing or self.mismatched or self.unordered),
                "unordered": self.unordered}


# -- running restic -------------------------------------------------------------------------------
class RunResult(object):
    def __init__(self, rc, stdout, stderr, killed=None, seconds=0.0):
        self.rc = rc
        self.stdout = stdout      # captured stdout lines (only with capture=True) or the last ones
        self.stderr = stderr      # the last STDERR_TAIL lines
        self.killed = killed      # why we stopped it, or None
        self.seconds = seconds

    @property
    def text(self):
        return "\n".join(list(self.stderr) + [ln for ln in self.stdout if '"exit_error"' in ln or
                                              '"message_type":"error"' in ln or not ln.startswith("{")])


class Runner(object):
    """Runs restic: line callbacks for stdout and stderr, a tick every second that may stop it
    (SIGINT first, so restic removes its lock; SIGKILL after a grace period), no shell, no TTY."""

    def __init__(self, grace=15.0):
        self.grace = grace
        self.pid = None

    def run(self, argv, env, *, cwd=None, pass_fds=(), on_stdout=None, on_stderr=None, tick=None, capture=False):
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=tuple(pass_fds), close_fds=True)
        self.pid = proc.pid
        out_lines = [] if capture else collections.deque(maxlen=50)
        err_lines = collections.deque(maxlen=STDERR_TAIL)
        killed = None
        sel = selectors.DefaultSelector()
        bufs = {}
        try:
            for stream, name in ((proc.stdout, "out"), (proc.stderr, "err")):
                os.set_blocking(stream.fileno(), False)
                sel.register(stream, selectors.EVENT_READ, name)
                bufs[name] = b""
            last_tick = time.monotonic()
            while sel.get_map():
                for key, _ev in sel.select(timeout=1.0):
                    try:
                        data = os.read(key.fileobj.fileno(), CHUNK)
                    except (BlockingIOError, InterruptedError):
                        continue
                    name = key.data
                    if not data:
                        sel.unregister(key.fileobj)
                        lines = [bufs[name]] if bufs[name] else []
                        bufs[name] = b""
                    else:
                        chunk = bufs[name] + data
                        parts = chunk.split(b"\n")
                        bufs[name] = parts.pop()
                        lines = parts
                    for raw in lines:
                        line = raw.decode("utf-8", "replace").rstrip("\r")
                        if name == "out":
                            out_lines.append(line)
                            if on_stdout:
                                on_stdout(line)
                        else:
                            # restic's status bar writes carriage returns and escapes on a terminal only,
                            # but be safe: keep the last segment of a line.
                            line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).split("\r")[-1]
                            err_lines.append(line)
                            if on_stderr:
                                on_stderr(line)
                now = time.monotonic()
                if tick and killed is None and now - last_tick >= 1.0:
                    last_tick = now
                    why = tick(now - started)
                    if why:
                        killed = why
                        self._stop(proc)
            rc = proc.wait()
        finally:
            sel.close()
            if proc.poll() is None:
                self._stop(proc)
            for stream in (proc.stdout, proc.stderr):
                stream.close()
            self.pid = None
        return RunResult(rc, out_lines, err_lines, killed, time.monotonic() - started)

    def _stop(self, proc):
        """SIGINT (restic cleans up: its lock goes), then SIGKILL after the grace period."""
        if proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except OSError:
            pass

    def spawn(self, argv, env, cwd=None, pass_fds=()):
        """A restic process whose stdout the caller reads (restic dump); stderr drained in a thread."""
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=tuple(pass_fds), close_fds=True)
        tail = collections.deque(maxlen=STDERR_TAIL)

        def drain():
            for raw in iter(proc.stderr.readline, b""):
                tail.append(raw.decode("utf-8", "replace").rstrip("\n"))
        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        proc.stderr_tail = tail
        proc.stderr_thread = thread
        return proc


class ResticStream(object):
    """File-like reader of ``restic dump`` output. At EOF restic's exit code is checked: a dump that
    restic could not deliver whole (a damaged pack, a lost connection) raises TargetError instead of
    looking like a complete file."""

    def __init__(self, proc, explain, path):
        self._proc = proc
        self._explain = explain
        self.path = path
        self.bytes = 0
        self.closed = False
        self._done = False

    def _finish(self):
        if self._done:
            return
        self._done = True
        rc = self._proc.wait()
        thread = getattr(self._proc, "stderr_thread", None)
        if thread is not None:
            thread.join(5)
        if rc != 0:
            text = "\n".join(getattr(self._proc, "stderr_tail", []) or [])
            raise self._explain("dump of %s" % self.path, rc, text)

    def read(self, size=-1):
        if self.closed:
            raise ValueError("read of a closed restic stream")
        if size is None or size < 0:
            chunks = []
            while True:
                block = self.read(CHUNK)
                if not block:
                    return b"".join(chunks)
                chunks.append(block)
        data = self._proc.stdout.read(size) if size else b""
        if size and not data:
            self._finish()
        self.bytes += len(data)
        return data

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def __iter__(self):
        while True:
            block = self.read(CHUNK)
            if not block:
                return
            yield block

    def fileno(self):
        return self._proc.stdout.fileno()

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self._proc.poll() is None:
            try:
                self._proc.send_signal(signal.SIGINT)
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()
        self._done = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _call_progress(progress, counters):
    """The engine's callback takes either one dict or keyword counters: call it the way it accepts."""
    if progress is None:
        return
    accepts = getattr(progress, "_restic_accepts", None)
    if accepts is None:
        accepts = "dict"
        try:
            params = list(inspect.signature(progress).parameters.values())
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
            if not positional and any(p.kind == p.VAR_KEYWORD for p in params):
                accepts = "kwargs"
        except (TypeError, ValueError):
            pass
        try:
            progress._restic_accepts = accepts
        except (AttributeError, TypeError):
            pass
    if accepts == "kwargs":
        progress(**counters)
    else:
        progress(dict(counters))


# -- the target -----------------------------------------------------------------------------------
class ResticTarget(Target):
    """An encrypted restic repository (local path, sftp:, rest:, or another restic backend)."""

    kind = "restic"

    def __init__(self, spec, instance_name, runner=None):
        Target.__init__(self, spec, instance_name)
        repo = spec.get("restic")
        if not isinstance(repo, str) or not repo.strip():
            raise ValueError("a restic target needs `restic: <repository>` (a path, sftp:user@host:/path or rest:http://host:port/)")
        self.repository = repo.strip()
        if spec.get("password") and spec.get("password_file"):
            raise ValueError("the restic target %s has both `password` and `password_file`: keep one" % self.label)
        if not spec.get("password") and not spec.get("password_file"):
            raise ValueError("the restic target %s needs `password` (from a vault, no_log) or `password_file` (a 0600 "
                             "file on the host)" % self.label)
        if repository_kind(self.repository) == "sftp":
            parse_sftp(self.repository)
            sftp_command(spec, self.repository)  # raises ValueError on an argument restic cannot carry
        self.unknown_keys = sorted(k for k in spec if k not in SPEC_KEYS)
        self.binary = spec.get("restic_binary") or "restic"
        self.snapshot_host = tag_value(spec.get("snapshot_host") or instance_name)
        self.lock_wait = float(spec.get("lock_wait", 600))
        self.stall_seconds = float(spec.get("stall_seconds", 900))
        self.connect_seconds = float(spec.get("connect_seconds", 30))
        self.progress_fps = float(spec.get("progress_fps", 1))
        self.runner = runner or Runner()
        self.retention_note = None
        self._version = None
        self._append_only = None

    # -- naming, version ------------------------------------------------------------------------
    @property
    def label(self):
        return "restic:" + redact(self.repository)

    @property
    def repo_label(self):
        """The repository string as it may be shown (REST password as ***)."""
        return redact(self.repository)

    def version(self):
        """The installed restic's version tuple (cached); TargetError when restic is missing or too old."""
        if self._version is None:
            try:
                res = self.runner.run([self.binary, "version"], self._plain_env(), capture=True)
            except OSError as exc:
                raise TargetError(
                    "%s: the restic program (%s) cannot be run here (%s). Nothing was sent to the "
                    "repository. Install Debian's restic on this host (`apt-get install restic`; 0.14 or newer, "
                    "trixie's 0.18 .deb also installs on bookworm) or set restic_binary." % (
                        self.label, self.binary, exc.strerror or exc), reason="failed") from None
            try:
                version = parse_version("\n".join(res.stdout))
            except ValueError:
                raise TargetError("%s: `%s version` did not name a version (%s)." % (
                    self.label, self.binary, self._scrub(res.text)[-300:]), reason="failed") from None
            if version < MIN_VERSION:
                raise TargetError(
                    "%s: restic %s is older than %s, the oldest this collection supports (it is what "
                    "Debian 12 ships). Nothing was sent. Install a newer restic package." % (
                        self.label, version_string(version), version_string(MIN_VERSION)), reason="failed")
            self._version = version
        return self._version

    @property
    def features(self):
        return features_of(self.version())

    def describe(self):
        out = Target.describe(self)
        out["repository_kind"] = repository_kind(self.repository)
        try:
            version = self.version()
            out["version"] = version_string(version)
            out["features"] = sorted(k for k, v in features_of(version).items() if v)
        except TargetError as exc:
            out["version"] = None
            out["error"] = str(exc)
        if self.unknown_keys:
            out["unknown_keys"] = self.unknown_keys
        return out

    # -- plumbing ---------------------------------------------------------------------------------
    def _plain_env(self):
        return dict((k, v) for k, v in os.environ.items() if k not in _FOREIGN_ENV)

    def _password(self):
        if self.spec.get("password_file"):
            return _UserPasswordFile(str(self.spec["password_file"]))
        return PasswordFile(str(self.spec["password"]), self.spec.get("tmp_dir"))

    def _scrub(self, text):
        text = redact(text or "")
        secret = self.spec.get("password")
        if secret and len(str(secret)) >= 3:
            text = text.replace(str(secret), "***")
        m = _URL_CREDENTIALS.search(self.repository)
        if m and m.group("pw") and len(m.group("pw")) >= 3:
            text = text.replace(m.group("pw"), "***")
        return text

    def _argv(self, args):
        return [self.binary] + global_args(self.spec, self.repository, self.features) + list(args)

    def _exec(self, args, *, cwd=None, on_stdout=None, on_stderr=None, tick=None, capture=False):
        argv = self._argv(args)
        with self._password() as pw:
            env = build_env(os.environ, self.repository, pw.path, self.spec.get("env"), self.progress_fps)
            return self.runner.run(argv, env, cwd=cwd, pass_fds=pw.pass_fds, on_stdout=on_stdout,
                                   on_stderr=on_stderr, tick=tick, capture=capture)

    def _error(self, op, rc, text, killed=None, reason=None, **facts):
        """TargetError for a failed restic command: names the repository, what failed, what it means
        for the backups, and what to do."""
        features = self.features if self._version else {}
        if killed:
            # we stopped restic (it kept retrying): the retry line says why, not the exit code of SIGINT
            got, _line = classify(None, killed, features)
            got, detail = ("unreachable" if got in ("failed", "interrupted") else got), killed
        else:
            got, detail = classify(rc, text, features)
        reason = reason or got
        detail = self._scrub(detail)
        label = self.label
        kind = repository_kind(self.repository)
        how_reach = {
            "sftp": "check that the SSH host is up and that `ssh` to it works with the same user, port and key",
            "rest": "check that the REST server is running and that `curl` reaches its URL from this host",
            "local": "check that the disk holding it is mounted",
        }.get(kind, "check that the storage is reachable from this host")
        texts = {
            "missing": "there is no restic repository at this location (restic found no config file there): "
                       "nothing has ever been stored there, so this target holds no backups. If it is a new "
                       "repository, set `init: true` on this target once (or run `restic -r '%s' init` with its "
                       "password); if it should exist, check the path or URL (an unmounted disk or a wrong path "
                       "looks the same)" % self.repo_label,
            "auth": self._auth_text(detail),
            "unreachable": "the repository cannot be reached (%s). Nothing of this run is stored there; the local "
                           "set is complete and the next run sends it (a snapshot cut short is never half-"
                           "written: restic reuses what it uploaded). %s" % (detail, how_reach),
            "locked": "the repository is locked by another restic run. Nothing of this run was changed",
            "full": "the repository's storage is full (%s). No snapshot was written by this run (restic writes "
                    "the snapshot last) and the existing ones are intact; the data already uploaded is reused "
                    "next time. Free space on the repository side (or forget and prune old snapshots there with "
                    "the credential that may delete) and run again" % detail,
            "appendonly": APPEND_ONLY_NOTE,
            "corrupt": "the repository holds damaged data (%s). Do not restore from it until `restic -r '%s' check "
                       "--read-data` passes: run it, then %s, as restic's troubleshooting guide says; the next backup "
                       "re-uploads what is missing" % (detail, self.repo_label, self._repair_advice()),
            "permission": "restic has no permission on the repository (%s): check the owner and mode of its "
                          "folder on the storage side" % detail,
            "interrupted": "restic was interrupted (%s); nothing was stored by it, the next run starts again" % detail,
            "failed": "restic failed (%s)" % detail,
        }
        msg = "%s: %s failed: %s." % (label, op, texts.get(reason, texts["failed"]))
        if reason not in ("unreachable", "full", "corrupt", "permission", "interrupted", "failed"):
            msg += " (restic said: %s)" % detail
        return TargetError(msg, reason=reason, detail=detail, **facts)

    def _repair_advice(self):
        features = self.features if self._version else {}
        if features.get("repair_packs"):
            return "`restic repair packs <ids check named>` and `restic repair snapshots --forget`"
        return ("remove the damaged pack files check named from the repository's data/ folder, `restic "
                "rebuild-index`, and run the backup again (restic 0.16.1+ has `restic repair packs`)")

    def _auth_text(self, detail):
        if re.search(r"\b401\b|Unauthorized", detail or "", re.IGNORECASE):
            return ("the REST server refused the user name or password in the repository URL (HTTP 401). Nothing "
                    "was written; the snapshots there are untouched. Fix the credentials in `restic:` (rest:"
                    "http://user:password@host:port/user/) or the server's .htpasswd")
        if re.search(r"publickey|Host key|IDENTIFICATION|authentication failures", detail or "", re.IGNORECASE):
            return ("the SSH host refused this host's login (%s). Nothing was written. Check `ssh_key`, the user "
                    "in the repository string and the remote authorized_keys" % detail)
        return ("the repository exists but this password does not open it (restic: wrong password or no key "
                "found). Nothing was written; the snapshots there are untouched and still need the password they "
                "were made with. Fix `password` / `password_file` of this target (`restic -r '%s' key list` with "
                "the right password lists its keys)" % self.repo_label)

    def _check_failed(self, op, res, reason=None):
        if res.rc != 0 or res.killed:
            raise self._error(op, res.rc, res.text, killed=res.killed, reason=reason)
        return res

    def _connect_watch(self):
        """A tick that stops restic when it is retrying a connection for longer than connect_seconds
        (restic itself would retry for up to 15 minutes before a preflight answers)."""
        state = {"retry": None}

        def on_stderr(line):
            if "retrying after" in line or re.search(UNREACHABLE_RE, line, re.IGNORECASE):
                state["retry"] = line

        def tick(elapsed):
            if state["retry"] and elapsed >= self.connect_seconds:
                return "no answer for %ds while restic retried: %s" % (elapsed, state["retry"])
            return None
        return on_stderr, tick

    def _stall_watch(self, state):
        """A tick for long commands: stop restic when it made no progress for stall_seconds while
        retrying a backend error (a lost connection, a full server): restic alone would retry each
        request for up to 15 minutes. ``state["moved"]`` is refreshed by the caller on progress
        (which also clears the retry mark); retries that stopped a minute ago are forgotten."""
        state.setdefault("moved", time.monotonic())

        def on_stderr(line):
            if "retrying after" in line or re.search(UNREACHABLE_RE + "|" + FULL_RE, line, re.IGNORECASE):
                now = time.monotonic()
                state["retry"] = line
                state["retry_last"] = now
                state.setdefault("retry_since", now)

        def tick(_elapsed):
            now = time.monotonic()
            if state.get("retry_since") and now - state.get("retry_last", now) > 60:
                for key in ("retry", "retry_since", "retry_last"):
                    state.pop(key, None)
            since = state.get("retry_since")
            if since and now - since >= self.stall_seconds and now - state["moved"] >= self.stall_seconds:
                return "no progress for %ds while restic retried: %s" % (int(now - state["moved"]), state["retry"])
            return None
        return on_stderr, tick

    @staticmethod
    def _moved(state):
        state["moved"] = time.monotonic()
        for key in ("retry", "retry_since", "retry_last"):
            state.pop(key, None)

    # -- locks ------------------------------------------------------------------------------------
    def locks(self):
        """The repository's locks with their owners (``list locks`` + ``cat lock``, no lock taken)."""
        res = self._exec(["list", "locks", "--no-lock"], capture=True)
        if res.rc != 0:
            return []
        out = []
        for lock_id in [ln.strip() for ln in res.stdout if re.match(r"^[0-9a-f]{64}$", ln.strip())][:20]:
            got = self._exec(["cat", "lock", lock_id, "--no-lock"], capture=True)
            if got.rc == 0:
                info = parse_lock("\n".join(got.stdout), lock_id)
                if info:
                    out.append(info)
        return out

    def remove_stale_locks(self):
        """``restic unlock``: removes only the locks restic itself calls stale (its process is gone
        from this host, or it was not refreshed for 30 minutes). Returns the removed locks."""
        before = self.locks()
        if not before:
            return []
        self._exec(["unlock"])
        after = set(lock["id"] for lock in self.locks())
        return [lock for lock in before if lock["id"] not in after]

    def lock(self, holder=None, stale_seconds=None, wait_seconds=None):
        """restic locks by itself; here: clear stale locks of dead runs (restic's rules) and set how
        long the commands of this run wait for a live lock."""
        if wait_seconds is not None:
            self.lock_wait = float(wait_seconds)
        removed = self.remove_stale_locks()
        return {"removed_stale_locks": [describe_lock(x) for x in removed]}

    def unlock(self, holder=None):
        return None

    def _run_locking(self, op, args, **kw):
        """Run a command that takes a lock: wait for a live lock up to lock_wait (--retry-lock where
        restic has it, else our own bounded retries), remove stale locks once, then fail naming the
        lock's owner."""
        deadline = time.monotonic() + max(self.lock_wait, 0)
        unlocked = False
        while True:
            remaining = deadline - time.monotonic()
            extra = []
            if self.features["retry_lock"] and remaining >= 1:
                extra = ["--retry-lock", "%ds" % int(remaining)]
            res = self._exec(extra + list(args), **kw)
            if res.rc == 0 and not res.killed:
                return res
            reason, _detail = classify(res.rc, res.text, self.features)
            if reason != "locked" or res.killed:
                return res
            if not unlocked:
                unlocked = True
                if self.remove_stale_locks():
                    continue
            if time.monotonic() >= deadline or self.features["retry_lock"]:
                owners = self.locks()
                named = "; ".join(describe_lock(x) for x in owners) or "a lock that went away meanwhile"
                raise TargetError(
                    "%s: %s waited %ds for the repository lock and gave up: held by %s. Nothing of "
                    "this run was changed. That run is alive by restic's rules (its process exists on its host, "
                    "or it refreshed the lock in the last 30 minutes): let it finish. Only if you are sure no "
                    "restic uses this repository any more, `restic -r '%s' unlock --remove-all` removes it." % (
                        self.label, op, int(self.lock_wait), named, self.repo_label),
                    reason="locked", locks=owners)
            time.sleep(min(5.0, max(deadline - time.monotonic(), 0.1)))

    # -- preflight --------------------------------------------------------------------------------
    def check(self):
        """Reachable, initialised, password right (``restic cat config``, no lock). Creates the
        repository only when the target says ``init: true``."""
        version = self.version()
        on_err, tick = self._connect_watch()
        res = self._exec(["cat", "config", "--no-lock"], capture=True, on_stderr=on_err, tick=tick)
        initialized = False
        if res.rc != 0 or res.killed:
            reason, _d = classify(res.rc, res.killed or res.text, self.features)
            if res.killed:
                reason = "unreachable"
            if reason == "missing" and self.spec.get("init"):
                init = self._exec(["init"], capture=True)
                self._check_failed("init", init)
                initialized = True
                res = self._exec(["cat", "config", "--no-lock"], capture=True)
            self._check_failed("the preflight check", res, reason=reason if res.killed else None)
        try:
            config = json.loads("\n".join(res.stdout))
        except ValueError:
            config = {}
        return {"version": version_string(version), "features": sorted(k for k, v in self.features.items() if v),
                "repository_version": config.get("version"), "repository_id": config.get("id"),
                "initialized": initialized, "label": self.label}

    # -- sending a set ----------------------------------------------------------------------------
    def _snapshot_list(self):
        res = self._exec(snapshots_argv(self.instance_name), capture=True)
        self._check_failed("listing snapshots", res)
        try:
            return parse_snapshots("\n".join(res.stdout))
        except ValueError:
            raise TargetError("%s: `restic snapshots --json` gave output that is not JSON." % self.label,
                              reason="failed") from None

    def sets(self):
        """This instance's sets in the repository (snapshots tagged instance:<name>), oldest first."""
        return group_sets(self._snapshot_list(), self.instance_name)

    @staticmethod
    def _parent(held, set_id, previous):
        """The snapshot restic compares with: this set's own (a set sent again), else the previous set's,
        else the instance's newest. Explicit: the set folder's path changes every night, so restic's own
        choice (same paths) would find none and read every file."""
        by_set = dict((e["set_id"], e["info"]["snapshot_id"]) for e in held)
        for sid in (set_id, previous):
            if sid and sid in by_set:
                return by_set[sid]
        return held[-1]["info"]["snapshot_id"] if held else None

    def send(self, set_dir, set_info, previous=None, progress=None):
        """One ``restic backup`` of the promoted set, then its proof (``restic ls`` against the
        manifests). Raises TargetError when restic fails or the proof finds a difference."""
        started = time.monotonic()
        set_dir = os.path.abspath(set_dir)
        set_info = set_info or read_json(os.path.join(set_dir, "set.json")) or {}
        set_id = set_info.get("set_id") or os.path.basename(set_dir)
        inst = read_json(os.path.join(set_dir, "instance.json")) or {}
        pg = inst.get("pg_major") or set_info.get("pg_major")
        if pg in (None, "") and set_info.get("server_version"):
            pg = str(set_info["server_version"]).split(".", 1)[0]
        tags = set_tags(self.instance_name, set_id, set_info.get("immich_version") or inst.get("immich_version"), pg)
        held = self.sets()
        parent = self._parent(held, set_id, previous or set_info.get("previous"))
        state = {"moved": time.monotonic(), "summary": None, "errors": [], "last": None}
        on_err, tick = self._stall_watch(state)

        def on_stdout(line):
            obj = parse_json_line(line)
            if obj is None:
                return
            kind = obj.get("message_type")
            if kind == "status":
                counters = status_progress(obj)
                mark = (counters["bytes_done"], counters["files_done"])
                if mark != state["last"]:
                    state["last"] = mark
                    self._moved(state)
                _call_progress(progress, counters)
            elif kind == "summary":
                state["summary"] = obj
            elif kind == "error":
                err = obj.get("error")
                text = err.get("message") if isinstance(err, dict) else err
                if len(state["errors"]) < MAX_EXAMPLES:
                    state["errors"].append("%s: %s" % (obj.get("item"), text or "(restic gave no text)"))

        res = self._run_locking("backup", backup_argv(self.snapshot_host, tags, parent), cwd=set_dir,
                                on_stdout=on_stdout, on_stderr=on_err, tick=tick)
        summary = state["summary"]
        if res.rc not in (0, 3) or res.killed or not summary or not summary.get("snapshot_id"):
            raise self._error("backup of set %s" % set_id, res.rc, res.text, killed=res.killed, set_id=set_id)
        snapshot_id = self._full_id(summary["snapshot_id"])
        facts = summary_facts(summary)
        if res.rc == 3:
            self._discard(snapshot_id)
            raise TargetError("%s: backup of set %s could not read some files of the set (%s); the "
                              "incomplete snapshot was discarded where the repository allows it. The local set is "
                              "unaffected. Check the set folder's permissions." % (
                                  self.label, set_id, "; ".join(state["errors"]) or self._scrub(res.text)[-300:]),
                              reason="failed", set_id=set_id, snapshot_id=snapshot_id)
        proof = self.prove(snapshot_id, set_dir)
        result = {"set_id": set_id, "snapshot_id": snapshot_id, "parent": parent, "verified": proof["ok"],
                  "seconds": round(time.monotonic() - started, 2), "backup_seconds": round(res.seconds, 2),
                  "proof": proof, "tags": tags, "version": version_string(self.version())}
        result.update(facts)
        if not proof["ok"]:
            discarded = self._discard(snapshot_id)
            raise TargetError(
                "%s: the snapshot %s of set %s does not match the set (%d missing, %d of another "
                "size%s; e.g. %s). It %s. The local set is unaffected; run `restic -r '%s' check` and send again." % (
                    self.label, snapshot_id[:8], set_id, proof["missing"], proof["mismatched"],
                    ", listing out of order" if proof["unordered"] else "", "; ".join(proof["examples"][:3]),
                    "was forgotten" if discarded else "could not be forgotten (append-only?): it is not a proven copy",
                    self.repo_label), reason="corrupt", **result)
        return result

    def _full_id(self, snapshot_id):
        if len(snapshot_id) == 64:
            return snapshot_id
        res = self._exec(["snapshots", "--json", "--no-lock", snapshot_id], capture=True)
        try:
            snaps = parse_snapshots("\n".join(res.stdout))
        except ValueError:
            snaps = []
        return snaps[0].get("id") if snaps else snapshot_id

    def _discard(self, snapshot_id):
        """Forget a snapshot that is not a proven copy; False when the repository refuses."""
        if self.append_only():
            return False
        res = self._run_locking("forget", forget_argv([snapshot_id]))
        return res.rc == 0 and not re.search(r"403|Forbidden|unable to remove", res.text)

    def prove(self, snapshot_id, set_dir):
        """Stream ``restic ls --json`` of the snapshot and compare every file with the set's manifests."""
        for ordered in (True, False):
            proof = SnapshotProof(set_dir, ordered=ordered)

            def on_stdout(line, proof=proof):
                obj = parse_json_line(line)
                if obj is not None:
                    proof.node(obj)
            res = self._exec(ls_argv(snapshot_id), on_stdout=on_stdout)
            self._check_failed("listing snapshot %s" % snapshot_id[:8], res)
            result = proof.finish()
            if not result["unordered"]:
                break
        result["ordered_merge"] = ordered
        return result

    # -- retention --------------------------------------------------------------------------------
    def append_only(self):
        """True when the repository refuses deletes (a rest-server started --append-only). Probed for
        rest: repositories with one DELETE of a file name no restic file can have (all zeros); other
        kinds are found out when forget is refused."""
        if self._append_only is None:
            self._append_only = False
            if repository_kind(self.repository) == "rest":
                self._append_only = _rest_refuses_delete(self.repository[len("rest:"):], self.spec.get("cacert"))
        return self._append_only

    def delete(self, set_ids):
        """``restic forget`` of the snapshots of these sets (the policy is retention.plan's). On an
        append-only repository nothing is deleted and ``retention_note`` says why."""
        self.retention_note = None
        wanted = set(set_ids)
        held = dict((e["set_id"], e) for e in self.sets())
        ids = [snap for sid in sorted(wanted) if sid in held for snap in held[sid]["info"]["snapshots"]]
        if not ids:
            return {"deleted": [], "skipped": [], "note": None}
        if self.append_only():
            self.retention_note = APPEND_ONLY_NOTE
            return {"deleted": [], "skipped": sorted(wanted & set(held)), "note": APPEND_ONLY_NOTE}
        res = self._run_locking("forget", forget_argv(ids))
        refused = classify(res.rc, res.text, self.features)[0] == "appendonly" or \
            re.search(r"\b403\b|Forbidden", res.text or "")
        left = set(e["set_id"] for e in self.sets())
        deleted = sorted((wanted & set(held)) - left)
        if refused and not deleted:
            self._append_only = True
            self.retention_note = APPEND_ONLY_NOTE
            return {"deleted": [], "skipped": sorted(wanted & set(held)), "note": APPEND_ONLY_NOTE}
        still = sorted((wanted & set(held)) & left)
        if still:
            raise self._error("forget of %s" % ", ".join(still), res.rc or 1, res.text, deleted=deleted)
        return {"deleted": deleted, "snapshots_forgotten": len(ids), "note": None}

    def prune_repository(self):
        """``restic prune`` (slow, memory-hungry: its own schedule). Skipped on append-only."""
        started = time.monotonic()
        if self.append_only():
            return {"ok": True, "skipped": True, "note": APPEND_ONLY_NOTE}
        state = {"moved": time.monotonic()}
        on_err, tick = self._stall_watch(state)

        def on_stdout(_line):
            self._moved(state)
        res = self._run_locking("prune", ["prune"], on_stdout=on_stdout, on_stderr=on_err, tick=tick)
        if res.rc != 0 and classify(res.rc, res.text, self.features)[0] == "appendonly":
            self._append_only = True
            return {"ok": True, "skipped": True, "note": APPEND_ONLY_NOTE}
        self._check_failed("prune", res)
        lines = [ln for ln in res.stdout if re.search(r"(?i)(remove|delete|repack|unused|total|to repack|keep)", ln)]
        return {"ok": True, "skipped": False, "seconds": round(time.monotonic() - started, 1),
                "summary": [self._scrub(ln) for ln in lines[-12:]]}

    def check_repository(self, read_data_subset=None):
        """``restic check`` (structure) plus ``--read-data-subset`` ("5%", "1/10", a size) when given.
        Returns {"ok", "errors", "damaged_packs", ...}; raises only when restic cannot get at the
        repository (unreachable, auth, locked past the wait)."""
        started = time.monotonic()
        res = self._run_locking("check", check_argv(read_data_subset), capture=True)
        text = "\n".join(list(res.stdout) + list(res.stderr))
        reason, detail = classify(res.rc, text, self.features)
        if res.rc != 0 and reason not in ("corrupt", "failed"):
            self._check_failed("check", res)
        damaged = set(re.findall(r"Pack ID does not match, want ([0-9a-f]{64})", text))
        damaged.update(re.findall(r"pack ([0-9a-f]{64}) contains \d+ errors?", text))
        for m in re.finditer(r"restic repair packs ((?:[0-9a-f]{64}\s*)+)", text):
            damaged.update(m.group(1).split())
        damaged = sorted(damaged)
        errors = [self._scrub(ln.strip()) for ln in text.splitlines()
                  if re.search(r"(?i)error|does not match|damaged|ciphertext|missing|not referenced", ln)
                  and "no errors were found" not in ln][:20]
        ok = res.rc == 0
        out = {"ok": ok, "read_data_subset": read_data_subset, "seconds": round(time.monotonic() - started, 1),
               "errors": [] if ok else errors, "damaged_packs": damaged, "hints": errors if ok else []}
        if not ok:
            out["reason"] = "corrupt" if reason in ("corrupt", "failed") else reason
            out["message"] = str(self._error("check", res.rc, text, reason=out["reason"]))
            if damaged:
                out["message"] += " Damaged pack files: %s." % " ".join(damaged)
        return out

    # -- restore side -----------------------------------------------------------------------------
    def resolve(self, set_id):
        """(set id, snapshot id) for a set id, "latest", or a snapshot id (prefix)."""
        held = self.sets()
        if not held:
            raise TargetError("%s: the repository holds no snapshot of instance %s (tag instance:%s): "
                              "nothing to restore from it." % (self.label, self.instance_name,
                                                               tag_value(self.instance_name)), reason="missing")
        if set_id in (None, "", "latest"):
            return held[-1]["set_id"], held[-1]["info"]["snapshot_id"]
        for entry in held:
            if entry["set_id"] == set_id:
                return entry["set_id"], entry["info"]["snapshot_id"]
        if SNAPSHOT_ID_RE.match(str(set_id)):
            for entry in held:
                for snap in entry["info"]["snapshots"]:
                    if snap.startswith(set_id):
                        return entry["set_id"], snap
        raise TargetError("%s: no snapshot of instance %s holds set %s (held: %s)." % (
            self.label, self.instance_name, set_id, ", ".join(e["set_id"] for e in held[-5:])), reason="missing")

    def fetch_set(self, set_id, dest_dir, include=None, progress=None, subfolder=None):
        """Restore a set (or ``subfolder`` of it, or only ``include`` paths) into ``dest_dir``, which
        must not exist or be empty. restic restores into a hidden sibling with ``--verify``; the
        restored files are checked against the set's manifest (presence and size); only then is the
        folder renamed to ``dest_dir``. On any failure nothing is left at ``dest_dir``."""
        started = time.monotonic()
        sid, snapshot_id = self.resolve(set_id)
        dest_dir = os.path.abspath(dest_dir)
        if os.path.isdir(dest_dir) and os.listdir(dest_dir):
            raise TargetError("%s: refusing to restore set %s into %s: the folder is not empty." % (
                self.label, sid, dest_dir), reason="failed")
        parent = os.path.dirname(dest_dir)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        staging = os.path.join(parent, ".%s.restic-partial" % os.path.basename(dest_dir))
        shutil.rmtree(staging, ignore_errors=True)
        os.mkdir(staging, 0o700)
        sub = (subfolder or "").strip("/")
        state = {"moved": time.monotonic(), "summary": None}
        on_err, tick = self._stall_watch(state)

        def on_stdout(line):
            obj = parse_json_line(line)
            if obj is None:
                return
            if obj.get("message_type") == "status":
                mark = (obj.get("bytes_restored"), obj.get("files_restored"))
                if mark != state.get("last"):
                    state["last"] = mark
                    self._moved(state)
                _call_progress(progress, status_progress(obj, step="restic restore"))
            elif obj.get("message_type") == "summary":
                state["summary"] = obj
        try:
            res = self._exec(restore_argv(snapshot_id, staging, self.features, sub, include),
                             on_stdout=on_stdout, on_stderr=on_err, tick=tick)
            if res.rc != 0 or res.killed:
                raise self._error("restore of set %s" % sid, res.rc, res.text, killed=res.killed,
                                  reason="corrupt" if re.search(CORRUPT_RE, res.text, re.I) else None)
            root = staging
            if sub and not self.features["subfolder_syntax"]:
                root = os.path.join(staging, sub)
            checked = self._check_restored(snapshot_id, root, sub, include)
            if checked["missing"] or checked["mismatched"]:
                raise TargetError("%s: restore of set %s is incomplete: %d files missing, %d of "
                                  "another size (e.g. %s). Nothing was placed at %s." % (
                                      self.label, sid, checked["missing"], checked["mismatched"],
                                      "; ".join(checked["examples"][:3]), dest_dir), reason="corrupt", **checked)
            if os.path.isdir(dest_dir):
                os.rmdir(dest_dir)
            if root == staging:
                os.rename(staging, dest_dir)
            else:
                os.rename(root, dest_dir)
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        summary = state["summary"] or {}
        out = {"set_id": sid, "snapshot_id": snapshot_id, "dest": dest_dir, "verified": True,
               "restic_verify": True, "seconds": round(time.monotonic() - started, 2),
               "files_restored": summary.get("files_restored"), "bytes_restored": summary.get("bytes_restored"),
               "subfolder": sub or None, "include": list(include or [])}
        out.update(checked)
        return out

    def _check_restored(self, snapshot_id, root, sub, include):
        """Every manifest entry inside the restored part exists under ``root`` with its size (the
        manifest streams from the repository: flat memory)."""
        prefixes = [((sub + "/") if sub else "") + p.strip("/") for p in (include or []) if p.strip("/")]
        if not prefixes:
            prefixes = [sub] if sub else [""]
        out = {"checked_files": 0, "missing": 0, "mismatched": 0, "examples": []}
        with self.stream_file(snapshot_id, FILES_MANIFEST) as stream:
            pending = b""
            for block in stream:
                lines = (pending + block).split(b"\n")
                pending = lines.pop()
                for raw in lines:
                    self._check_line(raw, root, sub, prefixes, out)
            if pending:
                self._check_line(pending, root, sub, prefixes, out)
        return out

    @staticmethod
    def _check_line(raw, root, sub, prefixes, out):
        line = raw.decode("utf-8", "surrogateescape")
        if not line or line.startswith("#"):
            return
        parts = line.split("\t")
        if len(parts) < 4:
            return
        in_set = "files/" + _unescape(parts[0])
        if not any(not p or in_set == p or in_set.startswith(p + "/") for p in prefixes):
            return
        rel = in_set[len(sub) + 1:] if sub else in_set
        out["checked_files"] += 1
        try:
            size = os.lstat(os.path.join(root, rel)).st_size
        except OSError:
            out["missing"] += 1
            if len(out["examples"]) < MAX_EXAMPLES:
                out["examples"].append("missing %s" % in_set)
            return
        if size != int(parts[1]):
            out["mismatched"] += 1
            if len(out["examples"]) < MAX_EXAMPLES:
                out["examples"].append("size of %s: %d, manifest %s" % (in_set, size, parts[1]))

    def stream_file(self, set_id, path):
        """A file object reading one file of a set straight from the repository (``restic dump``):
        the dump can go into verification and psql without landing on disk. Raises TargetError at
        the end of the stream when restic could not deliver it whole."""
        if SNAPSHOT_ID_RE.match(str(set_id or "")) and not SET_ID_RE.match(str(set_id)):
            snapshot_id = set_id
        else:
            snapshot_id = self.resolve(set_id)[1]
        argv = self._argv(dump_argv(snapshot_id, path))
        with self._password() as pw:
            env = build_env(os.environ, self.repository, pw.path, self.spec.get("env"), self.progress_fps)
            proc = self.runner.spawn(argv, env, pass_fds=pw.pass_fds)
        return ResticStream(proc, self._error, path)


def _rest_refuses_delete(url, cacert=None, timeout=10):
    """True when a REST server answers 403 to a DELETE of data/000...0 (no such file can exist:
    restic names files by the sha256 of their content). Any other answer or error: False."""
    try:
        from urllib import parse as urlparse, request as urlrequest, error as urlerror  # noqa: PLC0415
        import ssl  # noqa: PLC0415
    except ImportError:
        return False
    parts = urlparse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = "[%s]" % netloc
    if parts.port:
        netloc += ":%d" % parts.port
    path = parts.path.rstrip("/") + "/data/" + "0" * 64
    req = urlrequest.Request(urlparse.urlunsplit((parts.scheme, netloc, path, "", "")), method="DELETE")  # noqa: S310 - http(s) only
    if parts.username is not None:
        token = "%s:%s" % (urlparse.unquote(parts.username), urlparse.unquote(parts.password or ""))
        req.add_header("Authorization", "Basic " + base64.b64encode(token.encode("utf-8")).decode("ascii"))
    ctx = ssl.create_default_context(cafile=cacert) if parts.scheme == "https" else None
    try:
        # the stdlib's opener: this also runs without Ansible (the scheduled backup), where open_url is absent
        handlers = [urlrequest.HTTPSHandler(context=ctx)] if ctx is not None else []
        with urlrequest.build_opener(*handlers).open(req, timeout=timeout) as resp:
            resp.read()
        return False
    except urlerror.HTTPError as exc:
        return exc.code == 403
    except (urlerror.URLError, OSError, ValueError):
        return False
