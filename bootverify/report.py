"""Reports: a text table for people, JSON for CI (a contract), JUnit for test dashboards.

JSON contract (`bootverify check`): {"kernel_release", "kmi_trimmed", "modules": [{"name",
"path", "static": {"verdict", "problems": [{"kind", "symbol", "detail"}]}}]}. `bootverify run`
adds per module "runtime" and "agreement" (see crosscheck).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

from bootverify.static.analysis import Prediction, StaticReport


def problem_summary(p: Prediction) -> str:
    if not p.problems:
        return "-"
    by_kind: dict[str, list[str]] = {}
    for problem in p.problems:
        by_kind.setdefault(problem.kind.value + ("" if problem.fatal else " (latent)"),
                           []).append(problem.symbol)
    return "; ".join(f"{kind}: {', '.join(s for s in syms if s) or '-'}"
                     for kind, syms in by_kind.items())


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in lines) + "\n"


def static_text(report: StaticReport, out: TextIO) -> None:
    rows = [(p.name, p.verdict.value, problem_summary(p)) for p in report.modules]
    out.write(table(rows, ("MODULE", "STATIC", "PROBLEMS")))
    counts = Counter(p.verdict.value for p in report.modules)
    out.write(f"\n{len(report.modules)} modules: {counts['ok']} ok, {counts['warn']} warn, "
              f"{counts['fail']} fail predicted (kernel {report.kernel_release or 'unknown'}, "
              f"KMI {'trimmed' if report.kmi_trimmed else 'not enforced'})\n")


def prediction_json(p: Prediction) -> dict[str, Any]:
    return {"verdict": p.verdict.value,
            "problems": [{"kind": x.kind.value, "symbol": x.symbol, "detail": x.detail,
                          "fatal": x.fatal} for x in p.problems]}


def static_json(report: StaticReport) -> dict[str, Any]:
    return {
        "kernel_release": report.kernel_release,
        "kmi_trimmed": report.kmi_trimmed,
        "modules": [{"name": p.name, "path": p.path, "static": prediction_json(p)}
                    for p in report.modules],
    }


def write_json(doc: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(doc))  # dumps, not dump: only dumps uses the C encoder
    out.write("\n")
