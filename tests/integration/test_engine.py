"""One backup engine (issue 10): the role and the timer make the same set; a backup that covers less than the
database says never becomes a good set and never costs one; SSH targets are locked, verified and pruned like
local ones; a killed scheduled run's lock is free at once."""
import json
import os
import shutil
import signal
import stat
import subprocess
import time

import timer
from rolerun import report, run_play, run_playbook, write_inventory

from ansible_collections.homelab.immich.plugins.module_utils import file_manifest, fingerprint, lock, set_mac, sets

SCHEDULE_PLAY = """
- name: Install the scheduled backup
  hosts: immich
  gather_facts: false
  roles:
    - role: homelab.immich.schedule
"""
STRICT = {"immich_backup_keep_last": 2, "immich_backup_keep_daily": 0, "immich_backup_keep_weekly": 0,
          "immich_backup_keep_monthly": 0, "immich_backup_keep_good": 1}


def modes(set_dir):
    """Permission bits of everything in a set, by kind."""
    found = set()
    for root, dirs, files in os.walk(set_dir):
        for d in dirs:
            found.add(("dir", stat.S_IMODE(os.lstat(os.path.join(root, d)).st_mode)))
        for f in files:
            found.add(("file", stat.S_IMODE(os.lstat(os.path.join(root, f)).st_mode)))
    return found


def test_role_and_timer_make_the_same_set(make_instance, nas, tmp_path):
    inst = make_instance(pg=15, seed="small", name="e15-same-" + os.urandom(3).hex())
    open(os.path.join(inst.upload_location, "upload", "scratch.tmp"), "w").write("partial upload")
    local = str(tmp_path / "backups")
    dirs = {k: str(tmp_path / k) for k in ("lib", "etc", "systemd", "cron")}
    for k in ("systemd", "cron"):
        os.makedirs(dirs[k])
    inv = write_inventory(tmp_path, inst, immich_backup_targets=[{"path": local}, nas["target"]],
                          immich_backup_excludes=["*.tmp"], immich_schedule_backend="systemd",
                          immich_schedule_enable_now=False, immich_schedule_lib_dir=dirs["lib"],
                          immich_schedule_config_dir=dirs["etc"], immich_schedule_systemd_dir=dirs["systemd"],
                          immich_schedule_cron_dir=dirs["cron"], immich_schedule_python="/usr/bin/python3")
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    by_role = report(tmp_path, "backup")
    rc, out = run_play(inv, SCHEDULE_PLAY, tmp_path)
    assert rc == 0, out[-4000:]
    service = os.path.join(dirs["systemd"], "homelab-immich-backup-%s.service" % inst.name)
    run = timer.run_unit(service)
    assert run.returncode == 0, run.stdout + run.stderr
    root = sets.instance_root(local, inst.name)
    a, b = (sets.read_info(os.path.join(root, sid)) for sid in sets.list_sets(root))
    assert a["set_id"] == by_role["set_id"] and (a["trigger"], b["trigger"]) == ("ansible", "schedule")
    assert sorted(a) == sorted(b) == sorted(sets.KEYS)
    assert sets.build_info(**dict(a)) == a and sets.build_info(**dict(b)) == b  # both obey the one schema
    assert {k: type(v) for k, v in a.items() if v is not None} == {k: type(v) for k, v in b.items() if k != "previous"}
    assert a["previous"] is None and b["previous"] == a["set_id"]
    for key in ("dump_kind", "folders", "excludes", "consistency", "files", "files_bytes", "rows_by_table", "format"):
        assert a[key] == b[key], key
    assert b["files_new"] == 0 and b["files_linked"] == b["files"]  # the timer's set reuses the role's
    key = set_mac.load_key(os.path.join(str(tmp_path), "keys", inst.name + ".key"))  # made by the first run, 0600
    for sid in (a["set_id"], b["set_id"]):
        assert modes(os.path.join(root, sid)) == {("dir", 0o700), ("file", 0o600)}
        assert set_mac.verify(os.path.join(root, sid), key)["ok"]  # signed, by the role and by the timer alike
        dump, _man = sets.find_dump(os.path.join(root, sid))
        assert fingerprint.read(dump + fingerprint.FILE_SUFFIX)["objects"]  # the database's code, recorded
        assert not any(e.path.endswith(".tmp") for e in file_manifest.read(os.path.join(root, sid, file_manifest.NAME)))
    # the timer wrote the SSH target too, verified, with latest on its own set
    remote = nas["target"]["path"] + "/" + inst.name
    assert sorted(nas["run"]("ls", remote).split()) == sorted([a["set_id"], b["set_id"], "latest"])
    assert nas["run"]("readlink", remote + "/latest").strip() == b["set_id"]
    assert json.loads(nas["run"]("cat", remote + "/" + b["set_id"] + "/set.json"))["trigger"] == "schedule"
    last = json.load(open(os.path.join(dirs["etc"], inst.name + ".last-run.json")))
    assert last["status"] == "ok" and [t["status"] for t in last["targets"]] == ["ok"]


