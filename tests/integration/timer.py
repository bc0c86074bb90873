"""Run the scheduled backup's entry point exactly as systemd or cron would (no Ansible involved)."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRY = os.path.join(ROOT, "roles", "schedule", "files", "immich_backup_run.py")
LIB = os.path.join(ROOT, "build", "collections")


def write_config(path, inst, targets, options=None):
    """The configuration the backup role writes (roles/backup/tasks/config.yml), for a lab instance."""
    cfg = {"discover": {"project_dir": inst.root, "project_name": "", "compose_files": [], "instance_name": "",
                        "overrides": {}},
           "targets": targets,
           "options": dict({"key_file": os.path.join(os.path.dirname(os.path.abspath(str(path))), "keys", inst.name + ".key")},
                           **dict(options or {}, trigger="schedule"))}
    with open(path, "w") as fh:
        json.dump(cfg, fh)
    return path


def argv(config, report=None):
    return ["/usr/bin/python3", ENTRY, "--config", str(config)] + (["--report", str(report)] if report else [])


def env():
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOMELAB_IMMICH_LIB": LIB}


def run(config, report=None, timeout=600):
    return subprocess.run(argv(config, report), capture_output=True, text=True, timeout=timeout, env=env(), check=False)


def run_unit(service_file, timeout=600):
    """Run a systemd service's ExecStart with its Environment=, as systemd would (PATH of systemd's default)."""
    lines = open(service_file).read().splitlines()
    exec_line = [ln for ln in lines if ln.startswith("ExecStart=")][0][len("ExecStart="):]
    environ = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"}
    for ln in lines:
        if ln.startswith("Environment="):
            key, _eq, value = ln[len("Environment="):].partition("=")
            environ[key] = value
    import shlex  # noqa: PLC0415
    return subprocess.run(shlex.split(exec_line), capture_output=True, text=True, timeout=timeout, env=environ, check=False)
