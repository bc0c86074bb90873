"""`make demo`: the main job on the built-in lab, end to end.

instance up -> seed -> backup (playbook) -> drill into a scratch instance -> wipe everything (down -v, DB folder, photos)
-> restore (playbook) -> prove (row counts, every original's sha256, ping) -> summary.
The instance is left running so you can look at it.
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


def step(msg):
    print("\n==> " + msg, flush=True)


def checksums(root):
    """sha256 of every original under the backed-up folders, streamed file by file."""
    out = {}
    for folder in ("library", "upload", "profile", "backups"):
        base = os.path.join(root, folder)
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                path = os.path.join(dirpath, name)
                h = hashlib.sha256()
                with open(path, "rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        h.update(chunk)
                out[os.path.relpath(path, root)] = h.hexdigest()
    return out


def playbook(name, inst, targets, *extra):
    """Run a playbook of the collection the way a user does: an inventory with host variables."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(TOP, "build", "collections"),
               ANSIBLE_NOCOLOR="1")
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
    }
    inventory = os.path.join(state, "inventory.json")  # JSON is YAML: Ansible's yaml inventory reads it
    with open(inventory, "w") as fh:
        json.dump({"all": {"children": {"immich": {"hosts": {"lab-demo": host_vars}}}}}, fh, indent=2)
    cmd = [os.path.join(TOP, ".venv", "bin", "ansible-playbook"), "-i", inventory, "homelab.immich." + name, *extra]
    print("$ ansible-playbook -i %s homelab.immich.%s %s" % (inventory, name, " ".join(extra)), flush=True)
    t0 = time.monotonic()
    subprocess.run(cmd, env=env, check=True)
    return time.monotonic() - t0


def main():
    step("Lab engine and images (reused when unchanged)")
    lab.images()
    inst = lab.load("demo") if os.path.exists(os.path.join(lab.INSTANCES, "demo")) else None
    if inst:
        inst.down(purge=True)
    step("Bring up a seeded Immich lab instance (Postgres 15)")
    inst = lab.Instance("demo", pg=15, prefix="immich").up(seed="small")
    before_rows = inst.row_counts()
    before_files = checksums(inst.upload_location)
    print("instance %s: %d assets, %d originals, %d tables" % (
        inst.name, before_rows["asset"], len(before_files), len(before_rows)))
    targets = [{"path": os.path.join(lab.STATE, "demo-state", "backups")}]

    step("Back it up (homelab.immich.backup)")
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

    step("Prove it")
    after_rows = inst.row_counts()
    after_files = checksums(inst.upload_location)
    stats = inst.stats()
    ok = after_rows == before_rows and after_files == before_files and inst.ping() and stats["missingCount"] == 0
    print("rows equal: %s | originals equal (sha256): %s (%d files) | missing files: %d | ping: %s" % (
        after_rows == before_rows, after_files == before_files, len(after_files), stats["missingCount"],
        "pong" if inst.ping() else "no answer"))
    print("backup %.1fs, drill %.1fs, restore %.1fs; backup sets in %s; reports in %s" % (
        t_backup, t_drill, t_restore, targets[0]["path"], os.path.join(lab.STATE, "demo-state", "reports")))
    print("\nThe lab Immich runs at http://127.0.0.1:%d/api/server/ping (compose project %s)" % (inst.port, inst.root))
    print("Stop it with: .venv/bin/python tests/lab/lab.py down demo --purge")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
