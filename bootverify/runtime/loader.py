"""Load as Android's first stage would, one module at a time, through the agent's console.

The model is system/core libmodprobe (REFERENCE.md §4) as first_stage_init uses it:
- Module directory: /lib/modules/<dir> for the first directory (sorted) whose name starts with
  the kernel's major.minor and whose modules.load lists something, else /lib/modules. Then
  system_dlkm, then vendor_dlkm, each with its own modules.load / modules.dep / modules.blocklist
  / modules.options (second-stage init loads those with modprobe, which is libmodprobe too).
- Order: modules.load, each module with its modules.dep dependencies first, loaded in reverse
  modules.dep order, each of those with its own dependencies first (InsmodWithDeps). A module's
  file path is the one modules.dep gives (relative paths are relative to the directory).
- Parameters: modules.options, plus `module.param=value` words of the kernel command line
  (ParseKernelCmdlineOptions).
- modules.blocklist: a blocklisted module is not loaded (`skipped`).
- A module whose dependency did not load (failed, hung, crashed, blocklisted, missing) is still
  tried after the dependencies that do load, and gets the kernel's verdict (typically
  `link-error`, unknown symbols of the missing dependency), with the reason naming the
  dependency. Android's InsmodWithDeps would not try it; either way it does not load, and the
  kernel's own words are the better evidence.
- Loading is finit_module() on the opened file, exactly once (agent.py's finit; no busybox
  modprobe, whose retry with init_module would run a failing init twice); EEXIST counts as
  loaded.
Where bootverify parts from Android on purpose: Android's first stage stops at the first failure
(strict mode) and then fails the boot; bootverify goes on through the whole list, so that every
module gets a verdict.
A module listed in modules.load but missing from modules.dep is loaded from its modules.load path
without dependencies (libmodprobe would refuse it); the run notes it.

How: the load order is fixed before the boot (every module is tried whatever happened to its
dependencies), so it goes into the agent's overlay as /bootverify/plan, one `PATH PARAMS` line
per module, and the guest walks it by itself (`bv_run`), one finit_module at a time, printing
for each module the kernel log records its load wrote (read from /dev/kmsg by the helper, from
a position taken just before the load: exactly that load's lines), the result line (return
value, guest nanoseconds) and a nonce mark `M<line>:<status>`. The host reads the marks as they
come and times each module from the previous mark; no host round trip sits between modules.

Recovery: a module whose init has not returned after `module_timeout` is `hung` (the helper's
watchdog prints what the module logged so far; the host gives up a little later if even that
does not come); one whose load oopses, BUGs or panics is `crashed`. Either way the VM is
killed, a new one boots, loads again (quietly, in as few commands as fit a console line) the
loaded modules that the modules still to come depend on, and goes on from the next line. The
run always gets through the list.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO

from bootverify.errors import InfraError, InputError
from bootverify.readers.modules import (MODULES_FILES, ModulesDir, find_modules, module_name,
                                        parse_modules_dir, read_modules_dir)
from bootverify.readers.ramdisk import CpioEntry
from bootverify.runtime import agent, boot, kmsg, protocol
from bootverify.runtime.console import CommandTimeout, Console, GuestDied, boot_banner
from bootverify.runtime.kmsg import Outcome, RuntimeResult
from bootverify.runtime.protocol import Label, LoadOutput
from bootverify.runtime.vm import VirtualMachine, VMConfig, Workspace, signals_as_interrupt

MODULE_BASE_DIR = "/lib/modules"
LOAD_FILE = "modules.load"
ORIGINS = ("vendor_ramdisk", "system_dlkm", "vendor_dlkm")
DEFAULT_MODULE_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0        # ordinary agent commands (restore is given more)
RESTORE_CHUNK = 3000          # characters per restore command line (the tty takes 4095)
RESTORE_PER_MODULE = 1.0      # seconds allowed per module loaded again after a reboot

Key = tuple[str, str]         # (origin, module name)


# --- module sets and the plan ---

@dataclass(frozen=True)
class ModuleSet:
    """One directory of modules as the guest sees it."""
    origin: str                    # vendor_ramdisk, system_dlkm, vendor_dlkm
    guest_dir: str                 # e.g. /lib/modules
    files: frozenset[str]          # .ko paths relative to guest_dir
    config: ModulesDir


@dataclass(frozen=True)
class ModuleUnit:
    origin: str
    name: str
    path: str                      # guest path to open ("" when the file is not there)
    params: str
    deps: tuple[Key, ...]          # in load order
    blocklisted: bool = False
    note: str = ""                 # how the path was found when not by modules.dep

    @property
    def key(self) -> Key:
        return (self.origin, self.name)


@dataclass(frozen=True)
class Step:
    """One module in load order: loaded from plan line `line`, or not loaded (`skip` says why)."""
    key: Key
    line: int | None
    skip: str = ""


@dataclass(frozen=True)
class LoadPlan:
    units: Mapping[Key, ModuleUnit]
    order: tuple[Key, ...]         # the listed modules: each set's modules.load, sets in order
    sets: tuple[ModuleSet, ...]
    notes: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()   # every module, dependencies first (InsmodWithDeps' order)

    @functools.cached_property
    def lines(self) -> tuple[str, ...]:
        """/bootverify/plan: `PATH PARAMS` for each step that loads, line N = step with line N."""
        return tuple(f"{self.units[s.key].path} {self.units[s.key].params}".rstrip()
                     for s in self.steps if s.line is not None)

    @functools.cached_property
    def _by_line(self) -> dict[int, Key]:
        return {s.line: s.key for s in self.steps if s.line is not None}

    def unit_at(self, line: int) -> ModuleUnit:
        return self.units[self._by_line[line]]


def _steps(units: Mapping[Key, ModuleUnit], order: Sequence[Key]) -> tuple[Step, ...]:
    out: list[Step] = []
    seen: set[Key] = set()
    loads = 0

    def visit(k: Key) -> None:
        nonlocal loads
        if k in seen:
            return
        seen.add(k)                     # before the dependencies: a cycle ends here
        u = units[k]
        for d in u.deps:
            visit(d)
        if u.blocklisted:
            out.append(Step(k, None, "blocklisted (modules.blocklist)"))
        elif not u.path:
            out.append(Step(k, None, u.note or "not in the image"))
        else:
            loads += 1
            out.append(Step(k, loads))

    for k in order:
        visit(k)
    return tuple(out)


def _tree_modules_dir(tree: Mapping[str, CpioEntry], release: str) -> str:
    """first_stage_init's choice of module directory, as a tree-relative path."""
    base = MODULE_BASE_DIR.lstrip("/")
    m = re.match(r"(\d+)\.(\d+)", release)
    candidates = sorted({name.split("/")[2] for name in tree
                         if name.startswith(base + "/") and name.count("/") >= 3})
    for d in candidates:
        dm = re.match(r"(\d+)\.(\d+)", d)
        if not (m and dm and dm.groups() == m.groups()):
            continue
        load = tree.get(f"{base}/{d}/{LOAD_FILE}")
        if load is not None and load.data.strip():
            return f"{base}/{d}"
    return base


