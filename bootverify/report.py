"""Reports: a text table for people, JSON for CI (a contract); `run`'s summary, JUnit, KTAP,
KCIDB and the JSON's nightly parts are in bootverify/reports/.

JSON contract (`bootverify check`): {"kernel_release", "kmi_trimmed", "modules": [{"name",
"path", "static": {"verdict", "problems": [{"kind", "symbol", "detail", "fatal"}]}}]}, with a
load plan (a vendor boot image or dlkm directories) "android", "boot_mode" and "notes" first, as
`run` has them. `bootverify run` adds "android": {"verdict": "boots"|"stops", "stage":
"first-stage"|"second-stage"|null, "stops_at": MODULE|null, "reason", "failures": [TEXT]}
(verdict.py), "boot_mode", "notes", "console_log" and per module "runtime": {"outcome", "errno",
"errno_name", "problems": [{"kind", "symbol", "detail", "static_kind"}], "kmsg", "message",
"reason", "origin", "seconds", "failed_dependencies", "findings": [{"class", "line",
"context"}]}, "agreement" and
"why" (see crosscheck), and "fail_on": the finding classes that fail the run;
reports/document.py adds "meta", "summary", "error", "expect", "baseline", and for `merge`
"shard", "plan" (plan_json: the steps, waves and shard split) and "android_entries".
Both add "duplicates": [{"name", "copies": [{"partition", "path", "loads", "why"}]}], the
modules shipped in more than one partition, each copy in load order.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TextIO

from bootverify.android import DEVICE_IMAGE_OF, Stage
from bootverify.crosscheck import (
    DISAGREEMENTS,
    Agreement,
    ModuleVerdict,
    failing_findings,
    static_kind,
)
from bootverify.readers.symbols import Export, KernelExports
from bootverify.replacement import ModuleFailure, ReplacementVerdict
from bootverify.plan.model import Disposition, LoadPlan, ModuleUnit
from bootverify.runtime.kmsg import (
    DEFAULT_FAIL_ON,
    Finding,
    FindingClass,
    LinkProblem,
    LinkProblemKind,
    Outcome,
    RuntimeResult,
    message_text,
)
from bootverify.plan.shards import BY_COUNT, Costs, Part
from bootverify.static.analysis import Prediction, Problem, ProblemKind, StaticReport
from bootverify.static.kmidiff import Change, KmiChange, KmiDiff
from bootverify.static.kmilist import KmiNeeds, StrictCheck
from bootverify.static.replacement import GkiBuild, Origin
from bootverify.verdict import (
    Boots,
    DeviceVerdict,
    EmptySet,
    Entry,
    VerdictFacts,
    verdict_facts,
)


def problem_summary(p: Prediction) -> str:
    if not p.problems:
        return "-"
    by_kind: dict[str, list[str]] = {}
    for problem in p.problems:
        by_kind.setdefault(problem.kind + ("" if problem.fatal else " (latent)"),
                           []).append(problem.symbol)
    return "; ".join(f"{kind}: {', '.join(s for s in syms if s) or '-'}"
                     for kind, syms in by_kind.items())


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        cells = (c.ljust(w) for c, w in zip(r[:-1], widths, strict=True))
        lines.append("  ".join(cells) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in lines) + "\n"


def device_head(device: DeviceVerdict | None, notes: Sequence[str], out: TextIO) -> None:
    """The device verdict and the plan's notes: what a report says first."""
    if device is None:
        return
    out.write(device_line(device) + "\n")
    out.writelines(f"  note: {n}\n" for n in notes)
    out.write("\n")


def static_text(report: StaticReport, out: TextIO, device: DeviceVerdict | None = None) -> None:
    """The predicted device verdict first (when the modules have a load plan), then one row a
    module."""
    device_head(device, report.plan.notes if report.plan else (), out)
    rows = [(p.name, p.verdict.value, problem_summary(p)) for p in report.modules]
    out.write(table(rows, ("MODULE", "STATIC", "PROBLEMS")))
    counts = Counter(p.verdict.value for p in report.modules)
    out.write(f"\n{len(report.modules)} modules: {counts['ok']} ok, {counts['warn']} warn, "
              f"{counts['fail']} fail predicted (kernel {report.kernel_release or 'unknown'}, "
              f"KMI {'trimmed' if report.kmi_trimmed else 'not enforced'})\n")


