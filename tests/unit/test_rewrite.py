"""The search_path rewrite is byte-for-byte GNU sed (LC_ALL=C), whatever the chunking."""
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.homelab.immich.plugins.module_utils import rewrite

SED_EXPR = ("s/SELECT pg_catalog.set_config('search_path', '', false);/"
            "SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);/g")
S = rewrite.SEARCH

pytestmark = pytest.mark.skipif(not shutil.which("sed"), reason="GNU sed needed as the oracle")


def sed(data):
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(["sed", SED_EXPR], input=data, capture_output=True, env=env, check=True).stdout


def transform(data, sizes, max_pending=1 << 20):
    rw = rewrite.SearchPathRewriter(max_pending=max_pending)
    out = []
    pos = 0
    i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)] if sizes else len(data)
        out.append(rw.feed(data[pos:pos + n]))
        pos += n
        i += 1
    out.append(rw.flush())
    return b"".join(out), rw.count


NEAR_MISSES = [
    S, S.replace(b"pg_catalog.set", b"pg_catalogXset"), S.replace(b"pg_catalog.set", b"pg_catalog\xffset"),
    S.replace(b"pg_catalog.set", b"pg_catalog\xc3\xa9set"), S.replace(b"pg_catalog.set", b"pg_catalog\nset"),
    S[:-1], S[1:], S.lower(), S.replace(b"''", b"' '"), S.replace(b"false", b"true"), S + S,
    rewrite.REPLACEMENT, b"SELECT pg_catalog.set_config('search_path', '', false)", S.replace(b".", b"\x00"),
]
FRAGMENTS = st.one_of(
    st.sampled_from(NEAR_MISSES),
    st.sampled_from([b"\n", b"\r\n", b"\r", b"SELECT ", b"'", b";"]),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(FRAGMENTS, max_size=40),
       sizes=st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=8),
       max_pending=st.sampled_from([8, 64, 1 << 20]))
def test_identical_to_sed_on_random_input(parts, sizes, max_pending):
    data = b"".join(parts)
    got, count = transform(data, sizes, max_pending)
    assert got == sed(data)
    # every substitution sed made, counted: each line holding the pattern (sed's /g on a line) adds its matches
    assert count == sum(len(rewrite.PATTERN.findall(line)) for line in data.split(b"\n"))


@given(data=st.binary(max_size=300), sizes=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=4))
@settings(max_examples=200, deadline=None)
def test_identical_to_sed_on_raw_bytes(data, sizes):
    assert transform(data, sizes)[0] == sed(data)


def test_crlf_and_no_final_newline():
    data = b"-- x\r\n" + S + b"\r\n" + S  # last line without newline
    got, count = transform(data, [5])
    assert got == sed(data)
    assert count == 2
    assert not got.endswith(b"\n")


def test_idempotent():
    once, n1 = transform(S + b"\n", [7])
    twice, n2 = transform(once, [7])
    assert (n1, n2) == (1, 0)
    assert once == twice


def test_dot_is_one_byte_in_c_locale():
    # The C locale's `.` is one byte: a two-byte UTF-8 char where the dot stands does not match.
    data = S.replace(b"pg_catalog.set", b"pg_catalog\xc3\xa9set") + b"\n"
    assert transform(data, [3])[0] == data == sed(data)
    data = S.replace(b"pg_catalog.set", b"pg_catalog#set") + b"\n"
    assert transform(data, [3])[0] == sed(data) != data


def test_matches_sed_on_a_dump_like_file(tmp_path):
    body = b"".join(b"COPY public.t (a) FROM stdin;\n%d\t\\N\n\\.\n%s\n" % (i, S) for i in range(2000))
    got, count = transform(body, [65536 + 3])
    assert got == sed(body) and count == 2000
