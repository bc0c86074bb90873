"""privilege: the lexer sees statements and meta-commands where psql does; the filter takes the extension and
schema statements out (unlisted extensions refused by name), drops owners and \\restrict lines, holds the head
until the plan is known, passes COPY data untouched whatever it looks like, refuses what pg_dump never writes;
the cluster filter keeps only the instance's database part; the SQL of each step (no secret in it but the SCRAM
verifier, only what prepare created is dropped on abort)."""
import base64
import hashlib
import hmac
import random

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import privilege as pv

HEAD = b"""--
-- PostgreSQL database dump
--

\\restrict ew1cPLN8HWaoEnpDAznkK5zdp2Gl4yMWi2eqbk7TYdQp934aJBhCiI1i67zX6Pj

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;

ALTER TABLE IF EXISTS ONLY public.asset DROP CONSTRAINT IF EXISTS asset_pkey;
DROP TABLE IF EXISTS public.asset;
DROP FUNCTION IF EXISTS public.f_unaccent(text);
DROP EXTENSION IF EXISTS "uuid-ossp";
DROP EXTENSION IF EXISTS cube;
--
-- Name: cube; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;


COMMENT ON EXTENSION cube IS 'data type for multidimensional cubes';

CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;

COMMENT ON EXTENSION "uuid-ossp" IS 'generate universally unique identifiers (UUIDs)';

"""
BODY = b"""CREATE FUNCTION public.f_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN public.unaccent('public.unaccent'::regdictionary, $1);


ALTER FUNCTION public.f_unaccent(text) OWNER TO postgres;

CREATE FUNCTION public.touch() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
  NEW."updatedAt" = now(); -- a comment; with a semicolon
  RETURN NEW;
END
$$;

CREATE TABLE public.asset (
    id uuid DEFAULT public.uuid_generate_v4() NOT NULL,
    "originalPath" character varying NOT NULL,
    note text DEFAULT 'it''s; \\! not a command'::text
);


ALTER TABLE public.asset OWNER TO postgres;

COPY public.asset (id, "originalPath", note) FROM stdin;
0b1f6f0e-0000-4000-8000-000000000001\t/data/upload/a.jpg\t\\N
0b1f6f0e-0000-4000-8000-000000000002\tCREATE EXTENSION IF NOT EXISTS adminpack WITH SCHEMA public;\tCOMMIT;
ALTER TABLE public.asset OWNER TO evil;
\\! id
\\.


ALTER TABLE ONLY public.asset
    ADD CONSTRAINT asset_pkey PRIMARY KEY (id);

--
-- PostgreSQL database dump complete
--

\\unrestrict ew1cPLN8HWaoEnpDAznkK5zdp2Gl4yMWi2eqbk7TYdQp934aJBhCiI1i67zX6Pj

"""
DUMP = HEAD + BODY


def run_filter(data, sizes=None, **kw):
    f = pv.DumpFilter("immich", **kw)
    out = []
    ready_at = None
    pos = 0
    rng = random.Random(7)
    while pos < len(data):
        n = sizes if isinstance(sizes, int) else (rng.randint(1, 97) if sizes == "random" else len(data))
        out.append(f.feed(data[pos:pos + n]))
        pos += n
        if f.ready and ready_at is None:
            ready_at = pos
    out.append(f.finish())
    return f, b"".join(out), ready_at


# -- the lexer ---------------------------------------------------------------------------------------------

def lex(text):
    lx = pv.SqlLexer()
    events = []
    for line in text.encode().splitlines(True):
        events += lx.line(line)
    return lx, events


def test_lexer_statement_ends_only_outside_quotes_comments_and_parens():
    lx, ev = lex("SELECT 'a;b', \"c;d\", $x$e;f$x$, E'g\\';h' /* i; /* nested; */ j; */ -- k;\n, (1; 2);\nSELECT 2;\n")
    ends = [e[1] for e in ev if e[0] == "end"]
    assert len(ends) == 2 and ends[0].startswith(b"SELECT") and ends[1] == b"SELECT 2"
    assert lx.at_statement_start()


