"""Fixtures of the integration tests: an SSH host (the lab's sshhost image) playing the NAS."""
import os
import subprocess

import pytest


@pytest.fixture
def nas(lab, tmp_path):
    """A NAS reachable over SSH on 127.0.0.1 (key auth, root), torn down afterwards."""
    key = str(tmp_path / "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(key + ".pub") as fh:
        pub = fh.read().strip()
    port = lab.free_port()
    name = "rnas-%d-%s" % (os.getpid(), os.urandom(2).hex())
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--label", "homelab.immich.lab=1", "-e", "SSH_AUTHORIZED_KEY",
                    "-p", "127.0.0.1:%d:22" % port, lab.images()["LAB_IMAGE_SSHHOST"]],
                   check=True, capture_output=True, env=dict(os.environ, SSH_AUTHORIZED_KEY=pub))
    ssh_args = ["-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
    for _attempt in range(60):  # bounded: sshd is up within a few seconds
        if subprocess.run(["ssh", "-o", "BatchMode=yes", "-p", str(port), *ssh_args, "root@127.0.0.1", "true"],
                          capture_output=True, check=False).returncode == 0:
            break
        subprocess.run(["sleep", "0.5"], check=True)
    target = {"host": "127.0.0.1", "port": port, "user": "root", "path": "/srv/backups", "ssh_args": ssh_args}

    def run(*cmd):
        return subprocess.run(["docker", "exec", name, *cmd], capture_output=True, text=True, check=True).stdout

    yield {"name": name, "port": port, "ssh_args": ssh_args, "target": target, "run": run}
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
