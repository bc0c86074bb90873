# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument spec shared by the modules (mirrors doc fragment homelab.immich.instance)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.homelab.immich.plugins.module_utils import docker_exec, dump_format
from ansible_collections.homelab.immich.plugins.module_utils._errors import OpError

INSTANCE_ARGS = dict(
    container=dict(type="str"),
    project_dir=dict(type="path"),
    service=dict(type="str", default="database"),
    db_user=dict(type="str", default="postgres"),
    db_name=dict(type="str", default="immich"),
    db_password=dict(type="str", no_log=True),
)
INSTANCE_REQUIRED_ONE_OF = [["container", "project_dir"]]


def instance_args(**extra):
    spec = dict(INSTANCE_ARGS)
    spec.update(extra)
    return spec


def container_of(module):
    """Resolve the DB container once; fail with the lookup's own message."""
    try:
        return docker_exec.resolve_container(module.params["container"], module.params["project_dir"],
                                             module.params["service"])
    except docker_exec.DockerError as exc:
        module.fail_json(msg=str(exc))


def run_op(module, func, *args, **kwargs):
    """Call a database operation (dump, restore, fresh, rewrite); turn its known errors into fail_json with the facts gathered so far."""
    try:
        return func(*args, **kwargs)
    except OpError as exc:
        module.fail_json(msg=str(exc), **exc.result)
    except (docker_exec.DockerError, dump_format.DumpError) as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (type(exc).__name__, exc))
