"""vector_portable: a dump made loadable without its vector extension, as a stream, byte-exact elsewhere."""
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.homelab.immich.plugins.module_utils import vector_portable as vp

# Real `pg_dump --clean --if-exists` output of PostgreSQL 17.12 (pgvector 0.8.0, Immich-shaped tables,
# a function body that mentions DDL), unchanged but for the space pg_dump writes after an empty
# "Owner:" (kept as "~" in this file).
PG17_PGVECTOR = r"""--
-- PostgreSQL database dump
--

\restrict KWofLs6OQZELrf5sG9eJ2WkWIUhD2LXn5qbTs6vEC7wU1w8KEkCbD5x874ONbNN

-- Dumped from database version 17.12 (Debian 17.12-0+deb13u1)
-- Dumped by pg_dump version 17.12 (Debian 17.12-0+deb13u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

ALTER TABLE IF EXISTS ONLY public.smart_search DROP CONSTRAINT IF EXISTS "smart_search_assetId_fkey";
ALTER TABLE IF EXISTS ONLY public.face_search DROP CONSTRAINT IF EXISTS "face_search_faceId_fkey";
ALTER TABLE IF EXISTS ONLY public.asset_face DROP CONSTRAINT IF EXISTS "asset_face_assetId_fkey";
DROP INDEX IF EXISTS public.face_index;
DROP INDEX IF EXISTS public.clip_index;
ALTER TABLE IF EXISTS ONLY public.smart_search DROP CONSTRAINT IF EXISTS smart_search_pkey;
ALTER TABLE IF EXISTS ONLY public.face_search DROP CONSTRAINT IF EXISTS face_search_pkey;
ALTER TABLE IF EXISTS ONLY public.asset DROP CONSTRAINT IF EXISTS asset_pkey;
ALTER TABLE IF EXISTS ONLY public.asset_face DROP CONSTRAINT IF EXISTS asset_face_pkey;
DROP TABLE IF EXISTS public.smart_search;
DROP TABLE IF EXISTS public.face_search;
DROP TABLE IF EXISTS public.asset_face;
DROP TABLE IF EXISTS public.asset;
DROP TABLE IF EXISTS public."Odd Table";
DROP FUNCTION IF EXISTS public.tricky();
DROP EXTENSION IF EXISTS vector;
DROP EXTENSION IF EXISTS "uuid-ossp";
--
-- Name: uuid-ossp; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;


--
-- Name: EXTENSION "uuid-ossp"; Type: COMMENT; Schema: -; Owner:~
--

COMMENT ON EXTENSION "uuid-ossp" IS 'generate universally unique identifiers (UUIDs)';


--
-- Name: vector; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;


--
-- Name: EXTENSION vector; Type: COMMENT; Schema: -; Owner:~
--

COMMENT ON EXTENSION vector IS 'vector data type and ivfflat and hnsw access methods';


--
-- Name: tricky(); Type: FUNCTION; Schema: public; Owner: postgres
--

CREATE FUNCTION public.tricky() RETURNS text
    LANGUAGE plpgsql
    AS $$
BEGIN
  -- a body that mentions DDL but is not DDL
  RETURN 'CREATE INDEX x ON smart_search USING hnsw (embedding)
CREATE EXTENSION IF NOT EXISTS vector;';
END
$$;


ALTER FUNCTION public.tricky() OWNER TO postgres;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: Odd Table; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public."Odd Table" (
    note text,
    emb public.vector(2)
);


ALTER TABLE public."Odd Table" OWNER TO postgres;

--
-- Name: asset; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.asset (
    id uuid DEFAULT public.uuid_generate_v4() NOT NULL,
    "originalPath" character varying NOT NULL
);


ALTER TABLE public.asset OWNER TO postgres;

--
-- Name: asset_face; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.asset_face (
    id uuid DEFAULT public.uuid_generate_v4() NOT NULL,
    "assetId" uuid
);


ALTER TABLE public.asset_face OWNER TO postgres;

--
-- Name: face_search; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.face_search (
    "faceId" uuid NOT NULL,
    embedding public.vector(3) NOT NULL
);


ALTER TABLE public.face_search OWNER TO postgres;

--
-- Name: smart_search; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.smart_search (
    "assetId" uuid NOT NULL,
    embedding public.vector(4) NOT NULL
);


ALTER TABLE public.smart_search OWNER TO postgres;

--
-- Data for Name: Odd Table; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public."Odd Table" (note, emb) FROM stdin;
tab\tand [brackets]	[1,2]
null emb	\N
\.


--
-- Data for Name: asset; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.asset (id, "originalPath") FROM stdin;
00000000-0000-4000-8000-000000000001	/data/upload/a.jpg
00000000-0000-4000-8000-000000000002	/data/upload/b\t.jpg
\.


--
-- Data for Name: asset_face; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.asset_face (id, "assetId") FROM stdin;
00000000-0000-4000-8000-0000000000f1	00000000-0000-4000-8000-000000000001
\.


--
-- Data for Name: face_search; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.face_search ("faceId", embedding) FROM stdin;
00000000-0000-4000-8000-0000000000f1	[0.5,0.25,-1]
\.


--
-- Data for Name: smart_search; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.smart_search ("assetId", embedding) FROM stdin;
00000000-0000-4000-8000-000000000001	[0.1,-0.2,3e-05,4]
00000000-0000-4000-8000-000000000002	[1,2,3,4]
\.


--
-- Name: asset_face asset_face_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.asset_face
    ADD CONSTRAINT asset_face_pkey PRIMARY KEY (id);


--
-- Name: asset asset_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.asset
    ADD CONSTRAINT asset_pkey PRIMARY KEY (id);


--
-- Name: face_search face_search_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.face_search
    ADD CONSTRAINT face_search_pkey PRIMARY KEY ("faceId");


--
-- Name: smart_search smart_search_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.smart_search
    ADD CONSTRAINT smart_search_pkey PRIMARY KEY ("assetId");


--
-- Name: clip_index; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX clip_index ON public.smart_search USING hnsw (embedding public.vector_cosine_ops) WITH (ef_construction='300', m='16');


--
-- Name: face_index; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX face_index ON public.face_search USING hnsw (embedding public.vector_cosine_ops) WITH (ef_construction='300', m='16');


--
-- Name: asset_face asset_face_assetId_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.asset_face
    ADD CONSTRAINT "asset_face_assetId_fkey" FOREIGN KEY ("assetId") REFERENCES public.asset(id);


--
-- Name: face_search face_search_faceId_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.face_search
    ADD CONSTRAINT "face_search_faceId_fkey" FOREIGN KEY ("faceId") REFERENCES public.asset_face(id) ON DELETE CASCADE;


--
-- Name: smart_search smart_search_assetId_fkey; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.smart_search
    ADD CONSTRAINT "smart_search_assetId_fkey" FOREIGN KEY ("assetId") REFERENCES public.asset(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--

\unrestrict KWofLs6OQZELrf5sG9eJ2WkWIUhD2LXn5qbTs6vEC7wU1w8KEkCbD5x874ONbNN

""".replace("Owner:~", "Owner: ").encode()

