"""`make demo`: the main job on the built-in lab, end to end, proven the way a user would check it.

instance up, seeded through Immich's API (admin sign-up, photo uploads, an album, a second user with an
avatar) -> backup (playbook) -> drill into a scratch instance beside production -> disaster (compose down
-v, DB_DATA_LOCATION and UPLOAD_LOCATION gone) -> restore (playbook) -> proof through the API: login with
the same credentials, every original's SHA-1 equal to the upload, every thumbnail and preview HTTP 200,
the album with its assets -> summary. The instance is left running so you can look at it.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import lab  # noqa: E402
from offsite import RestServer  # noqa: E402


def step(msg):
    print("\n==> " + msg, flush=True)


def playbook(name, inst, targets, *extra):
    """Run a playbook of the collection the way a user does: an inventory with host variables."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, "build", "collections"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1")
    state = os.path.join(lab.STATE, "demo-state")
    os.makedirs(state, exist_ok=True)
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "immich_project_dir": inst.root,
        "immich_backup_targets": targets,
        "immich_restore_source": targets[0]["path"],
        "immich_restore_point_dir": os.path.join(state, "restore-points"),
        "immich_report_dir": os.path.join(state, "reports"),
        "immich_drill_report_dir": os.path.join(state, "reports"),
        "immich_drill_scratch_root": os.path.join(state, "scratch"),
    }
    inventory = os.path.join(state, "inventory.json")  # JSON is YAML: Ansible's yaml inventory reads it
    with open(inventory, "w") as fh:
        json.dump({"all": {"children": {"immich": {"hosts": {"lab-demo": host_vars}}}}}, fh, indent=2)
    cmd = [os.path.join(TOP, ".venv", "bin", "ansible-playbook"), "-i", inventory, "homelab.immich." + name, *extra]
    print("$ ansible-playbook -i %s homelab.immich.%s %s" % (inventory, name, " ".join(extra)), flush=True)
    t0 = time.monotonic()
    subprocess.run(cmd, env=env, check=True)
    return time.monotonic() - t0


def report(name):
    with open(os.path.join(lab.STATE, "demo-state", "reports", "%s-lab-demo.json" % name)) as fh:
        data = json.load(fh)
    return data.get("result", data)


def prove(inst, seeded):
    """What a user checks after a restore, through the API only. Returns (ok, lines)."""
    lines, ok = [], True
    token = inst.login(seeded["admin"]["email"], seeded["admin"]["password"])  # raises when login fails
    lines.append("login as %s with the same password: ok" % seeded["admin"]["email"])
    bad_sha, bad_thumb = [], []
    for asset in seeded["assets"]:
        owner = next((u for u in [seeded["admin"]] + seeded["users"] if u["userId"] == asset["ownerId"]), seeded["admin"])
        who = token if owner is seeded["admin"] else inst.login(owner["email"], owner["password"])
        status, body = inst.api("GET", "/api/assets/%s/original" % asset["id"], token=who, raw=True)
        if status != 200 or hashlib.sha1(body, usedforsecurity=False).hexdigest() != asset["sha1"]:
            bad_sha.append(asset["id"])
        for size in ("thumbnail", "preview"):
            status, _body = inst.api("GET", "/api/assets/%s/thumbnail?size=%s" % (asset["id"], size), token=who, raw=True)
            if status != 200:
                bad_thumb.append("%s %s (HTTP %s)" % (asset["id"], size, status))
    n = len(seeded["assets"])
    lines.append("originals: %d of %d with the SHA-1 of their upload" % (n - len(bad_sha), n))
    lines.append("thumbnails and previews: %d of %d answer HTTP 200%s" % (
        2 * n - len(bad_thumb), 2 * n, (" (not: %s)" % ", ".join(bad_thumb[:3])) if bad_thumb else ""))
    status, album = inst.api("GET", "/api/albums/%s" % seeded["album"]["id"], token=token)
    got = sorted(a["id"] for a in (album.get("assets") or [])) if status == 200 else []
    album_ok = got == sorted(seeded["album"]["assetIds"])
    lines.append("album %r: %d of %d assets" % (seeded["album"]["albumName"], len(got), len(seeded["album"]["assetIds"])))
    ok = not bad_sha and not bad_thumb and album_ok and inst.ping()
    lines.append("server: %s" % ("pong" if inst.ping() else "no answer"))
    return ok, lines


