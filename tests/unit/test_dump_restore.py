"""Pure parts of the dump and the restore: names, shrink rules, error classification, owner remap."""
import datetime

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import dump, restore
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError


def test_dump_filename_is_immich_shaped():
    when = datetime.datetime(2026, 11, 24, 22, 0, 1)
    assert dump.dump_filename(when, "v2.3.1", "15.14", "gzip") == "immich-db-backup-20261124T220001-v2.3.1-pg15.sql.gz"
    assert dump.dump_filename(when, None, "17.6", "zstd").endswith("-vunknown-pg17.sql.zst")


def test_shrink_rules():
    prev = {"bytes": 1000, "rows_by_table": {"asset": 100, "user": 2}}
    assert dump._shrink_problems(900, {"asset": 100, "user": 2}, prev, 0.5) == []
    assert dump._shrink_problems(100, {"asset": 100, "user": 2}, prev, 0.5)
    assert dump._shrink_problems(900, {"asset": 1, "user": 2}, prev, 0.5)
    assert dump._shrink_problems(900, {}, None, 0.5)
    assert "missing" in dump._shrink_problems(900, {"asset": 100, "x": 2}, prev, 0.5)[0]


def test_error_classification():
    log = restore.ErrorLog("postgres")
    for line in [b"psql:<stdin>:14: ERROR:  current user cannot be dropped\n",
                 b'psql:<stdin>:22: ERROR:  role "postgres" already exists\n',
                 b'psql:<stdin>:99: ERROR:  role "other" already exists\n',
                 b'psql:<stdin>:900: ERROR:  type "earth" does not exist\n', b"LINE 1: whatever\n"]:
        log(line)
    assert len(log.benign) == 2 and log.fatal_count == 2
    assert 'type "earth" does not exist' in log.fatal[1]


def test_owner_remap_streams():
    rm = restore.OwnerRemap("postgres", "immich_admin")
    data = b"ALTER TABLE public.asset OWNER TO postgres;\nCREATE ROLE postgres;\nALTER TABLE x OWNER TO postgres2;\n"
    out = rm.feed(data[:20]) + rm.feed(data[20:]) + rm.flush()
    assert out == (b"ALTER TABLE public.asset OWNER TO immich_admin;\nCREATE ROLE immich_admin;\n"
                   b"ALTER TABLE x OWNER TO postgres2;\n")
    assert rm.count == 2


def test_zstd_missing_names_the_install(monkeypatch):
    import shutil  # noqa: PLC0415

    import pytest  # noqa: PLC0415

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "zstd" else real(name))
    with pytest.raises(OpError, match="apt-get install zstd"):
        dump.compressor_argv("zstd")
    assert dump.compressor_argv("gzip")[-1] == "-1"
    assert dump.compressor_argv("none") == []


def _write_dump(path, complete=True):
    lines = ["--", "-- PostgreSQL database dump", "--", "", "-- Dumped from database version 15.14",
             "-- Dumped by pg_dump version 15.14", "", "SELECT pg_catalog.set_config('search_path', '', false);",
             "CREATE TABLE public.asset (id integer);"]
    if complete:
        lines += ["", "--", "-- PostgreSQL database dump complete", "--", ""]
    with open(path, "w", newline="") as fh:
        fh.write("\r\n".join(lines))  # the seed's docker exec -t line endings
    return str(path)


def test_check_mode_verifies_a_lone_dump_without_a_running_target(monkeypatch, tmp_path):
    from ansible_collections.homelab.immich.plugins.module_utils import docker_exec  # noqa: PLC0415

    def down(*args, **kwargs):
        raise docker_exec.DockerError("No such container: immich_postgres")

    monkeypatch.setattr(docker_exec, "server_version", down)
    good = _write_dump(tmp_path / "dump.sql")
    res = restore.restore("immich_postgres", "postgres", "immich", good, check_mode=True)
    assert res["changed"] is False and res["target_server_version"] is None
    assert res["dump_kind"] == "database" and res["crlf"]
    assert "version check" in res["warnings"][0]
    bad = _write_dump(tmp_path / "truncated.sql", complete=False)
    with pytest.raises(OpError, match="truncated"):
        restore.restore("immich_postgres", "postgres", "immich", bad, check_mode=True)
    with pytest.raises(docker_exec.DockerError):  # a real load never goes on without the target's version
        restore.restore("immich_postgres", "postgres", "immich", good)