# What PostgreSQL 15 without pgvector (the lab's PG15 image) offers.
PG15_PLAIN = ["plpgsql", "uuid-ossp", "unaccent", "cube", "earthdistance", "pg_trgm"]
PGVECTOR_ONLY = PG15_PLAIN + ["vector"]


def embedding(rng, dims, sep=","):
    return "[" + sep.join("%.6g" % rng.uniform(-0.2, 0.2) for _n in range(dims)) + "]"


def immich_v2_dump(rows=3, dims=512, seed=1):
    """The shape of an Immich v2 database dump (pg_dump 16.10 of a VectorChord instance: vector, then
    vchord that depends on it, embeddings public.vector(512), vchordrq indexes whose reloptions span
    several lines as Immich's vectorIndexQuery writes them)."""
    rng = random.Random(seed)
    smart = "".join("%08x-0000-4000-8000-%012x\t%s\n" % (n, n, embedding(rng, dims)) for n in range(rows))
    faces = "".join("%08x-0000-4000-9000-%012x\t%s\n" % (n, n, embedding(rng, 512)) for n in range(rows))
    return (
        r"""--
-- PostgreSQL database dump
--

\restrict 3zcQm5fGJtLkR0b2pS9wXyVnE1aH8uTdK4iOqZ7rY6sNvBgFhWjLxCeMoPaU

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

DROP INDEX IF EXISTS public.face_index;
DROP INDEX IF EXISTS public.clip_index;
DROP TABLE IF EXISTS public.smart_search;
DROP TABLE IF EXISTS public.face_search;
DROP FUNCTION IF EXISTS public.asset_delete_audit();
DROP EXTENSION IF EXISTS vector;
DROP EXTENSION IF EXISTS vchord;
DROP EXTENSION IF EXISTS "uuid-ossp";
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
-- Name: EXTENSION vchord; Type: COMMENT; Schema: -; Owner:~
--

COMMENT ON EXTENSION vchord IS 'vchord: Vector database plugin for Postgres, written in Rust, specifically designed for LLM';


--
-- Name: asset_delete_audit(); Type: FUNCTION; Schema: public; Owner: postgres
--

CREATE FUNCTION public.asset_delete_audit() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
  BEGIN
    INSERT INTO asset_audit ("assetId", "ownerId")
    SELECT "id", "ownerId"
    FROM OLD;
    RETURN NULL;
  END
$$;


ALTER FUNCTION public.asset_delete_audit() OWNER TO postgres;

SET default_tablespace = '';

SET default_table_access_method = heap;

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
-- Name: smart_search; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.smart_search (
    "assetId" uuid NOT NULL,
    embedding public.vector(""" + str(dims) + r""") NOT NULL
);
ALTER TABLE ONLY public.smart_search ALTER COLUMN embedding SET STORAGE EXTERNAL;


ALTER TABLE public.smart_search OWNER TO postgres;

--
-- Data for Name: face_search; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.face_search ("faceId", embedding) FROM stdin;
""" + faces + r"""\.


--
-- Data for Name: smart_search; Type: TABLE DATA; Schema: public; Owner: postgres
--

COPY public.smart_search ("assetId", embedding) FROM stdin;
""" + smart + r"""\.


--
-- Name: face_search face_search_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.face_search
    ADD CONSTRAINT face_search_pkey PRIMARY KEY ("faceId");


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

\unrestrict 3zcQm5fGJtLkR0b2pS9wXyVnE1aH8uTdK4iOqZ7rY6sNvBgFhWjLxCeMoPaU

""").replace("Owner:~", "Owner: ").encode()  # noqa: S608 - the text of a dump, not a query


