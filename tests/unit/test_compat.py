"""The compatibility gate: facts of a dump, facts of a target, one answer naming every incompatibility."""
import gzip

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import compat
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx

# The header and DDL of an Immich v2 database dump as its built-in backup writes it (pg_dump 16.10 of
# a ghcr.io/immich-app/postgres instance: VectorChord over pgvector), cut to what the gate reads, with
# a few COPY rows. The trailing space pg_dump writes after an empty "Owner:" is kept as "~" here.
IMMICH_V2 = r"""--
-- PostgreSQL database dump
--

\restrict Zq3mD8pV0rXkT2yLw5nB7cJ9hF4sA1uE6gQiWoRtYzNxMvKbPjHlCdS

-- Dumped from database version 16.10 (Debian 16.10-1.pgdg120+1)
-- Dumped by pg_dump version 16.10 (Debian 16.10-1.pgdg120+1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

DROP EXTENSION IF EXISTS vchord;
DROP EXTENSION IF EXISTS vector;
--
-- Name: cube; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS cube WITH SCHEMA public;


--
-- Name: earthdistance; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS earthdistance WITH SCHEMA public;


--
-- Name: pg_trgm; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;


--
-- Name: unaccent; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;


--
-- Name: uuid-ossp; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;


--
-- Name: vector; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;


--
-- Name: EXTENSION vector; Type: COMMENT; Schema: -; Owner:~
--

COMMENT ON EXTENSION vector IS 'vector data type and ivfflat and hnsw access methods';


--
-- Name: vchord; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS vchord WITH SCHEMA public;


--
-- Name: asset_visibility_enum; Type: TYPE; Schema: public; Owner: postgres
--

CREATE TYPE public.asset_visibility_enum AS ENUM (
    'archive',
    'timeline',
    'hidden',
    'locked'
);


ALTER TYPE public.asset_visibility_enum OWNER TO postgres;

--
-- Name: album_user_after_insert(); Type: FUNCTION; Schema: public; Owner: postgres
--

CREATE FUNCTION public.album_user_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
      BEGIN
        UPDATE album SET "updatedAt" = clock_timestamp(), "updateId" = immich_uuid_v7(clock_timestamp())
        WHERE "id" IN (SELECT DISTINCT "albumId" FROM inserted_rows);
        -- ALTER TABLE x OWNER TO nobody_real;
        RETURN NULL;
      END
    $$;


ALTER FUNCTION public.album_user_after_insert() OWNER TO postgres;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: smart_search; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.smart_search (
    "assetId" uuid NOT NULL,
    embedding public.vector(512) NOT NULL
);
ALTER TABLE ONLY public.smart_search ALTER COLUMN embedding SET STORAGE EXTERNAL;


ALTER TABLE public.smart_search OWNER TO postgres;

--
-- Name: face_search; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.face_search (
    "faceId" uuid NOT NULL,
    embedding public.vector(512) NOT NULL
);
ALTER TABLE ONLY public.face_search ALTER COLUMN embedding SET STORAGE EXTERNAL;


ALTER TABLE public.face_search OWNER TO postgres;

--
-- Data for Name: system_metadata; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.system_metadata (key, value) FROM stdin;
system-flags	{"mountChecks": {"thumbs": true, "upload": true, "backups": true, "library": true, "profile": true, "encoded-video": true}}
note	CREATE EXTENSION IF NOT EXISTS vectors; ALTER TABLE t OWNER TO evil; SET transaction_timeout = 0;
\.


--
-- Name: clip_index; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX clip_index ON public.smart_search USING vchordrq (embedding public.vector_cosine_ops) WITH (options='
    residual_quantization = false
    [build.internal]
    lists = [1]
    spherical_centroids = true
    build_threads = 4
    sampling_factor = 1024
    ');


--
-- Name: face_index; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX face_index ON public.face_search USING vchordrq (embedding public.vector_cosine_ops) WITH (options='
    residual_quantization = false
    [build.internal]
    lists = [1]
    spherical_centroids = true
    build_threads = 4
    sampling_factor = 1024
    ');


--
-- PostgreSQL database dump complete
--

\unrestrict Zq3mD8pV0rXkT2yLw5nB7cJ9hF4sA1uE6gQiWoRtYzNxMvKbPjHlCdS

""".replace("Owner:~", "Owner: ").encode()