def test_emptied_photos_never_replace_good_sets(make_instance, tmp_path):
    inst = make_instance(pg=15, seed="small", name="e15-empty-" + os.urandom(3).hex())
    local = str(tmp_path / "backups")
    inv = write_inventory(tmp_path, inst, immich_backup_targets=[{"path": local}], **STRICT)
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-4000:]
    first = report(tmp_path, "backup")
    good = first["set_id"]
    originals, referenced = first["coverage"]["by_kind"]["original"]["referenced"], first["coverage"]["referenced"]
    # the photo disk "not mounted": upload/ and library/ are empty folders
    for folder in ("upload", "library"):
        path = os.path.join(inst.upload_location, folder)
        shutil.rmtree(path)
        os.makedirs(path)
    rc, out = run_playbook(inv, "backup")
    assert rc != 0
    failed = report(tmp_path, "backup")
    assert failed["status"] == "failed" and failed["failed_step"] == "coverage"
    assert "%d of %d files the database references are not in the set" % (originals, referenced) in failed["error"], \
        failed["error"]
    assert "upload/" in failed["error"] and "disk mounted" in failed["error"] and "no set was deleted" in failed["error"]
    cfg = timer.write_config(tmp_path / "timer.json", inst, [{"path": local}],
                             {"retention": {"keep_last": 2, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_good": 1}})
    for _night in range(3):  # the timer keeps running against the empty disk
        res = timer.run(cfg)
        assert res.returncode == 1 and "step 'coverage'" in res.stdout, res.stdout + res.stderr
    root = sets.instance_root(local, inst.name)
    assert sets.list_sets(root) == [good]
    assert sets.verify(os.path.join(root, good))["ok"]


def test_ssh_target_is_pruned_like_the_local_one(make_instance, nas, tmp_path):
    inst = make_instance(pg=15, seed="small", name="e15-prune-" + os.urandom(3).hex())
    local = str(tmp_path / "backups")
    cfg = timer.write_config(tmp_path / "timer.json", inst, [{"path": local}, nas["target"]],
                             {"retention": {"keep_last": 2, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_good": 1}})
    made = []
    for _night in range(4):
        res = timer.run(cfg, report=tmp_path / "last.json")
        assert res.returncode == 0, res.stdout + res.stderr
        made.append(json.load(open(str(tmp_path / "last.json")))["set_id"])
        time.sleep(1.1)  # set ids have a resolution of one second
    remote = nas["target"]["path"] + "/" + inst.name
    assert sorted(nas["run"]("ls", remote).split()) == sorted(made[-2:] + ["latest"])
    assert sets.list_sets(sets.instance_root(local, inst.name)) == made[-2:]
    last = json.load(open(str(tmp_path / "last.json")))
    assert last["targets"][0]["pruned"] == [made[1]]


def test_a_killed_scheduled_run_frees_its_lock_at_once(make_instance, tmp_path):
    inst = make_instance(pg=15, seed="small", name="e15-kill-" + os.urandom(3).hex())
    local = str(tmp_path / "backups")
    cfg = timer.write_config(tmp_path / "timer.json", inst, [{"path": local}])
    lock_path = os.path.join(local, inst.name, lock.LOCK_NAME)
    proc = subprocess.Popen(timer.argv(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=timer.env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not lock.is_held(lock_path)[0]:
        time.sleep(0.01)
    held, holder = lock.is_held(lock_path)
    assert held and holder["pid"] == proc.pid and holder["purpose"] == "scheduled backup"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    res = timer.run(cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    assert time.monotonic() - t0 < 120 and "lock done" in res.stdout
    root = sets.instance_root(local, inst.name)
    assert len(sets.list_sets(root)) == 1 and not [n for n in os.listdir(root) if n.startswith(sets.PARTIAL_PREFIX)]
