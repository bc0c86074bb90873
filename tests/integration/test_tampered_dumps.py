"""A tampered dump must not act outside the database (issue 12, deliverable 6), against real lab Postgres 15 and 17.

A real database dump of a seeded instance is edited the way someone with write access to a backup target would:
a file written with COPY TO / lo_export, server files read, ALTER SYSTEM, an untrusted language, extensions
that are not Immich's, a SECURITY DEFINER function with a trigger planted, a changed function, a default that
reads files. Each is restored with privilege.restore (the least-privilege plan, one transaction; the MAC check is
not part of it) and must fail INSIDE the transaction: the target database as before, no file in the DB container,
postgresql.auto.conf and the setting unchanged, the planted objects named. The untampered dump restores completely
under the restricted role (rows equal, everything owned by the instance's owner, the fingerprint clean), on 15, on
17 (with pgvector) and from 15 into 17; a cluster dump's database part gets the same treatment. The gate is shown to
hold on its own (a COMMIT and a meta-command sent past the filter), and a set whose dump was edited with its
manifests is refused by its MAC, naming the dump; a wrong key is named as one.
"""
import gzip
import hashlib
import json
import os
import subprocess
import uuid

import pytest
from lab_helpers import teardown
from modrun import run_module

from ansible_collections.homelab.immich.plugins.module_utils import dump_format as df
from ansible_collections.homelab.immich.plugins.module_utils import file_manifest as fm
from ansible_collections.homelab.immich.plugins.module_utils import fingerprint as fp
from ansible_collections.homelab.immich.plugins.module_utils import privilege as pv
from ansible_collections.homelab.immich.plugins.module_utils import set_mac, sets
from ansible_collections.homelab.immich.plugins.module_utils.rewrite import SearchPathRewriter

AUTO_CONF = "/var/lib/postgresql/data/postgresql.auto.conf"
PLANTED_FILE = "/tmp/planted"
# Immich's own kind of trigger (its schema has updated_at triggers on most tables): recorded, restored, compared.
IMMICH_LIKE_TRIGGER = """
CREATE FUNCTION public.updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW."updatedAt" = clock_timestamp();
  RETURN NEW;
END $$;
CREATE TRIGGER asset_updated_at BEFORE UPDATE ON public.asset FOR EACH ROW EXECUTE FUNCTION public.updated_at();
"""


def _seeded(lab, pg, prefix):
    from seeder import seed  # noqa: PLC0415 - the lab's seeder

    inst = lab.Instance("%s-%s" % (prefix, uuid.uuid4().hex[:6]), pg=pg)
    try:
        inst.start_db_only()
        seed(inst, size="small")
        inst.psql(IMMICH_LIKE_TRIGGER)
    except BaseException:
        inst.down(purge=True)
        raise
    return inst


def _empty(lab, pg, prefix):
    inst = lab.Instance("%s-%s" % (prefix, uuid.uuid4().hex[:6]), pg=pg)
    try:
        inst.start_db_only()
    except BaseException:
        inst.down(purge=True)
        raise
    return inst


@pytest.fixture(scope="module")
def src15(lab):
    inst = _seeded(lab, 15, "tds15")
    yield inst
    teardown(inst)


@pytest.fixture(scope="module")
def tgt15(lab):
    inst = _empty(lab, 15, "tdt15")
    yield inst
    teardown(inst)


@pytest.fixture(scope="module")
def src17(lab):
    inst = _seeded(lab, 17, "tds17")
    yield inst
    teardown(inst)


class OtherDatabase:
    """A second database of a lab instance's cluster, used as a restore target (one PG 17 instance is enough for
    the PG 17 tests: the cluster-wide facts - roles, files, settings - are checked all the same)."""

    def __init__(self, inst, database):
        self.inst, self.db, self.user, self.database = inst, inst.db, inst.user, database

    def psql(self, sql, database=None, check=True):
        return self.inst.psql(sql, database=database or self.database, check=check)

    def row_counts(self):
        return self.inst.row_counts(self.database)


