"""ResticTarget without restic: argv/env builders, the password file, version parsing and the feature
table, parsers of restic's JSON, and the classification of every failure (fake runner)."""
import json
import os
import stat

import pytest

from ansible_collections.homelab.immich.plugins.module_utils.targets import TargetError, kind_of
from ansible_collections.homelab.immich.plugins.module_utils.targets import restic as R  # noqa: N812

SECRET = "s3cret-Pass-phrase"
REST_PW = "rest-cred-77"
GLOBAL_WITH_VALUE = ("--cache-dir", "--cacert", "--limit-upload", "--limit-download", "--compression", "-o",
                     "--retry-lock")


def words(argv):
    """The command words of a restic argv (binary and global options left out)."""
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg in GLOBAL_WITH_VALUE:
            skip = True
            continue
        out.append(arg)
    return out


class FakeRunner(object):
    """Answers restic commands from a table {first words: response}; records argv, env and what the
    password file held while the command ran."""

    def __init__(self, version="0.18.0", **answers):
        self.version = version
        self.answers = answers
        self.calls = []
        self.pid = None

    def _answer(self, argv):
        w = words(argv)
        if w == ["version"]:
            return {"stdout": ["restic %s compiled with go1.24.4 on linux/amd64" % self.version]}
        for n in (3, 2, 1):
            key = "_".join(w[:n])
            if key in self.answers:
                ans = self.answers[key]
                if isinstance(ans, list):  # successive answers
                    return ans.pop(0) if len(ans) > 1 else ans[0]
                return ans(argv) if callable(ans) else ans
        return {"rc": 0}

    def run(self, argv, env, *, cwd=None, pass_fds=(), on_stdout=None, on_stderr=None, tick=None, capture=False):
        seen = {"argv": list(argv), "env": dict(env), "cwd": cwd, "pass_fds": tuple(pass_fds)}
        pw = env.get("RESTIC_PASSWORD_FILE")
        if pw and words(argv) != ["version"]:
            st = os.stat(pw)
            with open(pw) as fh:
                seen["password"] = fh.read().strip()
            seen["mode"] = stat.S_IMODE(st.st_mode)
            seen["links"] = st.st_nlink
        self.calls.append(seen)
        ans = self._answer(argv)
        for line in ans.get("stdout", []):
            if on_stdout:
                on_stdout(line)
        for line in ans.get("stderr", []):
            if on_stderr:
                on_stderr(line)
        if tick and ans.get("tick"):
            killed = tick(ans["tick"])
        else:
            killed = ans.get("killed")
        return R.RunResult(ans.get("rc", 0), list(ans.get("stdout", [])), list(ans.get("stderr", [])), killed, 0.1)


def target(spec=None, runner=None, **kw):
    base = {"restic": "/mnt/usb/restic", "password": SECRET}
    base.update(spec or {})
    base.update(kw)
    return R.ResticTarget(base, "home", runner=runner or FakeRunner())


# -- spec, label, redaction ----------------------------------------------------------------------------
def test_kind_and_spec_validation():
    assert kind_of({"restic": "sftp:u@h:/p", "password": "x"}) == "restic"
    with pytest.raises(ValueError, match="password"):
        R.ResticTarget({"restic": "/r"}, "home")
    with pytest.raises(ValueError, match="keep one"):
        R.ResticTarget({"restic": "/r", "password": "a", "password_file": "/f"}, "home")
    with pytest.raises(ValueError, match="needs `restic"):
        R.ResticTarget({"restic": " ", "password": "a"}, "home")
    assert target(colour="blue").unknown_keys == ["colour"]


def test_label_and_messages_never_show_rest_credentials():
    t = target({"restic": "rest:http://backup:%s@nas:8000/backup/" % REST_PW})
    assert REST_PW not in t.label and t.label == "restic:rest:http://backup:***@nas:8000/backup/"
    assert R.redact("x https://u:p@h/ y rest:http://a:b@c:1/") == "x https://u:***@h/ y rest:http://a:***@c:1/"
    assert t._scrub("Head http://backup:%s@nas:8000/config and %s" % (REST_PW, SECRET)).count("***") == 2


# -- argv and environment builders (pure) ---------------------------------------------------------------
def test_backup_argv_is_relative_stable_and_secret_free():
    tags = R.set_tags("home", "20261202T020000Z", "v2.7.5", 14)
    assert tags == ["instance:home", "set:20261202T020000Z", "immich:2.7.5", "pg:14"]
    argv = R.backup_argv("home", tags, parent="ab" * 32)
    assert argv[-1] == "." and "--ignore-ctime" in argv and "--ignore-inode" in argv
    assert argv[argv.index("--parent") + 1] == "ab" * 32 and argv[argv.index("--host") + 1] == "home"
    assert R.set_tags("my, inst", "20261202T020000Z", None, None)[0] == "instance:my_inst"
    assert "--parent" not in R.backup_argv("home", tags)


