"""Reports: a text table for people, JSON for CI (a contract); `run`'s summary, JUnit, KTAP,
KCIDB and the JSON's nightly parts are in bootverify/reports/.

JSON contract (`bootverify check`): {"kernel_release", "kmi_trimmed", "modules": [{"name",
"path", "static": {"verdict", "problems": [{"kind", "symbol", "detail", "fatal"}]}}]}, with a
load plan (a vendor boot image or dlkm directories) "android", "boot_mode" and "notes" first, as
`run` has them. `bootverify run` adds "android": {"verdict": "boots"|"stops", "stage":
"first-stage"|"second-stage"|null, "stops_at": MODULE|null, "reason", "failures": [TEXT]}
(verdict.py), "boot_mode", "notes", "console_log" and per module "runtime": {"outcome", "errno",
"errno_name", "problems": [{"kind", "symbol", "detail", "static_kind"}], "kmsg", "message",
"reason", "origin", "seconds"}, "agreement" and "why" (see crosscheck); reports/document.py adds
"meta", "summary", "error", "expect", "baseline".
Both add "duplicates": [{"name", "copies": [{"partition", "path", "loads", "why"}]}], the
modules shipped in more than one partition, each copy in load order.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

from bootverify.android import DEVICE_IMAGE_OF
from bootverify.crosscheck import ModuleVerdict, static_kind
from bootverify.plan.model import Disposition, LoadPlan, ModuleUnit
from bootverify.runtime.kmsg import RuntimeResult
from bootverify.static.analysis import Prediction, StaticReport
from bootverify.verdict import DeviceVerdict


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


def runtime_json(r: RuntimeResult, prediction: Prediction | None = None) -> dict[str, Any]:
    """`static_kind`: the static problem kind a link problem is (crosscheck.LINK_KINDS), so
    that a consumer joins the halves without a table of its own."""
    return {"outcome": r.outcome.value, "errno": r.errno, "errno_name": r.errno_name,
            "problems": [{"kind": p.kind.value, "symbol": p.symbol, "detail": p.detail,
                          "static_kind": static_kind(p, prediction)} for p in r.problems],
            "kmsg": list(r.kmsg), "message": r.modprobe_message, "reason": r.reason,
            "origin": r.origin, "seconds": round(r.seconds, 3)}


def device_json(device: DeviceVerdict) -> dict[str, Any]:
    return {"verdict": device.verdict, "stage": device.stage, "stops_at": device.stops_at,
            "reason": device.reason, "failures": list(device.failures)}


def run_json(report: StaticReport, verdicts: Sequence[ModuleVerdict],
             console_log: str | None, device: DeviceVerdict, boot_mode: str | None,
             notes: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "android": device_json(device),
        "boot_mode": boot_mode,
        "notes": list(notes),
        "kernel_release": report.kernel_release,
        "kmi_trimmed": report.kmi_trimmed,
        "console_log": console_log,
        "modules": [{"name": v.name,
                     "path": v.prediction.path if v.prediction else v.runtime.path,
                     "static": prediction_json(v.prediction) if v.prediction else None,
                     "runtime": runtime_json(v.runtime, v.prediction),
                     "agreement": v.agreement.value, "why": v.why} for v in verdicts],
    }


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
