"""argv building: no TTY, no password in argv."""
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx


def test_exec_argv_never_a_tty_nor_a_password():
    argv = dx.exec_argv("db", ["pg_dumpall"], password="s3cret")
    assert "-t" not in argv and "s3cret" not in " ".join(argv)
    assert argv[:5] == ["docker", "exec", "-e", "PGPASSWORD", "db"]
    assert dx._env("s3cret")["PGPASSWORD"] == "s3cret"


def test_psql_argv_interactive():
    argv = dx.psql_argv("db", "u", "immich", ["-v", "ON_ERROR_STOP=1"])
    assert argv[:3] == ["docker", "exec", "-i"] and argv[-2:] == ["-v", "ON_ERROR_STOP=1"]


def test_stage_drains_stderr_and_reports_rc():
    s = dx.Stage("sh", ["sh", "-c", "echo oops >&2; exit 3"])
    assert s.wait() == 3
    assert "oops" in s.stderr


def test_stage_on_line_sees_every_line():
    seen = []
    s = dx.Stage("sh", ["sh", "-c", "for i in 1 2 3; do echo ERROR $i >&2; done"], on_line=seen.append)
    s.wait()
    assert len(seen) == 3


def test_resolve_container_prefers_name():
    assert dx.resolve_container("x", "/nowhere") == "x"