# -- the checked stream: a fake psql records what it was sent ------------------------------------------

import gzip  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from ansible_collections.homelab.immich.plugins.module_utils import compat  # noqa: E402
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx  # noqa: E402
from ansible_collections.homelab.immich.plugins.module_utils import dump_format as df  # noqa: E402

HEADER = ("--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.14\n"
          "-- Dumped by pg_dump version 15.14\n\nSET statement_timeout = 0;\n"
          "SELECT pg_catalog.set_config('search_path', '', false);\n")
BODY = ("CREATE FUNCTION public.f() RETURNS trigger\n    LANGUAGE plpgsql\n    AS $$\n  BEGIN\n    RETURN NULL;\n  END\n$$;\n"
        "ALTER FUNCTION public.f() OWNER TO postgres;\n"
        "CREATE TABLE public.asset (id integer, p text);\nALTER TABLE public.asset OWNER TO postgres;\n"
        "COPY public.asset (id, p) FROM stdin;\n1\tCOMMIT;\n2\t\\\\! not a command\n\\.\n"
        "COMMENT ON TABLE public.asset IS 'BEGIN; COMMIT;';\n-- COMMIT; in a comment\n")
TRAILER = "\n--\n-- PostgreSQL database dump complete\n--\n\n"


class FakePsql:
    """dx.Stage for psql: a real child process that writes its stdin to a file (what psql was sent)."""

    sent_to = None
    argv = None

    def __init__(self, name, argv, *, stdin=None, stdout=None, password=None, on_line=None):
        FakePsql.argv = argv
        self.proc = subprocess.Popen([sys.executable, "-c", "import shutil, sys; shutil.copyfileobj(sys.stdin.buffer, "
                                      "open(sys.argv[1], 'wb'))", FakePsql.sent_to], stdin=subprocess.PIPE)
        self.stderr = ""

    def wait(self):
        return self.proc.wait()


@pytest.fixture
def fake(monkeypatch, tmp_path):
    FakePsql.sent_to = str(tmp_path / "sent.sql")
    monkeypatch.setattr(dx, "Stage", FakePsql)
    monkeypatch.setattr(dx, "server_version", lambda *a, **k: "15.14")
    monkeypatch.setattr(dx, "row_counts", lambda *a, **k: {"asset": 2})
    monkeypatch.setattr(dx, "query", lambda c, u, d, sql, p=None: [["plpgsql"], ["cube"]] if "pg_available" in sql else [[""]])

    def sent():
        path = tmp_path / "sent.sql"
        return path.read_bytes() if path.exists() else None
    return sent