IMMICH_EXTENSIONS = ["plpgsql", "cube", "earthdistance", "pg_trgm", "unaccent", "uuid-ossp"]


def target(**kw):
    """A ghcr.io/immich-app/postgres:16 target: every extension, vchord preloaded, role postgres, disk to spare."""
    facts = {"server_version": "16.10", "server_major": 16, "psql_version": "16.10",
             "available_extensions": dict((e, "1.0") for e in IMMICH_EXTENSIONS + ["vector", "vchord", "vectors"]),
             "shared_preload_libraries": "vchord.so", "roles": ["postgres", "pg_monitor"],
             "free_bytes": 50 * 10**9, "cluster_bytes": 0, "data_path": "/srv/immich/postgres"}
    facts.update(kw)
    return facts


def pgvector_only(**kw):
    """The lab's PG17 image (Debian's postgresql-17 + postgresql-17-pgvector): no VectorChord."""
    facts = dict(server_version="17.12", server_major=17, psql_version="17.12", shared_preload_libraries="",
                 available_extensions=dict((e, "1.0") for e in IMMICH_EXTENSIONS + ["vector"]))
    facts.update(kw)
    return target(**facts)


def codes(result):
    return [p["code"] for p in result["incompatibilities"]]


@pytest.fixture(scope="module")
def v2():
    return compat.scan_dump([IMMICH_V2])


def test_facts_of_an_immich_v2_dump(v2):
    assert (v2["dump_kind"], v2["server_major"], v2["pg_dump_major"]) == ("database", 16, 16)
    assert [e["name"] for e in v2["extensions"]] == ["cube", "earthdistance", "pg_trgm", "unaccent", "uuid-ossp", "vector", "vchord"]
    assert all(e["schema"] == "public" for e in v2["extensions"])
    assert v2["vector_extensions"] == ["vchord", "vector"]
    assert v2["vector_types"] == {"vector": 2} and v2["vector_access_methods"] == {"vchordrq": 2}
    assert v2["preload"] == ["vchord"]
    assert v2["restrict"] is True and v2["transaction_timeout"] is False
    # COPY data and a function body mention other extensions, roles and settings: none of it counts.
    assert v2["roles"] == ["postgres"]
    assert "vectors" not in [e["name"] for e in v2["extensions"]]
    assert v2["plain_bytes"] == len(IMMICH_V2)


def test_immich_v2_dump_into_a_pgvector_only_target_is_refused_naming_vchord(v2):
    res = compat.check(v2, pgvector_only())
    assert res["ok"] is False
    assert codes(res) == ["vector_extension_missing"]
    problem = res["incompatibilities"][0]
    assert problem["what"] == ("The dump uses the vector extension vchord (VectorChord) and the target image offers "
                               "only vector.")
    assert "Use an image with VectorChord (ghcr.io/immich-app/postgres" in problem["fix"]
    assert "immich_restore_vector_portable: true" in problem["fix"]
    assert res["message"].startswith("Refusing to restore: 1 incompatibility between the dump and the target. "
                                     "The instance was not touched")
    assert "vchord" in res["message"]
    with pytest.raises(compat.GateError) as err:
        compat.gate(v2, pgvector_only())
    assert err.value.result["incompatibilities"] == res["incompatibilities"]


def test_vector_portable_turns_the_refusal_into_a_warning(v2):
    res = compat.check(v2, pgvector_only(), vector_portable=True)
    assert res["ok"] is True and res["incompatibilities"] == []
    assert len(res["warnings"]) == 1 and "immich_restore_vector_portable is on" in res["warnings"][0]
    assert compat.usable_extensions(pgvector_only()) == sorted(IMMICH_EXTENSIONS + ["vector"])


def test_the_immich_image_takes_the_dump(v2):
    res = compat.check(v2, target())
    assert res == {"ok": True, "incompatibilities": [], "warnings": [], "unchecked": [],
                   "message": "The dump and the target are compatible."}


