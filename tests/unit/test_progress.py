"""Progress of long steps: the line a person reads (plugin_utils/progress.py), the progress file the
module writes (backup_run.ProgressFile), the dump's progress hook, and the action plugins' runner
against a fake connection (async start, async_status polls, the progress file read at a bounded rate,
the module's result returned unchanged)."""
import json
import os

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import backup_run as br
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx
from ansible_collections.homelab.immich.plugins.module_utils import dump
from ansible_collections.homelab.immich.plugins.plugin_utils import progress as pg

# -- the line -------------------------------------------------------------------------------------


def test_originals_with_the_previous_set_as_expected_total():
    state = {"step": "originals", "files": 12032, "bytes": 112_700_000, "copied_bytes": 111_900_000,
             "files_expected": 30462, "bytes_expected": 290_400_000, "step_seconds": 2.0}
    line = pg.progress_line(state, "lab")
    assert line == ("lab: originals: 12,032 of ~30,462 files, 112.7 MB of ~290.4 MB (38%), 56.4 MB/s, 6,016 files/s, "
                    "ETA ~3 s")


def test_a_nightly_copy_of_mostly_hard_links_shows_the_copy_rate():
    state = {"step": "originals", "files": 50000, "bytes": 400e9, "copied_bytes": 2e9,
             "files_expected": 100000, "bytes_expected": 800e9, "step_seconds": 100}
    line = pg.progress_line(state)
    assert line.startswith("originals: 50,000 of ~100,000 files, 400.0 GB of ~800.0 GB (50%), ")
    assert "2.0 GB copied at 20.0 MB/s" in line and "500 files/s" in line and line.endswith("ETA ~1 min 40 s")


def test_exact_totals_have_no_tilde_and_an_hour_long_eta():
    state = {"step": "restore files", "files": 1000, "bytes": 1e9, "files_total": 100000, "bytes_total": 400e9,
             "step_seconds": 60}
    line = pg.progress_line(state, "photos.lan")
    assert line == ("photos.lan: restore files: 1,000 of 100,000 files, 1.0 GB of 400.0 GB (0.2%), 16.7 MB/s, 16 files/s, "
                    "ETA 6 h 39 min")
    assert "~" not in line


def test_restic_counters_are_read_under_their_own_names():
    state = {"step": "copy to restic:/srv/repo", "files_done": 10, "bytes_done": 5e6, "files_total": 40,
             "bytes_total": 20e6, "percent": 25.0, "seconds": 5, "step_seconds": 5.0}
    assert pg.progress_line(state) == ("copy to restic:/srv/repo: 10 of 40 files, 5.0 MB of 20.0 MB (25%), 1.0 MB/s, "
                                       "2.0 files/s, ETA 15 s")


def test_the_dump_counts_sql_against_the_previous_dump():
    state = {"step": "dump", "bytes": 1.2e9, "bytes_expected": 3.4e9, "written_bytes": 300e6, "step_seconds": 30}
    assert pg.progress_line(state, "lab") == ("lab: dump: 1.2 GB of ~3.4 GB of SQL (35%), 40.0 MB/s, 300.0 MB written, "
                                              "ETA ~55 s")
    first = {"step": "dump", "bytes": 1.2e9, "bytes_expected": None, "written_bytes": 300e6, "step_seconds": 30}
    assert pg.progress_line(first) == "dump: 1.2 GB of SQL, 40.0 MB/s, 300.0 MB written"  # no total: no ETA


def test_past_the_expected_total_there_is_no_eta():
    state = {"step": "originals", "files": 120, "bytes": 2e6, "files_expected": 100, "bytes_expected": 1e6,
             "copied_bytes": 2e6, "step_seconds": 2}
    line = pg.progress_line(state)
    assert "more than the previous set" in line and "ETA" not in line and "1.0 MB/s" in line


def test_the_eta_counts_down_between_two_reads_of_the_same_state():
    state = {"step": "originals", "files": 10, "bytes": 50, "files_total": 20, "bytes_total": 100, "step_seconds": 10}
    assert pg.progress_line(state).endswith("ETA 10 s")
    assert pg.progress_line(state, running_for=14).endswith("ETA 6 s")


