"""`bootverify merge REPORT.json...`: the shards of one plan (`run --shard I/N --json`) as one
report, as if one run had loaded the whole plan.

Checked before anything is merged, each a one-line error naming the report: every report is a
run report with its plan and input hashes; all have the same report schema
(meta.schema_version), ran the same inputs (meta.inputs' sha256 by role; --expect and
--baseline aside: they do not change what is loaded, and what --baseline changes, where the
plan is cut, is checked as the split), the same plan split (the plan's steps and shards) and
the same --fail-on; no shard is given twice; every shard of the split is
there; no module is reported by two reports (a duplicate when the outcomes agree, a conflict
when they do not).

The merged document is run's JSON contract: modules in plan order, the device verdict decided
again from every shard's failing load-list entries (verdict.decide: the verdict is a property
of the whole plan, not of a shard), notes of all shards, `shard` saying what was merged,
`meta` the first shard's with every shard's boots. Its modules are read back into the run
record of the reports package (reports/model.py), so that the merged `summary`, the summary
text and the JUnit (testcase `android-boot` first) come from the writers `run` uses, and the
exit status is run's rule (model.failed_run). A partial report (`error` not null: an
infrastructure failure or a signal ended that run early, issue 12) is merged with the others,
the merged `error` is the first such, and the exit status is 2. The entries whose load crashed
or hung (`android_entries.crashes`) are read where a report has them (older reports have
none). What describes one shard only (`expect`, `baseline`) is left out of the merged document.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bootverify.errors import InputError
from bootverify.crosscheck import ModuleVerdict
from bootverify.report import device_json, facts_from_json, module_id, verdict_from_json
from bootverify.plan.shards import cut_note
from bootverify.reports.model import ErrorKind, RunError, RunRecord, failed_run
from bootverify.reports.summary import summary_json
from bootverify.runtime.kmsg import Crash, FindingClass
from bootverify.static.analysis import StaticReport
from bootverify.verdict import DeviceVerdict, decide

REQUIRED = ("meta", "plan", "shard", "modules", "android_entries", "error", "fail_on")
NOT_RUN_INPUTS = frozenset({"expect", "baseline"})     # read, but not what the guests load
SHARD_ONLY = ("expect", "baseline")
STARTED = "%Y-%m-%dT%H:%M:%SZ"     # meta.started_at (nightly/meta.iso)


@dataclass(frozen=True)
class Merged:
    doc: dict[str, Any]
    record: RunRecord              # what the summary and JUnit writers take
    infra_failed: bool             # a shard's report is partial (infrastructure, a signal)
    failed: bool                   # run's exit 1 rule on the merged record


def _check(path: str, doc: Any) -> None:
    if not isinstance(doc, dict) or any(k not in doc for k in REQUIRED):
        raise InputError(path, "not a run report of this version (run --json, with "
                               + ", ".join(REQUIRED) + ")")


def _started(meta: dict[str, Any]) -> datetime.datetime:
    return datetime.datetime.strptime(meta["started_at"], STARTED).replace(tzinfo=datetime.UTC)


def _hashes(doc: dict[str, Any]) -> dict[str, str]:
    return {i["role"]: i["sha256"] for i in doc["meta"].get("inputs", ())
            if i["role"] not in NOT_RUN_INPUTS}


def merge(reports: Sequence[tuple[str, dict[str, Any]]]) -> Merged:
    """`reports`: (path, document) each, as read from the files."""
    if not reports:
        raise InputError("merge", "no reports given")
    for path, doc in reports:
        _check(path, doc)
    first_path, first = reports[0]
    count = first["shard"]["count"]
    seen: dict[int, str] = {}
    owner: dict[str, tuple[str, str]] = {}       # module -> (report, outcome)
    verdicts: dict[int, ModuleVerdict] = {}      # id of a module's JSON -> it read back
    crashed: dict[int, Crash] = {}               # load-list entry -> how its load ended
    for path, doc in reports:
        try:
            _started(doc["meta"])
        except (KeyError, TypeError, ValueError):
            raise InputError(path, "meta.started_at: not a run's start time") from None
        if doc["meta"].get("schema_version") != first["meta"].get("schema_version"):
            raise InputError(path, f"another report schema than {first_path}")
        theirs, ours = _hashes(doc), _hashes(first)
        for role in sorted(set(theirs) | set(ours)):
            if theirs.get(role) != ours.get(role):
                raise InputError(path, f"ran other inputs than {first_path}: {role} differs")
        if (doc["shard"]["count"], doc["plan"]) != (count, first["plan"]):
            raise InputError(path, f"another plan or split than {first_path}")
        if doc["fail_on"] != first["fail_on"]:
            raise InputError(path, f"another --fail-on than {first_path}")
        index = doc["shard"]["index"]
        if index in seen:
            raise InputError(path, f"shard {index}/{count} given twice (also {seen[index]})")
        seen[index] = path
        try:        # reports before `crashes` have none: their verdict did not know them
            crashes = {int(i): Crash(c)
                       for i, c in doc["android_entries"].get("crashes", {}).items()}
            if any(not 0 <= i < len(doc["plan"]["verdict_facts"]["entries"]) for i in crashes):
                raise ValueError("no such entry")
            crashed |= crashes
        except (AttributeError, KeyError, TypeError, ValueError):
            raise InputError(path, "android_entries.crashes: not {INDEX: "
                             + " | ".join(c.value for c in Crash) + "}") from None
        for i, m in enumerate(doc["modules"]):
            try:
                verdicts[id(m)] = verdict_from_json(m)
            except (KeyError, TypeError, ValueError):
                raise InputError(path, f"modules[{i}]: not a module of a run report") from None
            key = module_id(m["runtime"]["origin"], m["name"])
            outcome = m["runtime"]["outcome"]
            if key in owner:
                other, theirs = owner[key]
                what = ("reported twice" if theirs == outcome
                        else f"conflicting results: {outcome} here, {theirs}")
                raise InputError(path, f"{key}: {what} (also in {other})")
            owner[key] = (path, outcome)
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        raise InputError(first_path, "shard(s) " + ", ".join(f"{i}/{count}" for i in missing)
                         + " missing from the merge")

    ordered = sorted(reports, key=lambda r: r[1]["shard"]["index"])
    by_key = {module_id(m["runtime"]["origin"], m["name"]): m
              for _, doc in ordered for m in doc["modules"]}
    order = [s["module"] for s in first["plan"]["steps"]]
    failing = {int(i): why for _, doc in ordered
               for i, why in doc["android_entries"]["failing"].items()}
    device = decide(facts_from_json(first["plan"]["verdict_facts"]), failing, crashed)
    shard_notes = {n for _, doc in ordered for n in doc["android_entries"]["notes"]}
    notes = [n for n in dict.fromkeys(n for _, doc in ordered for n in doc["notes"])
             if n not in shard_notes]
    entries = first["plan"]["verdict_facts"]["entries"]
    cuts = [entries[min(s["entries"])]["name"] for s in first["plan"]["shards"][1:]
            if s["entries"]]
    if cuts:
        notes.append(cut_note(f"{count} shards", cuts))
    modules = [by_key[k] for k in order if k in by_key]
    errors = [d["error"] for _, d in ordered if d["error"] is not None]
    meta = {**first["meta"], "boots": [b for _, d in ordered for b in d["meta"].get("boots", ())]}
    doc = {**{k: v for k, v in first.items() if k not in SHARD_ONLY}, "meta": meta,
           "error": errors[0] if errors else None,
           "android": device_json(device), "notes": notes,
           "console_log": None, "console_logs": [d["console_log"] for _, d in ordered],
           "modules": modules,
           "shard": {"index": None, "count": count, "merged": [p for p, _ in ordered]},
           "android_entries": {"failing": {str(i): w for i, w in sorted(failing.items())},
                               "crashes": {str(i): c.value for i, c in sorted(crashed.items())},
                               "notes": []}}
    record = _record(doc, [d for _, d in ordered], [verdicts[id(m)] for m in modules], device)
    doc["summary"] = summary_json(record)
    return Merged(doc, record, bool(errors), failed_run(record))


def _record(doc: dict[str, Any], shards: Sequence[dict[str, Any]],
            verdicts: Sequence[ModuleVerdict], device: DeviceVerdict) -> RunRecord:
    """The merged document as the run record `run` hands its writers: its modules read back,
    the time the sum of the shards' (what the whole plan cost)."""
    meta = doc["meta"]
    error = doc["error"]
    return RunRecord(
        name=str(meta.get("name") or "bootverify"),
        started=min(_started(d["meta"]) for d in shards),
        seconds=sum(d["meta"].get("seconds", 0.0) for d in shards),
        static=StaticReport(doc["kernel_release"], doc["kmi_trimmed"],
                            tuple(v.prediction for v in verdicts if v.prediction)),
        verdicts=verdicts, device=device, boot_mode=doc["boot_mode"],
        notes=doc["notes"], console_log=", ".join(str(c) for c in doc["console_logs"]),
        release=doc["kernel_release"] or "", meta=meta,
        error=None if error is None else RunError(ErrorKind(error["kind"]), error["message"],
                                                  error["exit_status"]),
        fail_on=frozenset(FindingClass(c) for c in doc["fail_on"]))