def test_sftp_command_from_port_key_and_options():
    spec = {"port": 2222, "ssh_key": "/etc/immich/id_ed25519", "ssh_args": ["-o", "StrictHostKeyChecking=accept-new"]}
    cmd = R.sftp_command(spec, "sftp:backup@nas:/srv/restic")
    assert cmd == ("ssh -p 2222 -i /etc/immich/id_ed25519 -o StrictHostKeyChecking=accept-new -o BatchMode=yes "
                   "backup@nas -s sftp")
    assert R.sftp_command({}, "sftp:backup@nas:/srv/restic") is None  # restic's own ssh call
    assert R.sftp_command({"ssh_key": "/k with space"}, "sftp:nas:/x") == 'ssh -i "/k with space" -o BatchMode=yes nas -s sftp'
    assert R.parse_sftp("sftp://u@h:2200//srv/r") == ("u", "h", 2200, "/srv/r")
    assert R.sftp_command({"ssh_key": "/k"}, "sftp://u@h:2200//srv/r").startswith("ssh -p 2200 -i /k")
    with pytest.raises(ValueError, match="backslash"):
        R.sftp_command({"ssh_key": "C:\\key"}, "sftp:nas:/x")
    argv = R.global_args(dict(spec, cache_dir="/var/cache/r", limit_upload=500), "sftp:backup@nas:/srv/restic",
                         R.features_of((0, 14, 0)))
    assert argv[:4] == ["--cache-dir", "/var/cache/r", "--limit-upload", "500"]
    assert argv[argv.index("-o") + 1].startswith("sftp.command=ssh -p 2222")


def test_env_carries_repository_and_password_file_only():
    base = {"PATH": "/usr/bin", "HOME": "/root", "RESTIC_PASSWORD": "leak", "RESTIC_REPOSITORY_FILE": "/x",
            "RESTIC_CACHE_DIR": "/keep"}
    env = R.build_env(base, "rest:http://u:%s@h:1/" % REST_PW, "/dev/fd/7", {"AWS_ACCESS_KEY_ID": "k"}, 2)
    assert env["RESTIC_REPOSITORY"].endswith("@h:1/") and env["RESTIC_PASSWORD_FILE"] == "/dev/fd/7"
    assert "RESTIC_PASSWORD" not in env and "RESTIC_REPOSITORY_FILE" not in env
    assert env["RESTIC_CACHE_DIR"] == "/keep" and env["AWS_ACCESS_KEY_ID"] == "k" and env["TZ"] == "UTC"
    assert env["RESTIC_PROGRESS_FPS"] == "2"


def test_password_file_is_0600_unlinked_and_closed(tmp_path):
    with R.PasswordFile(SECRET, str(tmp_path)) as pw:
        fd = pw.fd
        st = os.fstat(fd)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_nlink == 0  # already removed from the disk
        assert pw.path == "/dev/fd/%d" % fd and pw.pass_fds == (fd,)
        with open(pw.path) as fh:
            assert fh.read() == SECRET + "\n"
        assert os.listdir(str(tmp_path)) == []
    with pytest.raises(OSError):
        os.fstat(fd)


def test_password_file_without_dev_fd_is_removed_even_on_error(tmp_path, monkeypatch):
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: False if p == "/dev/fd" else real_isdir(p))
    with pytest.raises(RuntimeError):
        with R.PasswordFile(SECRET, str(tmp_path)) as pw:
            assert os.path.exists(pw.path) and stat.S_IMODE(os.stat(pw.path).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(os.path.dirname(pw.path)).st_mode) == 0o700
            raise RuntimeError("boom")
    assert os.listdir(str(tmp_path)) == []


def test_restore_argv_subfolder_by_version():
    new = R.restore_argv("abc", "/t", R.features_of((0, 18, 0)), "files", ["upload", "library/"])
    assert new[:3] == ["restore", "--json", "abc:/files"] and "--verify" in new
    assert [new[i + 1] for i, a in enumerate(new) if a == "--include"] == ["/upload", "/library"]
    old = R.restore_argv("abc", "/t", R.features_of((0, 14, 0)), "files")
    assert old[:2] == ["restore", "abc"] and "--json" not in old
    assert [old[i + 1] for i, a in enumerate(old) if a == "--include"] == ["/files"]
    assert R.restore_argv("abc", "/t", R.features_of((0, 14, 0)), "files", ["upload"])[-1] == "/files/upload"


def test_check_argv_validates_subset():
    assert R.check_argv("5%") == ["check", "--read-data-subset", "5%"]
    assert R.check_argv("1/10")[-1] == "1/10" and R.check_argv("500M")[-1] == "500M"
    assert R.check_argv(None) == ["check"]
    with pytest.raises(ValueError):
        R.check_argv("5; rm -rf /")


# -- versions and features -------------------------------------------------------------------------------
@pytest.mark.parametrize("text,want", [
    ("restic 0.14.0 compiled with go1.19.8 on linux/amd64", (0, 14, 0)),
    ("restic 0.18.0 compiled with go1.24.4 on linux/amd64\n", (0, 18, 0)),
    ("restic 0.17.3-dev (compiled manually) compiled with go1.22 on linux/arm64", (0, 17, 3)),
    ('{"message_type":"version","version":"0.17.1","go_version":"go1.22.5","go_os":"linux"}', (0, 17, 1)),
])
def test_parse_version(text, want):
    assert R.parse_version(text) == want