@pytest.fixture(scope="module")
def tgt17(src17):
    target = OtherDatabase(src17, "immich_restore")
    reset(target)
    return target


def _dump(src, dest):
    res = run_module("db_dump", container=src.db, dest=str(dest), dump_kind="database", compression="gzip",
                     immich_version="v2.7.5")
    assert res.get("changed") and not res.get("failed"), res
    with gzip.open(res["path"]) as fh:
        plain = fh.read()
    # Recorded from the same database right after the dump (the engine takes it before and after and compares).
    recorded = fp.take(src.db, src.user, src.database)
    assert fp.same(recorded, fp.take(src.db, src.user, src.database))
    return {"path": res["path"], "manifest": res["manifest_path"], "plain": plain, "fingerprint": recorded,
            "rows": res["rows_by_table"]}


@pytest.fixture(scope="module")
def dump15(src15, tmp_path_factory):
    return _dump(src15, tmp_path_factory.mktemp("dump15"))


@pytest.fixture(scope="module")
def dump17(src17, tmp_path_factory):
    return _dump(src17, tmp_path_factory.mktemp("dump17"))


def chunks(plain, size=1 << 16):
    """The plain SQL as the restore stream gives it: search_path rewritten (earthdistance on PG 15)."""
    rw = SearchPathRewriter()
    for pos in range(0, len(plain), size):
        out = rw.feed(plain[pos:pos + size])
        if out:
            yield out
    yield rw.flush()


def file_chunks(path):
    reader = df.PlainReader(path)
    rw = SearchPathRewriter()
    try:
        for chunk in reader.chunks():
            yield rw.feed(chunk)
        yield rw.flush()
    finally:
        reader.close(check=False)


def restore(target, plain, **kw):
    return pv.restore(target.db, target.user, target.database, chunks(plain), **kw)


STATE_SQL = """SELECT json_build_object(
 'tables', (SELECT json_agg(c.oid::regclass::text ORDER BY c.oid::regclass::text) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')),
 'functions', (SELECT json_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text) FROM pg_proc p
               WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)),
 'extensions', (SELECT json_agg(extname ORDER BY extname) FROM pg_extension),
 'schemas', (SELECT json_agg(nspname ORDER BY nspname) FROM pg_namespace),
 'public_owner', (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'),
 'public_acl', (SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'),
 'database_acl', (SELECT datacl::text FROM pg_database WHERE datname = current_database()),
 'roles', (SELECT json_agg(rolname ORDER BY rolname) FROM pg_roles),
 'large_objects', (SELECT count(*) FROM pg_largeobject_metadata),
 'work_mem', current_setting('work_mem'),
 'db_settings', (SELECT json_agg(s ORDER BY s) FROM pg_db_role_setting, unnest(setconfig) s))"""


def server_state(inst):
    """What a tampered restore must leave unchanged: the database, the roles, the server's files and settings
    (read inside the DB container: its /tmp, postgresql.auto.conf, the planted file)."""
    state = json.loads(inst.psql(STATE_SQL))
    files = subprocess.run(["docker", "exec", inst.db, "sh", "-c", 'sha256sum "$1"; ls -A /tmp; test -e "$2" && echo PLANTED',
                            "sh", AUTO_CONF, PLANTED_FILE], capture_output=True, text=True, check=False).stdout.split("\n")
    state["auto_conf"] = files[0].split()[0]
    state["tmp"] = sorted(x for x in files[1:] if x and x != "PLANTED")
    state["planted_file"] = "PLANTED" in files
    return state


def reset(inst):
    """A fresh, empty database (as after down -v and a new start), in one round trip."""
    inst.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE);\nCREATE DATABASE "%s" OWNER "%s";'
              % (inst.database, inst.database, inst.user), database="postgres")


def tamper(plain, sql, before=b"CREATE TABLE public.album ("):
    assert before in plain
    return plain.replace(before, sql + before, 1)