def pgvectors_dump(rows=2, dims=4, seed=2):
    """A dump of an Immich <= 1.132 instance on pgvecto.rs: schema vectors, vectors.vector(N), the
    `vectors` access method, values printed with ', '."""
    rng = random.Random(seed)
    smart = "".join("%08x-0000-4000-8000-%012x\t%s\n" % (n, n, embedding(rng, dims, ", ")) for n in range(rows))
    return (
        r"""--
-- PostgreSQL database dump
--

-- Dumped from database version 14.10 (Debian 14.10-1.pgdg120+1)
-- Dumped by pg_dump version 14.10 (Debian 14.10-1.pgdg120+1)

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: vectors; Type: SCHEMA; Schema: -; Owner: postgres
--

CREATE SCHEMA vectors;


ALTER SCHEMA vectors OWNER TO postgres;

--
-- Name: vectors; Type: EXTENSION; Schema: -; Owner: -
--

CREATE EXTENSION IF NOT EXISTS vectors WITH SCHEMA vectors;


--
-- Name: EXTENSION vectors; Type: COMMENT; Schema: -; Owner:~
--

COMMENT ON EXTENSION vectors IS 'vectors: Vector database plugin for Postgres, written in Rust, specifically designed for LLM';


CREATE TABLE public.smart_search (
    "assetId" uuid NOT NULL,
    embedding vectors.vector(""" + str(dims) + r""") NOT NULL
);


COPY public.smart_search ("assetId", embedding) FROM stdin;
""" + smart + r"""\.


CREATE INDEX clip_index ON public.smart_search USING vectors (embedding vectors.vector_cos_ops) WITH (options='[indexing.hnsw]
m = 16
ef_construction = 300');


--
-- PostgreSQL database dump complete
--

""").replace("Owner:~", "Owner: ").encode()  # noqa: S608 - the text of a dump, not a query


def run(data, sizes=None, **kw):
    """Transform ``data`` fed in pieces of ``sizes`` (cycled), return (output, transformer)."""
    t = vp.VectorPortable(**kw)
    out = []
    pos = 0
    i = 0
    sizes = sizes or [len(data) or 1]
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(t.feed(data[pos:pos + n]))
        pos += n
        i += 1
    out.append(t.flush())
    return b"".join(out), t


def lines_with(data, needle):
    return [ln for ln in data.split(b"\n") if needle in ln]


