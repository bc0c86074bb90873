"""Pure parts of the dump and the restore: names, shrink rules, error classification, owner remap."""
import datetime

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import dump, restore
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError


def test_dump_filename_is_immich_shaped():
    when = datetime.datetime(2026, 11, 24, 22, 0, 1)
    assert dump.dump_filename(when, "v2.3.1", "15.14", "gzip") == "immich-db-backup-20261124T220001-v2.3.1-pg15.sql.gz"
    assert dump.dump_filename(when, None, "17.6", "zstd").endswith("-vunknown-pg17.sql.zst")


def test_shrink_rules():
    prev = {"bytes": 1000, "rows_by_table": {"asset": 100, "user": 2}}
    assert dump._shrink_problems(900, {"asset": 100, "user": 2}, prev, 0.5) == []
    assert dump._shrink_problems(100, {"asset": 100, "user": 2}, prev, 0.5)
    assert dump._shrink_problems(900, {"asset": 1, "user": 2}, prev, 0.5)
    assert dump._shrink_problems(900, {}, None, 0.5)
    assert "missing" in dump._shrink_problems(900, {"asset": 100, "x": 2}, prev, 0.5)[0]


def test_error_classification():
    log = restore.ErrorLog("postgres")
    for line in [b"psql:<stdin>:14: ERROR:  current user cannot be dropped\n",
                 b'psql:<stdin>:22: ERROR:  role "postgres" already exists\n',
                 b'psql:<stdin>:99: ERROR:  role "other" already exists\n',
                 b'psql:<stdin>:900: ERROR:  type "earth" does not exist\n', b"LINE 1: whatever\n"]:
        log(line)
    assert len(log.benign) == 2 and log.fatal_count == 2
    assert 'type "earth" does not exist' in log.fatal[1]


def test_owner_remap_streams():
    rm = restore.OwnerRemap("postgres", "immich_admin")
    data = b"ALTER TABLE public.asset OWNER TO postgres;\nCREATE ROLE postgres;\nALTER TABLE x OWNER TO postgres2;\n"
    out = rm.feed(data[:20]) + rm.feed(data[20:]) + rm.flush()
    assert out == (b"ALTER TABLE public.asset OWNER TO immich_admin;\nCREATE ROLE immich_admin;\n"
                   b"ALTER TABLE x OWNER TO postgres2;\n")
    assert rm.count == 2


def test_zstd_missing_names_the_install(monkeypatch):
    import shutil  # noqa: PLC0415

    import pytest  # noqa: PLC0415

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "zstd" else real(name))
    with pytest.raises(OpError, match="apt-get install zstd"):
        dump.compressor_argv("zstd")
    assert dump.compressor_argv("gzip")[-1] == "-1"
    assert dump.compressor_argv("none") == []


def _write_dump(path, complete=True):
    lines = ["--", "-- PostgreSQL database dump", "--", "", "-- Dumped from database version 15.14",
             "-- Dumped by pg_dump version 15.14", "", "SELECT pg_catalog.set_config('search_path', '', false);",
             "CREATE TABLE public.asset (id integer);"]
    if complete:
        lines += ["", "--", "-- PostgreSQL database dump complete", "--", ""]
    with open(path, "w", newline="") as fh:
        fh.write("\r\n".join(lines))  # the seed's docker exec -t line endings
    return str(path)


def test_check_mode_verifies_a_lone_dump_without_a_running_target(monkeypatch, tmp_path):
    from ansible_collections.homelab.immich.plugins.module_utils import docker_exec  # noqa: PLC0415

    def down(*args, **kwargs):
        raise docker_exec.DockerError("No such container: immich_postgres")

    monkeypatch.setattr(docker_exec, "server_version", down)
    good = _write_dump(tmp_path / "dump.sql")
    res = restore.restore("immich_postgres", "postgres", "immich", good, check_mode=True)
    assert res["changed"] is False and res["target_server_version"] is None
    assert res["dump_kind"] == "database" and res["crlf"]
    assert "version check" in res["warnings"][0]
    bad = _write_dump(tmp_path / "truncated.sql", complete=False)
    with pytest.raises(OpError, match="truncated"):
        restore.restore("immich_postgres", "postgres", "immich", bad, check_mode=True)
    with pytest.raises(docker_exec.DockerError):  # a real load never goes on without the target's version
        restore.restore("immich_postgres", "postgres", "immich", good)
