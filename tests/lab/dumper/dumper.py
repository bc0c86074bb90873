"""Lab stand-in for prodrigestivill/postgres-backup-local (which cannot be pulled here).

Honours the same contract: env POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB (comma-separated),
POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_CLUSTER (TRUE: pg_dumpall), POSTGRES_EXTRA_OPTS, SCHEDULE
(@daily, @hourly, @every <n>s|m|h, or a 5-field cron line run at its minute/hour), BACKUP_DIR,
BACKUP_SUFFIX (.sql.gz), BACKUP_KEEP_DAYS/WEEKS/MONTHS, BACKUP_ON_START. Layout:
  last/<db>-YYYYMMDD-HHMMSS.sql.gz  last/<db>-latest.sql.gz -> newest
  daily/<db>-YYYYMMDD.sql.gz  weekly/<db>-YYYYWW.sql.gz  monthly/<db>-YYYYMM.sql.gz  (+ *-latest links)
`dumper backup` (the image's /backup.sh) runs one backup now.
"""
import glob
import os
import shlex
import signal
import subprocess
import sys
import time

E = os.environ.get


def log(msg):
    print("dumper: " + msg, flush=True)


def _link(target_name, link_path):
    tmp = link_path + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target_name, tmp)
    os.replace(tmp, link_path)


def backup_one(db, now):
    bdir = E("BACKUP_DIR", "/backups")
    suffix = E("BACKUP_SUFFIX", ".sql.gz")
    for sub in ("last", "daily", "weekly", "monthly"):
        os.makedirs(os.path.join(bdir, sub), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", now)
    last = os.path.join(bdir, "last", "%s-%s%s" % (db, stamp, suffix))
    env = dict(os.environ, PGPASSWORD=E("POSTGRES_PASSWORD", ""))
    conn = ["-h", E("POSTGRES_HOST", "db"), "-p", E("POSTGRES_PORT", "5432"), "-U", E("POSTGRES_USER", "postgres")]
    extra = shlex.split(E("POSTGRES_EXTRA_OPTS", "-Z1"))
    if E("POSTGRES_CLUSTER", "FALSE").upper() == "TRUE":
        cmd = ["pg_dumpall"] + conn + extra
    else:
        cmd = ["pg_dump"] + conn + ["-d", db] + extra
    tmp = last + ".tmp"
    with open(tmp, "wb") as out:
        dump = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
        gz = subprocess.Popen(["gzip", "--rsyncable"], stdin=dump.stdout, stdout=out)
        dump.stdout.close()
        rc_gz, rc_dump = gz.wait(), dump.wait()
    if rc_dump or rc_gz:
        os.unlink(tmp)
        raise RuntimeError("%s failed (rc=%s, gzip rc=%s)" % (cmd[0], rc_dump, rc_gz))
    os.rename(tmp, last)
    _link(os.path.basename(last), os.path.join(bdir, "last", "%s-latest%s" % (db, suffix)))
    for sub, fmt in (("daily", "%Y%m%d"), ("weekly", "%G%V"), ("monthly", "%Y%m")):
        dest = os.path.join(bdir, sub, "%s-%s%s" % (db, time.strftime(fmt, now), suffix))
        if os.path.exists(dest):
            os.unlink(dest)
        os.link(last, dest)
        _link(os.path.basename(dest), os.path.join(bdir, sub, "%s-latest%s" % (db, suffix)))
    log("wrote %s" % last)


def prune(now_epoch):
    bdir = E("BACKUP_DIR", "/backups")
    keep = {"last": int(E("BACKUP_KEEP_MINS", "1440")) * 60, "daily": int(E("BACKUP_KEEP_DAYS", "7")) * 86400,
            "weekly": (int(E("BACKUP_KEEP_WEEKS", "4")) * 7 + 1) * 86400,
            "monthly": (int(E("BACKUP_KEEP_MONTHS", "6")) * 31 + 1) * 86400}
    for sub, age in keep.items():
        for path in glob.glob(os.path.join(bdir, sub, "*")):
            if os.path.islink(path) or "-latest" in os.path.basename(path):
                continue
            if now_epoch - os.path.getmtime(path) > age and not _is_latest_target(path):
                os.unlink(path)


def _is_latest_target(path):
    for link in glob.glob(os.path.join(os.path.dirname(path), "*-latest*")):
        if os.path.realpath(link) == os.path.realpath(path):
            return True
    return False


def backup():
    now = time.gmtime()
    dbs = ["all"] if E("POSTGRES_CLUSTER", "FALSE").upper() == "TRUE" else E("POSTGRES_DB", "postgres").split(",")
    for db in dbs:
        backup_one(db.strip(), now)
    prune(time.time())


def interval(schedule):
    s = schedule.strip()
    table = {"@hourly": 3600, "@daily": 86400, "@midnight": 86400, "@weekly": 7 * 86400}
    if s in table:
        return table[s]
    if s.startswith("@every "):
        n = s.split()[1]
        return int(n[:-1]) * {"s": 1, "m": 60, "h": 3600}[n[-1]]
    return None


def wait_db():
    env = dict(os.environ, PGPASSWORD=E("POSTGRES_PASSWORD", ""))
    for _attempt in range(240):
        if subprocess.call(["pg_isready", "-h", E("POSTGRES_HOST", "db"), "-p", E("POSTGRES_PORT", "5432")],
                           env=env, stdout=subprocess.DEVNULL) == 0:
            return
        time.sleep(0.5)


def main(argv):
    if argv[1:2] == ["backup"]:
        backup()
        return 0
    # PID 1 in its container: without a handler SIGTERM is ignored and `compose down` waits 10 s.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    wait_db()
    if E("BACKUP_ON_START", "FALSE").upper() == "TRUE":
        backup()
    every = interval(E("SCHEDULE", "@daily"))
    while True:
        if every:
            time.sleep(every)
        else:  # 5-field cron: run when minute and hour match (lab contract: numbers or *)
            fields = E("SCHEDULE").split()
            time.sleep(60 - time.time() % 60)
            t = time.gmtime()
            if not all(f == "*" or int(f) == v for f, v in zip(fields[:2], (t.tm_min, t.tm_hour))):
                continue
        try:
            backup()
        except Exception as exc:  # noqa: BLE001 - the sidecar keeps running like upstream's
            log("backup failed: %s" % exc)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