def test_parse_version_rejects_other_output():
    with pytest.raises(ValueError):
        R.parse_version("borg 1.2.4")


def test_feature_table():
    old, mid, new = R.features_of((0, 14, 0)), R.features_of((0, 16, 4)), R.features_of((0, 18, 0))
    assert old["compression"] and old["restore_verify"] and old["read_data_subset"]
    assert not old["retry_lock"] and not old["subfolder_syntax"] and not old["stdin_from_command"]
    assert mid["retry_lock"] and mid["subfolder_syntax"] and not mid["exit_codes"] and not mid["stdin_from_command"]
    assert new["exit_codes"] and new["exit_code_password"] and new["json_exit_errors"] and not new["rest_full_no_retry"]
    assert R.features_of((0, 18, 1))["rest_full_no_retry"]


def test_too_old_restic_is_refused_with_the_fix():
    with pytest.raises(TargetError) as exc:
        target(runner=FakeRunner(version="0.12.1")).check()
    assert "older than 0.14.0" in str(exc.value)


def test_missing_restic_binary():
    class NoBinary(FakeRunner):
        def run(self, argv, env, **kw):
            raise FileNotFoundError(2, "No such file or directory")
    with pytest.raises(TargetError) as exc:
        target(runner=NoBinary()).version()
    assert "apt-get install restic" in str(exc.value)


# -- parsers ---------------------------------------------------------------------------------------------
STATUS = ('{"message_type":"status","seconds_elapsed":3,"percent_done":0.25,"total_files":120,"files_done":30,'
          '"total_bytes":4000,"bytes_done":1000,"current_files":["/files/upload/a.jpg"]}')
SUMMARY_018 = ('{"message_type":"summary","files_new":2,"files_changed":5,"files_unmodified":46,"dirs_new":0,'
               '"dirs_changed":9,"dirs_unmodified":0,"data_blobs":2,"tree_blobs":9,"data_added":116822,'
               '"data_added_packed":80000,"total_files_processed":53,"total_bytes_processed":292229,'
               '"total_duration":1.0,"backup_start":"2026-12-02T02:00:00Z","backup_end":"2026-12-02T02:00:01Z",'
               '"snapshot_id":"%s"}' % ("5d" * 32))
SUMMARY_014 = ('{"message_type":"summary","files_new":0,"files_changed":0,"files_unmodified":202,"dirs_new":0,'
               '"dirs_changed":0,"dirs_unmodified":5,"data_blobs":0,"tree_blobs":0,"data_added":0,'
               '"total_files_processed":202,"total_bytes_processed":10100029,"total_duration":0.22,'
               '"snapshot_id":"7e48a9e8"}')


def test_status_and_summary_parsers():
    p = R.status_progress(R.parse_json_line(STATUS))
    assert p == {"step": "restic", "bytes_done": 1000, "bytes_total": 4000, "files_done": 30, "files_total": 120,
                 "percent": 25.0, "seconds": 3}
    facts = R.summary_facts(R.parse_json_line(SUMMARY_018))
    assert facts["files_read"] == 7 and facts["bytes_added"] == 116822 and facts["files_unmodified"] == 46
    old = R.summary_facts(R.parse_json_line(SUMMARY_014))
    assert old["files_read"] == 0 and "data_added_packed" not in old
    assert R.parse_json_line("not json") is None and R.parse_json_line("[1]") is None


def snap(sid, set_id, time_, instance="home"):
    return {"id": sid * 64, "short_id": sid * 8, "time": time_, "hostname": instance, "paths": ["/x/" + set_id],
            "tags": ["instance:%s" % instance, "set:%s" % set_id, "immich:2.7.5", "pg:14"]}


def test_group_sets_oldest_first_duplicates_and_other_instances():
    snaps = [snap("b", "20261202T020000Z", "2026-12-02T02:10:00Z"), snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z"),
             snap("c", "20261202T020000Z", "2026-12-02T03:00:00Z"), snap("d", "20261203T020000Z", "2026-12-03T02:00:00Z",
                                                                         instance="other"),
             {"id": "e" * 64, "time": "2026-12-04T00:00:00Z", "tags": ["instance:home"]}]
    sets = R.group_sets(snaps, "home")
    assert [s["set_id"] for s in sets] == ["20261201T020000Z", "20261202T020000Z"]
    assert sets[1]["info"]["snapshot_id"] == "c" * 64 and sets[1]["info"]["snapshots"] == ["b" * 64, "c" * 64]
    assert all(s["good"] for s in sets) and sets[0]["info"]["pg_major"] == "14"
    assert R.parse_snapshots("null") == [] and R.parse_snapshots("") == []


def test_lock_parser_and_description():
    text = ('{"time":"2026-12-01T17:35:39.085894827Z","exclusive":false,"hostname":"nas","username":"root",'
            '"pid":1841,"uid":0,"gid":0}')
    lock = R.parse_lock(text, "aa5b47d6" + "0" * 56)
    assert lock["pid"] == 1841 and not lock["exclusive"]
    assert R.describe_lock(lock) == "shared lock aa5b47d6 of pid 1841 on nas (user root) since 2026-12-01 17:35:39 UTC"
    assert R.parse_lock("garbage") is None


