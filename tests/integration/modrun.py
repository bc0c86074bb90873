"""Run a homelab.immich module the way Ansible does, without a playbook (reusable by every test).

    res = run_module("db_dump", container="x", dest="/tmp/d")          # dict: the module's JSON
    res = run_module("db_restore", _check_mode=True, ...)               # check mode

The module runs as `python -m ansible_collections.homelab.immich.plugins.modules.<name>` with
``{"ANSIBLE_MODULE_ARGS": {...}}`` on stdin and build/collections on PYTHONPATH.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, "build", "collections")


def module_argv(name):
    return [sys.executable, "-m", "ansible_collections.homelab.immich.plugins.modules." + name]


def module_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = COLLECTIONS + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def module_input(args, check_mode=False):
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    return json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()


def parse_output(stdout, stderr=b"", rc=0):
    text = stdout.decode("utf-8", "replace")
    start = text.find("{")
    try:
        res = json.loads(text[start:]) if start >= 0 else None
    except ValueError:
        res = None
    if res is None:
        raise RuntimeError("module printed no JSON (rc=%s): %s %s" % (rc, text[-2000:], stderr.decode("utf-8", "replace")[-2000:]))
    res.setdefault("rc", rc)
    return res


def start_module(name, _check_mode=False, **args):
    """Popen of the module with its args already written to stdin (for tests that kill it)."""
    proc = subprocess.Popen(module_argv(name), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=module_env())
    proc.stdin.write(module_input(args, _check_mode))
    proc.stdin.close()
    return proc


def run_module(name, _check_mode=False, _timeout=1800, **args):
    """The module's result dict (``failed``/``msg`` on failure)."""
    res = subprocess.run(module_argv(name), input=module_input(args, _check_mode), capture_output=True,
                         env=module_env(), timeout=_timeout, check=False)
    return parse_output(res.stdout, res.stderr, res.returncode)
