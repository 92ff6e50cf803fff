"""Would every GKI and device module load on the replacement kernel: the static report, and
when the replacement was booted the runtime verdicts too; for each module that would not, the
KMI changes that explain it (static/replacement.py).

A module fails when the analysis predicts it (statically), or, after a boot, when it did not
load (blocklisted ones aside) or was in no load list and is predicted to fail: not loading it
did not make it loadable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bootverify.crosscheck import NOT_FAILED_OUTCOMES, ModuleVerdict, failed
from bootverify.runtime.kmsg import Outcome
from bootverify.static.analysis import Prediction, Verdict
from bootverify.static.kmidiff import KmiChange
from bootverify.static.replacement import Origin, ReplacementReport, failing_symbols
from bootverify.verdict import DeviceVerdict, device_verdict, predicted_outcomes

if TYPE_CHECKING:       # the runtime (pexpect, qemu) is imported only when booting
    from bootverify.runtime.runner import RunReport


@dataclass(frozen=True)
class ModuleFailure:
    name: str
    origin: Origin
    prediction: Prediction | None
    verdict: ModuleVerdict | None       # None: not booted (--static-only)
    kmi_changes: tuple[KmiChange, ...]  # the changed or removed KMI symbols it needs


def _failed(prediction: Prediction | None, verdict: ModuleVerdict | None) -> bool:
    predicted = prediction is not None and prediction.verdict is Verdict.FAIL
    if verdict is None:
        return predicted
    outcome = verdict.runtime.outcome
    return outcome not in NOT_FAILED_OUTCOMES or (outcome is Outcome.UNLISTED and predicted)


def failures(report: ReplacementReport,
             verdicts: Sequence[ModuleVerdict] | None = None) -> list[ModuleFailure]:
    """In the report's order (the runtime's, after a boot)."""
    if verdicts is None:
        rows: list[tuple[str, Prediction | None, ModuleVerdict | None]] = [
            (p.name, p, None) for p in report.static.modules]
    else:
        rows = [(v.name, v.prediction, v) for v in verdicts]
    out = []
    for name, prediction, verdict in rows:
        if not _failed(prediction, verdict):
            continue
        symbols = failing_symbols(prediction) if prediction else []
        if verdict is not None:
            symbols += [p.symbol for p in verdict.runtime.problems if p.symbol]
        out.append(ModuleFailure(name, report.origin(name), prediction, verdict,
                                 report.explain(symbols)))
    return out


@dataclass(frozen=True)
class Booted:
    """The replacement booted and its modules loaded (`run`'s runtime half)."""
    runtime: RunReport
    verdicts: tuple[ModuleVerdict, ...]
    device: DeviceVerdict


@dataclass(frozen=True)
class ReplacementVerdict:
    report: ReplacementReport
    booted: Booted | None               # None: --static-only
    failing: tuple[ModuleFailure, ...]
    device: DeviceVerdict | None        # observed after a boot, else predicted from the plan

    @property
    def failed(self) -> bool:
        """Exit 1: a module would not load, or the device would stop; after a boot also static
        and runtime disagreeing (crosscheck.failed)."""
        b = self.booted
        return (bool(self.failing) or (self.device is not None and self.device.failed)
                or (b is not None and failed(list(b.verdicts))))


def judge(report: ReplacementReport, booted: Booted | None) -> ReplacementVerdict:
    plan = report.static.plan
    if booted is not None:
        device: DeviceVerdict | None = booted.device
    else:
        device = (device_verdict(plan, predicted_outcomes(plan, report.static.modules))
                  if plan else None)
    return ReplacementVerdict(report, booted,
                              tuple(failures(report, booted.verdicts if booted else None)),
                              device)
