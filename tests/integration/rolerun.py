"""Run the collection's playbooks against lab instances, as a user would (ansible-playbook subprocess)."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, "build", "collections")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def write_inventory(tmp_path, inst, **hostvars):
    """A one-host inventory (local connection) pointing the roles at a lab instance's compose folder."""
    state = str(tmp_path)
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": os.path.join(VENV_BIN, "python"),
        "immich_project_dir": inst.root,
        "immich_backup_targets": [{"path": os.path.join(state, "backups")}],
        "immich_restore_source": os.path.join(state, "backups"),
        "immich_restore_point_dir": os.path.join(state, "restore-points"),
        "immich_report_dir": os.path.join(state, "reports"),
        # the set-signing key of the test's instance, beside its state (not in the machine's /etc)
        "immich_backup_key_file": os.path.join(state, "keys", inst.name + ".key"),
        "immich_restore_key_file": os.path.join(state, "keys", inst.name + ".key"),
    }
    host.update(hostvars)
    path = os.path.join(state, "inventory.json")
    with open(path, "w") as fh:
        json.dump({"immich": {"hosts": {"lab": host}}}, fh)
    return path


def env():
    e = dict(os.environ)
    e["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS
    e["PATH"] = VENV_BIN + os.pathsep + e.get("PATH", "")
    e["ANSIBLE_FORCE_COLOR"] = "0"
    e["ANSIBLE_NOCOLOR"] = "1"
    e["ANSIBLE_PIPELINING"] = "1"  # fewer round trips per task; the local connection supports it
    return e


def playbook_argv(inventory, name, *extra):
    return [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, "homelab.immich." + name] + list(extra)


def run_playbook(inventory, name, *extra, timeout=600):
    res = subprocess.run(playbook_argv(inventory, name, *extra), capture_output=True, text=True, env=env(),
                         timeout=timeout, check=False)
    return res.returncode, res.stdout + res.stderr


def report(tmp_path, action):
    with open(os.path.join(str(tmp_path), "reports", "%s-lab.json" % action)) as fh:
        return json.load(fh)["result"]


def sets(tmp_path, instance_name):
    root = os.path.join(str(tmp_path), "backups", instance_name)
    return sorted(n for n in os.listdir(root) if n[:1].isdigit()) if os.path.isdir(root) else []


def wipe(inst):
    """The destroyed host of the round trip: compose down -v, DB_DATA_LOCATION and UPLOAD_LOCATION gone."""
    import shutil  # noqa: PLC0415

    inst.compose("down", "-v", check=False)
    shutil.rmtree(inst.db_data_location, ignore_errors=True)
    shutil.rmtree(inst.upload_location, ignore_errors=True)


def run_play(inventory, play_text, tmp_path, *extra, timeout=600):
    """Run an ad-hoc play (text) against the inventory, as a user's own playbook would use the roles."""
    path = os.path.join(str(tmp_path), "play-%s.yml" % os.urandom(3).hex())
    with open(path, "w") as fh:
        fh.write(play_text)
    res = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, path] + list(extra),
                         capture_output=True, text=True, env=env(), timeout=timeout, check=False)
    return res.returncode, res.stdout + res.stderr


def rows_after_restore(before, restore_result):
    """The row counts a restore must give back: the backup's, less the rows of generated files the set did
    not hold (encoded videos by default), which the restore removed so that Immich regenerates them."""
    removed = (restore_result.get("regenerate") or {}).get("asset_file_rows_removed") or 0
    expected = dict(before)
    table = "asset_file" if "asset_file" in expected else "asset_files"
    if removed:
        expected[table] -= removed
    return expected
