"""Fill a lab instance with an Immich-shaped dataset: rows whose paths point at real files.

Sizes:
  small  ~150 assets, a few hundred files, seconds (the tests)
  large  100,000 assets (>= 100,000 files) and >= 1 GiB of plain SQL dump, a few minutes (bench/)

Originals are random bytes; `asset.checksum` is their SHA-1, as in Immich, so a restore can be
checked file by file against the database. Bulk rows (embeddings, exif, places) are generated
inside Postgres, the per-file rows are streamed with COPY: nothing large is held in memory.
"""
import hashlib
import os
import random
import subprocess
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {
    #          assets, users, albums, people, places, original bytes (min, max), thumbs for 1 in N
    "small": dict(assets=150, users=2, albums=3, people=4, places=500, size=(1024, 16384), thumb_every=1),
    "large": dict(assets=100_000, users=3, albums=50, people=200, places=200_000, size=(1024, 4096), thumb_every=20),
}
MEDIA = "/data"  # where the server container sees UPLOAD_LOCATION


def _shard(u):
    return "%s/%s" % (u[0:2], u[2:4])


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def _markers(upload):
    for folder in ("library", "upload", "profile", "thumbs", "encoded-video", "backups"):
        os.makedirs(os.path.join(upload, folder), exist_ok=True)
        open(os.path.join(upload, folder, ".immich"), "a").close()


def _copy(inst, table, columns, rows):
    """Stream rows into COPY ... FROM STDIN through psql in the DB container."""
    cmd = ["docker", "exec", "-i", inst.db, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
           "-U", inst.user, "-d", inst.database, "-c",
           "COPY %s (%s) FROM STDIN" % (table, ", ".join('"%s"' % c for c in columns))]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for row in rows:
        proc.stdin.write(("\t".join(row) + "\n").encode())
    proc.stdin.close()
    err = proc.stderr.read().decode()
    if proc.wait() != 0:
        raise RuntimeError("COPY %s failed: %s" % (table, err))


