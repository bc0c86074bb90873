"""The drill (playbooks/drill.yml) on PG 15: production answers pong throughout, nothing of the scratch
instance is left behind, reports are written; a corrupted set fails and its report names the step."""
import json
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - our own report

from test_monitoring import BIN, ROOT

from ansible_collections.homelab.immich.plugins.module_utils import manifest

ENTRY = os.path.join(ROOT, "roles", "schedule", "files", "immich_backup_run.py")


def backup(inst, target):
    cfg = os.path.join(str(target), "..", "backup.json")
    with open(cfg, "w") as fh:
        json.dump({"project_dir": inst.root, "targets": [str(target)]}, fh)
    res = subprocess.run(["python3", ENTRY, "--config", cfg], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, HOMELAB_IMMICH_LIB=os.path.join(ROOT, "build", "collections")), check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def drill(tmp_path, inst, target, reports, scratch_root, **more):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               PATH=BIN + os.pathsep + os.environ["PATH"])
    extra = {"immich_hosts": "localhost", "immich_drill_project_dir": inst.root, "immich_drill_source": str(target),
             "immich_drill_report_dir": str(reports), "immich_drill_scratch_root": str(scratch_root),
             "immich_drill_sample": 0, "ansible_python_interpreter": os.path.join(BIN, "python"), **more}
    (tmp_path / "drill-vars.json").write_text(json.dumps(extra))
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "@" + str(tmp_path / "drill-vars.json"), "homelab.immich.drill"],
                          capture_output=True, text=True, env=env, timeout=900, check=False)


def leftovers(project_prefix):
    found = []
    for kind in (["ps", "-a", "--format", "{{.Names}}"], ["network", "ls", "--format", "{{.Name}}"],
                 ["volume", "ls", "--format", "{{.Name}}"]):
        out = subprocess.run(["docker"] + kind, capture_output=True, text=True, check=False).stdout.split()
        found += [x for x in out if x.startswith(project_prefix) and "drill" in x]
    return found


class Poller(threading.Thread):
    def __init__(self, inst):
        super().__init__(daemon=True)
        self.inst, self.answers, self.stop = inst, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.answers.append(self.inst.ping())
            self.stop.wait(0.5)


def test_drill_good_and_corrupted(tmp_path, make_instance):
    inst = make_instance(pg=15, seed="small", name="d15-dr-" + os.urandom(3).hex())
    target, reports, scratch_root = tmp_path / "backup", tmp_path / "reports", tmp_path / "scratch"
    target.mkdir()
    backup(inst, target)
    before = inst.row_counts()

    poller = Poller(inst)
    poller.start()
    started = time.monotonic()
    res = drill(tmp_path, inst, target, reports, scratch_root)
    poller.stop.set()
    poller.join()
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert poller.answers and all(poller.answers), "production stopped answering pong during the drill"
    assert len(poller.answers) >= (time.monotonic() - started) / 0.5 * 0.5
    report = json.loads((reports / "drill-localhost.json").read_text())
    assert report["status"] == "ok" and report["failed_step"] is None
    assert report["rto_seconds"] and float(report["rto_seconds"]) > 0 and report["rpo_seconds"] is not None
    assert {c["name"] for c in report["checks"]} == {"row counts", "no missing files", "sha256 of originals", "ping"}
    assert all(c["ok"] for c in report["checks"]) and report["leftovers"] == []
    suite = ET.parse(  # noqa: S314 - our own report
        str(reports / "drill-localhost.xml")).getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 8
    assert "PASSED" in (reports / "drill-localhost.txt").read_text()
    assert leftovers(inst.name) == [] and os.listdir(str(scratch_root)) == []
    assert inst.row_counts() == before  # production untouched

    # Corrupt one original of the set: the drill must fail, name the step, and still clean up.
    root = manifest.instance_root(str(target), inst.name)
    set_dir = os.path.join(root, manifest.latest_verified(root))
    victim = next(os.path.join(d, f) for d, _dirs, fs in os.walk(os.path.join(set_dir, "files", "upload")) for f in fs
                  if f != ".immich")
    os.chmod(victim, 0o600)
    with open(victim, "r+b") as fh:
        fh.write(b"\0corrupted\0")
    res = drill(tmp_path, inst, target, reports, scratch_root)
    assert res.returncode != 0
    report = json.loads((reports / "drill-localhost.json").read_text())
    assert report["status"] == "failed" and report["failed_step"] == "restore", report
    assert "Verify the set" in report["failed_task"] and "checksum" in report["error"]
    failures = ET.parse(  # noqa: S314 - our own report
        str(reports / "drill-localhost.xml")).getroot().iter("failure")
    assert any("Verify the set" in f.get("message") for f in failures)
    assert "FAILED at step restore" in (reports / "drill-localhost.txt").read_text()
    assert leftovers(inst.name) == [] and os.listdir(str(scratch_root)) == []
    assert inst.ping()
