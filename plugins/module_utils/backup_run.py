# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""THE backup engine: the role (module homelab.immich.backup_run) and the timer (the scheduled entry
point of roles/schedule) call run_backup() with the same options, so there is one backup.

    preflight -> lock -> begin -> [stop server] dump (first) -> originals (second) -> compose project
    [start server] -> coverage (what the database references is in the set) -> verify -> promote
    -> every other target (local mirrors, SSH mirrors, restic repositories) -> retention on EVERY
    target -> unlock -> result

Nothing is promoted, and nothing is pruned anywhere, unless the new set is complete, verified and
covers what the database references: a run against an unmounted disk fails loudly and the good
sets stay. Stdlib only (the timer runs without Ansible).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import os
import shutil
import socket
import time

from ansible_collections.homelab.immich.plugins.module_utils import compose, file_copy, file_manifest, guards, immich
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump as db_dump
from ansible_collections.homelab.immich.plugins.module_utils import fingerprint, monitor, reports, retention, set_mac, sets
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError
from ansible_collections.homelab.immich.plugins.module_utils._fsio import (
    free_bytes,
    hash_file,
    read_json,
    mkdir_private,
    write_json_atomic,
)
from ansible_collections.homelab.immich.plugins.module_utils.lock import holder_record, is_held
from ansible_collections.homelab.immich.plugins.module_utils.quiesce import Quiesce
from ansible_collections.homelab.immich.plugins.module_utils.targets import TargetError, kind_of

# name: (type, default, allowed values or None). The module's argument spec and the timer's config
# are both checked against this one table.
OPTIONS = {
    "dump_kind": ("str", "database", ("database", "cluster")),
    "compression": ("str", "gzip", ("gzip", "zstd", "none")),
    "compression_level": ("int", None, None),
    "consistency": ("str", "online", ("online", "stop_server", "maintenance")),
    "folders": ("list", list(immich.DEFAULT_BACKUP_FOLDERS), None),
    "excludes": ("list", [], None),
    "verify_sample": ("int", 256, None),
    "verify_full_days": ("int", 30, None),
    "min_dump_ratio": ("float", 0.5, None),
    "min_files_ratio": ("float", 0.5, None),
    "allow_shrink": ("bool", False, None),
    "min_free_ratio": ("float", 1.2, None),
    "lock_wait_seconds": ("int", 0, None),
    "server_start_timeout": ("int", 180, None),
    "retention": ("dict", dict(retention.DEFAULTS), None),
    "monitor_url": ("str", "", None),
    "monitor_style": ("str", "", None),
    "trigger": ("str", "ansible", ("ansible", "schedule")),
    "key_file": ("str", "", None),
}
_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}


class EngineError(Exception):
    """The run failed at ``step``; ``result`` is the full report (what was done, what was not)."""

    def __init__(self, msg, result):
        Exception.__init__(self, msg)
        self.result = result


def normalize_options(raw):
    """Options with defaults, checked against OPTIONS; raises ValueError naming every problem."""
    raw = dict(raw or {})
    out, problems = {}, []
    for name, (kind, default, allowed) in OPTIONS.items():
        value = raw.pop(name, None)
        if value is None:
            value = default() if callable(default) else (list(default) if isinstance(default, list)
                                                         else dict(default) if isinstance(default, dict) else default)
        elif kind == "bool" and isinstance(value, str):
            value = value.strip().lower() in ("1", "true", "yes", "on")
        elif kind in ("int", "float") and isinstance(value, str):
            try:
                value = int(value) if kind == "int" else float(value)
            except ValueError:
                problems.append("%s must be a number, not %r" % (name, value))
                continue
        if value is not None and not isinstance(value, _TYPES[kind]):
            problems.append("%s must be a %s, not %r" % (name, kind, value))
            continue
        if allowed and value not in allowed:
            problems.append("%s must be one of %s, not %r" % (name, ", ".join(allowed), value))
            continue
        out[name] = value
    if raw:
        problems.append("unknown option(s): %s (known: %s)" % (", ".join(sorted(raw)), ", ".join(sorted(OPTIONS))))
    try:
        out["retention"] = retention.policy(**(out.get("retention") or {}))
    except ValueError as exc:
        problems.append(str(exc))
    unknown = sorted(set(out.get("folders") or []) - set(immich.MEDIA_FOLDERS))
    if unknown:
        problems.append("folders %s are not Immich media folders (%s)" % (", ".join(unknown), ", ".join(immich.MEDIA_FOLDERS)))
    if problems:
        raise ValueError("Invalid backup options: " + "; ".join(problems))
    return out


