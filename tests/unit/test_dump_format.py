"""What a dump is, from its bytes."""
import gzip
import os
import shutil
import subprocess
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.homelab.immich.plugins.module_utils import dump_format as df

CLUSTER = (b"--\n-- PostgreSQL database cluster dump\n--\n\n\\restrict abc\n"
           b"-- Dumped from database version 15.14 (Debian 15.14-1.pgdg120+1)\n"
           b"-- Dumped by pg_dump version 15.14 (Debian 15.14-1.pgdg120+1)\n"
           b"SET x = 1;\nCOPY public.t (a, b) FROM stdin;\n1\tx\\\\!y\n2\t| \\! not a command in data\n\\.\n"
           b"\\unrestrict abc\n\n--\n-- PostgreSQL database cluster dump complete\n--\n\n")
DATABASE = CLUSTER.replace(b"database cluster dump", b"database dump")


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_detect_compression_by_magic():
    assert df.detect_compression(gzip.compress(b"x")) == "gzip"
    assert df.detect_compression(b"\x28\xb5\x2f\xfd....") == "zstd"
    assert df.detect_compression(b"--\n") == "none"


def test_header_kind_and_versions():
    h = df.parse_header(CLUSTER)
    assert h == {"dump_kind": "cluster", "server_version": "15.14", "pg_dump_version": "15.14"}
    assert df.parse_header(DATABASE)["dump_kind"] == "database"
    assert df.parse_header(CLUSTER.replace(b"\n", b"\r\n"))["dump_kind"] == "cluster"