def ramdisk_module_set(tree: Mapping[str, CpioEntry], release: str) -> ModuleSet:
    """The vendor ramdisk's module directory (from the unpacked device ramdisks)."""
    rel = _tree_modules_dir(tree, release)
    files = frozenset(name[len(rel) + 1:] for name, e in tree.items()
                      if name.startswith(rel + "/") and name.endswith(".ko") and e.is_file)
    texts = {}
    for name in MODULES_FILES:
        e = tree.get(f"{rel}/{name}")
        if e is not None and e.is_file:
            try:
                texts[name] = e.data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"initrd:/{rel}/{name}", f"not text: {err}") from None
    config = parse_modules_dir(Path(f"initrd:/{rel}"), texts)
    return ModuleSet("vendor_ramdisk", "/" + rel, files, config)


def dir_module_set(origin: str, directory: Path) -> ModuleSet:
    """An extra module directory (--system-dlkm / --vendor-dlkm) as packed into the overlay."""
    directory = Path(directory)
    files = frozenset(str(p.relative_to(directory)) for p in find_modules(directory))
    if not (directory / LOAD_FILE).is_file():
        raise InputError(directory, f"no {LOAD_FILE}: which modules to load is not said")
    return ModuleSet(origin, boot.DLKM_GUEST_DIRS[origin], files, read_modules_dir(directory))


def cmdline_options(cmdline: str) -> dict[str, str]:
    """`module.param=value` words of the command line (libmodprobe ParseKernelCmdlineOptions)."""
    out: dict[str, str] = {}
    word, in_quotes = [], False
    words = []
    for ch in cmdline + " ":
        if ch == '"':
            in_quotes = not in_quotes
        if ch == " " and not in_quotes:
            if word:
                words.append("".join(word))
            word = []
        else:
            word.append(ch)
    for w in words:
        name, dot, rest = w.partition(".")
        opt, eq, value = rest.partition("=")
        if dot and eq and name and opt and "=" not in name:
            key = module_name(name)
            out[key] = (out[key] + " " if key in out else "") + f"{opt}={value}"
    return out


