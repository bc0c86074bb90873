"""Offsite that survives losing the house (issue 11): the engine writes restic repositories (REST server and
SFTP) as targets; the instance, its compose folder and the local backups are destroyed; homelab.immich.recover
brings the instance back from each repository alone into a new folder and proves it through Immich's API."""
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest
import timer
from offsite import RestServer, SftpHost
from rolerun import run_playbook, write_inventory

from ansible_collections.homelab.immich.plugins.module_utils import sets

PASSWORD = "correct horse battery staple"


@pytest.fixture
def offsite(lab, tmp_path):
    rest = RestServer(str(tmp_path / "rest-data"), users={"immich": "rest-secret"}, private_repos=True).start()
    sftp = SftpHost(str(tmp_path), lab.images()["LAB_IMAGE_SSHHOST"]).start()
    yield {"rest": rest, "sftp": sftp}
    rest.stop()
    sftp.stop()


def prove(inst, seeded):
    """Login with the same credentials, every original's SHA-1, every thumbnail and preview, the album."""
    token = inst.login(seeded["admin"]["email"], seeded["admin"]["password"])
    for asset in seeded["assets"]:
        owner = next((u for u in seeded["users"] if u["userId"] == asset["ownerId"]), None)
        who = inst.login(owner["email"], owner["password"]) if owner else token
        status, body = inst.api("GET", "/api/assets/%s/original" % asset["id"], token=who, raw=True)
        assert status == 200 and hashlib.sha1(body, usedforsecurity=False).hexdigest() == asset["sha1"], asset
        for size in ("thumbnail", "preview"):
            status, _body = inst.api("GET", "/api/assets/%s/thumbnail?size=%s" % (asset["id"], size), token=who, raw=True)
            assert status == 200, (asset["id"], size, status)
    status, album = inst.api("GET", "/api/albums/%s" % seeded["album"]["id"], token=token)
    assert status == 200 and sorted(a["id"] for a in album["assets"]) == sorted(seeded["album"]["assetIds"])
    assert inst.ping()


def test_the_house_burns_and_the_instance_comes_back_from_each_repository(make_instance, offsite, tmp_path, lab):
    inst = make_instance(pg=15, seed="api", name="o15-burn-" + os.urandom(3).hex())
    seeded = inst.seed_result
    local = str(tmp_path / "backups")
    rest = {"restic": offsite["rest"].url("immich", "immich"), "password": PASSWORD, "init": True}
    sftp = offsite["sftp"].spec(password=PASSWORD, init=True)
    cfg = timer.write_config(tmp_path / "timer.json", inst, [{"path": local}, rest, sftp])
    res = timer.run(cfg, report=tmp_path / "last.json")
    assert res.returncode == 0, res.stdout + res.stderr
    last = json.load(open(str(tmp_path / "last.json")))
    assert [t["status"] for t in last["targets"]] == ["ok", "ok"] and all(t["verified"] for t in last["targets"])
    assert PASSWORD not in res.stdout + res.stderr + json.dumps(last)
    info = sets.read_info(os.path.join(local, inst.name, last["set_id"]))
    before = info["rows_by_table"]

    for name, spec in (("rest", rest), ("sftp", sftp)):
        # the house burns: the instance, its compose project folder and the backup disk beside it
        inst.compose("down", "-v", check=False)
        shutil.rmtree(inst.root, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)
        new_home = str(tmp_path / ("recovered-" + name))
        repo = dict(spec, init=False)
        inv = write_inventory(tmp_path, inst, immich_recover_repository=repo, immich_recover_instance_name=inst.name,
                              immich_recover_project_dir=new_home, immich_recover_staging_dir=str(tmp_path / "staging"))
        rc, out = run_playbook(inv, "recover")
        assert rc == 0, out[-5000:]
        assert PASSWORD not in out and "rest-secret" not in out
        assert "images: database %s" % inst.image("postgres") in out or "images: database" in out
        report = json.load(open(os.path.join(str(tmp_path), "reports", "restore-lab.json")))["result"]
        assert report["set_id"] == last["set_id"] and report["ping"] == "pong"
        assert report["db"]["rows_by_table"] == before
        assert os.listdir(os.path.join(str(tmp_path / "staging"), inst.name)) == []  # the set and its marker
        # the fetched copy gave its files up (renamed after the sha256 check: one filesystem here), none copied
        assert report["files"]["moved"] == report["files"]["files"] == info["files"] > 0, report["files"]
        # the recovered instance is the lab instance again, from its new folder
        inst.root = new_home
        prove(inst, seeded)
    subprocess.run(["docker", "compose", "--project-directory", inst.root, "down", "-v"], capture_output=True, check=False)


