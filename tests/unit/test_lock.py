"""lock: flock on the instance folder. 200 racing processes: never two holders; a killed holder frees it at once."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import lock as lk

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _contend(path, log, n):
    got = lk.Lock(path)
    try:
        got.acquire(lk.holder_record("run-%d" % n), wait_seconds=0)
    except lk.LockBusyError:
        return
    with open(log, "a") as fh:
        fh.write("in %d %f\n" % (n, time.monotonic()))
        fh.flush()
        time.sleep(0.002)
        fh.write("out %d %f\n" % (n, time.monotonic()))
    got.release()


def test_200_racing_processes_never_hold_it_together(tmp_path):
    path, log = str(tmp_path / "immich" / ".lock"), str(tmp_path / "log")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_contend, args=(path, log, n)) for n in range(200)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    events = [line.split() for line in open(log)]
    assert events, "nobody ever got the lock"
    holders = 0
    for kind, _n, _t in events:  # appends under the lock: in/out must strictly alternate
        holders += 1 if kind == "in" else -1
        assert holders in (0, 1), events
    assert holders == 0 and sum(1 for e in events if e[0] == "in") >= 1


def test_busy_names_the_holder_then_a_killed_holder_frees_it_at_once(tmp_path):
    path = str(tmp_path / "immich" / ".lock")
    code = ("import sys, time; sys.path.insert(0, %r); "
            "from ansible_collections.homelab.immich.plugins.module_utils import lock; "
            "lock.Lock(%r).acquire(lock.holder_record('scheduled-1', 'scheduled backup')); print('held', flush=True); "
            "time.sleep(60)" % (os.path.join(ROOT, "build", "collections"), path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        holder = json.load(open(path))
        assert holder["pid"] == proc.pid and holder["purpose"] == "scheduled backup"  # the run's own pid
        with pytest.raises(lk.LockBusyError, match="scheduled backup run scheduled-1 \\(pid %d" % proc.pid):
            lk.Lock(path).acquire(lk.holder_record("me"))
        assert lk.is_held(path)[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        mine = lk.Lock(path).acquire(lk.holder_record("me"))  # no stale-lock guessing, no waiting
        assert json.load(open(path))["run_id"] == "me"
        mine.release()
        assert not lk.is_held(path)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_wait_gets_it_when_the_holder_ends(tmp_path):
    path = str(tmp_path / ".lock")
    first = lk.Lock(path).acquire(lk.holder_record("first"))
    t0 = time.monotonic()
    with pytest.raises(lk.LockBusyError):
        lk.Lock(path).acquire(lk.holder_record("second"), wait_seconds=0.3, poll=0.05)
    assert time.monotonic() - t0 >= 0.3
    first.release()
    lk.Lock(path).acquire(lk.holder_record("second"), wait_seconds=1, poll=0.05).release()