def write_set(tmp_path, files):
    set_dir = tmp_path / "set"
    (set_dir / "db").mkdir(parents=True)
    (set_dir / "files").mkdir()
    lines = ["# homelab.immich file manifest v2\tpath\tsize\tmtime\tsha256\tsha1"]
    for rel, size in sorted(files, key=lambda f: f[0].split("/")):  # the engine's order: path components
        lines.append("%s\t%d\t1764633600\t%s\t-" % (rel, size, "0" * 64))
    (set_dir / "files.manifest.tsv").write_text("\n".join(lines) + "\n")
    (set_dir / "set.json").write_text('{"set_id": "20261202T020000Z"}')
    (set_dir / "db" / "d.sql.gz").write_bytes(b"x" * 10)
    (set_dir / "db" / "d.sql.gz.manifest.json").write_text('{"bytes": 10, "sha256": "0"}')
    return str(set_dir)


def ls_lines(set_dir, files, snapshot_id="ab" * 32, old=False):
    """What ``restic ls --json`` prints for a snapshot of set_dir holding ``files`` (pre-order, sorted)."""
    key = "struct_type" if old else "message_type"
    out = [json.dumps({"id": snapshot_id, key: "snapshot"})]
    nodes = [("files/" + rel, size) for rel, size in files]
    for top, _dirs, names in os.walk(set_dir):
        for name in names:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, set_dir)
            if not rel.startswith("files/"):
                nodes.append((rel, os.path.getsize(full)))
    nodes.sort(key=lambda n: [c.encode() for c in n[0].split("/")])
    out.append(json.dumps({"name": "files", "type": "dir", "path": "/files", key: "node"}))
    for rel, size in nodes:
        out.append(json.dumps({"name": rel.rsplit("/", 1)[-1], "type": "file", "path": "/" + rel, "size": size,
                               key: "node"}))
    return out


FILES = [("library/a/b.jpg", 3), ("upload/u/a.b/c.jpg", 5), ("upload/u/a/z.jpg", 7), ("upload/u/ab.jpg", 2)]


@pytest.mark.parametrize("old", [False, True])
def test_snapshot_proof_streams_and_counts(tmp_path, old):
    set_dir = write_set(tmp_path, FILES)
    proof = R.SnapshotProof(set_dir)
    for line in ls_lines(set_dir, FILES, old=old):
        proof.node(json.loads(line))
    got = proof.finish()
    assert got["ok"] and got["manifest_files"] == 4 and got["missing"] == got["extra"] == got["mismatched"] == 0
    # one missing, one extra, one of another size
    bad = [("library/a/b.jpg", 3), ("upload/u/a.b/c.jpg", 6), ("upload/u/zz.jpg", 1)]
    proof = R.SnapshotProof(set_dir)
    for line in ls_lines(set_dir, bad):
        proof.node(json.loads(line))
    got = proof.finish()
    assert not got["ok"] and (got["missing"], got["extra"], got["mismatched"]) == (2, 1, 1)
    assert any("size of files/upload/u/a.b/c.jpg" in e for e in got["examples"])


def test_snapshot_proof_of_a_manifest_in_another_order(tmp_path):
    set_dir = write_set(tmp_path, FILES)
    manifest = os.path.join(set_dir, "files.manifest.tsv")
    with open(manifest) as fh:
        lines = fh.read().splitlines()
    with open(manifest, "w") as fh:
        fh.write("\n".join([lines[0]] + sorted(lines[1:])) + "\n")  # plain string order: a.b/ before a/
    ordered = R.SnapshotProof(set_dir)
    for line in ls_lines(set_dir, FILES):
        ordered.node(json.loads(line))
    assert ordered.finish()["unordered"]
    held = R.SnapshotProof(set_dir, ordered=False)
    for line in ls_lines(set_dir, FILES):
        held.node(json.loads(line))
    assert held.finish()["ok"]


def test_snapshot_proof_dump_size_against_its_manifest(tmp_path):
    set_dir = write_set(tmp_path, FILES)
    proof = R.SnapshotProof(set_dir)
    for line in ls_lines(set_dir, FILES):
        obj = json.loads(line)
        if obj.get("path") == "/db/d.sql.gz":
            obj["size"] = 9  # the snapshot's dump is shorter than the dump manifest says
        proof.node(obj)
    got = proof.finish()
    assert not got["ok"] and got["mismatched"] == 1