def make_target(spec, instance_name):
    kind = kind_of(spec)
    if kind == "local":
        from ansible_collections.homelab.immich.plugins.module_utils.targets.local import LocalTarget  # noqa: PLC0415
        return LocalTarget(spec, instance_name)
    if kind == "ssh":
        from ansible_collections.homelab.immich.plugins.module_utils.targets.ssh import SshTarget  # noqa: PLC0415
        return SshTarget(spec, instance_name)
    from ansible_collections.homelab.immich.plugins.module_utils.targets.restic import ResticTarget  # noqa: PLC0415
    return ResticTarget(spec, instance_name)


class Run(object):
    """The record of one run: steps with their durations, facts, per-target outcomes; becomes the report."""

    def __init__(self, instance, opts, log=None, progress=None):
        self.instance = instance
        self.opts = opts
        self.started = time.time()
        self.steps = []
        self.warnings = []
        self.targets = []
        self.facts = {}
        self._log = log
        self._progress = progress
        self.current = None

    def log(self, msg):
        if self._log is not None:
            self._log(msg)

    def progress(self, **counters):
        if self._progress is not None:
            self._progress(dict(counters, step=self.current))

    def step(self, name):
        return _Step(self, name)

    def report(self, status, error=None):
        finished = time.time()
        out = {
            "status": status, "instance": self.instance.get("instance_name"), "host": socket.gethostname(),
            "trigger": self.opts.get("trigger"), "started": self.started, "finished": finished,
            "seconds": round(finished - self.started, 1), "steps": self.steps, "targets": self.targets,
            "warnings": self.warnings, "error": error,
            "failed_step": next((s["name"] for s in self.steps if s["status"] == "failed"), None),
        }
        out.update(self.facts)
        return out


class _Step(object):
    def __init__(self, run, name):
        self.run = run
        self.name = name
        self.detail = None

    def __enter__(self):
        self.t0 = time.monotonic()
        self.run.current = self.name
        self.run.log("%s ..." % self.name)
        self.run.progress()  # the progress file names the step at once, before its first counters
        return self

    def __exit__(self, kind, exc, _tb):
        seconds = round(time.monotonic() - self.t0, 3)
        entry = {"name": self.name, "seconds": seconds, "status": "failed" if kind else "ok"}
        if kind is not None:
            entry["error"] = str(exc)
        elif self.detail:
            entry["detail"] = self.detail
        self.run.steps.append(entry)
        self.run.log("%s %s (%.1f s)%s" % (self.name, "FAILED" if kind else "done", seconds,
                                           ": %s" % self.detail if self.detail and not kind else ""))
        return False


def _mb(n):
    return _size(n)


def describe_instance(instance, dump_result):
    """instance.json: what a recovery onto a bare host needs to know about this instance."""
    extensions = []
    try:
        rows = dx.query(instance["db_container"], instance["db_user"], instance["db_name"],
                        "SELECT extname, extversion FROM pg_extension ORDER BY 1;")
        extensions = [{"name": r[0], "version": r[1]} for r in rows]
    except dx.DockerError:
        pass
    server_version = dump_result.get("server_version")
    return {
        "instance_name": instance.get("instance_name"), "project_name": instance.get("project_name"),
        "project_dir": instance.get("project_dir"), "immich_version": instance.get("immich_version") or None,
        "media_location": instance.get("media_location"), "upload_location": instance.get("upload_location"),
        "db_data_location": instance.get("db_data_location"), "db_data_kind": instance.get("db_data_kind"),
        "db_user": instance.get("db_user"), "db_name": instance.get("db_name"),
        "db_service": instance.get("db_service"), "server_service": instance.get("server_service"),
        "db_container": instance.get("db_container"), "server_container": instance.get("server_container"),
        "postgres_version": server_version, "pg_major": db_dump.df.major_of(server_version),
        "extensions": extensions,
        "images": {"database": compose.image_facts(instance.get("db_image")),
                   "server": compose.image_facts(instance.get("server_image"))},
        "compose_files": [os.path.basename(f) for f in instance.get("compose_files") or []],
    }


