"""Benchmark db_dump / db_restore / dump_rewrite against the seed's shell pipelines, in ONE run.

Prints ratios (ours / reference) measured back to back on the same machine (the close ones alternate
--repeat times and use the medians), on the lab's large
dataset (>= 1 GiB of plain SQL). Uses the lab instance `mbench` (created with `--seed large` when it
does not exist: minutes) and a fresh target `mbencht`; both are torn down at the end unless --keep.

    .venv/bin/python bench/bench_dump_restore.py [--keep] [--work /var/tmp/mbench-work]

Targets (issue #3): db_dump zstd <= 1.3x `docker exec <db> pg_dumpall > /dev/null`; db_dump gzip >= 1.5x
faster than `docker exec -t <db> pg_dumpall --clean --if-exists | gzip > file`; db_restore <= 1.15x
`gunzip | sed | docker exec -i <db> psql` on the same file; dump_rewrite no slower than sed; module peak
RSS < 100 MiB. Issue 12: db_restore of a DATABASE dump (checked in the stream, one transaction committed after
the checks, no separate verification pass) <= 1.0x the seed's pipeline on the same file (`--parts restore_db`).
"""
import argparse
import json
from statistics import median
import os
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "lab"), os.path.join(ROOT, "tests", "integration"),
                os.path.join(ROOT, "build", "collections")]

import lab  # noqa: E402
from modrun import module_argv, module_env, module_input, parse_output  # noqa: E402

SED = ("s/SELECT pg_catalog.set_config('search_path', '', false);/"
       "SELECT pg_catalog.set_config('search_path', 'public, pg_catalog', true);/g")


def sh(cmd):
    t0 = time.monotonic()
    subprocess.run(cmd, shell=True, check=True, executable="/bin/bash")  # noqa: S602 - the seed's pipelines verbatim
    return time.monotonic() - t0


