# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A mirror of the backup sets on another host over SSH (a NAS, a friend's server).

    {host: nas.lan, path: /volume1/immich, user: backup, port: 22, ssh_args: [-i, /root/.ssh/id_nas]}

The remote needs sshd, rsync and flock (util-linux or busybox). A set goes to `.partial-<id>`
with rsync (unchanged originals hard links to the remote's previous set), is compared byte for
byte with the local set (rsync --checksum --dry-run must find nothing to do), then promoted. The
remote `.lock` is held with flock by an SSH session that lives exactly as long as this run: a
killed run frees it at once. Every remote command is argv quoted with shlex, never a user string.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import shlex
import subprocess
import time

from ansible_collections.homelab.immich.plugins.module_utils import sets
from ansible_collections.homelab.immich.plugins.module_utils.targets import Target, TargetError

LOCKED_EXIT = 75
SET_SEPARATOR = "\x1e"


def _run(argv, input_bytes=None, timeout=3600):
    try:
        res = subprocess.run(argv, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             timeout=timeout, check=False)
    except OSError as exc:
        return 127, "", str(exc)
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after %ss" % timeout
    return res.returncode, res.stdout.decode("utf-8", "replace"), res.stderr.decode("utf-8", "replace")


class SshTarget(Target):
    kind = "ssh"

    def __init__(self, spec, instance_name, run=_run, popen=subprocess.Popen):
        Target.__init__(self, spec, instance_name)
        self.host = spec["host"]
        self.user = spec.get("user") or ""
        self.port = int(spec.get("port") or 22)
        args = spec.get("ssh_args") or []
        self.ssh_args = shlex.split(args) if isinstance(args, str) else [str(a) for a in args]
        self.path = spec["path"].rstrip("/") or "/"
        self.root = "%s/%s" % (self.path, instance_name)
        self._run = run
        self._popen = popen
        self._lock_proc = None

    @property
    def login(self):
        return "%s@%s" % (self.user, self.host) if self.user else self.host

    @property
    def label(self):
        return "%s:%s" % (self.login, self.path)

    # -- argv builders (pure) ------------------------------------------------------------------------
    def ssh_base(self):
        return ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-p", str(self.port)] + self.ssh_args

    def ssh_argv(self, *words):
        """ssh argv running one remote command whose words are quoted for the remote shell."""
        return self.ssh_base() + [self.login, " ".join(shlex.quote(str(w)) for w in words)]

    def ssh_script(self, script, *args):
        """ssh argv running a fixed POSIX sh script with positional arguments ($1, $2, ...)."""
        return self.ssh_argv("sh", "-c", script, "homelab-immich", *args)

    def rsync_e(self):
        return " ".join(shlex.quote(w) for w in self.ssh_base())

    def rsync_argv(self, src, dest, link_dest=None, check=False):
        argv = ["rsync", "-a", "--numeric-ids", "--chmod=D0700,F0600", "-e", self.rsync_e()]
        if check:
            argv += ["--checksum", "--dry-run", "--itemize-changes", "--delete"]
        else:
            argv += ["--whole-file", "--stats"]
            if link_dest:
                argv.append("--link-dest=../%s" % link_dest)
        return argv + [src.rstrip("/") + "/", "%s:%s/" % (self.login, dest)]

    # -- operations ---------------------------------------------------------------------------------
    def _fail(self, what, rc, err, reason=None):
        if rc == 255 or "Connection refused" in err or "Could not resolve" in err or "timed out" in err:
            reason = reason or "unreachable"
            hint = "Check that %s is up and reachable on port %d, and that this host's key is authorized there (`%s true`)." % (
                self.host, self.port, " ".join(self.ssh_base() + [self.login]))
        elif "Permission denied" in err:
            reason = reason or "auth"
            hint = "The SSH key of this host is not accepted by %s: add it to ~/.ssh/authorized_keys there." % self.login
        else:
            reason = reason or "failed"
            hint = "See the message above."
        raise TargetError("SSH target %s: %s failed (rc %s: %s). The local sets are intact. %s"
                          % (self.label, what, rc, err.strip()[-400:] or "no message", hint), reason=reason)

    def check(self):
        script = ('mkdir -p "$1" && chmod 0700 "$1" && for t in rsync flock; do command -v "$t" >/dev/null '
                  '|| { echo "missing $t" >&2; exit 3; }; done && df -Pk "$1" | tail -n 1')
        rc, out, err = self._run(self.ssh_script(script, self.root), timeout=60)
        if rc == 3:
            raise TargetError("SSH target %s lacks %s, which a mirror needs. Install it there (Debian/Ubuntu: apt-get "
                              "install rsync util-linux). Nothing was written." % (self.label, err.strip().replace("missing ", "")),
                              reason="missing")
        if rc != 0:
            self._fail("the preflight", rc, err)
        parts = out.split()
        free = int(parts[3]) * 1024 if len(parts) >= 4 and parts[3].isdigit() else None
        return {"free_bytes": free}

    def lock(self, holder, stale_seconds=None, wait_seconds=0):
        """flock on <root>/.lock held by an ssh session until unlock() (or this process) ends it."""
        wait = int(max(wait_seconds or 0, 0))
        script = ('mkdir -p "$1" && exec flock %s -E %d "$1/.lock" sh -c \'printf "%%s\\n" "$2" > "$1/.lock.holder"; '
                  'echo locked; exec cat >/dev/null\' homelab-immich "$1" "$2"' % ("-w %d" % wait if wait else "-n", LOCKED_EXIT))
        proc = self._popen(self.ssh_script(script, self.root, json.dumps(holder, sort_keys=True)),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = proc.stdout.readline().decode("utf-8", "replace").strip()
        if line == "locked":
            self._lock_proc = proc
            return
        proc.stdin.close()
        rc = proc.wait()
        err = proc.stderr.read().decode("utf-8", "replace")
        if rc == LOCKED_EXIT:
            holder_now = self._holder()
            raise TargetError("SSH target %s is locked by another run (%s). Nothing was written there; the local set is "
                              "fine. It is freed when that run ends." % (self.label, _describe(holder_now)),
                              reason="locked", holder=holder_now)
        self._fail("taking the remote lock", rc, err)

    def _holder(self):
        rc, out, _err = self._run(self.ssh_argv("cat", self.root + "/.lock.holder"), timeout=60)
        try:
            return json.loads(out) if rc == 0 and out.strip() else {}
        except ValueError:
            return {}

    def unlock(self, holder=None):
        proc, self._lock_proc = self._lock_proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def sets(self):
        script = ('cd "$1" 2>/dev/null || exit 0; for d in [0-9]*T*Z; do [ -d "$d" ] || continue; '
                  'printf "\\036%s\\n" "$d"; cat "$d/set.json" 2>/dev/null; done')
        rc, out, err = self._run(self.ssh_script(script, self.root), timeout=300)
        if rc != 0:
            self._fail("listing the sets", rc, err)
        return parse_listing(out)

    def delete(self, set_ids):
        for sid in set_ids:
            if not sets.SET_ID_RE.match(sid):
                raise TargetError("refusing to delete %r on %s: not a set id" % (sid, self.label))
        if not set_ids:
            return
        rc, _out, err = self._run(self.ssh_script('cd "$1" && shift && rm -rf -- "$@"', self.root, *set_ids))
        if rc != 0:
            self._fail("deleting old sets", rc, err)

    def send(self, set_dir, set_info, previous=None, progress=None):
        t0 = time.monotonic()
        sid = set_info["set_id"]
        prep = ('cd "$1" && rm -rf .partial-* && if [ -d "$2" ]; then echo present; '
                'else readlink latest 2>/dev/null || true; fi')
        rc, out, err = self._run(self.ssh_script(prep, self.root, sid), timeout=600)
        if rc != 0:
            self._fail("preparing the copy", rc, err)
        latest = out.strip()
        if latest == "present":
            return {"set_id": sid, "verified": True, "seconds": 0.0, "note": "already there"}
        partial = "%s/.partial-%s" % (self.root, sid)
        link = latest if sets.SET_ID_RE.match(latest or "") else None
        rc, out, err = self._run(self.rsync_argv(set_dir, partial, link_dest=link), timeout=None)
        if rc != 0:
            self._fail("copying set %s with rsync" % sid, rc, err)
        sent = _stat_of(out, "Total bytes sent")
        rc, out, err = self._run(self.rsync_argv(set_dir, partial, check=True), timeout=None)
        if rc != 0:
            self._fail("checking the copy", rc, err)
        differs = [ln for ln in out.splitlines() if ln.strip()]
        if differs:
            raise TargetError("SSH target %s: the copy of set %s differs from the local set (%s): not promoted there. The "
                              "local set is fine; the next run copies it again." % (self.label, sid, "; ".join(differs[:5])),
                              reason="corrupt")
        promote = 'cd "$1" && mv ".partial-$2" "$2" && ln -sfn "$2" latest'  # -n: replace the link, not enter it
        rc, _out, err = self._run(self.ssh_script(promote, self.root, sid), timeout=600)
        if rc != 0:
            self._fail("promoting set %s" % sid, rc, err)
        return {"set_id": sid, "verified": True, "seconds": round(time.monotonic() - t0, 3), "bytes_sent": sent,
                "linked_to": link}


def _describe(holder):
    if not holder:
        return "a run that is just starting"
    return "run %s, pid %s on %s, since %s" % (holder.get("run_id"), holder.get("pid"), holder.get("host"),
                                               time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(holder.get("started") or 0))))


def _stat_of(out, label):
    for line in out.splitlines():
        if line.startswith(label + ":"):
            digits = "".join(c for c in line.split(":", 1)[1].split()[0] if c.isdigit())
            return int(digits) if digits else None
    return None


def parse_listing(out):
    """The remote listing (\\x1e<set id>\\n<set.json>...) as [{set_id, good, info}], oldest first."""
    found = []
    for chunk in out.split(SET_SEPARATOR):
        if not chunk.strip():
            continue
        sid, _nl, body = chunk.partition("\n")
        sid = sid.strip()
        if not sets.SET_ID_RE.match(sid):
            continue
        try:
            info = json.loads(body) if body.strip() else None
        except ValueError:
            info = None
        found.append({"set_id": sid, "good": sets.is_good(info), "info": info})
    return sorted(found, key=lambda e: e["set_id"])