def main():
    step("Lab engine and images (reused when unchanged)")
    lab.images()
    if os.path.exists(os.path.join(lab.INSTANCES, "demo")):
        lab.load("demo").down(purge=True)
    shutil.rmtree(os.path.join(lab.STATE, "demo-state"), ignore_errors=True)

    step("Bring up an Immich lab instance and seed it through Immich's API (sign-up, uploads, an album)")
    inst = lab.Instance("demo", pg=15, prefix="immich").up(seed="api")
    seeded = inst.seed_result
    print("instance %s: %d photos uploaded by %d users, album %r with %d of them; admin %s" % (
        inst.name, len(seeded["assets"]), 1 + len(seeded["users"]), seeded["album"]["albumName"],
        len(seeded["album"]["assetIds"]), seeded["admin"]["email"]))
    step("Start the offsite side: a restic REST server on 127.0.0.1 (an encrypted repository, as at a friend's house)")
    rest = RestServer(os.path.join(lab.STATE, "demo-state", "offsite"), no_auth=True).start()
    offsite = {"restic": rest.url(repo="demo"), "password": "demo-" + os.urandom(8).hex(), "init": True}
    print("repository %s (the password stays in the inventory, never on a command line)" % offsite["restic"])
    targets = [{"path": os.path.join(lab.STATE, "demo-state", "backups")}, offsite]

    step("Back it up (homelab.immich.backup): the set on the backup disk, then the encrypted repository")
    t_backup = playbook("backup", inst, targets)

    step("Drill it: restore the set into a scratch instance beside production (homelab.immich.drill)")
    t_drill = playbook("drill", inst, targets)
    assert inst.ping(), "the production instance must answer throughout the drill"

    step("Disaster: compose down -v, DB_DATA_LOCATION and UPLOAD_LOCATION removed")
    inst.compose("down", "-v")
    shutil.rmtree(inst.db_data_location)
    shutil.rmtree(inst.upload_location)
    os.makedirs(inst.upload_location)

    step("Restore it (homelab.immich.restore)")
    t_restore = playbook("restore", inst, targets, "-e", "immich_restore_confirm=true")

    step("Prove it through Immich's API")
    ok, lines = prove(inst, seeded)
    for line in lines:
        print("  " + line)
    backup = report("backup")
    for target in backup.get("targets") or []:
        print("  offsite: %s %s - %s (snapshot %s)" % (target["kind"], target["label"], "copied and proven against the set's "
              "manifest" if target["status"] == "ok" else "FAILED: %s" % target.get("error"), target.get("snapshot_id")))
        ok = ok and target["status"] == "ok"
    rest.stop()
    drill = report("drill") if os.path.exists(os.path.join(lab.STATE, "demo-state", "reports", "drill-lab-demo.json")) else {}
    print("\nbackup %.1fs, drill %.1fs (%s, RTO %s s), restore %.1fs; backup sets in %s; reports in %s" % (
        t_backup, t_drill, drill.get("status"), drill.get("rto_seconds"), t_restore, targets[0]["path"],
        os.path.join(lab.STATE, "demo-state", "reports")))
    print("\nThe lab Immich runs at http://127.0.0.1:%d (log in as %s / %s); compose project %s" % (
        inst.port, seeded["admin"]["email"], seeded["admin"]["password"], inst.root))
    print("Stop it with: .venv/bin/python tests/lab/lab.py down demo --purge")
    return 0 if ok and drill.get("status") == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
