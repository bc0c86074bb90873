# -*- coding: utf-8 -*-
# Copyright (c) homelab.immich contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of the database operations: a message the user can act on, plus the facts gathered so far."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class OpError(Exception):
    """A failure with a message the user can act on; ``result`` holds facts worth returning."""

    def __init__(self, msg, **result):
        Exception.__init__(self, msg)
        self.result = result


def mb(n):
    return "%.1f MB" % (n / 1e6)
