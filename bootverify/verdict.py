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
  `failures`), not the boot, unless the load never returned to its loader (it crashed or hung):
- A load whose finit_module never returns stops the device in any stage where it is reached
  (before first stage's own stop), by the table CRASH_STOPS (rule: finit_never_returns). A panic
  (runtime/kmsg.py `panicked`: the row "Kernel panic - not syncing", kernel/panic.c panic())
  stops the kernel and the device reboots: no LOG(FATAL), no reboot to the bootloader. An oops
  the kernel goes on from (arch/arm64/kernel/traps.c die() without panic_on_oops) kills the
  task that loaded. A hang (outcome hung: the module's init did not return within the
  per-module timeout, which bootverify takes as never) leaves the loader waiting in
  finit_module for good; nothing in init gives up on it.
  First stage loads in init itself (first_stage_init, pid 1, libmodprobe in its own process;
  init/first_stage_init.cpp LoadKernelModules calls LoadListedModules or LoadModulesParallel):
  the oops kills init, and kernel/exit.c do_exit() panics "Attempted to kill init!" (with
  parallel loading it kills one of init's loading threads: bootverify takes that as a stop); a
  hang blocks init in finit_module (libmodprobe_ext.cpp Insmod()), and with parallel loading
  libmodprobe.cpp LoadModulesParallel() join()s every loading thread of the wave, so it blocks
  as well: first stage never gets to LOG(FATAL) or to mounting, the device hangs, no reboot.
  Second stage: init rc's `insmod` builtin loads in init too (AOSP system/core
  init/builtins.cpp do_insmod(): open() and syscall(__NR_finit_module) in init's own process);
  `exec ... /system/bin/modprobe -a -d DIR` (as goldfish's init.ranchu.rc does) is a process of
  its own (do_exec(): Service::ExecStart(), which sets is_exec_service_running). An oops kills
  that process only, and init boots on; a hang blocks init all the same, since init/init.cpp
  SecondStageMain runs no further command while an exec service runs. Only a loader that init
  does not wait for (a `service`, `exec_background`) would leave it booting. bootverify does not
  read the device's init rc, so it does not know which: it takes the side that stops, and its
  reason says so. GKI kernels set CONFIG_PANIC_ON_OOPS=y (gki_defconfig, ACK android12-5.10 and
  android14-6.1): there an oops is a panic, and the guest, which runs the image's own kernel,
  logs the panic line too.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from bootverify import android
from bootverify.android import Stage
from bootverify.plan.libmodprobe import Rule, run_rule
from bootverify.plan.model import Disposition, Key, Listed, LoadPlan
from bootverify.readers.modules import COMPRESSED_SUFFIXES
from bootverify.runtime.kmsg import Crash, Outcome, RuntimeResult
from bootverify.static.analysis import Prediction, Verdict


class Boots(enum.StrEnum):
    BOOTS = "boots"
    STOPS = "stops"


# What a load whose finit_module never returns does to the device, by how and stage (the module
# docstring has the sources). Every one stops it; the text is how, for the verdict's reason.
_PANIC = "the kernel panicked (kernel/panic.c panic()): the device reboots there"
CRASH_STOPS: Mapping[tuple[Crash, Stage], str] = {
    (Crash.PANIC, Stage.FIRST): _PANIC,
    (Crash.PANIC, Stage.SECOND): _PANIC,
    (Crash.OOPS, Stage.FIRST): (
        "an oops in init's own process (first_stage_init loads with libmodprobe): it kills "
        "init, kernel/exit.c do_exit() panics 'Attempted to kill init!', the device reboots"),
    (Crash.OOPS, Stage.SECOND): (
        "an oops: init rc's `insmod` (init/builtins.cpp do_insmod()) loads in init itself, "
        "which it kills (kernel/exit.c do_exit(): 'Attempted to kill init!'), an `exec` of "
        "modprobe in a process of its own that just dies; bootverify does not read the "
        "device's init rc and takes the first (on GKI, CONFIG_PANIC_ON_OOPS=y makes it a "
        "panic anyway)"),
    (Crash.HANG, Stage.FIRST): (
        "its init did not return within the per-module timeout (taken as never): "
        "first_stage_init waits in finit_module for good (libmodprobe_ext.cpp Insmod(); "
        "parallel loading join()s its threads, LoadModulesParallel()), so no LOG(FATAL) and "
        "no reboot: the device hangs in first stage"),
    (Crash.HANG, Stage.SECOND): (
        "its init did not return within the per-module timeout (taken as never): init rc's "
        "`insmod` waits in finit_module in init itself (init/builtins.cpp do_insmod()), and "
        "an `exec` of modprobe holds init's commands until it exits (do_exec(), init/init.cpp "
        "is_exec_service_running()); only a `service` or `exec_background` loader would not "
        "block init: bootverify does not read the device's init rc and takes the side that "
        "stops: the device hangs in second stage"),
}


def finit_never_returns(crash: Crash, stage: Stage) -> str:
    """How a load whose finit_module never returns to its loader stops the device: the kernel
    panicked (kernel/panic.c panic(), or do_exit()'s when the crash killed init), or the loader
    waits for the module's init for good (CRASH_STOPS)."""
    return CRASH_STOPS[(crash, stage)]


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


def runtime_crashes(results: Iterable[RuntimeResult]) -> dict[Key, Crash]:
    """The modules whose load never returned (crashed or hung), and how (by plan key)."""
    return {(r.origin, r.name): r.crash for r in results if r.crash is not None}


def entry_crashes(plan: LoadPlan, crashes: Mapping[Key, Crash],
                  entries: Collection[int] | None = None) -> dict[int, Crash]:
    """The entries (by index in plan.listed) of `entries` (default all) whose load reaches a
    module whose load never returned (`crashes`, by key: runtime_crashes): the candidates, their
    hard and soft dependencies. Of several, the first the loader reaches (plan.steps' order)
    decides, since the device goes no further; in one wave of parallel loading the worst
    (Crash's order: a panic stops the kernel while another thread hangs). Whether the entry
    fails aside: such a load stops the device where it happens."""
    out: dict[int, Crash] = {}
    if not crashes:
        return out
    reached_at: dict[Key, int] = {}          # a module -> its wave (one step alone: its own)
    wave = 0
    for s in plan.steps:
        if not s.joins:
            wave += 1
        reached_at[s.key] = wave
    worst = list(Crash)
    for i, x in enumerate(plan.listed):
        if entries is not None and i not in entries:
            continue
        seen: set[Key] = set()
        todo = list(x.keys)
        found: list[tuple[int, int, Crash]] = []
        while todo:
            k = todo.pop()
            if k in seen or k not in plan.units:
                continue
            seen.add(k)
            if k in crashes:
                found.append((reached_at.get(k, wave + 1), worst.index(crashes[k]), crashes[k]))
            u = plan.units[k]
            todo += (*u.pre, *u.deps, *u.post)
        if found:
            out[i] = min(found)[2]
    return out


def device_verdict(plan: LoadPlan, outcomes: Mapping[Key, str],
                   crashes: Mapping[Key, Crash] | None = None) -> DeviceVerdict:
    """`outcomes`: each module's outcome (the JSON strings), by plan key: the runtime's, or
    `predicted_outcomes`; `crashes`: the runtime's loads that crashed or hung (runtime_crashes;
    static analysis predicts none)."""
    return decide(verdict_facts(plan), entry_failures(plan, outcomes),
                  entry_crashes(plan, crashes or {}))


def decide(facts: VerdictFacts, failures_by_entry: Mapping[int, str],
           crashes_by_entry: Mapping[int, Crash] | None = None) -> DeviceVerdict:
    """The verdict from the failing entries (index in facts.entries -> why) and the entries
    whose load crashed or hung (index -> how: entry_crashes)."""
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
    # Where first stage itself stops: strict, its first failure; console 1, its end (the
    # shell); else never. A crash or hang reached before that stops the device first.
    first_at = min((i for i, x in enumerate(facts.entries) if x.stage is Stage.FIRST
                    and i in failures_by_entry), default=None)
    for i, crash in sorted((crashes_by_entry or {}).items()):
        x = facts.entries[i]
        if (first_at is None or console == 2 or (console == 0 and i <= first_at)
                or (console == 1 and x.stage is Stage.FIRST)):
            why = failures_by_entry.get(i) or f"a module it loads: {crash.value}"
            return DeviceVerdict(Boots.STOPS, x.stage, x.name,
                                 f"{x.stage.value.replace('-', ' ')} stops at {x.entry} "
                                 f"({why}): {finit_never_returns(crash, x.stage)}", failures)
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