class _Resolver:
    """Module paths from modules.dep / modules.load to units of the plan."""

    def __init__(self, sets: Sequence[ModuleSet], cmd_options: Mapping[str, str]) -> None:
        self.sets = {s.origin: s for s in sets}
        self.order = [s.origin for s in sets]
        self.cmd_options = cmd_options
        self.units: dict[Key, ModuleUnit] = {}
        self.notes: list[str] = []
        # name -> (modules.dep target path, its dependency paths), per set
        self.deps = {s.origin: {module_name(t): (t, d) for t, d in s.config.dep.items()}
                     for s in sets}

    def locate(self, origin: str, path: str) -> tuple[str, str] | None:
        """(origin, relative path) of a module file named by `path` in `origin`'s config."""
        s = self.sets[origin]
        p = str(PurePosixPath(path))
        if not p.startswith("/"):
            rel = p.removeprefix("./")
            return (origin, rel) if rel in s.files else None
        if p.startswith(s.guest_dir + "/") and p[len(s.guest_dir) + 1:] in s.files:
            return (origin, p[len(s.guest_dir) + 1:])
        # An absolute path from the device's layout (/vendor/lib/modules/x.ko,
        # /system/lib/modules/x.ko): the longest tail of it that is a file of a set,
        # this set first.
        parts = PurePosixPath(p).parts[1:]
        for o in [origin] + [x for x in self.order if x != origin]:
            for i in range(len(parts)):
                tail = "/".join(parts[i:])
                if tail in self.sets[o].files:
                    return (o, tail)
        return None

    def unit(self, origin: str, name: str, via: str = "", stack: tuple[Key, ...] = ()) -> Key:
        key = (origin, name)
        if key in self.units or key in stack:
            return key
        s = self.sets[origin]
        params = " ".join(p for p in (s.config.options.get(name, ""),
                                      self.cmd_options.get(name, "")) if p)
        blocked = name in s.config.blocklist
        entry = self.deps[origin].get(name)
        note = ""
        deps: list[Key] = []
        if entry is not None:
            target, dep_paths = entry
            where = self.locate(origin, target)
            for d in reversed(dep_paths):
                loc = self.locate(origin, d)
                if loc is None:
                    dk = (origin, module_name(d))
                    if dk not in self.units:
                        self.units[dk] = ModuleUnit(origin, dk[1], "", "", (),
                                                    note=f"{d}: not in the image")
                    deps.append(dk)
                else:
                    deps.append(self.unit(loc[0], module_name(loc[1]), d, stack + (key,)))
        else:
            where = self.locate(origin, via) if via else None
            if where:
                note = f"not in {s.guest_dir}/modules.dep: loaded from {via} without dependencies"
                self.notes.append(f"{origin}: {name}: {note}")
        path = f"{self.sets[where[0]].guest_dir}/{where[1]}" if where else ""
        if not where:
            note = f"{via or name}: not in the image"
        self.units[key] = ModuleUnit(origin, name, path, params, tuple(deps), blocked, note)
        return key


def make_plan(sets: Sequence[ModuleSet], cmdline: str = "") -> LoadPlan:
    r = _Resolver(sets, cmdline_options(cmdline))
    order: dict[Key, None] = {}
    for s in sets:
        for listed in s.config.load:
            order.setdefault(r.unit(s.origin, module_name(listed), listed))
    for u in r.units.values():
        if u.path and any(c.isspace() for c in u.path):
            raise InputError(u.path, "module path with white space: the guest's plan file "
                                     "cannot hold it")
    return LoadPlan(dict(r.units), tuple(order), tuple(sets), tuple(r.notes),
                    _steps(r.units, order))


def plan_for(handoff: boot.Handoff, cmdline: str,
             dlkm_dirs: Mapping[str, Path] | None = None) -> LoadPlan:
    """The plan for a run: vendor ramdisk modules, then system_dlkm, then vendor_dlkm."""
    sets = [ramdisk_module_set(handoff.ramdisk_tree(), handoff.kernel.release)]
    for origin in ORIGINS[1:]:
        if dlkm_dirs and origin in dlkm_dirs:
            sets.append(dir_module_set(origin, dlkm_dirs[origin]))
    return make_plan(sets, cmdline)