@pytest.fixture
def fresh15(tgt15):
    """The empty PG 15 target and its state. A refused restore leaves it as it was (each test asserts so): it is
    only reset when something is in it."""
    state = server_state(tgt15)
    if state["tables"] or state["functions"] or state["extensions"] != ["plpgsql"]:
        reset(tgt15)
        state = server_state(tgt15)
    assert not state["planted_file"] and not state["tables"]
    return tgt15, state


# -- each server-side effect fails inside the transaction ------------------------------------------------------

ATTACKS = {
    "copy_to_auto_conf": (b"COPY (SELECT 'shared_preload_libraries = ''/tmp/evil.so''') TO '%s';\n" % AUTO_CONF.encode(),
                          "to COPY to a file"),
    "lo_export_file": (b"SELECT pg_catalog.lo_export(pg_catalog.lo_from_bytea(0, 'x'), '%s');\n" % PLANTED_FILE.encode(),
                       "permission denied for function lo_export"),
    "read_server_file": (b"CREATE TABLE public.loot AS SELECT pg_catalog.pg_read_file('/etc/passwd') AS x;\n",
                         "permission denied for function pg_read_file"),
    "copy_from_file": (b"CREATE TABLE public.loot (x text);\nCOPY public.loot FROM '/etc/passwd';\n", "to COPY from a file"),
    "list_server_dir": (b"SELECT pg_catalog.pg_ls_dir('.');\n", "permission denied for function pg_ls_dir"),
    "alter_system": (b"DO $$ BEGIN EXECUTE 'ALTER SYSTEM SET work_mem = ''77MB'''; PERFORM pg_catalog.pg_reload_conf(); "
                     b"END $$;\n", "ALTER SYSTEM"),
    "copy_to_program": (b"COPY (SELECT 1) TO PROGRAM 'touch %s';\n" % PLANTED_FILE.encode(), "pg_execute_server_program"),
    "c_language_function": (b"CREATE FUNCTION public.pwn(cstring) RETURNS int AS 'libc.so.6', 'system' LANGUAGE c;\n",
                            "permission denied for language c"),
    # an untrusted language reaches past every ACL: here the server's own pg_read_file under another name
    "untrusted_language": (b"CREATE FUNCTION public.readfile(text, bigint, bigint) RETURNS text LANGUAGE internal STRICT "
                           b"AS 'pg_read_file_off_len';\n", "permission denied for language internal"),
    "custom_language": (b"CREATE LANGUAGE plperlu HANDLER plpgsql_call_handler;\n",
                        "must be superuser to create custom procedural language"),
    "hidden_unlisted_extension": (b"DO $$ BEGIN EXECUTE 'CREATE EXTENSION file_fdw'; END $$;\n",
                                  'permission denied to create extension "file_fdw"'),
    "hidden_trusted_extension": (b"DO $$ BEGIN EXECUTE 'CREATE EXTENSION hstore'; END $$;\n",
                                 'permission denied to create extension "hstore"'),
    "set_role_superuser": (b"SET ROLE postgres;\n", 'permission denied to set role "postgres"'),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_server_side_effect_fails_inside_the_transaction(fresh15, dump15, name):
    target, before = fresh15
    sql, error = ATTACKS[name]
    with pytest.raises(pv.PrivilegeError) as err:
        restore(target, tamper(dump15["plain"], sql), recorded=dump15["fingerprint"])
    exc = err.value
    print("%s -> %s" % (name, exc))  # what the user sees
    assert exc.facts["step"] == "load" and error in exc.facts["error"]
    assert "rolled back" in str(exc) and "as before" in str(exc)
    tampered = tamper(dump15["plain"], sql)
    assert tampered.splitlines()[exc.facts["line"] - 1] in sql.splitlines()  # the message names the dump's line
    assert server_state(target) == before  # no table, no role, no file, auto.conf and work_mem unchanged
    assert target.psql("SHOW work_mem") == before["work_mem"]


def test_unlisted_extension_in_the_dump_refused_before_anything(fresh15, dump15):
    target, before = fresh15
    plain = dump15["plain"].replace(b"CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;",
                                    b"CREATE EXTENSION IF NOT EXISTS adminpack WITH SCHEMA pg_catalog;\n"
                                    b"CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;")
    with pytest.raises(pv.TamperedDumpError) as err:
        restore(target, plain, recorded=dump15["fingerprint"])
    assert "adminpack" in str(err.value) and "refused before anything is touched" in str(err.value)
    assert server_state(target) == before
    plain = dump15["plain"].replace(b"CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;",
                                    b"CREATE EXTENSION IF NOT EXISTS plpython3u WITH SCHEMA pg_catalog;")
    with pytest.raises(pv.TamperedDumpError, match="plpython3u"):
        restore(target, plain, recorded=dump15["fingerprint"])
    assert server_state(target) == before


def test_a_dump_that_keeps_the_server_busy_is_stopped_and_rolled_back(fresh15, dump15):
    target, before = fresh15
    with pytest.raises(pv.PrivilegeError, match="was still loading after 3 s") as err:
        restore(target, tamper(dump15["plain"], b"SELECT pg_catalog.pg_sleep(600);\n"), recorded=dump15["fingerprint"],
                timeout=3)
    assert err.value.facts["load_seconds"] < 60
    assert server_state(target) == before


def test_meta_command_refused_naming_the_line(fresh15, dump15):
    target, before = fresh15
    plain = tamper(dump15["plain"], b"\\o %s\nSELECT 'x';\n" % AUTO_CONF.encode())
    with pytest.raises(pv.TamperedDumpError) as err:
        restore(target, plain, recorded=dump15["fingerprint"])
    line = err.value.facts["line"]
    assert plain.splitlines()[line - 1].startswith(b"\\o ") and "meta-command" in str(err.value)
    assert server_state(target) == before


# -- nothing planted survives -------------------------------------------------------------------------------

PLANTED = b"""CREATE FUNCTION public.planted() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  PERFORM pg_catalog.lo_export(pg_catalog.lo_from_bytea(0, 'x'), '/tmp/planted');
  RETURN NEW;
END $$;
"""
PLANTED_TRIGGER = b"CREATE TRIGGER planted_trg BEFORE INSERT ON public.asset FOR EACH ROW EXECUTE FUNCTION public.planted();\n"


def plant(plain):
    plain = tamper(plain, PLANTED)
    marker = b"\nALTER TABLE ONLY public.asset\n    ADD CONSTRAINT asset_pkey"
    assert marker in plain
    return plain.replace(marker, b"\n" + PLANTED_TRIGGER + marker, 1)


def test_planted_security_definer_function_and_trigger_named_and_rolled_back(fresh15, dump15):
    target, before = fresh15
    with pytest.raises(pv.PrivilegeError) as err:
        restore(target, plant(dump15["plain"]), recorded=dump15["fingerprint"])
    print(err.value)
    assert err.value.facts["guard"] and err.value.facts["planted"] == [
        "unknown function public.planted()", "unknown trigger public.asset.planted_trg"]
    assert server_state(target) == before


@pytest.mark.parametrize("case", [
    ("function body", b'  NEW."updatedAt" = clock_timestamp();\n',
     b'  NEW."updatedAt" = clock_timestamp();\n  PERFORM pg_catalog.pg_read_file(\'/etc/passwd\');\n',
     "changed function public.updated_at()"),
    ("column default", b'"deviceId" character varying DEFAULT \'\'::character varying NOT NULL',
     b'"deviceId" character varying DEFAULT pg_catalog.pg_read_file(\'/etc/passwd\') NOT NULL',
     'changed default public.asset."deviceId"'),
])
def test_changed_code_named(fresh15, dump15, case):
    what, old, new, named = case
    target, before = fresh15
    assert old in dump15["plain"], what
    with pytest.raises(pv.PrivilegeError) as err:
        restore(target, dump15["plain"].replace(old, new, 1), recorded=dump15["fingerprint"])
    assert named in err.value.facts["planted"], err.value
    assert server_state(target) == before


def test_without_a_recorded_fingerprint_planted_code_lands_and_compare_names_it(fresh15, dump15):
    """The limit, shown: privileges stop every effect outside the database, but a trigger is just SQL. Without
    the fingerprint recorded at backup time it is restored (owned by the owner, as everything); compare() against
    the original database's fingerprint names it, which is why the backup must record one in the set."""
    target, _before = fresh15
    facts = restore(target, plant(dump15["plain"]), recorded=None)
    assert facts["fingerprint_checked"] is False and "fingerprint" not in facts
    res = fp.compare(dump15["fingerprint"], fp.take(target.db, target.user, target.database))
    assert not res["ok"]
    assert res["unknown"] == ["function public.planted() (SECURITY DEFINER)",
                              "trigger public.asset.planted_trg (runs public.planted())"]
    assert not server_state(target)["planted_file"]  # nothing ran yet: the comparison happens before any server start
    reset(target)


# -- the untampered dump -----------------------------------------------------------------------------------

def owners(inst):
    return inst.psql("""SELECT string_agg(DISTINCT r.rolname, ',') FROM (
        SELECT relowner AS o FROM pg_class WHERE relnamespace = 'public'::regnamespace
        UNION ALL SELECT proowner FROM pg_proc WHERE pronamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = pg_proc.oid AND d.deptype = 'e')
        UNION ALL SELECT typowner FROM pg_type WHERE typnamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = pg_type.oid AND d.deptype = 'e')) x
        JOIN pg_roles r ON r.oid = x.o""")


def assert_restored(target, dump, facts, before=None):
    assert target.row_counts() == dump["rows"] and sum(dump["rows"].values()) > 100
    assert owners(target) == target.user
    state = server_state(target)
    assert not [r for r in state["roles"] if r.startswith(pv.ROLE_PREFIX)]
    assert not [s for s in state["schemas"] if s.startswith(pv.ROLE_PREFIX)]
    assert state["public_owner"] == "pg_database_owner"
    assert facts["fingerprint"]["ok"], facts["fingerprint"]
    assert facts["fingerprint"]["unknown"] == facts["fingerprint"]["changed"] == []
    if before is not None:
        for key in ("auto_conf", "work_mem", "public_acl", "database_acl", "db_settings"):
            assert state[key] == before[key], key


def test_untampered_dump_restores_completely_under_the_restricted_role(fresh15, dump15):
    target, before = fresh15
    facts = restore(target, dump15["plain"], recorded=dump15["fingerprint"])
    assert facts["restrict"] and facts["fingerprint_checked"] and facts["owners_in_dump"] == ["postgres"]
    assert facts["extensions"] == ["cube", "earthdistance", "pg_trgm", "unaccent", "uuid-ossp"]
    assert_restored(target, dump15, facts, before)
    # the restored trigger works for the owner
    target.psql('UPDATE public.asset SET "isFavorite" = NOT "isFavorite" WHERE id = (SELECT id FROM public.asset LIMIT 1)')
    reset(target)


def test_pg17_dump_with_pgvector_restores_completely(tgt17, dump17):
    reset(tgt17)
    facts = restore(tgt17, dump17["plain"], recorded=dump17["fingerprint"])
    assert "vector" in facts["extensions"]
    assert_restored(tgt17, dump17, facts)
    assert tgt17.psql("SELECT count(*) FROM public.smart_search") == str(dump17["rows"]["smart_search"])


def test_pg15_dump_into_pg17_compares_clean(tgt17, dump15):
    """Definitions are deparsed by each server: the fingerprint of a 15 dump restored into 17 is still equal."""
    reset(tgt17)
    facts = restore(tgt17, dump15["plain"], recorded=dump15["fingerprint"])
    assert_restored(tgt17, dump15, facts)
    assert facts["fingerprint"]["versions"] in ([], ["extension earthdistance 1.1 -> 1.2"])
    reset(tgt17)


def test_cluster_dump_database_part_restored_the_same_way(src15, fresh15, dump15):
    target, before = fresh15
    plain = subprocess.run(["docker", "exec", src15.db, "pg_dumpall", "--clean", "--if-exists", "-U", src15.user],
                           capture_output=True, check=True).stdout
    evil_globals = (b"CREATE ROLE evil;\nALTER ROLE evil WITH SUPERUSER LOGIN PASSWORD 'known';\n"
                    b"CREATE ROLE reader;\nALTER ROLE reader WITH NOSUPERUSER LOGIN PASSWORD 'known';\n"
                    b"ALTER ROLE reader SET session_preload_libraries TO '/tmp/evil.so';\n")
    plain = plain.replace(b"CREATE ROLE postgres;\n", b"CREATE ROLE postgres;\n" + evil_globals, 1)
    facts = pv.restore(target.db, target.user, target.database, chunks(plain), dump_kind="cluster",
                       recorded=dump15["fingerprint"])
    assert_restored(target, dump15, facts, before)
    roles = server_state(target)["roles"]
    assert "evil" not in roles  # a superuser of the dump is never created
    assert "reader" in roles and target.psql("SELECT rolcanlogin::text || coalesce(array_to_string(setconfig, ','), '') "
                                             "FROM pg_roles r LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid "
                                             "WHERE rolname = 'reader'") == "false"
    assert facts["databases_in_dump"] == ["template1", target.database, "postgres"] and facts["not_restored"]
    reset(target)
    target.psql("DROP ROLE reader", database="postgres")


# -- the gate holds on its own: past the filter -----------------------------------------------------------------

def test_gate_and_restrict_hold_when_the_filter_is_bypassed(fresh15, dump15):
    target, before = fresh15
    state = pv.read_state(target.db, target.user, target.database)
    plan = pv.Plan.new(target.database, target.user)
    plan.extensions = [("cube", "public")]
    rc, _out, err = pv._psql_script(target.db, target.user, target.database, pv.prepare_sql(plan, state))
    assert rc == 0, err
    try:
        # the SCRAM verifier is right: the role logs in over TCP with its password (the lab's host auth is scram)
        login = subprocess.run(["docker", "exec", "-e", "PGPASSWORD", target.db, "psql", "-X", "-At", "-h", "127.0.0.1",
                                "-U", plan.role, "-d", target.database, "-c", "SELECT current_user, rolsuper FROM pg_roles "
                                "WHERE rolname = current_user"],
                               capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=plan.password), check=False)
        assert login.stdout.strip() == "%s|f" % plan.role, login.stderr
        argv = ["docker", "exec", "-i", target.db, "psql", "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", "-",
                "-U", plan.role, "-d", target.database]
        for body, why in ((b"CREATE TABLE public.t1 (a int);\nCOMMIT;\nCREATE TABLE public.t2 (a int);\n", "pending_h_fkey"),
                          (b"CREATE TABLE public.t3 (a int);\n", "pending_h_fkey"),  # the stream cut before seal()
                          (b"CREATE TABLE public.t4 (a int);\n\\! touch %s\n" % PLANTED_FILE.encode(), "restricted"),
                          (b"CREATE TABLE public.t5 (a int);\nSELECT $x$\n" + pv.load_epilogue(plan), "unterminated"),
                          (b"CREATE TABLE public.t6 (a int);\n", None)):
            stream = pv.load_prologue(plan) + body + (pv.load_epilogue(plan) if why is None else b"")
            res = subprocess.run(argv, input=stream, capture_output=True, check=False)
            if why is None:
                assert res.returncode == 0, res.stderr  # only the epilogue's seal lets it commit
                assert target.psql("SELECT count(*) FROM pg_tables WHERE tablename = 't6'") == "1"
                target.psql("DROP TABLE public.t6")
            else:
                assert res.returncode != 0 and why in res.stderr.decode(), res.stderr
            assert target.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"
    finally:
        pv._psql_script(target.db, target.user, target.database, pv.terminate_sql(plan), single=False)
        rc, _out, err = pv._psql_script(target.db, target.user, target.database, pv.abort_sql(plan, state))
        assert rc == 0, err
    assert server_state(target) == before


