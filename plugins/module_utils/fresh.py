# -*- coding: utf-8 -*-
# Copyright (c) homelab.immich contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is a database fresh (no Immich server has ever run against it)? What the seed's restore requires."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx


def fresh_check(container, user, db_name, *, server_container=None, password=None, allowed_databases=()):
    reasons = []
    checks = {}
    dbs = dx.databases(container, user, password)
    extra = sorted(set(dbs) - {"postgres", db_name} - set(allowed_databases or ()))
    checks["databases"] = dbs
    if extra:
        reasons.append("unexpected database(s): %s" % ", ".join(extra))
    tables = []
    if db_name not in dbs:
        reasons.append("database %s does not exist (wrong db_name, or not the Immich Postgres container?)" % db_name)
    else:
        tables = [r[0] for r in dx.query(container, user, db_name,
                                         "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1;", password)]
    checks["public_tables"] = len(tables)
    if tables:
        reasons.append("database %s already has %d table(s) in schema public (%s)"
                       % (db_name, len(tables), ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")))
    for mig in ("kysely_migrations", "migrations"):
        if mig in tables:
            n = int(dx.query(container, user, db_name, 'SELECT count(*) FROM public."%s";' % mig, password)[0][0])  # noqa: S608
            checks[mig + "_rows"] = n
            if n:
                reasons.append("%s holds %d migration row(s): an Immich server has already run against it" % (mig, n))
    if server_container:
        info = dx.inspect(server_container)
        if info is None:
            checks["server_started_at"] = None
        else:
            started = info.get("State", {}).get("StartedAt", "")
            checks["server_started_at"] = started
            if not started.startswith("0001-01-01"):
                reasons.append("server container %s has started since it was created (StartedAt %s)" % (server_container, started))
    return {"fresh": not reasons, "reasons": reasons, "checks": checks}


def not_fresh_message(container, reasons):
    return ("The target is not a fresh Immich install: %s. Restoring into it would fail with `relation already exists` "
            "or foreign-key errors, or mix two databases. Fix: `docker compose down -v`, remove the DB_DATA_LOCATION "
            "folder, `docker compose create`, `docker start %s`, then restore; or, when the server must start before "
            "the restore, set DB_SKIP_MIGRATIONS=true for it (and remove it after the restore)."
            % ("; ".join(reasons), container))