# -- error classification: one test per kind, both restic generations -------------------------------------
CASES = [
    ("auth", 1, "Fatal: wrong password or no key found", (0, 14, 0)),
    ("auth", 12, '{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key found"}', (0, 18, 0)),
    ("auth", 1, "Stat(<config/>) failed: unexpected HTTP response (401): 401 Unauthorized\nFatal: unable to open config "
                "file: unexpected HTTP response (401): 401 Unauthorized\nIs there a repository at the following location?",
     (0, 18, 0)),
    ("auth", 1, "subprocess ssh: root@nas: Permission denied (publickey).\nFatal: unable to open repository at "
                "sftp:root@nas:/srv/restic: unable to start the sftp session, error: EOF", (0, 14, 0)),
    ("missing", 1, "Fatal: unable to open config file: stat /mnt/r/config: no such file or directory\nIs there a "
                   "repository at the following location?\n/mnt/r", (0, 14, 0)),
    ("missing", 10, '{"message_type":"exit_error","code":10,"message":"Fatal: repository does not exist: unable to open '
                    'config file: stat /mnt/r/config: no such file or directory"}', (0, 18, 0)),
    ("missing", 1, "Fatal: unable to open config file: Lstat: file does not exist\nIs there a repository at the "
                   "following location?\nsftp:root@127.0.0.1:/srv/restic", (0, 14, 0)),
    ("missing", 10, "Fatal: repository does not exist: unable to open config file: <config/> does not exist", (0, 18, 0)),
    ("unreachable", 1, "subprocess ssh: ssh: connect to host 127.0.0.1 port 1: Connection refused\nFatal: unable to open "
                       "repository at sftp:root@127.0.0.1:/srv/x: unable to start the sftp session, error: EOF", (0, 14, 0)),
    ("unreachable", 1, 'Stat(<config/>) returned error, retrying after 1.2s: Head "http://u:***@127.0.0.1:1/r/config": '
                       "dial tcp 127.0.0.1:1: connect: connection refused", (0, 18, 0)),
    ("locked", 1, "unable to create lock in backend: repository is already locked by PID 1841 on vm by root (UID 0, "
                  "GID 0)\nlock was created at 2026-12-01 17:35:39 (6.3s ago)\nstorage ID aa5b47d6", (0, 14, 0)),
    ("locked", 11, '{"message_type":"exit_error","code":11,"message":"unable to create lock in backend: repository is '
                   'already locked by PID 1841 on vm by root"}', (0, 18, 0)),
    ("appendonly", 0, "Remove(<snapshot/b0256104f3>) failed: unexpected HTTP response (403): 403 Forbidden\nunable to "
                      "remove snapshot/b0256104 from the repository", (0, 18, 0)),
    ("full", 1, "Save(<data/e12fbeca6f>) returned error, retrying after 1.25s: unexpected HTTP response (507): 507 "
                "Insufficient Storage", (0, 18, 0)),
    ("full", 1, "Save(<data/e1>) returned error: Write: no space left on device", (0, 14, 0)),
    ("corrupt", 1, "ignoring error for /files/upload/u1/ab/f001.jpg: decrypting blob <data/7144fc7a> from a8f2ab95 "
                   "failed: ciphertext verification failed\nFatal: There were 2 errors", (0, 18, 0)),
    ("corrupt", 1, "Pack ID does not match, want a8f2, got a9da\nFatal: repository contains errors", (0, 14, 0)),
    ("interrupted", 130, "signal interrupt received, cleaning up", (0, 18, 0)),
    ("interrupted", -9, "", (0, 18, 0)),
]


@pytest.mark.parametrize("reason,rc,text,version", CASES)
def test_classify(reason, rc, text, version):
    got, detail = R.classify(rc, text, R.features_of(version))
    assert got == reason, detail
    assert detail


def preflight(runner_answers, version="0.18.0", **spec):
    runner = FakeRunner(version=version, **runner_answers)
    t = target(spec, runner=runner)
    with pytest.raises(TargetError) as exc:
        t.check()
    return exc.value, runner


def test_check_wrong_password_says_what_to_do():
    err, runner = preflight({"cat_config": {"rc": 12, "stdout": [CASES[1][2]]}})
    assert err.reason == "auth" and "this password does not open it" in str(err) and "password_file" in str(err)
    assert SECRET not in str(err)
    assert runner.calls[-1]["password"] == SECRET and runner.calls[-1]["mode"] == 0o600
    assert runner.calls[-1]["links"] == 0


def test_check_missing_repository_is_created_only_with_init():
    missing = {"rc": 10, "stderr": [CASES[5][2]]}
    err, runner = preflight({"cat_config": missing})
    assert err.reason == "missing" and "init: true" in str(err) and "restic -r '/mnt/usb/restic' init" in str(err)
    assert not [c for c in runner.calls if words(c["argv"]) == ["init"]]
    config = {"rc": 0, "stdout": ['{"version": 2, "id": "3f24", "chunker_polynomial": "3a0a"}']}
    runner = FakeRunner(cat_config=[missing, config], init={"rc": 0})
    got = target(runner=runner, init=True).check()
    assert got["initialized"] and got["repository_version"] == 2 and got["version"] == "0.18.0"
    assert [words(c["argv"])[0] for c in runner.calls] == ["version", "cat", "init", "cat"]


def test_check_unreachable_rest_stops_restic_retrying():
    line = CASES[9][2]
    err, _runner = preflight({"cat_config": {"rc": 130, "stderr": [line], "tick": 31}},
                             restic="rest:http://u:%s@127.0.0.1:1/r/" % REST_PW)
    assert err.reason == "unreachable" and "cannot be reached" in str(err) and "curl" in str(err)
    assert REST_PW not in str(err)


def test_check_unreachable_sftp():
    err, runner = preflight({"cat_config": {"rc": 1, "stderr": CASES[8][2].splitlines()}}, version="0.14.0",
                            restic="sftp:root@127.0.0.1:/srv/x", port=2222, ssh_key="/k")
    assert err.reason == "unreachable" and "ssh" in str(err)
    assert "sftp.command=ssh -p 2222 -i /k" in " ".join(runner.calls[-1]["argv"])


