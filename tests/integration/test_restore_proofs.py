"""Issue 12 (1-4, 7) on the lab: the compatibility gate refuses before anything destructive, the vector-portable
restore there and back, the proofs of a restored instance (per-asset SHA-1, boot proof, maintenance mode cleared)
in the restore and the drill, and a database restore whose checks fail at the end commits nothing."""
import gzip
import hashlib
import json
import os
import re
import subprocess
import threading
import xml.etree.ElementTree as ET  # noqa: S405 - our own report

import pytest
import timer
from modrun import run_module
from rolerun import report, run_playbook, write_inventory
from test_drill import drill as run_drill
from test_drill import leftovers

from ansible_collections.homelab.immich.plugins.module_utils import file_manifest, sets


@pytest.fixture(scope="module")
def pg17(lab):
    """A seeded PG 17 instance with pgvector, shared: the gate test leaves it untouched (that is what it proves),
    the vector-portable test restores it last."""
    inst = lab.Instance("p17-prf-%s" % os.urandom(3).hex(), pg=17).up(seed="small")
    yield inst
    if os.environ.get("LAB_KEEP") != "1":
        inst.down(purge=True)


@pytest.fixture(scope="module")
def pg15(lab):
    """A seeded PG 15 instance, shared: drilled (production is only read), then restored into from its own dumps."""
    inst = lab.Instance("p15-prf-%s" % os.urandom(3).hex(), pg=15).up(seed="small")
    yield inst
    if os.environ.get("LAB_KEEP") != "1":
        inst.down(purge=True)


def engine_backup(inst, target, tmp_path):
    """A backup set of the instance (the scheduled engine, as a timer runs it); its folder."""
    res = timer.run(timer.write_config(tmp_path / ("backup-%s.json" % inst.name), inst, [{"path": str(target)}]))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    root = sets.instance_root(str(target), inst.name)
    return os.path.join(root, sets.latest_good(root))


class Pinger(threading.Thread):
    """GET /api/server/ping every 0.2 s from another thread, for the whole of a run."""

    def __init__(self, inst):
        super().__init__(daemon=True)
        self.inst, self.answers, self.stop = inst, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.answers.append(self.inst.ping())
            self.stop.wait(0.2)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


def started_at(*containers):
    return [subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", c], capture_output=True, text=True,
                           check=True).stdout.strip() for c in containers]


def checks_of(result):
    return {c["name"]: c for c in result.get("checks") or []}


def embedding_type(inst, table):
    sql = ("SELECT udt_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '%s' "  # noqa: S608
           "AND column_name = 'embedding'" % table)
    return inst.psql(sql)


def vector_indexes(inst):
    return inst.psql("SELECT string_agg(indexname || ' ' || split_part(split_part(indexdef, 'USING ', 2), ' ', 1), ', ' "
                     "ORDER BY indexname) FROM pg_indexes WHERE indexname IN ('clip_index', 'face_index')")


VCHORDRQ = (b"USING vchordrq (embedding public.vector_cosine_ops) WITH (options='\n    residual_quantization = false\n"
            b"    [build.internal]\n    lists = [1]\n    spherical_centroids = true\n    build_threads = 4\n"
            b"    sampling_factor = 1024\n    ')")
VCHORD_EXTENSION = (b"CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n\n\n--\n"
                    b"-- Name: vchord; Type: EXTENSION; Schema: -; Owner: -\n--\n\n"
                    b"CREATE EXTENSION IF NOT EXISTS vchord WITH SCHEMA public;\n")


def immich_v2_dump(inst, path):
    """What a real Immich v2 instance dumps (pg_dump 16, `vchord` + `vector`, vector(512) columns, vchordrq indexes),
    made from the lab PG 17 instance's own pg_dump by editing it."""
    plain = subprocess.run(["docker", "exec", inst.db, "pg_dump", "--clean", "--if-exists", "-U", inst.user, "-d",
                            inst.database], capture_output=True, check=True).stdout
    assert b"CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n" in plain and b"public.vector(512)" in plain
    plain = re.sub(rb"(-- Dumped (?:from database|by pg_dump) version )17\.\S+[^\n]*", rb"\g<1>16.10 (Debian 16.10-1.pgdg120+1)", plain)
    plain = plain.replace(b"SET transaction_timeout = 0;\n", b"")  # pg_dump 16 does not write it
    plain = plain.replace(b"CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n", VCHORD_EXTENSION)
    plain, n = re.subn(rb"USING hnsw \(embedding public\.vector_cosine_ops\) WITH \([^)]*\)", VCHORDRQ, plain)
    assert n == 2 and b"-- Dumped by pg_dump version 16.10" in plain
    path.write_bytes(gzip.compress(plain))
    return str(path)


