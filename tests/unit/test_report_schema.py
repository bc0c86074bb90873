"""docs/reports.md is the schema of every JSON report: each of its tables lists exactly the keys the code
writes (no key more, no key less), so the page cannot drift from the reports.

The keys are taken from what the code really produces: the backup engine run on a temporary folder (the
database and docker faked, everything else real: file copy, manifests, coverage, verification, promotion,
local mirror, retention, monitoring ping), the SSH and restic targets with fake runners, the report
module's own builder (report.build) for the files it writes, the restore role's record (prove.yml) and
the drill's checks (drill_scratch.py)."""
import ast
import hashlib
import json
import os
import re
import sys
import xml.etree.ElementTree as ET  # noqa: S405 - our own output

import pytest
import yaml

from ansible_collections.homelab.immich.plugins.module_utils import backup_run as br
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump as db_dump
from ansible_collections.homelab.immich.plugins.module_utils import fingerprint, guards, monitor, reports
from ansible_collections.homelab.immich.plugins.module_utils.targets import TargetError
from ansible_collections.homelab.immich.plugins.module_utils.targets import restic as restic_target
from ansible_collections.homelab.immich.plugins.module_utils.targets import ssh as ssh_target
from ansible_collections.homelab.immich.plugins.module_utils.targets.local import LocalTarget
from ansible_collections.homelab.immich.plugins.modules import report as report_module

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(TOP, "docs", "reports.md")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_restic_target as restic_fakes  # noqa: E402 - the fake restic of the restic target's own tests

HEADING = re.compile(r"^#{2,6} .*`([^`]+)`\s*$")
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def doc_tables(path=DOC):
    """{table id: [keys]} of every key table of the doc: a table whose first column is `key` or
    `element`, named by the last code span of the heading above it."""
    tables, current, in_table = {}, None, False
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            m = HEADING.match(line)
            if m:
                current, in_table = m.group(1), False
                continue
            if re.match(r"^\|\s*(key|element)\s*\|", line):
                assert current is not None and current not in tables, "a key table without a heading of its own: %s" % line
                tables[current], in_table = [], True
                continue
            if in_table:
                if not line.startswith("|"):
                    in_table = False
                    continue
                row = ROW.match(line)
                if row:
                    tables[current].append(row.group(1))
    return tables


def normalized(keys):
    return sorted(set("<counter>_examples" if k.endswith("_examples") and k != "missing_examples" else k for k in keys))


def union(dicts):
    out = set()
    for d in dicts:
        out |= set(d)
    return out


# -- the engine, for real, on a temporary folder ------------------------------------------------------

class Collect(br.ProgressFile):
    """The progress file's states, every one (nothing written)."""

    def __init__(self):
        br.ProgressFile.__init__(self, None)
        self.states = []

    def __call__(self, counters):
        br.ProgressFile.__call__(self, counters)
        self.states.append(dict(self._state))


