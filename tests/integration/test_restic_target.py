"""ResticTarget against real restic (trixie's 0.18 and bookworm's 0.14), a real restic REST server and
a real SFTP host (the lab's sshhost image), with small fake sets (tests/lab/offsite.py): no Immich.

Each fault: a clear message, nothing lost, and the next run succeeds.
"""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

import offsite
from ansible_collections.homelab.immich.plugins.module_utils.targets import TargetError
from ansible_collections.homelab.immich.plugins.module_utils.targets.restic import (
    APPEND_ONLY_NOTE,
    ResticTarget,
    Runner,
)

BINS = offsite.restic_binaries()
NEW = BINS.get("0.18") or (BINS[max(BINS)] if BINS else None)
OLD = BINS.get("0.14")
PASSWORD = "correct horse battery staple"
INSTANCE = "home"
pytestmark = pytest.mark.skipif(not BINS or not shutil.which("restic-rest-server"),
                                reason="restic / restic-rest-server missing: run `make setup` (tests/lab/engine.sh)")


def binary(version):
    path = {"new": NEW, "old": OLD}[version]
    if not path:
        pytest.skip("no restic %s here (tests/lab/engine.sh unpacks bookworm's 0.14)" % version)
    return path


class RecordingRunner(Runner):
    """The real runner, remembering every argv and environment (to prove no secret is in argv)."""

    def __init__(self):
        Runner.__init__(self, grace=5)
        self.calls = []

    def run(self, argv, env, **kw):
        self.calls.append((list(argv), dict(env)))
        return Runner.run(self, argv, env, **kw)

    def spawn(self, argv, env, **kw):
        self.calls.append((list(argv), dict(env)))
        return Runner.spawn(self, argv, env, **kw)


def make_target(tmp_path, repo, restic, password=PASSWORD, **kw):
    spec = dict(repo) if isinstance(repo, dict) else {"restic": repo}
    spec.update(password=password, restic_binary=restic, cache_dir=str(tmp_path / "cache"), stall_seconds=3,
                connect_seconds=3, lock_wait=3)
    spec.update(kw)
    return ResticTarget(spec, INSTANCE, runner=RecordingRunner())


def raw(restic, repo, *args, password=PASSWORD, check=True, extra_env=None, **kw):
    """restic run directly (what a user would type), for what the tests look at behind the target's back."""
    env = dict(os.environ, RESTIC_REPOSITORY=repo, RESTIC_PASSWORD=password, RESTIC_CACHE_DIR="/tmp/restic-test-cache")
    env.update(extra_env or {})
    return subprocess.run([restic, *args], env=env, capture_output=True, text=True, check=check, **kw)


def sets_root(tmp_path):
    return str(tmp_path / "sets")


def first_two_sets(tmp_path, **kw):
    s1 = offsite.make_set(sets_root(tmp_path), INSTANCE, "20261201T020000Z", files=kw.pop("files", 40), **kw)
    return s1, next_set(tmp_path, s1, "20261202T020000Z")


def next_set(tmp_path, previous, set_id, **kw):
    """The next night's set: every original hard-linked to ``previous`` (their ctime changes now)."""
    kw.setdefault("new_files", 0)
    return offsite.make_set(sets_root(tmp_path), INSTANCE, set_id, previous=previous["set_dir"], **kw)


def assert_identical(restored_root, set_dir):
    manifest = offsite.read_manifest(set_dir)
    assert manifest
    for rel, (size, sha) in manifest.items():
        path = os.path.join(restored_root, rel)
        assert os.path.getsize(path) == size, rel
        assert offsite.sha256_file(path) == sha, rel


@pytest.fixture
def rest(tmp_path):
    server = offsite.RestServer(str(tmp_path / "rest-data"), private_repos=True, users={"backup": "rest-pw-1"})
    with server:
        yield server


@pytest.fixture(scope="module")
def sftp_host(lab, tmp_path_factory):
    host = offsite.SftpHost(str(tmp_path_factory.mktemp("sftp")), lab.images()["LAB_IMAGE_SSHHOST"])
    with host:
        yield host