def copy_project(instance, dest):
    """The compose project into the set's compose/ (0600 files: .env holds DB_PASSWORD)."""
    copied = []
    for path, name in compose.project_files(instance):
        target = os.path.join(dest, name)
        mkdir_private(os.path.dirname(target))
        shutil.copyfile(path, target)
        os.chmod(target, 0o600)
        copied.append(name)
    return copied


def _previous(begun):
    prev_dir = begun["previous_dir"]
    if not prev_dir:
        return None, {}
    return prev_dir, sets.read_info(prev_dir) or {}


def _size(n):
    return reports.size(n)


SHRINK_MIN_FILES = 10  # a folder this small in the previous set is only counted in the total


def shrink_problems(stats_by_folder, previous_info, ratio):
    """The originals shrank against the previous good set: a folder both sets hold (with at least
    SHRINK_MIN_FILES files before), or all of them together, below ``ratio`` in files or bytes."""
    prev = previous_info.get("files_by_folder") or {}
    common = sorted(set(prev) & set(stats_by_folder))
    problems = []

    def compare(label, now, before):
        if before[0] and now[0] < before[0] * ratio:
            problems.append("%d files in %s, below %d%% of the previous set's %d" % (now[0], label, ratio * 100, before[0]))
        elif before[1] and now[1] < before[1] * ratio:
            problems.append("%s in %s, below %d%% of the previous set's %s" % (_size(now[1]), label, ratio * 100, _size(before[1])))

    for folder in common:
        if prev[folder][0] >= SHRINK_MIN_FILES:
            compare(folder + "/", stats_by_folder[folder], prev[folder])
    if common and not problems:
        compare("/".join(common), [sum(stats_by_folder[f][i] for f in common) for i in (0, 1)],
                [sum(prev[f][i] for f in common) for i in (0, 1)])
    return problems


def files_by_folder(manifest_path):
    counts = {}
    for entry in file_manifest.read(manifest_path):
        c = counts.setdefault(immich.folder_of(entry.path), [0, 0])
        c[0] += 1
        c[1] += entry.size
    return counts


def verification_plan(opts, previous_info, copied, total):
    """Deep (every file) when the last full check is older than verify_full_days, or when most files
    are new; otherwise the new copies plus a random sample of the rest."""
    last_full = (previous_info.get("verification") or {}).get("full_at") or 0
    days = opts["verify_full_days"]
    due = days <= 0 or (time.time() - float(last_full)) >= days * 86400
    return bool(due or copied * 2 >= max(total, 1)), float(last_full)


def verify_set(partial, manifest_path, opts, *, previous_dir, previous_info, copy_stats, dump_result):
    """Prove the new set before it is promoted: the dump's sha256 read back, the folder equal to the
    manifest, and sha256 of every new copy (or of everything when a full check is due) plus a sample."""
    full, last_full = verification_plan(opts, previous_info, copy_stats["copied"], copy_stats["files"])
    problems = []
    dump_path = dump_result["path"]
    got = hash_file(dump_path)["sha256"]
    if got != dump_result["sha256"]:
        problems.append("the dump reads back with sha256 %s, not the %s written" % (got, dump_result["sha256"]))
    report = file_manifest.verify(os.path.join(partial, "files"), manifest_path, deep=full,
                                  sample=None if full else opts["verify_sample"], markers="bytes",
                                  previous_manifest=os.path.join(previous_dir, file_manifest.NAME) if previous_dir else None)
    problems += report.problems()
    return {"ok": not problems, "full": full, "full_at": time.time() if full and not problems else last_full,
            "hashed": report.hashed, "files": report.files, "bytes": report.bytes, "problems": problems,
            "dump_sha256": dump_result["sha256"]}


