"""`bootverify merge REPORT.json...`: the shards of one plan (`run --shard I/N --json`) as one
report, as if one run had loaded the whole plan.

Checked before anything is merged, each a one-line error naming the report: every report is a
run report with its plan and input hashes; all have the same report schema
(meta.schema_version), ran the same inputs (meta.inputs' sha256 by role; --expect and
--baseline, which do not change what is loaded, aside) and the same plan split (the plan's
steps and shards); no shard is given twice; every shard of the split is
there; no module is reported by two reports (a duplicate when the outcomes agree, a conflict
when they do not).

The merged document is run's JSON contract: modules in plan order, the device verdict decided
again from every shard's failing load-list entries (verdict.decide: the verdict is a property
of the whole plan, not of a shard), notes of all shards, `shard` saying what was merged,
`meta` the first shard's with every shard's boots. A partial report (`error` not null: an
infrastructure failure or a signal ended that run early, issue 12) is merged with the others,
the merged `error` is the first such, and the exit status is 2. What describes one shard only
(`summary`, `expect`, `baseline`) is left out of the merged document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bootverify.crosscheck import DISAGREEMENTS, NOT_FAILED_OUTCOMES
from bootverify.errors import InputError
from bootverify.report import device_json, facts_from_json, module_id
from bootverify.verdict import DeviceVerdict, decide

REQUIRED = ("meta", "plan", "shard", "modules", "android_entries", "error")
NOT_RUN_INPUTS = frozenset({"expect", "baseline"})     # read, but not what the guests load
SHARD_ONLY = ("summary", "expect", "baseline")


@dataclass(frozen=True)
class Merged:
    doc: dict[str, Any]
    device: DeviceVerdict
    infra_failed: bool             # a shard reported an infrastructure failure
    failed: bool                   # the device would stop, or a module fails or disagrees


def _check(path: str, doc: Any) -> None:
    if not isinstance(doc, dict) or any(k not in doc for k in REQUIRED):
        raise InputError(path, "not a run report of this version (run --json, with "
                               + ", ".join(REQUIRED) + ")")


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
    for path, doc in reports:
        if doc["meta"].get("schema_version") != first["meta"].get("schema_version"):
            raise InputError(path, f"another report schema than {first_path}")
        theirs, ours = _hashes(doc), _hashes(first)
        for role in sorted(set(theirs) | set(ours)):
            if theirs.get(role) != ours.get(role):
                raise InputError(path, f"ran other inputs than {first_path}: {role} differs")
        if (doc["shard"]["count"], doc["plan"]) != (count, first["plan"]):
            raise InputError(path, f"another plan or split than {first_path}")
        index = doc["shard"]["index"]
        if index in seen:
            raise InputError(path, f"shard {index}/{count} given twice (also {seen[index]})")
        seen[index] = path
        for m in doc["modules"]:
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
    device = decide(facts_from_json(first["plan"]["verdict_facts"]), failing)
    shard_notes = {n for _, doc in ordered for n in doc["android_entries"]["notes"]}
    notes = [n for n in dict.fromkeys(n for _, doc in ordered for n in doc["notes"])
             if n not in shard_notes]
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
                               "notes": []}}
    failed = device.failed or any(m["agreement"] in {a.value for a in DISAGREEMENTS}
                                  or m["runtime"]["outcome"] not in
                                  {o.value for o in NOT_FAILED_OUTCOMES} for m in modules)
    return Merged(doc, device, bool(errors), failed)
