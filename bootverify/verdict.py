"""What the device would do: boot, or stop, and where (the report's first line).

From the plan and each module's runtime outcome, by Android's rules (REFERENCE.md §4):
- First stage (init/first_stage_init.cpp LoadKernelModules, libmodprobe LoadListedModules with
  strict = !want_console): the load-list entries in order; an entry fails when none of what
  LoadWithAliases tried loaded, where a module counts as loaded only if its hard deps did
  (InsmodWithDeps gives up at the first that does not). A blocklisted entry's failure is no
  failure. The first failure stops the list: `LOG(FATAL) "Failed to load kernel modules"`,
  reboot to the bootloader. With `androidboot.first_stage_console` (debuggable builds) the list
  is not strict: 1 loads everything, then waits in a console shell (the device stops there);
  2 logs the failures and boots on.
- A vendor ramdisk with .ko files and nothing in its load list loads nothing, and
  LoadKernelModules returns true: first stage goes on, without any of the device's drivers.
  bootverify calls that a stop in first stage (the device cannot mount what it needs).
- Second stage (system_dlkm, vendor_dlkm, from init rc `insmod` / `modprobe -a`): a failing
  command is logged and init goes on, so the device boots. Its failures fail the run (exit 1,
  `failures`), not the boot.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bootverify import android
from bootverify.android import Stage
from bootverify.plan.model import Disposition, Key, Listed, LoadPlan
from bootverify.runtime.kmsg import Outcome
from bootverify.static.analysis import Prediction, Verdict


class Boots(enum.StrEnum):
    BOOTS = "boots"
    STOPS = "stops"


@dataclass(frozen=True)
class DeviceVerdict:
    verdict: Boots
    stage: Stage | None
    stops_at: str | None
    reason: str
    failures: tuple[str, ...]      # every listed entry that fails, and sets with no load list

    @property
    def failed(self) -> bool:
        return self.verdict is Boots.STOPS or bool(self.failures)


def predicted_outcomes(plan: LoadPlan, predictions: Sequence[Prediction]) -> dict[Key, str]:
    """What `check` expects of each module the plan loads: loaded, or the failure it predicts
    (an outcome `device_verdict` takes as it takes the runtime's)."""
    by_name = {p.name: p for p in predictions}
    out = {}
    for k, u in plan.units.items():
        p = by_name.get(u.name)
        if p is None or p.verdict is not Verdict.FAIL:
            out[k] = Outcome.LOADED.value
        else:
            by_kind: dict[str, list[str]] = {}
            for x in p.problems:
                if x.fatal:
                    by_kind.setdefault(x.kind, []).append(x.symbol)
            out[k] = "predicted to fail (" + "; ".join(
                f"{kind} {', '.join(filter(None, syms))}".strip()
                for kind, syms in by_kind.items()) + ")"
    return out


def device_verdict(plan: LoadPlan, outcomes: Mapping[Key, str]) -> DeviceVerdict:
    """`outcomes`: each module's outcome (the JSON strings), by plan key: the runtime's, or
    `predicted_outcomes`."""
    def why_not(k: Key, seen: frozenset[Key] = frozenset()) -> str:
        """"" if k loaded with all its hard deps, else why not."""
        u = plan.units[k]
        if u.disposition is not Disposition.LOAD:
            return f"{u.name}: {u.disposition.value}" + (f" ({u.note})" if u.note else "")
        for d in u.deps:
            if d not in seen and (why := why_not(d, seen | {k})):
                return f"{u.name} needs {why}"
        outcome = outcomes.get(k, "not run")
        return "" if outcome == Outcome.LOADED else f"{u.name}: {outcome}"

    def fails(x: Listed) -> str:
        reasons = [why_not(k) for k in x.keys]
        return "" if x.blocklisted or not all(reasons) else "; ".join(reasons)

    failing = [(x, why) for x in plan.listed if (why := fails(x))]
    empty = plan.unlisted_sets()
    failures = tuple(f"{x.origin}: {why}" for x, why in failing) + tuple(
        f"{s.origin}: {len(s.files)} .ko file(s), nothing in {s.load_file}" for s in empty)
    console = plan.boot.first_stage_console if plan.boot else 0
    first = [(x, why) for x, why in failing if x.stage is Stage.FIRST]
    second = [(x, why) for x, why in failing if x.stage is Stage.SECOND]
    second_note = (f"; second stage: {len(second)} module(s) fail, which does not stop the boot "
                   f"(init rc insmod/modprobe failures are logged): "
                   + ", ".join(x.name for x, _ in second)) if second else ""

    if any(s.origin == "vendor_ramdisk" for s in empty):
        s = next(s for s in empty if s.origin == "vendor_ramdisk")
        return DeviceVerdict(Boots.STOPS, Stage.FIRST, None,
                             f"first stage loads nothing: {s.guest_dir} has {len(s.files)} .ko "
                             f"file(s) and no {s.load_file} entries, so the device has none of "
                             f"its drivers" + second_note, failures)
    if first and console == 0:
        x, why = first[0]
        return DeviceVerdict(Boots.STOPS, Stage.FIRST, x.name,
                             f"first stage stops at {x.entry} ({why}): '{android.LOG_FATAL}', "
                             f"reboot to the bootloader", failures)
    if first:
        x, why = first[0]
        how = (f"androidboot.first_stage_console={console}: first stage is not strict "
               f"(a debuggable build), {len(first)} module(s) fail, the first {x.entry} ({why})")
        if console == 1:
            return DeviceVerdict(Boots.STOPS, Stage.FIRST, x.name,
                                 f"{how}: '{android.LOG_CONSOLE}'", failures)
        return DeviceVerdict(Boots.BOOTS, None, None, f"{how}: it boots on" + second_note,
                             failures)
    listed = sum(1 for x in plan.listed if x.stage is Stage.FIRST)
    return DeviceVerdict(Boots.BOOTS, None, None,
                         f"first stage loads all {listed} listed module(s)" + second_note,
                         failures)
