"""Unit tests of module_utils/monitor.py: request shapes, retries, freshness (no network, no Docker)."""
import json
import os
import time
from urllib.error import HTTPError, URLError

from ansible_collections.homelab.immich.plugins.module_utils import monitor


def test_healthchecks_urls():
    url = "https://hc-ping.com/1234-abcd"
    assert monitor.build_request(url, "start")[:2] == ("POST", url + "/start")
    assert monitor.build_request(url, "success")[:2] == ("POST", url)
    assert monitor.build_request(url + "/", "failure")[:2] == ("POST", url + "/fail")
    assert monitor.build_request(url, "failure", message="dump truncated")[2] == b"dump truncated"


def test_uptime_kuma_push():
    url = "https://kuma.example.org/api/push/tok?ping="
    assert monitor.detect_style(url) == "uptime_kuma"
    assert monitor.build_request(url, "start") is None
    method, target, body, _headers = monitor.build_request(url, "failure", message="disk full")
    assert method == "GET" and body is None
    assert "status=down" in target and "msg=disk+full" in target and "ping=" in target


def test_ntfy_headers():
    method, target, body, hdrs = monitor.build_request("https://ntfy.sh/immich", "failure", message="boom")
    assert (method, target, body) == ("POST", "https://ntfy.sh/immich", b"boom")
    assert hdrs["Priority"] == "5" and "FAILED" in hdrs["Title"]


class _Resp:
    def __init__(self, code):
        self.code = code

    def getcode(self):
        return self.code

    def close(self):
        pass


def test_ping_retries_then_warns_without_raising():
    calls, sleeps = [], []

    def opener(req, timeout):
        calls.append((req.get_method(), req.full_url, timeout))
        raise URLError("connection refused")

    res = monitor.ping("https://hc.example/x", "start", retries=2, timeout=1, opener=opener, sleep=sleeps.append)
    assert not res["ok"] and res["attempts"] == 3 and len(calls) == 3 and sleeps == [1.0, 2.0]
    assert "not affected" in monitor.warning_for(res)
    assert "/x" not in res["url"]  # the token is not logged


def test_ping_client_error_not_retried():
    def opener(req, timeout):
        raise HTTPError(req.full_url, 404, "Not Found", {}, None)

    res = monitor.ping("https://hc.example/x", "success", retries=3, opener=opener, sleep=lambda s: None)
    assert res["attempts"] == 1 and res["status"] == 404 and not res["ok"]


def test_ping_ok_after_a_5xx():
    answers = [HTTPError("u", 503, "busy", {}, None), _Resp(200)]

    def opener(req, timeout):
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    res = monitor.ping("https://hc.example/x", "success", opener=opener, sleep=lambda s: None)
    assert res["ok"] and res["attempts"] == 2


def _mkset(root, name, status="verified"):
    os.makedirs(os.path.join(root, name))
    with open(os.path.join(root, name, "set.json"), "w") as fh:
        json.dump({"format": 2, "status": status, "files_bytes": 1000, "dump_bytes": 234}, fh)


def test_freshness(tmp_path):
    inst = tmp_path / "immich"
    now = time.time()

    def name_of(age_h):
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - age_h * 3600))

    assert monitor.freshness(str(tmp_path), "immich")["code"] == 3
    inst.mkdir()
    assert monitor.freshness(str(tmp_path), "immich")["code"] == 2
    _mkset(str(inst), name_of(30))
    _mkset(str(inst), name_of(1), status="failed")
    os.makedirs(str(inst / (".partial-" + name_of(0))))
    res = monitor.freshness(str(tmp_path), "immich", warn_hours=26, crit_hours=50, now=now)
    assert res["code"] == 1 and res["count"] == 1 and 29.9 < res["age_hours"] < 30.1
    _mkset(str(inst), name_of(2))
    res = monitor.freshness(str(tmp_path), "immich", now=now)
    assert res["code"] == 0 and res["size_bytes"] == 1234 and res["line"].startswith("BACKUP OK")
    assert monitor.freshness(str(tmp_path), "immich", warn_hours=0.5, crit_hours=1, now=now)["code"] == 2


def test_freshness_dumper_layout(tmp_path):
    (tmp_path / "last").mkdir()
    (tmp_path / "daily").mkdir()
    dump = tmp_path / "last" / "immich-20261124-220000.sql.gz"
    dump.write_bytes(b"x")
    os.symlink(dump.name, str(tmp_path / "last" / "immich-latest.sql.gz"))
    old = time.time() - 3 * 3600
    os.utime(str(dump), (old, old))
    res = monitor.freshness(str(tmp_path), layout="dumper", warn_hours=2, crit_hours=4)
    assert res["code"] == 1 and res["newest"] == str(dump)


def _cli():
    """roles/schedule/files/immich_monitor.py, the CLI installed beside module_utils on the host."""
    import importlib.util  # noqa: PLC0415

    path = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "schedule", "files", "immich_monitor.py")
    spec = importlib.util.spec_from_file_location("immich_monitor", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_exit_codes(tmp_path, capsys):
    cli = _cli()
    assert cli.main(["freshness", "--target", str(tmp_path), "--instance", "none"]) == 3
    (tmp_path / "i").mkdir()
    assert cli.main(["freshness", "--target", str(tmp_path), "--instance", "i"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("BACKUP CRITICAL")
