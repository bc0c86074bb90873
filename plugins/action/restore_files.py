# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of homelab.immich.restore_files: the copy runs asynchronously on the managed host and
its progress (step, files and bytes done, rate, ETA) is printed every ``progress_interval`` seconds;
the module's result is returned unchanged (plugin_utils/progress.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash
from ansible_collections.homelab.immich.plugins.plugin_utils.progress import ProgressRunner

display = Display()


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        return merge_hash(result, ProgressRunner(self, display).run(task_vars or {}))
