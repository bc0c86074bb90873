#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: drill_scratch
short_description: Scratch instance and checks of the disaster-recovery drill (homelab.immich.drill role)
version_added: 0.1.0
description:
  - O(state=present) writes an isolated copy of a production compose project into O(scratch_dir) - its
    own project name, container names, network, named volumes, folders and a free port on 127.0.0.1 -
    without starting anything. The production project is only read (C(docker compose config)).
  - O(state=verify) checks a restored scratch instance against a backup set - the rows the restore loaded against
    the dump manifest, the files it copied, the files against C(files.manifest.tsv) after the server started (folder
    markers by presence, since Immich rewrites them at every boot), every file the database references on disk,
    ping, and the checks the restore role proved the instance with (C(restore.checks) - compatibility gate,
    per-asset SHA-1 of the originals against Immich's checksums, admin, maintenance mode, schema drift, schema-check)
    - and returns the RPO (age of the set).
  - O(state=absent) tears the scratch project down (C(down -v)), removes its folder and reports leftovers.
options:
  state:
    description: What to do.
    type: str
    choices: [present, verify, absent]
    required: true
  project_dir:
    description: Production compose project folder (read only). Needed for O(state=present).
    type: path
  compose_files:
    description: Production compose files, when not the default ones.
    type: list
    elements: str
    default: []
  scratch_dir:
    description: Folder of the scratch instance; must not be inside the production project or its folders.
    type: path
    required: true
  suffix:
    description: Added to the project and container names of the scratch instance.
    type: str
    default: drill
  set_dir:
    description: The backup set restored (for O(state=verify)).
    type: path
  dump_file:
    description:
      - Instead of O(set_dir), a single dump that was restored (a dumper sidecar's
        C(db_dumps/last/*-latest.sql.gz)); the file checks are skipped and the RPO is the dump's age.
    type: path
  sample:
    description:
      - Number of files whose sha256 is checked again after the scratch server started; 0 checks all of them. (The
        per-asset SHA-1 proof has its own sample, given to the restore role - immich_restore_proof_sample.)
    type: int
    default: 0
  restore:
    description: The result the restore role recorded (C(immich_restore_result)), for the checks of what it loaded and copied.
    type: dict
    default: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: none
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: partial
    details: V(present) rewrites the same files; V(absent) is idempotent; V(verify) reads only.
author:
  - homelab.immich developers (@homelab)
"""

EXAMPLES = r"""
- name: Create the scratch instance
  homelab.immich.drill_scratch:
    state: present
    project_dir: /opt/immich
    scratch_dir: /var/tmp/immich-drill/immich
"""

RETURN = r"""
project_name:
  description: Compose project name of the scratch instance.
  returned: state=present
  type: str
port:
  description: Port of the scratch immich-server on 127.0.0.1.
  returned: state=present
  type: int
checks:
  description: Each check of O(state=verify) with ok and detail.
  returned: state=verify
  type: list
  elements: dict
rpo_seconds:
  description: Age of the backup set when it was verified.
  returned: state=verify
  type: float
leftovers:
  description: Containers, networks or folders of the scratch project still present after teardown.
  returned: state=absent
  type: list
  elements: str
"""

import json
import os
import shutil
import socket
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.homelab.immich.plugins.module_utils import compose, file_manifest, guards, immich, retention, sets
from ansible_collections.homelab.immich.plugins.module_utils import docker_exec as dx


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inside(path, parent):
    path, parent = os.path.realpath(path), os.path.realpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def scratch_config(config, inst, scratch_dir, suffix, port):
    """The production compose model turned into an isolated one. Pure: returns (config, warnings)."""
    warnings = []
    project = "%s-%s" % (config.get("name") or inst["project_name"], suffix)
    upload = os.path.join(scratch_dir, "library")
    db_data = os.path.join(scratch_dir, "postgres")
    services = {}
    for name, svc_in in sorted((config.get("services") or {}).items()):
        svc = json.loads(json.dumps(svc_in))
        vols, skip = [], None
        for vol in svc.get("volumes") or []:
            if vol.get("type") == "bind":
                src = vol.get("source") or ""
                if inst.get("upload_location") and _inside(src, inst["upload_location"]):
                    vol["source"] = upload + src[len(os.path.realpath(inst["upload_location"])):]
                elif inst.get("db_data_location") and _inside(src, inst["db_data_location"]):
                    vol["source"] = db_data
                elif _inside(src, inst["project_dir"]) or not vol.get("read_only"):
                    if src not in ("/etc/localtime", "/etc/timezone"):
                        skip = "it writes to %s" % src
            elif vol.get("type") == "volume" and vol.get("source"):
                decl = (config.get("volumes") or {}).get(vol["source"]) or {}
                if decl.get("external"):
                    skip = "it uses the external volume %s" % vol["source"]
            vols.append(vol)
        if skip and name not in (inst.get("db_service"), inst.get("server_service")):
            warnings.append("Service %s left out of the drill: %s (the production data stays untouched)." % (name, skip))
            continue
        if skip:
            raise ValueError("The %s service cannot be isolated: %s." % (name, skip))
        svc["volumes"] = vols
        if svc.get("container_name"):
            svc["container_name"] = "%s-%s" % (svc["container_name"], suffix)
        svc["restart"] = "no"
        if name == inst.get("server_service"):
            svc["ports"] = [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 2283, "published": str(port),
                             "protocol": "tcp"}]
        else:
            svc.pop("ports", None)
        svc["networks"] = {"default": None}
        svc.pop("env_file", None)
        deps = svc.get("depends_on")
        if isinstance(deps, dict):
            svc["depends_on"] = {k: v for k, v in deps.items() if k in (config.get("services") or {})}
        services[name] = svc
    for svc in services.values():
        if isinstance(svc.get("depends_on"), dict):
            svc["depends_on"] = {k: v for k, v in svc["depends_on"].items() if k in services}
    volumes = {}
    for vname, decl in (config.get("volumes") or {}).items():
        if not decl.get("external"):
            volumes[vname] = {k: v for k, v in decl.items() if k not in ("name",)}
    out = {"name": project, "services": services, "networks": {"default": {}}}
    if volumes:
        out["volumes"] = volumes
    return out, warnings, upload, db_data


def present(module, p):
    inst = compose.discover_instance(project_dir=p["project_dir"], compose_files=p["compose_files"] or None)
    scratch = os.path.abspath(p["scratch_dir"])
    for name, path in (("project folder", inst["project_dir"]), ("UPLOAD_LOCATION", inst["upload_location"]),
                       ("DB_DATA_LOCATION", inst.get("db_data_location"))):
        if path and (_inside(scratch, path) or _inside(path, scratch)):
            module.fail_json(msg="Refusing to drill in %s: it overlaps the production %s %s. Choose another "
                                 "immich_drill_scratch_root. Nothing was touched." % (scratch, name, path))
    config = compose.load_config(inst["project_dir"], inst["compose_files"])  # the files discovery found, by absolute path
    port = free_port()
    cfg, warnings, upload, db_data = scratch_config(config, inst, scratch, p["suffix"], port)
    if os.path.exists(scratch):
        shutil.rmtree(scratch)
    os.makedirs(upload, 0o700)
    os.makedirs(db_data, 0o700)
    path = os.path.join(scratch, "docker-compose.yml")
    with open(path, "w") as fh:
        fh.write("# Scratch instance of the homelab.immich drill: removed when the drill ends.\n")
        json.dump(cfg, fh, indent=2)
    env = compose.read_env_file(os.path.join(inst["project_dir"], ".env"))
    env.update({"UPLOAD_LOCATION": upload, "DB_DATA_LOCATION": db_data})
    for key in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PATH_SEPARATOR"):  # the scratch has one, resolved, file
        env.pop(key, None)
    fd = os.open(os.path.join(scratch, ".env"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for k, v in sorted(env.items()):
            fh.write("%s=%s\n" % (k, v))
    for w in warnings:
        module.warn(w)
    module.exit_json(changed=True, project_name=cfg["name"], port=port, scratch_dir=scratch,
                     compose_file=path, services=sorted(cfg["services"]), production=inst,
                     containers=[s.get("container_name") for s in cfg["services"].values() if s.get("container_name")])


def verify(module, p):
    """Checks of a restored scratch instance, each {name, ok, detail}: the database the restore loaded, the
    files against the set's manifest (markers by presence: the scratch server rewrote them when it booted),
    every file the database references on disk, and the server's answer."""
    inst = compose.discover_instance(project_dir=p["scratch_dir"])
    restore = p["restore"] or {}
    checks = []

    def check(name, ok, detail):
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    if not p["set_dir"]:
        return verify_dump_only(module, p, inst, restore)
    info = sets.read_info(p["set_dir"]) or {}
    db = restore.get("db") or {}
    want_rows = info.get("rows_by_table") or {}
    got_rows = db.get("rows_by_table") or {}
    diff = sorted(t for t in set(want_rows) | set(got_rows) if want_rows.get(t) != got_rows.get(t))
    check("database rows", want_rows and not diff,
          "%d tables, %d rows loaded, equal to the set's manifest" % (len(want_rows), sum(want_rows.values()))
          if want_rows and not diff else ("differ from the manifest: %s" % ", ".join(
              "%s %s!=%s" % (t, got_rows.get(t), want_rows.get(t)) for t in diff[:10]) if want_rows
              else "the set records no row counts"))
    files = restore.get("files") or {}
    check("files restored and verified", files.get("files") == info.get("files") and not files.get("mismatched"),
          "%s of %s files copied, each against its sha256" % (files.get("files"), info.get("files")))
    report = file_manifest.verify(inst["upload_location"], os.path.join(p["set_dir"], file_manifest.NAME),
                                  deep=p["sample"] <= 0, sample=p["sample"] if p["sample"] > 0 else None,
                                  markers="presence", allow_extra=True)
    check("files equal the set after the server started", report.ok,
          "%d files, %d hashed, folder markers present (their content is the server's)" % (report.files, report.hashed)
          if report.ok else "; ".join(report.problems()))
    try:
        cov = guards.coverage(inst, inst["upload_location"], info.get("folders") or list(immich.DEFAULT_BACKUP_FOLDERS))
        check("every file the database references is on disk", cov["ok"],
              "%d of %d present%s" % (cov["present"], cov["referenced"],
                                      "" if cov["ok"] else ": missing " + ", ".join(cov["missing_examples"][:5])))
    except guards.CoverageError as exc:
        check("every file the database references is on disk", False, str(exc))
    pong = _ping(inst)
    check("server answers", pong == "pong", "GET /api/server/ping answered %r" % pong)
    checks.extend(restore_checks(restore, [c["name"] for c in checks]))
    sid = os.path.basename(os.path.normpath(p["set_dir"]))
    rpo = time.time() - retention.set_time(sid) if sets.SET_ID_RE.match(sid) else None
    failed = [c for c in checks if not c["ok"]]
    module.exit_json(changed=False, ok=not failed, checks=checks, rpo_seconds=rpo, files_checked=report.hashed,
                     files_total=report.files, problems=["%s: %s" % (c["name"], c["detail"]) for c in failed])


def restore_checks(restore, taken):
    """The checks the restore role proved the scratch instance with (compatibility gate, vector-portable stage,
    per-asset SHA-1, admin, maintenance mode, schema drift, schema-check): the drill's checks too, so that its
    JUnit names each. A skipped one passes and says why."""
    out = []
    taken = set(taken)
    for c in restore.get("checks") or []:
        if not c or not c.get("name") or c["name"] in taken:
            continue
        taken.add(c["name"])  # one testcase per name in the JUnit
        item = {"name": c["name"], "ok": bool(c.get("ok")), "detail": c.get("detail") or "", "skipped": bool(c.get("skipped"))}
        if c.get("seconds") is not None:
            item["seconds"] = c["seconds"]
        out.append(item)
    return out


def _ping(inst):
    if not inst.get("server_url"):
        return None
    try:
        resp = open_url(inst["server_url"] + "/api/server/ping", timeout=10)
        return json.loads(resp.read()).get("res")
    except (OSError, ValueError) as exc:
        return str(exc)


def verify_dump_only(module, p, inst, restore):
    """A drill of one dump (no set): the database loaded with tables and assets, and the server answers."""
    rows = (restore.get("db") or {}).get("rows_by_table") or {}
    assets = rows.get("asset", rows.get("assets", 0))
    checks = [{"name": "database rows", "ok": bool(rows) and assets > 0,
               "detail": "%d tables restored, %s assets (a dumper's dump has no manifest to compare with)" % (len(rows), assets)}]
    pong = _ping(inst)
    checks.append({"name": "server answers", "ok": pong == "pong", "detail": "GET /api/server/ping answered %r" % pong})
    checks.extend(restore_checks(restore, [c["name"] for c in checks]))
    rpo = time.time() - os.stat(p["dump_file"]).st_mtime
    failed = [c for c in checks if not c["ok"]]
    module.exit_json(changed=False, ok=not failed, checks=checks, rpo_seconds=rpo, files_checked=0, files_total=0,
                     problems=["%s: %s" % (c["name"], c["detail"]) for c in failed])


def absent(module, p):
    scratch = os.path.abspath(p["scratch_dir"])
    path = os.path.join(scratch, "docker-compose.yml")
    project = None
    if os.path.exists(path):
        with open(path) as fh:
            fh.readline()
            project = json.load(fh).get("name")
        subprocess.run([dx.DOCKER, "compose", "--project-directory", scratch, "-f", path, "down", "-v",
                        "--remove-orphans", "--timeout", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    existed = os.path.exists(scratch)
    if existed:
        shutil.rmtree(scratch, ignore_errors=True)
    leftovers = []
    if project:
        label = "label=com.docker.compose.project=%s" % project
        for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
            rc, out, _err = dx.run([dx.DOCKER] + kind + ["-q", "--filter", label])
            leftovers += ["%s %s" % (kind[0], x) for x in out.split()]
    if os.path.exists(scratch):
        leftovers.append("folder %s" % scratch)
    module.exit_json(changed=existed, leftovers=leftovers, project_name=project)


def main():
    module = AnsibleModule(argument_spec={
        "state": {"type": "str", "required": True, "choices": ["present", "verify", "absent"]},
        "project_dir": {"type": "path"},
        "compose_files": {"type": "list", "elements": "str", "default": []},
        "scratch_dir": {"type": "path", "required": True},
        "suffix": {"type": "str", "default": "drill"},
        "set_dir": {"type": "path"},
        "dump_file": {"type": "path"},
        "sample": {"type": "int", "default": 0},
        "restore": {"type": "dict", "default": {}},
    }, required_if=[("state", "present", ("project_dir",)), ("state", "verify", ("set_dir", "dump_file"), True)])
    p = module.params
    try:
        {"present": present, "verify": verify, "absent": absent}[p["state"]](module, p)
    except (compose.DiscoveryError, sets.SetError, file_manifest.ManifestError, ValueError, OSError) as exc:
        module.fail_json(msg="Drill %s failed: %s" % (p["state"], exc))


if __name__ == "__main__":
    main()
