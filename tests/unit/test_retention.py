"""retention: one policy for every target; bad sets never push a good one out."""
import pytest

from ansible_collections.homelab.immich.plugins.module_utils import retention


def ids(days):
    return ["202611%02dT020000Z" % d for d in days]


def test_keep_last_and_calendar_buckets():
    entries = [(sid, True) for sid in ids(range(1, 29))]
    keep, delete = retention.plan(entries, {"keep_last": 3, "keep_daily": 5, "keep_weekly": 2, "keep_monthly": 1, "keep_good": 1})
    assert keep[-5:] == ids(range(24, 29)) and len(delete) == 28 - len(keep)
    assert "20261122T020000Z" in keep  # newest of the previous ISO week


def test_failed_runs_never_push_out_the_last_good_sets():
    entries = [(sid, True) for sid in ids((1, 2))] + [(sid, False) for sid in ids((3, 4, 5, 6))]
    keep, delete = retention.plan(entries, {"keep_last": 2, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_good": 2})
    assert set(ids((1, 2))) <= set(keep)
    assert delete == ids((3, 4))


def test_policy_checks_its_values():
    with pytest.raises(ValueError, match="unknown retention setting 'keep_hourly'"):
        retention.policy(keep_hourly=3)
    with pytest.raises(ValueError, match="0 or more"):
        retention.policy(keep_last=-1)
    assert retention.policy(keep_last="3")["keep_last"] == 3