def repo_for(kind, tmp_path, rest_server=None, sftp=None):
    if kind == "rest":
        return rest_server.url("backup", "backup")
    if kind == "sftp":
        return sftp.spec("/srv/restic-%s" % os.path.basename(str(tmp_path)))
    return str(tmp_path / "repo")


# -- the round trip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,version", [("rest", "new"), ("sftp", "new"), ("local", "old")])
def test_round_trip_unchanged_night_reads_nothing(kind, version, tmp_path, request):
    restic = binary(version)
    rest_server = request.getfixturevalue("rest") if kind == "rest" else None
    sftp = request.getfixturevalue("sftp_host") if kind == "sftp" else None
    repo = repo_for(kind, tmp_path, rest_server, sftp)
    s1 = offsite.make_set(sets_root(tmp_path), INSTANCE, "20261201T020000Z", files=40)

    # init only when asked
    with pytest.raises(TargetError) as exc:
        make_target(tmp_path, repo, restic).check()
    assert exc.value.reason == "missing" and "init: true" in str(exc.value)
    print("user sees: %s" % exc.value)
    made = make_target(tmp_path, repo, restic, init=True).check()
    assert made["initialized"] is True and made["repository_version"] == 2
    target = make_target(tmp_path, repo, restic, init=True)
    again = target.check()
    assert again["initialized"] is False and again["repository_id"] == made["repository_id"]
    assert target.describe()["version"] == again["version"]
    assert target.lock(None, wait_seconds=5) == {"removed_stale_locks": []}

    seen = []
    first = target.send(s1["set_dir"], s1["set_info"], progress=seen.append)
    s2 = next_set(tmp_path, s1, "20261202T020000Z")  # after night 1, as the engine does: ctimes change now
    second = target.send(s2["set_dir"], s2["set_info"])
    originals = len(s1["files"])
    assert first["verified"] and first["files_new"] == first["proof"]["files_in_snapshot"]
    assert first["proof"]["manifest_files"] == originals and first["proof"]["missing"] == 0
    # night 2, nothing changed in the library: no original is read again; only the set's own small files
    # (set.json, instance.json, files.manifest.tsv, compose/, the new dump and its manifest) are
    assert second["verified"] and second["parent"] == first["snapshot_id"]
    assert second["files_unmodified"] == originals
    assert second["files_read"] == second["proof"]["files_in_snapshot"] - originals
    assert second["bytes_added"] < 200 * 1024
    if kind == "local":
        # what the flags buy: the same night by restic's defaults re-reads every hard-linked original
        s3 = next_set(tmp_path, s2, "20261203T020000Z")
        plain = raw(restic, repo, "--no-cache", "backup", "--json", "--host", INSTANCE, "--parent",
                    second["snapshot_id"], ".", cwd=s3["set_dir"]).stdout.strip().splitlines()[-1]
        assert json.loads(plain)["files_changed"] >= originals
        raw(restic, repo, "--no-cache", "forget", json.loads(plain)["snapshot_id"])
    print("night 1: %(files_read)d files read, %(bytes_added)d bytes added, %(backup_seconds).2fs" % first)
    print("night 2: %(files_read)d files read (%(files_unmodified)d unmodified), %(bytes_added)d bytes added, "
          "%(backup_seconds).2fs" % second)

    held = target.sets()
    assert [h["set_id"] for h in held] == ["20261201T020000Z", "20261202T020000Z"] and all(h["good"] for h in held)
    tags = held[1]["info"]["tags"]
    assert {"instance:home", "set:20261202T020000Z", "immich:2.7.5", "pg:14"} <= set(tags)
    assert held[1]["info"]["hostname"] == INSTANCE

    restored = str(tmp_path / "restored")
    got = target.fetch_set("latest", restored)
    assert got["set_id"] == "20261202T020000Z" and got["verified"] and got["missing"] == 0
    assert_identical(os.path.join(restored, "files"), s2["set_dir"])
    assert os.stat(os.path.join(restored, "compose", ".env")).st_mode & 0o777 == 0o600
    assert_no_secret_in_argv(target)
    if kind == "sftp":
        return  # each restic command is an SSH login here: the rest of the API is covered by the others
    part = str(tmp_path / "originals")
    got = target.fetch_set("20261201T020000Z", part, subfolder="files", include=["upload"])
    assert sorted(os.listdir(part)) == ["upload"]
    assert got["checked_files"] == len([f for f in s1["files"] if f.startswith("upload/")])
    with target.stream_file("latest", s2["set_info"]["dump"]) as stream:
        dump = stream.read()
    with open(os.path.join(s2["set_dir"], s2["set_info"]["dump"]), "rb") as fh:
        assert dump == fh.read()

    assert target.delete(["20261201T020000Z"])["deleted"] == ["20261201T020000Z"]
    assert [h["set_id"] for h in target.sets()] == ["20261202T020000Z"]
    assert target.check_repository("100%")["ok"]
    assert target.prune_repository()["ok"]
    assert_no_secret_in_argv(target)


