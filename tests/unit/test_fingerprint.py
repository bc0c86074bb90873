"""fingerprint: the query's output parsed line by line (names with tabs and newlines intact), compare() naming
unknown, changed and missing objects, extension versions apart, the SQL parameterised only by plain names."""
import json

import pytest

from ansible_collections.homelab.immich.plugins.module_utils import fingerprint as fp

META = json.dumps({"server_version": "15.18 (Debian 15.18-0+deb12u1)", "server_version_num": 150018, "database": "immich"})


def row(kind, name, hash_, **detail):
    return json.dumps({"kind": kind, "name": name, "hash": hash_, "detail": detail})


def doc(*rows, meta=META):
    return fp.parse([meta] + list(rows))


RECORDED = doc(
    row("extension", "cube", "s1", version="1.5", schema="public"),
    row("function", "public.f_unaccent(text)", "h1", owner="=owner", security_definer=False, language="sql"),
    row("trigger", "public.asset.asset_updated", "h2", enabled="O", function="public.touch()"),
    row("default", 'public.asset."updatedAt"', "h3"),
    row("schema", "public", "h4", owner="=owner"),
)


def test_parse_keeps_odd_names_and_counts():
    d = fp.parse([META.encode(), b"", row("function", 'public."a\tb\nc"()', "x", owner="=owner").encode() + b"\n",
                  row("trigger", "public.t.z", "y")])
    assert d["server_version_num"] == 150018 and d["database"] == "immich"
    assert [o["name"] for o in d["objects"]] == ['public."a\tb\nc"()', "public.t.z"]
    assert d["counts"] == {"function": 1, "trigger": 1} and d["format"] == fp.FORMAT


@pytest.mark.parametrize("lines, text", [
    ([], "printed nothing"),
    ([row("function", "f", "x")], "does not start with the server facts"),
    ([META, "not json"], "unexpected fingerprint output"),
    ([META, row("table", "public.t", "x")], "unexpected fingerprint row"),
])
def test_parse_refuses_what_the_query_never_prints(lines, text):
    with pytest.raises(fp.FingerprintError, match=text):
        fp.parse(lines)


def test_same_database_compares_clean():
    res = fp.compare(RECORDED, doc(*[json.dumps(o) for o in RECORDED["objects"]]))
    assert res["ok"] and res["unknown"] == res["changed"] == res["missing"] == [] and "5 objects" in res["message"]


def test_planted_trigger_and_security_definer_function_named_as_unknown():
    current = doc(*[json.dumps(o) for o in RECORDED["objects"]],
                  row("function", "public.planted()", "p1", owner="=owner", security_definer=True, language="plpgsql"),
                  row("trigger", "public.asset.planted_trg", "p2", enabled="O", function="public.planted()"))
    res = fp.compare(RECORDED, current)
    assert not res["ok"]
    assert res["unknown"] == ["function public.planted() (SECURITY DEFINER)",
                              "trigger public.asset.planted_trg (runs public.planted())"]
    assert "unknown trigger public.asset.planted_trg" in res["message"] and "superuser" in res["message"]


def by_kind(objs, kind):
    return next(i for i, o in enumerate(objs) if o["kind"] == kind)


def test_changed_definition_owner_or_flags_named():
    objs = [dict(o) for o in RECORDED["objects"]]
    f, d = by_kind(objs, "function"), by_kind(objs, "default")
    objs[f] = dict(objs[f], hash="other", detail=dict(objs[f]["detail"], security_definer=True, owner="mallory"))
    objs[d] = dict(objs[d], hash="other")
    res = fp.compare(RECORDED, doc(*[json.dumps(o) for o in objs]))
    assert res["changed"] == [
        'default public.asset."updatedAt": definition differs',
        "function public.f_unaccent(text) (SECURITY DEFINER, owner mallory): owner =owner -> mallory, "
        "security_definer False -> True"]
    assert not res["ok"]


def test_missing_objects_and_extension_versions_reported_not_failed():
    objs = [dict(o) for o in RECORDED["objects"] if o["kind"] != "trigger"]
    e = by_kind(objs, "extension")
    objs[e] = dict(objs[e], detail={"version": "1.6", "schema": "public"})
    res = fp.compare(RECORDED, doc(*[json.dumps(o) for o in objs]))
    assert res["ok"] and res["missing"] == ["trigger public.asset.asset_updated (runs public.touch())"]
    assert res["versions"] == ["extension cube 1.5 -> 1.6"] and "1 recorded ones absent" in res["message"]


def test_cross_major_changes_carry_a_hint():
    objs = [dict(o) for o in RECORDED["objects"]]
    f = by_kind(objs, "function")
    objs[f] = dict(objs[f], hash="other")
    meta17 = json.dumps({"server_version": "17.12", "server_version_num": 170012, "database": "immich"})
    res = fp.compare(RECORDED, doc(*[json.dumps(o) for o in objs], meta=meta17))
    assert not res["ok"] and "PostgreSQL 15.18" in res["message"] and "17.12" in res["message"]


def test_same_sees_extension_versions_for_the_before_after_dump_check():
    again = doc(*[json.dumps(o) for o in RECORDED["objects"]])
    assert fp.same(RECORDED, again)
    again["objects"][by_kind(again["objects"], "extension")]["detail"]["version"] = "1.6"
    assert not fp.same(RECORDED, again)


def test_sql_only_takes_plain_role_names():
    text = fp.sql("homelab_immich_restore_0123456789ab", ignore_schema="homelab_immich_restore_0123456789ab")
    assert "'homelab_immich_restore_0123456789ab'" in text and text.count("json_build_object('kind'") == 1
    assert "pg_get_functiondef" in text and "pg_get_triggerdef" in text and "pg_event_trigger" in text
    assert "pg_policy" in text and "pg_attrdef" in text and "pg_get_ruledef" in text and "deptype = 'e'" in text
    for bad in ("x'; DROP TABLE t; --", "Robert", "a b"):
        with pytest.raises(fp.FingerprintError):
            fp.sql(bad)
    assert "WITH" not in fp.cte_sql()[:10] and "objs(kind, name, def, detail)" in fp.cte_sql()


def test_write_and_read(tmp_path):
    path = str(tmp_path / ("immich-db-backup-x.sql.gz" + fp.FILE_SUFFIX))
    fp.write(path, RECORDED)
    assert fp.read(path)["objects"] == RECORDED["objects"]
    (tmp_path / "bad.json").write_text('{"format": 9}')
    with pytest.raises(fp.FingerprintError):
        fp.read(str(tmp_path / "bad.json"))
