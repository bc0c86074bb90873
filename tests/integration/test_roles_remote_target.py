"""A remote backup target over SSH (the seed's 3-2-1): the lab's sshhost container is the NAS."""
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rolerun import report, run_playbook, write_inventory  # noqa: E402


@pytest.fixture
def nas(lab, tmp_path):
    key = str(tmp_path / "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(key + ".pub") as fh:
        pub = fh.read().strip()
    port = lab.free_port()
    name = "rnas-%d" % os.getpid()
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "-e", "SSH_AUTHORIZED_KEY", "-p",
                    "127.0.0.1:%d:22" % port, lab.images()["LAB_IMAGE_SSHHOST"]],
                   check=True, capture_output=True, env=dict(os.environ, SSH_AUTHORIZED_KEY=pub))
    ssh_args = ["-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    for _attempt in range(60):  # bounded: sshd is up within a few seconds
        if subprocess.run(["ssh", "-o", "BatchMode=yes", "-p", str(port), *ssh_args, "root@127.0.0.1", "true"],
                          capture_output=True, check=False).returncode == 0:
            break
        subprocess.run(["sleep", "0.5"], check=True)
    yield {"name": name, "port": port, "ssh_args": ssh_args}
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def in_nas(nas, *cmd):
    return subprocess.run(["docker", "exec", nas["name"], *cmd], capture_output=True, text=True, check=True).stdout


def test_sets_reach_the_remote_host_verified_and_hard_linked(make_instance, nas, tmp_path):
    inst = make_instance(pg=15, seed="small", name="r15-nas-%d" % os.getpid())
    remote = {"host": "127.0.0.1", "port": nas["port"], "user": "root", "path": "/srv/backups",
              "ssh_args": nas["ssh_args"]}
    inv = write_inventory(tmp_path, inst, immich_backup_targets=[{"path": str(tmp_path / "backups")}, remote])
    ids = []
    for _run in range(2):
        rc, out = run_playbook(inv, "backup")
        assert rc == 0, out[-4000:]
        ids.append(report(tmp_path, "backup")["set_id"])
    root = "/srv/backups/" + inst.name
    listing = in_nas(nas, "ls", "-A", root).split()
    # The flock file stays (removing it while another run waits on it would let two in); its holder names the last run.
    assert sorted(listing) == sorted(ids + ["latest", ".lock", ".lock.holder"])
    assert json.loads(in_nas(nas, "cat", root + "/.lock.holder"))["run_id"]
    assert in_nas(nas, "sh", "-c", "flock -n %s/.lock true && echo free" % root).strip() == "free"  # released
    assert in_nas(nas, "readlink", root + "/latest").strip() == ids[1]
    assert in_nas(nas, "stat", "-c", "%a", root + "/" + ids[1]).strip() == "700"
    # unchanged originals are hard links to the remote's previous set
    rel = "files/profile"
    first = in_nas(nas, "sh", "-c", "find %s/%s/%s -type f -exec stat -c '%%i %%n' {} +" % (root, ids[0], rel))
    second = in_nas(nas, "sh", "-c", "find %s/%s/%s -type f -exec stat -c '%%i %%n' {} +" % (root, ids[1], rel))

    def inodes(text):
        return sorted(line.split()[0] for line in text.splitlines())

    assert inodes(first) == inodes(second) and inodes(first)
    # the remote copy is byte-identical to the local verified set
    sums = in_nas(nas, "sh", "-c", "cd %s/%s && sha256sum files.manifest.tsv" % (root, ids[1])).split()[0]
    import hashlib  # noqa: PLC0415

    with open(os.path.join(str(tmp_path), "backups", inst.name, ids[1], "files.manifest.tsv"), "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == sums