def assert_no_secret_in_argv(target):
    """No secret ever in argv; the password went through a file, the repository through the environment."""
    rest_pw = "rest-pw-1"
    for argv, env in target.runner.calls:
        joined = " ".join(argv)
        assert PASSWORD not in joined and rest_pw not in joined
        if argv[1:] == ["version"]:
            continue
        assert env["RESTIC_PASSWORD_FILE"].startswith("/dev/fd/") and "RESTIC_PASSWORD" not in env
        assert env["RESTIC_REPOSITORY"] == target.repository
    assert rest_pw not in target.label


# -- faults ------------------------------------------------------------------------------------------
def test_wrong_password_then_right_one(rest, tmp_path):
    repo = rest.url("backup", "backup")
    good = make_target(tmp_path, repo, NEW, init=True)
    good.check()
    s1, s2 = first_two_sets(tmp_path, files=5)
    good.send(s1["set_dir"], s1["set_info"])
    bad = make_target(tmp_path, repo, NEW, password="not the password")
    with pytest.raises(TargetError) as exc:
        bad.check()
    assert exc.value.reason == "auth"
    print("user sees: %s" % exc.value)
    assert "this password does not open it" in str(exc.value) and "password_file" in str(exc.value)
    assert "not the password" not in str(exc.value)
    # the REST server's own credentials wrong: another message
    wrong_url = make_target(tmp_path, repo.replace("rest-pw-1", "wrong-rest-pw"), NEW)
    with pytest.raises(TargetError) as exc:
        wrong_url.check()
    assert exc.value.reason == "auth" and "HTTP 401" in str(exc.value) and "wrong-rest-pw" not in str(exc.value)
    print("user sees: %s" % exc.value)
    # nothing lost, the next run with the right password works
    assert [h["set_id"] for h in good.sets()] == ["20261201T020000Z"]
    assert good.send(s2["set_dir"], s2["set_info"])["verified"]


def test_repository_missing_is_not_created_unless_asked(tmp_path):
    repo = str(tmp_path / "usb" / "restic")
    with pytest.raises(TargetError) as exc:
        make_target(tmp_path, repo, NEW).check()
    assert exc.value.reason == "missing"
    print("user sees: %s" % exc.value)
    assert "no restic repository at this location" in str(exc.value) and "init: true" in str(exc.value)
    assert not os.path.exists(repo)
    assert make_target(tmp_path, repo, NEW, init=True).check()["initialized"]