def test_lexer_begin_atomic_body_is_one_statement():
    _lx, ev = lex("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n SELECT 1;\n SELECT CASE WHEN true "
                  "THEN 1 END;\nEND;\nCOMMIT;\n")
    ends = [e[1] for e in ev if e[0] == "end"]
    assert ends[0].startswith(b"CREATE OR REPLACE FUNCTION") and ends[1] == b"COMMIT" and len(ends) == 2


def test_lexer_meta_commands_found_outside_quotes_only():
    _lx, ev = lex("SELECT '\\! no', $q$ \\! no $q$, \"\\o\" -- \\! no\n/* \\! no */ SELECT 1; \\! yes\n")
    assert [e[0] for e in ev].count("meta") == 1


def test_lexer_dollar_signs_as_psql_reads_them():
    # a$b$ is one identifier; $1 is a parameter, and the $a$ right after it opens a quote (as in psql)
    _lx, ev = lex("SELECT a$b$ FROM t; SELECT $1$a$ ; \\! hidden $a$;\n")
    assert [e[0] for e in ev] == ["end", "end"]
    _lx, ev = lex("SELECT 1e$a$ x $a$; \\! id\n")
    assert "junk" in [e[0] for e in ev]


def test_lexer_e_strings_need_the_e_at_a_token_start():
    lx, _ev = lex("SELECT xE'\\';\n")  # xE is a name, then a standard string whose backslash is a character
    assert lx.at_statement_start()
    lx, _ev = lex("SELECT E'\\';\n")  # an E string: \' is a quote inside it, still open
    assert not lx.at_statement_start()


# -- the database filter -------------------------------------------------------------------------------

def test_filter_plans_extensions_and_strips_what_the_role_must_not_run():
    f, out, _ready = run_filter(DUMP)
    assert f.extensions == [("cube", "public"), ("uuid-ossp", "public")]
    assert f.owners == {"postgres"} and f.stripped == 2
    for gone in (b"CREATE EXTENSION IF NOT EXISTS cube", b"COMMENT ON EXTENSION", b"DROP EXTENSION",
                 b"ALTER FUNCTION public.f_unaccent(text) OWNER TO", b"\\restrict ew1", b"\\unrestrict ew1"):
        assert gone not in out
    for kept in (b"CREATE FUNCTION public.touch()", b"DROP TABLE IF EXISTS public.asset;", b"ADD CONSTRAINT asset_pkey",
                 b"SELECT pg_catalog.set_config('search_path', '', false);"):
        assert kept in out
    # COPY rows pass byte for byte, even those that look like statements or meta-commands
    start = DUMP.index(b"COPY public.asset")
    block = DUMP[start:DUMP.index(b"\\.\n", start) + 3]
    assert block in out and f.copy_blocks == 1


def test_filter_output_independent_of_chunk_boundaries():
    _f, whole, _r = run_filter(DUMP)
    for sizes in (1, 2, 3, 7, "random"):
        f, out, _r = run_filter(DUMP, sizes)
        assert out == whole, sizes
        assert f.extensions == [("cube", "public"), ("uuid-ossp", "public")]


def test_psql_error_lines_map_back_to_the_dump():
    for data in (DUMP, DUMP.replace(b"\n", b"\r\n")):
        for sizes in (None, 5):
            f, out, _r = run_filter(data, sizes)
            ins, outs = data.splitlines(), out.splitlines()
            assert f.out_lines == len(outs)
            assert all(ins[f.dump_line(n) - 1] == line for n, line in enumerate(outs, 1))


def test_filter_holds_the_head_until_the_first_object():
    f = pv.DumpFilter("immich")
    assert f.feed(HEAD) == b"" and not f.ready
    out = f.feed(BODY[:200])
    assert f.ready and out.startswith(b"--\n-- PostgreSQL database dump") and b"CREATE FUNCTION public.f_unaccent" in out


