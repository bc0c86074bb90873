"""consistency=maintenance (issue 12): the backup puts Immich in its own maintenance mode for the dump and the
copy and leaves it afterwards, also when the dump is killed or the run itself is killed; the dump does not
restore into maintenance mode; a server without the command falls back to stopping it, and says so."""
import json
import os
import signal
import subprocess
import threading
import time

import timer
from rolerun import report, run_playbook, write_inventory

from ansible_collections.homelab.immich.plugins.module_utils import dump_format, lock, quiesce, sets


class ConfigPoller(threading.Thread):
    """What /api/server/config says about maintenance mode, every 0.2 s."""

    def __init__(self, inst):
        super().__init__(daemon=True)
        self.inst, self.seen, self.stop = inst, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            status, body = self.inst.api("GET", "/api/server/config")
            if status == 200:
                self.seen.append(bool(body.get("maintenanceMode")))
            self.stop.wait(0.2)


def maintenance_in_db(inst):
    value = inst.psql("SELECT value FROM system_metadata WHERE key = 'maintenance-mode'")
    return bool(value) and json.loads(value).get("isMaintenanceMode", False)


def test_maintenance_mode_for_the_dump_and_the_copy(make_instance, tmp_path):
    inst = make_instance(pg=15, seed="small", name="q15-mm-" + os.urandom(3).hex())
    inv = write_inventory(tmp_path, inst, immich_backup_consistency="maintenance")
    poller = ConfigPoller(inst)
    poller.start()
    rc, out = run_playbook(inv, "backup")
    poller.stop.set()
    poller.join()
    assert rc == 0, out[-4000:]
    result = report(tmp_path, "backup")
    steps = [s["name"] for s in result["steps"]]
    assert steps.index("quiesce server") < steps.index("dump") < steps.index("originals") < steps.index("resume server")
    assert True in poller.seen and poller.seen[-1] is False  # it was in maintenance mode, and is no more
    assert not maintenance_in_db(inst) and inst.ping()
    set_dir = result["set_dir"]
    assert sets.read_info(set_dir)["consistency"] == "maintenance"
    dump, _man = sets.find_dump(set_dir)
    text = b"".join(dump_format.PlainReader(dump).chunks())
    assert b'maintenance-mode\t{"isMaintenanceMode": false}' in text  # it does not restore into maintenance mode
    assert b'"isMaintenanceMode": true' not in text
    assert not os.path.exists(os.path.join(str(tmp_path), "backups", inst.name, quiesce.MARKER))


def test_a_killed_dump_and_a_killed_run_leave_maintenance_mode(make_instance, tmp_path):
    inst = make_instance(pg=15, seed="small", name="q15-mk-" + os.urandom(3).hex())
    local = str(tmp_path / "backups")
    cfg = timer.write_config(tmp_path / "timer.json", inst, [{"path": local}], {"consistency": "maintenance"})
    # the dump is killed inside the database container while the server is in maintenance mode
    proc = subprocess.Popen(timer.argv(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=timer.env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not maintenance_in_db(inst):
        time.sleep(0.05)
    assert maintenance_in_db(inst), "the run never entered maintenance mode"
    while time.monotonic() < deadline:
        if subprocess.run(["docker", "exec", inst.db, "pkill", "-KILL", "pg_dump"], capture_output=True,
                          check=False).returncode == 0:
            break
        time.sleep(0.02)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1 and "step 'dump'" in out, out
    assert not maintenance_in_db(inst) and inst.ping(), "a failed dump left the server in maintenance mode"
    assert sets.list_sets(sets.instance_root(local, inst.name)) == []
    # the run itself is killed (SIGKILL: no finally) while in maintenance mode: the next run leaves it first
    proc = subprocess.Popen(timer.argv(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=timer.env())
    while time.monotonic() < deadline + 120 and not maintenance_in_db(inst):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert maintenance_in_db(inst)
    assert not lock.is_held(os.path.join(local, inst.name, lock.LOCK_NAME))[0]
    res = timer.run(cfg, report=tmp_path / "last.json")
    assert res.returncode == 0, res.stdout + res.stderr
    last = json.load(open(str(tmp_path / "last.json")))
    assert any("was killed before it left it" in w for w in last["warnings"]), last["warnings"]
    assert not maintenance_in_db(inst) and inst.ping()


def test_without_the_command_it_stops_the_server_and_says_so(make_instance, tmp_path):
    inst = make_instance(pg=15, seed="small", name="q15-old-" + os.urandom(3).hex(), immich_version="v1.130.3")
    before = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", inst.server], capture_output=True,
                            text=True, check=True).stdout
    res = timer.run(timer.write_config(tmp_path / "timer.json", inst, [{"path": str(tmp_path / "b")}],
                                       {"consistency": "maintenance"}), report=tmp_path / "last.json")
    assert res.returncode == 0, res.stdout + res.stderr
    last = json.load(open(str(tmp_path / "last.json")))
    assert any("has no `immich-admin enable-maintenance-mode`" in w for w in last["warnings"]), last["warnings"]
    assert sets.read_info(last["set_dir"])["consistency"] == "stop_server"
    after = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", inst.server], capture_output=True,
                           text=True, check=True).stdout
    assert after != before and inst.ping()