def test_unreachable_hosts_fail_fast_then_work(sftp_host, tmp_path):
    spec = sftp_host.spec("/srv/restic-unreach")
    target = make_target(tmp_path, spec, NEW, init=True)
    target.check()
    s1, _s2 = first_two_sets(tmp_path, files=5)
    sftp_host.kill()
    try:
        t0 = time.monotonic()
        with pytest.raises(TargetError) as exc:
            make_target(tmp_path, spec, NEW).check()
        assert exc.value.reason == "unreachable" and time.monotonic() - t0 < 20
        print("user sees: %s" % exc.value)
        assert "cannot be reached" in str(exc.value) and "ssh" in str(exc.value)
    finally:
        sftp_host.start_again()
    assert target.send(s1["set_dir"], s1["set_info"])["verified"]
    # a REST server nobody runs: restic would retry for 15 minutes; the preflight gives up after connect_seconds
    t0 = time.monotonic()
    with pytest.raises(TargetError) as exc:
        make_target(tmp_path, "rest:http://127.0.0.1:%d/" % offsite.free_port(), NEW).check()
    assert exc.value.reason == "unreachable" and "connection refused" in str(exc.value)
    print("user sees: %s" % exc.value)
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("side", ["rest", "sftp"])
def test_connection_cut_mid_upload_then_next_run_completes(side, tmp_path, request):
    if side == "rest":
        server = request.getfixturevalue("rest")
        repo = server.url("backup", "backup")
    else:
        host = request.getfixturevalue("sftp_host")
        repo = host.spec("/srv/restic-cut")
    target = make_target(tmp_path, repo, NEW, init=True, limit_upload=6000)
    target.check()
    s1 = offsite.make_set(sets_root(tmp_path), INSTANCE, "20261201T020000Z", files=5, big=20 << 20)
    cut = []

    def progress(p):
        if not cut and p["bytes_done"] > 4 << 20:
            cut.append(p["bytes_done"])
            if side == "rest":
                server.kill()
            else:
                host.cut()
    try:
        with pytest.raises(TargetError) as exc:
            target.send(s1["set_dir"], s1["set_info"], progress=progress)
    finally:
        if side == "rest":
            server.start()
    assert cut, "the cut never happened"
    assert exc.value.reason == "unreachable", str(exc.value)
    print("user sees: %s" % exc.value)
    assert "the next run sends it" in str(exc.value)
    assert target.sets() == []  # no half snapshot
    again = make_target(tmp_path, repo, NEW)
    again.lock(None, wait_seconds=5)
    done = again.send(s1["set_dir"], s1["set_info"])
    assert done["verified"] and [h["set_id"] for h in again.sets()] == ["20261201T020000Z"]
    if side == "rest":  # (over SFTP every restic command costs an SSH login: checked once is enough)
        assert again.check_repository()["ok"]