def dump_file(tmp_path, text, *, name="d.sql", gz=False, rows=None, sha=True):
    data = text.encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if gz else data)
    man = {"rows_by_table": rows if rows is not None else {"asset": 2}}
    if sha:
        man["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / (name + ".manifest.json")).write_text(json.dumps(man))
    return str(path)


def test_a_database_dump_is_one_transaction_committed_only_after_the_checks(fake, tmp_path):
    path = dump_file(tmp_path, HEADER + BODY + TRAILER, gz=True)
    res = restore.restore("db", "postgres", "immich", path)
    out = fake()
    assert out.startswith(b"BEGIN;\n--\n-- PostgreSQL database dump") and out.endswith(b"\nCOMMIT;\n")
    assert out.count(b"COMMIT;\n") == 2  # a COPY row (data, not a statement), and ours: the last line
    assert b"'public, pg_catalog', true" in out and res["lines_rewritten"] == 1
    assert res["verification"] == "in the stream" and res["verify_seconds"] == 0.0 and res["single_transaction"]
    assert res["stream_rows_by_table"] == {"asset": 2} and res["rows_diff"] == {}
    assert "--single-transaction" not in FakePsql.argv and "ON_ERROR_STOP=1" in FakePsql.argv


@pytest.mark.parametrize("damage,message", [
    ("tail", "sha256"),           # the last bytes of the payload changed: only the hash says so, at the end
    ("trailer", "trailer"),
    ("rows", "row counts"),
])
def test_a_check_failing_at_the_end_never_commits(fake, tmp_path, damage, message):
    text = HEADER + BODY + TRAILER
    rows = None
    if damage == "trailer":
        text = HEADER + BODY
    if damage == "rows":
        rows = {"asset": 3}
    path = dump_file(tmp_path, text, rows=rows)
    if damage == "tail":
        blob = bytearray(open(path, "rb").read())
        blob[-len(TRAILER) - 5] ^= 0x20  # in the last comment: psql would run the file all the same
        open(path, "wb").write(bytes(blob))
    with pytest.raises(OpError, match=message) as err:
        restore.restore("db", "postgres", "immich", path)
    assert "never committed" in str(err.value) and "as it was" in str(err.value)
    out = fake()
    assert out.startswith(b"BEGIN;\n") and not out.rstrip().endswith(b"COMMIT;")
    assert out.endswith(b"\n")  # only whole lines: psql holds no partial line it would run at end of input


def test_a_corrupt_gzip_end_never_commits(fake, tmp_path):
    # Several MiB of SQL, so that the decompressor hands most of it on before it reaches the damage.
    path = dump_file(tmp_path, HEADER + BODY * 6000 + TRAILER, gz=True, sha=False)
    blob = bytearray(open(path, "rb").read())
    blob[-6] ^= 0xFF  # the CRC32 of the gzip member
    open(path, "wb").write(bytes(blob))
    with pytest.raises(OpError, match="corrupt or truncated.*never committed"):
        restore.restore("db", "postgres", "immich", path)
    out = fake()
    assert len(out) > 1 << 20 and not out.endswith(b"\nCOMMIT;\n")


@pytest.mark.parametrize("inject,what", [
    ("COMMIT;\n", "transaction control"),
    ("SET x = 1; commit;\n", "transaction control"),
    ("END;\n", "transaction control"),
    ("PREPARE TRANSACTION 'x';\n", "transaction control"),
    ("\\connect other\n", "meta-command \\\\connect"),
    ("SELECT 'COMMIT' \\gexec\n", "meta-command \\\\gexec"),
    ("  \\i /tmp/x.sql\n", "meta-command \\\\i"),
    ("\\! touch /tmp/x\n", "run programs"),
])
def test_what_would_leave_the_transaction_is_refused_before_it_is_sent(fake, tmp_path, monkeypatch, inject, what):
    monkeypatch.setattr(df, "CHUNK", 97)  # many small chunks: lines cut anywhere
    text = HEADER + BODY + inject + BODY + TRAILER
    path = dump_file(tmp_path, text, sha=False)
    with pytest.raises(OpError, match=what) as err:
        restore.restore("db", "postgres", "immich", path)
    assert "never committed" in str(err.value)
    out = fake()
    assert b"\n" + inject.lstrip().encode() not in out and not out.endswith(b"\nCOMMIT;\n") and out.endswith(b"\n")


def test_restrict_lines_and_function_bodies_pass_the_guard():
    guard = restore.TransactionGuard()
    text = ("\\restrict abc\n" + HEADER + BODY + "DO $x$ BEGIN PERFORM 1; END $x$;\nCREATE FUNCTION g() RETURNS int\n"
            "LANGUAGE sql AS 'BEGIN; SELECT 1; COMMIT;';\n/* COMMIT; */ SELECT 1;\nSELECT E'it\\'s', ';COMMIT';\n"
            "\\unrestrict abc\n")
    for i in range(0, len(text), 7):
        guard.feed(text[i:i + 7].encode())
    assert guard.finish() == []
    guard = restore.TransactionGuard()
    guard.feed(b"SELECT 1;\n  begin;\nSELECT 2; ROLLBACK\n;\n")
    assert [f["line"] for f in guard.finish()] == [2, 3]


def test_a_newer_major_is_refused_before_psql_starts(fake, tmp_path):
    path = dump_file(tmp_path, (HEADER + BODY + TRAILER).replace("version 15.14", "version 17.6"))
    with pytest.raises(OpError, match="older major.*not touched"):
        restore.restore("db", "postgres", "immich", path)
    assert fake() is None


def test_a_cluster_dump_gets_its_verification_pass_first(fake, tmp_path):
    text = ("--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE postgres;\n\\connect immich\n"
            "-- Dumped from database version 15.14\n" + BODY + "\n--\n-- PostgreSQL database cluster dump complete\n--\n")
    path = dump_file(tmp_path, text, rows={"asset": 2})
    res = restore.restore("db", "postgres", "immich", path)
    assert res["verification"] == "pass, then in the stream" and not res["single_transaction"]
    assert b"BEGIN;\n--" not in fake()[:10] and not fake().rstrip().endswith(b"COMMIT;")
    res = restore.restore("db", "postgres", "immich", path, verify="stream")  # the role verified it before down -v
    assert res["verification"] == "in the stream"


def test_owner_found_in_the_stream_remaps_role_statements_before_it():
    rm = restore.OwnerRemap(None, "immich_admin")
    data = b"CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER;\n\\connect immich\nALTER TABLE a OWNER TO postgres;\nx\n"
    out = b"".join(rm.feed(data[i:i + 5]) for i in range(0, len(data), 5)) + rm.flush()
    assert out == data.replace(b"postgres", b"immich_admin") and rm.owner == "postgres" and rm.count == 3
    same = restore.OwnerRemap(None, "postgres")
    assert same.feed(data) + same.flush() == data and not same.active


def test_line_hold_sends_whole_lines_only():
    hold = restore.LineHold()
    assert hold.feed(b"ab") == b"" and hold.feed(b"c\nde") == b"abc\n" and hold.feed(b"f\n") == b"def\n"
    assert hold.feed(b"g") == b"" and hold.flush() == b"g"


def test_vector_portable_stage_counts_what_it_changed(fake, tmp_path, monkeypatch):
    text = (HEADER + "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n"
            "CREATE TABLE public.smart_search (\n    \"assetId\" uuid NOT NULL,\n    embedding public.vector(3) NOT NULL\n);\n"
            "COPY public.smart_search (\"assetId\", embedding) FROM stdin;\na\t[1,2,3]\n\\.\n"
            "CREATE INDEX clip_index ON public.smart_search USING hnsw (embedding public.vector_cosine_ops);\n" + TRAILER)
    path = dump_file(tmp_path, text, rows={"smart_search": 1})
    monkeypatch.setattr(dx, "row_counts", lambda *a, **k: {"smart_search": 1})
    res = restore.restore("db", "postgres", "immich", path, vector_portable=True)
    vp = res["vector_portable"]
    assert vp["extensions"] == ["vector"] and vp["columns"] == ["smart_search.embedding"] and vp["rows_total"] == 1
    assert vp["indexes"] == ["clip_index"] and "vector-portable" in res["msg"]
    out = fake()
    assert b"a\t{1,2,3}\n" in out and b"CREATE EXTENSION" not in out and b"USING hnsw" not in out
    assert compat.usable_extensions({"available_extensions": ["vector"], "shared_preload_libraries": ""}) == ["vector"]


def test_the_maintenance_flag_is_written_off_and_nothing_else_changes():
    flt = dump.MaintenanceFlagCleared()
    data = (b"COPY public.system_metadata (key, value) FROM stdin;\n"
            b'system-flags\t{"mountChecks": {"upload": true}}\n'
            b'maintenance-mode\t{"secret": "ab12", "isMaintenanceMode": true}\n\\.\n'
            b'COPY public.asset (id) FROM stdin;\nmaintenance-mode\tnot json\n\\.\n')
    out = b"".join(flt.feed(data[i:i + 7]) for i in range(0, len(data), 7)) + flt.flush()
    assert out == data.replace(b'{"secret": "ab12", "isMaintenanceMode": true}', b'{"isMaintenanceMode": false}')
    assert flt.count == 1


def test_sql_standard_function_bodies_are_not_taken_for_transaction_control():
    guard = restore.TransactionGuard()
    text = (b"CREATE FUNCTION public.f(a integer) RETURNS integer\n    LANGUAGE sql\n    BEGIN ATOMIC\n SELECT (a + 1);\n"
            b" SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\nEND;\n\nALTER FUNCTION public.f(a integer) OWNER TO postgres;\n"
            b"CREATE PROCEDURE public.p()\n    LANGUAGE sql\n    BEGIN ATOMIC\n INSERT INTO t VALUES (1);\nEND;\nEND;\n")
    guard.feed(text)
    assert [f["line"] for f in guard.finish()] == [14]  # the END after the bodies is one of its own


def test_a_connect_line_names_pg_dump_create_too(fake, tmp_path):
    path = dump_file(tmp_path, HEADER + "CREATE DATABASE immich;\n\\connect immich\n" + BODY + TRAILER, sha=False)
    with pytest.raises(OpError, match="pg_dump --create"):
        restore.restore("db", "postgres", "immich", path)
