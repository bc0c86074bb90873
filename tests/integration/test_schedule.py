"""roles/schedule: rendered units pass `systemd-analyze verify`, the entry point (the collection's own
module_utils, no Ansible) produces a verified set and pings start/success, a failing run pings
failure and names its step, and the dumper sidecar writes the postgres-backup-local layout.
"""
import json
import os
import shutil
import subprocess
import time

import pytest
import timer
from test_monitoring import BIN, ROOT, Receiver

from ansible_collections.homelab.immich.plugins.module_utils import dump_format, sets

PLAY = """
- name: Install the scheduled backup
  hosts: localhost
  gather_facts: false
  roles:
    - role: homelab.immich.schedule
"""


def ansible(tmp_path, extra, play=PLAY):
    path = tmp_path / "play.yml"
    path.write_text(play)
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               PATH=BIN + os.pathsep + os.environ["PATH"])
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=" + os.path.join(BIN, "python"),
                           "-e", "@" + str(tmp_path / "vars.json"), str(path)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_schedule_role_units_and_one_run(tmp_path, make_instance, lab, receiver):
    inst = make_instance(pg=15, seed="small", name="d15-sched-" + os.urandom(3).hex())
    target = tmp_path / "backup"
    target.mkdir()
    dirs = {k: str(tmp_path / k) for k in ("lib", "etc", "systemd", "cron")}
    for k in ("systemd", "cron"):  # exist on every real host
        os.makedirs(dirs[k])
    extra = {
        "immich_project_dir": inst.root, "immich_backup_targets": [{"path": str(target)}],
        "immich_schedule_backend": "systemd", "immich_schedule_enable_now": False,
        "immich_schedule_lib_dir": dirs["lib"], "immich_schedule_config_dir": dirs["etc"],
        "immich_schedule_systemd_dir": dirs["systemd"], "immich_schedule_cron_dir": dirs["cron"],
        "immich_backup_monitor_url": receiver.url + "/ping/sched", "immich_schedule_python": "/usr/bin/python3",
        "immich_schedule_dumper": True, "immich_schedule_dumper_image": lab.images()["LAB_IMAGE_DUMPER"],
        "immich_schedule_dumper_schedule": "@every 5s",
        "immich_schedule_dumper_container_name": inst.prefix + "_db_dumper",
    }
    res = ansible(tmp_path, extra)
    assert res.returncode == 0, res.stdout + res.stderr
    again = ansible(tmp_path, extra)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout  # idempotent
    assert receiver.url not in res.stdout + again.stdout  # the ping URL is a secret

    unit = "homelab-immich-backup-" + inst.name
    service = os.path.join(dirs["systemd"], unit + ".service")
    timer_unit = os.path.join(dirs["systemd"], unit + ".timer")
    text = open(timer_unit).read()
    assert "Persistent=true" in text and "RandomizedDelaySec=1800" in text
    if shutil.which("systemd-analyze"):
        v = subprocess.run(["systemd-analyze", "verify", "--man=no", service, timer_unit], capture_output=True, text=True, check=False)
        # Only problems about our own files count (the host's unrelated units may warn).
        ours = [ln for ln in (v.stdout + v.stderr).splitlines() if unit in ln]
        assert not ours, v.stdout + v.stderr
    else:  # pragma: no cover - honest fallback: parse the unit as systemd's ini format
        assert "ExecStart=" in open(service).read()

    # Run the service's ExecStart exactly as systemd would (no Ansible involved).
    run = timer.run_unit(service)
    assert run.returncode == 0, run.stdout + run.stderr
    root = sets.instance_root(str(target), inst.name)
    sid = sets.latest_good(root)
    assert sid, os.listdir(root)
    report = sets.verify(os.path.join(root, sid))
    assert report["ok"], report["problems"]
    assert report["info"]["rows_by_table"]["asset"] == inst.row_counts()["asset"]
    assert [h["path"] for h in receiver.hits] == ["/ping/sched/start", "/ping/sched"]
    last = json.load(open(os.path.join(dirs["etc"], inst.name + ".last-run.json")))
    assert last["status"] == "ok" and last["trigger"] == "schedule"

    # A failing run: the DB container is gone -> failure ping naming the step, nothing promoted.
    cfg_path = os.path.join(dirs["etc"], inst.name + ".json")
    cfg = json.load(open(cfg_path))
    assert oct(os.stat(cfg_path).st_mode & 0o777) == "0o600"
    cfg["discover"]["overrides"] = {"db_container": "d-no-such-container"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(cfg))
    fail = subprocess.run(["/usr/bin/python3", os.path.join(dirs["lib"], "immich_backup_run.py"), "--config", str(bad)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert fail.returncode == 1 and "step 'preflight'" in fail.stdout and "d-no-such-container" in fail.stdout, \
        fail.stdout + fail.stderr
    assert [h["path"] for h in receiver.hits][2:] == ["/ping/sched/start", "/ping/sched/fail"]
    assert "preflight" in receiver.hits[-1]["body"]
    assert sets.list_sets(root) == [sid]

    # The dumper sidecar (the seed's automatic database backups): added to the project, started by the role,
    # dumping on its own schedule into last/ daily/ weekly/ monthly/.
    container = extra["immich_schedule_dumper_container_name"]
    assert "docker-compose.dumper.yml" in open(os.path.join(inst.root, ".env")).read()
    latest = os.path.join(inst.root, "db_dumps", "last", "immich-latest.sql.gz")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not os.path.exists(latest):
        time.sleep(1)
    assert os.path.islink(latest), subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False).stdout
    for sub in ("daily", "weekly", "monthly"):
        assert os.path.exists(os.path.join(inst.root, "db_dumps", sub, "immich-latest.sql.gz"))
    info = dump_format.inspect_dump(latest)
    assert info["trailer"] == "database" and info["compression"] == "gzip"

    # The drill restores the dumper's newest db_dumps/last/*-latest.sql.gz into a scratch instance.
    from test_drill import drill  # noqa: PLC0415 - shares the drill runner

    reports = tmp_path / "reports"
    res = drill(tmp_path, inst, target, reports, tmp_path / "scratch",
                immich_drill_dump_file=os.path.join(inst.root, "db_dumps", "last", "*-latest.sql.gz"))
    assert res.returncode == 0, res.stdout[-5000:]
    report = json.loads((reports / "drill-localhost.json").read_text())
    assert report["status"] == "ok" and report["set_id"].startswith("immich-") and report["leftovers"] == []
    # A dump has no manifest and no photos: the set's file checks are not run, the restore's proofs are (the
    # per-asset SHA-1 reports what the dump's rows name without failing: the originals are not in a dump).
    from test_drill import CHECKS  # noqa: PLC0415
    set_only = {"files restored and verified", "files equal the set after the server started",
                "every file the database references is on disk"}
    assert {c["name"]: c["ok"] for c in report["checks"]} == dict.fromkeys(CHECKS - set_only, True), report["checks"]

    # state=absent removes the timer, the configuration and the dumper (container, compose file, COMPOSE_FILE entry)
    gone = ansible(tmp_path, dict(extra, immich_schedule_state="absent"))
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not os.path.exists(service) and not os.path.exists(cfg_path)
    assert not os.path.exists(os.path.join(inst.root, "docker-compose.dumper.yml"))
    assert "docker-compose.dumper.yml" not in open(os.path.join(inst.root, ".env")).read()
    ps = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True).stdout.split()
    assert container not in ps
    assert os.path.islink(latest)  # the dumps themselves stay