@pytest.mark.parametrize("preload", ["", "pg_stat_statements", '"$libdir/vectors.so"'])
def test_vchord_not_preloaded(v2, preload):
    res = compat.check(v2, target(shared_preload_libraries=preload))
    assert codes(res) == ["preload_missing"]
    assert "`-c shared_preload_libraries=vchord.so`" in res["incompatibilities"][0]["fix"]
    assert "Immich's start fails" in res["incompatibilities"][0]["what"]
    assert "CREATE EXTENSION vchord in the dump" in res["incompatibilities"][0]["what"]


@pytest.mark.parametrize("preload", ["vchord.so", "vchord", "pg_stat_statements, vchord.so", '"$libdir/vchord.so"'])
def test_vchord_preloaded_any_spelling(v2, preload):
    assert compat.check(v2, target(shared_preload_libraries=preload))["ok"] is True


def test_pgvecto_rs_left_unloaded_is_fine_while_immich_uses_vchord(v2):
    # The Immich image offers vectors too; only what Immich picks (or the dump creates) must be preloaded.
    assert compat.check(v2, target(shared_preload_libraries="vchord.so"))["ok"] is True
    res = compat.check(v2, target(shared_preload_libraries="vchord.so", vector_extension="pgvecto.rs"))
    assert codes(res) == ["preload_missing"] and "vectors.so" in res["incompatibilities"][0]["fix"]


def test_newer_postgres_dump_into_an_older_server(v2):
    dump = dict(v2, server_version="17.6", server_major=17, pg_dump_version="17.6", pg_dump_major=17)
    res = compat.check(dump, target())
    assert codes(res) == ["postgres_older"]
    assert "Use an image with Postgres 17 or newer (e.g. ghcr.io/immich-app/postgres:17-" in res["incompatibilities"][0]["fix"]


def test_newer_pg_dump_alone_is_a_warning(v2):
    dump = dict(v2, pg_dump_version="17.6", pg_dump_major=17)
    res = compat.check(dump, target())
    assert res["ok"] is True and "pg_dump 17.6, newer than the target's PostgreSQL 16" in res["warnings"][0]


def test_transaction_timeout_into_pg16():
    dump = compat.scan_dump([IMMICH_V2.replace(b"SET lock_timeout = 0;\n", b"SET lock_timeout = 0;\nSET transaction_timeout = 0;\n")
                             .replace(b"-- Dumped by pg_dump version 16.10", b"-- Dumped by pg_dump version 17.6")])
    assert dump["transaction_timeout"] is True
    res = compat.check(dump, target())
    assert codes(res) == ["transaction_timeout"]
    assert "PostgreSQL 16 does not know" in res["incompatibilities"][0]["what"]
    assert compat.check(dump, target(server_version="17.6", server_major=17, psql_version="17.6"))["ok"] is True


@pytest.mark.parametrize("psql,ok", [("16.9", False), ("16.10", True), ("17.5", False), ("17.6", True), ("18.0", True),
                                     ("13.21", False), ("13.22", True), ("12.22", False), ("14.19 (Debian 14.19-1.pgdg120+1)", True)])
def test_restrict_lines_need_a_recent_psql(v2, psql, ok):
    res = compat.check(v2, target(psql_version=psql))
    assert res["ok"] is ok
    if not ok:
        assert codes(res) == ["restrict_unsupported"] and psql in res["incompatibilities"][0]["what"]


def test_owner_missing_and_remapped(v2):
    res = compat.check(v2, target(roles=["immich"]))
    assert codes(res) == ["owner_missing"]
    assert "role postgres (OWNER TO / GRANT) that the target does not have" in res["incompatibilities"][0]["what"]
    assert "CREATE ROLE \"postgres\"" in res["incompatibilities"][0]["fix"]
    remapped = compat.check(v2, target(roles=["immich"]), remap_owners=True)
    assert remapped["ok"] is True and "Fine: the restore hands ownership to the target's owner." in remapped["warnings"][0]


