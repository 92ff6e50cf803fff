"""`bootverify run`'s JSON: report.run_json (the device verdict first, then the modules),
"duplicates" (report.py), `shard`, `plan` and `android_entries` (what `bootverify merge` joins
shards by: report.plan_json, the failing load-list entries), then the nightly parts: `meta`
(nightly/meta.py: schema version, tool, qemu, host, inputs' sha256, boots), `summary`
(summary.py), `error` (null, or why the report is partial), `expect` (--expect) and `baseline`
(--baseline), with each module's `expect` and `baseline` entries."""

from __future__ import annotations

from typing import Any

from bootverify.nightly.expect import Expected, ExpectedDevice, Judged, Status
from bootverify.report import duplicates_json, plan_json, run_json
from bootverify.reports.model import RunRecord
from bootverify.reports.summary import summary_json


def _judged(j: Judged) -> dict[str, Any]:
    e = j.expected
    doc: dict[str, Any] = {"status": j.status.value, "why": j.why}
    if isinstance(e, Expected):
        doc["expected"] = {"outcome": e.outcome and e.outcome.value,
                           "agreement": e.agreement and e.agreement.value,
                           "reason": e.reason, "link": e.link or None}
    elif isinstance(e, ExpectedDevice):
        doc["expected"] = {"verdict": e.verdict.value, "stops_at": e.stops_at,
                           "reason": e.reason, "link": e.link or None}
    return doc


def run_document(run: RunRecord) -> dict[str, Any]:
    doc = run_json(run.static, run.verdicts, run.console_log, run.device, run.boot_mode,
                   run.notes, run.fail_on)
    doc["duplicates"] = duplicates_json(run.plan)
    doc["meta"] = dict(run.meta)
    doc["summary"] = summary_json(run)
    doc["error"] = None if run.error is None else {
        "kind": run.error.kind.value, "message": run.error.message,
        "exit_status": run.error.exit_status}
    if run.plan is not None and run.shard is not None:
        sh = run.shard
        doc["shard"] = {"index": sh.index, "count": sh.count}
        doc["plan"] = plan_json(run.plan, sh.split)
        doc["android_entries"] = {"failing": {str(i): w for i, w in sorted(sh.failing.items())},
                                  "crashes": {str(i): c.value
                                              for i, c in sorted(sh.crashes.items())},
                                  "notes": list(sh.notes)}
    if run.judgement is not None:
        j = run.judgement
        doc["expect"] = {"file": j.path, "strict": j.strict, "failed": j.failed,
                         "device": _judged(j.device), "stale": list(j.stale),
                         "regressions": [x.name for x in j.with_status(Status.REGRESSION)],
                         "fixed": [x.name for x in j.with_status(Status.FIXED)],
                         "expected": [x.name for x in j.with_status(Status.EXPECTED)]}
        by_name = {x.name: x for x in j.modules}
        for m in doc["modules"]:
            m["expect"] = _judged(by_name[m["name"]]) if m["name"] in by_name else None
    if run.comparison is not None:
        c = run.comparison
        doc["baseline"] = {"file": c.path,
                           "changes": [{"name": x.name, "change": x.change.value,
                                        "before": x.before, "now": x.now} for x in c.changes]}
        by_change = {x.name: x.change.value for x in c.changes}
        for m in doc["modules"]:
            m["baseline"] = by_change.get(m["name"])
    return doc