def test_filter_crlf_dump_the_seed_way():
    crlf = DUMP.replace(b"\n", b"\r\n")
    f, out, _r = run_filter(crlf, 64)
    assert f.extensions == [("cube", "public"), ("uuid-ossp", "public")]
    assert b"OWNER TO postgres" not in out and f.copy_blocks == 1


def test_unlisted_extension_refused_by_name_before_anything():
    bad = HEAD.replace(b"CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;",
                       b"CREATE EXTENSION IF NOT EXISTS adminpack WITH SCHEMA pg_catalog;")
    with pytest.raises(pv.TamperedDumpError) as err:
        run_filter(bad + BODY)
    assert "adminpack" in str(err.value) and "not one of Immich's" in str(err.value)
    assert err.value.facts["extension"] == "adminpack"
    with pytest.raises(pv.TamperedDumpError, match="plpython3u"):
        run_filter(HEAD + b"CREATE EXTENSION plpython3u;\n" + BODY)


@pytest.mark.parametrize("inject, what", [
    (b"\\! id\n", "meta-command"),
    (b"SELECT 1; \\o /var/lib/postgresql/data/postgresql.auto.conf\n", "meta-command"),
    (b"COMMIT;\n", "transaction-control"),
    (b"  rollback ;\n", "transaction-control"),
    (b"END;\n", "transaction-control"),
    (b"CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n", "after the dump's first objects"),
    (b"CREATE EXTENSION IF NOT EXISTS file_fdw WITH SCHEMA public;\n", "file_fdw"),
    (b"CREATE\n  EXTENSION hstore;\n", "hstore"),
    (b"CREATE SCHEMA evil;\n", "after the dump's first objects"),
    (b"SET standard_conforming_strings = off;\n", "standard_conforming_strings"),
    (b"SELECT pg_catalog.set_config('standard_conforming_strings', 'off', false);\n", "standard_conforming_strings"),
    (b"COPY public.asset (id) FROM stdin; SELECT 1;\n", "data after a COPY"),
])
def test_what_pg_dump_never_writes_is_refused_naming_the_line(inject, what):
    data = DUMP.replace(b"CREATE TABLE public.asset", inject + b"CREATE TABLE public.asset")
    with pytest.raises(pv.TamperedDumpError) as err:
        run_filter(data)
    assert what in str(err.value)
    if "line" in err.value.facts:  # the line named is one of those injected
        assert data.splitlines()[err.value.facts["line"] - 1].strip() in [ln.strip() for ln in inject.splitlines()]


@pytest.mark.parametrize("tail, where", [
    (b"SELECT 'open string\n", "inside a statement"),
    (b"SELECT 1\n", "inside a statement"),
    (b"/* open comment\n", "inside a statement"),
    (b"COPY public.asset (id) FROM stdin;\n0b1f\n", "inside COPY data"),
])
def test_a_dump_ending_inside_something_is_never_committed(tail, where):
    with pytest.raises(pv.TamperedDumpError, match=where):
        run_filter(DUMP + tail)


def test_sql_looking_like_extension_lines_inside_bodies_is_not_routed():
    body = BODY.replace(b"  RETURN NEW;\n", b"  RETURN NEW;\nCREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;\n")
    f, out, _r = run_filter(HEAD + body)
    assert b"RETURN NEW;\nCREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;\n" in out  # left in the body