def prediction_json(p: Prediction) -> dict[str, Any]:
    # The kinds are StrEnums: json writes them as their strings, without a .value per problem.
    return {"verdict": p.verdict,
            "problems": [{"kind": x.kind, "symbol": x.symbol, "detail": x.detail,
                          "fatal": x.fatal} for x in p.problems]}


def static_json(report: StaticReport, device: DeviceVerdict | None = None) -> dict[str, Any]:
    plan = report.plan
    head = {} if device is None or plan is None else {
        "android": device_json(device),
        "boot_mode": plan.boot.mode.value if plan.boot else None,
        "notes": list(plan.notes)}
    return {
        **head,
        "kernel_release": report.kernel_release,
        "kmi_trimmed": report.kmi_trimmed,
        "modules": [{"name": p.name, "path": p.path, "static": prediction_json(p)}
                    for p in report.modules],
    }


def write_json(doc: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(doc))  # dumps, not dump: only dumps uses the C encoder
    out.write("\n")


# --- `bootverify run`: static + runtime + agreement ---

def device_line(device: DeviceVerdict) -> str:
    where = f" in {device.stage}" if device.stage else ""
    at = f" at {device.stops_at}" if device.stops_at else ""
    return f"ANDROID: {device.verdict.upper()}{where}{at}: {device.reason}"


def run_text(verdicts: Sequence[ModuleVerdict], out: TextIO, device: DeviceVerdict,
             notes: Sequence[str] = (), fail_on: frozenset[FindingClass] = DEFAULT_FAIL_ON) -> None:
    """The device verdict first, then the notes, then one row a module, then the findings."""
    device_head(device, notes, out)
    rows = [(v.name, v.prediction.verdict.value if v.prediction else "-",
             v.runtime.outcome.value + (f" ({v.runtime.errno_name})" if v.runtime.errno else ""),
             f"{v.runtime.seconds:.2f}", v.agreement.value, v.why or "-") for v in verdicts]
    out.write(table(rows, ("MODULE", "STATIC", "RUNTIME", "SECONDS", "AGREEMENT", "WHY")))
    outcomes = Counter(v.runtime.outcome.value for v in verdicts)
    agreements = Counter(v.agreement.value for v in verdicts)
    out.write(f"\n{len(verdicts)} modules: "
              + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) + "; agreement: "
              + ", ".join(f"{n} {k}" for k, n in sorted(agreements.items())) + "\n")
    missed = [v for v in verdicts if v.agreement is Agreement.MISSED]
    if missed:
        out.write(f"\nMISSED BY STATIC ANALYSIS ({len(missed)}): the kernel refused these for "
                  f"reasons the analysis did not predict; please report:\n")
        for v in missed:
            out.write(f"  {v.name}: {v.why}\n")
    findings_text(verdicts, out, fail_on)


def findings_text(verdicts: Sequence[ModuleVerdict], out: TextIO,
                  fail_on: frozenset[FindingClass]) -> None:
    """One line a finding, those that fail the run marked."""
    found = [(v.name, f) for v in verdicts for f in v.runtime.findings]
    if not found:
        return
    failing = ", ".join(sorted(fail_on)) or "none"
    out.write(f"\nFINDINGS ({len(found)}) in the kernel log while these modules loaded "
              f"(failing the run: {failing}):\n")
    for name, f in found:
        fails = " FAILS" if f.kind in fail_on else ""
        out.write(f"  {name}: {f.kind}{fails}: {message_text(f.line)}\n")


def runtime_json(r: RuntimeResult, prediction: Prediction | None = None) -> dict[str, Any]:
    """`static_kind`: the static problem kind a link problem is (crosscheck.LINK_KINDS), so
    that a consumer joins the halves without a table of its own."""
    return {"outcome": r.outcome.value, "errno": r.errno, "errno_name": r.errno_name,
            "problems": [{"kind": p.kind.value, "symbol": p.symbol, "detail": p.detail,
                          "static_kind": static_kind(p, prediction)} for p in r.problems],
            "kmsg": list(r.kmsg), "message": r.modprobe_message, "reason": r.reason,
            "origin": r.origin, "seconds": round(r.seconds, 3),
            "failed_dependencies": list(r.failed_dependencies),
            "findings": [{"class": f.kind, "line": f.line, "context": list(f.context)}
                         for f in r.findings]}


def device_json(device: DeviceVerdict) -> dict[str, Any]:
    return {"verdict": device.verdict, "stage": device.stage, "stops_at": device.stops_at,
            "reason": device.reason, "failures": list(device.failures)}


