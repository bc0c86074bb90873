# -*- coding: utf-8 -*-
# Copyright (c) homelab.immich contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run commands in a container with the docker CLI: argv only (never a shell), never a TTY (a TTY
turns LF into CRLF), never a password in argv (``-e PGPASSWORD`` takes it from our environment)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import threading

from ansible_collections.homelab.immich.plugins.module_utils._fsio import widen_pipe

DOCKER = os.environ.get("HOMELAB_IMMICH_DOCKER", "docker")


class DockerError(Exception):
    """A docker or psql command failed; the message says which and why."""


def _env(password=None):
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    return env


def exec_argv(container, cmd, interactive=False, password=None):
    """``docker exec [-i] [-e PGPASSWORD] <container> <cmd...>``; the value stays in the environment."""
    argv = [DOCKER, "exec"]
    if interactive:
        argv.append("-i")
    if password:
        argv += ["-e", "PGPASSWORD"]
    return argv + [container] + list(cmd)


def run(argv, input_bytes=None, password=None, timeout=600):
    """Run to completion, capture output. Returns (rc, stdout_text, stderr_text)."""
    try:
        res = subprocess.run(argv, check=False, input=input_bytes, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=_env(password), timeout=timeout)
    except OSError as exc:
        raise DockerError("Cannot run `%s`: %s. Is the docker CLI installed and on PATH?" % (argv[0], exc)) from exc
    except subprocess.TimeoutExpired:
        raise DockerError("`%s` did not finish within %ss." % (" ".join(argv[:4]), timeout)) from None
    return res.returncode, res.stdout.decode("utf-8", "replace"), res.stderr.decode("utf-8", "replace")


def inspect(container):
    """``docker inspect`` of one container as a dict, or None when it does not exist."""
    rc, out, _err = run([DOCKER, "inspect", "--type", "container", container])
    if rc != 0:
        return None
    data = json.loads(out or "[]")
    return data[0] if data else None


def running(container):
    """Is this container running? (False when it does not exist.)"""
    if not container:
        return False
    rc, out, _err = run([DOCKER, "inspect", "-f", "{{.State.Running}}", container], timeout=60)
    return rc == 0 and out.strip() == "true"


def resolve_container(container=None, project_dir=None, service="database"):
    """The container name: given directly, or the running container of a compose service."""
    if container:
        return container
    if not project_dir:
        raise DockerError("Name the database container (container=immich_postgres) or the compose project (project_dir=...).")
    project_dir = os.path.abspath(project_dir)
    rc, out, err = run([DOCKER, "ps", "-a",
                        "--filter", "label=com.docker.compose.project.working_dir=%s" % project_dir,
                        "--filter", "label=com.docker.compose.service=%s" % service,
                        "--format", "{{.Names}}"])
    names = [n for n in out.split() if n]
    if rc != 0 or not names:
        raise DockerError("No container of service %r found for the compose project in %s (%s). "
                          "Run `docker compose --project-directory %s ps -a` to see its containers."
                          % (service, project_dir, err.strip() or "none created", project_dir))
    return sorted(names)[0]


def psql_argv(container, user, database, extra=(), *, interactive=True, password=None):
    cmd = ["psql", "-X", "-q", "-U", user, "-d", database] + list(extra)
    return exec_argv(container, cmd, interactive=interactive, password=password)


def query(container, user, database, sql, password=None):
    """Rows (lists of str) of one SQL query run with psql in the container (unaligned, tab-separated)."""
    argv = psql_argv(container, user, database, ["-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1"], password=password)
    rc, out, err = run(argv, input_bytes=sql.encode("utf-8"), password=password)
    if rc != 0:
        raise DockerError("psql in %s (user %s, database %s) failed: %s" % (container, user, database, err.strip()[-500:]))
    return [line.split("\t") for line in out.splitlines() if line]


def server_version(container, user, database="postgres", password=None):
    """'15.14' (the distribution suffix of SHOW server_version dropped)."""
    return query(container, user, database, "SHOW server_version;", password)[0][0].split()[0]


def databases(container, user, password=None):
    rows = query(container, user, "postgres",
                 "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1;", password)
    return [r[0] for r in rows]


ROW_COUNTS_SQL = """
SELECT c.relname,
       (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
                                            false, true, '')))[1]::text::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1;
"""


def row_counts(container, user, database, password=None):
    """Exact per-table row counts of the public schema, in one round trip."""
    return {r[0]: int(r[1]) for r in query(container, user, database, ROW_COUNTS_SQL, password)}


class Stage:
    """One process of a pipeline; stderr is drained by a thread (never blocks, last 64 KiB kept)."""

    def __init__(self, name, argv, *, stdin=None, stdout=subprocess.PIPE, password=None, on_line=None):
        self.name = name
        self._on_line = on_line
        self.argv = argv
        try:
            self.proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                         env=_env(password))
        except OSError as exc:
            raise DockerError("Cannot start %s (`%s`): %s" % (name, argv[0], exc)) from exc
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                widen_pipe(pipe.fileno())
        self._err = []
        self._err_size = 0
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        for line in iter(self.proc.stderr.readline, b""):
            if self._on_line is not None:
                self._on_line(line)
            self._err.append(line)
            self._err_size += len(line)
            while self._err_size > 65536 and len(self._err) > 1:
                self._err_size -= len(self._err.pop(0))

    @property
    def stderr(self):
        self._thread.join(timeout=5)
        return b"".join(self._err).decode("utf-8", "replace")

    def stderr_lines(self):
        return self.stderr.splitlines()

    def wait(self):
        rc = self.proc.wait()
        self._thread.join(timeout=5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        self.proc.wait()