CLUSTER = b"""--
-- PostgreSQL database cluster dump
--

\\restrict abc

SET default_transaction_read_only = off;
CREATE ROLE immich;
ALTER ROLE immich WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE "Read Only";
GRANT pg_read_all_data TO "Read Only" WITH INHERIT TRUE GRANTED BY immich;
CREATE DATABASE "ImmichPhotos" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'en_US.utf8';

\\connect "ImmichPhotos"

CREATE EXTENSION IF NOT EXISTS vchord WITH SCHEMA public;
ALTER TABLE public.asset OWNER TO immich;
GRANT SELECT ON TABLE public.asset TO "Read Only", reporting;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE backup_admin IN SCHEMA public GRANT SELECT ON TABLES TO "Read Only";

--
-- PostgreSQL database cluster dump complete
--

"""


def test_cluster_dump_roles_it_creates_are_not_missing():
    facts = compat.scan_dump([CLUSTER])
    assert facts["dump_kind"] == "cluster" and facts["databases"] == ["ImmichPhotos"]
    assert facts["roles_created"] == ["Read Only", "immich"]
    assert facts["roles"] == ["Read Only", "backup_admin", "immich", "reporting"]
    res = compat.check(facts, target(roles=["postgres"]))
    assert codes(res) == ["owner_missing"]
    assert "roles backup_admin, reporting" in res["incompatibilities"][0]["what"]


def test_locale_provider_into_pg14():
    facts = compat.scan_dump([CLUSTER])
    assert facts["locale_provider"] is True
    res = compat.check(facts, target(server_version="14.19", server_major=14, psql_version="14.19", roles=[]), remap_owners=True)
    assert codes(res) == ["locale_provider"] and "Postgres 15 or newer" in res["incompatibilities"][0]["fix"]


def test_not_enough_disk(v2):
    dump = dict(v2, plain_bytes=40 * 10**9)
    res = compat.check(dump, target(free_bytes=30 * 10**9))
    assert codes(res) == ["disk"]
    p = res["incompatibilities"][0]
    assert "40.0 GB of SQL; restored it needs about 60.3 GB, and the data folder /srv/immich/postgres has 30.0 GB free" in p["what"]
    assert p["fix"].startswith("Free 30.3 GB on the disk of DB_DATA_LOCATION")
    # The current database is reset before the restore: its space comes back.
    assert compat.check(dump, target(free_bytes=30 * 10**9, cluster_bytes=31 * 10**9))["ok"] is True
    assert codes(compat.check(dump, target(free_bytes=30 * 10**9, cluster_bytes=31 * 10**9), reset_data=False)) == ["disk"]
    assert compat.check(dump, target(free_bytes=None))["ok"] is True  # unknown: not guessed


def test_other_extension_missing(v2):
    avail = dict(target()["available_extensions"])
    del avail["earthdistance"]
    res = compat.check(v2, target(available_extensions=avail))
    assert codes(res) == ["extension_missing"] and "extension earthdistance" in res["incompatibilities"][0]["what"]


PGVECTORS = b"""--
-- PostgreSQL database dump
--

-- Dumped from database version 14.10 (Debian 14.10-1.pgdg120+1)
-- Dumped by pg_dump version 14.10 (Debian 14.10-1.pgdg120+1)

CREATE SCHEMA vectors;
CREATE EXTENSION IF NOT EXISTS vectors WITH SCHEMA vectors;
CREATE TABLE public.smart_search (
    "assetId" uuid NOT NULL,
    embedding vectors.vector(512) NOT NULL
);
CREATE INDEX clip_index ON public.smart_search USING vectors (embedding vectors.vector_cos_ops) WITH (options='[indexing.hnsw]
m = 16
ef_construction = 300');
"""


def test_pgvecto_rs_dump_into_a_vectorchord_only_image():
    facts = compat.scan_dump([PGVECTORS])
    assert facts["vector_extensions"] == ["vectors"] and facts["vector_types"] == {"vectors": 1}
    assert facts["vector_access_methods"] == {"vectors": 1} and facts["preload"] == ["vectors"]
    avail = dict((e, "1") for e in IMMICH_EXTENSIONS + ["vector", "vchord"])
    res = compat.check(facts, target(server_major=14, server_version="14.19", psql_version="14.19", available_extensions=avail))
    assert codes(res) == ["vector_extension_missing"]
    assert "vectors (pgvecto.rs)" in res["incompatibilities"][0]["what"]
    assert "still has pgvecto.rs" in res["incompatibilities"][0]["fix"]