# -- pgvector dump into a target without pgvector ------------------------------------------------------

def test_pgvector_dump_into_a_target_without_pgvector():
    out, t = run(PG17_PGVECTOR, target_extensions=PG15_PLAIN)
    c = t.counts()
    assert c["extensions"] == ["vector"] and c["statements"] == 1
    assert c["columns"] == ["Odd Table.emb", "face_search.embedding", "smart_search.embedding"]
    assert c["dimensions"] == {"Odd Table.emb": 2, "face_search.embedding": 3, "smart_search.embedding": 4}
    assert c["indexes"] == ["clip_index", "face_index"]
    assert c["rows"] == {"Odd Table": 2, "face_search": 1, "smart_search": 2} and c["rows_total"] == 5
    outside_body = out.split(b"$$")
    assert b"CREATE EXTENSION IF NOT EXISTS vector" not in outside_body[0] + outside_body[2]
    assert b"COMMENT ON EXTENSION vector" not in out
    assert b'COMMENT ON EXTENSION "uuid-ossp"' in out and b'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"' in out
    assert b"    embedding real[] NOT NULL\n" in out and b"    emb real[]\n" in out
    assert b"public.vector(" not in out
    assert b"00000000-0000-4000-8000-000000000001\t{0.1,-0.2,3e-05,4}\n" in out
    assert b"00000000-0000-4000-8000-0000000000f1\t{0.5,0.25,-1}\n" in out
    # Only the vector column changes: brackets in a text column and a NULL embedding stay as they are.
    assert b"tab\\tand [brackets]\t{1,2}\n" in out and b"null emb\t\\N\n" in out
    assert b"CREATE INDEX clip_index" not in out and b"CREATE INDEX face_index" not in out
    assert b"DROP INDEX IF EXISTS public.clip_index;" in out  # --clean lines are harmless: kept
    # The function body mentions CREATE INDEX ... USING hnsw and CREATE EXTENSION: it is not DDL.
    body = PG17_PGVECTOR[PG17_PGVECTOR.index(b"AS $$"):PG17_PGVECTOR.index(b"$$;") + 3]
    assert body in out and b"CREATE EXTENSION IF NOT EXISTS vector;';" in body
    # Everything else is byte for byte the dump.
    removed = [ln for ln in PG17_PGVECTOR.split(b"\n") if ln not in out.split(b"\n")]
    assert len(removed) == 11  # 2 extension statements, 3 column types, 4 COPY rows, 2 indexes
    assert len(out.split(b"\n")) == len(PG17_PGVECTOR.split(b"\n")) - 4
    assert c["warnings"][0].startswith("Odd Table.emb stays real[]")
    assert 'ALTER TABLE "Odd Table" ALTER COLUMN emb SET DATA TYPE vector(2)' in c["warnings"][0]
    assert "face_search.embedding had 3 dimensions: Immich assumes 512" in c["warnings"][1]
    assert "left out CREATE EXTENSION vector" in c["summary"] and "dropped clip_index, face_index" in c["summary"]


def test_crlf_dump_rewrites_the_same_way():
    lf = run(PG17_PGVECTOR, target_extensions=PG15_PLAIN)[0]
    crlf_in = PG17_PGVECTOR.replace(b"\n", b"\r\n")
    crlf, t = run(crlf_in, target_extensions=PG15_PLAIN)
    assert crlf == lf.replace(b"\n", b"\r\n")
    assert t.counts()["rows_total"] == 5 and t.counts()["indexes"] == ["clip_index", "face_index"]


@pytest.mark.parametrize("make", [lambda: PG17_PGVECTOR, immich_v2_dump, pgvectors_dump])
@pytest.mark.parametrize("target", [PG15_PLAIN, PGVECTOR_ONLY, None])
def test_byte_by_byte_equals_one_piece(make, target):
    data = make()
    whole, t1 = run(data, target_extensions=target)
    single, t2 = run(data, sizes=[1], target_extensions=target)
    assert single == whole
    assert t1.counts() == t2.counts()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=6), crlf=st.booleans())
def test_any_chunking_gives_the_same_bytes(sizes, crlf):
    data = immich_v2_dump(rows=4, dims=16)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    whole = run(data, neutral=True)[0]
    assert run(data, sizes=sizes, neutral=True)[0] == whole