@pytest.mark.parametrize("version", ["new", "old"])
def test_stale_lock_of_killed_backup_is_removed_and_live_lock_waited_for(version, tmp_path):
    restic = binary(version)
    repo = str(tmp_path / "repo")
    target = make_target(tmp_path, repo, restic, init=True, limit_upload=3000)
    target.check()
    s1, s2 = first_two_sets(tmp_path, files=5)
    big = offsite.make_set(sets_root(tmp_path), "other", "20261203T020000Z", files=2, big=12 << 20)
    killed = []

    def progress(p):
        if not killed and target.runner.pid and p["bytes_done"] > 0:
            killed.append(target.runner.pid)
            os.kill(target.runner.pid, signal.SIGKILL)
    with pytest.raises(TargetError) as exc:
        target.send(big["set_dir"], big["set_info"], progress=progress)
    assert killed and exc.value.reason == "interrupted"
    locks = make_target(tmp_path, repo, restic).locks()
    assert [lk["pid"] for lk in locks] == killed  # the dead run's lock is still there
    # the next run: restic's own rules call it stale (its process is gone from this host): unlock removes it
    nxt = make_target(tmp_path, repo, restic)
    removed = nxt.lock(None, wait_seconds=5)["removed_stale_locks"]
    assert len(removed) == 1 and "pid %d" % killed[0] in removed[0]
    assert nxt.locks() == []
    assert nxt.send(s1["set_dir"], s1["set_info"])["verified"]

    # a LIVE lock (another restic holds it) is waited for up to lock_wait, then named
    env = dict(os.environ, RESTIC_REPOSITORY=repo, RESTIC_PASSWORD=PASSWORD)
    holder = subprocess.Popen([restic, "backup", "--stdin", "--stdin-filename", "hold", "--no-cache", "-q"], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _i in range(50):
            if nxt.locks():
                break
            time.sleep(0.2)
        t0 = time.monotonic()
        with pytest.raises(TargetError) as exc:
            nxt.check_repository()
        waited = time.monotonic() - t0
        assert exc.value.reason == "locked" and 3 <= waited < 20
        print("user sees: %s" % exc.value)
        assert "shared lock" in str(exc.value) and "on %s" % os.uname()[1] in str(exc.value)
        assert "let it finish" in str(exc.value)
        # while that backup runs, ours (a shared lock too) goes on
        assert nxt.send(s2["set_dir"], s2["set_info"])["verified"]
    finally:
        holder.send_signal(signal.SIGINT)
        holder.stdin.close()
        holder.wait(15)
    assert nxt.check_repository()["ok"]


def test_corrupted_pack_is_reported_and_never_restored_as_good(rest, tmp_path):
    repo = rest.url("backup", "backup")
    target = make_target(tmp_path, repo, NEW, init=True)
    target.check()
    s1 = offsite.make_set(sets_root(tmp_path), INSTANCE, "20261201T020000Z", files=30, size=64 * 1024)
    target.send(s1["set_dir"], s1["set_info"])
    data = os.path.join(rest.data_dir, "backup", "data")
    packs = sorted((os.path.getsize(os.path.join(d, f)), os.path.join(d, f))
                   for d, _s, files in os.walk(data) for f in files)
    size, victim = packs[-1]
    os.chmod(victim, 0o600)
    with open(victim, "r+b") as fh:  # flip bytes in the middle of the largest pack (originals live there)
        fh.seek(size // 2)
        block = fh.read(64)
        fh.seek(size // 2)
        fh.write(bytes(b ^ 0xFF for b in block))
    report = target.check_repository("100%")
    print("check reports: %s" % report["message"])
    assert not report["ok"] and report["reason"] == "corrupt"
    assert os.path.basename(victim) in report["damaged_packs"]
    assert "repair packs" in report["message"]
    dest = str(tmp_path / "restore")
    with pytest.raises(TargetError) as exc:
        target.fetch_set("latest", dest)
    assert exc.value.reason == "corrupt" and "Do not restore from it" in str(exc.value)
    print("user sees: %s" % exc.value)
    assert not os.path.exists(dest) and not [n for n in os.listdir(str(tmp_path)) if "restic-partial" in n]
    # the advice works: repair, and the next run uploads what was lost and restores byte-identical
    # `repair packs` writes the salvaged pack into its working folder: keep it out of the checkout
    raw(NEW, repo, "--no-cache", "repair", "packs", os.path.basename(victim), cwd=str(tmp_path))
    raw(NEW, repo, "--no-cache", "repair", "snapshots", "--forget")
    s2 = offsite.make_set(sets_root(tmp_path), INSTANCE, "20261202T020000Z", previous=s1["set_dir"], new_files=0)
    assert target.send(s2["set_dir"], s2["set_info"])["verified"]
    assert target.check_repository("100%")["ok"]
    target.fetch_set("20261202T020000Z", dest)
    assert_identical(os.path.join(dest, "files"), s2["set_dir"])


def test_corrupted_dump_stream_raises_at_the_end(tmp_path):
    repo = str(tmp_path / "repo")
    target = make_target(tmp_path, repo, NEW, init=True)
    target.check()
    s1 = offsite.make_set(sets_root(tmp_path), INSTANCE, "20261201T020000Z", files=2)
    target.send(s1["set_dir"], s1["set_info"])
    for top, _dirs, files in os.walk(os.path.join(repo, "data")):
        for name in files:
            path = os.path.join(top, name)
            os.chmod(path, 0o600)
            with open(path, "r+b") as fh:
                fh.seek(os.path.getsize(path) // 3)
                fh.write(b"\0" * 32)
    stream = target.stream_file("latest", s1["set_info"]["dump"])
    with pytest.raises(TargetError) as exc:
        stream.read()
    stream.close()
    assert exc.value.reason == "corrupt"
    print("user sees: %s" % exc.value)


@pytest.fixture
def small_disk(tmp_path):
    mount = str(tmp_path / "small-disk")
    os.makedirs(mount)
    got = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mount], capture_output=True, text=True, check=False)
    if got.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s)" % got.stderr.strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", mount], check=False)