def test_gate_refuses_a_vchord_dump_before_compose_down_while_the_server_answers(pg17, tmp_path):
    inst = pg17
    dump = immich_v2_dump(inst, tmp_path / "immich-db-backup-20261201T020000-v2.7.5-pg16.sql.gz")
    before = inst.row_counts()
    containers = (inst.server, inst.db, inst.containers["redis"])
    started = started_at(*containers)
    inv = write_inventory(tmp_path, inst)
    with Pinger(inst) as pinger:
        rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true", "-e", "immich_restore_dump_file=" + dump)
    assert rc != 0
    assert "Refusing to restore: 1 incompatibility between the dump and the target. The instance was not touched" in out
    assert "The dump uses the vector extension vchord (VectorChord) and the target image offers only vector" in out
    assert "immich_restore_vector_portable: true" in out, out[-3000:]
    for step in ("Require the confirmation", "Take a restore point", "Stop the instance and remove its containers"):
        assert step not in out, "the refused restore went on to: " + step
    assert pinger.answers and all(pinger.answers), "the server stopped answering during the refused restore"
    assert len(pinger.answers) >= 10
    assert started_at(*containers) == started and inst.row_counts() == before
    assert not os.path.exists(os.path.join(str(tmp_path), "restore-points"))


def test_vector_portable_restore_there_and_back_with_maintenance_mode_cleared(pg17, make_instance, tmp_path):
    src = pg17
    target = tmp_path / "backups"
    target.mkdir()
    # A dump taken while Immich was in maintenance mode restores into it (the server reads the row at boot).
    src.psql("""INSERT INTO system_metadata (key, value) VALUES ('maintenance-mode', '{"isMaintenanceMode": true, "secret": "x"}')
                ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;""")
    set_a = engine_backup(src, target, tmp_path)
    counts = {t: n for t, n in src.row_counts().items() if t in ("smart_search", "face_search", "asset")}
    assert counts["smart_search"] > 0 and counts["face_search"] > 0
    assert embedding_type(src, "smart_search") == "vector"

    # A bare host (its compose project written, nothing ever started) whose image has no pgvector. Without the
    # opt-in the gate reads that image (nothing runs) and names what is missing and the fix.
    novec = make_instance(pg=17, pgvector=False, start="none", name="p17-vnov-" + os.urandom(3).hex())
    info = run_module("instance_info", project_dir=novec.root)
    dump, _man = sets.find_dump(set_a)
    refused = run_module("restore_gate", src=dump, instance=info["instance"])
    assert refused.get("failed") and "vector (pgvector)" in refused["msg"] and "immich_restore_vector_portable" in refused["msg"]
    assert refused["target"]["source"].startswith("image %s" % novec.image("postgres"))
    assert subprocess.run(["docker", "inspect", novec.db], capture_output=True, check=False).returncode != 0  # none made

    inv = write_inventory(tmp_path, novec, immich_restore_source=str(target), immich_instance_name=src.name)
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true", "-e", "immich_restore_vector_portable=true")
    assert rc == 0, out[-5000:]
    result = report(tmp_path, "restore")
    by_name = checks_of(result)
    portable = result["db"]["vector_portable"]
    assert portable["extensions"] == ["vector"] and portable["indexes"] == ["clip_index", "face_index"]
    assert sorted(portable["columns"]) == ["face_search.embedding", "smart_search.embedding"]
    assert portable["rows_total"] == counts["smart_search"] + counts["face_search"]
    assert by_name["vector-portable restore"]["ok"] and "real[]" in by_name["vector-portable restore"]["detail"]
    assert by_name["compatibility gate"]["ok"] and "immich_restore_vector_portable is on" in by_name["compatibility gate"]["detail"]
    assert by_name["not in maintenance mode"]["detail"].startswith("cleared:")
    assert "ok   not in maintenance mode: cleared" in out  # the summary says so
    logs = novec.server_logs()
    assert "Starting api worker" in logs and "Starting maintenance worker" not in logs
    for name in ("admin exists", "no schema drift logged", "immich-admin schema-check", "per-asset SHA-1"):
        assert by_name[name]["ok"] and not by_name[name]["skipped"], by_name[name]
    assert result["proof"]["assets"] == counts["asset"] and result["proof"]["matched"] > 0
    assert result["proof"]["mismatched"] == result["proof"]["missing_in_backup"] == 0
    assert {t: novec.row_counts()[t] for t in counts} == counts
    assert embedding_type(novec, "smart_search") == "_float4" and vector_indexes(novec) == ""

    # And back: a dump of the pgvector-less instance (real[] embeddings, no vector extension) restored into the
    # pgvector instance; its server's start (Immich's reindex) makes the columns vectors again and builds
    # clip_index and face_index.
    back_dump = run_module("db_dump", container=novec.db, dest=str(tmp_path / "back"), dump_kind="database")
    assert not back_dump.get("failed"), back_dump.get("msg")
    inv = write_inventory(tmp_path, src, immich_restore_point=False)
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true", "-e", "immich_restore_dump_file=" + back_dump["path"])
    assert rc == 0, out[-5000:]
    back = report(tmp_path, "restore")
    assert all(c["ok"] for c in back["checks"]), back["checks"]
    assert {t: src.row_counts()[t] for t in counts} == counts
    assert embedding_type(src, "smart_search") == "vector" == embedding_type(src, "face_search")
    assert vector_indexes(src) == "clip_index hnsw, face_index hnsw"
    assert "Reindexed clip_index" in src.server_logs()
    assert checks_of(back)["not in maintenance mode"]["detail"].startswith("system_metadata holds no active maintenance mode")


