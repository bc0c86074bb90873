"""After side_effect (backup, change, backup, destroy, restore): the instance is the source again."""
import json
import os
import shlex
import subprocess

import pytest

HASH_ALL = r"""
import hashlib, json, os, sys
top = sys.argv[1]
out = {}
for folder in ("library", "upload", "profile", "backups"):
    for root, _d, names in os.walk(os.path.join(top, folder)):
        for n in names:
            full = os.path.join(root, n)
            h = hashlib.sha256()
            with open(full, "rb") as fh:
                h.update(fh.read())
            out[os.path.relpath(full, top)] = h.hexdigest()
print(json.dumps(out))
"""
# Immich rewrites every folder's .immich marker at boot: a restored marker is there, its bytes are the server's.
MARKER = ".immich"


def _tree(root):
    """Every path under root with its size, mtime and inode: what "changed nothing" is checked against."""
    out = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(base, name)
            st = os.lstat(full)
            out[os.path.relpath(full, root)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


@pytest.fixture(scope="module")
def hvars(host):
    return host.ansible.get_variables()


@pytest.fixture(scope="module")
def source(hvars):
    with open(os.path.join(hvars["molecule_lab_state"], "source.json")) as fh:
        return json.load(fh)


def psql(host, src, sql):
    cmd = host.run("docker exec -i %s psql -X -q -t -A -U %s -d %s -c %s" % (
        src["db"], src["user"], src["database"], json.dumps(sql)))
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def test_row_counts_are_the_source(host, hvars, source):
    tables = psql(host, source, "SELECT tablename FROM pg_tables WHERE schemaname='public' ORDER BY 1").split()
    counts = {}
    for t in tables:
        counts[t] = int(psql(host, source, 'SELECT count(*) FROM public."%s"' % t))
    with open(os.path.join(hvars["immich_report_dir"], "restore-%s.json" % hvars["inventory_hostname"])) as fh:
        restored = json.load(fh)["result"]
    # the transcodes are not backed up: the restore removed their rows so that Immich regenerates them
    removed = restored["regenerate"].get("asset_file_rows_removed", 0)
    assert removed == source["rows"].get("asset_file", 0) - counts.get("asset_file", 0)
    assert {t: n for t, n in counts.items() if t != "asset_file"} == {t: n for t, n in source["rows"].items() if t != "asset_file"}


def test_changed_rows_came_back(host, source):
    assert psql(host, source, source["probe_sql"]) == source["probe"]


def test_every_original_has_its_sha256(host, source):
    cmd = host.run("python3 -c %s %s" % (shlex.quote(HASH_ALL), shlex.quote(source["upload_location"])))
    assert cmd.rc == 0, cmd.stderr
    restored = json.loads(cmd.stdout)
    assert source["new_photo"] in restored
    assert sorted(restored) == sorted(source["files"])  # every file there, markers included
    assert {p: h for p, h in restored.items() if not p.endswith(MARKER)} == \
        {p: h for p, h in source["files"].items() if not p.endswith(MARKER)}


def test_server_answers_pong(host, source):
    cmd = host.run("python3 -c \"import urllib.request; print(urllib.request.urlopen("
                   "'http://127.0.0.1:%d/api/server/ping', timeout=5).read().decode())\"" % source["port"])
    assert cmd.rc == 0, cmd.stderr
    assert json.loads(cmd.stdout)["res"] == "pong"


def test_two_sets_share_unchanged_originals(host, hvars, source):
    root = os.path.join(hvars["immich_restore_source"], hvars["molecule_lab_name"])
    sets = sorted(n for n in os.listdir(root) if n[:1].isdigit())
    assert len(sets) == 2
    rel = sorted(p for p in source["files"] if p != source["new_photo"])[0]
    a = os.stat(os.path.join(root, sets[0], "files", rel))
    b = os.stat(os.path.join(root, sets[1], "files", rel))
    assert a.st_ino == b.st_ino
    assert oct(a.st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.join(root, sets[1])).st_mode & 0o777) == "0o700"


def test_check_mode_changes_nothing(host, hvars, source):
    root = os.path.join(hvars["immich_restore_source"], hvars["molecule_lab_name"])
    started = host.run("docker inspect -f '{{.State.StartedAt}}' %s" % source["db"]).stdout
    before = (_tree(root), _tree(source["upload_location"]), started,
              psql(host, source, "SELECT count(*) FROM asset"))
    inv = os.environ["MOLECULE_INVENTORY_FILE"]
    for playbook, extra in (("homelab.immich.backup", []), ("homelab.immich.restore", ["-e", "immich_restore_confirm=true"])):
        res = subprocess.run(["ansible-playbook", "--check", "-i", inv, playbook] + extra,
                             capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        assert "would" in res.stdout or "Check mode" in res.stdout
    after = (_tree(root), _tree(source["upload_location"]),
             host.run("docker inspect -f '{{.State.StartedAt}}' %s" % source["db"]).stdout,
             psql(host, source, "SELECT count(*) FROM asset"))
    assert after == before
