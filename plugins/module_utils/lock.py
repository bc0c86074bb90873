# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One backup of an instance at a time: a kernel lock (flock) on ``<target>/<instance>/.lock``.

The kernel holds the lock for exactly as long as the process holding it lives, so there is nothing
to guess: two runs racing can never both hold it, a lock whose owner is writing its details is
held, and the lock of a killed run (SIGKILL, OOM, reboot) is free at once for the next run. The
file stays in place (removing a lock file while another process waits on it would let two runs in);
its content only names the last holder, for messages.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import socket
import time

from ansible_collections.homelab.immich.plugins.module_utils._fsio import PRIVATE_FILE, mkdir_private

LOCK_NAME = ".lock"


class LockBusyError(Exception):
    """Another run holds the lock; ``holder`` is what it wrote (may be {} while it is starting)."""

    def __init__(self, msg, holder):
        Exception.__init__(self, msg)
        self.holder = holder


def holder_record(run_id, purpose="backup"):
    """What the holder writes into the lock file: this process, this host, now."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
            "run_id": run_id, "purpose": purpose}


def read_holder(path):
    """The last holder's record ({} when the file is empty or unreadable, None when absent)."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError:
        return None
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {}


def describe(holder, path):
    if not holder:
        return "lock %s is held by a run that is just starting" % path
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder.get("started") or 0)))
    return "lock %s is held by the %s run %s (pid %s on %s, since %s)" % (
        path, holder.get("purpose") or "backup", holder.get("run_id"), holder.get("pid"), holder.get("host"), when)


class Lock(object):
    """``with Lock(path).acquire(holder, wait_seconds)`` ... or acquire()/release()."""

    def __init__(self, path):
        self.path = path
        self._fd = None

    @property
    def held(self):
        return self._fd is not None

    def _try(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        return fd

    def acquire(self, holder, wait_seconds=0, poll=0.5, purpose="backup"):
        """Take the lock or raise LockBusyError naming its holder after ``wait_seconds``."""
        mkdir_private(os.path.dirname(os.path.abspath(self.path)))
        deadline = time.monotonic() + max(float(wait_seconds or 0), 0.0)
        while True:
            fd = self._try()
            if fd is not None:
                break
            if time.monotonic() >= deadline:
                current = read_holder(self.path)
                raise LockBusyError("Another %s of this instance is running: %s. Nothing was written. Wait for it to "
                                    "finish (or give it time with a lock wait); the lock is freed the moment that "
                                    "process ends, even when it is killed." % (purpose, describe(current, self.path)),
                                    current or {})
            time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self):
        if self._fd is None:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def is_held(path):
    """(held?, holder record) without taking the lock for longer than a probe."""
    if not os.path.exists(path):
        return False, None
    probe = Lock(path)
    fd = probe._try()  # noqa: SLF001 - same module's probe
    if fd is None:
        return True, read_holder(path) or {}
    os.close(fd)
    return False, read_holder(path)