def test_nothing_to_change_is_byte_identical():
    for data, target in ((PG17_PGVECTOR, PGVECTOR_ONLY), (immich_v2_dump(), PGVECTOR_ONLY + ["vchord"]),
                         (pgvectors_dump(), ["vectors"])):
        for sizes in (None, [1], [7, 4096]):
            out, t = run(data, sizes=sizes, target_extensions=target)
            assert out == data
            assert t.changed is False and t.counts()["summary"].startswith("vector-portable: nothing to change")


def test_a_dump_without_vector_parts_passes_through_untouched():
    plain = re.sub(rb"(?s)--\n-- Name: (?:EXTENSION )?vector.*?\n\n\n", b"", PG17_PGVECTOR)
    plain = re.sub(rb"public\.vector\(\d+\)", b"real[]", plain)
    plain = re.sub(rb"(?m)^(?:CREATE INDEX .* USING hnsw .*|DROP EXTENSION IF EXISTS vector;)\n", b"", plain)
    assert b"public.vector" not in plain and b"CREATE EXTENSION IF NOT EXISTS vector WITH" not in plain
    assert b"COPY public.smart_search" in plain
    for neutral in (True, False):
        out, t = run(plain, sizes=[1], target_extensions=PG15_PLAIN, neutral=neutral)
        assert out == plain and not t.changed


def test_no_final_newline_is_kept():
    data = PG17_PGVECTOR.rstrip(b"\n")
    out = run(data, sizes=[3], target_extensions=PG15_PLAIN)[0]
    assert not out.endswith(b"\n") and out.endswith(b"\\unrestrict KWofLs6OQZELrf5sG9eJ2WkWIUhD2LXn5qbTs6vEC7wU1w8KEkCbD5x874ONbNN")
    cut = b"COPY public.smart_search (\"assetId\", embedding) FROM stdin;\n00000000-0000-4000-8000-000000000001\t[1,2]\n\\."
    out = run(b"CREATE TABLE public.smart_search (\n    embedding public.vector(2)\n);\n" + cut, sizes=[5])[0]
    assert out.endswith(b"000000000001\t{1,2}\n\\.")


# -- Immich v2 (VectorChord) dumps ----------------------------------------------------------------------

def test_vchord_dump_into_a_pgvector_only_target_keeps_the_vector_type():
    data = immich_v2_dump(rows=3)
    out, t = run(data, target_extensions=PGVECTOR_ONLY)
    c = t.counts()
    assert c["extensions"] == ["vchord"] and c["statements"] == 1
    assert c["indexes"] == ["clip_index", "face_index"]
    assert c["columns"] == [] and c["rows_total"] == 0 and c["warnings"] == []
    assert b"CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n" in out
    assert b"vchordrq" not in out and b"CREATE EXTENSION IF NOT EXISTS vchord" not in out
    assert b"residual_quantization" not in out and b"build_threads" not in out  # all 8 lines of each index
    # What follows a dropped multi-line index is intact.
    assert out.endswith(b"--\n-- PostgreSQL database dump complete\n--\n\n"
                        b"\\unrestrict 3zcQm5fGJtLkR0b2pS9wXyVnE1aH8uTdK4iOqZ7rY6sNvBgFhWjLxCeMoPaU\n\n")
    assert out.count(b"public.vector(512)") == 2
    copy = data[data.index(b"COPY public.smart_search"):]
    assert copy[:copy.index(b"\\.\n")] in out  # COPY rows untouched


def test_vchord_dump_made_neutral():
    data = immich_v2_dump(rows=5)
    out, t = run(data, sizes=[8192], neutral=True)
    c = t.counts()
    assert c["extensions"] == ["vector", "vchord"] and c["statements"] == 2
    assert c["columns"] == ["face_search.embedding", "smart_search.embedding"]
    assert c["dimensions"] == {"face_search.embedding": 512, "smart_search.embedding": 512}
    assert c["rows"] == {"face_search": 5, "smart_search": 5}
    assert c["warnings"] == []  # 512 is what Immich assumes when it re-creates the type
    rows = [ln for ln in out.split(b"\n") if re.match(rb"^[0-9a-f]{8}-0000-4000-[89]000-", ln)]
    assert len(rows) == 10
    for ln in rows:
        value = ln.split(b"\t")[1]
        assert value.startswith(b"{") and value.endswith(b"}") and value.count(b",") == 511
    assert b"public.vector" not in out and b"CREATE EXTENSION IF NOT EXISTS vector" not in out


