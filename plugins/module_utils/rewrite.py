# -*- coding: utf-8 -*-
# Copyright (c) homelab.immich contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seed's search_path rewrite as a streaming bytes transform.

The seed runs::

    sed "s/SELECT pg_catalog.set_config('search_path', '', false);/SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);/g"

This module produces byte-for-byte the output of that command run with ``LC_ALL=C`` (the C locale:
the two unescaped ``.`` of the pattern each match exactly one byte, any byte but a newline, and
invalid UTF-8 passes through untouched). sed works line by line, so a match never spans a newline;
we therefore only ever cut the stream after a newline and a match can never straddle two chunks.
A missing final newline is preserved, CR bytes are ordinary bytes (CRLF dumps rewrite like sed).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

SEARCH = b"SELECT pg_catalog.set_config('search_path', '', false);"
REPLACEMENT = b"SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);"
# sed's BRE: `.` is "any byte but newline" in the C locale, `(`, `)`, `'` and `;` are literals.
PATTERN = re.compile(re.escape(SEARCH).replace(re.escape(b"."), b"."))
# Everything after the last `.` of the pattern is literal: a block without it cannot match, and
# `in` (C fast search) rules that out at memory speed, so clean blocks pass through uncopied.
LITERAL_TAIL = SEARCH[SEARCH.rindex(b".") + 1:]


class SearchPathRewriter:
    """Feed chunks with ``feed()``, get rewritten chunks back; ``flush()`` at the end.

    Only complete lines are transformed; the tail after the last newline waits for the next chunk.
    ``count`` is the number of substitutions made (one per rewritten line in real dumps).
    """

    def __init__(self, max_pending=1 << 20):
        self.count = 0
        self._pending = b""
        self._max_pending = max_pending

    def _sub(self, data):
        if LITERAL_TAIL not in data:
            return data
        out, n = PATTERN.subn(REPLACEMENT, data)
        self.count += n
        return out

    def _drain_long_line(self):
        """Emit most of a very long line: keep only what could still start a match."""
        keep_from = len(self._pending) - (len(SEARCH) - 1)
        out = []
        pos = 0
        for m in PATTERN.finditer(self._pending):
            if m.start() >= keep_from:
                break
            out.append(self._pending[pos:m.start()])
            out.append(REPLACEMENT)
            self.count += 1
            pos = m.end()
        keep_from = max(keep_from, pos)
        out.append(self._pending[pos:keep_from])
        self._pending = self._pending[keep_from:]
        return b"".join(out)

    def feed(self, chunk):
        if not chunk:
            return b""
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._pending += chunk
            if len(self._pending) > self._max_pending:
                return self._drain_long_line()
            return b""
        data = self._pending + chunk[:cut + 1] if self._pending else chunk[:cut + 1]
        self._pending = chunk[cut + 1:]
        return self._sub(data)

    def flush(self):
        data, self._pending = self._pending, b""
        return self._sub(data) if data else b""


def count_matches_in(read_chunk):
    """How many substitutions a rewrite would make, reading chunks from ``read_chunk()`` until b''."""
    rw = SearchPathRewriter()
    while True:
        chunk = read_chunk()
        if not chunk:
            break
        rw.feed(chunk)
    rw.flush()
    return rw.count
