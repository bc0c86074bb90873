# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How immich-server is kept still while the database is dumped and the originals copied.

    online       nothing: the dump is one snapshot and the files are copied after it (a new upload is at
                 worst an orphan file, never a row without its file)
    stop_server  `docker stop` of immich-server, `docker start` afterwards, whatever happened
    maintenance  Immich's own maintenance mode (`immich-admin enable-maintenance-mode`, v2.5+): the API stops
                 taking uploads and the jobs stop, the server keeps running; left afterwards, whatever
                 happened. Where the server has no such command (older Immich) it falls back to stop_server
                 and says so. A marker file beside the sets records that this run entered maintenance mode:
                 when a run was killed (SIGKILL, power cut) before it could leave, the next run leaves it.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError
from ansible_collections.homelab.immich.plugins.module_utils._fsio import read_json, write_json_atomic

MARKER = ".maintenance.json"
MODES = ("online", "stop_server", "maintenance")


def _docker(*args, timeout=120):
    return dx.run([dx.DOCKER] + list(args), timeout=timeout)


def wait_healthy(container, timeout):
    """Until the container is healthy (or running, when it has no healthcheck); OpError after ``timeout``."""
    fmt = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}"
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        rc, out, _err = _docker("inspect", "-f", fmt, container)
        state = out.strip() if rc == 0 else "missing"
        if state in ("healthy", "running"):  # "running" only when the container has no healthcheck
            return state
        time.sleep(1)
    raise OpError("immich-server %s did not come back within %d s (state %s). Start it: docker start %s"
                  % (container, timeout, state, container))


def server_maintenance(instance):
    """True/False from the server's /api/server/config (None when it does not answer or has no URL)."""
    url = instance.get("server_url")
    if not url:
        return None
    try:
        from ansible.module_utils.urls import open_url  # noqa: PLC0415 - as a module
    except ImportError:  # the scheduled backup runs without Ansible
        from urllib.request import build_opener  # noqa: PLC0415

        def open_url(target, timeout):
            return build_opener().open(target, timeout=timeout)
    try:
        resp = open_url(url.rstrip("/") + "/api/server/config", timeout=5)
        return bool(json.loads(resp.read()).get("maintenanceMode"))
    except (OSError, ValueError):
        return None


class Quiesce(object):
    """enter() before the dump, leave() after the copy (in a finally); ``used`` is the mode in effect."""

    def __init__(self, instance, mode, marker_dir, run_id, timeout=180):
        if mode not in MODES:
            raise ValueError("consistency must be one of %s, not %r" % (", ".join(MODES), mode))
        self.instance = instance
        self.mode = mode
        self.used = "online"
        self.was = "online"  # what the run used, for its report (``used`` goes back to online on leave)
        self.server = instance.get("server_container")
        self.marker = os.path.join(marker_dir, MARKER)
        self.run_id = run_id
        self.timeout = timeout
        self.notes = []

    # -- Immich's maintenance mode -------------------------------------------------------------------
    def has_maintenance_command(self):
        rc, out, _err = _docker("exec", self.server, "immich-admin", "help", timeout=60)
        return rc == 0 and "enable-maintenance-mode" in out

    def _admin(self, command):
        rc, out, err = _docker("exec", self.server, "immich-admin", command, timeout=120)
        if rc != 0 or "has been" not in out:
            detail = (err or out).strip()[-300:]
            raise OpError("`immich-admin %s` in %s failed (rc %s: %s)." % (command, self.server, rc, detail))

    def _wait_mode(self, wanted):
        """Until the server answers in (or out of) maintenance mode, as far as it can tell."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if server_maintenance(self.instance) is wanted:
                return
            if not self.instance.get("server_url"):  # nothing to ask: the restarted container's health tells
                time.sleep(2)
                wait_healthy(self.server, self.timeout)
                return
            time.sleep(0.5)
        raise OpError("immich-server %s did not %s maintenance mode within %d s." % (
            self.server, "enter" if wanted else "leave", self.timeout))

    def leave_leftover(self):
        """A previous run that entered maintenance mode and was killed before leaving it: leave it now.
        Only called while this run holds the lock, so that run is certainly gone. Returns a note or None."""
        left = read_json(self.marker)
        if left is None:
            return None
        note = ("run %s entered Immich's maintenance mode on %s and was killed before it left it: left it now" % (
            left.get("run_id"), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(left.get("started") or 0)))))
        if self.server and self.has_maintenance_command():
            self._admin("disable-maintenance-mode")
            self._wait_mode(False)
        os.unlink(self.marker)
        self.notes.append(note)
        return note

    # -- the two ends --------------------------------------------------------------------------------
    def enter(self):
        if self.mode == "online" or not self.server:
            return self.used
        if self.mode == "maintenance":
            if self.has_maintenance_command():
                write_json_atomic(self.marker, {"run_id": self.run_id, "started": time.time()})
                self.used = self.was = "maintenance"  # from here on, leave() leaves it, whatever happens next
                self._admin("enable-maintenance-mode")
                self._wait_mode(True)
                return self.used
            self.notes.append("immich-server %s has no `immich-admin enable-maintenance-mode` (Immich before 2.5?): "
                              "it is stopped for the dump and the copy instead (consistency stop_server)" % self.server)
        rc, _out, err = _docker("stop", self.server, timeout=180)
        if rc != 0:
            raise OpError("Cannot stop immich-server %s: %s" % (self.server, err.strip()))
        self.used = self.was = "stop_server"
        return self.used

    def leave(self):
        if self.used == "maintenance":
            self._admin("disable-maintenance-mode")
            self._wait_mode(False)
            wait_healthy(self.server, self.timeout)
            if os.path.exists(self.marker):
                os.unlink(self.marker)
        elif self.used == "stop_server":
            rc, _out, err = _docker("start", self.server, timeout=180)
            if rc != 0:
                raise OpError("Cannot start immich-server %s again: %s. Start it: docker start %s"
                              % (self.server, err.strip(), self.server))
            wait_healthy(self.server, self.timeout)
        self.used = "online"
