"""The drill's JUnit names each proof of the restore role (drill_scratch.restore_checks)."""
from ansible_collections.homelab.immich.plugins.modules.drill_scratch import restore_checks


def test_restore_proofs_become_drill_checks_once_each():
    restore = {"checks": [
        {"name": "compatibility gate", "ok": True, "detail": "pg 15 -> 15, vector present", "seconds": 0.4},
        {"name": "per-asset SHA-1", "ok": False, "detail": "1 mismatched: upload/u/a.jpg"},
        {"name": "immich-admin schema-check", "ok": True, "skipped": True, "detail": "the image has no schema-check"},
        {"name": "database rows", "ok": False, "detail": "the restore's own row check"},  # the drill's own check wins
        {"name": "compatibility gate", "ok": False, "detail": "a second copy"},
        {}, None, {"ok": True},
    ]}
    out = restore_checks(restore, ["database rows", "server answers"])
    assert [c["name"] for c in out] == ["compatibility gate", "per-asset SHA-1", "immich-admin schema-check"]
    assert out[0] == {"name": "compatibility gate", "ok": True, "detail": "pg 15 -> 15, vector present", "skipped": False,
                      "seconds": 0.4}
    assert out[1]["ok"] is False and "upload/u/a.jpg" in out[1]["detail"] and "seconds" not in out[1]
    assert out[2]["ok"] is True and out[2]["skipped"] is True


def test_a_restore_without_proofs_adds_nothing():
    assert restore_checks({}, []) == [] and restore_checks({"checks": None}, ["x"]) == []
