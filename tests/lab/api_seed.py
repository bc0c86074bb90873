"""Seed a lab instance through the Immich API, as a user would: works against the real immich-server too.

    seed(inst) -> {
      "admin":  {"email", "password", "userId", "accessToken"},   # inst.admin_email / inst.admin_password
      "users":  [{"email", "password", "userId", "name"}],         # a second, non-admin user
      "assets": [{"id", "ownerId", "filename", "sha1", "bytes"}],  # every upload (sha1: hex of the bytes)
      "sha1":   {asset id: sha1 hex},
      "album":  {"id", "albumName", "assetIds": [...]},
      "avatar": {"userId", "sha1"} or None,                       # the second user's profile image
      "statistics": GET /api/server/statistics after the jobs,
    }

Uploads are small VALID PNGs made here with zlib (every one different, deterministic per instance), so a
real server can decode them and make thumbnails. seed() waits until the queues are idle and every
upload's thumbnail answers 200: afterwards a restore can be proven with the same calls (originals'
SHA-1, thumbnails, album, statistics).
"""
import hashlib
import struct
import time
import uuid
import zlib


def png(width, height, key):
    """A valid RGB PNG whose pixels come from `key` (bytes): a different image for every key."""
    rnd = hashlib.sha256(key).digest()
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter type 0
        for x in range(width):
            row += bytes(((rnd[0] + x * rnd[1] + y * rnd[2]) & 0xFF, (rnd[3] + x * rnd[4] ^ y * rnd[5]) & 0xFF,
                          (rnd[6] + (x ^ y) * rnd[7]) & 0xFF))
        rows.append(bytes(row))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")


def multipart(fields, files):
    """(content type, body) of a multipart/form-data request. files: {name: (filename, ctype, bytes)}."""
    boundary = "----homelab-immich-%s" % uuid.uuid4().hex
    out = []
    for name, value in fields.items():
        out.append(('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (boundary, name, value)).encode())
    for name, (filename, ctype, data) in files.items():
        out.append(('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n\r\n'
                    % (boundary, name, filename, ctype)).encode() + data + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return "multipart/form-data; boundary=%s" % boundary, b"".join(out)


def wait_ready(inst, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if inst.ping():
            return
        time.sleep(0.5)
    raise RuntimeError("%s: no pong from the server after %ss" % (inst.name, timeout))


def upload(inst, token, data, filename, index):
    stamp = "2024-%02d-%02dT10:%02d:00.000Z" % (1 + index % 12, 1 + index % 28, index % 60)
    status, body = inst.api("POST", "/api/assets", multipart(
        {"deviceAssetId": "lab-%s-%d" % (filename, index), "deviceId": "homelab-immich-lab",
         "fileCreatedAt": stamp, "fileModifiedAt": stamp, "filename": filename},
        {"assetData": (filename, "image/png", data)}), token=token, timeout=60)
    if status not in (200, 201):
        raise RuntimeError("upload of %s failed: %s %s" % (filename, status, body))
    return body


def wait_thumbnails(inst, token, ids, timeout=180):
    """Jobs idle (GET /api/jobs, when the server has it), then every thumbnail answers 200."""
    deadline = time.monotonic() + timeout
    status, _body = inst.api("GET", "/api/jobs", token=token)
    if status == 200:
        inst.wait_jobs(token, timeout=timeout)
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        pending = [i for i in pending if inst.api("GET", "/api/assets/%s/thumbnail" % i, token=token, raw=True)[0] != 200]
        if pending:
            time.sleep(0.5)
    if pending:
        raise RuntimeError("%s: no thumbnail for %d assets after %ss" % (inst.name, len(pending), timeout))


def seed(inst, count=24, album_size=12, second_user=True, timeout=180):
    wait_ready(inst, timeout)
    status, body = inst.api("POST", "/api/auth/admin-sign-up", {"email": inst.admin_email,
                                                                "password": inst.admin_password, "name": "Lab Admin"})
    if status not in (200, 201) and not (status == 400 and "admin" in str(body)):
        raise RuntimeError("admin sign-up failed: %s %s" % (status, body))
    token = inst.login()
    _s, me = inst.api("GET", "/api/users/me", token=token)
    result = {"admin": {"email": inst.admin_email, "password": inst.admin_password, "userId": me["id"],
                        "accessToken": token},
              "users": [], "assets": [], "sha1": {}, "album": None, "avatar": None}

    def add(owner_token, owner_id, i, label):
        data = png(8 + i % 9, 8 + (i * 5) % 11, ("%s:%s:%d" % (inst.name, label, i)).encode())
        filename = "lab-%s-%03d.png" % (label, i)
        res = upload(inst, owner_token, data, filename, i)
        digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        result["assets"].append({"id": res["id"], "ownerId": owner_id, "filename": filename, "sha1": digest,
                                 "bytes": len(data), "status": res.get("status")})
        result["sha1"][res["id"]] = digest
        return res["id"]

    admin_ids = [add(token, me["id"], i, "admin") for i in range(count)]
    in_album = admin_ids[:album_size]
    status, album = inst.api("POST", "/api/albums", {"albumName": "Lab album %s" % inst.name, "assetIds": in_album[:1]},
                             token=token)
    if status not in (200, 201):
        raise RuntimeError("album creation failed: %s %s" % (status, album))
    status, added = inst.api("PUT", "/api/albums/%s/assets" % album["id"], {"ids": in_album[1:]}, token=token)
    if status != 200 or not all(r.get("success") for r in added):
        raise RuntimeError("adding assets to the album failed: %s %s" % (status, added))
    result["album"] = {"id": album["id"], "albumName": album["albumName"], "assetIds": in_album}

    if second_user:
        email, password = "user1@%s" % inst.admin_email.split("@", 1)[1], inst.admin_password + "-u1"
        status, user = inst.api("POST", "/api/admin/users", {"email": email, "password": password, "name": "Lab User"},
                                token=token)
        if status not in (200, 201):
            raise RuntimeError("user creation failed: %s %s" % (status, user))
        utoken = inst.login(email, password)
        result["users"].append({"email": email, "password": password, "userId": user["id"], "name": "Lab User"})
        for i in range(2):
            add(utoken, user["id"], i, "user1")
        avatar = png(16, 16, ("%s:avatar" % inst.name).encode())
        status, _res = inst.api("POST", "/api/users/profile-image",
                                multipart({}, {"file": ("avatar.png", "image/png", avatar)}), token=utoken)
        if status in (200, 201):
            result["avatar"] = {"userId": user["id"], "sha1": hashlib.sha1(avatar, usedforsecurity=False).hexdigest()}
    wait_thumbnails(inst, token, admin_ids, timeout)
    _s, result["statistics"] = inst.api("GET", "/api/server/statistics", token=token)
    return result
