# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Progress of a long module run in the run log (controller side), shared by the action plugins of
homelab.immich.backup_run and homelab.immich.restore_files.

The module runs asynchronously on the managed host (Ansible's async_wrapper, what ``async:`` on a task
uses) and writes its progress as JSON to a file in the task's remote tmp dir (see ProgressFile in
module_utils/backup_run.py). The action plugin polls the job with async_status, reads the progress
file every ``progress_interval`` seconds and prints one line, then returns the module's own result,
unchanged. Check mode, ``progress_interval: 0`` and a task with its own ``async:`` run the module the
plain way.

The line formatting is pure (progress_line) so that unit tests reach every branch.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import shlex
import signal
import time

from ansible import constants
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash
from ansible_collections.homelab.immich.plugins.module_utils import reports

# The async job's limit: async_wrapper needs one; a backup of a large library can take days on a slow
# disk, so the limit only stops a run that hangs for a month.
ASYNC_LIMIT = 31 * 86400
# async_status is asked this often (seconds), growing from the first value to the last, never slower
# than the progress interval: a short run returns within about a second of its end.
POLL_STEPS = (0.5, 1.0, 2.0, 3.0, 5.0)
# A connection that fails (a network bounce) is retried for this long before the task fails.
POLL_FAILURE_SECONDS = 300
# Keys async_status and the async wrapper add to the module's result; the plain run has none of them.
# (The wrapper's ``stderr`` is kept when the module failed: a crash's traceback is there.)
ASYNC_KEYS = ("ansible_job_id", "started", "finished", "results_file")
STDERR_KEYS = ("stderr", "stderr_lines")
DEFAULT_INTERVAL = 30


def human_size(n):
    return reports.size(n)


def human_rate(nbytes, seconds):
    return reports.rate(nbytes, seconds)


def human_duration(seconds):
    return reports.duration(seconds, precise=False)


def _count(n):
    return reports.count(n)


def _num(state, *keys):
    for key in keys:
        value = state.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return None


def counters(state):
    """The progress file's counters under one set of names, whichever writer made them: the file copy
    (files, bytes, copied_bytes), the dump (bytes of SQL, written_bytes), restic (files_done,
    bytes_done, files_total, bytes_total). ``*_total`` are exact totals, ``*_expected`` estimates
    (the previous set's or the previous dump's size)."""
    files_total = _num(state, "files_total")
    bytes_total = _num(state, "bytes_total")
    return {
        "step": state.get("step") or "working",
        "files": _num(state, "files", "files_done"),
        "bytes": _num(state, "bytes", "bytes_done"),
        "copied_bytes": _num(state, "copied_bytes"),
        "written_bytes": _num(state, "written_bytes"),
        "files_total": files_total or _num(state, "files_expected") or None,
        "bytes_total": bytes_total or _num(state, "bytes_expected") or None,
        "estimated": not (files_total or bytes_total),
        "seconds": _num(state, "step_seconds"),
    }


def progress_line(state, host=None, running_for=None):
    """One line of progress, or None for an empty state. ``running_for`` is how long the step has run
    (defaults to the state's own step_seconds); a step without counters prints only that."""
    if not state or state.get("step") == "done":
        return None
    c = counters(state)
    prefix = "%s: %s" % (host, c["step"]) if host else c["step"]
    seconds = c["seconds"] if running_for is None else running_for
    if c["files"] is None and c["bytes"] is None:
        return "%s: %s" % (prefix, "running for %s" % human_duration(seconds) if (seconds or 0) >= 1 else "started")
    approx = "~" if c["estimated"] else ""
    parts = []
    fraction = None
    if c["files"] is not None:
        text = "%s files" % _count(c["files"])
        if c["files_total"]:
            text = "%s of %s%s files" % (_count(c["files"]), approx, _count(c["files_total"]))
            fraction = float(c["files"]) / c["files_total"]
        parts.append(text)
    if c["bytes"] is not None:
        label = " of SQL" if c["written_bytes"] is not None else ""
        text = human_size(c["bytes"]) + label
        if c["bytes_total"]:
            text = "%s of %s%s%s" % (human_size(c["bytes"]), approx, human_size(c["bytes_total"]), label)
            fraction = float(c["bytes"]) / c["bytes_total"]  # bytes say more about time than files do
        parts.append(text)
    if fraction is not None and fraction <= 1:
        parts[-1] += " (%s%%)" % ("%.1f" % (fraction * 100) if 0 < fraction < 0.1 else "%d" % int(fraction * 100))
    elif fraction is not None:
        parts[-1] += " (more than the previous %s)" % ("set" if c["written_bytes"] is None else "dump")
    rate_seconds = c["seconds"]
    if rate_seconds:
        if c["copied_bytes"] is not None and c["copied_bytes"] < 0.9 * (c["bytes"] or 0):
            # most files are hard links to the previous set: the copy's own rate is what takes time
            parts.append("%s copied at %s" % (human_size(c["copied_bytes"]), human_rate(c["copied_bytes"], rate_seconds)))
        elif c["bytes"] is not None:
            parts.append(human_rate(c["bytes"], rate_seconds))
        if c["files"]:
            parts.append(reports.per_second(c["files"], rate_seconds, "files"))
    if c["written_bytes"] is not None:
        parts.append("%s written" % human_size(c["written_bytes"]))
    if fraction is not None and 0 < fraction <= 1 and rate_seconds:
        left = rate_seconds * (1 - fraction) / fraction - max(0.0, (seconds or 0) - rate_seconds)
        parts.append("ETA %s%s" % (approx, human_duration(max(left, 0))))
    return "%s: %s" % (prefix, ", ".join(parts))