def test_check_rest_credentials_refused():
    err, _r = preflight({"cat_config": {"rc": 1, "stderr": CASES[2][2].splitlines()}},
                        restic="rest:http://u:%s@nas:8000/u/" % REST_PW)
    assert err.reason == "auth" and "HTTP 401" in str(err) and REST_PW not in str(err)


def test_check_ssh_key_refused():
    err, _r = preflight({"cat_config": {"rc": 1, "stderr": CASES[3][2].splitlines()}}, version="0.14.0",
                        restic="sftp:root@nas:/srv/restic")
    assert err.reason == "auth" and "ssh_key" in str(err)


def test_no_secret_in_any_argv():
    runner = FakeRunner(cat_config={"rc": 0, "stdout": ["{}"]})
    t = target({"restic": "rest:http://u:%s@h:1/u/" % REST_PW}, runner=runner)
    t.check()
    t.sets()
    for call in runner.calls:
        assert SECRET not in " ".join(call["argv"]) and REST_PW not in " ".join(call["argv"])
        assert "RESTIC_PASSWORD" not in call["env"]
    assert runner.calls[-1]["env"]["RESTIC_REPOSITORY"] == "rest:http://u:%s@h:1/u/" % REST_PW


def test_user_password_file_is_passed_by_path(tmp_path):
    pw = tmp_path / "restic.pass"
    pw.write_text(SECRET + "\n")
    os.chmod(str(pw), 0o600)
    runner = FakeRunner(cat_config={"rc": 0, "stdout": ["{}"]})
    target({"password": None, "password_file": str(pw)}, runner=runner).check()
    assert runner.calls[-1]["env"]["RESTIC_PASSWORD_FILE"] == str(pw) and runner.calls[-1]["pass_fds"] == ()


# -- send with a fake restic ------------------------------------------------------------------------------
def sending_runner(set_dir, files, version="0.18.0", summary=SUMMARY_018, snapshots=None):
    listed = ls_lines(set_dir, files, snapshot_id="5d" * 32, old=version.startswith("0.14"))
    return FakeRunner(version=version, snapshots=[{"stdout": [json.dumps(snapshots or [])]},
                                                  {"stdout": [json.dumps([{"id": "5d" * 32}])]}],
                      backup={"stdout": [STATUS, summary]}, ls={"stdout": listed})


@pytest.mark.parametrize("style", ["dict", "kwargs"])
def test_send_reports_progress_counters_and_proof(tmp_path, style):
    set_dir = write_set(tmp_path, FILES)
    prev = snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z")
    runner = sending_runner(set_dir, FILES, snapshots=[prev])
    seen = []

    def by_dict(p):
        seen.append(p)

    def by_kwargs(**counters):
        seen.append(counters)
    t = target(runner=runner)
    got = t.send(set_dir, {"set_id": "20261202T020000Z", "immich_version": "v2.7.5", "server_version": "14.19"},
                 progress=by_dict if style == "dict" else by_kwargs)
    assert seen and seen[0]["bytes_done"] == 1000 and seen[0]["step"] == "restic"
    assert got["verified"] and got["snapshot_id"] == "5d" * 32 and got["parent"] == "a" * 64
    assert (got["files_new"], got["files_changed"], got["files_unmodified"], got["bytes_added"]) == (2, 5, 46, 116822)
    backup = next(c for c in runner.calls if "backup" in c["argv"])
    assert backup["cwd"] == set_dir and backup["argv"][-1] == "."
    assert "pg:14" in backup["argv"] and "--retry-lock" in backup["argv"]


def test_send_with_restic_014_resolves_the_short_snapshot_id(tmp_path):
    set_dir = write_set(tmp_path, FILES)
    runner = FakeRunner(version="0.14.0",
                        snapshots=[{"stdout": ["[]"]}, {"stdout": [json.dumps([{"id": "7e48a9e8" + "0" * 56}])]}],
                        backup={"stdout": [SUMMARY_014]},
                        ls={"stdout": ls_lines(set_dir, FILES, old=True)})
    got = target(runner=runner).send(set_dir, {"set_id": "20261202T020000Z"})
    assert got["snapshot_id"] == "7e48a9e8" + "0" * 56 and got["parent"] is None
    backup = next(c for c in runner.calls if "backup" in c["argv"])
    assert "--retry-lock" not in backup["argv"]


def test_send_whose_proof_fails_raises_and_forgets_the_snapshot(tmp_path):
    set_dir = write_set(tmp_path, FILES)
    runner = sending_runner(set_dir, FILES[:2])
    with pytest.raises(TargetError) as exc:
        target(runner=runner).send(set_dir, {"set_id": "20261202T020000Z"})
    assert exc.value.reason == "corrupt" and "2 missing" in str(exc.value)
    assert [c for c in runner.calls if words(c["argv"])[:1] == ["forget"]]


