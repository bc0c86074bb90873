"""Shared pytest fixtures: the lab (tests/lab) and the collection's module_utils on sys.path."""
import os
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
# `ansible_collections.homelab.immich` resolves through build/collections (make collection).
sys.path.insert(0, os.path.join(ROOT, "build", "collections"))


def _docker_ok():
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def lab():
    """The lab module. No Docker engine is a FAILURE, never a skip: a suite that cannot reach its lab
    proves nothing, and must not look green."""
    if not _docker_ok():
        pytest.fail("no Docker engine reachable (`docker info` failed): the lab tests cannot run. Start it with "
                    "`make setup` (tests/lab/engine.sh), or check DOCKER_HOST.", pytrace=False)
    import lab as lab_module  # noqa: PLC0415

    lab_module.images()
    return lab_module


@pytest.fixture
def make_instance(lab, request):
    """Factory: make_instance(pg=15, seed="small", start="all"|"db"|"none", **Instance kwargs).

    Names are unique per test; every instance is torn down (down -v, folders removed) afterwards.
    """
    made = []

    def factory(pg=15, seed="small", start="all", name=None, **kw):
        name = name or "t%s-%s" % (pg, uuid.uuid4().hex[:8])
        inst = lab.Instance(name, pg=pg, **kw)
        made.append(inst)
        if start == "all":
            inst.up(seed=seed)
        elif start == "db":
            inst.start_db_only()
            if seed and seed != "none":
                from seeder import seed as do_seed  # noqa: PLC0415

                do_seed(inst, size=seed)
        else:
            inst.write()
        return inst

    yield factory
    if os.environ.get("LAB_KEEP") != "1":
        for inst in made:
            inst.down(purge=True)
