"""Monitoring pings through the real module, received by an HTTP server on 127.0.0.1 (random port).

A good run sends start then success; a failing run sends start then failure (with the failing step);
a dead endpoint only warns. Each of the three styles is checked on the wire.
"""
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, ".venv", "bin")


class Receiver:
    def __init__(self):
        self.hits = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode() if n else ""
                outer.hits.append({"method": self.command, "path": self.path, "body": body,
                                   "title": self.headers.get("Title"), "priority": self.headers.get("Priority")})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = _record  # noqa: N815 - http.server handler names

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


PLAY = """
- name: A backup-shaped run with monitoring
  hosts: localhost
  gather_facts: false
  vars:
    style: {style}
    url: {url}
    fail_it: {fail}
  tasks:
    - name: Ping start
      homelab.immich.notify: {{url: "{{{{ url }}}}", style: "{{{{ style }}}}", event: start}}
    - name: Run the backup
      block:
        - name: Dump the database
          ansible.builtin.command: "{{{{ 'false' if fail_it else 'true' }}}}"
          changed_when: false
        - name: Ping success
          homelab.immich.notify: {{url: "{{{{ url }}}}", style: "{{{{ style }}}}", event: success, text: all good}}
      rescue:
        - name: Ping failure
          homelab.immich.notify:
            url: "{{{{ url }}}}"
            style: "{{{{ style }}}}"
            event: failure
            text: "failed at {{{{ ansible_failed_task.name }}}}"
        - name: Fail the run
          ansible.builtin.fail:
            msg: backup failed
"""


def run_play(tmp_path, style, url, fail):
    play = tmp_path / ("play-%s-%s.yml" % (style, fail))
    play.write_text(PLAY.format(style=style, url=url, fail=str(fail).lower()))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               PATH=BIN + os.pathsep + os.environ["PATH"])
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=" + os.path.join(BIN, "python"), str(play)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.mark.parametrize("fail", [False, True], ids=["good-run", "failing-run"])
def test_healthchecks_style(tmp_path, receiver, fail):
    res = run_play(tmp_path, "healthchecks", receiver.url + "/ping/check-uuid", fail)
    assert (res.returncode != 0) == fail, res.stdout + res.stderr
    paths = [h["path"] for h in receiver.hits]
    expect_last = "/ping/check-uuid/fail" if fail else "/ping/check-uuid"
    assert paths == ["/ping/check-uuid/start", expect_last]
    if fail:
        assert receiver.hits[-1]["body"] == "failed at Dump the database"


@pytest.mark.parametrize("fail", [False, True], ids=["good-run", "failing-run"])
def test_uptime_kuma_style(tmp_path, receiver, fail):
    res = run_play(tmp_path, "uptime_kuma", receiver.url + "/api/push/TOKEN", fail)
    assert (res.returncode != 0) == fail, res.stdout + res.stderr
    assert len(receiver.hits) == 1  # Kuma has no "started" state
    hit = receiver.hits[0]
    assert hit["method"] == "GET" and hit["path"].startswith("/api/push/TOKEN?")
    assert ("status=down" if fail else "status=up") in hit["path"]


@pytest.mark.parametrize("fail", [False, True], ids=["good-run", "failing-run"])
def test_ntfy_style(tmp_path, receiver, fail):
    res = run_play(tmp_path, "ntfy", receiver.url + "/immich-backups", fail)
    assert (res.returncode != 0) == fail, res.stdout + res.stderr
    assert [h["priority"] for h in receiver.hits] == ["2", "5" if fail else "3"]
    assert all(h["method"] == "POST" and h["path"] == "/immich-backups" for h in receiver.hits)
    assert ("FAILED" in receiver.hits[-1]["title"]) == fail


def test_dead_endpoint_only_warns(tmp_path):
    receiver = Receiver()
    url = receiver.url + "/ping/x"
    receiver.close()  # nothing listens there any more
    res = run_play(tmp_path, "healthchecks", url, False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "not affected" in res.stdout + res.stderr


def test_freshness_cli_is_one_line(tmp_path):
    (tmp_path / "immich").mkdir()
    env = dict(os.environ, HOMELAB_IMMICH_LIB=os.path.join(ROOT, "build", "collections"))
    res = subprocess.run(["python3", os.path.join(ROOT, "roles", "schedule", "files", "immich_monitor.py"), "freshness",
                          "--target", str(tmp_path), "--instance", "immich"], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 2 and len(res.stdout.splitlines()) == 1
    res = subprocess.run(["python3", os.path.join(ROOT, "roles", "schedule", "files", "immich_monitor.py"), "freshness",
                          "--target", str(tmp_path), "--instance", "immich", "--json"], capture_output=True, text=True, env=env, check=False)
    assert json.loads(res.stdout)["state"] == "CRITICAL"
