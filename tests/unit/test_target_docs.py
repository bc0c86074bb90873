"""The target dict is documented twice in plugins/doc_fragments/target.py (ansible-test wants string literals):
both copies must say the same thing, and name exactly the keys and types of targets/spec.py, the one spec."""
import yaml

from ansible_collections.homelab.immich.plugins.doc_fragments.target import ModuleDocFragment
from ansible_collections.homelab.immich.plugins.module_utils.targets.spec import TARGET_OPTIONS


def _suboptions(text, option):
    return yaml.safe_load(text)["options"][option]["suboptions"]


def test_both_copies_say_the_same():
    assert _suboptions(ModuleDocFragment.TARGETS, "targets") == _suboptions(ModuleDocFragment.REPOSITORY, "repository")


def test_docs_name_the_spec():
    documented = _suboptions(ModuleDocFragment.TARGETS, "targets")
    assert sorted(documented) == sorted(TARGET_OPTIONS)
    for key, spec in TARGET_OPTIONS.items():
        assert documented[key]["type"] == spec["type"], key
        assert documented[key].get("default") == spec.get("default"), key
        assert documented[key].get("elements") == spec.get("elements"), key