def _retention(target, policy, protect, run):
    """Apply the policy to what a target holds; never delete ``protect`` (the set of this run)."""
    held = target.sets()
    keep, delete = retention.plan([(e["set_id"], e["good"]) for e in held], policy)
    delete = [sid for sid in delete if sid != protect]
    if delete:
        target.delete(delete)
    note = getattr(target, "retention_note", None)
    return {"kept": keep, "deleted": delete, "note": note}


UPKEEP_STATE = ".offsite.json"
UPKEEP_DEFAULTS = {"prune_days": 7, "check_days": 7, "check_subset": "5%"}


def upkeep_due(state, spec, now):
    """Which of prune and check a repository target is due for (its own schedule, in days; 0 = never)."""
    due = []
    for what, key in (("prune", "pruned_at"), ("check", "checked_at")):
        days = float(spec.get("%s_days" % what, UPKEEP_DEFAULTS["%s_days" % what]))
        if days > 0 and now - float(state.get(key) or 0) >= days * 86400:
            due.append(what)
    return due


def offsite_upkeep(targets, entries, state_path, run, now=None):
    """restic prune and check on their own schedules (slow and memory-hungry: not every night). The last
    times live beside the sets; a failed check fails that target in the report (and the pings)."""
    now = time.time() if now is None else now
    state = read_json(state_path) or {}
    for t, entry in zip(targets, entries):
        if t.kind != "restic" or entry["status"] != "ok":
            continue
        mine = state.setdefault(t.label, {})
        for what in upkeep_due(mine, t.spec, now):
            try:
                with run.step("%s %s" % (what, t.label)) as st:
                    if what == "prune":
                        res = t.prune_repository()
                        st.detail = res.get("note") or "pruned in %s s" % res.get("seconds")
                        mine["pruned_at"] = now  # also when skipped (append-only): the note comes back on schedule
                    else:
                        subset = t.spec.get("check_subset", UPKEEP_DEFAULTS["check_subset"])
                        res = t.check_repository(subset)
                        st.detail = "no errors, %s of the data read back" % subset if res["ok"] else res.get("message")
                        if res["ok"]:
                            mine["checked_at"] = now
                        else:
                            entry.update(status="failed", error=res.get("message") or "restic check found errors")
                    entry[what] = res
            except TargetError as exc:
                entry.update(status="failed", error="%s: %s" % (what, exc))
    write_json_atomic(state_path, state)


def _ping(opts, event, message, run):
    if not opts.get("monitor_url"):
        return
    res = monitor.ping(opts["monitor_url"], event, style=opts.get("monitor_style") or None, message=message)
    run.facts.setdefault("pings", []).append(res)
    warning = monitor.warning_for(res)
    if warning:
        run.warnings.append(warning)


def plan_backup(instance, targets, options):
    """Check mode: what a run would do, with nothing written anywhere."""
    opts = normalize_options(options)
    tlist = [make_target(t, instance["instance_name"]) for t in targets]
    primary = next((t for t in tlist if t.kind == "local"), None)
    if primary is None:
        raise ValueError("immich_backup_targets needs at least one local folder (an entry with only `path`): the set "
                         "is written and verified there first, then copied to the other targets.")
    held, holder = is_held(os.path.join(primary.root, ".lock"))
    entries = sets.entries(primary.root)
    previous = next((sid for sid, good, _i in reversed(entries) if good), None)
    prev_dir = os.path.join(primary.root, previous) if previous else None
    copy = file_copy.backup_copy(instance["upload_location"], opts["folders"], None, None, dry_run=True,
                                 previous_manifest=os.path.join(prev_dir, file_manifest.NAME) if prev_dir else None,
                                 excludes=opts["excludes"])
    keep, delete = retention.plan([(sid, good) for sid, good, _i in entries] + [(sets.new_set_id(), True)], opts["retention"])
    lines = ["would dump %s (%s dump, %s) first" % (instance["db_container"], opts["dump_kind"], opts["compression"]),
             "would copy %d new files (%s) and hard-link %d unchanged (%s) from %s (%s)" % (
                 copy["copied"], _mb(copy["copied_bytes"]), copy["linked"], _mb(copy["linked_bytes"]),
                 instance["upload_location"], ", ".join(opts["folders"])),
             "would write the set to %s%s" % (primary.root, " (after the current holder of its lock finishes)" if held else ""),
             "would prune on %s: %s" % (primary.label, ", ".join(delete) if delete else "nothing")]
    for t in tlist:
        if t is not primary:
            lines.append("would copy the set to %s target %s" % (t.kind, t.label))
    return {"changed": True, "plan": lines, "previous": previous, "would_copy": copy, "would_prune": delete,
            "lock_held": held, "lock_holder": holder, "targets": [t.describe() for t in tlist]}