def _rewrite_manifest_line(set_dir, rel, drop=False):
    """The set's manifest made to agree with what is now in files/ (bit rot before the backup copied the file, or a
    file that never reached it), so that only Immich's own checksums can tell."""
    path = os.path.join(set_dir, file_manifest.NAME)
    with open(path) as fh:
        lines = fh.read().splitlines(True)
    out = []
    for line in lines:
        fields = line.rstrip("\n").split("\t")
        if fields[0] != rel:
            out.append(line)
            continue
        if drop:
            continue
        data = open(os.path.join(set_dir, "files", rel), "rb").read()
        fields[3] = hashlib.sha256(data).hexdigest()
        if len(fields) > 4:
            fields[4] = hashlib.sha1(data).hexdigest()  # noqa: S324 - Immich's checksum algorithm
        out.append("\t".join(fields) + "\n")
    with open(path, "w") as fh:
        fh.writelines(out)


def _originals(set_dir):
    top = os.path.join(set_dir, "files", "upload")
    return sorted(os.path.relpath(os.path.join(d, f), os.path.join(set_dir, "files"))
                  for d, _dirs, fs in os.walk(top) for f in fs if f != ".immich")


def test_drill_proves_originals_against_immichs_checksums_and_needs_an_admin(pg15, tmp_path):
    inst = pg15
    target, reports, scratch = tmp_path / "backup", tmp_path / "reports", tmp_path / "scratch"
    target.mkdir()

    # 1. A set whose dump has no admin (the wrong database was dumped, or the admin was deleted): fails at verify.
    inst.psql('UPDATE "user" SET "isAdmin" = false;')
    set_dir = engine_backup(inst, target, tmp_path)
    inst.psql("UPDATE \"user\" SET \"isAdmin\" = true WHERE email = '%s';" % inst.admin_email)  # noqa: S608 - the lab's
    res = run_drill(tmp_path, inst, target, reports, scratch, immich_drill_sample=50)
    assert res.returncode != 0
    rep = json.loads((reports / "drill-localhost.json").read_text())
    assert rep["status"] == "failed" and rep["failed_step"] == "verify", rep
    assert rep["error"].startswith("admin exists: The restored database has no admin user"), rep["error"]
    failed = {c["name"] for c in rep["checks"] if not c["ok"]}
    assert failed == {"admin exists"}, rep["checks"]
    junit = ET.parse(str(reports / "drill-localhost.xml")).getroot()  # noqa: S314
    failing = {case.get("name") for case in junit.iter("testcase") if case.find("failure") is not None}
    assert failing == {"admin exists"}
    per_asset = checks_of(rep)["per-asset SHA-1"]
    assert per_asset["ok"] and "50 of 150 assets matched their SHA-1" in per_asset["detail"], per_asset
    assert "100 present, not in the sample" in per_asset["detail"]  # the drill's sample (immich_drill_sample)

    # 2. The same set, where one original rotted before it was copied and one never reached it (their manifest
    # lines agree): the set verifies, only the per-asset proof sees them, naming the asset and counting it
    # missing-in-backup.
    rotten, gone = _originals(set_dir)[:2]
    path = os.path.join(set_dir, "files", rotten)
    st = os.stat(path)
    with open(path, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    _rewrite_manifest_line(set_dir, rotten)
    os.unlink(os.path.join(set_dir, "files", gone))
    _rewrite_manifest_line(set_dir, gone, drop=True)
    assert sets.verify(set_dir)["ok"], sets.verify(set_dir)["problems"]
    res = run_drill(tmp_path, inst, target, reports, scratch)  # immich_drill_sample=0: every original
    assert res.returncode != 0
    rep = json.loads((reports / "drill-localhost.json").read_text())
    assert rep["failed_step"] == "verify", rep
    per_asset = checks_of(rep)["per-asset SHA-1"]
    assert not per_asset["ok"]
    assert "/data/" + rotten in per_asset["detail"] and "1 missing (a row, no file): /data/" + gone in per_asset["detail"]
    assert "1 changed since Immich stored its checksum" in per_asset["detail"]
    junit = ET.parse(str(reports / "drill-localhost.xml")).getroot()  # noqa: S314
    messages = [f.get("message") for case in junit.iter("testcase") if case.get("name") == "per-asset SHA-1"
                for f in case.iter("failure")]
    assert messages and rotten in messages[0]
    assert leftovers(inst.name) == [] and os.listdir(str(scratch)) == []
    assert inst.ping()


def test_a_database_restore_whose_checks_fail_at_the_end_commits_nothing(pg15, tmp_path):
    inst = pg15
    subprocess.run(["docker", "stop", "-t", "10", inst.server], capture_output=True, check=True)  # its database alone
    dumped = run_module("db_dump", container=inst.db, dest=str(tmp_path / "d"), dump_kind="database", compression="none")
    assert not dumped.get("failed"), dumped.get("msg")
    plain = open(dumped["path"], "rb").read()
    inst.psql("CREATE TABLE untouched_marker (x int); INSERT INTO untouched_marker VALUES (42);")
    before = inst.row_counts()
    end = plain.rindex(b"-- PostgreSQL database dump complete")

    def attempt(name, data, manifest=True):
        path = tmp_path / name
        path.write_bytes(data)
        if manifest:
            with open(dumped["manifest_path"]) as fh:
                man = json.load(fh)
            (tmp_path / (name + ".manifest.json")).write_text(json.dumps(man))  # the sha256 of the intact dump
        res = run_module("db_restore", container=inst.db, src=str(path))
        assert res.get("failed"), res
        assert "never committed" in res["msg"] and "as it was" in res["msg"], res["msg"]
        assert inst.row_counts() == before and inst.psql("SELECT x FROM untouched_marker") == "42"
        return res

    # The last bytes of the payload: valid SQL all the same (a comment's letters), only the sha256 says so, at the end.
    tail = bytearray(plain)
    cut = plain.rindex(b"-- Name:", 0, end)
    tail[cut + 3:cut + 7] = tail[cut + 3:cut + 7].swapcase()
    res = attempt("tail.sql", bytes(tail))
    assert "sha256" in res["msg"] and res["single_transaction"] and res["verification"] == "in the stream"
    # A psql meta-command at the very end: refused before it is sent, nothing committed, nothing run.
    marker = "/tmp/pwned-%s" % os.urandom(4).hex()
    res = attempt("shell.sql", plain[:end] + b"\\! touch " + marker.encode() + b"\n" + plain[end:], manifest=False)
    assert "meta-commands" in res["msg"]
    assert subprocess.run(["docker", "exec", inst.db, "test", "-e", marker], check=False).returncode != 0
    # A COMMIT of its own, to keep what went before whatever the checks say: refused before it is sent.
    res = attempt("commit.sql", plain[:cut] + b"COMMIT;\n" + plain[cut:], manifest=False)
    assert "transaction control" in res["msg"]
    # A gzip stream cut short of its end: the decompressor's error, at the end.
    gz = gzip.compress(plain)
    res = attempt("cut.sql.gz", gz[:-4], manifest=False)
    assert "corrupt or truncated" in res["msg"]
    # The intact dump commits (into the database it came from, less the marker).
    inst.psql("DROP TABLE untouched_marker;")
    ok = run_module("db_restore", container=inst.db, src=dumped["path"])
    assert not ok.get("failed"), ok.get("msg")
    assert ok["rows_diff"] == {} and ok["stream_rows_by_table"] == dumped["rows_by_table"]