def test_a_step_without_counters_says_how_long_it_runs():
    assert pg.progress_line({"step": "verify", "step_seconds": 0.2}, "lab") == "lab: verify: started"
    assert pg.progress_line({"step": "verify", "step_seconds": 0.2}, "lab", running_for=125) == "lab: verify: running for 2 min 05 s"
    assert pg.progress_line({"step": "coverage"}, running_for=3) == "coverage: running for 3 s"
    assert pg.progress_line({}) is None and pg.progress_line(None) is None
    assert pg.progress_line({"step": "done", "elapsed": 3}) is None  # the module's last write, not a step


def test_no_zero_rate_at_the_very_start():
    line = pg.progress_line({"step": "originals", "files": 0, "bytes": 0, "files_total": 10, "bytes_total": 100,
                             "step_seconds": 0})
    assert line == "originals: 0 of 10 files, 0 bytes of 100 bytes (0%)"


def test_units():
    assert [pg.human_size(n) for n in (0, 999, 1000, 1.5e6, 2.25e9, 3e12, 4e15)] == [
        "0 bytes", "999 bytes", "1.0 KB", "1.5 MB", "2.2 GB", "3.0 TB", "4000.0 TB"]
    assert [pg.human_duration(s) for s in (0, 59.4, 60, 3599, 3600, 7260, 200000)] == [
        "0 s", "59 s", "1 min 00 s", "59 min 59 s", "1 h 00 min", "2 h 01 min", "2 d 07 h"]
    assert pg.human_rate(1e6, 0) is None and pg.human_rate(3e6, 2) == "1.5 MB/s"


def test_interval_and_state_parsing():
    assert pg.interval_of({}) == 30 and pg.interval_of({"progress_interval": "2"}) == 2.0
    assert pg.interval_of({"progress_interval": 0}) == 0 and pg.interval_of({"progress_interval": "soon"}) is None
    assert pg.interval_of({"progress_interval": None}) == 30
    assert pg.parse_state('{"step": "dump"}') == {"step": "dump"}
    assert pg.parse_state("") is None and pg.parse_state("[1]") is None and pg.parse_state(None) is None


# -- the progress file (module side) ----------------------------------------------------------------