def test_send_stopped_while_restic_retries_a_full_server(tmp_path):
    set_dir = write_set(tmp_path, FILES)
    runner = FakeRunner(snapshots={"stdout": ["[]"]},
                        backup={"rc": 130, "stdout": [STATUS], "stderr": [CASES[13][2]], "tick": 1})
    t = target(runner=runner, stall_seconds=0)
    with pytest.raises(TargetError) as exc:
        t.send(set_dir, {"set_id": "20261202T020000Z"})
    assert exc.value.reason == "full" and "storage is full" in str(exc.value)


# -- locks ------------------------------------------------------------------------------------------------
LOCK_ID = "aa5b47d6" + "1" * 56
LOCK_JSON = ('{"time":"2026-12-01T17:35:39Z","exclusive":true,"hostname":"nas","username":"root","pid":4242}')


def test_live_lock_on_014_is_waited_for_by_our_own_bounded_loop(monkeypatch):
    monkeypatch.setattr(R.time, "sleep", lambda s: None)
    locked = {"rc": 1, "stderr": CASES[10][2].splitlines()}
    runner = FakeRunner(version="0.14.0", check={"rc": 1, "stderr": locked["stderr"]},
                        list_locks={"stdout": [LOCK_ID]}, cat_lock={"stdout": [LOCK_JSON]})
    t = target(runner=runner, lock_wait=0.2)
    with pytest.raises(TargetError) as exc:
        t.check_repository()
    assert exc.value.reason == "locked"
    assert "exclusive lock aa5b47d6 of pid 4242 on nas" in str(exc.value) and "let it finish" in str(exc.value)
    assert len([c for c in runner.calls if words(c["argv"]) == ["check"]]) >= 2  # retried
    assert [c for c in runner.calls if words(c["argv"]) == ["unlock"]]  # restic's own stale rules tried once


def test_lock_then_success_on_014(monkeypatch):
    monkeypatch.setattr(R.time, "sleep", lambda s: None)
    locked = {"rc": 1, "stderr": CASES[10][2].splitlines()}
    runner = FakeRunner(version="0.14.0", check=[locked, locked, {"rc": 0, "stdout": ["no errors were found"]}],
                        list_locks={"stdout": []})
    assert target(runner=runner, lock_wait=30).check_repository()["ok"]


def test_retry_lock_used_where_restic_has_it():
    runner = FakeRunner(check={"rc": 0, "stdout": ["no errors were found"]})
    target(runner=runner, lock_wait=120).check_repository("5%")
    argv = next(c["argv"] for c in runner.calls if "check" in c["argv"])
    assert argv[argv.index("--retry-lock") + 1] == "119s" or argv[argv.index("--retry-lock") + 1] == "120s"
    assert argv[-2:] == ["--read-data-subset", "5%"]


def test_stale_lock_removed_through_restic_unlock():
    runner = FakeRunner(list_locks=[{"stdout": [LOCK_ID]}, {"stdout": []}], cat_lock={"stdout": [LOCK_JSON]})
    got = target(runner=runner).lock({"pid": 1}, wait_seconds=30)
    assert got["removed_stale_locks"] == ["exclusive lock aa5b47d6 of pid 4242 on nas (user root) since "
                                          "2026-12-01 17:35:39 UTC"]
    assert [words(c["argv"]) for c in runner.calls if words(c["argv"])[0] == "unlock"] == [["unlock"]]


# -- retention: forget, append-only ------------------------------------------------------------------------
def test_delete_forgets_all_snapshots_of_the_sets():
    snaps = [snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z"), snap("b", "20261202T020000Z", "2026-12-02T02:10:00Z"),
             snap("c", "20261202T020000Z", "2026-12-02T03:10:00Z")]
    runner = FakeRunner(snapshots=[{"stdout": [json.dumps(snaps)]}, {"stdout": [json.dumps(snaps[:1])]}],
                        forget={"rc": 0})
    got = target(runner=runner).delete(["20261202T020000Z"])
    assert got["deleted"] == ["20261202T020000Z"] and got["snapshots_forgotten"] == 2
    forget = next(words(c["argv"]) for c in runner.calls if words(c["argv"])[0] == "forget")
    assert forget == ["forget", "b" * 64, "c" * 64]  # ids only: never restic's own --keep policy


