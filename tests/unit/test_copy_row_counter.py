"""CopyRowCounter: per-table rows read from a dump's own COPY blocks, whatever the chunking."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.homelab.immich.plugins.module_utils.dump_format import CopyRowCounter, parse_connect


def cluster_dump(rows):
    """A pg_dumpall-shaped text: template1, then postgres with a decoy table, then immich."""
    out = [b"--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc\n", b"\\connect template1\n\n"]
    out.append(b"\\connect postgres\n\nCOPY public.asset (id) FROM stdin;\nnot-immich\n\\.\n\n")
    out.append(b"\\connect immich\n\nCREATE FUNCTION f() RETURNS void AS $$ SELECT 1; -- COPY public.x (a) FROM stdin;\n$$;\n")
    for table, n in rows.items():
        name = b'"user"' if table == "user" else table.encode()
        out.append(b"COPY public." + name + b' (id, "originalPath") FROM stdin;\n')
        out.extend(b"%d\t/data/upload/a\\nb\\\\.%d\n" % (i, i) for i in range(n))
        out.append(b"\\.\n\n\n")
    out.append(b"\\unrestrict abc\n--\n-- PostgreSQL database cluster dump complete\n--\n\n")
    return b"".join(out)


def count(data, sizes, database="immich"):
    counter = CopyRowCounter(database)
    pos = 0
    for size in sizes:
        counter.feed(data[pos:pos + size])
        pos += size
    counter.feed(data[pos:])
    return counter.rows()


ROWS = {"album": 0, "asset": 37, "asset_exif": 1, "user": 3, "geodata_places": 250}


def test_whole_dump_in_one_chunk():
    assert count(cluster_dump(ROWS), []) == dict(sorted(ROWS.items()))


def test_every_split_point_of_a_small_dump():
    data = cluster_dump({"asset": 2, "user": 1, "album": 0})
    for cut in range(len(data) + 1):
        assert count(data, [cut]) == {"album": 0, "asset": 2, "user": 1}, cut


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=64), max_size=400), st.randoms(use_true_random=False))
def test_any_chunking_gives_the_same_counts(sizes, rnd):
    rows = {t: rnd.randint(0, 40) for t in ("asset", "user", "album", "smart_search")}
    assert count(cluster_dump(rows), sizes) == dict(sorted(rows.items()))


def test_database_dump_has_no_connect():
    data = b"-- PostgreSQL database dump\nCOPY public.asset (id) FROM stdin;\n1\n2\n\\.\n-- PostgreSQL database dump complete\n"
    assert count(data, [random.Random(1).randint(1, 20) for _chunk in range(10)], database="immich") == {"asset": 2}


@pytest.mark.parametrize("line, name", [
    (b"\\connect immich", "immich"),
    (b"\\connect immich\r", "immich"),
    (b'\\connect "Immich"', "Immich"),
    (b'\\connect "user"', "user"),
    (b'\\connect "a""b"', 'a"b'),
    (b"\\connect -reuse-previous=on \"dbname='my photos'\"", "my photos"),
    (b"\\connect -reuse-previous=on \"dbname='immich-prod'\"", "immich-prod"),
    (b"\\connect -reuse-previous=on \"dbname='it\\'s \\\\ \"\"x\"\"'\"", 'it\'s \\ "x"'),
    (b"\\connectx immich", None),
    (b"\\connect -reuse-previous=on \"host=x\"", None),
])
def test_connect_names_as_pg_dumpall_writes_them(line, name):
    assert parse_connect(line) == name


@pytest.mark.parametrize("connect, database", [
    (b'\\connect "Immich"', "Immich"),
    (b"\\connect -reuse-previous=on \"dbname='immich-prod'\"", "immich-prod"),
])
def test_rows_of_a_database_whose_name_needs_quoting(connect, database):
    data = (b"\\connect postgres\nCOPY public.asset (id) FROM stdin;\nx\n\\.\n" + connect
            + b"\nCOPY public.asset (id) FROM stdin;\n1\n2\n3\n\\.\n\\connect other\nCOPY public.asset (id) FROM stdin;\ny\n\\.\n")
    assert count(data, [7, 13, 50], database=database) == {"asset": 3}
    assert count(data, [], database="postgres") == {"asset": 1}


def test_copy_blocks_of_other_databases_and_schemas_are_skipped_whole():
    data = (b"\\connect postgres\nCOPY public.asset (id) FROM stdin;\nCOPY public.fake (a) FROM stdin;\n\\.\n"
            b"\\connect immich\nCOPY public.asset (id) FROM stdin;\n1\n\\.\nCOPY other.x (a) FROM stdin;\n"
            b"COPY public.fake (a) FROM stdin;\n\\.\nCOPY public.\"user\" (id) FROM stdin;\n\\.\n")
    for sizes in ([], [5] * 40, [17, 3, 60]):
        counter = CopyRowCounter("immich")
        pos = 0
        for size in sizes:
            counter.feed(data[pos:pos + size])
            pos += size
        counter.feed(data[pos:])
        # a data row that reads like a COPY header (in another database or schema) is data, not a block
        assert counter.rows() == {"asset": 1, "user": 0}
