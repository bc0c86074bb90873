# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Which Immich database a module talks to (through docker exec, never over TCP from the host).
    DOCUMENTATION = r"""
options:
  container:
    description:
      - Name of the Postgres container (C(immich_postgres) in Immich's compose file).
      - Required unless O(project_dir) is set.
    type: str
  project_dir:
    description:
      - Folder of the instance's compose project; the container of service O(service) is used.
      - Ignored when O(container) is set.
    type: path
  service:
    description: Compose service of the database when O(project_dir) is used.
    type: str
    default: database
  db_user:
    description: Database superuser (DB_USERNAME of Immich's C(.env)).
    type: str
    default: postgres
  db_name:
    description: Immich's database (DB_DATABASE_NAME of Immich's C(.env)).
    type: str
    default: immich
  db_password:
    description:
      - Password of O(db_user). Normally unused (the socket inside the container is trusted).
      - Passed to C(docker exec) through the environment (C(-e PGPASSWORD)), never on a command line.
    type: str
notes:
  - Runs on the managed host with the Python 3 standard library and the C(docker) CLI only; every
    Postgres binary used is the one inside the database container.
"""
