"""--only / --exclude / --rerun-failed: a narrowed run, with the dependencies the kernel needs.

A module is selected when its name matches an --only pattern (fnmatch, on the kernel's name;
none given: every module) and no --exclude pattern, and, with --rerun-failed PREV.json, failed
in that report. The plan then keeps the selected modules and, so that they link as on the
device, their hard dependencies and soft pre-dependencies (transitively), loaded first as
before; everything else is left out of the run and of the reports. The device verdict covers
the load-list entries the narrowed plan loads all of; a note says the run was narrowed."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace

from bootverify.errors import InputError
from bootverify.plan.model import LoadPlan, Step


@dataclass(frozen=True)
class Selection:
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    rerun: frozenset[str] | None = None    # the failed modules of --rerun-failed's report
    rerun_from: str = ""

    @property
    def narrows(self) -> bool:
        return bool(self.only or self.exclude or self.rerun is not None)

    def wants(self, name: str) -> bool:
        return ((not self.only or any(fnmatch.fnmatchcase(name, p) for p in self.only))
                and not any(fnmatch.fnmatchcase(name, p) for p in self.exclude)
                and (self.rerun is None or name in self.rerun))

    def describe(self) -> str:
        parts = [f"--only {' '.join(self.only)}" if self.only else "",
                 f"--exclude {' '.join(self.exclude)}" if self.exclude else "",
                 f"--rerun-failed {self.rerun_from}" if self.rerun is not None else ""]
        return ", ".join(p for p in parts if p)


def narrow(plan: LoadPlan, selection: Selection) -> LoadPlan:
    if not selection.narrows:
        return plan
    chosen = [s.key for s in plan.steps if selection.wants(s.key[1])]
    if selection.only and not chosen:
        raise InputError("--only", f"no module matches {' '.join(selection.only)} "
                                   f"(after --exclude)")
    keep = set(plan.reach(chosen, post=False))
    steps: list[Step] = []
    for s in plan.steps:
        if s.key in keep:
            steps.append(replace(s, line=None if s.line is None else
                                 sum(1 for x in steps if x.line is not None) + 1))
    note = (f"narrowed run ({selection.describe()}): {len(chosen)} of {len(plan.steps)} "
            f"module(s) selected, {len(keep) - len(chosen)} more as their dependencies; the "
            f"device verdict covers only these")
    return replace(plan, steps=tuple(steps), order=tuple(k for k in plan.order if k in keep),
                   listed=tuple(x for x in plan.listed if x.keys and set(x.keys) <= keep),
                   notes=(*plan.notes, note))
