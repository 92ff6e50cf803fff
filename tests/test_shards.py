"""The plan cut into parts (plan/shards.py) and shard reports merged (merge.py), their JSON,
summary and JUnit those of one run. Pure."""

from __future__ import annotations

import datetime
import io
import itertools
import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from test_crosscheck import pred, rt
from test_plan import PARALLEL, WAVES, plan

from bootverify.android import STAGE_OF
from bootverify.crosscheck import crosscheck
from bootverify.errors import InputError
from bootverify.merge import merge
from bootverify.reports.document import run_document
from bootverify.reports.junit import write_junit
from bootverify.reports.model import RunRecord, ShardRun, failed_run
from bootverify.reports.summary import summary_text
from bootverify.runtime.kmsg import DEFAULT_FAIL_ON, Finding, FindingClass, LinkProblemKind, Outcome
from bootverify.static.analysis import Problem, ProblemKind, StaticReport
from bootverify.verdict import decide, entry_crashes, entry_failures, runtime_crashes, verdict_facts
from bootverify.nightly.previous import read_previous
from bootverify.plan.shards import Costs, Part, cut_note, groups, part_plan, split

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
    parts = split(groups(p, warm_up=0), 2)
    assert parts == split(groups(plan(SET), warm_up=0), 2)     # the same on every run
    owned = [k for part in parts for k in part.owned]
    assert sorted(owned) == sorted(p.units) and len(owned) == len(set(owned))
    assert [names(part.closure) for part in parts] == [["d", "e", "f"], ["g", "u", "x"]]
    for part in parts:
        sub = part_plan(p, part)
        loaded = [sub.unit_at(line).key for w in sub.waves for line in w]
        for i, k in enumerate(loaded):                          # deps first, in its own guest
            assert set(p.units[k].deps) <= set(loaded[:i])
    with pytest.raises(ValueError):
        split(groups(p), 0)
    assert split((), 2) == (Part(0, ()), Part(1, ()))         # an empty shard's guests
    # with the warm-up, a cut would cost the part after it more than it saves: one part
    assert [len(part.groups) for part in split(groups(p), 2)] == [5, 0]


# m00..m13 listed in order; m05 and m11 share the dependency c, m12 needs m03
CHAIN = {f"lib/modules/m{i:02}.ko": "" for i in range(14)} | {"lib/modules/c.ko": "",
                                                             "lib/modules/modules.dep": "".join(
    f"m{i:02}.ko:{' c.ko' if i in (5, 11) else ' m03.ko' if i == 12 else ''}\n"
    for i in range(14)) + "c.ko:\n", "lib/modules/modules.load": "".join(
    f"m{i:02}.ko\n" for i in range(14))}


def test_parts_are_runs_of_the_plan_with_the_fewest_loads_and_their_warm_up():
    p = plan(CHAIN)
    gs = groups(p, warm_up=2)
    assert names(gs[6].before) == ["c", "m04", "m05"]           # the 2 entries before it
    for n in (2, 3, 4):
        parts = split(gs, n)
        runs = [g.entry for part in parts for g in part.groups]
        assert runs == list(range(14))                          # consecutive, in plan order
        # the most loaded part: as few loads as any cutting into n runs gives (every choice)
        best = min(max(len(Part(0, gs[a:b]).closure)
                       for a, b in zip((0, *cuts), (*cuts, 14), strict=True))
                   for cuts in itertools.combinations(range(1, 14), n - 1))
        assert max(len(part.closure) for part in parts) == best, n
        for part in parts[1:]:
            first = part.groups[0].entry
            warm = {k for g in gs[max(0, first - 2):first] for k in g.closure}
            sub = part_plan(p, part)
            assert warm <= {s.key for s in sub.steps}


def test_a_previous_runs_seconds_cut_where_the_time_is():
    p = plan(CHAIN)
    key = {k[1]: k for k in p.units}
    # m06 hung last night (10 s, then a reboot): it alone costs more than all the others, so
    # by the seconds the cut falls right after it; by the loads, later
    costs = Costs({key["m06"]: 10_000 + 12_000}, 100, frozenset({key["m06"]}), "prev.json")
    gs = groups(p, warm_up=2, reboots=costs.reboots)
    assert names(gs[6].before) == ["c", "m04", "m05"]           # the 2 entries before it
    assert names(gs[7].before) == []                 # the run rebooted after m06: nothing of it
    assert names(gs[8].before) == ["m07"]
    for n in (2, 3):
        parts = split(gs, n, costs)
        assert [g.entry for part in parts for g in part.groups] == list(range(14))
        best = min(max(costs.of(Part(0, gs[a:b]).closure)
                       for a, b in zip((0, *cuts), (*cuts, 14), strict=True))
                   for cuts in itertools.combinations(range(1, 14), n - 1))
        assert max(costs.of(part.closure) for part in parts) == best, n
    assert [part.groups[0].entry for part in split(gs, 2, costs)] == [0, 7]
    assert [part.groups[0].entry for part in split(groups(p, warm_up=2), 2)] == [0, 9]
    assert "cut by the seconds of prev.json before m07" in cut_note("2 guests", ["m07"], costs)