def test_delete_on_append_only_rest_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setattr(R, "_rest_refuses_delete", lambda url, cacert=None: True)
    snaps = [snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z")]
    runner = FakeRunner(snapshots={"stdout": [json.dumps(snaps)]})
    t = target({"restic": "rest:http://u:p@h:1/u/"}, runner=runner)
    got = t.delete(["20261201T020000Z"])
    assert got == {"deleted": [], "skipped": ["20261201T020000Z"], "note": R.APPEND_ONLY_NOTE}
    assert t.retention_note == R.APPEND_ONLY_NOTE
    assert not [c for c in runner.calls if words(c["argv"])[0] == "forget"]
    assert t.prune_repository()["note"] == R.APPEND_ONLY_NOTE


def test_delete_refused_by_the_server_becomes_the_note():
    """restic 0.18 exits 0 when the server refused the delete: the snapshots still being there says it."""
    snaps = [snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z")]
    runner = FakeRunner(snapshots={"stdout": [json.dumps(snaps)]}, forget={"rc": 0, "stderr": CASES[12][2].splitlines()})
    t = target({"restic": "sftp:u@h:/r"}, runner=runner)
    assert t.delete(["20261201T020000Z"])["note"] == R.APPEND_ONLY_NOTE


def test_delete_that_leaves_snapshots_without_reason_fails():
    snaps = [snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z")]
    runner = FakeRunner(snapshots={"stdout": [json.dumps(snaps)]}, forget={"rc": 0})
    with pytest.raises(TargetError):
        target(runner=runner).delete(["20261201T020000Z"])


def test_check_repository_reports_damaged_packs():
    pack = "a8f2ab951640bb12a1646403c0102918e7a5fe26d387b0943d2f8ed464ee5560"
    out = ["check snapshots, trees and blobs", "read all data",
           "The repository contains damaged pack files. These damaged files must be removed to repair the repository.",
           "restic repair packs %s" % pack, "restic repair snapshots --forget"]
    runner = FakeRunner(check={"rc": 1, "stdout": out, "stderr": ["Fatal: repository contains errors"]})
    got = target(runner=runner).check_repository("100%")
    assert not got["ok"] and got["reason"] == "corrupt" and got["damaged_packs"] == [pack]
    assert "repair packs" in got["message"]
    old = FakeRunner(version="0.14.0", check={"rc": 1, "stdout": ["Pack ID does not match, want %s, got 00" % pack],
                                              "stderr": ["Fatal: repository contains errors"]})
    got = target(runner=old).check_repository("1/10")
    assert got["damaged_packs"] == [pack] and "rebuild-index" in got["message"]


# -- restore side -----------------------------------------------------------------------------------------
class FakeProc(object):
    def __init__(self, data, rc, err=()):
        import io  # noqa: PLC0415

        self.stdout = io.BytesIO(data)
        self._rc = rc
        self.stderr_tail = list(err)

    def wait(self, timeout=None):
        return self._rc

    def poll(self):
        return self._rc


def test_stream_raises_at_eof_when_restic_failed():
    t = target()
    t.version()
    ok = R.ResticStream(FakeProc(b"abc" * 1000, 0), t._error, "db/x.sql.gz")
    assert ok.read() == b"abc" * 1000 and ok.bytes == 3000
    bad = R.ResticStream(FakeProc(b"partial", 1, ["ciphertext verification failed"]), t._error, "db/x.sql.gz")
    assert bad.read(4) == b"part"
    with pytest.raises(TargetError) as exc:
        for _block in bad:
            pass
    assert exc.value.reason == "corrupt"


def test_fetch_set_refuses_a_non_empty_folder(tmp_path):
    runner = FakeRunner(snapshots={"stdout": [json.dumps([snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z")])]})
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    with pytest.raises(TargetError, match="not empty"):
        target(runner=runner).fetch_set("latest", str(tmp_path / "dest"))
    assert (tmp_path / "dest" / "keep.txt").read_text() == "mine"


def test_fetch_set_failing_restore_leaves_nothing(tmp_path):
    runner = FakeRunner(snapshots={"stdout": [json.dumps([snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z")])]},
                        restore={"rc": 1, "stderr": CASES[15][2].splitlines()})
    with pytest.raises(TargetError) as exc:
        target(runner=runner).fetch_set("20261201T020000Z", str(tmp_path / "dest"))
    assert exc.value.reason == "corrupt" and os.listdir(str(tmp_path)) == []


def test_resolve_latest_set_and_snapshot_prefix():
    snaps = [snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z"), snap("b", "20261202T020000Z", "2026-12-02T02:10:00Z")]
    t = target(runner=FakeRunner(snapshots={"stdout": [json.dumps(snaps)]}))
    assert t.resolve("latest") == ("20261202T020000Z", "b" * 64)
    assert t.resolve("20261201T020000Z") == ("20261201T020000Z", "a" * 64)
    assert t.resolve("aaaaaaaa") == ("20261201T020000Z", "a" * 64)
    with pytest.raises(TargetError):
        t.resolve("20250101T000000Z")
    empty = target(runner=FakeRunner(snapshots={"stdout": ["[]"]}))
    with pytest.raises(TargetError) as exc:
        empty.resolve("latest")
    assert exc.value.reason == "missing"


def test_describe_names_version_and_features():
    d = target(runner=FakeRunner(version="0.16.4")).describe()
    assert d["kind"] == "restic" and d["version"] == "0.16.4" and "retry_lock" in d["features"]
    assert "exit_codes" not in d["features"]


def test_parent_is_the_same_set_then_the_previous_then_the_newest():
    held = R.group_sets([snap("a", "20261201T020000Z", "2026-12-01T02:10:00Z"),
                         snap("b", "20261202T020000Z", "2026-12-02T02:10:00Z")], "home")
    assert R.ResticTarget._parent(held, "20261202T020000Z", "20261201T020000Z") == "b" * 64  # sent again
    assert R.ResticTarget._parent(held, "20261203T020000Z", "20261201T020000Z") == "a" * 64
    assert R.ResticTarget._parent(held, "20261203T020000Z", None) == "b" * 64
    assert R.ResticTarget._parent([], "20261203T020000Z", None) is None