# --- running it ---

HOST_MARGIN = 5.0             # the host waits this much longer than the guest's watchdog


def classify_output(u: ModuleUnit, out: LoadOutput, host_seconds: float) -> RuntimeResult:
    """One module's verdict from what the agent printed for it."""
    seconds = out.seconds if out.seconds is not None else host_seconds
    common = dict(name=u.name, path=u.path, seconds=seconds, params=u.params, origin=u.origin)
    if out.label is Label.OPEN:
        assert out.value is not None
        return kmsg.skipped(name=u.name, path=u.path, origin=u.origin,
                            reason=f"could not open module: {kmsg.strerror(-out.value)}")
    if out.label is Label.TIMEOUT:
        return kmsg.classify(errno=None, kmsg=out.kmsg + out.console, timed_out=True,
                             **common)  # type: ignore[arg-type]
    if out.label is Label.KILLED:
        return kmsg.classify(errno=None, kmsg=out.kmsg or out.console, killed_by=out.value,
                             **common)  # type: ignore[arg-type]
    if out.label is Label.FINIT:
        assert out.value is not None
        return kmsg.classify(errno=-out.value, kmsg=out.kmsg, **common)  # type: ignore[arg-type]
    raise InfraError(f"{u.path}: the agent's loader gave no result "
                     f"({' / '.join(out.console[-3:])})")


def host_verdict(u: ModuleUnit, lines: Sequence[str], seconds: float, *,
                 timed_out: bool = False, vm_died: bool = False) -> RuntimeResult:
    """The verdict when the agent could not give one: the guest stopped answering (hung) or
    qemu exited (a panic); whatever the console showed for the module is the evidence."""
    out = protocol.parse_load_output(lines)
    return kmsg.classify(name=u.name, path=u.path, errno=None, kmsg=out.kmsg + out.console,
                         seconds=seconds, params=u.params, origin=u.origin,
                         timed_out=timed_out, vm_died=vm_died)


@dataclass(frozen=True)
class BootRecord:
    seconds: float                 # qemu start to the agent's ready line (host wall)
    reason: str                    # "first boot", "after hung x", "after crashed x"
    restored: int = 0              # modules loaded again after the reboot
    restore_seconds: float = 0.0
    restore_failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunReport:
    results: tuple[RuntimeResult, ...]     # one per module, in load order
    boots: tuple[BootRecord, ...]
    release: str
    cmdline: str
    notes: tuple[str, ...] = ()
    seconds: float = 0.0                   # the whole run, host wall

    def by_name(self) -> dict[str, RuntimeResult]:
        return {r.name: r for r in self.results}


Progress = Callable[[RuntimeResult, int, int], None]    # (result, done, total)


