"""Fill a lab instance with an Immich-shaped dataset: rows whose paths point at real files (SQL, fast).

Sizes:
  small  ~150 assets, a few hundred files, seconds (the tests)
  large  100,000 assets (>= 100,000 files) and >= 1 GiB of plain SQL dump, a few minutes (bench/)

Originals are random bytes; `asset.checksum` is their SHA-1 (checksumAlgorithm sha1), as in Immich, so a
restore can be checked file by file against the database. The rows are the ones the server stand-in
writes itself (tests/lab/images/server.py): thumbnails `<id>_thumbnail.webp` / `_preview.jpeg` with
their asset_file rows, asset_job_status rows, a thumbhash, `system-flags` and the `.immich` markers, the
MediaLocation; the admin (user 0) is inst.admin_email / inst.admin_password, so `inst.login()` works.
An instance modelling Immich <= 1.136 (inst.old_naming) gets the same dataset in that era's naming
(plural tables, `exif`, `asset_files`, `albums_assets_assets`, paths `upload/upload/<userId>/...`).
When no server ran yet (start="db"), the stand-in's migrations are applied from here.

With a server image that is not the lab's stand-in (inst.api_seeding) seeding goes through the API
(api_seed.py): the SQL seeder writes tables the real migrations own.
Bulk rows (embeddings, exif, places) are generated inside Postgres, the per-file rows are streamed with
COPY: nothing large is held in memory.
"""
import hashlib
import importlib.util
import json
import os
import random
import re
import subprocess
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {
    #          assets, users, albums, people, places, original bytes (min, max), thumbs for 1 in N
    "small": dict(assets=150, users=2, albums=3, people=4, places=500, size=(1024, 16384), thumb_every=1),
    "large": dict(assets=100_000, users=3, albums=50, people=200, places=200_000, size=(1024, 4096), thumb_every=20),
}
MEDIA = "/data"  # where the server container sees UPLOAD_LOCATION (Immich >= 1.137)
FOLDERS = ("encoded-video", "library", "upload", "profile", "thumbs", "backups")
_STANDIN = []


