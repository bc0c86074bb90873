"""Change a lab instance between two backups, then record what the restore must give back.

    mutate.py NAME SNAPSHOT.json

Adds one photo (file + asset row), changes rows in two tables, then writes the row counts, a
checksum of the changed rows and the sha256 of every original under UPLOAD_LOCATION to SNAPSHOT.json.
"""
import hashlib
import json
import os
import sys
import uuid

sys.path.insert(0, os.environ.get("LAB_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "tests", "lab")))
import lab  # noqa: E402

ORIGINAL_FOLDERS = ("library", "upload", "profile", "backups")
PROBE_SQL = "SELECT md5(string_agg(city || '/' || \"assetId\", ',' ORDER BY \"assetId\")) FROM asset_exif"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(name, snapshot):
    inst = lab.load(name)
    owner = inst.psql('SELECT id FROM "user" ORDER BY email LIMIT 1')
    aid = str(uuid.uuid4())
    rel = "upload/%s/%s/%s/%s.jpg" % (owner, aid[0:2], aid[2:4], aid)
    data = os.urandom(12345)
    path = os.path.join(inst.upload_location, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    inst.psql("INSERT INTO asset (id, \"ownerId\", type, \"originalPath\", \"originalFileName\", checksum) "
              "VALUES ('%s', '%s', 'IMAGE', '/data/%s', 'new.jpg', '\\x%s'::bytea)"
              % (aid, owner, rel, hashlib.sha1(data, usedforsecurity=False).hexdigest()))
    inst.psql("UPDATE asset_exif SET city = 'Lyon' WHERE \"assetId\" IN (SELECT id FROM asset ORDER BY id LIMIT 10)")
    inst.psql("DELETE FROM album_asset WHERE \"assetId\" IN (SELECT id FROM asset ORDER BY id LIMIT 3)")
    files = {}
    for folder in ORIGINAL_FOLDERS:
        top = os.path.join(inst.upload_location, folder)
        for root, _dirs, names in os.walk(top):
            for n in names:
                full = os.path.join(root, n)
                files[os.path.relpath(full, inst.upload_location)] = sha256(full)
    out = {"rows": inst.row_counts(), "probe": inst.psql(PROBE_SQL), "files": files, "new_photo": rel,
           "db": inst.db, "user": inst.user, "database": inst.database, "port": inst.port,
           "upload_location": inst.upload_location, "probe_sql": PROBE_SQL}
    with open(snapshot, "w") as fh:
        json.dump(out, fh, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