def run_backup(instance, targets, options, *, log=None, progress=None):
    """One backup run; returns the report (status ok) or raises EngineError (report attached)."""
    opts = normalize_options(options)
    run = Run(instance, opts, log=log, progress=progress)
    tlist = [make_target(t, instance["instance_name"]) for t in targets]
    primary = next((t for t in tlist if t.kind == "local"), None)
    if primary is None:
        raise ValueError("immich_backup_targets needs at least one local folder (an entry with only `path`): the set "
                         "is written and verified there first, then copied to the other targets.")
    others = [t for t in tlist if t is not primary]
    holder = holder_record("%s-%d-%d" % (opts["trigger"], os.getpid(), int(run.started)),
                           purpose="scheduled backup" if opts["trigger"] == "schedule" else "backup")
    _ping(opts, "start", "backup of %s started on %s" % (instance["instance_name"], socket.gethostname()), run)
    locked = []
    quiet = Quiesce(instance, opts["consistency"], primary.root, holder["run_id"], opts["server_start_timeout"])
    try:
        with run.step("preflight") as st:
            if not instance.get("db_running", True):
                raise OpError("The database container %s is not running, so there is nothing to dump. Start it "
                              "(docker compose up -d) and run the backup again." % instance["db_container"])
            primary.check()  # without the first target there is no backup at all
            # the key that signs the set's manifests lives on this host, never on a target (set_mac.py)
            key = set_mac.load_key(opts["key_file"] or set_mac.default_key_path(instance["instance_name"]), create=True,
                                   instance=instance["instance_name"])
            if key.created:
                run.warnings.append(set_mac.created_message(key))
            down = {}  # another target that cannot be used fails alone: the set is still made and kept
            for t in others:
                try:
                    t.check()
                except TargetError as exc:
                    down[t.label] = exc
            st.detail = "%d of %d target(s) ready" % (len(tlist) - len(down), len(tlist))
        with run.step("lock"):
            primary.lock(holder, wait_seconds=opts["lock_wait_seconds"])
            locked.append(primary)
            for t in others:
                if t.label in down:
                    continue
                try:
                    t.lock(holder, wait_seconds=opts["lock_wait_seconds"])
                    locked.append(t)
                except TargetError as exc:
                    down[t.label] = exc
        with run.step("begin") as st:
            begun = sets.begin(primary.root)
            prev_dir, prev_info = _previous(begun)
            need = int((prev_info.get("dump_bytes") or 0) * opts["min_free_ratio"])
            free = free_bytes(primary.root)
            if need and free < need:
                raise OpError("Only %s free on %s; the previous set's dump alone needed %s (x%s). Free space or prune "
                              "old sets; nothing was deleted." % (_mb(free), primary.path, _mb(prev_info.get("dump_bytes")),
                                                                  opts["min_free_ratio"]))
            st.detail = "set %s (previous: %s)" % (begun["set_id"], begun["previous"] or "none, first set")
        run.facts.update(set_id=begun["set_id"], previous=begun["previous"])
        if opts["consistency"] == "maintenance" and quiet.leave_leftover():
            run.warnings.append(quiet.notes[-1])
        if opts["consistency"] != "online" and instance.get("server_container"):
            with run.step("quiesce server") as st:
                st.detail = {"maintenance": "Immich's maintenance mode", "stop_server": "immich-server stopped"}.get(
                    quiet.enter(), "online")
            run.warnings += quiet.notes
        try:
            with run.step("dump") as st:
                prev_dump_manifest = sets.find_dump(prev_dir)[1] if prev_dir else None
                code_before = fingerprint.take(instance["db_container"], instance["db_user"], instance["db_name"])
                dump_result = db_dump.dump(
                    instance["db_container"], instance["db_user"], instance["db_name"], begun["db_dir"],
                    dump_kind=opts["dump_kind"], compression=opts["compression"],
                    compression_level=opts["compression_level"], immich_version=instance.get("immich_version"),
                    previous_manifest=prev_dump_manifest, min_size_ratio=opts["min_dump_ratio"],
                    on_shrink="warn" if opts["allow_shrink"] else "fail", progress=run.progress,
                    clear_maintenance=quiet.used == "maintenance")
                run.warnings += dump_result.get("warnings") or []
                # what the database's functions, triggers and extensions were: a restore compares with it
                code = fingerprint.take(instance["db_container"], instance["db_user"], instance["db_name"])
                if not fingerprint.same(code_before, code):
                    run.warnings.append("The database's functions, triggers or extensions changed while it was dumped (a "
                                        "migration?): the fingerprint recorded is the one taken after the dump.")
                fingerprint.write(dump_result["path"] + fingerprint.FILE_SUFFIX, code)
                st.detail = "%s, %d tables, %d rows" % (_mb(dump_result["bytes"]), len(dump_result["rows_by_table"]),
                                                        sum(dump_result["rows_by_table"].values()))
            run.facts["dump"] = {k: dump_result.get(k) for k in ("path", "bytes", "plain_bytes", "sha256", "seconds",
                                                                 "mb_per_s", "dump_kind", "server_version",
                                                                 "pg_dump_version", "compression")}
            with run.step("originals") as st:
                copy = file_copy.backup_copy(
                    instance["upload_location"], opts["folders"], begun["files_dir"], begun["manifest"],
                    previous_files=os.path.join(prev_dir, "files") if prev_dir else None,
                    previous_manifest=os.path.join(prev_dir, file_manifest.NAME) if prev_dir else None,
                    excludes=opts["excludes"], progress=functools.partial(  # the previous set: the expected size
                        run.progress, files_expected=prev_info.get("files"), bytes_expected=prev_info.get("files_bytes")))
                st.detail = "%d files: %d copied (%s), %d hard links to the previous set" % (
                    copy["files"], copy["copied"], _mb(copy["copied_bytes"]), copy["linked"])
            run.facts["files"] = copy
            for kind, what in (("missing_folders", "media folders missing"), ("symlinks", "symlinks not copied"),
                               ("changed_while_copying", "files changed while they were copied"),
                               ("vanished", "files vanished while copying (deleted meanwhile)"),
                               ("followed_folder_links", "media folders that are links, followed")):
                if copy.get(kind):
                    run.warnings.append("%d %s: %s" % (copy[kind], what, ", ".join(copy.get(kind + "_examples") or [])))
            with run.step("compose project") as st:
                copied = copy_project(instance, os.path.join(begun["partial"], "compose"))
                write_json_atomic(os.path.join(begun["partial"], sets.INSTANCE_JSON), describe_instance(instance, dump_result))
                st.detail = ", ".join(copied) or "no files found"
        finally:
            if quiet.used != "online":
                with run.step("resume server"):
                    quiet.leave()
        with run.step("coverage") as st:
            by_folder = files_by_folder(begun["manifest"])
            cov = guards.coverage(instance, begun["files_dir"], opts["folders"])
            run.facts["coverage"] = cov
            problems = []
            if not cov["ok"]:
                problems.append("%d of %d files the database references are not in the set (%s%s)" % (
                    cov["missing"], cov["referenced"], ", ".join(cov["missing_examples"][:5]),
                    ", ..." if cov["missing"] > 5 else ""))
            if not opts["allow_shrink"]:
                problems += shrink_problems(by_folder, prev_info, opts["min_files_ratio"])
            if problems:
                hint = ("If the photos really were removed on purpose, run the backup once with "
                        "immich_backup_allow_shrink=true." if cov["ok"] else
                        "Files the database references cannot be left out of a good backup: mount the disk, fix "
                        "UPLOAD_LOCATION, or put the files back, then run the backup again.")
                raise OpError("This backup covers less than it should: %s. Is UPLOAD_LOCATION (%s) the right folder, "
                              "and is its disk mounted? The set was NOT promoted and no set was deleted anywhere. %s"
                              % ("; ".join(problems), instance["upload_location"], hint))
            if cov["external"]:
                run.warnings.append("%d assets of external libraries are not covered by this backup (Immich does not "
                                    "own their files; back up their import paths separately)." % cov["external"])
            st.detail = "%d of %d referenced files present%s" % (cov["present"], cov["referenced"],
                                                                 ", %d external" % cov["external"] if cov["external"] else "")
        with run.step("verify") as st:
            verification = verify_set(begun["partial"], begun["manifest"], opts, previous_dir=prev_dir,
                                      previous_info=prev_info, copy_stats=copy, dump_result=dump_result)
            run.facts["verification"] = verification
            if not verification["ok"]:
                raise OpError("The new set failed its verification and was NOT promoted: %s. No set was deleted."
                              % "; ".join(verification["problems"][:5]))
            st.detail = "%s: %d files hashed, dump sha256 read back" % ("full check" if verification["full"] else
                                                                        "new files + sample", verification["hashed"])
        with run.step("promote") as st:
            finished = time.time()
            info = {
                "set_id": begun["set_id"], "status": sets.GOOD, "instance": instance["instance_name"],
                "host": socket.gethostname(), "trigger": opts["trigger"], "started": run.started, "finished": finished,
                "seconds": round(finished - run.started, 3), "immich_version": instance.get("immich_version") or None,
                "server_version": dump_result["server_version"], "pg_dump_version": dump_result["pg_dump_version"],
                "dump_kind": dump_result["dump_kind"], "dump": os.path.relpath(dump_result["path"], begun["partial"]),
                "dump_bytes": dump_result["bytes"], "dump_sha256": dump_result["sha256"],
                "rows_by_table": dump_result["rows_by_table"], "files": copy["files"], "files_bytes": copy["bytes"],
                "files_new": copy["copied"], "files_linked": copy["linked"], "folders": sorted(opts["folders"]),
                "excludes": list(opts["excludes"]), "consistency": quiet.was, "previous": begun["previous"],
                "verification": verification, "coverage": cov, "files_by_folder": by_folder,
            }
            final = set_mac.promote_signed(primary.root, begun["partial"], info, key, dump_sha256=dump_result["sha256"])
            run.facts.update(set_dir=final)
            st.detail = final
        primary_info = sets.read_info(final)
        for t in others:
            entry = {"kind": t.kind, "label": t.label, "status": "ok"}
            if t.label in down:
                exc = down[t.label]
                entry.update(status="failed", error=str(exc), reason=getattr(exc, "reason", "failed"))
                run.targets.append(entry)
                continue
            try:
                with run.step("copy to %s" % t.label) as st:
                    entry.update(t.send(final, primary_info, progress=functools.partial(
                        run.progress, files_total=primary_info.get("files"), bytes_total=primary_info.get("files_bytes"))))
                    st.detail = "verified" if entry.get("verified") else "sent"
            except (TargetError, OSError, OpError) as exc:
                entry.update(status="failed", error=str(exc), reason=getattr(exc, "reason", "failed"))
            run.targets.append(entry)
        with run.step("retention") as st:
            pruned = {primary.label: _retention(primary, opts["retention"], begun["set_id"], run)}
            for t, entry in zip(others, run.targets):
                if entry["status"] != "ok":
                    continue
                try:
                    pruned[t.label] = _retention(t, opts["retention"], begun["set_id"], run)
                    entry["pruned"] = pruned[t.label]["deleted"]
                except (TargetError, OSError) as exc:
                    entry.update(status="failed", error="retention: %s" % exc)
            run.facts["retention"] = pruned
            st.detail = "; ".join("%s: %s" % (label, ", ".join(p["deleted"]) if p["deleted"] else "nothing to delete")
                                  for label, p in pruned.items())
        offsite_upkeep(others, run.targets, os.path.join(primary.root, UPKEEP_STATE), run)
    except (OpError, TargetError, ValueError, OSError, sets.SetError, guards.CoverageError, file_copy.CopyError,
            file_manifest.ManifestError, dx.DockerError, set_mac.MacError, fingerprint.FingerprintError) as exc:
        # the step that raised (a later step, such as resuming the server, may have run since)
        failed_step = next((st["name"] for st in run.steps if st["status"] == "failed"), run.current)
        msg = "Backup of %s failed at step '%s': %s" % (instance["instance_name"], failed_step, exc)
        if failed_step not in ("promote", "retention") and not run.facts.get("set_dir"):
            msg += " Nothing was promoted and no older set was deleted; the unfinished set is removed by the next run."
        _ping(opts, "failure", msg, run)
        report = run.report("failed", error=msg)
        report["summary_lines"] = summary_lines(report)
        raise EngineError(msg, report) from exc
    finally:
        for t in reversed(locked):
            t.unlock(holder)
    failed_targets = [t for t in run.targets if t["status"] != "ok"]
    status = "partial" if failed_targets else "ok"
    summary = "set %s of %s verified (%d files, dump %s)" % (
        run.facts["set_id"], instance["instance_name"], copy["files"], _mb(dump_result["bytes"]))
    if failed_targets:
        summary += "; FAILED on %s" % ", ".join("%s (%s)" % (t["label"], t["error"]) for t in failed_targets)
    _ping(opts, "failure" if failed_targets else "success", summary, run)
    report = run.report(status, error=summary if failed_targets else None)
    report["summary"] = summary
    report["summary_lines"] = summary_lines(report)
    return report