# -- authenticated sets ----------------------------------------------------------------------------------------

def test_set_with_edited_dump_and_manifests_refused_by_its_mac(tmp_path, dump15, fresh15):
    """A set (made the engine's way: begin, dump + manifest, file manifest, promote, signed) whose dump is edited on
    the target together with every manifest: sets.verify cannot tell, set.mac names the dump; a wrong key is named
    as a wrong key. With the MAC check off, the same dump fails inside the transaction."""
    target, before = fresh15
    key = set_mac.load_key(str(tmp_path / "etc" / "immich.key"), create=True)
    root = str(tmp_path / "target" / "immich")
    begun = sets.begin(root)
    name = os.path.basename(dump15["path"])
    dump_path = os.path.join(begun["db_dir"], name)
    with open(dump15["path"], "rb") as src, open(dump_path, "wb") as dst:
        dst.write(src.read())
    manifest = json.load(open(dump15["manifest"]))
    json.dump(manifest, open(dump_path + ".manifest.json", "w"))
    fp.write(dump_path + fp.FILE_SUFFIX, dump15["fingerprint"])
    w = fm.Writer(begun["manifest"])
    w.close()
    info = dict(set_id=begun["set_id"], status="verified", instance="immich", host="h", trigger="ansible", started=1.0,
                finished=2.0, seconds=1.0, immich_version="v2.7.5", server_version="15", pg_dump_version="15",
                dump_kind="database", dump="db/" + name, dump_bytes=manifest["bytes"], dump_sha256=manifest["sha256"],
                rows_by_table=manifest["rows_by_table"], files=0, files_bytes=0, files_new=0, files_linked=0, folders=[],
                files_by_folder={}, excludes=[], consistency="online", previous=None, verification={"ok": True},
                coverage={"ok": True})
    final = set_mac.promote_signed(root, begun["partial"], info, key, dump_sha256=manifest["sha256"])
    assert set_mac.verify(final, key)["ok"] and sets.verify(final)["ok"]

    evil = gzip.compress(tamper(dump15["plain"], ATTACKS["copy_to_auto_conf"][0]))
    with open(os.path.join(final, "db", name), "wb") as fh:
        fh.write(evil)
    manifest.update(sha256=hashlib.sha256(evil).hexdigest(), bytes=len(evil))
    json.dump(manifest, open(os.path.join(final, "db", name + ".manifest.json"), "w"))
    edited = sets.read_info(final)
    edited.update(dump_sha256=manifest["sha256"], dump_bytes=manifest["bytes"])
    sets.write_info(final, edited)
    assert sets.verify(final)["ok"]  # the manifests agree with the edited dump

    res = set_mac.verify(final, key)
    print(res["message"])
    assert not res["ok"] and res["status"] == "changed" and "db/" + name in res["changed"]
    assert "db/%s was changed" % name in res["message"]
    wrong = set_mac.load_key(str(tmp_path / "other.key"), create=True)
    res = set_mac.verify(final, wrong)
    assert res["status"] == "wrong_key" and key.key_id in res["message"] and wrong.key_id in res["message"]
    # the MAC check turned off: the dump still cannot write postgresql.auto.conf
    with pytest.raises(pv.PrivilegeError, match="to COPY to a file"):
        pv.restore(target.db, target.user, target.database, file_chunks(os.path.join(final, "db", name)),
                   recorded=fp.read(os.path.join(final, "db", name + fp.FILE_SUFFIX)))
    assert server_state(target) == before