@pytest.mark.parametrize("data,kind", [(CLUSTER, "cluster"), (DATABASE, "database"),
                                       (CLUSTER.replace(b"\n", b"\r\n"), "cluster"),
                                       (CLUSTER[: len(CLUSTER) // 2], None), (CLUSTER + b"SELECT 1;\n", None)])
def test_trailer(data, kind):
    assert df.find_trailer(data[-df.TAIL_BYTES:]) == kind


def test_major_of():
    assert df.major_of("17.6 (Debian)") == 17
    assert df.major_of("9.6.24") == 9
    assert df.major_of(None) is None


@pytest.mark.parametrize("bad", [
    b"\\! touch /tmp/pwned\n", b"SELECT 1; \\! id\n", b"\\o | sh\n", b"\\g |cat\n", b"\\w |x\n",
    b"\\copy t to program 'x'\n", b"COPY t FROM PROGRAM 'id';\n", b"copy t to\nprogram 'id';\n",
])
def test_scan_refuses_program_execution(bad):
    s = df.MetaCommandScanner()
    s.feed(CLUSTER + bad)
    assert s.finish(), bad


def test_scan_accepts_copy_data_and_escaped_backslash():
    s = df.MetaCommandScanner()
    data = CLUSTER + b"COPY public.p (program) FROM stdin;\n\\! in data\nfrom program 'x'\n\\.\nSELECT 'a\\\\!';\n"
    for i in range(0, len(data), 7):
        s.feed(data[i:i + 7])
    assert s.finish() == []


def test_scan_finds_line_numbers():
    s = df.MetaCommandScanner()
    s.feed(b"a\nb\n\\! x\n")
    assert s.finish()[0]["line"] == 3


@pytest.mark.parametrize("comp", ["none", "gzip", "zstd"])
def test_inspect_dump_streams_each_compression(tmp_path, comp):
    if comp == "zstd" and not shutil.which("zstd"):
        pytest.skip("zstd missing")
    p = write(tmp_path, "d", CLUSTER)
    if comp == "gzip":
        subprocess.run(["gzip", p], check=True)
        p += ".gz"
    elif comp == "zstd":
        subprocess.run(["zstd", "-q", "--rm", p], check=True)
        p += ".zst"
    info = df.inspect_dump(p)
    assert info["compression"] == comp
    assert info["trailer"] == info["dump_kind"] == "cluster"
    assert info["plain_bytes"] == len(CLUSTER)
    assert info["dangerous"] == []


def test_truncated_gzip_is_corrupt(tmp_path):
    blob = gzip.compress(CLUSTER * 200)
    p = write(tmp_path, "t.gz", blob[: len(blob) // 2])
    with pytest.raises(df.DumpError, match="corrupt or truncated"):
        df.inspect_dump(p)


def test_name_does_not_matter(tmp_path):
    p = write(tmp_path, "looks.sql", gzip.compress(CLUSTER))
    assert df.inspect_dump(p)["compression"] == "gzip"


def plain_of(path):
    reader = df.PlainReader(path)
    try:
        data = b"".join(reader.chunks())
    finally:
        reader.close()
    return data


def test_gzip_members_are_all_inflated(tmp_path):
    """pigz and `cat a.gz b.gz` write several members; all of them are the dump."""
    data = os.urandom(3 << 20).hex().encode()  # 6 MiB of text: several CHUNKs per member
    p = write(tmp_path, "m.gz", gzip.compress(data[:100]) + gzip.compress(data[100:]) + gzip.compress(b""))
    assert plain_of(p) == data


@pytest.mark.parametrize("damage", ["cut", "crc", "garbage"])
def test_damaged_gzip_is_refused_with_the_reason(tmp_path, damage):
    blob = bytearray(gzip.compress(CLUSTER * 500))
    if damage == "cut":
        blob = blob[:-20]
    elif damage == "crc":
        blob[-6] ^= 0xFF  # the CRC32 in the member's trailer
    else:
        blob += b"not gzip"
    p = write(tmp_path, "d.gz", bytes(blob))
    with pytest.raises(df.DumpError, match="corrupt or truncated.*gzip: "):
        df.inspect_dump(p)


def test_iter_chunks_gathers_full_chunks_from_small_writes():
    r, w = os.pipe()
    data = os.urandom(100_000)

    def writer():
        for i in range(0, len(data), 777):
            os.write(w, data[i:i + 777])
        os.close(w)

    t = threading.Thread(target=writer)
    t.start()
    sizes = []
    out = b""
    for buf in df.iter_chunks(r, 8192):
        sizes.append(len(buf))
        out += buf
    t.join()
    os.close(r)
    assert out == data
    assert sizes[:-1] == [8192] * (len(sizes) - 1) and 0 < sizes[-1] <= 8192


CRLF_COPY = (b"SET x = 1;\r\nCOPY public.t (a) FROM stdin;\r\n\\! in data\r\nfrom program 'x'\r\n\\.\r\n"
             b"SELECT 2;\r\n")


def test_scan_skips_crlf_copy_data_and_sees_what_follows():
    s = df.MetaCommandScanner()
    s.feed(CLUSTER.replace(b"\n", b"\r\n") + CRLF_COPY)
    assert s.finish() == []
    s = df.MetaCommandScanner()
    s.feed(CRLF_COPY + b"\\! id\r\n")
    assert [f["line"] for f in s.finish()] == [7]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
def test_scan_findings_do_not_depend_on_chunking(sizes):
    data = (CLUSTER + b"COPY public.p (a) FROM stdin;\n\\! data\nx\n\\.\n\\! one\nCOPY public.q (a) FROM stdin;\n"
            b"\\.\nCOPY t FROM PROGRAM 'id';\nCOPY public.r (a) FROM stdin;\n\\o | data\n\\.\n\\w |two\n")
    whole = df.MetaCommandScanner()
    whole.feed(data)
    expected = whole.finish()
    assert [f["text"] for f in expected] == ["\\! one", "COPY t FROM PROGRAM 'id';", "\\w |two"]
    s = df.MetaCommandScanner()
    pos = 0
    for size in sizes:
        s.feed(data[pos:pos + size])
        pos += size
    s.feed(data[pos:])
    assert s.finish() == expected
