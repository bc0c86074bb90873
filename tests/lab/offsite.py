"""The lab's offsite side for restic targets, all on 127.0.0.1:

- RestServer: a restic REST server process (Debian's restic-rest-server) with its data in a folder
  the caller gives (a tmpfs for the disk-full test), optionally --append-only, --private-repos with
  an htpasswd file, or --no-auth;
- SftpHost: the lab's sshhost image with a fresh key, its port published on 127.0.0.1 only, as
  ``sftp:root@127.0.0.1:/srv/restic`` plus the ssh options restic needs;
- make_set: a small promoted backup set laid out like the engine's (set.json, instance.json, db/
  dump + manifest, files.manifest.tsv, files/ with hard links to the previous set, compose/).

Everything started here is stopped by its stop() / the context manager, also on errors.
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

STATE = os.environ.get("LAB_STATE_DIR", "/var/tmp/homelab-immich-lab")
RESTIC_BOOKWORM = os.path.join(STATE, "restic-bookworm", "usr", "bin", "restic")
LABEL = "homelab.immich.lab=1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("the server exited with %s before it listened on 127.0.0.1:%d" % (proc.returncode, port))
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("nothing listens on 127.0.0.1:%d after %ss" % (port, timeout))


def restic_binaries():
    """{"0.18": path, "0.14": path} of the restic programs the lab has (engine.sh installs them)."""
    out = {}
    system = shutil.which("restic")
    if system:
        out[restic_version(system)] = system
    if os.access(RESTIC_BOOKWORM, os.X_OK):
        out[restic_version(RESTIC_BOOKWORM)] = RESTIC_BOOKWORM
    return out


def restic_version(binary):
    text = subprocess.run([binary, "version"], capture_output=True, text=True, check=True).stdout
    return ".".join(text.split()[1].split(".")[:2])


def htpasswd_line(user, password):
    """rest-server accepts {SHA} entries (and bcrypt): no apache2-utils needed."""
    digest = base64.b64encode(hashlib.sha1(password.encode("utf-8")).digest()).decode("ascii")  # noqa: S324 - the htpasswd format
    return "%s:{SHA}%s\n" % (user, digest)


class RestServer(object):
    """``restic-rest-server`` on 127.0.0.1:<free port>; ``users`` = {name: password} (htpasswd)."""

    def __init__(self, data_dir, *, append_only=False, private_repos=False, users=None, no_auth=None, port=None,
                 binary="restic-rest-server"):
        self.data_dir = data_dir
        self.append_only = append_only
        self.private_repos = private_repos
        self.users = dict(users or {})
        self.no_auth = (not self.users) if no_auth is None else no_auth
        self.port = port or free_port()
        self.binary = binary
        self.proc = None
        self.log_path = os.path.join(os.path.dirname(os.path.abspath(data_dir)), "rest-server-%d.log" % self.port)
        self.htpasswd = os.path.join(os.path.dirname(os.path.abspath(data_dir)), "htpasswd-%d" % self.port)

    def argv(self):
        argv = [self.binary, "--path", self.data_dir, "--listen", "127.0.0.1:%d" % self.port]
        if self.append_only:
            argv.append("--append-only")
        if self.private_repos:
            argv.append("--private-repos")
        if self.no_auth:
            argv.append("--no-auth")
        else:
            argv += ["--htpasswd-file", self.htpasswd]
        return argv

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        if not self.no_auth:
            with open(self.htpasswd, "w") as fh:
                for user, password in sorted(self.users.items()):
                    fh.write(htpasswd_line(user, password))
            os.chmod(self.htpasswd, 0o600)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        wait_port(self.port, proc=self.proc)
        return self

    def url(self, user=None, repo=""):
        auth = ""
        if user:
            auth = "%s:%s@" % (user, self.users[user])
        path = repo.strip("/")
        return "rest:http://%s127.0.0.1:%d/%s" % (auth, self.port, path + "/" if path else "")

    def kill(self):
        """SIGKILL, as a crash or a cut cable looks to the client."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(self.log_path) as fh:
                return fh.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SftpHost(object):
    """The sshhost image as an SFTP server on 127.0.0.1:<port>, key login for root."""

    def __init__(self, work_dir, image, name=None):
        self.work_dir = work_dir
        self.image = image
        self.name = name or "offsite-sftp-%d-%s" % (os.getpid(), uuid.uuid4().hex[:6])
        self.port = free_port()
        self.key = os.path.join(work_dir, "sftp_id_ed25519")
        self.started = False

    @property
    def ssh_args(self):
        return ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=5"]

    def start(self):
        if not os.path.exists(self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        with open(self.key + ".pub") as fh:
            pub = fh.read().strip()
        subprocess.run(["docker", "run", "-d", "--name", self.name, "--label", LABEL, "-e", "SSH_AUTHORIZED_KEY",
                        "-p", "127.0.0.1:%d:22" % self.port, self.image],
                       check=True, capture_output=True, env=dict(os.environ, SSH_AUTHORIZED_KEY=pub))
        self.started = True
        self.wait()
        return self

    def wait(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if subprocess.run(["ssh", "-o", "BatchMode=yes", "-p", str(self.port), "-i", self.key] + self.ssh_args +
                              ["root@127.0.0.1", "true"], capture_output=True, check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError("sshd of %s did not answer on 127.0.0.1:%d" % (self.name, self.port))

    def repository(self, path="/srv/restic"):
        return "sftp:root@127.0.0.1:%s" % path

    def spec(self, path="/srv/restic", **extra):
        """A restic target dict for this host (password etc. added by the caller)."""
        out = {"restic": self.repository(path), "port": self.port, "ssh_key": self.key, "ssh_args": list(self.ssh_args)}
        out.update(extra)
        return out

    def exec(self, *cmd, check=True):
        return subprocess.run(["docker", "exec", self.name, *cmd], capture_output=True, text=True, check=check)

    def cut(self):
        """Drop every SFTP session (their sftp-server processes die); sshd itself keeps running."""
        self.exec("pkill", "-KILL", "-f", "sftp-server", check=False)

    def kill(self):
        """The host goes away (container killed; its files stay for start_again)."""
        subprocess.run(["docker", "kill", self.name], capture_output=True, check=False)

    def start_again(self):
        subprocess.run(["docker", "start", self.name], capture_output=True, check=True)
        self.wait()

    def stop(self):
        if self.started:
            subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)
            self.started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# -- a promoted backup set, as the engine lays it out ---------------------------------------------------
FOLDERS = ("upload", "library", "profile", "backups", "thumbs")


def _order_key(rel):
    return rel.split("/")


def _write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)


def _hashes(path):
    s256, s1 = hashlib.sha256(), hashlib.sha1()  # noqa: S324 - Immich's checksum is SHA-1
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            s256.update(block)
            s1.update(block)
    return s256.hexdigest(), s1.hexdigest()


def make_set(root, instance, set_id, *, previous=None, files=12, size=4096, new_files=None, big=0,
             immich_version="v2.7.5", pg_major=14, user="5b1c2d3e-0000-4000-8000-00000000aaaa"):
    """Build ``<root>/<instance>/<set_id>`` and return {"set_dir", "set_info", "files"}.

    ``files`` originals of ``size`` bytes under files/upload (plus one marker per media folder and a
    profile picture); with ``previous`` (a set_dir) every original of it is hard-linked (same inode,
    new ctime, as the engine does) and ``new_files`` (default 1) new ones are added; ``big`` adds one
    file of that many bytes (for tests that need a long upload). Content is random: nothing dedups
    by accident."""
    set_dir = os.path.join(root, instance, set_id)
    os.makedirs(os.path.join(set_dir, "db"))
    files_dir = os.path.join(set_dir, "files")
    rels = []
    if previous:
        prev_files = os.path.join(previous, "files")
        for top, _dirs, names in os.walk(prev_files):
            for name in names:
                src = os.path.join(top, name)
                rel = os.path.relpath(src, prev_files)
                dst = os.path.join(files_dir, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.link(src, dst)
                rels.append(rel)
        count = 1 if new_files is None else new_files
    else:
        for folder in FOLDERS:
            _write(os.path.join(files_dir, folder, ".immich"), b"1764633600000")
            rels.append(folder + "/.immich")
        _write(os.path.join(files_dir, "profile", user, "avatar.jpg"), os.urandom(2048))
        rels.append("profile/%s/avatar.jpg" % user)
        count = files if new_files is None else new_files
    for _i in range(count):
        u = uuid.uuid4().hex
        rel = "upload/%s/%s/%s/%s.jpg" % (user, u[:2], u[2:4], u)
        _write(os.path.join(files_dir, rel), os.urandom(size))
        rels.append(rel)
    if big:
        rel = "upload/%s/ff/ff/big-%s.mp4" % (user, set_id)
        path = os.path.join(files_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            left = big
            while left > 0:
                block = os.urandom(min(left, 8 << 20))
                fh.write(block)
                left -= len(block)
        rels.append(rel)
    rels.sort(key=_order_key)
    with open(os.path.join(set_dir, "files.manifest.tsv"), "w") as fh:
        fh.write("# homelab.immich file manifest v2\tpath\tsize\tmtime\tsha256\tsha1\n")
        total = 0
        for rel in rels:
            path = os.path.join(files_dir, rel)
            st = os.stat(path)
            s256, s1 = _hashes(path)
            total += st.st_size
            fh.write("%s\t%d\t%d\t%s\t%s\n" % (rel, st.st_size, int(st.st_mtime), s256, s1))
    stamp = set_id.replace("Z", "")
    dump_name = "immich-db-backup-%s-v%s-pg%d.sql.gz" % (stamp, immich_version.lstrip("v"), pg_major)
    dump_path = os.path.join(set_dir, "db", dump_name)
    _write(dump_path, os.urandom(64 * 1024), 0o600)
    d256, _d1 = _hashes(dump_path)
    rows = {"asset": len(rels), "user": 1}
    with open(dump_path + ".manifest.json", "w") as fh:
        json.dump({"sha256": d256, "bytes": os.path.getsize(dump_path), "rows_by_table": rows}, fh)
    compose = os.path.join(set_dir, "compose")
    _write(os.path.join(compose, "docker-compose.yml"), b"name: immich\nservices: {}\n")
    _write(os.path.join(compose, ".env"), b"DB_PASSWORD=lab-secret\nIMMICH_VERSION=%s\n" % immich_version.encode(), 0o600)
    instance_info = {"immich_version": immich_version, "images": {}, "media_location": "/data", "db_user": "postgres",
                     "db_name": "immich", "pg_major": pg_major, "extensions": ["vchord", "vector"]}
    with open(os.path.join(set_dir, "instance.json"), "w") as fh:
        json.dump(instance_info, fh, indent=2)
    now = time.time()
    info = {"format": 2, "set_id": set_id, "status": "verified", "instance": instance, "started": now - 5,
            "finished": now, "immich_version": immich_version, "server_version": "%d.19" % pg_major,
            "dump": "db/" + dump_name, "dump_bytes": os.path.getsize(dump_path), "dump_sha256": d256,
            "rows_by_table": rows, "files": len(rels), "files_bytes": total,
            "previous": os.path.basename(previous) if previous else None}
    with open(os.path.join(set_dir, "set.json"), "w") as fh:
        json.dump(info, fh, indent=2, sort_keys=True)
    return {"set_dir": set_dir, "set_info": info, "files": rels}


def read_manifest(set_dir):
    """{relpath: (size, sha256)} of a (small, test) set's files.manifest.tsv."""
    out = {}
    with open(os.path.join(set_dir, "files.manifest.tsv")) as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            out[parts[0]] = (int(parts[1]), parts[3])
    return out


def sha256_file(path):
    return _hashes(path)[0]
