"""Helpers shared by the module integration tests (module-scoped lab instances, schema comparison)."""
import os
import re
import subprocess
import uuid

import pytest


def instance(lab_module, prefix, pg, seed="small", start="all"):
    """A lab instance named m<prefix>-<random> (the caller tears it down)."""
    inst = lab_module.Instance("m%s-%s" % (prefix, uuid.uuid4().hex[:6]), pg=pg)
    try:
        if start == "all":
            inst.up(seed=seed)
        else:
            inst.start_db_only()
    except BaseException:
        inst.down(purge=True)  # a failed set-up must not leave containers behind
        raise
    return inst


def teardown(*insts):
    if os.environ.get("LAB_KEEP") == "1":
        return
    for inst in insts:
        inst.down(purge=True)


def reset_db(inst):
    """A fresh, empty Immich database (as after `down -v` + create + start): drop and recreate it."""
    inst.psql("DROP DATABASE IF EXISTS %s WITH (FORCE);" % inst.database, database="postgres")
    inst.psql("CREATE DATABASE %s OWNER %s;" % (inst.database, inst.user), database="postgres")


def schema(inst):
    """`pg_dump --schema-only` without its header, \\restrict lines and comments."""
    out = subprocess.run(["docker", "exec", inst.db, "pg_dump", "--schema-only", "-U", inst.user, "-d", inst.database],
                         capture_output=True, check=True).stdout.decode()
    keep = [ln for ln in out.splitlines()
            if ln and not ln.startswith("--") and not re.match(r"^\\(un)?restrict ", ln)]
    return "\n".join(keep)


def public_tables(inst):
    return inst.psql("SELECT tablename FROM pg_tables WHERE schemaname='public' ORDER BY 1").split()


@pytest.fixture(scope="session")
def docker_lab(lab):
    return lab