def run_json(report: StaticReport, verdicts: Sequence[ModuleVerdict],
             console_log: str | None, device: DeviceVerdict, boot_mode: str | None,
             notes: Sequence[str] = (),
             fail_on: frozenset[FindingClass] = DEFAULT_FAIL_ON) -> dict[str, Any]:
    return {
        "android": device_json(device),
        "boot_mode": boot_mode,
        "notes": list(notes),
        "fail_on": sorted(fail_on),
        "kernel_release": report.kernel_release,
        "kmi_trimmed": report.kmi_trimmed,
        "console_log": console_log,
        "modules": [{"name": v.name,
                     "path": v.prediction.path if v.prediction else v.runtime.path,
                     "static": prediction_json(v.prediction) if v.prediction else None,
                     "runtime": runtime_json(v.runtime, v.prediction),
                     "agreement": v.agreement.value, "why": v.why} for v in verdicts],
    }


def verdict_from_json(m: dict[str, Any]) -> ModuleVerdict:
    """A module of run_json's "modules" read back (`bootverify merge` hands the shards' modules
    to the same report writers as `run`): the inverse of the entry above. A report without
    "failed_dependencies" (before it was written) reads as none."""
    s, r = m["static"], m["runtime"]
    prediction = None if s is None else Prediction(m["name"], m["path"], tuple(
        Problem(ProblemKind(p["kind"]), p["symbol"], p["detail"], p["fatal"])
        for p in s["problems"]))
    runtime = RuntimeResult(
        m["name"], m["path"], Outcome(r["outcome"]), r["errno"],
        tuple(LinkProblem(LinkProblemKind(p["kind"]), p["symbol"], p["detail"])
              for p in r["problems"]),
        tuple(r["kmsg"]), r["message"], r["seconds"], r["origin"], r["reason"],
        tuple(r.get("failed_dependencies", ())),
        tuple(Finding(FindingClass(f["class"]), f["line"], tuple(f["context"]))
              for f in r["findings"]))
    return ModuleVerdict(m["name"], prediction, runtime, Agreement(m["agreement"]), m["why"])


# Characters XML 1.0 cannot hold even escaped (§2.2 Char): what a guest prints can have them (an
# oops amid console noise), and one of them makes the whole JUnit file unreadable.
NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_chars(text: str) -> str:
    """text with each character XML cannot hold shown escaped, as repr shows it."""
    return NOT_XML_CHAR.sub(lambda m: repr(m.group())[1:-1], text)