def standin():
    """The server stand-in as a module (its migrations and naming are the single source of truth)."""
    if not _STANDIN:
        spec = importlib.util.spec_from_file_location("immich_standin", os.path.join(HERE, "images", "server.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _STANDIN.append(mod)
    return _STANDIN[0]


def _shard(u):
    return "%s/%s" % (u[0:2], u[2:4])


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def _markers(upload):
    """The `.immich` markers a first server boot writes (content: Date.now()); existing ones are kept."""
    for folder in FOLDERS:
        os.makedirs(os.path.join(upload, folder), exist_ok=True)
        marker = os.path.join(upload, folder, ".immich")
        if not os.path.exists(marker):
            with open(marker, "w") as fh:
                fh.write(str(int(time.time() * 1000)))


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


def ensure_schema(inst):
    """The schema as the stand-in's first boot leaves it, when no server has run (start='db')."""
    mod = standin()
    old = bool(getattr(inst, "old_naming", False))
    ledger = "migrations" if old else "kysely_migrations"
    if inst.psql("SELECT to_regclass('public.%s') IS NOT NULL" % ledger) == "t":
        return
    ext = None
    if inst.psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") == "1":
        ext = "vector"
        inst.psql("CREATE EXTENSION IF NOT EXISTS vector")
    sql = []
    if old:
        sql.append('CREATE TABLE migrations (id SERIAL PRIMARY KEY, "timestamp" bigint NOT NULL, name varchar NOT NULL);')
    else:
        sql.append('CREATE TABLE kysely_migrations (name varchar(255) PRIMARY KEY NOT NULL, "timestamp" varchar(255) '
                   "NOT NULL);\nCREATE TABLE kysely_migrations_lock (id varchar(255) PRIMARY KEY NOT NULL, is_locked "
                   "integer NOT NULL DEFAULT 0);\nINSERT INTO kysely_migrations_lock VALUES ('migration_lock', 0);")
    for name, body in mod.load_migrations(mod.schema_path(old, HERE)):
        sql.append(mod.render(body, ext))
        if old:
            sql.append('INSERT INTO migrations ("timestamp", name) VALUES (%s, %s);'
                       % (re.findall(r"\d{13}", name)[-1], mod.lit(name)))
        else:
            sql.append('INSERT INTO kysely_migrations (name, "timestamp") VALUES (%s, %s);'
                       % (mod.lit(name), mod.lit(time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))))
    inst.psql("\n".join(sql))


def _boot_state(inst, media):
    """system-flags + MediaLocation as the first boot sets them (kept when a server already set them)."""
    mod = standin()
    flags = {"mountChecks": dict.fromkeys(FOLDERS, True)}
    sql = "INSERT INTO system_metadata (key, value) VALUES ('system-flags', %s) ON CONFLICT DO NOTHING;" % mod.lit(flags)
    if not getattr(inst, "old_naming", False):
        sql += ("INSERT INTO system_metadata (key, value) VALUES ('MediaLocation', %s) ON CONFLICT DO NOTHING;"
                % mod.lit({"location": media}))
    inst.psql(sql)


def seed(inst, size="small", rng_seed=1):
    if getattr(inst, "api_seeding", False):
        if size != "small":
            raise RuntimeError("the %s dataset needs the SQL seeder, which is not for server image %s"
                               % (size, inst.image("server")))
        from api_seed import seed as api_seed  # noqa: PLC0415 - the API path

        return api_seed(inst)
    spec = SIZES[size]
    rng = random.Random(rng_seed)
    upload = inst.upload_location
    old = bool(getattr(inst, "old_naming", False))
    # Where the server sees UPLOAD_LOCATION, as the stored paths name it: /data/... now, upload/... before.
    media = "upload" if old else MEDIA
    names = standin().Naming(old)
    sep = names.thumb_sep
    ensure_schema(inst)
    _markers(upload)
    _boot_state(inst, media)

    def on_disk(stored):
        return os.path.join(upload, stored[len(media) + 1:])

    users = []
    admin_hash = standin().App.hash_password(getattr(inst, "admin_password", "lab-admin"))
    for i in range(spec["users"]):
        uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        label = "user%d" % i if i % 2 else None
        avatar = "%s/profile/%s/%s.jpg" % (media, uid, uuid.UUID(int=rng.getrandbits(128), version=4))
        _write(on_disk(avatar), os.urandom(2048))
        users.append((uid, label, avatar))
    _copy(inst, names.user, ["id", "email", "name", "isAdmin", "storageLabel", "profileImagePath", "password"],
          [(u, getattr(inst, "admin_email", "user0@lab.invalid") if i == 0 else "user%d@lab.invalid" % i,
            "User %d" % i, "t" if i == 0 else "f", lab or "\\N", av, admin_hash if i == 0 else "")
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
                    trel = "thumbs/%s/%s/%s%s%s" % (owner, _shard(aid), aid, sep, suffix)
                    _write(os.path.join(upload, trel), os.urandom(512))
                    files.append((kind, "%s/%s" % (media, trel)))
            if video:  # a transcode: an asset_file row now, assets."encodedVideoPath" before 1.137
                vrel = "encoded-video/%s/%s/%s.mp4" % (owner, _shard(aid), aid)
                _write(os.path.join(upload, vrel), os.urandom(1024))
                if not old:
                    files.append(("encoded_video", "%s/%s" % (media, vrel)))
            yield aid, owner, "VIDEO" if video else "IMAGE", "%s/%s" % (media, rel), os.path.basename(rel), \
                "\\\\x" + hashlib.sha1(data, usedforsecurity=False).hexdigest(), files, len(data)  # Immich: SHA-1

    asset_files = []
    sizes = []

    def asset_rows():
        for aid, owner, kind, path, fname, checksum, files, nbytes in assets():
            asset_files.extend((aid, k, p) for k, p in files)
            sizes.append((aid, str(nbytes)))
            yield aid, owner, kind, path, fname, checksum, "lab-%s" % aid[:8], "lab-seeder"

    _copy(inst, names.asset, ["id", "ownerId", "type", "originalPath", "originalFileName", "checksum", "deviceAssetId",
                              "deviceId"], asset_rows())
    _copy(inst, names.file, ["assetId", "type", "path"], asset_files)

    people = []
    for i in range(spec["people"]):
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        owner = users[i % len(users)][0]
        rel = "thumbs/%s/%s/%s.jpeg" % (owner, _shard(pid), pid)
        _write(os.path.join(upload, rel), os.urandom(256))
        people.append((pid, owner, "Person %d" % i, "%s/%s" % (media, rel)))
    _copy(inst, "person", ["id", "ownerId", "name", "thumbnailPath"], people)
    _write(os.path.join(upload, "backups", "immich-db-backup-20250101T020000-v2.7.5-pg15.sql.gz"), os.urandom(4096))

    emb = "::vector" if inst.psql("SELECT count(*) FROM pg_extension WHERE extname='vector'") == "1" else ""
    _copy(inst, names.exif, ["assetId", "fileSizeInByte"], sizes)
    video_sql = ("UPDATE assets SET \"encodedVideoPath\" = 'upload/encoded-video/' || \"ownerId\" || '/' || "
                 "substr(id::text, 1, 2) || '/' || substr(id::text, 3, 2) || '/' || id || '.mp4' WHERE type = 'VIDEO';"
                 if old else "")
    thumbs_sql = ('CASE WHEN EXISTS (SELECT 1 FROM asset_files f WHERE f."assetId" = a.id AND f.type = \'preview\') '
                  "THEN now() END")
    status_cols = '"assetId", "metadataExtractedAt"' + (', "previewAt", "thumbnailAt"' if old else "")
    # metadata extracted for every asset; <= 1.136 also stamps the thumbnails (only where there are some)
    status_vals = "a.id, now()" + ((", %s, %s" % ((thumbs_sql,) * 2)) if old else "")
    inst.psql("""
        UPDATE %(exif)s e SET make = 'LabCam', model = 'Model ' || (abs(hashtext(e."assetId"::text)) %% 7),
               latitude = 48 + random(), longitude = 2 + random(), city = 'Paris', country = 'France',
               description = 'seeded ' || e."assetId", "dateTimeOriginal" = a."fileCreatedAt", "timeZone" = 'UTC'
          FROM %(asset)s a WHERE a.id = e."assetId";
        INSERT INTO asset_job_status (%(status_cols)s) SELECT %(status_vals)s FROM %(asset)s a;
        UPDATE %(asset)s SET thumbhash = decode(md5(id::text), 'hex')
          WHERE EXISTS (SELECT 1 FROM %(file)s f WHERE f."assetId" = %(asset)s.id AND f.type = 'preview');
        INSERT INTO smart_search ("assetId", embedding)
          SELECT a.id, ARRAY(SELECT random()::real + 0 * length(a.id::text) FROM generate_series(1, 512))%(emb)s
          FROM %(asset)s a;
        INSERT INTO %(face)s ("assetId", "personId", "boundingBoxX2", "boundingBoxY2")
          SELECT a.id, (SELECT id FROM person ORDER BY random() + 0 * length(a.id::text) LIMIT 1), 100, 100
          FROM %(asset)s a WHERE a.type = 'IMAGE';
        INSERT INTO face_search ("faceId", embedding)
          SELECT f.id, ARRAY(SELECT random()::real + 0 * length(f.id::text) FROM generate_series(1, 512))%(emb)s
          FROM %(face)s f;
        UPDATE person p SET "faceAssetId" = (SELECT f.id FROM %(face)s f WHERE f."personId" = p.id ORDER BY f.id LIMIT 1);
        INSERT INTO %(album)s ("ownerId", "albumName")
          SELECT (SELECT id FROM %(user)s ORDER BY email LIMIT 1 OFFSET (g %% %(users)d)), 'Album ' || g
          FROM generate_series(1, %(albums)d) g;
        INSERT INTO %(album_asset)s (%(aa_album)s, %(aa_asset)s)
          SELECT al.id, a.id FROM %(album)s al JOIN %(asset)s a ON abs(hashtext(a.id::text || al.id::text)) %% 3 = 0;
        INSERT INTO geodata_places (id, name, longitude, latitude, "countryCode")
          SELECT g, 'Place ' || g, -180 + (g * 7.3) %% 360, -90 + (g * 3.1) %% 180, 'FR'
          FROM generate_series(1, %(places)d) g;
        INSERT INTO move_history ("entityId", "pathType", "oldPath", "newPath")
          SELECT id, 'original', '%(media)s/upload/x/' || id, "originalPath" FROM %(asset)s LIMIT 5;
        %(video_sql)s
        UPDATE %(user)s u SET "quotaUsageInBytes" = (SELECT coalesce(sum(e."fileSizeInByte"), 0) FROM %(asset)s a
          JOIN %(exif)s e ON e."assetId" = a.id WHERE a."ownerId" = u.id);
        ANALYZE;
    """ % dict(emb=emb, users=len(users), albums=spec["albums"], places=spec["places"], media=media,
               exif=names.exif, asset=names.asset, file=names.file, face=names.face, album=names.album,
               album_asset=names.album_asset, aa_album=names.aa_album, aa_asset=names.aa_asset, user=names.user,
               status_cols=status_cols, status_vals=status_vals, video_sql=video_sql))
    return inst.row_counts()


if __name__ == "__main__":
    print(json.dumps(SIZES, indent=2))