def test_vchord_without_pgvector_is_missing_too():
    # A target offering vchord but not vector cannot create vchord (it needs pgvector's type).
    t = vp.VectorPortable(PG15_PLAIN + ["vchord"])
    assert t.missing("vchord") and t.missing("vector")


def test_large_dimensions_of_immich_tables_are_warned_about():
    out, t = run(immich_v2_dump(rows=2, dims=768), neutral=True)
    warnings = t.counts()["warnings"]
    assert len(warnings) == 1  # face_search keeps 512 (the face model's size)
    assert warnings[0].startswith("smart_search.embedding had 768 dimensions: Immich assumes 512")
    assert "ALTER TABLE smart_search ALTER COLUMN embedding SET DATA TYPE vector(768)" in warnings[0]


# -- pgvecto.rs dumps ---------------------------------------------------------------------------------------

def test_pgvectors_dump_into_a_pgvector_target():
    data = pgvectors_dump(rows=3, dims=4)
    out, t = run(data, sizes=[13], target_extensions=PGVECTOR_ONLY)
    c = t.counts()
    assert c["extensions"] == ["vectors"] and c["statements"] == 1
    assert c["columns"] == ["smart_search.embedding"] and c["rows"] == {"smart_search": 3}
    assert c["indexes"] == ["clip_index"]
    assert b"    embedding real[] NOT NULL\n" in out
    assert b"CREATE SCHEMA vectors;\n" in out  # an empty schema does no harm
    assert b"ef_construction = 300" not in out and b"USING vectors" not in out
    values = [ln.split(b"\t")[1] for ln in out.split(b"\n") if b"-4000-8000-" in ln]
    assert len(values) == 3 and all(v.startswith(b"{") and b", " in v and v.endswith(b"}") for v in values)


def test_statements_still_needing_the_extension_are_reported():
    data = PG17_PGVECTOR.replace(
        b"SET default_tablespace = '';",
        b"CREATE VIEW public.v AS\n SELECT '[1,2]'::public.vector(2) AS x;\n\nSET default_tablespace = '';")
    _out, t = run(data, target_extensions=PG15_PLAIN)
    assert any("still needs a vector extension the target lacks" in w and "public.vector(2)" in w for w in t.counts()["warnings"])


def test_rows_of_another_shape_are_left_alone():
    data = (b"CREATE TABLE public.smart_search (\n    \"assetId\" uuid NOT NULL,\n    embedding public.vector(2) NOT NULL\n);\n"
            b"COPY public.smart_search (\"assetId\", embedding) FROM stdin;\n"
            b"a\t[1,2]\nb\t[3,4]\textra\n\\.\n")
    out, t = run(data, neutral=True)
    assert b"a\t{1,2}\n" in out and b"b\t[3,4]\textra\n" in out
    assert t.counts()["rows"] == {"smart_search": 1}


def test_transform_chunks_generator_returns_the_counts():
    result = {}

    def consume():
        result["vp"] = yield from vp.transform_chunks(iter([PG17_PGVECTOR[:500], PG17_PGVECTOR[500:]]), PG15_PLAIN)

    pieces = list(consume())
    assert result["vp"].counts()["rows_total"] == 5
    assert b"".join(pieces) == run(PG17_PGVECTOR, target_extensions=PG15_PLAIN)[0]


# -- the lexer -----------------------------------------------------------------------------------------------

def starts(sql):
    """Statement-start flags of each line, as the walker sees them."""
    lexer = vp.SqlLexer()
    flags = []
    for line in sql.splitlines(True):
        flags.append(lexer.at_statement_start)
        lexer.feed_line(line)
    return flags


def test_lexer_follows_quotes_and_comments():
    sql = (b"CREATE FUNCTION f() RETURNS text AS $body$\n"
           b"CREATE INDEX x ON t USING hnsw (e); $notit$\n"
           b"$body$;\n"
           b"SELECT 'it''s;\n"
           b"CREATE EXTENSION vchord;';\n"
           b"SELECT E'\\';\n"
           b"CREATE TABLE t (';\n"
           b"/* a /* nested */ comment;\n"
           b"CREATE INDEX */ SELECT 1;\n"
           b"SELECT \"odd;\n"
           b"name\" FROM t;\n"
           b"-- a comment; with a semicolon\n"
           b"CREATE TABLE ok ();\n")
    assert starts(sql) == [True, False, False, True, False, True, False, True, False, True, False, True, True]


