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
- libmodprobe's Insmod() opens the file and calls finit_module(fd, options, 0): no
  MODULE_INIT_COMPRESSED_FILE, so a compressed .ko (.ko.xz, .ko.zst, .ko.gz) does not load on a
  device whatever bootverify's guest made of it (the kernel's verdict is about its contents).
- Second stage (system_dlkm, vendor_dlkm, from init rc `insmod` / `modprobe -a`): a failing
  command is logged and init goes on, so the device boots. Its failures fail the run (exit 1,
  `failures`), not the boot.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from bootverify import android
from bootverify.android import Stage
from bootverify.plan.libmodprobe import Rule, run_rule
from bootverify.plan.model import Disposition, Key, Listed, LoadPlan
from bootverify.readers.modules import COMPRESSED_SUFFIXES
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
        p = by_name.get(u.own_name or u.name)
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


@dataclass(frozen=True)
class Entry:
    """A load-list entry as the verdict needs it (plan.Listed without its keys)."""
    origin: str
    entry: str
    name: str
    stage: Stage
    blocklisted: bool


@dataclass(frozen=True)
class EmptySet:
    """A module set with .ko files and nothing in its load list."""
    origin: str
    guest_dir: str
    files: int
    load_file: str


@dataclass(frozen=True)
class VerdictFacts:
    """What of the plan the verdict reads besides the outcomes: a shard's report carries it,
    so that `merge` decides for the whole plan."""
    entries: tuple[Entry, ...]     # plan.listed, in order
    empty: tuple[EmptySet, ...]
    console: int                   # androidboot.first_stage_console


def verdict_facts(plan: LoadPlan) -> VerdictFacts:
    return VerdictFacts(
        tuple(Entry(x.origin, x.entry, x.name, x.stage, x.blocklisted) for x in plan.listed),
        tuple(EmptySet(s.origin, s.guest_dir, len(s.files), s.load_file)
              for s in plan.unlisted_sets()),
        plan.boot.first_stage_console if plan.boot else 0)


def entry_failures(plan: LoadPlan, outcomes: Mapping[Key, str],
                   entries: Collection[int] | None = None) -> dict[int, str]:
    """Why each failing entry fails (by index in plan.listed), of `entries` (default all).
    `outcomes`: each module's outcome (the JSON strings), by plan key: the runtime's, or
    `predicted_outcomes`."""
    memo: dict[Key, str] = {}
    active: set[Key] = set()        # the modules whose deps are being looked at: a cycle stops

    def why_not(k: Key) -> Rule[str]:
        """"" if k loaded with all its hard deps, else why not (run by run_rule: a modules.dep
        chain thousands deep is no recursion)."""
        if k in memo:
            return memo[k]
        u = plan.units[k]
        why = ""
        if u.disposition is not Disposition.LOAD:
            why = f"{u.name}: {u.disposition.value}" + (f" ({u.note})" if u.note else "")
        else:
            active.add(k)
            for d in u.deps:
                if d not in active and (dep_why := (yield why_not, (d,))):
                    why = f"{u.name} needs {dep_why}"
                    break
            active.discard(k)
            outcome = outcomes.get(k, "not run")
            if not why and u.path.endswith(tuple(COMPRESSED_SUFFIXES)):
                why = f"{u.name}: {android.INSMOD_COMPRESSED}"
            elif not why and outcome != Outcome.LOADED:
                why = f"{u.name}: {outcome}"
        memo[k] = why
        return why

    def fails(x: Listed) -> str:
        reasons = [run_rule(why_not(k)) for k in x.keys]
        return "" if x.blocklisted or not all(reasons) else "; ".join(reasons)

    return {i: why for i, x in enumerate(plan.listed)
            if (entries is None or i in entries) and (why := fails(x))}


def device_verdict(plan: LoadPlan, outcomes: Mapping[Key, str]) -> DeviceVerdict:
    """`outcomes`: each module's outcome (the JSON strings), by plan key: the runtime's, or
    `predicted_outcomes`."""
    return decide(verdict_facts(plan), entry_failures(plan, outcomes))


def decide(facts: VerdictFacts, failures_by_entry: Mapping[int, str]) -> DeviceVerdict:
    """The verdict from the failing entries (index in facts.entries -> why)."""
    failing = [(facts.entries[i], why) for i, why in sorted(failures_by_entry.items())]
    empty = facts.empty
    failures = tuple(f"{x.origin}: {why}" for x, why in failing) + tuple(
        f"{s.origin}: {s.files} .ko file(s), nothing in {s.load_file}" for s in empty)
    console = facts.console
    first = [(x, why) for x, why in failing if x.stage is Stage.FIRST]
    second = [(x, why) for x, why in failing if x.stage is Stage.SECOND]
    second_note = (f"; second stage: {len(second)} module(s) fail, which does not stop the boot "
                   f"(init rc insmod/modprobe failures are logged): "
                   + ", ".join(x.name for x, _ in second)) if second else ""

    if any(s.origin == "vendor_ramdisk" for s in empty):
        s = next(s for s in empty if s.origin == "vendor_ramdisk")
        return DeviceVerdict(Boots.STOPS, Stage.FIRST, None,
                             f"first stage loads nothing: {s.guest_dir} has {s.files} .ko "
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
    listed = sum(1 for x in facts.entries if x.stage is Stage.FIRST)
    return DeviceVerdict(Boots.BOOTS, None, None,
                         f"first stage loads all {listed} listed module(s)" + second_note,
                         failures)
