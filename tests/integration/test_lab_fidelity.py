"""Lab fidelity: the lab reproduces the failure the seed's `sed` line exists for.

On Postgres 15 a `pg_dumpall --clean --if-exists` of a seeded instance, restored into a fresh
cluster with plain psql, fails with `type "earth" does not exist`; through the seed's sed line it
restores with every row. On Postgres 17 the earthdistance extension was fixed: both restore.
"""
import re
import subprocess

import pytest

SEED_SED = ("s/SELECT pg_catalog.set_config('search_path', '', false);"
            "/SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);/g")


def dump(inst, path):
    with open(path, "wb") as out:
        subprocess.run(["docker", "exec", inst.db, "pg_dumpall", "--clean", "--if-exists",
                        "--username=" + inst.user], stdout=out, check=True)


def restore(target, path, rewrite):
    """The seed's restore line; returns psql's stderr (psql exits 0 on SQL errors)."""
    cmd = "sed \"%s\" < '%s'" % (SEED_SED, path) if rewrite else "cat '%s'" % path
    cmd += " | docker exec -i %s psql --username=%s" % (target.db, target.user)
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, check=True)
    return res.stderr


def real_errors(stderr):
    benign = ("current user cannot be dropped", 'role "postgres" already exists')
    return [line for line in stderr.splitlines() if "ERROR:" in line and not any(b in line for b in benign)]


@pytest.mark.parametrize("pg", [15, 17])
def test_seed_restore_needs_the_rewrite_only_before_pg17(make_instance, tmp_path, pg):
    source = make_instance(pg=pg, seed="small")
    expected = source.row_counts()
    assert expected["geodata_places"] > 0 and expected["asset"] > 0
    path = str(tmp_path / "dump.sql")
    dump(source, path)

    plain = make_instance(pg=pg, seed="none", start="db")
    errors = real_errors(restore(plain, path, rewrite=False))
    if pg < 17:
        assert any('type "earth" does not exist' in e for e in errors), errors
        assert plain.row_counts().get("geodata_places", 0) == 0
    else:
        # PG 17's earthdistance qualifies its own references: the dump restores as it is.
        assert errors == [], errors
        assert plain.row_counts() == expected

    fixed = make_instance(pg=pg, seed="none", start="db")
    assert real_errors(restore(fixed, path, rewrite=True)) == []
    assert fixed.row_counts() == expected


def test_sed_line_rewrites_every_database_of_the_dump(make_instance, tmp_path):
    source = make_instance(pg=15, seed="small")
    path = str(tmp_path / "dump.sql")
    dump(source, path)
    text = open(path).read()
    # One set_config per database in a cluster dump (template1, postgres, immich).
    assert len(re.findall(r"set_config\('search_path', '', false\)", text)) >= 3