def parse_state(text):
    """The progress file's JSON, or None (not written yet, or being replaced)."""
    try:
        state = json.loads(text)
    except (TypeError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def interval_of(args):
    """progress_interval of the task (seconds; 0 or less: no progress lines); None when it is not a
    number (the module's own argument check then reports it)."""
    value = args.get("progress_interval", DEFAULT_INTERVAL)
    if value is None or value == "":
        return DEFAULT_INTERVAL
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def strip_async(result, given_progress_file):
    """The async job's result as the plain module run returns it: the keys async_status added removed,
    the injected progress_file hidden again in ``invocation``."""
    out = dict(result)
    for key in ASYNC_KEYS + (STDERR_KEYS if not out.get("failed") else ()):
        out.pop(key, None)
    invocation = out.get("invocation")
    if isinstance(invocation, dict) and isinstance(invocation.get("module_args"), dict):
        module_args = dict(invocation["module_args"])
        module_args["progress_file"] = given_progress_file
        out["invocation"] = dict(invocation, module_args=module_args)
    return out


def _shell_option(shell, name):
    try:
        return shell.get_option(name)
    except KeyError:
        return None


def _set_shell_option(shell, name, value):
    if value is not None:
        shell.set_option(name, value)


class ProgressRunner(object):
    """Runs the task's module asynchronously from an action plugin and prints its progress.

    ``action`` is the ActionBase instance (its connection, shell and _execute_module are used),
    ``display`` the plugin's Display."""

    def __init__(self, action, display, clock=time.monotonic, sleep=time.sleep):
        self.action = action
        self.display = display
        self.clock = clock
        self.sleep = sleep

    # -- the plain way ---------------------------------------------------------------------------
    def plain(self, task_vars):
        action = self.action
        wrap_async = bool(action._task.async_val) and not action._connection.has_native_async
        result = action._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            action._remove_tmp_path(action._connection._shell.tmpdir)
        return result

    def wanted(self):
        action = self.action
        interval = interval_of(action._task.args)
        plain = action._task.check_mode or action._task.async_val or action._connection.has_native_async
        return bool(interval and interval > 0 and not plain)

    # -- the asynchronous way --------------------------------------------------------------------
    def run(self, task_vars):
        if not self.wanted():
            return self.plain(task_vars)
        action = self.action
        interval = interval_of(action._task.args)
        shell = action._connection._shell
        host = task_vars.get("inventory_hostname") or action._play_context.remote_addr
        given = action._task.args.get("progress_file")
        tmpdir = shell.tmpdir or action._make_tmp_path()
        path = given or shell.join_path(tmpdir, "homelab-immich-progress.json")
        module_args = dict(action._task.args, progress_file=path)
        # One absolute job folder for the wrapper and async_status alike: the wrapper expands "~" with the
        # module's $HOME, async_status with the remote user's passwd entry, and the two differ where HOME is
        # not the user's home (CI containers, sudo -E, a test's HOME): the job would never be found.
        async_dir = action._remote_expand_user(action.get_shell_option("async_dir", default="~/.ansible_async"))
        saved_async, saved_dir = action._task.async_val, _shell_option(shell, "async_dir")
        action._task.async_val = ASYNC_LIMIT
        _set_shell_option(shell, "async_dir", async_dir)
        try:
            started = action._execute_module(module_args=module_args, task_vars=task_vars, wrap_async=True)
        finally:
            action._task.async_val = saved_async
            _set_shell_option(shell, "async_dir", saved_dir)
        jid = started.get("ansible_job_id")
        if started.get("failed") or not jid:
            return started  # the job did not start: async_wrapper's own message
        self._pid, self._path = None, path
        try:
            with self._stop_on_signals():
                result = self._wait(jid, async_dir, path, interval=interval, host=host, task_vars=task_vars)
        except BaseException:
            self._stop()  # Ctrl-C or a lost connection: the module must not run on unseen
            raise
        self._cleanup(jid, async_dir, None if given else path, task_vars)
        # The module's own tmp dir: async_wrapper's watcher removes it up to 5 s after the job ends (it sleeps
        # between checks), after the task has returned; removed now, so that a finished task leaves nothing.
        # (force: the wrapper's start answer turned ActionBase's own removal off, and with pipelining no later
        # module call turns it on again; ANSIBLE_KEEP_REMOTE_FILES is still honoured.)
        if not constants.DEFAULT_KEEP_REMOTE_FILES:
            action._remove_tmp_path(tmpdir, force=True)
        if started.get("ansible_facts") and "ansible_facts" not in result:
            result["ansible_facts"] = started["ansible_facts"]
        return strip_async(result, given)

    def _status(self, jid, async_dir, task_vars):
        action = self.action
        res = action._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                     module_args={"jid": jid, "_async_dir": async_dir})
        action._remove_tmp_path(action._connection._shell.tmpdir)
        return res

    def _read(self, path):
        res = self.action._low_level_execute_command("cat %s" % shlex.quote(path), sudoable=True)
        return parse_state(res.get("stdout")) if res.get("rc") == 0 else None

    def _wait(self, jid, async_dir, path, *, interval, host, task_vars):
        t0 = self.clock()
        next_line = t0 + interval
        polls = 0
        failing_since = None
        seen = {}  # the state last read, and when it was first seen (controller clock)
        while True:
            self.sleep(min(POLL_STEPS[min(polls, len(POLL_STEPS) - 1)], interval))
            polls += 1
            try:
                res = self._status(jid, async_dir, task_vars)
            except Exception:  # a bounced connection: retried like Ansible's own async polling
                failing_since = failing_since or self.clock()
                if self.clock() - failing_since > POLL_FAILURE_SECONDS:
                    raise
                self._reset()
                continue
            if res.get("finished") or (res.get("failed") and res.get("_ansible_parsed")):
                return res
            if res.get("failed"):  # async_status's output did not parse: retried, then reported
                failing_since = failing_since or self.clock()
                if self.clock() - failing_since > POLL_FAILURE_SECONDS:
                    return res
                continue
            failing_since = None
            if self.clock() >= next_line:
                next_line = self.clock() + interval
                state = self._read(path)
                if state:
                    self._pid = state.get("pid") or self._pid
                    if seen.get("updated") != state.get("updated") or seen.get("step") != state.get("step"):
                        seen = {"updated": state.get("updated"), "step": state.get("step"), "at": self.clock()}
                    since = float(state.get("step_seconds") or 0) + (self.clock() - seen["at"])
                    line = progress_line(state, host, running_for=since)
                    if line:
                        self.display.display(line)

    def _reset(self):
        try:
            self.action._connection.reset()
        except Exception as exc:  # best effort, as Ansible's own async polling
            self.display.vvvv("homelab.immich: resetting the connection: %s" % exc)

    def _stop(self):
        """SIGTERM to the module on the managed host (the engine unwinds: partial files removed, locks freed),
        as a plain task's module dies with its connection."""
        pid = self._pid
        try:
            if pid is None:
                pid = (self._read(self._path) or {}).get("pid")
            if pid:
                self.action._low_level_execute_command("kill -TERM %d" % int(pid), sudoable=True)
        except Exception as exc:  # the original error is what the user must see
            self.display.vvv("homelab.immich: stopping the module (pid %s): %s" % (pid, exc))

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """Ctrl-C or a stop of ansible-playbook reaches the worker as SIGINT/SIGTERM, and the worker ends at
        once (its own handler); the async job would run on, detached. Stop the module first, then let
        the worker's handler do what it does."""
        previous = {}

        def handler(signum, frame):
            self._stop()
            old = previous.get(signum)
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
            if callable(old):
                old(signum, frame)
            elif old != signal.SIG_IGN:
                os.kill(os.getpid(), signum)

        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread: no handler of ours
            pass
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old if old is not None else signal.SIG_DFL)

    def _cleanup(self, jid, async_dir, path, task_vars):
        action = self.action
        try:
            action._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                   module_args={"jid": jid, "mode": "cleanup", "_async_dir": async_dir})
            action._remove_tmp_path(action._connection._shell.tmpdir)
            if path:
                action._low_level_execute_command("rm -f %s" % shlex.quote(path), sudoable=True)
        except Exception as exc:  # a job file left behind must not fail a good backup
            self.display.vvv("homelab.immich: cleaning up async job %s: %s" % (jid, exc))


class ProgressAction(ActionBase):
    """The action plugin of a module with progress lines (homelab.immich.backup_run, restore_files): the module
    runs asynchronously on the managed host, its progress is printed every ``progress_interval`` seconds, and
    the module's result is returned unchanged."""

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ProgressAction, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        return merge_hash(result, ProgressRunner(self, Display()).run(task_vars or {}))
