# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make Immich regenerate the generated files (thumbnails, previews, transcodes, face crops) that a
restore did not bring back.

Immich does not notice that a file its database names is gone: a thumbnail whose `asset_file` row
exists answers HTTP 500, and the "missing" thumbnail job skips it (the row says it exists; facts
section 7). So the rows of absent files are removed (and, for releases that look at
`asset_job_status`, their timestamps cleared; a person's face crop path emptied): then Immich's own
"missing" jobs regenerate exactly those, which `trigger_jobs` starts through the API when a key is given.
"""
# ruff: noqa: S608 - table names are immich.TABLES constants and ids travel as COPY data, never as SQL
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible_collections.homelab.immich.plugins.module_utils import guards, immich
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx

MAX_LISTED = 10
# which job regenerates which asset_file type
JOB_OF_TYPE = {"thumbnail": "thumbnailGeneration", "preview": "thumbnailGeneration", "fullsize": "thumbnailGeneration",
               "encoded_video": "videoConversion", "person": "thumbnailGeneration"}


class RegenerateError(Exception):
    """The database could not be read or repaired; the message says what to do."""


def absent_generated(instance, naming, exists=os.path.isfile, rows=None):
    """Generated files the database names but UPLOAD_LOCATION lacks: {"asset_file": [(id, type)],
    "person": [id], "counts": {type: n}, "examples": [...]}; ids only, streamed."""
    t = immich.TABLES[naming]
    if rows is None:
        sql = ("SELECT 'asset_file', id::text, type, path FROM \"{asset_file}\" WHERE type IN ('thumbnail', 'preview', "
               "'fullsize', 'encoded_video') UNION ALL SELECT 'person', id::text, 'person', \"thumbnailPath\" "
               "FROM \"{person}\" WHERE \"thumbnailPath\" <> ''").format(**t)
        rows = guards.stream_copy(instance, sql)
    media = instance.get("media_location") or "/data"
    out = {"asset_file": [], "person": [], "counts": {}, "checked": 0, "examples": []}
    for table, ident, kind, path in rows:
        out["checked"] += 1
        rel = immich.to_relative(path, media)
        if rel is None or exists(os.path.join(instance["upload_location"], rel)):
            continue
        out["counts"][kind] = out["counts"].get(kind, 0) + 1
        if table == "person":
            out["person"].append(ident)
        else:
            out["asset_file"].append(ident)
        if len(out["examples"]) < MAX_LISTED:
            out["examples"].append(rel)
    return out


def repair_script(naming, asset_file_ids, person_ids, job_status_columns=()):
    """The SQL (fed on psql's stdin, one transaction) that lets Immich's missing jobs see them again."""
    t = immich.TABLES[naming]
    lines = ["\\set ON_ERROR_STOP on", "BEGIN;", "CREATE TEMP TABLE homelab_absent_file (id uuid) ON COMMIT DROP;",
             "CREATE TEMP TABLE homelab_absent_person (id uuid) ON COMMIT DROP;",
             "COPY homelab_absent_file FROM STDIN;"]
    lines += list(asset_file_ids) + ["\\."]
    lines += ["COPY homelab_absent_person FROM STDIN;"] + list(person_ids) + ["\\."]
    if job_status_columns:
        sets = ", ".join('"%s" = NULL' % c for c in job_status_columns)
        lines.append('UPDATE asset_job_status s SET %s FROM "%s" f JOIN homelab_absent_file a ON a.id = f.id '
                     'WHERE s."assetId" = f."assetId" AND f.type IN (\'thumbnail\', \'preview\', \'fullsize\');'
                     % (sets, t["asset_file"]))
    lines.append('DELETE FROM "%s" f USING homelab_absent_file a WHERE f.id = a.id;' % t["asset_file"])
    lines.append('UPDATE "%s" p SET "thumbnailPath" = \'\' FROM homelab_absent_person a WHERE p.id = a.id;' % t["person"])
    lines.append("COMMIT;")
    return ("\n".join(lines) + "\n").encode("utf-8")


def job_status_columns(instance):
    """Columns of asset_job_status that older releases read to decide what is missing."""
    rows = dx.query(instance["db_container"], instance["db_user"], instance["db_name"],
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND "
                    "table_name = 'asset_job_status' AND column_name IN ('previewAt', 'thumbnailAt') ORDER BY 1;")
    return [r[0] for r in rows]


def repair(instance, found, naming):
    """Apply repair_script; returns what was changed."""
    if not found["asset_file"] and not found["person"]:
        return {"asset_file_rows_removed": 0, "people_cleared": 0}
    script = repair_script(naming, found["asset_file"], found["person"], job_status_columns(instance))
    argv = dx.psql_argv(instance["db_container"], instance["db_user"], instance["db_name"], ["-v", "ON_ERROR_STOP=1"])
    rc, _out, err = dx.run(argv, input_bytes=script)
    if rc != 0:
        raise RegenerateError("Could not let Immich regenerate the missing files (psql: %s). Nothing was changed (one "
                              "transaction). Run Immich's thumbnail job with 'All' from the admin page instead."
                              % err.strip()[-400:])
    return {"asset_file_rows_removed": len(found["asset_file"]), "people_cleared": len(found["person"])}


def jobs_for(counts):
    """The Immich jobs that regenerate these types, in a stable order."""
    return sorted(set(JOB_OF_TYPE[k] for k in counts if k in JOB_OF_TYPE))


def job_request(base_url, api_key, job, force=False):
    """(method, url, body, headers) of Immich's job trigger (PUT /api/jobs/{name})."""
    body = json.dumps({"command": "start", "force": bool(force)}).encode("utf-8")
    return ("PUT", base_url.rstrip("/") + "/api/jobs/" + job, body,
            {"Content-Type": "application/json", "Accept": "application/json", "x-api-key": api_key})
