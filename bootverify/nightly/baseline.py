"""--baseline PREV.json: each module tonight against last night's report.

Per module (`Change`): new-failure (passed, fails now), fixed (failed, passes now),
still-failing, still-passing, new-module (not in last night's report), gone (in last night's
report, in none of tonight's inputs). A narrowed run compares only what it ran; a module of the
inputs it did not run is neither compared nor gone."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bootverify.crosscheck import ModuleVerdict, module_fails
from bootverify.nightly.previous import PreviousReport


class Change(enum.StrEnum):
    NEW_FAILURE = "new-failure"
    FIXED = "fixed"
    STILL_FAILING = "still-failing"
    STILL_PASSING = "still-passing"
    NEW_MODULE = "new-module"
    GONE = "gone"


@dataclass(frozen=True)
class ModuleChange:
    name: str
    change: Change
    before: str | None          # last night's outcome/agreement
    now: str | None             # tonight's


@dataclass(frozen=True)
class Comparison:
    path: str
    changes: tuple[ModuleChange, ...]     # tonight's modules in load order, then the gone ones

    def of(self, change: Change) -> tuple[ModuleChange, ...]:
        return tuple(c for c in self.changes if c.change is change)


def compare(previous: PreviousReport, verdicts: Sequence[ModuleVerdict],
            known: Iterable[str]) -> Comparison:
    """`known`: every module name of tonight's inputs."""
    changes = []
    for v in verdicts:
        now = f"{v.runtime.outcome.value}/{v.agreement.value}"
        before = previous.modules.get(v.name)
        if before is None:
            changes.append(ModuleChange(v.name, Change.NEW_MODULE, None, now))
            continue
        was = f"{before.outcome.value}/{before.agreement.value}"
        failing = module_fails(v)
        change = {(False, True): Change.NEW_FAILURE, (True, False): Change.FIXED,
                  (True, True): Change.STILL_FAILING,
                  (False, False): Change.STILL_PASSING}[(before.failed, failing)]
        changes.append(ModuleChange(v.name, change, was, now))
    present = set(known) | {v.name for v in verdicts}
    changes += [ModuleChange(n, Change.GONE, f"{m.outcome.value}/{m.agreement.value}", None)
                for n, m in previous.modules.items() if n not in present]
    return Comparison(previous.path, tuple(changes))
