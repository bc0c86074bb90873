# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Authenticated backup sets: ``<set>/set.mac``, an HMAC-SHA256 over everything a restore trusts.

Why: a dump is SQL that a restore runs, and a set's manifests only prove the set is *complete*
(sha256 recorded next to the file it describes). Whoever can write to the backup target can edit
the dump AND its manifests to match. A MAC with a key that never lives on the target closes that:
the key stays on the Immich host (default ``/etc/homelab-immich/<instance>.key``, 0600, created on
first use from ``os.urandom``) and in the user's vault, nowhere else.

What is covered (``covered_files``): every regular file of the set except ``set.mac`` itself and
the originals under ``files/``:

    set.json, instance.json, files.manifest.tsv      HMAC of the bytes (streamed)
    db/<dump>.manifest.json, db/<anything else>       HMAC of the bytes (a fingerprint file too)
    db/<dump>                                         its sha256 (the manifest also records it)
    compose/**  (compose files, .env)                 HMAC of the bytes

The originals are authenticated through ``files.manifest.tsv`` (sha256 of each file): a deep
verification of the set against its (authenticated) manifest proves them; a sampled one proves
the sample. Each file gets its own MAC so a refusal names the file that changed; the top-level
MAC binds the list (a file removed from set.mac, or a set.mac copied from another set, is found)
together with the set id, the instance and the key id.

    set.mac = {"format": 1, "algorithm": "HMAC-SHA256", "key_id": "<16 hex>", "set_id": ...,
               "instance": ..., "dump": "db/<dump>", "signed_at": <epoch>,
               "files": [{"path": ..., "size": ..., "mac": <hex>} | {"path": <dump>, "size": ...,
                          "sha256": <hex>, "mac": <hex>}, ...], "mac": <hex>}

The key id is derived from the key (an HMAC of a fixed label, never a hash of the key bytes
alone): it names a wrong key in a message, and it is no secret. It is not trusted either: an
attacker can edit it, which only changes the wording from "changed" to "wrong key"; both refuse.

What this does not cover, on purpose: which sets exist. Someone who can write to the target can
delete the newest sets or point ``latest`` at an older one (a genuine, older set then restores).
restic repositories need none of this: restic encrypts and authenticates every blob with the
repository key, so a snapshot cannot be edited without the repository password (an SSH mirror or
a second disk has no such protection, hence this file).

Secrets: the key is bytes in memory only, never in argv, logs, reprs or results.
Stdlib only (runs on managed hosts without Ansible).
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import errno
import hashlib
import hmac
import json
import os
import re
import stat
import time

from ansible_collections.homelab.immich.plugins.module_utils import sets
from ansible_collections.homelab.immich.plugins.module_utils._fsio import CHUNK, fsync_dir, read_json, write_bytes_atomic

NAME = "set.mac"
FORMAT = 1
ALGORITHM = "HMAC-SHA256"
DEFAULT_KEY_DIR = "/etc/homelab-immich"
KEY_BYTES = 32
_DOMAIN = b"homelab.immich set.mac v1\x00"
_KEY_ID_LABEL = b"homelab.immich key id v1"
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HEX_KEY_RE = re.compile(r"^[0-9a-fA-F]{64}$")
# Where a set keeps the files a restore trusts besides files/ (the originals, through the manifest).
_SKIPPED_TOP = (NAME, "files")


class MacError(Exception):
    """A key or set.mac problem, worded for the user (what failed, what it means, what to run)."""


class SetKey(object):
    """A set signing key: ``secret`` (bytes), ``key_id`` (public), ``path`` and ``created``.

    The repr and str name the key id and path only: a key printed by mistake leaks nothing.
    """

    __slots__ = ("_secret", "key_id", "path", "created")

    def __init__(self, secret, path=None, created=False):
        if not isinstance(secret, bytes) or len(secret) < KEY_BYTES:
            raise MacError("A set signing key must be at least %d random bytes." % KEY_BYTES)
        self._secret = secret
        self.key_id = key_id(secret)
        self.path = path
        self.created = created

    @property
    def secret(self):
        return self._secret

    def __repr__(self):
        return "SetKey(key_id=%s, path=%r)" % (self.key_id, self.path)

    __str__ = __repr__


def key_id(secret):
    """The public name of a key: 16 hex characters derived from it (not a hash of the bare key)."""
    return hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def default_key_path(instance, key_dir=DEFAULT_KEY_DIR):
    if not isinstance(instance, str) or not _INSTANCE_RE.match(instance):
        raise MacError("Instance name %r cannot name a key file (letters, digits, '.', '_', '-' only)." % (instance,))
    return os.path.join(key_dir, instance + ".key")


def copy_hint(path):
    """The commands that put a key on a new host (the key goes through stdin: never in argv or history)."""
    folder = os.path.dirname(path) or "."
    put = "sudo sh -c 'umask 077; mkdir -p %s && cat > %s'" % (folder, path)
    return ("from the old host: ssh OLDHOST sudo cat %s | %s ; or from your vault: run %s , paste the 64 hex "
            "characters, press Ctrl-D" % (path, put, put))


def missing_key_message(path, instance=None, expected_key_id=None):
    who = "instance %s" % instance if instance else "this instance"
    return ("No backup signing key at %s on this host. The sets of %s are signed with a key that lives only on the "
            "Immich host and in your vault, never on the backup target, so without it no set can be proven "
            "untouched%s. Nothing was touched. If this is a new host (a recovery onto a bare machine), copy the key "
            "here: %s. Do not create a new key for a restore: a new key verifies no existing set."
            % (path, who, " (they name key id %s)" % expected_key_id if expected_key_id else "", copy_hint(path)))


def _parse_key_text(text, source):
    value = text.strip() if isinstance(text, str) else ""
    if not _HEX_KEY_RE.match(value):
        raise MacError("%s does not hold a homelab.immich set signing key (64 hexadecimal characters on one line). "
                       "Copy the key again from your vault or from the Immich host's key file." % source)
    return binascii.unhexlify(value)


def key_from_text(text, source="the key given in the inventory/vault"):
    """A key given as its 64 hex characters (e.g. from an Ansible vault variable)."""
    return SetKey(_parse_key_text(text, source), path=None)


def _check_mode(path, st):
    if not stat.S_ISREG(st.st_mode):
        raise MacError("%s is not a regular file, so it cannot be a set signing key. Remove it and copy the key from "
                       "your vault: %s" % (path, copy_hint(path)))
    if st.st_mode & 0o077:
        raise MacError("The set signing key %s is readable or writable by group or others (mode %04o): whoever can read "
                       "it can sign a tampered backup set. Nothing was signed or restored. Fix it: sudo chmod 600 %s"
                       % (path, stat.S_IMODE(st.st_mode), path))


def load_key(path, create=False, instance=None, expected_key_id=None):
    """The key at ``path``. ``create=True`` (the backup only) makes a new 32-byte key when there is none:
    the folder 0700, the file 0600, written to a temporary name and linked into place (two runs racing
    end with one key). A restore never creates: a new key verifies no existing set."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            if create:
                return _create_key(path)
            raise MacError(missing_key_message(path, instance, expected_key_id)) from None
        if exc.errno == errno.ELOOP:
            raise MacError("The set signing key %s is a symbolic link; keep the key itself there (0600). Nothing was "
                           "signed or restored." % path) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise MacError("Cannot read the set signing key %s (%s): run the backup/restore as root (become: true). "
                           "Nothing was signed or restored." % (path, exc.strerror)) from None
        raise MacError("Cannot read the set signing key %s: %s." % (path, exc.strerror)) from None
    try:
        _check_mode(path, os.fstat(fd))
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    return SetKey(_parse_key_text(raw.decode("ascii", "replace"), "The key file %s" % path), path=path)


def _create_key(path):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder, 0o700)
    secret = os.urandom(KEY_BYTES)
    tmp = os.path.join(folder, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, binascii.hexlify(secret) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never replaces a key another run created meanwhile
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise MacError("Cannot create the set signing key %s: %s." % (path, exc.strerror)) from None
        return load_key(path)
    finally:
        os.unlink(tmp)
    fsync_dir(folder)
    return SetKey(secret, path=path, created=True)


def created_message(key):
    """What to tell the user once, when a backup made a new key."""
    return ("A new backup signing key was created at %s (key id %s). Copy it into your vault now (sudo cat %s): a "
            "restore on another host needs it, and without it no set can be verified there." % (key.path, key.key_id, key.path))


# -- what a set holds ----------------------------------------------------------------------------------

def _walk(top, rel=""):
    """(relpath, lstat) of every entry under ``top``/``rel`` (no symlink followed), sorted."""
    base = os.path.join(top, rel) if rel else top
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return
    for name in names:
        relp = rel + "/" + name if rel else name
        st = os.lstat(os.path.join(top, relp))
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(top, relp)
        else:
            yield relp, st


def covered_files(set_dir):
    """[(relpath, lstat)] of what set.mac covers: the set's files outside files/, set.mac excluded."""
    out = []
    for relp, st in _walk(set_dir):
        top = relp.split("/", 1)[0]
        if top in _SKIPPED_TOP or relp.endswith(".tmp") or os.path.basename(relp).startswith(".set.mac."):
            continue
        out.append((relp, st))
    return out


def _digest_file(hasher, path):
    """(bytes read, hex digest) of a file fed into ``hasher`` in CHUNK reads."""
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            hasher.update(block)
            size += len(block)
    return size, hasher.hexdigest()


def _file_mac(secret, relp, path):
    return _digest_file(hmac.new(secret, _DOMAIN + b"file\x00" + relp.encode("utf-8", "surrogateescape") + b"\x00",
                                 hashlib.sha256), path)


def _sha_entry_mac(secret, relp, size, sha256):
    msg = _DOMAIN + b"sha256\x00" + relp.encode("utf-8", "surrogateescape") + b"\x00" + str(size).encode() + b"\x00" \
        + sha256.encode("ascii")
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def _sha256_file(path):
    return _digest_file(hashlib.sha256(), path)


def _eq(a, b):
    """Constant-time equality of two hex strings (anything else an attacker wrote compares unequal)."""
    a = a.encode("utf-8", "replace") if isinstance(a, str) else b""
    b = b.encode("utf-8", "replace") if isinstance(b, str) else b""
    return hmac.compare_digest(a, b) and bool(a)


def _canonical(body):
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _top_mac(secret, body):
    return hmac.new(secret, _DOMAIN + b"set\x00" + _canonical(body), hashlib.sha256).hexdigest()


def _set_id_of(set_dir):
    name = os.path.basename(os.path.normpath(set_dir))
    return name[len(sets.PARTIAL_PREFIX):] if name.startswith(sets.PARTIAL_PREFIX) else name


def _dump_rel(set_dir):
    dump, _man = sets.find_dump(set_dir)
    return os.path.relpath(dump, set_dir).replace(os.sep, "/") if dump else None


def sign(set_dir, key, dump_sha256=None, now=None):
    """Write ``<set>/set.mac`` (0600, atomically) for the set as it is now; returns its content.

    ``dump_sha256``: the dump's sha256 when the caller computed it from the bytes it wrote (db_dump
    does): the dump is then not read again. Refuses a set holding a symbolic link or special file.
    """
    if not os.path.isdir(set_dir):
        raise MacError("Cannot sign %s: no such backup set." % set_dir)
    info = read_json(os.path.join(set_dir, sets.SET_JSON))
    if not isinstance(info, dict):
        raise MacError("Cannot sign %s: its set.json is missing or unreadable (sign after set.json is written)." % set_dir)
    dump = _dump_rel(set_dir)
    entries = []
    for relp, st in covered_files(set_dir):
        if not stat.S_ISREG(st.st_mode):
            raise MacError("Cannot sign %s: %s is not a regular file (links and special files are never part of a set)."
                           % (set_dir, relp))
        path = os.path.join(set_dir, relp)
        if relp == dump:
            size, sha = (st.st_size, dump_sha256) if dump_sha256 else _sha256_file(path)
            entries.append({"path": relp, "size": size, "sha256": sha, "mac": _sha_entry_mac(key.secret, relp, size, sha)})
        else:
            size, mac = _file_mac(key.secret, relp, path)
            entries.append({"path": relp, "size": size, "mac": mac})
    body = {"format": FORMAT, "algorithm": ALGORITHM, "key_id": key.key_id, "set_id": info.get("set_id") or _set_id_of(set_dir),
            "instance": info.get("instance") or "", "dump": dump, "signed_at": round(time.time() if now is None else now, 3),
            "files": entries}
    doc = dict(body, mac=_top_mac(key.secret, body))
    write_bytes_atomic(os.path.join(set_dir, NAME), (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("ascii"))
    return doc


def read_mac(set_dir):
    """set.mac of a set as a dict, or None when there is none (unsigned); raises MacError when unreadable."""
    path = os.path.join(set_dir, NAME)
    if not os.path.lexists(path):
        return None
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise MacError("%s is damaged (not the JSON a backup writes)." % path)
    return doc


def signed_key_id(set_dir):
    """The key id a set names (for messages), or None."""
    try:
        doc = read_mac(set_dir)
    except MacError:
        return None
    return doc.get("key_id") if doc else None


def verify(set_dir, key, *, dump_sha256=None, hash_dump=True):
    """Check a set against its set.mac. Returns a dict:

        ok          True only when every covered file is as signed, with this key
        status      "ok" | "unsigned" | "wrong_key" | "changed" | "damaged"
        changed / added / removed   relpaths
        problems    one line per finding, naming the file ("db/x.manifest.json was changed")
        message     one sentence for the user: what failed, what it means, what to do
        key_id, signed_key_id, set_id, dump, dump_sha256 (the signed sha256 of the dump)

    ``dump_sha256``: the sha256 the caller computed from the dump's bytes (sets.verify does), so the
    dump is not read twice. ``hash_dump=False``: the dump is not read at all and the caller MUST
    compare ``result["dump_sha256"]`` with the sha256 of the bytes it streams (before it commits).
    Every comparison of MACs is constant-time (hmac.compare_digest).
    """
    sid = _set_id_of(set_dir)
    result = {"ok": False, "status": "damaged", "changed": [], "added": [], "removed": [], "problems": [],
              "key_id": key.key_id, "key_path": key.path, "signed_key_id": None, "set_id": sid, "dump": None, "dump_sha256": None}
    try:
        doc = read_mac(set_dir)
    except MacError as exc:
        result["problems"].append(str(exc))
        return _finish(result, set_dir)
    if doc is None:
        result["status"] = "unsigned"
        result["problems"].append("%s is missing" % NAME)
        return _finish(result, set_dir)
    result["signed_key_id"] = doc.get("key_id")
    if doc.get("format") != FORMAT or doc.get("algorithm") != ALGORITHM:
        result["problems"].append("%s has format %r / algorithm %r; this version reads format %d, %s"
                                  % (NAME, doc.get("format"), doc.get("algorithm"), FORMAT, ALGORITHM))
        return _finish(result, set_dir)
    if not _eq(doc.get("key_id"), key.key_id):
        result["status"] = "wrong_key"
        result["problems"].append("signed with key id %s, but the key %s has key id %s"
                                  % (doc.get("key_id"), key.path or "given", key.key_id))
        return _finish(result, set_dir)
    body = dict((k, v) for k, v in doc.items() if k != "mac")
    top_ok = _eq(_top_mac(key.secret, body), doc.get("mac"))
    result["dump"] = doc.get("dump")
    signed = {}
    for entry in doc.get("files") or []:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            signed[entry["path"]] = entry
    present = dict(covered_files(set_dir))
    for relp in sorted(signed):
        entry = signed[relp]
        st = present.get(relp)
        path = os.path.join(set_dir, relp)
        if st is None:
            result["removed"].append(relp)
            result["problems"].append("%s was removed" % relp)
            continue
        if not stat.S_ISREG(st.st_mode):
            result["changed"].append(relp)
            result["problems"].append("%s was replaced by a link or special file" % relp)
            continue
        if "sha256" in entry:
            try:
                want_mac = _sha_entry_mac(key.secret, relp, int(entry.get("size") or 0), str(entry.get("sha256")))
            except (TypeError, ValueError, UnicodeError):
                want_mac = ""
            if not _eq(want_mac, entry.get("mac")):
                result["changed"].append(relp)
                result["problems"].append("the signed sha256 of %s in %s was altered" % (relp, NAME))
                continue
            if relp == doc.get("dump"):
                result["dump_sha256"] = entry["sha256"]
            if st.st_size != entry.get("size"):
                result["changed"].append(relp)
                result["problems"].append("%s was changed (%d bytes, signed %s)" % (relp, st.st_size, entry.get("size")))
                continue
            if relp == doc.get("dump") and not hash_dump and dump_sha256 is None:
                continue  # the caller checks the stream against result["dump_sha256"]
            got = dump_sha256 if (dump_sha256 and relp == doc.get("dump")) else _sha256_file(path)[1]
            if not _eq(got, entry["sha256"]):
                result["changed"].append(relp)
                result["problems"].append("%s was changed (sha256 %s, signed %s)" % (relp, got[:16], str(entry["sha256"])[:16]))
            continue
        size, mac = _file_mac(key.secret, relp, path)
        if not _eq(mac, entry.get("mac")):
            result["changed"].append(relp)
            result["problems"].append("%s was changed" % relp)
    for relp in sorted(set(present) - set(signed)):
        result["added"].append(relp)
        result["problems"].append("%s was added after the set was signed" % relp)
    if doc.get("set_id") != sid:
        result["problems"].append("%s belongs to set %s, not %s: a set was renamed or copied over another"
                                  % (NAME, doc.get("set_id"), sid))
    if _dump_rel(set_dir) != doc.get("dump"):
        result["problems"].append("the dump a restore would pick is %s, but the signed dump is %s"
                                  % (_dump_rel(set_dir), doc.get("dump")))
    if not top_ok and not result["problems"]:
        result["problems"].append("%s itself was altered (its list of files, set id or dump)" % NAME)
    elif not top_ok:
        result["problems"].append("%s itself does not verify" % NAME)
    result["status"] = "changed" if result["problems"] else "ok"
    result["ok"] = not result["problems"]
    return _finish(result, set_dir)


def _finish(result, set_dir):
    sid = result["set_id"]
    status = result["status"]
    if status == "ok":
        result["message"] = "Backup set %s is exactly as it was signed (key id %s)." % (sid, result["key_id"])
    elif status == "unsigned":
        result["message"] = (
            "Backup set %s has no %s: it was made before sets were signed, or the file was removed on the backup "
            "target. Its dump cannot be proven untouched, so it is refused; nothing was touched. Restore a signed set, "
            "or, only if you know this set was never exposed, allow unsigned sets for this one restore." % (sid, NAME))
    elif status == "wrong_key":
        result["message"] = (
            "Backup set %s was signed with key id %s, but this host's key is key id %s: wrong key. Nothing was touched. "
            "Copy the key this instance's backups were made with (from your vault or the old host) to %s: %s"
            % (sid, result["signed_key_id"], result["key_id"], _key_path(result), copy_hint(_key_path(result))))
    elif status == "changed":
        result["message"] = (
            "Backup set %s was changed after it was signed: %s. Someone or something with write access to the backup "
            "target edited it, so its database dump must not be run. Nothing was touched. Restore another set, and "
            "check who can write to %s." % (sid, "; ".join(result["problems"][:8]), os.path.dirname(os.path.normpath(set_dir))))
    else:
        result["message"] = ("Backup set %s cannot be authenticated: %s. Nothing was touched. Restore another set."
                             % (sid, "; ".join(result["problems"][:3])))
    return result


def _key_path(result):
    return result.get("key_path") or DEFAULT_KEY_DIR + "/<instance>.key"


def verify_with_key_file(set_dir, path, instance=None, **kw):
    """verify() with the key loaded from ``path`` (never created); a missing key raises MacError naming
    the key id the set expects and the command that copies the key to this host."""
    key = load_key(path, create=False, instance=instance, expected_key_id=signed_key_id(set_dir))
    return verify(set_dir, key, **kw)


def promote_signed(root, partial, info, key, dump_sha256=None):
    """sets.promote with the set signed before it becomes visible: set.json written, set.mac written, then
    the rename. A crash in between leaves a partial (removed by the next run), never an unsigned good set."""
    sets.write_info(partial, info)
    sign(partial, key, dump_sha256=dump_sha256)
    final = sets.promote(root, partial, info)  # rewrites set.json with the same bytes
    check = verify(final, key, hash_dump=False)
    if not check["ok"]:
        sign(final, key, dump_sha256=dump_sha256)
    return final


SIGNATURE_POLICIES = ("when_key_present", "required", "skip")


def check_signature(set_dir, key_path, instance=None, policy="when_key_present", dump_sha256=None):
    """The signature step of a restore's verification, by policy. Returns a dict:

        ok, checked   the set may be restored / its set.mac was checked with a key
        status        verify()'s status, or "not_checked" (no key here, policy when_key_present),
                      "skipped" (policy skip)
        message       one sentence for the user; problems, key_id, signed_key_id

    ``when_key_present``: a key on this host must verify the set (a set without set.mac is refused);
    without a key (a bare host recovering from its encrypted repository) the set is restored and the
    message says its signature was not checked. ``required``: no key is a refusal. ``skip``: the one
    restore of an unsigned set the user vouches for.
    """
    if policy not in SIGNATURE_POLICIES:
        raise MacError("signature policy %r is not one of %s" % (policy, ", ".join(SIGNATURE_POLICIES)))
    sid = _set_id_of(set_dir)
    base = {"ok": True, "checked": False, "key_path": key_path, "key_id": None, "signed_key_id": None, "problems": []}
    if policy == "skip":
        return dict(base, status="skipped", message="The signature of set %s was not checked (signature checks "
                                                    "turned off for this restore)." % sid)
    try:
        signed = signed_key_id(set_dir)
    except MacError:
        signed = None
    if not os.path.lexists(key_path) and policy == "when_key_present":
        return dict(base, status="not_checked", signed_key_id=signed, message=(
            "The signature of set %s was not checked: there is no signing key at %s on this host (a set fetched from "
            "an encrypted repository is authenticated by the repository's own encryption). %s"
            % (sid, key_path, "Copy the key here to check it: %s" % copy_hint(key_path) if signed else "")).strip())
    try:
        result = verify_with_key_file(set_dir, key_path, instance=instance, dump_sha256=dump_sha256)
    except MacError as exc:
        return dict(base, ok=False, status="no_key", signed_key_id=signed, problems=[str(exc)], message=str(exc))
    out = dict((k, result.get(k)) for k in ("ok", "status", "key_id", "signed_key_id", "problems", "message"))
    out.update(checked=True, key_path=key_path)
    return out