def test_all_problems_in_one_message(v2):
    dump = dict(v2, server_major=17, server_version="17.6", plain_bytes=10**12)
    res = compat.check(dump, pgvector_only(server_major=15, server_version="15.13", psql_version="15.13", roles=[]))
    assert codes(res) == ["postgres_older", "restrict_unsupported", "vector_extension_missing", "owner_missing", "disk"]
    lines = res["message"].split("\n")
    assert lines[0].startswith("Refusing to restore: 5 incompatibilities") and "not touched" in lines[0]
    assert len(lines) == 6 and all(" Fix: " in ln for ln in lines[1:])


@pytest.mark.parametrize("step", [1, 5, 4096])
def test_facts_do_not_depend_on_chunking_or_line_ends(v2, step):
    for data in (IMMICH_V2, IMMICH_V2.replace(b"\n", b"\r\n")):
        facts = compat.scan_dump(data[i:i + step] for i in range(0, len(data), step))
        assert dict(facts, plain_bytes=0) == dict(v2, plain_bytes=0)


def test_scan_file_reads_gzip(tmp_path, v2):
    path = tmp_path / "immich-db-backup-20261201T020000-v2.3.1-pg16.10.sql.gz"
    path.write_bytes(gzip.compress(IMMICH_V2))
    assert compat.scan_file(str(path)) == v2


def test_preload_names():
    assert compat.preload_names('vchord.so, "$libdir/vectors.so", pg_stat_statements') == {"vchord", "vectors", "pg_stat_statements"}
    assert compat.preload_names("") == set() and compat.preload_names(["vchord"]) == {"vchord"}


# -- gathering through docker exec -----------------------------------------------------------------

ANSWERS = {
    "SHOW server_version;": [["16.10 (Debian 16.10-1.pgdg120+1)"]],
    "SHOW server_version_num;": [["160010"]],
    "SHOW shared_preload_libraries;": [["vchord.so"]],
    compat.TARGET_SQL["available_extensions"]: [["vchord", "0.4.3"], ["vector", "0.8.0"], ["cube", "1.5"]],
    "SELECT rolname FROM pg_roles ORDER BY 1;": [["pg_monitor"], ["postgres"]],
    compat.TARGET_SQL["cluster_bytes"]: [["123456789"]],
}


def test_target_facts_through_docker_exec(monkeypatch, tmp_path):
    calls = []

    def fake_run(argv, **kw):
        calls.append(argv)
        if argv[-2:] == ["psql", "--version"]:
            return 0, "psql (PostgreSQL) 16.10 (Debian 16.10-1.pgdg120+1)\n", ""
        return 1, "", "unexpected"

    monkeypatch.setattr(dx, "run", fake_run)
    facts = compat.target_facts("immich_postgres", "postgres", query=lambda c, u, d, sql, pw: ANSWERS[sql],
                                data_path=str(tmp_path / "postgres"))
    assert facts["server_version"] == "16.10" and facts["server_major"] == 16 and facts["psql_version"] == "16.10"
    assert facts["available_extensions"] == {"vchord": "0.4.3", "vector": "0.8.0", "cube": "1.5"}
    assert facts["shared_preload_libraries"] == "vchord.so" and facts["roles"] == ["pg_monitor", "postgres"]
    assert facts["cluster_bytes"] == 123456789 and facts["free_bytes"] > 0  # statvfs of the parent that exists
    assert calls == [[dx.DOCKER, "exec", "immich_postgres", "psql", "--version"]]


