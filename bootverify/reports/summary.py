"""The summary a reader takes in in five seconds (stdout and summary.txt; JSON `summary`).

In this order: an error that cut the run short; with --expect the nightly verdict, regressions
named first; the device verdict and the notes; the counts; last night's changes (--baseline);
the root causes, grouped ("322/322 fail module_layout: modules built for another kernel
(...)"); the symbols most failures name; then one line a module, each cell cut to
`CELL_WIDTH` characters (the full text is in the JSON); last the modules shipped twice."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bootverify import crosscheck
from bootverify.crosscheck import Agreement, ModuleVerdict, module_fails
from bootverify.nightly.baseline import Change
from bootverify.nightly.expect import Status
from bootverify.report import device_line, duplicates_text, findings_text, table
from bootverify.reports.model import RunRecord
from bootverify.runtime.kmsg import Outcome

CELL_WIDTH = 100           # a table cell or a list of names longer than this is cut
TOP_CAUSES = 10            # root-cause lines shown (the JSON has them all)
TOP_SYMBOLS = 5
NAMES_SHOWN = 5            # module names shown after a root cause or a list

# What a failure that is not a link error means, by outcome.
OUTCOME_EXPLANATIONS = {
    Outcome.INIT_ERROR: "the module's init failed",
    Outcome.HUNG: "init did not return within the module timeout",
    Outcome.CRASHED: "oops, BUG or panic while loading",
    Outcome.NOT_FOUND: "listed (or a hard dependency) but not in modules.dep or the image",
    Outcome.LOADED: "predicted to fail to link, but it loaded",
    Outcome.LINK_ERROR: "the kernel refused to link it",
}


def cut(text: str, width: int = CELL_WIDTH) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:NAMES_SHOWN])
    return shown + (f" and {len(items) - NAMES_SHOWN} more" if len(items) > NAMES_SHOWN else "")


@dataclass(frozen=True)
class RootCause:
    label: str               # "module_layout", "unknown-symbol msleep", "init-error ENODEV"
    explanation: str
    detail: str              # the static analysis' detail (CRCs), when one problem is the cause
    modules: tuple[str, ...]

    def line(self, total: int) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return cut(f"{len(self.modules)}/{total} fail {self.label}: {self.explanation}{detail}"
                   f": {names(list(self.modules))}", 2 * CELL_WIDTH)


def _cause(v: ModuleVerdict) -> tuple[str, str, str]:
    r = v.runtime
    if r.failed_dependencies:
        return (f"dependency {', '.join(r.failed_dependencies)}", "a dependency did not load",
                "")
    if r.outcome is Outcome.LINK_ERROR and r.problems:
        p = r.problems[0]
        label = p.symbol if p.symbol == crosscheck.MODULE_LAYOUT else \
            f"{p.kind.value} {p.symbol}".strip()
        static = [x for x in (v.prediction.problems if v.prediction else ())
                  if x.symbol == p.symbol and x.kind == crosscheck.static_kind(p, v.prediction)]
        return label, crosscheck.explanation(p), static[0].detail if static else ""
    if r.outcome is Outcome.INIT_ERROR:
        return f"init-error {r.errno_name}", OUTCOME_EXPLANATIONS[r.outcome], ""
    if v.agreement is Agreement.UNCONFIRMED:
        return "unconfirmed", OUTCOME_EXPLANATIONS[Outcome.LOADED], ""
    return r.outcome.value, OUTCOME_EXPLANATIONS.get(r.outcome, r.outcome.value), ""


def root_causes(verdicts: Sequence[ModuleVerdict]) -> list[RootCause]:
    """The failing modules grouped by their first cause, most modules first."""
    groups: dict[tuple[str, str], list[ModuleVerdict]] = {}
    details: dict[tuple[str, str], str] = {}
    for v in verdicts:
        if module_fails(v):
            label, explanation, detail = _cause(v)
            groups.setdefault((label, explanation), []).append(v)
            details.setdefault((label, explanation), detail)
    causes = [RootCause(label, explanation, details[(label, explanation)],
                        tuple(v.name for v in vs))
              for (label, explanation), vs in groups.items()]
    return sorted(causes, key=lambda c: -len(c.modules))


def top_symbols(verdicts: Sequence[ModuleVerdict]) -> list[tuple[str, int]]:
    """The symbols the kernel named for most failing modules (ties: as the log first names
    them, in load order: a set's order changes from one process to the next)."""
    counts = Counter(s for v in verdicts if module_fails(v)
                     for s in dict.fromkeys(p.symbol for p in v.runtime.problems if p.symbol))
    return counts.most_common(TOP_SYMBOLS)


def summary_json(run: RunRecord) -> dict[str, Any]:
    verdicts = run.verdicts
    return {
        "modules": len(verdicts),
        "failed": sum(1 for v in verdicts if module_fails(v)),
        "outcomes": dict(sorted(Counter(v.runtime.outcome.value for v in verdicts).items())),
        "agreements": dict(sorted(Counter(v.agreement.value for v in verdicts).items())),
        "root_causes": [{"cause": c.label, "explanation": c.explanation, "detail": c.detail,
                         "count": len(c.modules), "modules": list(c.modules)}
                        for c in root_causes(verdicts)],
        "top_symbols": [{"symbol": s, "modules": n} for s, n in top_symbols(verdicts)],
    }


def nightly_line(run: RunRecord) -> str | None:
    j = run.judgement
    if j is None:
        return None
    regressions = j.with_status(Status.REGRESSION)
    fixed = j.with_status(Status.FIXED)
    expected = j.with_status(Status.EXPECTED)
    counts = (f"{len(expected)} expected failure(s), {len(fixed)} fixed"
              + (f", {len(j.stale)} stale expectation(s)" if j.stale else ""))
    if regressions:
        return cut(f"NIGHTLY: RED: {len(regressions)} regression(s): "
                   + "; ".join(f"{r.name} ({r.why})" for r in regressions)
                   + f"; {counts}", 3 * CELL_WIDTH)
    if j.failed:
        return f"NIGHTLY: RED (--strict-expect): {counts}: " + names(
            [f.name for f in fixed] + list(j.stale))
    return f"NIGHTLY: GREEN: no regression; {counts}" + (
        f": fixed {names([f.name for f in fixed])}" if fixed else "")


def baseline_line(run: RunRecord) -> str | None:
    c = run.comparison
    if c is None:
        return None
    parts = []
    for change in Change:
        found = [m.name for m in c.of(change)]
        if change is Change.STILL_PASSING:
            parts.append(f"{len(found)} still passing")
        elif found:
            parts.append(f"{len(found)} {change.value}: {names(found)}")
    return f"baseline {c.path}: " + "; ".join(parts)


def summary_text(run: RunRecord) -> str:
    lines: list[str] = []
    if run.error is not None:
        lines.append(f"ERROR ({run.error.kind.value}): {run.error.message}; partial report: "
                     f"{len(run.verdicts)} module(s) with an outcome")
    for line in (nightly_line(run), device_line(run.device)):
        if line:
            lines.append(line)
    lines += [f"  note: {n}" for n in run.notes]
    verdicts = run.verdicts
    outcomes = Counter(v.runtime.outcome.value for v in verdicts)
    agreements = Counter(v.agreement.value for v in verdicts)
    lines.append(f"{len(verdicts)} modules: "
                 + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) + "; agreement: "
                 + ", ".join(f"{n} {k}" for k, n in sorted(agreements.items())))
    if (b := baseline_line(run)) is not None:
        lines.append(b)
    causes = root_causes(verdicts)
    if causes:
        lines.append("root causes:")
        lines += [f"  {c.line(len(verdicts))}" for c in causes[:TOP_CAUSES]]
        if len(causes) > TOP_CAUSES:
            lines.append(f"  ... {len(causes) - TOP_CAUSES} more (JSON summary.root_causes)")
    if symbols := top_symbols(verdicts):
        lines.append("top symbols: " + ", ".join(f"{s} ({n} module(s))" for s, n in symbols))
    missed = [v for v in verdicts if v.agreement is Agreement.MISSED]
    if missed:
        lines.append(f"MISSED BY STATIC ANALYSIS ({len(missed)}): the kernel refused these for "
                     f"reasons the analysis did not predict; please report (JSON modules[].why)")
        lines += [f"  {v.name}: {cut(v.why)}" for v in missed]
    status = {j.name: j.status.value for j in run.judgement.modules} if run.judgement else {}
    change = {c.name: c.change.value for c in run.comparison.changes} if run.comparison else {}
    header = ("MODULE", "STATIC", "RUNTIME", "SECONDS", "AGREEMENT",
              *(("EXPECT",) if status else ()), *(("BASELINE",) if change else ()), "WHY")
    rows = [(v.name, v.prediction.verdict.value if v.prediction else "-",
             v.runtime.outcome.value + (f" ({v.runtime.errno_name})" if v.runtime.errno else ""),
             f"{v.runtime.seconds:.2f}", v.agreement.value,
             *((status.get(v.name, "-"),) if status else ()),
             *((change.get(v.name, "-"),) if change else ()), cut(v.why or "-"))
            for v in verdicts]
    tail = io.StringIO()
    findings_text(run.verdicts, tail, run.fail_on)
    duplicates_text(run.plan, tail)
    return "\n".join(lines) + "\n\n" + table(rows, header) + tail.getvalue()