def test_progress_file_names_a_new_step_at_once_and_bounds_the_rest(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(br.time, "monotonic", lambda: now[0])
    path = str(tmp_path / "p.json")
    pf = br.ProgressFile(path, interval=2.0)

    def read():
        with open(path) as fh:
            return json.load(fh)

    pf({"step": "dump"})
    assert read()["step"] == "dump" and read()["pid"] == os.getpid() and read()["step_seconds"] == 0
    now[0] += 1
    pf({"step": "dump", "bytes": 5})
    assert "bytes" not in read()  # within the interval: not written
    now[0] += 1.5
    pf({"step": "dump", "bytes": 9})
    assert read()["bytes"] == 9 and read()["step_seconds"] == 2.5
    now[0] += 0.1
    pf({"step": "originals"})  # a new step is written at once, its clock restarted
    assert read()["step"] == "originals" and read()["step_seconds"] == 0 and read()["elapsed"] == 2.6
    pf.close({"step": "done"})
    assert read()["step"] == "done"


def test_progress_file_never_fails_the_run(tmp_path):
    pf = br.ProgressFile(str(tmp_path / "missing" / "p.json"))
    pf({"step": "dump"})
    assert pf.path is None
    br.ProgressFile(None)({"step": "dump"})  # no file asked for


def test_the_engine_names_each_step_in_the_progress(tmp_path):
    seen = []
    run = br.Run({"instance_name": "x"}, {"trigger": "ansible"}, progress=seen.append)
    with run.step("dump"):
        run.progress(bytes=1)
    assert seen == [{"step": "dump"}, {"step": "dump", "bytes": 1}]


# -- the dump's hook --------------------------------------------------------------------------------


def _sql(path, rows):
    lines = ["--", "-- PostgreSQL database dump", "--", "-- Dumped from database version 15.14",
             "-- Dumped by pg_dump version 15.14", "", "COPY public.asset (id, name) FROM stdin;"]
    lines += ["%d\t%s" % (i, "x" * 200) for i in range(rows)]
    lines += ["\\.", "", "--", "-- PostgreSQL database dump complete", "--", ""]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return os.path.getsize(path)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_the_dump_reports_sql_bytes_against_the_previous_dump(tmp_path, monkeypatch, compression):
    sql = str(tmp_path / "stream.sql")
    plain = _sql(sql, 20000)  # about 4 MB: several chunks
    monkeypatch.setattr(dx, "server_version", lambda *a, **k: "15.14")
    monkeypatch.setattr(dump, "pg_dump_version", lambda *a, **k: "15.14")
    monkeypatch.setattr(dx, "exec_argv", lambda container, cmd, **k: ["cat", sql])
    previous = tmp_path / "previous.manifest.json"
    previous.write_text(json.dumps({"bytes": 1, "plain_bytes": 5_000_000, "rows_by_table": {"asset": 10}}))
    calls = []
    res = dump.dump("db", "postgres", "immich", str(tmp_path / "out"), dump_kind="database", compression=compression,
                    previous_manifest=str(previous), progress=lambda **c: calls.append(c))
    assert res["plain_bytes"] == plain and calls
    assert calls[-1] == {"bytes": plain, "bytes_expected": 5_000_000, "written_bytes": res["bytes"]}
    assert [c["written_bytes"] for c in calls] == sorted(c["written_bytes"] for c in calls)


# -- the runner of the action plugins (a fake connection) --------------------------------------------


class FakeShell:
    tmpdir = None

    def __init__(self):
        self.options = {"async_dir": "~/.ansible_async"}

    def get_option(self, name):
        return self.options[name]

    def set_option(self, name, value):
        self.options[name] = value

    @staticmethod
    def join_path(*parts):
        return "/".join(parts)


class FakeConnection:
    has_native_async = False

    def __init__(self):
        self._shell = FakeShell()
        self.resets = 0

    def reset(self):
        self.resets += 1


class FakeTask:
    def __init__(self, args, check_mode=False, async_val=0):
        self.args = args
        self.check_mode = check_mode
        self.async_val = async_val


class FakeDisplay:
    def __init__(self):
        self.lines = []

    def display(self, msg):
        self.lines.append(msg)

    def vvv(self, msg):
        pass

    vvvv = vvv


class FakeAction:
    """What the runner uses of ActionBase; ``job`` is a list of (seconds since start, async_status
    result), ``states`` a list of (seconds, progress file content)."""

    def __init__(self, clock, args, job, states, **task):
        self.clock = clock
        self._task = FakeTask(args, **task)
        self._connection = FakeConnection()
        self._play_context = type("PC", (), {"remote_addr": "10.0.0.1"})()
        self.job = job
        self.states = states
        self.calls = []
        self.commands = []
        self.removed = []

    def _make_tmp_path(self):
        self._connection._shell.tmpdir = "/home/u/.ansible/tmp/ansible-tmp-1"
        return self._connection._shell.tmpdir

    def _remove_tmp_path(self, path, force=False):
        self.removed.append(path)

    def _remote_expand_user(self, path):
        return path.replace("~", "/home/u")

    def get_shell_option(self, name, default=None):
        return self._connection._shell.options.get(name, default)

    def _execute_module(self, module_name=None, module_args=None, task_vars=None, wrap_async=False):
        self.calls.append({"module": module_name, "args": module_args, "wrap_async": wrap_async,
                           "async_val": self._task.async_val, "async_dir": self._connection._shell.options["async_dir"]})
        if module_name is None and self._task.async_val != pg.ASYNC_LIMIT:  # not started by the runner
            return dict(self.job[-1][1], plain=True)
        if module_name is None:
            self._connection._shell.tmpdir = None  # as ActionBase does after an async start
            return {"started": True, "finished": False, "ansible_job_id": "j1.42", "results_file": "/home/u/.ansible_async/j1.42",
                    "changed": True}
        if module_args.get("mode") == "cleanup":
            return {"ansible_job_id": "j1.42", "erased": "/home/u/.ansible_async/j1.42"}
        now = self.clock.now
        current = [res for at, res in self.job if at <= now][-1]
        return dict(current, _ansible_parsed=True)

    def _low_level_execute_command(self, cmd, sudoable=True):
        self.commands.append(cmd)
        if cmd.startswith("cat "):
            now = self.clock.now
            ready = [text for at, text in self.states if at <= now]
            return {"rc": 0, "stdout": ready[-1]} if ready else {"rc": 1, "stdout": "", "stderr": "No such file"}
        return {"rc": 0, "stdout": ""}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


RUNNING = {"started": True, "finished": False, "ansible_job_id": "j1.42"}
FINAL = {"changed": True, "report": {"status": "ok", "steps": []}, "set_id": "S", "set_dir": "/b/S", "msg": "set S verified",
         "invocation": {"module_args": {"instance": {}, "progress_file": "/home/u/.ansible/tmp/ansible-tmp-1/homelab-immich-progress.json",
                                        "progress_interval": 2}}}


def _state(step, files, seconds):
    if files is None:
        return json.dumps({"step": step, "step_seconds": seconds, "updated": seconds, "pid": 4242})
    return json.dumps({"step": step, "files": files, "bytes": files * 1000, "files_total": 100, "bytes_total": 100000,
                       "step_seconds": seconds, "updated": seconds, "pid": 4242})


def _runner(clock, args, job, states=(), **task):
    action = FakeAction(clock, args, job, list(states), **task)
    display = FakeDisplay()
    return pg.ProgressRunner(action, display, clock=clock, sleep=clock.sleep), action, display


def test_a_long_run_prints_lines_at_the_interval_and_returns_the_module_result_unchanged():
    clock = Clock()
    job = [(0, RUNNING), (9.5, dict(FINAL, finished=True, ansible_job_id="j1.42", stderr="", stderr_lines=[]))]
    states = [(1, _state("originals", 10, 1.0)), (3, _state("originals", 30, 3.0)), (5, _state("originals", 50, 5.0)),
              (7, _state("verify", None, 0.5))]
    runner, action, display = _runner(clock, {"instance": {}, "progress_interval": 2}, job, states)
    result = runner.run({"inventory_hostname": "lab"})
    expected = dict(FINAL, invocation={"module_args": dict(FINAL["invocation"]["module_args"], progress_file=None)})
    assert {k: v for k, v in result.items() if k != "_ansible_parsed"} == expected
    start = action.calls[0]
    assert start["wrap_async"] and start["async_val"] == pg.ASYNC_LIMIT and action._task.async_val == 0
    # the wrapper writes the job where async_status looks (an absolute folder, not "~" of the module's $HOME),
    # and the shell's option is as it was afterwards
    assert start["async_dir"] == "/home/u/.ansible_async" == action.calls[1]["args"]["_async_dir"]
    assert action._connection._shell.options["async_dir"] == "~/.ansible_async"
    assert start["args"]["progress_file"] == "/home/u/.ansible/tmp/ansible-tmp-1/homelab-immich-progress.json"
    assert display.lines, "no progress line"
    assert all(line.startswith("lab: ") for line in display.lines)
    assert any("of 100 files" in line and "MB/s" not in line and "ETA" in line for line in display.lines)
    reads = [c for c in action.commands if c.startswith("cat ")]
    assert len(reads) <= 9.5 / 2 + 1  # bounded by the interval, not by the polls
    assert action.calls[-1]["args"] == {"jid": "j1.42", "mode": "cleanup", "_async_dir": "/home/u/.ansible_async"}
    assert action.commands[-1].startswith("rm -f /home/u/.ansible/tmp/ansible-tmp-1/homelab-immich-progress.json")
    assert action.removed[-1] == "/home/u/.ansible/tmp/ansible-tmp-1"  # the module's tmp dir, not left to the wrapper


def test_a_crash_keeps_what_the_module_wrote_on_stderr():
    crashed = {"failed": True, "msg": "Traceback ...", "stderr": "ImportError: no module x", "ansible_job_id": "j1",
               "finished": True}
    assert pg.strip_async(crashed, None) == {"failed": True, "msg": "Traceback ...", "stderr": "ImportError: no module x"}
    assert "stderr" not in pg.strip_async({"changed": True, "stderr": "DeprecationWarning", "finished": True}, None)


def test_a_failure_is_the_module_failure():
    clock = Clock()
    failed = {"failed": True, "msg": "Backup of x failed at step 'dump': boom", "report": {"status": "failed"}}
    job = [(0, RUNNING), (1.2, dict(failed, finished=True, ansible_job_id="j1.42"))]
    runner, _action, display = _runner(clock, {"instance": {}, "progress_interval": 5}, job)
    result = runner.run({"inventory_hostname": "lab"})
    assert result["failed"] and result["msg"] == failed["msg"] and result["report"] == failed["report"]
    assert "finished" not in result and "ansible_job_id" not in result and not display.lines
    assert clock.now < 2.5  # a short run is not held up by the progress interval


@pytest.mark.parametrize("task", [{"check_mode": True}, {"async_val": 600}], ids=["check mode", "own async"])
def test_check_mode_and_a_task_with_its_own_async_run_the_plain_way(task):
    clock = Clock()
    runner, action, display = _runner(clock, {"instance": {}}, [(0, FINAL)], **task)
    result = runner.run({})
    assert result["plain"] and len(action.calls) == 1 and not display.lines
    assert action.calls[0]["wrap_async"] == bool(task.get("async_val"))


@pytest.mark.parametrize("interval", [0, "0", "soon"])
def test_interval_zero_or_nonsense_runs_the_plain_way(interval):
    runner, action, _display = _runner(Clock(), {"instance": {}, "progress_interval": interval}, [(0, FINAL)])
    assert runner.run({})["plain"] and not action.calls[0]["wrap_async"]


def test_a_given_progress_file_is_used_and_kept():
    clock = Clock()
    job = [(0, RUNNING), (1, dict(FINAL, finished=True))]
    runner, action, _display = _runner(clock, {"instance": {}, "progress_file": "/run/p.json", "progress_interval": 1}, job)
    result = runner.run({})
    assert action.calls[0]["args"]["progress_file"] == "/run/p.json"
    assert result["invocation"]["module_args"]["progress_file"] == "/run/p.json"
    assert not any(c.startswith("rm ") for c in action.commands)


def test_an_interrupted_task_stops_the_module():
    clock = Clock()
    runner, action, _display = _runner(clock, {"instance": {}, "progress_interval": 1}, [(0, RUNNING)],
                                       [(0, _state("dump", 1, 0.5))])

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    runner.sleep = lambda s: (clock.sleep(s), interrupted() if clock.now > 3 else None)
    with pytest.raises(KeyboardInterrupt):
        runner.run({})
    assert "kill -TERM 4242" in action.commands


def test_a_signal_to_the_worker_stops_the_module_first(monkeypatch):
    import signal  # noqa: PLC0415

    clock = Clock()
    runner, action, _display = _runner(clock, {"instance": {}, "progress_interval": 1}, [(0, RUNNING)],
                                       [(0, _state("originals", 1, 0.5))])
    seen = []

    class StoppedError(Exception):
        pass

    def worker_term(signum, frame):  # what Ansible's worker does: end at once
        seen.append(signum)
        raise StoppedError

    previous = signal.signal(signal.SIGTERM, worker_term)
    try:
        runner.sleep = lambda s: (clock.sleep(s), os.kill(os.getpid(), signal.SIGTERM) if clock.now > 3 else None)
        with pytest.raises(StoppedError):
            runner.run({})
        assert seen == [signal.SIGTERM] and action.commands.count("kill -TERM 4242") >= 1
        assert signal.getsignal(signal.SIGTERM) is worker_term  # the worker's handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_bounced_connection_is_retried():
    clock = Clock()
    job = [(0, RUNNING), (4, dict(FINAL, finished=True))]
    runner, action, _display = _runner(clock, {"instance": {}, "progress_interval": 1}, job)
    real = action._execute_module
    fails = [2]

    def flaky(**kw):
        if kw.get("module_name") and fails[0]:
            fails[0] -= 1
            raise ConnectionError("ssh: connection reset")
        return real(**kw)

    action._execute_module = flaky
    assert runner.run({})["set_id"] == "S" and action._connection.resets == 2
