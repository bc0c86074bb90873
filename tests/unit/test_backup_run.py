"""backup_run: the engine's options table, the shrink rule, the verification plan, the summary."""
import time

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import backup_run as br


def test_defaults_and_type_checks():
    opts = br.normalize_options({})
    assert opts["dump_kind"] == "database" and "thumbs" in opts["folders"] and opts["retention"]["keep_good"] == 2
    assert br.normalize_options({"verify_sample": "10", "allow_shrink": "true"})["verify_sample"] == 10
    with pytest.raises(ValueError) as err:
        br.normalize_options({"dump_kind": "both", "folders": ["upload", "photos"], "colour": 1, "retention": {"keep_hourly": 1}})
    text = str(err.value)
    for fragment in ("dump_kind must be one of database, cluster", "photos are not Immich media folders",
                     "unknown option(s): colour", "keep_hourly"):
        assert fragment in text


def test_argument_spec_mirrors_the_table():
    spec = br.argument_spec()
    assert set(spec) == set(br.OPTIONS)
    assert spec["dump_kind"] == {"type": "str", "default": "database", "choices": ["database", "cluster"]}
    assert spec["folders"] == {"type": "list", "elements": "str"}


def test_shrink_compares_the_folders_both_sets_hold():
    prev = {"files_by_folder": {"upload": [100, 1000], "thumbs": [200, 50]}}
    assert br.shrink_problems({"upload": [99, 990], "thumbs": [200, 50]}, prev, 0.5) == []
    problems = br.shrink_problems({"upload": [3, 30], "thumbs": [200, 50]}, prev, 0.5)  # thumbs must not hide it
    assert problems == ["3 files in upload/, below 50% of the previous set's 100"]
    assert br.shrink_problems({"upload": [100, 400], "thumbs": [200, 50]}, prev, 0.5) == [
        "400 bytes in upload/, below 50% of the previous set's 1.0 KB"]
    tiny = {"files_by_folder": {"profile": [2, 20], "upload": [100, 1000]}}
    assert br.shrink_problems({"profile": [0, 0], "upload": [100, 1000]}, tiny, 0.5) == []  # 2 avatars removed
    assert br.shrink_problems({"upload": [100, 1000]}, prev, 0.5) == []  # thumbs no longer backed up: not a shrink
    assert br.shrink_problems({"upload": [1, 1]}, {}, 0.5) == []  # first set


def test_full_verification_when_due_or_most_files_are_new():
    opts = {"verify_full_days": 30}
    recent = {"verification": {"full_at": time.time() - 86400}}
    assert br.verification_plan(opts, recent, copied=1, total=100)[0] is False
    assert br.verification_plan(opts, recent, copied=60, total=100)[0] is True
    assert br.verification_plan(opts, {"verification": {"full_at": time.time() - 31 * 86400}}, 1, 100)[0] is True
    assert br.verification_plan({"verify_full_days": 0}, recent, 1, 100)[0] is True


def test_summary_says_what_happened():
    report = {"status": "partial", "instance": "immich", "set_id": "20261201T020000Z", "seconds": 12.5, "set_dir": "/b/immich/x",
              "dump": {"bytes": 2_000_000, "dump_kind": "database", "seconds": 1.5, "mb_per_s": 40.0},
              "files": {"files": 10, "bytes": 5_000_000, "copied": 2, "copied_bytes": 1_000_000, "mb_per_s": 20.0, "linked": 8},
              "coverage": {"present": 9, "referenced": 9, "external": 3},
              "verification": {"full": False, "hashed": 4},
              "targets": [{"kind": "ssh", "label": "nas:/srv", "status": "failed", "error": "unreachable"}],
              "retention": {"/b": {"deleted": ["20261101T020000Z"]}}, "warnings": ["1 symlinks not copied: upload/x"]}
    lines = br.summary_lines(report)
    assert lines[0].startswith("immich: set 20261201T020000Z verified, but a target FAILED in 12.5 s")
    assert any("2 copied (1.0 MB" in ln and "8 unchanged hard links" in ln for ln in lines), lines
    assert any("3 external-library assets not covered" in ln for ln in lines)
    assert any("ssh nas:/srv: FAILED: unreachable" in ln for ln in lines)
    assert any("pruned    /b: 20261101T020000Z" in ln for ln in lines)
    failed = br.summary_lines({"status": "failed", "instance": "immich", "failed_step": "coverage", "error": "boom"})
    assert failed == ["immich: backup FAILED at step coverage: boom"]


def test_a_local_target_is_required():
    with pytest.raises(ValueError, match="at least one local folder"):
        br.run_backup({"instance_name": "immich"}, [{"host": "nas", "path": "/srv"}], {})