class Runner:
    """Drives one run: boots as needed and has the agent load the plan, module by module.

    The guest goes through /bootverify/plan by itself (`bv_run LINE WATCHDOG`), printing a mark
    after each module, so no host round trip sits between two modules; the host times each
    module from the previous mark. After a hang or crash the VM is killed, a new one boots,
    loads again what the rest depends on (`bv_restore`) and goes on from the next line."""

    def __init__(self, ws: Workspace, plan: LoadPlan, *, config: VMConfig = VMConfig(),
                 module_timeout: float = DEFAULT_MODULE_TIMEOUT, progress: Progress | None = None,
                 console_log: TextIO | None = None) -> None:
        self.ws = ws
        self.plan = plan
        self.config = config
        self.module_timeout = module_timeout
        self.progress = progress
        self.console_log = console_log
        self.vm: VirtualMachine | None = None
        self.seq = 0
        self.results: dict[Key, RuntimeResult] = {}
        self._loaded_set: set[int] = set()
        self.boots: list[BootRecord] = []
        self.notes: list[str] = []
        self.next_boot_reason = "first boot"
        self.step_index = 0
        self.lines = len(plan.lines)
        self.attempted = 0             # the last plan line decided

    # -- VM lifecycle --

    def _console(self) -> Console:
        if self.vm is not None and self.vm.alive():
            assert self.vm.console is not None
            return self.vm.console
        self._drop_vm()
        label = boot_banner(len(self.boots) + 1, self.next_boot_reason)
        vm = VirtualMachine(self.ws, self.config, self.console_log, first_seq=self.seq + 1,
                            label=label)
        console = vm.start()
        self.vm = vm
        restored, seconds, failures = self._restore(console)
        assert vm.boot_seconds is not None
        self.boots.append(BootRecord(vm.boot_seconds, self.next_boot_reason, restored, seconds,
                                     failures))
        return console

    def _drop_vm(self) -> None:
        if self.vm is not None:
            self.vm.kill()
            self.seq = max(self.seq, self.vm.console.seq if self.vm.console else 0)
            self.vm = None

    def needed_lines(self) -> list[int]:
        """The loaded plan lines that the modules still to come depend on (modules.dep,
        transitively): what a new VM must load again before going on."""
        loaded = {st.key: st.line for st in self.plan.steps if st.line in self._loaded_set}
        needed: set[Key] = set()
        todo = [st.key for st in self.plan.steps
                if st.line is not None and st.line > self.attempted]
        while todo:
            for d in self.plan.units[todo.pop()].deps:
                if d not in needed:
                    needed.add(d)
                    todo.append(d)
        return sorted(line for k, line in loaded.items() if k in needed and line is not None)

    def _restore(self, console: Console) -> tuple[int, float, tuple[str, ...]]:
        """After a reboot, load again (quietly) what the modules still to come depend on.

        Not everything loaded before: that would make a run with many hangs or crashes
        quadratic (Debian's ~3,700 modules took ~20 ms each to load again after every hang);
        for the kernel's linking, which is what a later module's verdict depends on, its
        modules.dep dependencies are what matters."""
        lines = self.needed_lines()
        if not lines:
            return 0, 0.0, ()
        start = time.monotonic()
        chunks: list[list[int]] = [[]]
        for line in lines:
            if sum(len(str(x)) + 1 for x in chunks[-1]) > RESTORE_CHUNK:
                chunks.append([])
            chunks[-1].append(line)
        failures: list[str] = []
        for chunk in chunks:
            r = console.run(protocol.restore_command(int(self.module_timeout * 1000), chunk),
                            COMMAND_TIMEOUT + self.module_timeout
                            + RESTORE_PER_MODULE * len(chunk))
            failures += [self.plan.unit_at(x).name for x in protocol.restore_failures(r.lines)]
            if r.status:
                self.notes.append(f"restoring after a reboot stopped (status {r.status}): a "
                                  f"module that had loaded hung or crashed this time")
        if failures:
            self.notes.append(f"after a reboot {len(failures)} module(s) did not load again: "
                              f"{', '.join(failures)}")
        return len(lines), time.monotonic() - start, tuple(failures)

    # -- the walk --

    def run(self) -> None:
        if self.console_log is not None:
            for i, line in enumerate(self.plan.lines, 1):
                self.console_log.write(f"{PLAN_BANNER} {i}: {line}\n")
        line = 1
        if not self.lines:
            self._console()             # nothing to load: still boot, to the agent
        while line <= self.lines:
            line = self._batch(line)
        self._record_skips()

    def _record(self, key: Key, result: RuntimeResult) -> None:
        self.results[key] = result
        if self.progress is not None:
            self.progress(result, len(self.results), len(self.plan.steps))

    def _record_skips(self) -> None:
        """Record the not-loaded steps up to the next step that loads."""
        steps = self.plan.steps
        while self.step_index < len(steps) and steps[self.step_index].line is None:
            st = steps[self.step_index]
            u = self.plan.units[st.key]
            self._record(st.key, kmsg.skipped(name=u.name, path=u.path, origin=u.origin,
                                              reason=st.skip))
            self.step_index += 1

    def _record_load(self, line: int, result: RuntimeResult) -> None:
        self._record_skips()
        st = self.plan.steps[self.step_index]
        assert st.line == line, (st, line)
        failed = [d for d in self.plan.units[st.key].deps
                  if d in self.results and self.results[d].outcome is not Outcome.LOADED]
        if failed:
            why = ", ".join(f"{d[1]} ({self.results[d].outcome.value})" for d in failed)
            result = dataclasses.replace(result, reason="; ".join(
                r for r in (result.reason, f"dependency did not load: {why}") if r),
                failed_dependencies=tuple(d[1] for d in failed))
        self.step_index += 1
        self._record(st.key, result)

    def _batch(self, start: int) -> int:
        """Load from plan line `start` on until the end or a hang or crash; the next line."""
        console = self._console()
        seq = console.start(protocol.run_command(start, int(self.module_timeout * 1000)))
        line = start
        while True:
            u = self.plan.unit_at(line) if line <= self.lines else None
            try:
                mark = console.wait_mark(seq, self.module_timeout + HOST_MARGIN,
                                         grace=2 * self.module_timeout + HOST_MARGIN)
            except CommandTimeout as e:
                if u is None:
                    raise InfraError(f"the agent did not finish the plan: {e}") from None
                return self._failed(line, host_verdict(u, e.lines, e.seconds, timed_out=True),
                                    "hung")
            except GuestDied as e:
                if u is None:
                    raise InfraError(f"the guest died after the plan: {e}") from None
                return self._failed(line, host_verdict(u, e.lines, e.seconds, vm_died=True),
                                    "crashed")
            if mark.line is None:
                if line <= self.lines:
                    raise InfraError(f"the agent stopped at plan line {line} of {self.lines} "
                                     f"(status {mark.status}): {' / '.join(mark.lines[-3:])}")
                return line
            if mark.line != line or u is None:
                raise InfraError(f"the agent reported plan line {mark.line}, expected {line}")
            result = classify_output(u, protocol.parse_load_output(mark.lines, mark.result),
                                     mark.seconds)
            if result.outcome in (Outcome.HUNG, Outcome.CRASHED):
                return self._failed(line, result, result.outcome.value)
            if result.outcome is Outcome.LOADED:
                self._loaded_set.add(line)
            self.attempted = line
            self._record_load(line, result)
            line += 1

    def _failed(self, line: int, result: RuntimeResult, how: str) -> int:
        """A hang or crash: kill the VM (the next batch boots a new one), go on after it."""
        self._drop_vm()
        self.next_boot_reason = f"after {how} {result.name}"
        self.attempted = line
        self._record_load(line, result)
        return line + 1

    def close(self) -> None:
        self._drop_vm()

    def report(self, seconds: float) -> RunReport:
        g = self.ws.guest
        return RunReport(tuple(self.results.values()), tuple(self.boots), g.release, g.cmdline,
                         tuple(self.plan.notes) + tuple(self.notes), seconds)


