# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which backup sets to keep: ONE policy for every target kind (local folders, SSH mirrors, restic).

A target lists what it holds as (set_id, good) pairs; `plan` says what to keep and what to delete;
the target deletes. A good set is a promoted, verified set that covered everything the database
referenced. Bad sets never push a good one out: the newest `keep_good` good sets are always kept,
whatever the calendar says.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import datetime
import time

SET_ID_FORMAT = "%Y%m%dT%H%M%SZ"
DEFAULTS = {"keep_last": 7, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6, "keep_good": 2}


def set_time(set_id):
    """Epoch seconds of a set id (20261124T220000Z)."""
    return calendar.timegm(time.strptime(set_id, SET_ID_FORMAT))


def policy(**values):
    """The policy with defaults filled in and every value a non-negative int."""
    out = dict(DEFAULTS)
    for key, raw in values.items():
        if key not in DEFAULTS:
            raise ValueError("unknown retention setting %r (known: %s)" % (key, ", ".join(sorted(DEFAULTS))))
        if raw is None:
            continue
        if int(raw) < 0:
            raise ValueError("retention %s must be 0 or more, not %s" % (key, raw))
        out[key] = int(raw)
    return out


def plan(entries, pol=None):
    """(keep, delete): sorted set ids. ``entries`` = iterable of (set_id, good), any order.

    Keep: the last ``keep_last`` sets; the newest good set of each of the last ``keep_daily`` days,
    ``keep_weekly`` ISO weeks and ``keep_monthly`` months that have good sets; and always the newest
    ``keep_good`` good sets (at least one).
    """
    pol = policy(**(pol or {}))
    ordered = sorted(entries, key=lambda e: e[0], reverse=True)
    keep = set(sid for sid, _good in ordered[:pol["keep_last"]])
    buckets = (
        (pol["keep_daily"], lambda d: d.strftime("%Y-%m-%d")),
        (pol["keep_weekly"], lambda d: "%d-W%02d" % d.isocalendar()[:2]),
        (pol["keep_monthly"], lambda d: d.strftime("%Y-%m")),
    )
    good = [sid for sid, is_good in ordered if is_good]
    for count, key_of in buckets:
        seen = []
        for sid in good:
            key = key_of(datetime.datetime.fromtimestamp(set_time(sid), tz=datetime.timezone.utc))
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            keep.add(sid)
    keep.update(good[:max(pol["keep_good"], 1)])
    delete = [sid for sid, _good in ordered if sid not in keep]
    return sorted(keep), sorted(delete)
