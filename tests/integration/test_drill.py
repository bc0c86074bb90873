"""The drill (playbooks/drill.yml): production answers pong throughout, nothing of the scratch instance is left
behind, reports are written; the scratch server rewrites its folder markers at boot (as real Immich does) and the
drill still passes, where a comparison of the markers' bytes would fail; a corrupted set fails naming the step."""
import json
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET  # noqa: S405 - our own report

import timer
from test_monitoring import BIN, ROOT

from ansible_collections.homelab.immich.plugins.module_utils import file_manifest, sets


def backup(inst, target, tmp_path):
    res = timer.run(timer.write_config(tmp_path / "backup.json", inst, [{"path": str(target)}]))
    assert res.returncode == 0, res.stdout + res.stderr


def drill(tmp_path, inst, target, reports, scratch_root, **more):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_PIPELINING="1",
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


CHECKS = {"database rows", "files restored and verified", "files equal the set after the server started",
          "every file the database references is on disk", "server answers",
          # the restore role's proofs of the scratch instance (issue 12)
          "compatibility gate", "admin exists", "not in maintenance mode", "no schema drift logged",
          "immich-admin schema-check", "per-asset SHA-1"}


def test_drill_passes_on_a_server_that_rewrites_its_markers(tmp_path, make_instance):
    inst = make_instance(pg=15, seed="small", name="d15-dr-" + os.urandom(3).hex())
    target, reports, scratch_root = tmp_path / "backup", tmp_path / "reports", tmp_path / "scratch"
    target.mkdir()
    backup(inst, target, tmp_path)
    before = inst.row_counts()
    root = sets.instance_root(str(target), inst.name)
    set_dir = os.path.join(root, sets.latest_good(root))

    poller = Poller(inst)
    poller.start()
    started = time.monotonic()
    res = drill(tmp_path, inst, target, reports, scratch_root, immich_drill_keep_scratch=True)
    poller.stop.set()
    poller.join()
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert poller.answers and all(poller.answers), "production stopped answering pong during the drill"
    assert len(poller.answers) >= (time.monotonic() - started) / 0.5 * 0.5
    report = json.loads((reports / "drill-localhost.json").read_text())
    assert report["status"] == "ok" and report["failed_step"] is None, report
    assert report["rto_seconds"] and float(report["rto_seconds"]) > 0 and report["rpo_seconds"] is not None
    assert {c["name"] for c in report["checks"]} == CHECKS and all(c["ok"] for c in report["checks"])
    suite = ET.parse(str(reports / "drill-localhost.xml")).getroot().find("testsuite")  # noqa: S314
    assert suite.get("failures") == "0" and int(suite.get("tests")) == 5 + len(CHECKS)
    assert "PASSED" in (reports / "drill-localhost.txt").read_text()

    # The kept scratch instance: its server booted and rewrote every marker (Immich's verifyWriteAccess)...
    scratch = report["scratch_kept"]
    upload = os.path.join(scratch, "library")
    markers = [e for e in file_manifest.read(os.path.join(set_dir, file_manifest.NAME)) if e.path.endswith("/.immich")]
    assert markers
    for entry in markers:
        assert os.path.getsize(os.path.join(upload, entry.path)) != entry.size or \
            open(os.path.join(upload, entry.path)).read() != open(os.path.join(set_dir, "files", entry.path)).read()
    # ... so the drill's comparison by presence passes where a comparison of their bytes fails, naming them
    by_presence = file_manifest.verify(upload, os.path.join(set_dir, file_manifest.NAME), markers="presence", allow_extra=True)
    by_bytes = file_manifest.verify(upload, os.path.join(set_dir, file_manifest.NAME), markers="bytes", allow_extra=True)
    assert by_presence.ok and not by_bytes.ok
    assert sorted(e.split(" ")[0] for e in by_bytes.examples["changed"]) == sorted(e.path for e in markers)
    subprocess.run(["docker", "compose", "--project-directory", scratch, "down", "-v"], capture_output=True, check=True)
    subprocess.run(["rm", "-rf", scratch], check=True)
    assert leftovers(inst.name) == []
    assert inst.row_counts() == before  # production untouched


def test_drill_of_a_corrupted_set_fails_naming_the_step(tmp_path, make_instance):
    inst = make_instance(pg=15, seed="small", name="d15-dc-" + os.urandom(3).hex())
    target, reports, scratch_root = tmp_path / "backup", tmp_path / "reports", tmp_path / "scratch"
    target.mkdir()
    backup(inst, target, tmp_path)
    root = sets.instance_root(str(target), inst.name)
    set_dir = os.path.join(root, sets.latest_good(root))
    victim = next(os.path.join(d, f) for d, _dirs, fs in os.walk(os.path.join(set_dir, "files", "upload")) for f in fs
                  if f != ".immich")
    with open(victim, "r+b") as fh:
        fh.write(b"\0corrupted\0")
    res = drill(tmp_path, inst, target, reports, scratch_root)
    assert res.returncode != 0
    report = json.loads((reports / "drill-localhost.json").read_text())
    assert report["status"] == "failed" and report["failed_step"] == "restore", report
    assert "Verify the set" in report["failed_task"] and "checksum" in report["error"]
    assert os.path.relpath(victim, os.path.join(set_dir, "files")) in report["error"]
    failures = ET.parse(str(reports / "drill-localhost.xml")).getroot().iter("failure")  # noqa: S314
    assert any("Verify the set" in f.get("message") for f in failures)
    assert "FAILED at step restore" in (reports / "drill-localhost.txt").read_text()
    assert leftovers(inst.name) == [] and os.listdir(str(scratch_root)) == []
    assert inst.ping()
