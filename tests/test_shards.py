"""The plan cut into parts (plan/shards.py) and shard reports merged (merge.py). Pure."""

from __future__ import annotations

import pytest
from test_plan import PARALLEL, WAVES, plan

from bootverify.errors import InputError
from bootverify.merge import merge
from bootverify.plan.shards import groups, part_plan, split

# e and f share the dependency d; g alone; x is listed and missing; u is unlisted
SET = {f"lib/modules/{n}.ko": "" for n in "defgu"} | {
    "lib/modules/modules.dep": "d.ko:\ne.ko: d.ko\nf.ko: d.ko\ng.ko:\nu.ko:\n",
    "lib/modules/modules.load": "e.ko\nf.ko\ng.ko\nx.ko\n",
}


def names(keys) -> list[str]:
    return sorted(k[1] for k in keys)


def test_groups_own_what_they_reach_first():
    p = plan(SET)
    gs = groups(p)
    assert [(g.entry, names(g.owned)) for g in gs] == [
        (0, ["d", "e"]), (1, ["f"]), (2, ["g"]), (3, ["x"]), (None, ["u"])]
    assert names(gs[1].closure) == ["d", "f"]          # f's guest loads d again


def test_split_is_deterministic_balanced_and_closed():
    p = plan(SET)
    parts = split(groups(p), 2)
    assert parts == split(groups(plan(SET)), 2)                 # the same on every run
    owned = [k for part in parts for k in part.owned]
    assert sorted(owned) == sorted(p.units) and len(owned) == len(set(owned))
    assert [len(part.closure) for part in parts] == [4, 3]      # e+d, g, u | f+d, x
    for part in parts:
        sub = part_plan(p, part)
        loaded = [sub.unit_at(line).key for w in sub.waves for line in w]
        for i, k in enumerate(loaded):                          # deps first, in its own guest
            assert set(p.units[k].deps) <= set(loaded[:i])
    with pytest.raises(ValueError):
        split(groups(p), 0)


def test_part_plans_keep_the_waves():
    p = plan(WAVES, bootconfig=PARALLEL)
    part = next(pt for pt in split(groups(p), 2) if any(k[1] == "d" for k in pt.owned))
    sub = part_plan(p, part)
    assert [[sub.unit_at(line).name for line in w] for w in sub.waves] == [
        ["s"], ["b"], ["c"], ["d"]]
    whole = split(groups(p), 1)[0]
    assert part_plan(p, whole).lines == p.lines


def report(index: int, count: int, modules: list[tuple[str, str]], inputs: str = "a",
           failing: dict[str, str] | None = None) -> dict:
    p = {"steps": [{"module": f"vendor_ramdisk/{n}"} for n in "abcd"],
         "verdict_facts": {"entries": [{"origin": "vendor_ramdisk", "entry": f"{n}.ko",
                                        "name": n, "stage": "first-stage",
                                        "blocklisted": False} for n in "abcd"],
                           "empty_sets": [], "first_stage_console": 0}}
    return {"android": {}, "notes": ["n"], "console_log": f"c{index}.log",
            "meta": {"schema_version": 2, "boots": [{"seconds": index}],
                     "inputs": [{"role": "boot", "path": "boot.img", "sha256": inputs},
                                {"role": "expect", "path": "e.toml", "sha256": str(index)}]},
            "plan": p, "error": None, "summary": {},
            "shard": {"index": index, "count": count},
            "android_entries": {"failing": failing or {}, "notes": []},
            "modules": [{"name": n, "runtime": {"origin": "vendor_ramdisk", "outcome": o},
                         "agreement": "ok"} for n, o in modules]}


def test_merge_decides_for_the_whole_plan():
    one = report(1, 2, [("c", "link-error"), ("a", "loaded")], failing={"2": "c: link-error"})
    two = report(2, 2, [("b", "loaded"), ("d", "init-error")], failing={"3": "d: init-error"})
    m = merge([("2.json", two), ("1.json", one)])
    assert [x["name"] for x in m.doc["modules"]] == ["a", "b", "c", "d"]     # plan order
    assert (m.doc["android"]["verdict"], m.doc["android"]["stops_at"]) == ("stops", "c")
    assert m.failed and not m.infra_failed and m.doc["console_logs"] == ["c1.log", "c2.log"]
    assert [b["seconds"] for b in m.doc["meta"]["boots"]] == [1, 2] and "summary" not in m.doc
    partial = {"kind": "infrastructure", "message": "no prompt", "exit_status": 2}
    m = merge([("1.json", report(1, 1, [("a", "loaded")]) | {"error": partial})])
    assert m.infra_failed and m.doc["error"] == partial


@pytest.mark.parametrize(("other", "message"), [
    (report(2, 2, [("b", "loaded")], inputs="b"), "ran other inputs than 1.json: boot differs"),
    (report(1, 2, [("b", "loaded")]), "shard 1/2 given twice (also 1.json)"),
    (report(2, 2, [("a", "loaded")]), "vendor_ramdisk/a: reported twice (also in 1.json)"),
    (report(2, 2, [("a", "crashed")]), "vendor_ramdisk/a: conflicting results: crashed here, "
                                       "loaded (also in 1.json)"),
    (report(2, 3, [("b", "loaded")]), "another plan or split than 1.json"),
    ({"modules": []}, "not a run report of this version"),
])
def test_merge_rejects_mismatches_with_one_line(other, message):
    with pytest.raises(InputError) as e:
        merge([("1.json", report(1, 2, [("a", "loaded")])), ("2.json", other)])
    assert str(e.value).startswith("2.json: " + message) and "\n" not in str(e.value)


def test_merge_names_missing_shards():
    with pytest.raises(InputError, match="shard.s. 2/3, 3/3 missing"):
        merge([("1.json", report(1, 3, [("a", "loaded")]))])
