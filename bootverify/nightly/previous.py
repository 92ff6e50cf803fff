"""A previous `bootverify run --json` report (last night's), read for --baseline and
--rerun-failed: per module its outcome, agreement and whether it failed (crosscheck.fails, the
same rule as tonight's), and for splitting tonight's plan among guests (plan/shards.py Costs)
what each module's load took and what a reboot took (meta.boots). Reports of schema version 1
(no `meta`) read the same: only `modules` [{name, runtime.outcome, agreement}] is needed."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bootverify.crosscheck import Agreement, fails
from bootverify.errors import InputError, reading
from bootverify.plan.shards import BY_COUNT, Costs
from bootverify.runtime.kmsg import Outcome

# What a reboot costs when the previous report has none to show (meta.boots): on this project's
# 2-core TCG host a Debian 6.1 guest booted again in about 7.6 s after each speakup hang and
# restored its 127 modules in about 4.3 s (bench_jobs.py jobs, 2026-12-01).
REBOOT_SECONDS = 12.0


@dataclass(frozen=True)
class PreviousModule:
    name: str
    outcome: Outcome
    agreement: Agreement
    origin: str | None = None         # runtime.origin (the module directory's partition)
    seconds: float | None = None      # runtime.seconds: the load, in the guest

    @property
    def failed(self) -> bool:
        return fails(self.outcome, self.agreement)


@dataclass(frozen=True)
class PreviousReport:
    path: str
    modules: Mapping[str, PreviousModule]
    error: str | None = None          # the previous run ended early (partial report)
    reboot_seconds: float = REBOOT_SECONDS    # a boot after a hang or crash, with its restore

    def failed(self) -> frozenset[str]:
        return frozenset(n for n, m in self.modules.items() if m.failed)

    def costs(self) -> Costs:
        """What each load took then, a hang or crash with the reboot after it (a module the
        report does not have: the median load). A report without seconds (schema 1): the
        loads counted, as without a baseline."""
        timed = [m for m in self.modules.values()
                 if m.origin is not None and m.seconds is not None]
        if not timed:
            return BY_COUNT
        ms = {(m.origin or "", m.name): round((m.seconds or 0.0) * 1000) for m in timed}
        stopped = {(m.origin or "", m.name) for m in timed
                   if m.outcome in (Outcome.HUNG, Outcome.CRASHED)}
        for k in stopped:
            ms[k] += round(self.reboot_seconds * 1000)
        loaded = [ms[(m.origin or "", m.name)] for m in timed if m.outcome is Outcome.LOADED]
        return Costs(ms, max(1, round(statistics.median(loaded))) if loaded else 1,
                     frozenset(stopped), self.path)


def read_previous(path: Path) -> PreviousReport:
    with reading(path), open(path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(path, f"not a JSON report: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("modules"), list):
        raise InputError(path, "not a `bootverify run` JSON report (no modules list)")
    modules = {}
    for i, m in enumerate(doc["modules"]):
        try:
            runtime = m["runtime"]
            seconds = runtime.get("seconds")
            origin = runtime.get("origin")
            modules[m["name"]] = PreviousModule(
                m["name"], Outcome(runtime["outcome"]), Agreement(m["agreement"]),
                origin if isinstance(origin, str) else None,
                float(seconds) if isinstance(seconds, int | float) and seconds >= 0 else None)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InputError(path, f"modules[{i}]: no name, runtime.outcome and agreement of a "
                                   f"`bootverify run` report") from None
    error = doc.get("error")
    return PreviousReport(str(path), modules,
                          error.get("message") if isinstance(error, dict) else None,
                          _reboot_seconds(doc))


def _reboot_seconds(doc: dict) -> float:
    """The median boot after a hang or crash (meta.boots after the first), its restore with it."""
    meta = doc.get("meta")
    boots = meta.get("boots") if isinstance(meta, dict) else None
    if not isinstance(boots, list):
        return REBOOT_SECONDS
    took = [b["seconds"] + b.get("restore_seconds", 0.0) for b in boots[1:]
            if isinstance(b, dict) and isinstance(b.get("seconds"), int | float)
            and isinstance(b.get("restore_seconds", 0.0), int | float)]
    return statistics.median(took) if took else REBOOT_SECONDS