PLAN_BANNER = "=== bootverify: plan"


def run_plan(guest: boot.GuestBoot, plan: LoadPlan, *, config: VMConfig = VMConfig(),
             module_timeout: float = DEFAULT_MODULE_TIMEOUT, progress: Progress | None = None,
             console_log: TextIO | None = None) -> RunReport:
    """Boot `guest` (whose overlay holds plan.lines) and load every module of `plan`; qemu and
    temp files never outlive it."""
    start = time.monotonic()
    with signals_as_interrupt(), Workspace(guest) as ws:
        runner = Runner(ws, plan, config=config, module_timeout=module_timeout,
                        progress=progress, console_log=console_log)
        try:
            runner.run()
        finally:
            runner.close()
        return runner.report(time.monotonic() - start)


def prepare_run(boot_img: Path | str, vendor_boot: Path | str | None, *,
                system_dlkm: Path | None = None, vendor_dlkm: Path | None = None,
                busybox: Path | None = None, nonce: str | None = None,
                extra_params: Sequence[str] = ()) -> tuple[boot.GuestBoot, LoadPlan]:
    """Read the images and make what qemu gets, with the load plan in the agent's overlay."""
    images = boot.read_images(boot_img, vendor_boot)
    dlkm = {k: Path(v) for k, v in (("system_dlkm", system_dlkm), ("vendor_dlkm", vendor_dlkm))
            if v is not None}
    h = boot.handoff(images)
    nonce = nonce or boot.new_nonce()
    plan = plan_for(h, boot.guest_cmdline(h, nonce, extra_params), dlkm)
    guest = boot.prepare(h, busybox=agent.read_busybox(busybox), dlkm_dirs=dlkm, nonce=nonce,
                         extra_params=extra_params, extra_entries=[agent.plan_entry(plan.lines)])
    return guest, plan


def run_images(boot_img: Path | str, vendor_boot: Path | str | None, *,
               system_dlkm: Path | None = None, vendor_dlkm: Path | None = None,
               busybox: Path | None = None, config: VMConfig = VMConfig(),
               module_timeout: float = DEFAULT_MODULE_TIMEOUT, progress: Progress | None = None,
               console_log: TextIO | None = None) -> RunReport:
    """The whole runtime half: read the images, boot, load everything, classify."""
    guest, plan = prepare_run(boot_img, vendor_boot, system_dlkm=system_dlkm,
                              vendor_dlkm=vendor_dlkm, busybox=busybox)
    return run_plan(guest, plan, config=config, module_timeout=module_timeout,
                    progress=progress, console_log=console_log)