def test_statement_inside_a_function_body_is_not_rewritten():
    data = (b"CREATE FUNCTION public.f() RETURNS void LANGUAGE sql AS $_$\n"
            b"CREATE INDEX clip_index ON public.smart_search USING hnsw (embedding public.vector_cosine_ops);\n"
            b"$_$;\n"
            b"CREATE INDEX clip_index ON public.smart_search USING hnsw (embedding public.vector_cosine_ops);\n")
    out, t = run(data, neutral=True)
    assert out == data.rsplit(b"CREATE INDEX", 1)[0] and t.counts()["indexes"] == ["clip_index"]


@pytest.mark.parametrize("ident,want", [(b'"Odd ""x"""', 'Odd "x"'), (b"Smart_Search", "smart_search"), (b'"uuid-ossp"', "uuid-ossp")])
def test_unquote(ident, want):
    assert vp.unquote(ident) == want


def test_copy_columns_and_qualified_names():
    assert vp.split_columns(b'"assetId", embedding, "a,b"') == ["assetId", "embedding", "a,b"]
    assert vp.split_qualified(b'public."face_search"') == ("public", "face_search")
    assert vp.split_qualified(b"smart_search") == (None, "smart_search")


def test_cluster_dump_tables_of_another_database_are_their_own():
    db1 = (b"\\connect immich\n"
           b"CREATE TABLE public.smart_search (\n    \"assetId\" uuid NOT NULL,\n    embedding public.vector(2) NOT NULL\n);\n"
           b"COPY public.smart_search (\"assetId\", embedding) FROM stdin;\na\t[1,2]\n\\.\n")
    db2 = (b"\\connect archive\n"
           b"CREATE TABLE public.smart_search (\n    \"assetId\" uuid NOT NULL,\n    embedding text NOT NULL\n);\n"
           b"COPY public.smart_search (\"assetId\", embedding) FROM stdin;\nb\t[3,4]\n\\.\n")
    out, t = run(db1 + db2, neutral=True)
    assert b"a\t{1,2}\n" in out and b"b\t[3,4]\n" in out
    assert t.counts()["rows"] == {"smart_search": 1}


@pytest.mark.parametrize("data,pos,want", [
    (b"ab\ncd\n\\.\nX", 0, 9), (b"ab\n\\.\r\nX", 0, 7), (b"\\.\nX", 0, 3), (b"ab\n", 0, -1), (b"a\n\\.x\n\\.\n", 0, 9),
    (b"a\n\\.", 0, 4), (b"xx\\.\n", 2, 5), (b"a\n\\\\.\n", 0, -1),
])
def test_end_of_copy(data, pos, want):
    assert vp.DumpWalker._end_of_copy(data, pos, len(data)) == want


@pytest.mark.parametrize("step", [1, 2, 3, 4, 5, 8])
def test_short_copy_rows_of_other_tables_pass_at_any_chunking(step):
    data = (b"COPY public.tag (id, v) FROM stdin;\n1\tx\n22\t\\\\.\n3\ty\n\\.\n"
            b"CREATE TABLE public.smart_search (\n    embedding public.vector(2)\n);\n"
            b"COPY public.smart_search (embedding) FROM stdin;\n[1,2]\n\\.\n")
    out, t = run(data, sizes=[step], neutral=True)
    assert out == data.replace(b"[1,2]", b"{1,2}").replace(b"public.vector(2)", b"real[]")
    assert t.counts()["rows"] == {"smart_search": 1}


def test_lexer_hooks_find_statement_starts_and_meta_commands_as_psql_would():
    starts, metas = [], []
    lexer = vp.SqlLexer()
    lexer.on_statement = lambda line, pos: starts.append(line[pos:pos + 6])
    lexer.on_meta = lambda line, pos: metas.append(line[pos:].strip())
    for line in (b"SELECT 1; commit;\n", b"  /* x */ END;\n", b"CREATE FUNCTION f() AS $$\n", b"BEGIN; END\n", b"$$;\n",
                 b"SELECT 'a\\b', E'\\'' , \"q\"\"x\" \\gexec\n", b"-- \\! not a command\n", b"SELECT 2\n", b"; ROLLBACK;\n"):
        lexer.feed_line(line)
    assert starts == [b"SELECT", b"commit", b"END;\n", b"CREATE", b"SELECT", b"SELECT", b"ROLLBA"]
    assert metas == [b"\\gexec"]
