# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin of homelab.immich.restore_files: the copy runs asynchronously on the managed host and its progress is
printed in the run log (plugin_utils/progress.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.immich.plugins.plugin_utils.progress import ProgressAction


class ActionModule(ProgressAction):
    pass