def test_previous_report_gives_the_costs(tmp_path):
    doc = report(1, 1, [("a", "loaded"), ("b", "hung"), ("c", "loaded"), ("d", "not-found")])
    doc["modules"][0]["runtime"]["seconds"] = 0.02
    doc["modules"][1]["runtime"]["seconds"] = 8.0
    doc["modules"][2]["runtime"]["seconds"] = 0.04
    doc["meta"]["boots"] = [{"seconds": 9.0, "restore_seconds": 0.0},
                            {"seconds": 7.0, "restore_seconds": 1.5},
                            {"seconds": 8.0, "restore_seconds": 2.5}]
    (tmp_path / "prev.json").write_text(json.dumps(doc))
    costs = read_previous(tmp_path / "prev.json").costs()
    vr = "vendor_ramdisk"
    # a hang costs its seconds and the median reboot with its restore (8.5 and 10.5 s); a
    # module the report does not have, the median load of those that loaded (a and c)
    assert costs.ms == {(vr, "a"): 20, (vr, "b"): 8000 + 9500, (vr, "c"): 40,
                        (vr, "d"): 100}
    assert costs.reboots == {(vr, "b")} and costs.default == 30
    assert costs.of([(vr, "a"), (vr, "x")]) == 50 and costs.source.endswith("prev.json")
    # schema 1: no seconds, no boots; still a baseline, the split by loads
    for m in doc["modules"]:
        del m["runtime"]["seconds"]
    del doc["meta"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    assert read_previous(tmp_path / "old.json").costs().ms == {}
    assert read_previous(tmp_path / "old.json").costs().source == ""      # not "by the seconds"


def test_part_plans_keep_the_waves():
    p = plan(WAVES, bootconfig=PARALLEL)
    # the whole plan's waves: s (load_sequential) | p | e b a (the device starts a wave from the
    # back of its list) | c | d
    subs = [part_plan(p, pt) for pt in split(groups(p, warm_up=0), 2)]
    assert [[[sub.unit_at(line).name for line in w] for w in sub.waves] for sub in subs] == [
        [["b", "a"], ["c"], ["d"]], [["s"], ["p"], ["e"]]]
    whole = split(groups(p), 1)[0]
    assert part_plan(p, whole).lines == p.lines


def module(name: str, outcome: str, origin: str = "vendor_ramdisk") -> dict:
    """A module of a run report (report.run_json's entry), no static verdict."""
    return {"name": name, "path": f"/lib/modules/{name}.ko", "static": None,
            "runtime": {"origin": origin, "outcome": outcome, "errno": None,
                        "errno_name": None, "problems": [], "kmsg": [], "message": "",
                        "reason": "", "seconds": 0.1, "findings": []},
            "agreement": "ok", "why": ""}


def report(index: int, count: int, modules: list[tuple[str, str]], inputs: str = "a",
           failing: dict[str, str] | None = None,
           crashes: dict[str, str] | None = None, vendor_dlkm: str = "") -> dict:
    """Shard `index` of a run over the entries a, b, c, d: first stage's, but those named in
    `vendor_dlkm` (second stage's)."""
    origin = {n: "vendor_dlkm" if n in vendor_dlkm else "vendor_ramdisk" for n in "abcd"}
    p = {"steps": [{"module": f"{origin[n]}/{n}"} for n in "abcd"],
         "verdict_facts": {"entries": [{"origin": origin[n], "entry": f"{n}.ko",
                                        "name": n, "stage": STAGE_OF[origin[n]].value,
                                        "blocklisted": False} for n in "abcd"],
                           "empty_sets": [], "first_stage_console": 0},
         "shards": [{"entries": [0, 2]}, {"entries": [1, 3]}][:count]}
    return {"android": {}, "notes": ["n"], "console_log": f"c{index}.log", "fail_on": [],
            "kernel_release": "6.1", "kmi_trimmed": False, "boot_mode": "normal",
            "meta": {"schema_version": 2, "boots": [{"seconds": index}],
                     "started_at": f"2026-12-01T02:0{index}:00Z", "seconds": 10.0,
                     "inputs": [{"role": "boot", "path": "boot.img", "sha256": inputs},
                                {"role": "expect", "path": "e.toml", "sha256": str(index)}]},
            "plan": p, "error": None, "summary": {},
            "shard": {"index": index, "count": count},
            "android_entries": {"failing": failing or {}, "notes": []}
            | ({"crashes": crashes} if crashes is not None else {}),
            "modules": [module(n, o, origin[n]) for n, o in modules]}


def test_merge_decides_for_the_whole_plan():
    one = report(1, 2, [("c", "link-error"), ("a", "loaded")], failing={"2": "c: link-error"})
    two = report(2, 2, [("b", "loaded"), ("d", "init-error")], failing={"3": "d: init-error"})
    m = merge([("2.json", two), ("1.json", one)])
    assert [x["name"] for x in m.doc["modules"]] == ["a", "b", "c", "d"]     # plan order
    assert (m.doc["android"]["verdict"], m.doc["android"]["stops_at"]) == ("stops", "c")
    assert m.failed and not m.infra_failed and m.doc["console_logs"] == ["c1.log", "c2.log"]
    assert [b["seconds"] for b in m.doc["meta"]["boots"]] == [1, 2]
    assert m.doc["summary"]["outcomes"] == {"init-error": 1, "link-error": 1, "loaded": 2}
    assert (m.record.seconds, m.record.started.minute) == (20.0, 1)
    partial = {"kind": "infrastructure", "message": "no prompt", "exit_status": 2}
    m = merge([("1.json", report(1, 1, [("a", "loaded")]) | {"error": partial})])
    assert m.infra_failed and m.doc["error"] == partial and m.record.error.exit_status == 2


def test_merge_stops_where_a_shard_saw_a_panic():
    """A shard's android_entries.crashes: the entry whose load panicked stops the device with
    the panic's words; a report without `crashes` (older) still merges."""
    one = report(1, 2, [("c", "loaded"), ("a", "loaded")])        # no crashes: older
    two = report(2, 2, [("b", "loaded"), ("d", "crashed")], failing={"3": "d: crashed"},
                 crashes={"3": "panic"})
    m = merge([("1.json", one), ("2.json", two)])
    android = m.doc["android"]
    assert (android["verdict"], android["stage"], android["stops_at"]) == (
        "stops", "first-stage", "d")
    assert "kernel panicked" in android["reason"] and "bootloader" not in android["reason"]
    assert m.doc["android_entries"]["crashes"] == {"3": "panic"} and m.failed
    for bad in ({"3": "melted"}, {"4": "panic"}, ["3"]):
        with pytest.raises(InputError, match="android_entries.crashes"):
            merge([("1.json", one), ("2.json", two | {"android_entries": {
                **two["android_entries"], "crashes": bad}})])


# d needs c; e needs d; f and g alone; x listed and missing; u unlisted
RECORDED = {f"lib/modules/{n}.ko": "" for n in "cdefgu"} | {
    "lib/modules/modules.dep": "c.ko:\nd.ko: c.ko\ne.ko: d.ko c.ko\nf.ko:\ng.ko:\nu.ko:\n",
    "lib/modules/modules.load": "e.ko\nf.ko\ng.ko\nx.ko\nd.ko\n",
}


def recorded_run(count: int) -> list[RunRecord]:
    """One run's outcomes as `count` shards (run_nightly's records, without the guests): f
    fails to link, g crashes with a WARN before, x is not found, u is in no list."""
    p = plan(RECORDED)
    warn = Finding(FindingClass.WARNING, "WARNING: at g_init", ("WARNING: at g_init",))
    runtime = {"c": rt("c", Outcome.LOADED), "d": rt("d", Outcome.LOADED),
               "e": rt("e", Outcome.LOADED),
               "f": rt("f", Outcome.LINK_ERROR, (LinkProblemKind.UNKNOWN_SYMBOL, "msleep"),
                       errno=2),
               "g": replace(rt("g", Outcome.CRASHED), findings=(warn,), reason="oops"),
               "x": rt("x", Outcome.NOT_FOUND), "u": rt("u", Outcome.UNLISTED)}
    results = [replace(runtime[k[1]], origin=k[0]) for k in (s.key for s in p.steps)]
    preds = tuple(pred(n, *((Problem(ProblemKind.UNRESOLVED, "msleep", ""),) if n == "f"
                            else ())) for n in "cdefgu")
    verdicts = crosscheck(preds, results)
    whole = split(groups(p, warm_up=0), count)
    outcomes = {(r.origin, r.name): r.outcome.value for r in results}
    records = []
    for part in whole:
        failing = entry_failures(p, outcomes, part.entries)
        crashed = entry_crashes(p, runtime_crashes(results), part.entries)
        note = (f"shard {part.index + 1}/{count}: ...",) if count > 1 else ()
        meta = {"schema_version": 2, "name": "bvtest", "seconds": 5.0,
                "started_at": "2026-12-01T02:00:00Z", "host": {"hostname": "ci"},
                "inputs": [{"role": "boot", "path": "boot.img", "sha256": "ab" * 32}],
                "boots": [{"seconds": 1.0}]}
        records.append(RunRecord(
            "bvtest", datetime.datetime(2026, 12, 1, 2, tzinfo=datetime.UTC), 5.0,
            StaticReport("6.1", False, preds),
            [v for v in verdicts if (v.runtime.origin, v.name) in part.owned],
            decide(verdict_facts(p), failing, crashed), "normal", ("a note", *note), "console.log",
            "6.1", meta, plan=p, fail_on=DEFAULT_FAIL_ON,
            shard=ShardRun(part.index + 1, count, whole, failing, note, crashed)))
    return records


def test_merged_shards_report_as_one_run():
    one = recorded_run(1)[0]
    shards = recorded_run(3)
    assert all(r.verdicts for r in shards)                       # every shard has modules
    merged = merge([(f"{i}.json", json.loads(json.dumps(run_document(r))))
                    for i, r in enumerate(reversed(shards))])
    whole = run_document(one)
    for key in ("modules", "android", "summary", "fail_on", "kernel_release"):
        assert merged.doc[key] == whole[key], key
    # g's crash (an oops: no panic line) came through its shard's report
    assert merged.doc["android_entries"]["crashes"] == whole["android_entries"]["crashes"] == {
        "2": "oops"}
    # the shards' own notes left out; where the plan was cut said
    cut = cut_note("3 shards", ["f", "d"])
    assert merged.doc["notes"] == [*whole["notes"], cut]
    assert summary_text(merged.record) == summary_text(replace(one, notes=(*one.notes, cut)))
    assert merged.failed == failed_run(one) is True and not merged.infra_failed

    def cases(run: RunRecord) -> list[tuple]:
        out = io.StringIO()
        write_junit(run, out)
        suite = ET.fromstring(out.getvalue())
        return [(c.get("name"), c.get("classname"), [(x.tag, x.get("type"), x.get("message"),
                                                     x.text) for x in c])
                for c in suite.iter("testcase")]
    assert cases(merged.record) == cases(one)
    assert cases(one)[0][:2] == ("android-boot", "bootverify.android")
    assert cases(one)[0][2][0][:2] == ("failure", "stops/first-stage")


@pytest.mark.parametrize(("other", "message"), [
    (report(2, 2, [("b", "loaded")], inputs="b"), "ran other inputs than 1.json: boot differs"),
    (report(1, 2, [("b", "loaded")]), "shard 1/2 given twice (also 1.json)"),
    (report(2, 2, [("a", "loaded")]), "vendor_ramdisk/a: reported twice (also in 1.json)"),
    (report(2, 2, [("a", "crashed")]), "vendor_ramdisk/a: conflicting results: crashed here, "
                                       "loaded (also in 1.json)"),
    (report(2, 3, [("b", "loaded")]), "another plan or split than 1.json"),
    ({"modules": []}, "not a run report of this version"),
    (report(2, 2, []) | {"modules": [{"name": "b"}]}, "modules[0]: not a module of a run report"),
    (report(2, 2, []) | {"fail_on": ["bug"]}, "another --fail-on than 1.json"),
    (report(2, 2, []) | {"meta": {}}, "meta.started_at: not a run's start time"),
])
def test_merge_rejects_mismatches_with_one_line(other, message):
    with pytest.raises(InputError) as e:
        merge([("1.json", report(1, 2, [("a", "loaded")])), ("2.json", other)])
    assert str(e.value).startswith("2.json: " + message) and "\n" not in str(e.value)


def test_merge_names_missing_shards():
    with pytest.raises(InputError, match="shard.s. 2/3, 3/3 missing"):
        merge([("1.json", report(1, 3, [("a", "loaded")]))])