class FakeResponse:
    @staticmethod
    def getcode():
        return 200

    def close(self):
        pass


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """Three runs of the engine: ok (two local targets), partial (a failing SSH target added), failed
    (a referenced file missing); the progress states of them all."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("engine")
    upload, project = str(tmp / "upload"), str(tmp / "project")
    refs = []
    for folder in ("library", "upload", "profile"):
        for i in range(300 if folder == "upload" else 3):
            rel = "%s/u1/%02d/f%03d.jpg" % (folder, i % 7, i)
            _write(os.path.join(upload, rel), os.urandom(64 + i))
            refs.append(("original", "/data/" + rel, "f"))
    os.symlink("/etc/hostname", os.path.join(upload, "upload", "a-link"))
    refs.append(("original", "/mnt/external/x.jpg", "t"))
    _write(os.path.join(project, "docker-compose.yml"), b"services: {}\n")
    _write(os.path.join(project, ".env"), b"UPLOAD_LOCATION=./library\n")
    instance = {"instance_name": "lab", "project_name": "lab", "project_dir": project, "upload_location": upload,
                "media_location": "/data", "db_container": "lab_postgres", "db_user": "postgres", "db_name": "immich",
                "db_running": True, "compose_files": [os.path.join(project, "docker-compose.yml")]}

    def fake_dump(container, user, db_name, dest, **kw):
        data = b"-- a dump\n" * 1000
        path = os.path.join(dest, "immich-db-backup-20261201T020000-v2.7.5-pg15.sql.gz")
        _write(path, data)
        with open(path + ".manifest.json", "w") as fh:
            json.dump({"bytes": len(data), "plain_bytes": 3 * len(data), "rows_by_table": {"asset": 300}}, fh)
        if kw.get("progress"):
            kw["progress"](bytes=3 * len(data), bytes_expected=None, written_bytes=len(data))
        return {"path": path, "manifest_path": path + ".manifest.json", "bytes": len(data), "plain_bytes": 3 * len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "seconds": 0.5, "mb_per_s": 0.1, "dump_kind": "database",
                "server_version": "15.14", "pg_dump_version": "15.14", "compression": "gzip",
                "rows_by_table": {"asset": 300}, "warnings": [], "databases": [db_name], "changed": True, "msg": "Wrote"}

    def no_docker(*_a, **_k):
        raise dx.DockerError("no docker here")

    missing = []
    mp.setattr(db_dump, "dump", fake_dump)
    mp.setattr(fingerprint, "take", lambda *a, **k: {"format": fingerprint.FORMAT, "objects": []})
    mp.setattr(dx, "query", no_docker)
    mp.setattr(guards, "schema_naming", lambda inst: "current")
    mp.setattr(guards, "stream_copy", lambda inst, sql: refs + missing)
    mp.setattr(monitor, "_open", lambda req, timeout=None: FakeResponse())
    for name in ("check", "lock", "unlock", "delete"):
        mp.setattr(ssh_target.SshTarget, name, lambda self, *a, **k: None)
    mp.setattr(ssh_target.SshTarget, "sets", lambda self: [])

    def unreachable(self, *a, **k):
        raise TargetError("ssh: connect to host nas port 22: Connection refused", reason="unreachable")

    mp.setattr(ssh_target.SshTarget, "send", unreachable)
    primary, mirror = {"path": str(tmp / "backups")}, {"path": str(tmp / "usb")}
    options = {"monitor_url": "https://hc-ping.com/0d1e2f3a-aaaa-bbbb-cccc-000000000000", "key_file": str(tmp / "keys" / "lab.key")}
    progress = Collect()
    runs = [br.run_backup(instance, [primary, mirror], options, progress=progress)]
    runs.append(br.run_backup(instance, [primary, mirror, {"host": "nas", "path": "/srv/immich"}], options, progress=progress))
    missing.append(("original", "/data/upload/u1/00/gone.jpg", "f"))
    with pytest.raises(br.EngineError) as failed:
        br.run_backup(instance, [primary], options, progress=progress)
    runs.append(failed.value.result)
    mp.undo()
    yield {"runs": runs, "progress": progress.states, "instance": instance, "tmp": tmp}


def test_the_runs_are_what_they_should_be(engine):
    assert [r["status"] for r in engine["runs"]] == ["ok", "partial", "failed"]
    assert engine["runs"][1]["targets"][1]["reason"] == "unreachable"


# -- the keys each table must list ---------------------------------------------------------------------

def _backup_keys(engine):
    runs = engine["runs"]
    ok = runs[:2]
    targets = [t for r in runs for t in r["targets"]]
    common = {"kind", "label", "status", "error", "reason", "pruned"}
    tmp = engine["tmp"]
    # the local mirror, once more for the same set: "already there"
    again = LocalTarget({"path": str(tmp / "usb")}, "lab").send(ok[0]["set_dir"], {"set_id": ok[0]["set_id"]})
    local = union([set(t) - common for t in targets if t["kind"] == "local"] + [again])
    envelope = report_module.build("backup", "h1", runs[0], str(tmp / "reports"))[2]["backup-h1.json"]
    return {
        "backup-<host>.json": set(envelope),
        "backup result": union(runs),
        "steps[]": union(s for r in runs for s in r["steps"]),
        "dump": union(r["dump"] for r in runs if "dump" in r),
        "files": set(normalized(union(r["files"] for r in runs if "files" in r))),
        "coverage": union(r["coverage"] for r in runs if "coverage" in r),
        "verification": union(r["verification"] for r in runs if "verification" in r),
        "targets[]": union(set(t) & common for t in targets),
        "targets[] local": local,
        "retention.<label>": union(p for r in ok for p in r["retention"].values()),
        "pings[]": union(p for r in runs for p in r["pings"]),
    }


def _ssh_keys(tmp_path):
    answers = []

    def run(argv, input_bytes=None, timeout=3600):
        return answers.pop(0)

    t = ssh_target.SshTarget({"host": "nas", "path": "/srv/immich"}, "lab", run=run)
    answers[:] = [(0, "20261130T020000Z\n", ""), (0, "Total bytes sent: 1,234\n", ""), (0, "", ""), (0, "", "")]
    new = t.send(str(tmp_path), {"set_id": "20261201T020000Z"})
    answers[:] = [(0, "present\n", "")]
    there = t.send(str(tmp_path), {"set_id": "20261201T020000Z"})
    return set(new) | set(there)


def _restic_keys(tmp_path):
    set_dir = restic_fakes.write_set(tmp_path, restic_fakes.FILES)
    runner = restic_fakes.sending_runner(set_dir, restic_fakes.FILES)
    return set(restic_fakes.target(runner=runner).send(set_dir, {"set_id": "20261202T020000Z"}))


def _restore_keys(tmp_path):
    with open(os.path.join(TOP, "roles", "restore", "tasks", "prove.yml"), encoding="utf-8") as fh:
        tasks = yaml.safe_load(fh)

    def walk(items):
        for t in items or []:
            yield t
            for part in ("block", "rescue", "always"):
                yield from walk(t.get(part))

    record = next(t["ansible.builtin.set_fact"]["immich_restore_result"] for t in walk(tasks)
                  if "immich_restore_result" in (t.get("ansible.builtin.set_fact") or {}))
    envelope = report_module.build("restore", "h1", dict.fromkeys(record), str(tmp_path))[2]["restore-h1.json"]
    return {"restore-<host>.json": set(envelope), "restore result": set(record)}


def _drill(tmp_path):
    data = {"instance": "lab", "marks": [{"step": "select", "at": 1.0}, {"step": "restore", "at": 2.0}],
            "failure": {"step": "restore", "task": "load", "msg": "boom"},
            "check": {"ok": False, "rpo_seconds": 60.0, "files_checked": 3,
                      "checks": [{"name": "rows", "ok": True, "detail": "19 tables"}, {"name": "files", "ok": False, "detail": "1 changed"}]},
            "teardown": {"leftovers": []}, "chosen": {"set_id": "S"}, "source": "/b", "rto": None}
    _result, _lines, files = report_module.build("drill", "h1", data, str(tmp_path))
    return files["drill-h1.json"], files["drill-h1.xml"]


def _drill_check_keys():
    with open(os.path.join(TOP, "plugins", "modules", "drill_scratch.py"), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    keys = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "append"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "checks" and node.args
                and isinstance(node.args[0], ast.Dict)):
            keys |= {k.value for k in node.args[0].keys}
    assert keys, "no checks.append({...}) found in drill_scratch.py"
    return keys


def _junit_elements(xml_text):
    out = set()
    for el in ET.fromstring(xml_text).iter():  # noqa: S314 - our own output
        out.add(el.tag)
        out |= {"%s@%s" % (el.tag, a) for a in el.attrib}
    return out


def _fleet_keys(tmp_path):
    rows = report_module.build("fleet", "", {"names": ["a", "b"], "hosts": [
        {"host": "a", "freshness": {"fresh": True, "newest": "S", "age_hours": 1.0, "size_bytes": 5}, "backup_result": {"status": "ok"}},
    ]}, str(tmp_path))[2]["fleet-report.json"]
    assert isinstance(rows, list) and len(rows) == 2
    return union(rows)


def _progress_keys(engine, tmp_path, monkeypatch):
    states = list(engine["progress"])
    states.append(restic_target.status_progress({}))
    # the dump's own hook, streamed from a file instead of a container
    sql = tmp_path / "s.sql"
    sql.write_text("-- Dumped from database version 15.14\nCOPY public.asset (id) FROM stdin;\n1\n\\.\n"
                   "--\n-- PostgreSQL database dump complete\n--\n")
    monkeypatch.setattr(dx, "server_version", lambda *a, **k: "15.14")
    monkeypatch.setattr(db_dump, "pg_dump_version", lambda *a, **k: "15.14")
    monkeypatch.setattr(dx, "exec_argv", lambda container, cmd, **k: ["cat", str(sql)])
    dumped = Collect()
    run = br.Run({"instance_name": "lab"}, {"trigger": "ansible"}, progress=dumped)
    with run.step("dump"):
        db_dump.dump("db", "postgres", "immich", str(tmp_path / "d"), dump_kind="database", compression="none",
                     on_shrink="warn", progress=run.progress)
    states += dumped.states
    states += restore_progress_states(engine["runs"][0]["set_dir"], str(tmp_path / "restored"), monkeypatch)
    return union(states)


def restore_progress_states(set_dir, dest, monkeypatch):
    """The progress states homelab.immich.restore_files writes while it copies a set."""
    from ansible.module_utils.testing import patch_module_args  # noqa: PLC0415

    from ansible_collections.homelab.immich.plugins.modules import restore_files  # noqa: PLC0415

    made = []

    def collect(params):
        made.append(Collect())
        return made[-1]

    monkeypatch.setattr(restore_files, "progress_file_of", collect)
    with patch_module_args({"set_dir": set_dir, "dest": dest, "progress_file": dest + ".progress.json"}), \
            pytest.raises(SystemExit):
        restore_files.main()
    return made[0].states


# -- the checks ----------------------------------------------------------------------------------------

def test_every_table_of_the_doc_lists_exactly_the_keys_written(engine, tmp_path, monkeypatch):
    tables = doc_tables()
    drill_json, drill_xml = _drill(tmp_path)
    produced = _backup_keys(engine)
    produced["targets[] ssh"] = _ssh_keys(tmp_path)
    produced["targets[] restic"] = _restic_keys(tmp_path / "restic")
    produced.update(_restore_keys(tmp_path))
    produced["drill-<host>.json"] = set(drill_json)
    produced["drill steps[]"] = union(drill_json["steps"])
    produced["drill checks[]"] = _drill_check_keys() | union(drill_json["checks"])
    produced["drill-<host>.xml"] = _junit_elements(drill_xml)
    produced["fleet-report.json[]"] = _fleet_keys(tmp_path)
    produced["progress"] = _progress_keys(engine, tmp_path, monkeypatch)
    assert sorted(tables) == sorted(produced), "tables of docs/reports.md vs reports the test knows"
    problems = []
    for name, keys in sorted(produced.items()):
        documented = tables[name]
        if len(documented) != len(set(documented)):
            problems.append("%s: a key listed twice" % name)
        extra, missing = sorted(set(documented) - set(keys)), sorted(set(keys) - set(documented))
        if extra or missing:
            problems.append("%s: documented but not written %s; written but not documented %s" % (name, extra, missing))
    assert not problems, "docs/reports.md drifted from the reports:\n" + "\n".join(problems)


def test_the_doc_states_the_report_format():
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    m = re.search(r"carry `format`: \*\*(\d+)\*\*", text)
    assert m and int(m.group(1)) == reports.REPORT_FORMAT


def test_every_report_file_carries_the_format(engine, tmp_path):
    backup = report_module.build("backup", "h1", engine["runs"][0], str(tmp_path))[2]["backup-h1.json"]
    restore = report_module.build("restore", "h1", {"instance": "lab"}, str(tmp_path))[2]["restore-h1.json"]
    drill_json, _xml = _drill(tmp_path)
    assert backup["format"] == restore["format"] == drill_json["format"] == reports.REPORT_FORMAT


def test_the_parser_sees_a_drifted_doc(tmp_path):
    doc = tmp_path / "reports.md"
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    doc.write_text(text.replace("| `plain_bytes` | int |", "| `plain_size` | int |", 1))
    assert "plain_size" in doc_tables(str(doc))["dump"] and "plain_bytes" not in doc_tables(str(doc))["dump"]


def test_the_summary_lines_in_the_report_are_the_printed_ones(engine):
    for r in engine["runs"]:
        assert r["summary_lines"] == reports.backup_lines(r)
    assert engine["runs"][2]["summary_lines"][0].startswith("lab: backup FAILED at step coverage: ")