def test_image_version_without_a_running_server(monkeypatch):
    answers = {
        ("postgres", "--version"): (127, "", "exec: \"postgres\": executable file not found in $PATH"),
        ("ls", "/usr/lib/postgresql"): (0, "15\n17\n", ""),
        ("/usr/lib/postgresql/17/bin/postgres", "--version"): (0, "postgres (PostgreSQL) 17.12 (Debian 17.12-0+deb13u1)\n", ""),
    }
    monkeypatch.setattr(dx, "run", lambda argv, **kw: answers[tuple(argv[3:])])
    assert compat.image_postgres_version("db") == "17.12"


def test_free_bytes_from_df_in_the_container(monkeypatch):
    out = "Filesystem     1024-blocks    Used Available Capacity Mounted on\n/dev/vda         263174212 2700000  78643200      27% /var/lib/postgresql/data\n"
    monkeypatch.setattr(dx, "run", lambda argv, **kw: (0, out, "") if argv[3:5] == ["df", "-P"] else (1, "", ""))
    assert compat.free_bytes("db") == 78643200 * 1024


# -- what could not be read is named, never guessed -------------------------------------------------------

def test_unknown_facts_are_named_not_guessed(v2):
    res = compat.check(v2, target(shared_preload_libraries=None, roles=None, free_bytes=None, psql_version=None))
    assert res["ok"] is True  # vchord offered, preload unknown: no preload_missing refusal made up
    text = " | ".join(res["unchecked"])
    for part in ("shared_preload_libraries", "roles", "free disk", "\\restrict"):
        assert part in text, text
    assert "not checked:" in res["message"]
    res = compat.check(v2, target(available_extensions=None))
    assert res["ok"] is True and "extensions the target offers" in res["unchecked"][0]


def test_gate_check_for_the_summary(v2):
    res = compat.check(v2, pgvector_only(source="image lab/pg17", unchecked=["the roles the dump names"]))
    chk = compat.gate_check(res, v2, pgvector_only(source="image lab/pg17"))
    assert chk["name"] == "compatibility gate" and chk["ok"] is False
    assert chk["detail"].startswith("The dump uses the vector extension vchord (VectorChord)")
    assert "PostgreSQL 16.10" in chk["detail"] and "image lab/pg17" in chk["detail"] and "not checked: the roles" in chk["detail"]
    ok = compat.gate_check(compat.check(v2, target()), v2, target(source="the running database container db"))
    assert ok["ok"] and ok["detail"].startswith("compatible: database dump of PostgreSQL 16.10")


def test_preload_from_command_lines_and_config_files():
    assert compat.preload_from_args(["postgres", "-c", "shared_preload_libraries=vchord.so",
                                     "-c", "config_file=/etc/postgresql/postgresql.conf"]) == ("vchord.so", "/etc/postgresql/postgresql.conf")
    assert compat.preload_from_args(["--shared_preload_libraries='vectors.so'"]) == ("vectors.so", None)
    assert compat.preload_from_args(None) == (None, None)
    conf = "#shared_preload_libraries = ''\nshared_preload_libraries = 'vchord.so, vectors.so'  # Immich\n"
    assert compat._conf_value(conf) == "vchord.so, vectors.so"
    assert compat._conf_value("#shared_preload_libraries = 'x'\n") is None