def summary_lines(report):
    """The end-of-run summary, one screen: instance, set, sizes, durations, throughput, verification, targets
    (written by reports.backup_lines, beside the summaries of the restore, the drill and the fleet)."""
    return reports.backup_lines(report)


def argument_spec():
    """The OPTIONS table as an Ansible argument spec (suboptions of the module's ``options``)."""
    spec = {}
    for name, (kind, default, allowed) in OPTIONS.items():
        entry = {"type": kind}
        if kind == "list":
            entry["elements"] = "str"
        if default is not None and kind not in ("list", "dict"):
            entry["default"] = default
        if allowed:
            entry["choices"] = list(allowed)
        spec[name] = entry
    return spec


# The options of the modules whose action plugin prints progress lines (doc fragment homelab.immich.progress).
PROGRESS_ARGS = {"progress_file": {"type": "path"}, "progress_interval": {"type": "int", "default": 30}}


def progress_file_of(params):
    """The ProgressFile of a module's params (PROGRESS_ARGS): written at most every 2 s, or as often as lines print."""
    return ProgressFile(params["progress_file"], interval=min(2.0, max(params["progress_interval"], 1)))


class ProgressFile(object):
    """Progress of a long run as JSON in a file (rewritten at most every ``interval`` seconds, and at
    once when the step changes), for the action plugin that polls it (plugins/plugin_utils/progress.py);
    the last state is always written by ``close()``. Besides the counters: ``step_seconds`` (how long
    the step has run), ``elapsed`` (the run), ``updated`` and ``pid`` (of the module, stopped by the
    controller when the task is interrupted)."""

    def __init__(self, path, interval=2.0):
        self.path = path
        self.interval = interval
        self._last = 0.0
        self._state = {}
        self._t0 = time.monotonic()
        self._step = self._step_t0 = None

    def __call__(self, counters):
        now = time.monotonic()
        changed = counters.get("step") != self._step
        if changed:
            self._step, self._step_t0 = counters.get("step"), now
        self._state = dict(counters, elapsed=round(now - self._t0, 1), step_seconds=round(now - self._step_t0, 1),
                           updated=time.time(), pid=os.getpid())
        if self.path and (changed or now - self._last >= self.interval):
            self._write()

    def _write(self):
        self._last = time.monotonic()
        try:
            write_json_atomic(self.path, self._state)
        except OSError:
            self.path = None  # progress is a courtesy: never fail a backup because of it

    def close(self, final=None):
        if final is not None:
            self._state = dict(final, elapsed=round(time.monotonic() - self._t0, 1), updated=time.time())
        if self.path:
            self._write()