def junit(verdicts: Sequence[ModuleVerdict], out: TextIO,
          device: DeviceVerdict | None = None,
          fail_on: frozenset[FindingClass] = DEFAULT_FAIL_ON) -> None:
    """Testcase `android-boot` (a failure when the device would not boot), then one testcase per
    module: a failure when it did not load, the halves disagree or its load showed a finding of
    `fail_on`; skipped when it was not given to the kernel on purpose (blocklisted) or is in no
    load list. Every finding is listed in the testcase's system-out."""
    suite = ET.Element("testsuite", name="bootverify",
                       tests=str(len(verdicts) + (device is not None)))
    failures = skipped = 0
    if device is not None:
        case = ET.SubElement(suite, "testcase", name="android-boot", time="0.000",
                             classname="bootverify.android")
        if device.verdict is Boots.STOPS:
            ET.SubElement(case, "failure", type=f"stops/{device.stage}",
                          message=device.reason).text = "\n".join(device.failures)
            failures += 1
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", name=v.name, time=f"{v.runtime.seconds:.3f}",
                             classname=f"bootverify.{v.runtime.origin or 'modules'}")
        if v.runtime.outcome in (Outcome.SKIPPED, Outcome.UNLISTED):
            ET.SubElement(case, "skipped", message=v.why)
            skipped += 1
        elif v.runtime.outcome is not Outcome.LOADED or v.agreement in DISAGREEMENTS:
            failure = ET.SubElement(case, "failure", type=f"{v.runtime.outcome.value}/"
                                                          f"{v.agreement.value}",
                                    message=v.why or v.runtime.modprobe_message)
            failure.text = "\n".join(v.runtime.kmsg)
            failures += 1
        elif failing := failing_findings(v, fail_on):
            failure = ET.SubElement(case, "failure", type=f"{v.runtime.outcome.value}/finding",
                                    message=", ".join(f"{f.kind}: {message_text(f.line)}"
                                                      for f in failing))
            failure.text = "\n".join(line for f in failing for line in f.context or (f.line,))
            failures += 1
        if v.runtime.findings:
            ET.SubElement(case, "system-out").text = "".join(
                f"finding {f.kind}: {f.line}\n" for f in v.runtime.findings)
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    for element in suite.iter():
        element.text = element.text and xml_chars(element.text)
        element.attrib = {k: xml_chars(v) for k, v in element.attrib.items()}
    ET.indent(suite)
    out.write(ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n")


# --- the plan (`bootverify plan --json`, and in every run's JSON for `merge`) ---

def facts_json(facts: VerdictFacts) -> dict[str, Any]:
    return {"entries": [{"origin": e.origin, "entry": e.entry, "name": e.name, "stage": e.stage,
                         "blocklisted": e.blocklisted} for e in facts.entries],
            "empty_sets": [{"origin": e.origin, "guest_dir": e.guest_dir, "files": e.files,
                            "load_file": e.load_file} for e in facts.empty],
            "first_stage_console": facts.console}


def facts_from_json(doc: dict[str, Any]) -> VerdictFacts:
    return VerdictFacts(
        tuple(Entry(e["origin"], e["entry"], e["name"], Stage(e["stage"]), e["blocklisted"])
              for e in doc["entries"]),
        tuple(EmptySet(e["origin"], e["guest_dir"], e["files"], e["load_file"])
              for e in doc["empty_sets"]),
        doc["first_stage_console"])


def module_id(origin: str, name: str) -> str:
    """A module's name across a plan's sets, as the JSON plan writes it."""
    return f"{origin}/{name}"


def plan_json(plan: LoadPlan, parts: Sequence[Part], costs: Costs = BY_COUNT) -> dict[str, Any]:
    """The load plan (steps in order: line, wave, why not loaded) and its split into parts (with
    a previous run's `costs`: what each part's loads took then, `seconds`)."""
    wave = {line: i for i, w in enumerate(plan.waves) for line in w}
    return {
        "boot_mode": plan.boot.mode.value if plan.boot else None,
        "parallel": bool(plan.boot and plan.boot.parallel),
        "notes": list(plan.notes),
        "steps": [{"module": module_id(*s.key), "path": plan.units[s.key].path,
                   "params": plan.units[s.key].params, "line": s.line,
                   "wave": wave.get(s.line) if s.line else None, "skip": s.skip or None}
                  for s in plan.steps],
        "verdict_facts": facts_json(verdict_facts(plan)),
        "shards": [{"shard": p.index + 1, "count": len(parts),
                    "modules": [module_id(*k) for k in sorted(p.owned)],
                    "entries": sorted(p.entries), "loads": len(p.closure),
                    **({"seconds": costs.of(p.closure) / 1000} if costs.source else {})}
                   for p in parts],
    }


# --- `bootverify kmi-diff`, and the KMI part of `bootverify replacement` ---

def export_json(e: Export | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"crc": None if e.crc is None else f"{e.crc:#010x}", "type": e.type.value,
            "namespace": e.namespace, "owner": e.owner}


def kmi_change_json(c: KmiChange) -> dict[str, Any]:
    return {"symbol": c.symbol, "change": c.change.value, "owner": c.owner,
            "old": export_json(c.old), "new": export_json(c.new)}


def kmi_diff_json(diff: KmiDiff) -> dict[str, Any]:
    return {"symbols_compared": diff.compared,
            "counts": {kind.value: n for kind, n in diff.counts().items()},
            "changes": [kmi_change_json(c) for c in diff.changes]}


def kmi_change_line(c: KmiChange) -> str:
    old, new = c.values()
    return f"{c.change.value:17} {c.symbol}  {c.owner}  {old} -> {new}"


def kmi_diff_summary(diff: KmiDiff, kmi: bool) -> str:
    counts = diff.counts()
    return (f"{len(diff.breaking)} of {diff.compared} {'KMI ' if kmi else ''}symbols removed or "
            f"changed, {counts[Change.ADDED]} added")


def kmi_diff_text(diff: KmiDiff, kmi: bool, out: TextIO) -> None:
    out.writelines(kmi_change_line(c) + "\n" for c in diff.changes)
    out.write(kmi_diff_summary(diff, kmi) + "\n")


# --- `bootverify replacement`: the KMI difference, every module's verdict, what explains it ---

# How a failing module's KMI change reads ("that KMI symbol changed CRC in your kernel").
CHANGE_WORDING: dict[Change, str] = {
    Change.REMOVED: "is no longer exported by your kernel",
    Change.CRC_CHANGED: "changed CRC in your kernel",
    Change.TYPE_CHANGED: "changed export type in your kernel",
    Change.NAMESPACE_CHANGED: "moved to another namespace in your kernel",
    Change.OWNER_CHANGED: "is exported by another owner in your kernel",
    Change.ADDED: "is new in your kernel",
}


ORIGIN_LABEL = {Origin.GKI: "GKI module", Origin.DEVICE: "device module"}


def explanation(c: KmiChange) -> str:
    old, new = c.values()
    return f"{c.symbol}: that KMI symbol {CHANGE_WORDING[c.change]} (GKI {old}, yours {new})"


def failure_cause(f: ModuleFailure) -> str:
    """What failed: the kernel's outcome after a boot, else the predicted problems."""
    if f.verdict is not None and f.verdict.runtime.outcome is not Outcome.UNLISTED:
        r = f.verdict.runtime
        errno = f" ({r.errno_name})" if r.errno else ""
        return f"{r.outcome.value}{errno}: {f.verdict.why or r.reason or r.modprobe_message}"
    return problem_summary(f.prediction) if f.prediction else "not analysed"


def failure_why(f: ModuleFailure) -> str:
    """One line: the cause, then the KMI changes behind it."""
    kmi = "; ".join(explanation(c) for c in f.kmi_changes) or "no KMI change explains it"
    return f"{failure_cause(f)}; {kmi}"


def replacement_line(v: ReplacementVerdict) -> str:
    if not v.failed:
        return "REPLACEMENT: LOADS: every GKI and device module loads on your kernel"
    gki = sum(f.origin is Origin.GKI for f in v.failing)
    return (f"REPLACEMENT: FAILS: {gki} GKI and {len(v.failing) - gki} device module(s) would "
            f"not load on your kernel" + ("" if v.failing else " (see the device verdict)"))


def replacement_text(v: ReplacementVerdict, console_log: Path, out: TextIO) -> None:
    """The KMI difference, the modules' table (`check`'s, or `run`'s after a boot), each
    failing module with the KMI changes behind it, the verdict last."""
    rep, b = v.report, v.booted
    out.write(f"KMI: {kmi_diff_summary(rep.diff, rep.kmi_given)} (GKI kernel -> yours)\n")
    out.writelines(f"  {kmi_change_line(c)}\n" for c in rep.diff.changes)
    out.write("\n")
    if b is None:
        static_text(rep.static, out, v.device)
    else:
        run_text(b.verdicts, out, b.device, b.runtime.notes)
        out.write(f"kernel {b.runtime.release}, {len(b.runtime.boots)} boot(s), "
                  f"{b.runtime.seconds:.1f} s; console log: {console_log}\n")
    if v.failing:
        out.write(f"\nWOULD NOT LOAD ON YOUR KERNEL ({len(v.failing)}):\n")
        for f in v.failing:
            out.write(f"  {f.name} ({ORIGIN_LABEL[f.origin]}): {failure_cause(f)}\n")
            out.writelines(f"    {explanation(c)}\n" for c in f.kmi_changes)
    out.write("\n" + replacement_line(v) + "\n")


def paths_json(build: object) -> dict[str, Any]:
    """A dataclass's input files as JSON: each path field a path, a list of them, or null
    (fields of other types are left out)."""
    out: dict[str, Any] = {}
    for f in fields(build):  # type: ignore[arg-type]
        value = getattr(build, f.name)
        if isinstance(value, tuple) and all(isinstance(x, Path) for x in value):
            out[f.name] = [str(x) for x in value]
        elif value is None or isinstance(value, Path):
            out[f.name] = None if value is None else str(value)
    return out


def gki_inputs_text(gki: GkiBuild) -> list[str]:
    """What the GKI side was taken from (your side's lines are inputs.py's), for stderr."""
    return [f"gki: {name.replace('_', '-')}: "
            f"{', '.join(value) if isinstance(value, list) else value}"
            for name, value in paths_json(gki).items() if value]


def replacement_json(v: ReplacementVerdict, console_log: Path, gki: GkiBuild,
                     yours: object) -> dict[str, Any]:
    """`check`'s JSON (`run`'s after a boot) with "replacement" {verdict, failing, inputs} and
    "kmi" first, and per module its "origin" (gki, device) and the "kmi_changes" behind its
    failure. gki, yours: the inputs as given (the GKI side, inputs.Given), not as opened."""
    rep, b = v.report, v.booted
    if b is None:
        doc = static_json(rep.static, v.device)
    else:
        plan = b.runtime.plan
        doc = run_json(rep.static, b.verdicts, str(console_log), b.device,
                       plan.boot.mode.value if plan and plan.boot else None, b.runtime.notes)
    by_name = {f.name: f for f in v.failing}
    for m in doc["modules"]:
        f = by_name.get(m["name"])
        m["origin"] = rep.origin(m["name"]).value
        m["kmi_changes"] = [kmi_change_json(c) for c in f.kmi_changes] if f else []
    return {"replacement": {"verdict": "fails" if v.failed else "loads",
                            "failing": list(by_name),
                            "inputs": {"gki": paths_json(gki), "yours": paths_json(yours)}},
            "kmi": kmi_diff_json(rep.diff), **doc}


def replacement_junit(v: ReplacementVerdict, out: TextIO) -> None:
    """`run`'s JUnit, a failing module's message saying what explains it; without a boot one
    testcase a module, a failure when it is predicted to fail."""
    by_name = {f.name: f for f in v.failing}
    if v.booted is not None:
        junit([replace(x, why=failure_why(by_name[x.name])) if x.name in by_name else x
               for x in v.booted.verdicts], out, v.booted.device)
        return
    modules = v.report.static.modules
    suite = ET.Element("testsuite", name="bootverify", tests=str(len(modules)),
                       failures=str(len(by_name)), skipped="0")
    for p in modules:
        case = ET.SubElement(suite, "testcase", name=p.name, time="0.000",
                             classname=f"bootverify.{v.report.origin(p.name).value}")
        if p.name in by_name:
            ET.SubElement(case, "failure", type="static/fail",
                          message=failure_why(by_name[p.name])).text = problem_summary(p)
    ET.indent(suite)
    out.write(ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n")
# --- modules shipped twice (LoadPlan.duplicates) ---


def _copies(plan: LoadPlan) -> list[tuple[str, ModuleUnit, bool, str]]:
    """(partition, unit, loads, what happens to it) per copy of each duplicated module."""
    out = []
    for copies in plan.duplicates():
        first = next((u for u in copies if u.disposition is Disposition.LOAD), None)
        for u in copies:
            if u is first:
                what = "this copy is the one loaded"
            elif u.disposition is Disposition.LOAD and first is not None:
                what = (f"never runs: the kernel has {u.name} from "
                        f"{DEVICE_IMAGE_OF[first.origin]} already (EEXIST)")
            else:
                what = f"not loaded: {u.disposition}"
            out.append((DEVICE_IMAGE_OF[u.origin], u, u is first, what))
    return out


def duplicates_json(plan: LoadPlan | None) -> list[dict[str, Any]]:
    """`"duplicates": [{"name", "copies": [{"partition", "path", "loads", "why"}]}]`."""
    doc: dict[str, dict[str, Any]] = {}
    for partition, u, loads, what in _copies(plan) if plan else []:
        doc.setdefault(u.name, {"name": u.name, "copies": []})["copies"].append(
            {"partition": partition, "path": u.path, "loads": loads, "why": what})
    return list(doc.values())


def duplicates_text(plan: LoadPlan | None, out: TextIO) -> None:
    """One row per copy, each naming its own partition and path."""
    rows = [(u.name, partition, u.path, what)
            for partition, u, _, what in (_copies(plan) if plan else [])]
    if rows:
        out.write("\nModules shipped in more than one partition:\n")
        out.write(table(rows, ("DUPLICATE", "PARTITION", "PATH", "")))


# --- `bootverify kmi-list`: what stderr says besides the list ---

def unprovided_lines(needs: KmiNeeds, kernel: KernelExports) -> list[str]:
    return [f"kmi-list: {n.symbol} (required by {', '.join(n.required_by)}) is exported by "
            f"neither {kernel.source} nor a module given" for n in needs.unprovided]


def strict_lines(strict: StrictCheck, kernel: KernelExports, listed: frozenset[str]
                 ) -> list[str]:
    """Kleaf's kmi_symbol_list_strict_mode, each difference a line, the verdict last."""
    return [*(f"strict: {s} exported by the kernel, in no KMI list"
              for s in strict.unlisted_exports),
            *(f"strict: {s} in the KMI lists, missing from the kernel's ksymtab"
              for s in strict.listed_not_exported),
            f"strict: the kernel's {len(kernel.exports)} exports "
            f"{'equal' if strict.equal else 'differ from'} the {len(listed)} KMI symbols"]