def module(name, **args):
    """Run a module; (seconds, result, peak RSS of the module process in MiB from /proc VmHWM)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(module_argv(name), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=module_env())
    peak = [0]

    def watch():
        while proc.poll() is None:
            try:
                with open("/proc/%d/status" % proc.pid) as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.1)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    out, err = proc.communicate(module_input(args))
    secs = time.monotonic() - t0
    w.join()
    res = parse_output(out, err, proc.returncode)
    if res.get("failed"):
        raise SystemExit("%s failed: %s" % (name, res.get("msg")))
    return secs, res, peak[0] / 1024.0


def reset(inst):
    """An empty target, and no write-back of the previous load left for the next one to pay for."""
    inst.psql("DROP DATABASE IF EXISTS immich WITH (FORCE);", database="postgres")
    inst.psql("CREATE DATABASE immich;", database="postgres")
    inst.psql("CHECKPOINT;", database="postgres")
    subprocess.run(["sync"], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="keep mbench and mbencht for another run")
    ap.add_argument("--work", default="/var/tmp/mbench-work")
    ap.add_argument("--repeat", type=int, default=3, help="alternate the close comparisons N times; medians")
    ap.add_argument("--parts", default="dump,restore,restore_db,rewrite",
                    help="comma list of dump, restore (a cluster dump), restore_db (a database dump), rewrite")
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    src = lab.load("mbench")
    running = os.path.exists(src.compose_file) and subprocess.run(
        ["docker", "inspect", src.db], capture_output=True, check=False).returncode == 0
    if not running:
        if os.path.isdir(os.path.join(lab.INSTANCES, "mbench")):
            src.down(purge=True)  # stopped, or left half-seeded by an interrupted run: seeded again from nothing
        src = lab.Instance("mbench", pg=15).up(seed="large")
    tgt = lab.load("mbencht") if os.path.isdir(os.path.join(lab.INSTANCES, "mbencht")) else lab.Instance("mbencht", pg=15)
    tgt.start_db_only()
    try:
        db = src.db
        parts = set(a.parts.split(","))
        secs, ratios, rss, report, runs = {}, {}, {}, {}, {}
        floor = "floor pg_dumpall > /dev/null"
        seed_dump = "seed docker exec -t | gzip"
        seed_restore = "seed gunzip | sed | psql"
        if "dump" in parts:
            # The floor and db_dump zstd alternate --repeat times; each ratio uses the medians (the floor
            # alone moves by 10-20% from one run to the next on this machine).
            floors, zstds = [], []
            for _round in range(a.repeat):
                floors.append(sh("docker exec %s pg_dumpall --clean --if-exists -U postgres > /dev/null" % db))
                shutil.rmtree(a.work + "/zstd", ignore_errors=True)
                took, r_zstd, rss["db_dump zstd"] = module("db_dump", container=db, dest=a.work + "/zstd", compression="zstd")
                zstds.append(took)
                with open(r_zstd["manifest_path"]) as fh:
                    report.setdefault("db_dump zstd timings", []).append(json.load(fh)["timings"])
            secs[floor], secs["db_dump zstd"] = median(floors), median(zstds)
            runs.update({floor: floors, "db_dump zstd": zstds})
            secs[seed_dump] = sh("docker exec -t %s pg_dumpall --clean --if-exists --username=postgres | gzip > %s/seed.sql.gz"
                                 % (db, a.work))
            report["zstd_bytes"] = r_zstd["bytes"]
            ratios["db_dump zstd / floor (target <= 1.3)"] = secs["db_dump zstd"] / secs[floor]
        secs["db_dump gzip"], r_gz, rss["db_dump gzip"] = module("db_dump", container=db, dest=a.work + "/gzip",
                                                                 compression="gzip")
        report.update(plain_dump_bytes=r_gz["plain_bytes"], gzip_bytes=r_gz["bytes"])
        if "dump" in parts:
            ratios["seed gzip / db_dump gzip (target >= 1.5)"] = secs[seed_dump] / secs["db_dump gzip"]
        if "restore" in parts:
            seeds, ours, verify = [], [], []
            for _round in range(a.repeat):
                reset(tgt)
                seeds.append(sh("gunzip < %s | sed \"%s\" | docker exec -i %s psql --username=postgres "
                                ">/dev/null 2>&1" % (r_gz["path"], SED, tgt.db)))
                reset(tgt)
                took, r_restore, rss["db_restore"] = module("db_restore", container=tgt.db, src=r_gz["path"])
                ours.append(took)
                verify.append(r_restore["verify_seconds"])
                report.setdefault("db_restore parts", []).append(
                    {k: r_restore.get(k) for k in ("verify_seconds", "seconds", "count_seconds")})
            secs[seed_restore], secs["db_restore"], secs["db_restore verify pass"] = median(seeds), median(ours), median(verify)
            runs.update({seed_restore: seeds, "db_restore": ours})
            report["restored_rows_match"] = r_restore.get("rows_diff") == {}
            ratios["db_restore / seed restore (target <= 1.15)"] = secs["db_restore"] / secs[seed_restore]
        if "restore_db" in parts:
            # A database dump (pg_dump, Immich >= 2.5's kind, what the backup engine writes): db_restore checks it in
            # the stream and commits once; the reference is the seed's pipeline on the same file, into the database.
            took, r_db, rss["db_dump gzip database"] = module("db_dump", container=db, dest=a.work + "/database",
                                                              compression="gzip", dump_kind="database")
            report["database_dump_bytes"] = r_db["bytes"]
            seed_db = "seed gunzip | sed | psql --dbname=immich (database dump)"
            seeds, ours = [], []
            for _round in range(a.repeat):
                reset(tgt)
                seeds.append(sh("gunzip < %s | sed \"%s\" | docker exec -i %s psql --username=postgres --dbname=immich "
                                ">/dev/null 2>&1" % (r_db["path"], SED, tgt.db)))
                reset(tgt)
                took, r_restore, rss["db_restore database"] = module("db_restore", container=tgt.db, src=r_db["path"])
                ours.append(took)
                report.setdefault("db_restore database parts", []).append(
                    {k: r_restore.get(k) for k in ("verification", "verify_seconds", "seconds", "count_seconds")})
            secs[seed_db], secs["db_restore database"] = median(seeds), median(ours)
            runs.update({seed_db: seeds, "db_restore database": ours})
            report["database_restored_rows_match"] = r_restore.get("rows_diff") == {}
            ratios["db_restore database dump / seed pipeline (target <= 1.0)"] = secs["db_restore database"] / secs[seed_db]
        if "rewrite" in parts:
            plain = a.work + "/plain.sql"
            sh("gunzip < %s > %s" % (r_gz["path"], plain))
            secs["sed on plain file"] = sh("LC_ALL=C sed \"%s\" %s > %s.sed" % (SED, plain, plain))
            os.unlink(plain + ".sed")
            secs["dump_rewrite"], r_rw, rss["dump_rewrite"] = module("dump_rewrite", src=plain, dest=plain + ".rw")
            report["lines_rewritten"] = r_rw["lines_rewritten"]
            ratios["dump_rewrite / sed (target <= 1.0)"] = secs["dump_rewrite"] / secs["sed on plain file"]
        report.update(seconds=secs, runs=runs, repeat=a.repeat, ratios=ratios, peak_rss_mib=rss, nproc=os.cpu_count(), loadavg_at_end=os.getloadavg())
        print(json.dumps(report, indent=2, default=lambda x: round(x, 3)))
    finally:
        shutil.rmtree(a.work, ignore_errors=True)
        if not a.keep:
            tgt.down(purge=True)
            src.down(purge=True)


if __name__ == "__main__":
    main()
