# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The modules whose action plugin prints progress lines (plugins/plugin_utils/progress.py): their
    # options and attributes, in one place.
    DOCUMENTATION = r"""
options:
  progress_file:
    description:
      - While it runs, progress is written here as JSON (at most every 2 seconds, and when a step starts).
      - The action plugin sets it to a file in the task's remote tmp dir (removed afterwards) when O(progress_interval)
        is above 0; a path given here is used instead and kept.
    type: path
  progress_interval:
    description:
      - Seconds between progress lines in the run log (step, files and bytes done, rate, an ETA when the total is
        known). The action plugin on the controller runs the module asynchronously, polls it with
        C(async_status) and prints a line at most this often; the module's result is the same either way.
      - C(0) runs the module as a plain task, without progress lines. So do check mode and a task with its own C(async).
    type: int
    default: 30
attributes:
  action:
    description: Has a corresponding action plugin (progress lines in the run log).
    support: full
  async:
    description: Supports being used with the C(async) keyword (then without progress lines).
    support: full
"""