def seed(inst, size="small", rng_seed=1):
    spec = SIZES[size]
    rng = random.Random(rng_seed)
    upload = inst.upload_location
    _markers(upload)
    inst.psql(open(os.path.join(HERE, "immich_schema.sql")).read())  # what a server start would do

    users = []
    for i in range(spec["users"]):
        uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        label = "user%d" % i if i % 2 else None
        avatar = "%s/profile/%s/%s.jpg" % (MEDIA, uid, uuid.UUID(int=rng.getrandbits(128), version=4))
        _write(os.path.join(upload, avatar[len(MEDIA) + 1:]), os.urandom(2048))
        users.append((uid, label, avatar))
    _copy(inst, '"user"', ["id", "email", "name", "isAdmin", "storageLabel", "profileImagePath"],
          [(u, "user%d@lab.invalid" % i, "User %d" % i, "t" if i == 0 else "f", lab or "\\N", av)
           for i, (u, lab, av) in enumerate(users)])

    def assets():
        lo, hi = spec["size"]
        for n in range(spec["assets"]):
            aid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            owner, label, _avatar = users[n % len(users)]
            video = n % 10 == 9
            ext = "mp4" if video else "jpg"
            if label:  # storage template on: library/<storageLabel>/<year>/...
                rel = "library/%s/%d/%02d/IMG_%06d.%s" % (label, 2020 + n % 5, 1 + n % 12, n, ext)
            else:
                rel = "upload/%s/%s/%s.%s" % (owner, _shard(aid), aid, ext)
            data = os.urandom(rng.randint(lo, hi))
            _write(os.path.join(upload, rel), data)
            files = []
            if n % spec["thumb_every"] == 0:
                for kind, suffix in (("thumbnail", "thumbnail.webp"), ("preview", "preview.jpeg")):
                    trel = "thumbs/%s/%s/%s-%s" % (owner, _shard(aid), aid, suffix)
                    _write(os.path.join(upload, trel), os.urandom(512))
                    files.append((kind, "%s/%s" % (MEDIA, trel)))
            if video:
                vrel = "encoded-video/%s/%s/%s.mp4" % (owner, _shard(aid), aid)
                _write(os.path.join(upload, vrel), os.urandom(1024))
                files.append(("encoded_video", "%s/%s" % (MEDIA, vrel)))
            yield aid, owner, "VIDEO" if video else "IMAGE", "%s/%s" % (MEDIA, rel), os.path.basename(rel), \
                "\\\\x" + hashlib.sha1(data, usedforsecurity=False).hexdigest(), files  # Immich: SHA-1

    asset_files = []

    def asset_rows():
        for aid, owner, kind, path, fname, checksum, files in assets():
            asset_files.extend((aid, k, p) for k, p in files)
            yield aid, owner, kind, path, fname, checksum

    _copy(inst, "asset", ["id", "ownerId", "type", "originalPath", "originalFileName", "checksum"], asset_rows())
    _copy(inst, "asset_file", ["assetId", "type", "path"], asset_files)

    people = []
    for i in range(spec["people"]):
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        owner = users[i % len(users)][0]
        rel = "thumbs/%s/%s/%s.jpeg" % (owner, _shard(pid), pid)
        _write(os.path.join(upload, rel), os.urandom(256))
        people.append((pid, owner, "Person %d" % i, "%s/%s" % (MEDIA, rel)))
    _copy(inst, "person", ["id", "ownerId", "name", "thumbnailPath"], people)
    _write(os.path.join(upload, "backups", "immich-db-backup-20250101T020000-v2.3.1-pg15.sql.gz"), os.urandom(4096))

    emb = "::vector" if inst.psql("SELECT count(*) FROM pg_extension WHERE extname='vector'") == "1" else ""
    inst.psql("""
        INSERT INTO asset_exif ("assetId", make, model, latitude, longitude, city, country, description)
          SELECT id, 'LabCam', 'Model ' || (abs(hashtext(id::text)) %% 7), 48 + random(), 2 + random(),
                 'Paris', 'France', 'seeded ' || id FROM asset;
        INSERT INTO smart_search ("assetId", embedding)
          SELECT a.id, ARRAY(SELECT random()::real + 0 * length(a.id::text) FROM generate_series(1, 512))%(emb)s
          FROM asset a;
        INSERT INTO asset_face ("assetId", "personId", "boundingBoxX2", "boundingBoxY2")
          SELECT a.id, (SELECT id FROM person ORDER BY random() + 0 * length(a.id::text) LIMIT 1), 100, 100
          FROM asset a WHERE a.type = 'IMAGE';
        INSERT INTO face_search ("faceId", embedding)
          SELECT f.id, ARRAY(SELECT random()::real + 0 * length(f.id::text) FROM generate_series(1, 512))%(emb)s
          FROM asset_face f;
        INSERT INTO album ("ownerId", "albumName")
          SELECT (SELECT id FROM "user" ORDER BY email LIMIT 1 OFFSET (g %% %(users)d)), 'Album ' || g
          FROM generate_series(1, %(albums)d) g;
        INSERT INTO album_asset ("albumId", "assetId")
          SELECT al.id, a.id FROM album al JOIN asset a ON abs(hashtext(a.id::text || al.id::text)) %% 3 = 0;
        INSERT INTO geodata_places (id, name, longitude, latitude, "countryCode")
          SELECT g, 'Place ' || g, -180 + (g * 7.3) %% 360, -90 + (g * 3.1) %% 180, 'FR'
          FROM generate_series(1, %(places)d) g;
        INSERT INTO move_history ("entityId", "pathType", "oldPath", "newPath")
          SELECT id, 'original', '/data/upload/x/' || id, "originalPath" FROM asset LIMIT 5;
        ANALYZE;
    """ % dict(emb=emb, users=len(users), albums=spec["albums"], places=spec["places"]))
    return inst.row_counts()