class FakeDocker:
    """dx.run for `docker run --rm --entrypoint ...` of an image and `docker image inspect`."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, argv, **kw):
        self.calls.append(argv)
        if argv[1] == "image":
            return self.answers.get("inspect", (0, '["docker-entrypoint.sh"] ["postgres"]', ""))
        assert argv[:6] == [dx.DOCKER, "run", "--rm", "--pull=never", "--network=none", "--entrypoint"], argv
        return self.answers.get(argv[6], (1, "", "unexpected %s" % argv))


IMMICH_IMAGE_FILES = "\n".join(["/usr/lib/postgresql/16/bin/postgres", "/usr/share/postgresql/16/extension/vchord.control",
                                "/usr/share/postgresql/16/extension/vector.control", "/usr/share/postgresql/16/extension/cube.control",
                                "/usr/lib/postgresql/15/bin/postgres"])


def test_image_facts_of_an_image_whose_database_is_not_running():
    fake = FakeDocker({
        "find": (0, IMMICH_IMAGE_FILES, ""),
        "/usr/lib/postgresql/16/bin/postgres": (0, "postgres (PostgreSQL) 16.10 (Debian 16.10-1.pgdg120+1)\n", ""),
        "/usr/lib/postgresql/16/bin/psql": (0, "psql (PostgreSQL) 16.10 (Debian 16.10-1.pgdg120+1)\n", ""),
        "inspect": (0, '["docker-entrypoint.sh"] ["postgres","-c","config_file=/etc/postgresql/postgresql.conf"]', ""),
        "grep": (0, "shared_preload_libraries = 'vchord.so'\n", ""),
    })
    facts = compat.image_facts("ghcr.io/immich-app/postgres:16-vectorchord0.4.3", run=fake)
    assert facts["server_major"] == 16 and facts["server_version"] == "16.10" and facts["psql_version"] == "16.10"
    assert sorted(facts["available_extensions"]) == ["cube", "vchord", "vector"]
    assert facts["shared_preload_libraries"] == "vchord.so" and facts["unchecked"] == []
    assert "/etc/postgresql/postgresql.conf" in [c for c in fake.calls if c[6:7] == ["grep"]][0]
    assert facts["source"].startswith("image ghcr.io/immich-app/postgres:16")
    # The compose file's own `command:` wins; nothing read from the image for it then.
    fake.calls = []
    facts = compat.image_facts("img", command=["postgres", "-c", "shared_preload_libraries=vectors.so"], run=fake)
    assert facts["shared_preload_libraries"] == "vectors.so" and not [c for c in fake.calls if c[6:7] == ["grep"]]


def test_image_facts_say_what_they_could_not_read():
    fake = FakeDocker({"find": (125, "", "Unable to find image 'gone:1' locally")})
    facts = compat.image_facts("gone:1", run=fake)
    assert facts["available_extensions"] is None and facts["server_major"] is None
    assert "could not be read" in facts["unchecked"][0] and "gone:1" in facts["unchecked"][0]
    fake = FakeDocker({"find": (0, IMMICH_IMAGE_FILES, ""), "grep": (1, "", "")})
    assert compat.image_facts("img", run=fake)["shared_preload_libraries"] is None  # vchord offered, preload unknown
    plain = FakeDocker({"find": (0, "/usr/lib/postgresql/17/bin/postgres\n/usr/share/postgresql/17/extension/cube.control", ""),
                        "grep": (1, "", "")})
    assert compat.image_facts("img", run=plain)["shared_preload_libraries"] == ""  # nothing needs one


def test_gather_target_running_or_from_the_image(monkeypatch):
    inst = {"db_container": "db", "db_image": "lab/pg:17", "db_user": "immich", "db_data_kind": "volume"}
    monkeypatch.setattr(dx, "running", lambda c: True)
    monkeypatch.setattr(dx, "inspect", lambda c: {"Config": {"Image": "lab/pg:17"}})
    monkeypatch.setattr(compat, "target_facts", lambda *a, **k: dict(target(), roles=["postgres", "other"]))
    facts = compat.gather_target(inst)
    assert facts["source"].startswith("the running database container db") and facts["roles"] == ["immich"]
    assert compat.gather_target(inst, reset_data=False)["roles"] == ["postgres", "other"]
    # The compose file names another image than the container runs: the restore starts that one, so it is read.
    monkeypatch.setattr(dx, "inspect", lambda c: {"Config": {"Image": "lab/pg:15"}})

    def image_facts(image, command=None, run=None):
        return {"source": "image " + image, "unchecked": [], "server_major": 17}
    monkeypatch.setattr(compat, "image_facts", image_facts)
    facts = compat.gather_target(inst, command=lambda: ["postgres"])
    assert facts["source"] == "image lab/pg:17" and "compose file names lab/pg:17" in facts["notes"][0]
    assert facts["free_bytes"] is None and facts["roles"] == ["immich"]
    monkeypatch.setattr(dx, "running", lambda c: False)
    facts = compat.gather_target(dict(inst, db_data_kind="bind", db_data_location="/nonexistent/postgres"), reset_data=False)
    assert facts["notes"] == [] and facts["roles"] is None and facts["free_bytes"] > 0
