# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fingerprint of the code a database holds, so that nothing planted in a dump survives a restore.

A tampered dump can plant code that does nothing during the restore and acts later, with the
privileges of whoever touches it: a trigger on ``asset`` that Immich's superuser connection fires
at the next upload, a SECURITY DEFINER function, a column default or CHECK that calls
``pg_read_file``, a rule, a policy. A text scan of the dump cannot find all of that (SQL is built at
run time). Comparing the restored database with what the backed-up database held can.

The fingerprint is one row per object: (kind, name, sha256 of its definition, detail), for

    schema            owner
    extension         schema (the version is compared apart: the target's image decides it)
    function / procedure / aggregate    pg_get_functiondef (aggregates: their support functions),
                      owner, SECURITY DEFINER, LEAKPROOF (SET options are in the definition)
    trigger           pg_get_triggerdef + enabled state
    event_trigger     event, function, tags, enabled state, owner
    rule              pg_get_ruledef (views' own _RETURN rules are the `view` rows)
    view / materialized_view   pg_get_viewdef, options, owner
    policy            command, permissive, roles, USING and WITH CHECK expressions
    default / generated   the column's default or generation expression (pg_get_expr)
    check             CHECK constraints of tables and domains (pg_get_constraintdef)
    language          trusted flag and handler

of every schema but pg_catalog, information_schema and the toast/temp ones. Objects that belong to
an extension (pg_depend 'e') are left out: the extension's row stands for them, and the restore
creates extensions from the target's image, not from the dump. Operators and casts are left out:
they call functions, which are in. Owners are normalised: the database's owner, pg_database_owner
and the restore's temporary role all read ``=owner`` (the restore hands everything to the
instance's owner; another role stays named, so an owner change shows).

When: the backup takes it from the live database right after the dump (take it before and after:
equal fingerprints prove no migration ran in between) and stores it in the set, where set.mac
authenticates it (``<dump>.fingerprint.json`` beside the dump). The restore compares the loaded
database with it right after the load, BEFORE the server starts: Immich's boot and migrations
(new functions, triggers, re-created vector indexes) come later and are never compared; what its
earlier boots created is in the recorded fingerprint, because it was taken from that database.

Everything runs through ``docker exec <db> psql`` (argv only, SQL on stdin, one JSON object per
output line so names with tabs or newlines cannot break the parser).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import subprocess
import time

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils._fsio import read_json, write_json_atomic

FORMAT = 1
FILE_SUFFIX = ".fingerprint.json"
KINDS = ("schema", "extension", "function", "procedure", "aggregate", "trigger", "event_trigger", "rule", "view",
         "materialized_view", "policy", "default", "generated", "check", "language")
# Kinds whose objects execute code when a table is used, a function called or an event fires.
CODE_KINDS = ("function", "procedure", "aggregate", "trigger", "event_trigger", "rule", "view", "materialized_view",
              "policy", "default", "generated", "check", "language")
_ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAX_LISTED = 20


class FingerprintError(Exception):
    """The fingerprint could not be taken or read; the message says why."""


def _literal(text):
    return "'" + text.replace("'", "''") + "'"


def _check_role(restore_role):
    if restore_role is not None and not _ROLE_RE.match(restore_role):
        raise FingerprintError("role %r is not a plain role name" % (restore_role,))


def cte_sql(restore_role=None, ignore_schema=None):
    """The common table expressions (``own, userns, member, objs(kind, name, def, detail)``), without
    ``WITH``: the restore's guard computes the same rows inside its transaction. ``ignore_schema``: a
    schema left out (the restore's gate)."""
    _check_role(restore_role)
    _check_role(ignore_schema)
    return _CTE % {"role": _literal(restore_role or ""), "ignore": _literal(ignore_schema or "")}


def sql(restore_role=None, ignore_schema=None):
    """The fingerprint query (PostgreSQL 14-18). ``restore_role``: the temporary restore role, whose
    objects count as the owner's. Output: one line of JSON with the server facts, then one per object."""
    return _HEAD + "WITH\n" + cte_sql(restore_role, ignore_schema) + "\n" + _FINAL


_HEAD = """SET search_path = pg_catalog, pg_temp;
SET client_min_messages = warning;
SELECT pg_catalog.json_build_object('server_version', pg_catalog.current_setting('server_version'),
       'server_version_num', pg_catalog.current_setting('server_version_num')::int,
       'database', pg_catalog.current_database())::text;
"""

_CTE = """own AS (
  SELECT r.oid, CASE WHEN r.oid = (SELECT d.datdba FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
                       OR r.rolname IN ('pg_database_owner', %(role)s) THEN '=owner' ELSE r.rolname::text END AS name
  FROM pg_catalog.pg_roles r
),
userns AS (
  SELECT n.oid FROM pg_catalog.pg_namespace n
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', %(ignore)s) AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
),
member AS (
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d WHERE d.deptype = 'e'
),
objs(kind, name, def, detail) AS (
  SELECT 'schema', pg_catalog.quote_ident(n.nspname), 'owner=' || o.name, pg_catalog.json_build_object('owner', o.name)
  FROM pg_catalog.pg_namespace n JOIN userns u ON u.oid = n.oid JOIN own o ON o.oid = n.nspowner
  WHERE (pg_catalog.regclass 'pg_catalog.pg_namespace', n.oid) NOT IN (SELECT classid, objid FROM member)
 UNION ALL
  SELECT 'extension', pg_catalog.quote_ident(x.extname), 'schema=' || pg_catalog.quote_ident(xn.nspname),
         pg_catalog.json_build_object('version', x.extversion, 'schema', xn.nspname)
  FROM pg_catalog.pg_extension x JOIN pg_catalog.pg_namespace xn ON xn.oid = x.extnamespace
 UNION ALL
  SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
         p.oid::pg_catalog.regprocedure::text,
         pg_catalog.concat_ws(E'\\n',
           CASE WHEN p.prokind = 'a' THEN
             (SELECT pg_catalog.concat_ws(E'\\n', pg_catalog.pg_get_function_identity_arguments(p.oid),
                     a.aggtransfn::pg_catalog.regprocedure::text, a.aggfinalfn::pg_catalog.regproc::text,
                     a.aggcombinefn::pg_catalog.regproc::text, a.aggtranstype::pg_catalog.regtype::text, a.agginitval)
              FROM pg_catalog.pg_aggregate a WHERE a.aggfnoid = p.oid)
           ELSE pg_catalog.pg_get_functiondef(p.oid) END,
           'owner=' || o.name, 'security_definer=' || p.prosecdef::text, 'leakproof=' || p.proleakproof::text),
         pg_catalog.json_build_object('owner', o.name, 'security_definer', p.prosecdef, 'language', l.lanname)
  FROM pg_catalog.pg_proc p JOIN userns u ON u.oid = p.pronamespace JOIN own o ON o.oid = p.proowner
       JOIN pg_catalog.pg_language l ON l.oid = p.prolang
  WHERE (pg_catalog.regclass 'pg_catalog.pg_proc', p.oid) NOT IN (SELECT classid, objid FROM member)
 UNION ALL
  SELECT 'trigger', c.oid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(t.tgname),
         pg_catalog.pg_get_triggerdef(t.oid) || E'\\nenabled=' || t.tgenabled::text,
         pg_catalog.json_build_object('enabled', t.tgenabled::text,
           'function', t.tgfoid::pg_catalog.regprocedure::text)
  FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
  WHERE NOT t.tgisinternal AND (pg_catalog.regclass 'pg_catalog.pg_class', c.oid) NOT IN (SELECT classid, objid FROM member)
 UNION ALL
  SELECT 'event_trigger', pg_catalog.quote_ident(e.evtname),
         pg_catalog.concat_ws(E'\\n', e.evtevent::text, e.evtfoid::pg_catalog.regprocedure::text, e.evtenabled::text,
                              pg_catalog.array_to_string(e.evttags, ','), 'owner=' || o.name),
         pg_catalog.json_build_object('event', e.evtevent, 'function', e.evtfoid::pg_catalog.regprocedure::text,
                                      'owner', o.name)
  FROM pg_catalog.pg_event_trigger e JOIN own o ON o.oid = e.evtowner
  WHERE (pg_catalog.regclass 'pg_catalog.pg_event_trigger', e.oid) NOT IN (SELECT classid, objid FROM member)
 UNION ALL
  SELECT 'rule', c.oid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(r.rulename),
         pg_catalog.pg_get_ruledef(r.oid) || E'\\nenabled=' || r.ev_enabled::text, pg_catalog.json_build_object()
  FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class JOIN userns u ON u.oid = c.relnamespace
  WHERE r.rulename <> '_RETURN' AND (pg_catalog.regclass 'pg_catalog.pg_class', c.oid) NOT IN (SELECT classid, objid FROM member)
 UNION ALL
  SELECT CASE c.relkind WHEN 'm' THEN 'materialized_view' ELSE 'view' END, c.oid::pg_catalog.regclass::text,
         pg_catalog.concat_ws(E'\\n', pg_catalog.pg_get_viewdef(c.oid),
                              'options=' || pg_catalog.array_to_string(c.reloptions, ','), 'owner=' || o.name),
         pg_catalog.json_build_object('owner', o.name)
  FROM pg_catalog.pg_class c JOIN userns u ON u.oid = c.relnamespace JOIN own o ON o.oid = c.relowner
  WHERE c.relkind IN ('v', 'm') AND (pg_catalog.regclass 'pg_catalog.pg_class', c.oid) NOT IN (SELECT classid, objid FROM member)
 UNION ALL
  SELECT 'policy', c.oid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(p.polname),
         pg_catalog.concat_ws(E'\\n', p.polcmd::text, p.polpermissive::text,
           (SELECT pg_catalog.string_agg(CASE WHEN x.r = 0 THEN 'public' ELSE (SELECT o.name FROM own o WHERE o.oid = x.r) END,
                                         ',' ORDER BY 1) FROM pg_catalog.unnest(p.polroles) AS x(r)),
           pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)),
         pg_catalog.json_build_object('command', p.polcmd::text)
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
 UNION ALL
  SELECT CASE WHEN a.attgenerated <> '' THEN 'generated' ELSE 'default' END,
         c.oid::pg_catalog.regclass::text || '.' || pg_catalog.quote_ident(a.attname),
         pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.json_build_object()
  FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_class c ON c.oid = d.adrelid JOIN userns u ON u.oid = c.relnamespace
       JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
  WHERE (pg_catalog.regclass 'pg_catalog.pg_class', c.oid) NOT IN (SELECT classid, objid FROM member)
 UNION ALL
  SELECT 'check', COALESCE(k.conrelid::pg_catalog.regclass::text, k.contypid::pg_catalog.regtype::text) || '.'
                  || pg_catalog.quote_ident(k.conname),
         pg_catalog.pg_get_constraintdef(k.oid), pg_catalog.json_build_object()
  FROM pg_catalog.pg_constraint k JOIN userns u ON u.oid = k.connamespace
  WHERE k.contype = 'c'
    AND (pg_catalog.regclass 'pg_catalog.pg_class', k.conrelid) NOT IN (SELECT classid, objid FROM member)
    AND (pg_catalog.regclass 'pg_catalog.pg_type', k.contypid) NOT IN (SELECT classid, objid FROM member)
 UNION ALL
  SELECT 'language', pg_catalog.quote_ident(l.lanname),
         pg_catalog.concat_ws(E'\\n', 'trusted=' || l.lanpltrusted::text, 'handler=' || l.lanplcallfoid::pg_catalog.regprocedure::text),
         pg_catalog.json_build_object('trusted', l.lanpltrusted)
  FROM pg_catalog.pg_language l
)"""

_FINAL = """SELECT pg_catalog.json_build_object('kind', kind, 'name', name, 'detail', detail,
       'hash', pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(COALESCE(def, ''), 'UTF8')), 'hex'))::text
FROM objs ORDER BY kind, name;
"""


def parse(lines):
    """The fingerprint document from the query's output lines (str or bytes, one JSON object each)."""
    meta = None
    objects = []
    for number, raw in enumerate(lines, 1):
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise FingerprintError("unexpected fingerprint output at line %d: %r" % (number, line[:200])) from None
        if meta is None:
            if "server_version" not in row:
                raise FingerprintError("the fingerprint output does not start with the server facts: %r" % line[:200])
            meta = row
            continue
        if row.get("kind") not in KINDS or not isinstance(row.get("name"), str) or not isinstance(row.get("hash"), str):
            raise FingerprintError("unexpected fingerprint row at line %d: %r" % (number, line[:200]))
        objects.append({"kind": row["kind"], "name": row["name"], "hash": row["hash"], "detail": row.get("detail") or {}})
    if meta is None:
        raise FingerprintError("the fingerprint query printed nothing")
    objects.sort(key=lambda o: (o["kind"], o["name"]))
    counts = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    return {"format": FORMAT, "server_version": meta.get("server_version"),
            "server_version_num": meta.get("server_version_num"), "database": meta.get("database"),
            "objects": objects, "counts": counts}


def take(container, user, database, *, password=None, restore_role=None, ignore_schema=None):
    """The fingerprint of ``database``, read through ``docker exec <container> psql`` (streamed, line by line)."""
    argv = dx.psql_argv(container, user, database, ["-A", "-t", "-v", "ON_ERROR_STOP=1"], password=password)
    stage = dx.Stage("psql", argv, stdin=subprocess.PIPE, password=password)
    try:
        stage.proc.stdin.write(sql(restore_role, ignore_schema).encode("utf-8"))
        stage.proc.stdin.close()
        doc = parse(iter(stage.proc.stdout.readline, b""))
    except (FingerprintError, OSError):
        stage.kill()
        raise FingerprintError("Cannot take the fingerprint of database %s in %s: %s"
                               % (database, container, stage.stderr.strip()[-500:] or "psql printed nothing")) from None
    finally:
        if stage.proc.stdout:
            stage.proc.stdout.close()
    rc = stage.wait()
    if rc != 0:
        raise FingerprintError("Cannot take the fingerprint of database %s in %s (psql exited %s): %s"
                               % (database, container, rc, stage.stderr.strip()[-500:]))
    doc["taken_at"] = round(time.time(), 3)
    return doc


def write(path, doc):
    write_json_atomic(path, doc)


def read(path):
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("objects"), list):
        raise FingerprintError("%s is not a fingerprint this version reads (format %d)." % (path, FORMAT))
    return doc


def same(a, b):
    """Equal fingerprints (objects and hashes; extension versions included): for the before/after-dump check."""
    def key(doc):
        return [(o["kind"], o["name"], o["hash"], (o.get("detail") or {}).get("version")) for o in doc["objects"]]
    return key(a) == key(b)


def _label(obj):
    detail = obj.get("detail") or {}
    extra = []
    if detail.get("security_definer"):
        extra.append("SECURITY DEFINER")
    if obj["kind"] == "trigger" and detail.get("function"):
        extra.append("runs %s" % detail["function"])
    if detail.get("owner") and detail["owner"] != "=owner":
        extra.append("owner %s" % detail["owner"])
    if detail.get("language") and obj["kind"] in ("function", "procedure") and detail["language"] not in ("sql", "plpgsql"):
        extra.append("language %s" % detail["language"])
    return "%s %s%s" % (obj["kind"].replace("_", " "), obj["name"], " (%s)" % ", ".join(extra) if extra else "")


def _changes(old, new):
    diffs = []
    od, nd = old.get("detail") or {}, new.get("detail") or {}
    for key in sorted(set(od) | set(nd)):
        if key != "version" and od.get(key) != nd.get(key):
            diffs.append("%s %s -> %s" % (key, od.get(key), nd.get(key)))
    return diffs


def compare(recorded, current):
    """What the current database holds against the recorded fingerprint:

        unknown   objects the backup did not have (planted)       -> fail
        changed   same name, other definition (or owner/flags)     -> fail
        missing   recorded objects that are not there              -> reported (a vector index mode, ...)
        versions  extensions at another version (the target's image decides)  -> reported
        ok        no unknown and no changed object
        problems  one line each, naming the object; message: one sentence
    """
    rec = dict(((o["kind"], o["name"]), o) for o in recorded.get("objects") or [])
    cur = dict(((o["kind"], o["name"]), o) for o in current.get("objects") or [])
    unknown = [_label(cur[k]) for k in sorted(set(cur) - set(rec))]
    missing = [_label(rec[k]) for k in sorted(set(rec) - set(cur))]
    changed = []
    versions = []
    for k in sorted(set(rec) & set(cur)):
        old, new = rec[k], cur[k]
        if old["hash"] != new["hash"]:
            diffs = _changes(old, new)
            changed.append(_label(new) + (": " + ", ".join(diffs) if diffs else ": definition differs"))
        if k[0] == "extension":
            ov, nv = (old.get("detail") or {}).get("version"), (new.get("detail") or {}).get("version")
            if ov != nv:
                versions.append("extension %s %s -> %s" % (k[1], ov, nv))
    problems = ["unknown %s" % u for u in unknown] + ["changed %s" % c for c in changed]
    rec_major = (recorded.get("server_version_num") or 0) // 10000
    cur_major = (current.get("server_version_num") or 0) // 10000
    result = {"ok": not unknown and not changed, "unknown": unknown, "changed": changed, "missing": missing,
              "versions": versions, "problems": problems,
              "recorded_server_version": recorded.get("server_version"), "server_version": current.get("server_version")}
    if result["ok"]:
        result["message"] = "The database holds the code the backup recorded (%d objects%s)." % (
            len(cur), ", %d recorded ones absent" % len(missing) if missing else "")
    else:
        listed = problems[:MAX_LISTED]
        hint = ""
        if changed and rec_major and cur_major and rec_major != cur_major:
            hint = (" The backup was taken on PostgreSQL %s and this server runs %s: a changed definition may also be the "
                    "newer server printing the same code differently; compare them before trusting it."
                    % (recorded.get("server_version"), current.get("server_version")))
        result["message"] = (
            "The restored database holds %d object(s) the backed-up database did not have, or had with another "
            "definition: %s%s. Code like this runs later with the privileges of whoever uses the tables (Immich "
            "connects as a superuser), so it must not stay.%s"
            % (len(problems), "; ".join(listed), ", ..." if len(problems) > MAX_LISTED else "", hint))
    return result