def test_recover_refuses_a_folder_that_holds_a_compose_project(make_instance, offsite, tmp_path):
    inst = make_instance(pg=15, seed="small", name="o15-occ-" + os.urandom(3).hex())
    rest = {"restic": offsite["rest"].url("immich", "immich"), "password": PASSWORD, "init": True}
    res = timer.run(timer.write_config(tmp_path / "timer.json", inst, [{"path": str(tmp_path / "b")}, rest]))
    assert res.returncode == 0, res.stdout + res.stderr
    inv = write_inventory(tmp_path, inst, immich_recover_repository=dict(rest, init=False),
                          immich_recover_instance_name=inst.name, immich_recover_project_dir=inst.root)
    rc, out = run_playbook(inv, "recover")
    assert rc != 0 and "already holds a compose project" in out and "Nothing was touched" in out
    assert inst.ping()
    wrong = dict(rest, init=False, password="not the password")
    inv = write_inventory(tmp_path, inst, immich_recover_repository=wrong, immich_recover_instance_name=inst.name,
                          immich_recover_project_dir=str(tmp_path / "elsewhere"))
    rc, out = run_playbook(inv, "recover")
    assert rc != 0 and "password" in out and "not the password" not in out
    assert not os.path.exists(str(tmp_path / "elsewhere" / "docker-compose.yml"))