def test_schemas_and_database_settings_planned_defaults_privileges_skipped():
    head = HEAD.replace(b"CREATE EXTENSION IF NOT EXISTS cube", b"CREATE SCHEMA vectors;\nALTER SCHEMA vectors OWNER TO "
                        b"postgres;\nALTER DATABASE immich SET search_path TO '$user', 'public', 'vectors';\nCREATE "
                        b"EXTENSION IF NOT EXISTS cube")
    body = BODY.replace(b"CREATE TABLE", b"ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT SELECT ON TABLES TO ro;\n"
                        b"SET SESSION AUTHORIZATION 'postgres';\nCREATE TABLE")
    f, out, _r = run_filter(head + body)
    assert f.schemas == ["vectors"] and f.db_settings == [("search_path", "'$user', 'public', 'vectors'")]
    assert b"CREATE SCHEMA vectors" not in out and b"ALTER DEFAULT PRIVILEGES" not in out
    assert f.skipped_count == 2 and "default privileges" in f.skipped[0]


# -- the cluster filter ---------------------------------------------------------------------------------------

CLUSTER = (b"""--
-- PostgreSQL database cluster dump
--

\\restrict Li79RL2gj9mOrggixToHRcnAcJMfHlOcLYT0QgyTaLz8sJEcatYg3r7CSfbPWfU

SET default_transaction_read_only = off;

DROP DATABASE IF EXISTS immich;
DROP ROLE IF EXISTS postgres;
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:x';
CREATE ROLE grafana;
ALTER ROLE grafana WITH NOSUPERUSER LOGIN PASSWORD 'known';
ALTER ROLE grafana SET session_preload_libraries TO '/tmp/evil.so';

\\unrestrict Li79RL2gj9mOrggixToHRcnAcJMfHlOcLYT0QgyTaLz8sJEcatYg3r7CSfbPWfU
\\connect template1
\\restrict fD
SET statement_timeout = 0;
ALTER DATABASE template1 IS_TEMPLATE = true;
\\unrestrict fD

--
-- PostgreSQL database dump complete
--

CREATE DATABASE immich WITH TEMPLATE = template0 ENCODING = 'UTF8';
ALTER DATABASE immich OWNER TO postgres;
\\connect immich
""" + DUMP.replace(b"SET check_function_bodies = false;\n",
                   b"SET check_function_bodies = false;\nALTER DATABASE immich SET search_path TO '$user', public;\n"
                   b"ALTER DATABASE immich SET session_preload_libraries TO 'x';\n") + b"""DROP DATABASE postgres;
CREATE DATABASE postgres WITH TEMPLATE = template0;
\\connect postgres
CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS 'SELECT 1';
--
-- PostgreSQL database dump complete
--

--
-- PostgreSQL database cluster dump complete
--
""")


def run_cluster(data, sizes=None, database="immich"):
    f = pv.ClusterFilter(database)
    out = []
    pos = 0
    while pos < len(data):
        n = sizes or len(data)
        out.append(f.feed(data[pos:pos + n]))
        pos += n
    out.append(f.finish())
    return f, b"".join(out)


def test_cluster_dump_only_the_instance_database_part():
    f, out = run_cluster(CLUSTER)
    assert f.roles == ["postgres", "grafana"] and f.superusers == ["postgres"]
    assert f.databases == ["template1", "immich", "postgres"]
    assert f.extensions == [("cube", "public"), ("uuid-ossp", "public")]
    assert f.db_settings == [("search_path", "'$user', public")]
    assert any("session_preload_libraries" in s for s in f.skipped)
    for gone in (b"ROLE", b"PASSWORD", b"DATABASE", b"public.evil", b"template1", b"\\connect"):
        assert gone not in out, gone
    assert out.endswith(b"ADD CONSTRAINT asset_pkey PRIMARY KEY (id);\n\n--\n")  # up to its trailer
    plan = pv.Plan.new("immich", "postgres").with_filter(f)
    assert plan.roles == ["grafana"]  # the dump's superuser is the old owner: never created
    facts = f.facts()
    assert facts["superuser_roles_in_dump"] == ["postgres"] and facts["not_restored"]
    for sizes in (1, 5, 61):
        g, again = run_cluster(CLUSTER, sizes)
        assert again == out and g.roles == f.roles


