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

import errno
import os
import re
import subprocess

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump, dump_format as df
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError
from ansible_collections.homelab.immich.plugins.module_utils._fsio import sha256_file, write_all

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


def rewrite_file(src, dest=None, compression=None, check_mode=False):
    """Rewrite src into dest in ONE streaming pass (temp in dest's folder, then rename); idempotent."""
    in_comp = df.sniff_file(src)
    out_comp = compression or in_comp
    dest = dest or src
    rw = SearchPathRewriter()
    if check_mode:
        info = df.inspect_dump(src, on_chunk=rw.feed, compression=in_comp, scan=False)
        rw.flush()
        return {"changed": rw.count > 0 or not _same_output(src, dest, in_comp, out_comp), "lines_rewritten": rw.count,
                "dest": dest, "compression": out_comp, "dump_kind": info["dump_kind"],
                "msg": "Would rewrite %d line(s) into %s." % (rw.count, dest)}
    folder = os.path.dirname(os.path.abspath(dest))
    tmp = os.path.join(folder, ".%s.%d.tmp" % (os.path.basename(dest), os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        cargv = dump.compressor_argv(out_comp)
        comp = dx.Stage(cargv[0], cargv, stdin=subprocess.PIPE, stdout=fd) if cargv else None
        sink = write_all(comp.proc.stdin.fileno() if comp else fd)
        reader = df.PlainReader(src, in_comp)
        ok = False
        try:
            for buf in reader.chunks():
                sink(rw.feed(buf))
            sink(rw.flush())
            ok = True
        finally:
            reader.close(check=ok)
        if comp:
            comp.proc.stdin.close()
            if comp.wait() != 0:
                raise OpError("%s failed while writing %s: %s" % (comp.name, dest, comp.stderr.strip()))
        if rw.count == 0 and _same_output(src, dest, in_comp, out_comp):
            os.close(fd)
            fd = None
            os.unlink(tmp)
            return {"changed": False, "lines_rewritten": 0, "dest": dest, "compression": out_comp,
                    "msg": "Nothing to rewrite: %s already has the search_path fix." % src}
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.rename(tmp, dest)
    except BaseException as exc:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OpError("No space left in %s for the rewritten dump; nothing was changed." % folder) from exc
        raise
    return {"changed": True, "lines_rewritten": rw.count, "dest": dest, "compression": out_comp,
            "msg": "Rewrote %d line(s) into %s." % (rw.count, dest)}


def _same_output(src, dest, in_comp, out_comp):
    """With nothing to rewrite, is dest already what we would write (src itself, or an identical copy)?"""
    if not os.path.exists(dest):
        return False
    if os.path.samefile(src, dest):
        return in_comp == out_comp
    return in_comp == out_comp and os.path.getsize(src) == os.path.getsize(dest) and sha256_file(src) == sha256_file(dest)