def test_repository_upkeep_append_only_and_an_unreachable_repository(make_instance, lab, tmp_path):
    """prune and check on their own schedule; an append-only REST server keeps every snapshot and says why; a
    repository that cannot be reached fails that target only, and the next run sends the set."""
    inst = make_instance(pg=15, seed="small", name="o15-keep-" + os.urandom(3).hex())
    local = str(tmp_path / "backups")
    server = RestServer(str(tmp_path / "ao-data"), append_only=True).start()
    try:
        repo = {"restic": server.url(repo="immich"), "password": PASSWORD, "init": True}
        policy = {"retention": {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_good": 1}}
        cfg = timer.write_config(tmp_path / "timer.json", inst, [{"path": local}, repo], policy)
        reports = []
        for _night in range(3):
            res = timer.run(cfg, report=tmp_path / "last.json")
            assert res.returncode == 0, res.stdout + res.stderr
            reports.append(json.load(open(str(tmp_path / "last.json"))))
            time.sleep(1.1)
        steps = [[s["name"] for s in r["steps"]] for r in reports]
        label = reports[0]["targets"][0]["label"]
        assert "prune %s" % label in steps[0] and "check %s" % label in steps[0]  # due on the first run
        assert "prune %s" % label not in steps[1] and "check %s" % label not in steps[1]  # then weekly
        assert "append-only" in reports[0]["targets"][0]["prune"]["note"]
        assert reports[0]["targets"][0]["check"]["ok"]
        assert "append-only" in (reports[2]["retention"][label]["note"] or "")
        # with the backup credential nothing could be deleted: every night's snapshot is still there
        listed = subprocess.run(["restic", "snapshots", "--json"], capture_output=True, text=True, check=True,
                                env=dict(os.environ, RESTIC_REPOSITORY=repo["restic"], RESTIC_PASSWORD=PASSWORD))
        assert len(json.loads(listed.stdout)) == 3
        assert len(sets.list_sets(sets.instance_root(local, inst.name))) == 1  # the local target was pruned
        # the repository goes away: that target fails, the set is promoted, the next run sends it
        server.stop()
        res = timer.run(cfg, report=tmp_path / "last.json")
        assert res.returncode == 2, res.stdout + res.stderr
        down = json.load(open(str(tmp_path / "last.json")))
        assert down["status"] == "partial" and down["targets"][0]["status"] == "failed"
        assert down["targets"][0]["reason"] == "unreachable" and PASSWORD not in json.dumps(down)
        assert os.path.isdir(down["set_dir"])
        server.start()
        time.sleep(1.1)
        res = timer.run(cfg, report=tmp_path / "last.json")
        assert res.returncode == 0, res.stdout + res.stderr
        assert json.load(open(str(tmp_path / "last.json")))["targets"][0]["verified"]
    finally:
        server.stop()


def test_drill_and_restore_from_the_repository_alone(make_instance, offsite, tmp_path):
    """The "house burned" drill from the REST repository (its download in the RTO, the repository named without its
    password, nothing left behind), then a restore of production with immich_restore_source a repository and the
    local sets gone: the same guards (fetch, verify with the set's signature, gate) and the same proof."""
    from test_drill import CHECKS, drill  # noqa: PLC0415 - shares the drill runner and its checks

    inst = make_instance(pg=15, seed="api", name="o15-rdr-" + os.urandom(3).hex())
    seeded = inst.seed_result
    rest = {"restic": offsite["rest"].url("immich", "immich"), "password": PASSWORD, "init": True}
    inv = write_inventory(tmp_path, inst, immich_backup_targets=[{"path": str(tmp_path / "backups")}, rest])
    rc, out = run_playbook(inv, "backup")
    assert rc == 0, out[-5000:]
    backed = json.load(open(os.path.join(str(tmp_path), "reports", "backup-lab.json")))["result"]
    sid = backed["set_id"]
    before = inst.row_counts()
    repo = dict(rest, init=False)

    reports, scratch_root = tmp_path / "drill-reports", tmp_path / "scratch"
    res = drill(tmp_path, inst, tmp_path / "backups", reports, scratch_root, immich_drill_source=repo)
    assert res.returncode == 0, res.stdout[-6000:]
    assert PASSWORD not in res.stdout + res.stderr and "rest-secret" not in res.stdout + res.stderr
    report = json.loads((reports / "drill-localhost.json").read_text())
    assert report["status"] == "ok" and report["set_id"] == sid and report["leftovers"] == []
    assert report["source"].startswith("restic:rest:") and "snapshot" in report["source"] and "rest-secret" not in report["source"]
    assert [s["name"] for s in report["steps"]] == ["select", "scratch", "fetch", "restore", "verify", "teardown"]
    assert {c["name"] for c in report["checks"]} == CHECKS and all(c["ok"] for c in report["checks"]), report["checks"]
    assert report["rto_seconds"] >= next(s["seconds"] for s in report["steps"] if s["name"] == "fetch") > 0
    assert os.listdir(str(scratch_root)) == []  # the fetched copy went with the scratch instance
    assert inst.row_counts() == before

    # Production from the repository alone: the local sets are gone.
    shutil.rmtree(str(tmp_path / "backups"))
    staging = tmp_path / "staging"
    inv = write_inventory(tmp_path, inst, immich_restore_source=repo, immich_restore_staging_dir=str(staging))
    rc, out = run_playbook(inv, "restore", "-e", "immich_restore_confirm=true")
    assert rc == 0, out[-6000:]
    assert PASSWORD not in out and "rest-secret" not in out
    restored = json.load(open(os.path.join(str(tmp_path), "reports", "restore-lab.json")))["result"]
    assert restored["set_id"] == sid and inst.row_counts() == before
    assert restored["repository"].startswith("restic:rest:") and "rest-secret" not in restored["repository"]
    assert restored["fetch_seconds"] > 0
    # the backup signed the set with the test's key, and the restore checked it with the same key
    assert restored["signature"]["status"] == "ok" and restored["signature"]["checked"], restored["signature"]
    assert "restored set %s of restic:rest:" % sid in out and "exactly as it was signed" in out
    assert os.listdir(str(staging / inst.name)) == []  # the set and its marker, removed after the restore
    assert restored["files"]["moved"] == restored["files"]["files"] > 0 and restored["files"]["copied"] == 0
    prove(inst, seeded)