def test_cluster_dump_without_the_database_or_twice_or_truncated():
    with pytest.raises(pv.PrivilegeError, match="holds no database photos"):
        run_cluster(CLUSTER, database="photos")
    twice = CLUSTER.replace(b"\\connect postgres\n", b"\\connect immich\n")
    with pytest.raises(pv.TamperedDumpError, match="a second time"):
        run_cluster(twice)
    cut = CLUSTER[:CLUSTER.index(b"-- PostgreSQL database dump complete", CLUSTER.index(b"\\connect immich"))]
    with pytest.raises(pv.TamperedDumpError, match="no completion trailer"):
        run_cluster(cut)


# -- the plan's SQL -------------------------------------------------------------------------------------------

STATE = {"superuser": True, "user": "postgres", "public_owner": "pg_database_owner", "extensions": ["plpgsql"],
         "schemas": ["information_schema", "pg_catalog", "pg_toast", "public"], "roles": ["pg_database_owner", "postgres"],
         "db_settings": [], "objects": []}


def plan_for(data=DUMP, recorded=None):
    f, _out, _r = run_filter(data)
    plan = pv.Plan.new("immich", "postgres").with_filter(f)
    plan.recorded = recorded
    return plan


def test_role_name_secrets_and_repr():
    plan = plan_for()
    assert pv.ROLE_RE.match(plan.role) and plan.gate == plan.role
    text = repr(plan)
    assert plan.password not in text and plan.restrict_key not in text


def test_prepare_creates_a_role_without_privileges_and_only_allowlisted_extensions():
    plan = plan_for(recorded={"objects": [{"kind": "function", "name": "public.f(text)", "hash": "ab", "detail": {}},
                                          {"kind": "trigger", "name": "public.\"o'k\".t", "hash": "cd", "detail": {}}]})
    sql = pv.prepare_sql(plan, STATE)
    create = [ln for ln in sql.splitlines() if ln.startswith("CREATE ROLE %s " % plan.role)][0]
    for attr in ("LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOINHERIT", "NOREPLICATION", "NOBYPASSRLS",
                 "PASSWORD 'SCRAM-SHA-256$4096:", "VALID UNTIL"):
        assert attr in create
    assert plan.password not in sql and "GRANT CREATE" not in sql and "SUPERUSER " not in create.replace("NOSUPERUSER", "")
    assert "has_database_privilege('%s', pg_catalog.current_database(), 'CONNECT')" % plan.role in sql
    assert "ALTER SCHEMA public OWNER TO %s;" % plan.role in sql
    assert 'CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;' in sql
    assert 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;' in sql
    assert "('trigger', 'public.\"o''k\".t', 'cd')" in sql  # recorded names quoted as literals
    assert "homelab.immich restore audit" in sql and "pg_write_server_files" in sql and "lo_export(oid,text)" in sql
    assert "SECURITY INVOKER" in sql and "SECURITY DEFINER" not in sql
    assert "DEFERRABLE INITIALLY DEFERRED" in sql


def test_load_stream_restricts_psql_and_only_the_epilogue_can_commit():
    plan = plan_for()
    pro = pv.load_prologue(plan).decode()
    epi = pv.load_epilogue(plan).decode()
    assert pro.startswith("\\restrict %s\n" % plan.restrict_key)
    token = plan._token.hex()
    assert token not in pro and hashlib.sha256(plan._token).hexdigest() in pro  # only the hash before the dump
    assert token in epi and "seal(" in epi
    assert "\\restrict" not in pv.load_prologue(plan, restrict=False).decode()


def test_finish_hands_everything_to_the_owner_and_drops_the_role():
    plan = plan_for()
    sql = pv.finish_sql(plan, STATE)
    order = [sql.index(s) for s in ("DROP SCHEMA %s CASCADE" % plan.gate, "REASSIGN OWNED BY %s TO postgres" % plan.role,
                                    "ALTER SCHEMA public OWNER TO pg_database_owner", "DROP OWNED BY %s" % plan.role,
                                    "DROP ROLE %s" % plan.role)]
    assert order == sorted(order)