def test_repository_disk_full_then_space_freed(small_disk, tmp_path):
    server = offsite.RestServer(os.path.join(small_disk, "data"))
    with server:
        repo = server.url()
        target = make_target(tmp_path, repo, NEW, init=True)
        target.check()
        s1 = offsite.make_set(sets_root(tmp_path), INSTANCE, "20261201T020000Z", files=5)
        target.send(s1["set_dir"], s1["set_info"])
        s2 = offsite.make_set(sets_root(tmp_path), INSTANCE, "20261202T020000Z", previous=s1["set_dir"],
                              big=24 << 20)
        with pytest.raises(TargetError) as exc:
            target.send(s2["set_dir"], s2["set_info"])
        assert exc.value.reason == "full", str(exc.value)
        print("user sees: %s" % exc.value)
        assert "storage is full" in str(exc.value) and "existing ones are intact" in str(exc.value)
        assert [h["set_id"] for h in target.sets()] == ["20261201T020000Z"]
        subprocess.run(["mount", "-o", "remount,size=96m", small_disk], check=True)
        assert target.send(s2["set_dir"], s2["set_info"])["verified"]
        assert target.check_repository()["ok"]


def test_append_only_backs_up_but_cannot_delete(tmp_path):
    data = str(tmp_path / "rest-data")
    users = {"backup": "append-pw"}
    appendonly = offsite.RestServer(data, append_only=True, private_repos=True, users=users)
    with appendonly:
        repo = appendonly.url("backup", "backup")
        target = make_target(tmp_path, repo, NEW, init=True)
        target.check()
        s1, s2 = first_two_sets(tmp_path, files=5)
        target.send(s1["set_dir"], s1["set_info"])
        target.send(s2["set_dir"], s2["set_info"])
        out = target.delete(["20261201T020000Z"])
        assert out["deleted"] == [] and out["note"] == APPEND_ONLY_NOTE == target.retention_note
        assert target.prune_repository()["note"] == APPEND_ONLY_NOTE
        held = target.sets()
        assert [h["set_id"] for h in held] == ["20261201T020000Z", "20261202T020000Z"]
        # the backup credential cannot delete a snapshot, even with restic by hand
        snap = held[0]["info"]["snapshot_id"]
        raw(NEW, repo, "--no-cache", "forget", snap, check=False)
        assert os.path.exists(os.path.join(data, "backup", "snapshots", snap))
        assert snap in raw(NEW, repo, "--no-cache", "snapshots", "--json").stdout
    # the other credential: the same repository served without --append-only (e.g. from the NAS itself)
    admin = offsite.RestServer(data, private_repos=True, users=users)
    with admin:
        other = make_target(tmp_path, admin.url("backup", "backup"), NEW)
        assert other.delete(["20261201T020000Z"])["deleted"] == ["20261201T020000Z"]
        assert other.prune_repository()["ok"]
        assert [h["set_id"] for h in other.sets()] == ["20261202T020000Z"]


def test_append_only_with_old_restic(tmp_path):
    restic = binary("old")
    users = {"backup": "append-pw"}
    with offsite.RestServer(str(tmp_path / "rest-data"), append_only=True, private_repos=True, users=users) as server:
        target = make_target(tmp_path, server.url("backup", "backup"), restic, init=True)
        target.check()
        s1, _s2 = first_two_sets(tmp_path, files=3)
        assert target.send(s1["set_dir"], s1["set_info"])["verified"]
        t0 = time.monotonic()
        assert target.delete(["20261201T020000Z"])["note"] == APPEND_ONLY_NOTE
        assert time.monotonic() - t0 < 10  # probed, not 45 s of restic 0.14 retrying the 403


def test_concurrent_threads_do_not_share_password_files(tmp_path):
    """Two targets used from two threads at once (the engine may check targets in parallel)."""
    repo = str(tmp_path / "repo")
    make_target(tmp_path, repo, NEW, init=True).check()
    errors = []

    def worker():
        try:
            for _i in range(3):
                make_target(tmp_path, repo, NEW).sets()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker) for _i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