def test_abort_undoes_only_what_prepare_created():
    f, _o, _r = run_filter(HEAD.replace(b"CREATE EXTENSION IF NOT EXISTS cube", b"CREATE SCHEMA vectors;\n"
                                        b"ALTER DATABASE immich SET search_path TO '$user', public;\n"
                                        b"CREATE EXTENSION IF NOT EXISTS cube") + BODY)
    plan = pv.Plan.new("immich", "postgres").with_filter(f)
    plan.roles = ["grafana"]
    state = dict(STATE, extensions=["plpgsql", "uuid-ossp"])
    sql = pv.abort_sql(plan, state)
    assert "DROP EXTENSION IF EXISTS cube CASCADE;" in sql and "uuid-ossp" not in sql
    assert "DROP SCHEMA IF EXISTS vectors CASCADE;" in sql and "ALTER DATABASE immich RESET search_path;" in sql
    assert "DROP ROLE IF EXISTS grafana;" in sql and sql.rstrip().endswith("DROP ROLE IF EXISTS %s;" % plan.role)
    assert sql.index("ALTER SCHEMA public OWNER TO") < sql.index("DROP OWNED BY")  # public is never dropped with the role
    before = pv.abort_sql(plan, dict(state, db_settings=["search_path=\"$user\", public, vectors"]))
    assert 'ALTER DATABASE immich SET search_path TO "$user", public, vectors;' in before
    term = pv.terminate_sql(plan)
    assert "NOLOGIN" in term and "pg_terminate_backend" in term


def test_check_state_refusals():
    plan = plan_for()
    pv.check_state(plan, STATE)
    for state, text in ((dict(STATE, superuser=False), "not a superuser"),
                        (dict(STATE, objects=["public.asset"]), "not empty"),
                        (dict(STATE, extensions=["plpgsql", "adminpack"]), "adminpack"),
                        (dict(STATE, roles=["immich"]), "owner role postgres does not exist")):
        with pytest.raises(pv.PrivilegeError, match=text):
            pv.check_state(plan, state)
    with pytest.raises(pv.PrivilegeError, match="already has schema vectors"):
        plan.schemas = ["vectors"]
        pv.prepare_sql(plan, dict(STATE, schemas=STATE["schemas"] + ["vectors"]))


def test_scram_verifier_matches_rfc7677():
    # RFC 7677 section 3: user "user", password "pencil"; the server signature proves ServerKey.
    ver = pv.scram_verifier("pencil", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), iterations=4096)
    head, keys = ver.split("$", 1)[1].split("$")
    assert head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored, server = (base64.b64decode(x) for x in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = ("n=user,r=rOprNGfwEbeRWgbNEkqO,r=%s,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=%s" % (nonce, nonce)).encode()
    assert base64.b64encode(hmac.new(server, auth, hashlib.sha256).digest()) == b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, hmac.new(stored, auth, hashlib.sha256).digest()))
    assert hashlib.sha256(client_key).digest() == stored


def test_psql_restrict_support_by_version():
    assert pv.psql_has_restrict("psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)")
    assert pv.psql_has_restrict("psql (PostgreSQL) 17.6")
    assert pv.psql_has_restrict("psql (PostgreSQL) 18.0")
    assert not pv.psql_has_restrict("psql (PostgreSQL) 14.10")
    assert not pv.psql_has_restrict("psql (PostgreSQL) 16.9")
    assert pv.psql_has_restrict("") is None


def test_quoting():
    assert pv.quote_ident("immich") == "immich" and pv.quote_ident("uuid-ossp") == '"uuid-ossp"'
    assert pv.quote_ident("user") == '"user"' and pv.quote_ident('a"b') == '"a""b"' and pv.quote_ident("Immich") == '"Immich"'
    assert pv.quote_literal("it's") == "'it''s'"
    with pytest.raises(pv.PrivilegeError):
        pv.quote_literal("a\x00b")
