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

Per module the agent writes `bootverify: begin SEQ PATH` and `bootverify: end SEQ status N` into
/dev/kmsg around the finit_module, then prints `dmesg -c`: the lines between the two markers are
the module's kernel log, and the markers' timestamps give its duration in guest time.

Recovery: a module that does not answer within `module_timeout` is `hung`; one whose load oopses,
BUGs or panics is `crashed`. Either way the VM is killed; the next module boots a new one, which
first loads again (quietly, in one command) every module loaded before, so the kernel is in the
state the list had reached, minus the failed module. The run always gets through the list.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TextIO

from bootverify.errors import InputError
from bootverify.readers.modules import ModulesDir, find_modules, module_name, read_modules_dir
from bootverify.readers.ramdisk import CpioEntry
from bootverify.runtime import agent, boot, kmsg
from bootverify.runtime.console import CommandTimeout, Console, GuestDied, boot_banner
from bootverify.runtime.kmsg import Outcome, RuntimeResult
from bootverify.runtime.vm import VirtualMachine, VMConfig, Workspace, signals_as_interrupt

MODULE_BASE_DIR = "/lib/modules"
LOAD_FILE = "modules.load"
CONFIG_FILES = ("modules.load", "modules.dep", "modules.blocklist", "modules.options")
ORIGINS = ("vendor_ramdisk", "system_dlkm", "vendor_dlkm")
DEFAULT_MODULE_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0        # ordinary agent commands (restore is given more)
RESTORE_CHUNK = 3000          # characters per restore command line (the tty takes 4095)

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
class LoadPlan:
    units: Mapping[Key, ModuleUnit]
    order: tuple[Key, ...]         # the listed modules: each set's modules.load, sets in order
    sets: tuple[ModuleSet, ...]
    notes: tuple[str, ...] = ()

    def closure(self) -> tuple[Key, ...]:
        """Every unit the run will decide: the listed modules and all their dependencies."""
        seen: dict[Key, None] = {}

        def visit(k: Key) -> None:
            if k in seen:
                return
            seen[k] = None
            for d in self.units[k].deps:
                visit(d)

        for k in self.order:
            visit(k)
        return tuple(seen)


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
    with tempfile.TemporaryDirectory(prefix="bootverify-modcfg-") as tmp:
        for f in CONFIG_FILES:
            e = tree.get(f"{rel}/{f}")
            if e is not None and e.is_file:
                (Path(tmp) / f).write_bytes(e.data)
        config = read_modules_dir(Path(tmp))
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
    order: list[Key] = []
    for s in sets:
        for listed in s.config.load:
            k = r.unit(s.origin, module_name(listed), listed)
            if k not in order:
                order.append(k)
    return LoadPlan(dict(r.units), tuple(order), tuple(sets), tuple(r.notes))


def plan_for(handoff: boot.Handoff, guest: boot.GuestBoot,
             dlkm_dirs: Mapping[str, Path] | None = None) -> LoadPlan:
    """The plan for a run: vendor ramdisk modules, then system_dlkm, then vendor_dlkm."""
    sets = [ramdisk_module_set(handoff.ramdisk_tree(), guest.release)]
    for origin in ORIGINS[1:]:
        if dlkm_dirs and origin in dlkm_dirs:
            sets.append(dir_module_set(origin, dlkm_dirs[origin]))
    return make_plan(sets, guest.cmdline)


# --- running it ---

FINIT_LINE = re.compile(r"^(?P<call>finit_module|openat) (?P<ret>-?\d+)$")
KMSG_BEGIN = "bootverify: begin {seq} "
KMSG_END = "bootverify: end {seq} status "


@dataclass(frozen=True)
class LoadOutput:
    """One bv_load's console output, taken apart."""
    call: str | None               # finit_module / openat, None if the helper printed nothing
    ret: int | None                # its return value (0 or -errno)
    kmsg: tuple[str, ...]          # kernel log between this load's markers
    guest_seconds: float | None    # end marker time - begin marker time
    other: tuple[str, ...]         # console lines that are neither (interleaved kernel output)


def parse_load_output(lines: Sequence[str], seq: int) -> LoadOutput:
    """Split bv_load's output: the helper's line, then `dmesg -c` with this load's markers."""
    call = ret = None
    begin_at = end_at = None
    begin_t = end_t = None
    for i, line in enumerate(lines):
        text = kmsg.message_text(line)
        if begin_at is None and text.startswith(KMSG_BEGIN.format(seq=seq)):
            begin_at, begin_t = i, kmsg.timestamp(line)
        elif begin_at is not None and end_at is None and \
                text.startswith(KMSG_END.format(seq=seq)):
            end_at, end_t = i, kmsg.timestamp(line)
        elif call is None and begin_at is None and (m := FINIT_LINE.match(line.strip())):
            call, ret = m.group("call"), int(m.group("ret"))
    if begin_at is not None:
        stop = end_at if end_at is not None else len(lines)
        log = tuple(lines[begin_at + 1:stop])
        other = tuple(line for i, line in enumerate(lines)
                      if (i < begin_at or (end_at is not None and i > end_at))
                      and not FINIT_LINE.match(line.strip()))
    else:
        log = ()
        other = tuple(line for line in lines if not FINIT_LINE.match(line.strip()))
    seconds = end_t - begin_t if begin_t is not None and end_t is not None else None
    return LoadOutput(call, ret, log, seconds, other)


@dataclass(frozen=True)
class BootRecord:
    seconds: float                 # qemu start to the agent's ready line (host wall)
    reason: str                    # "first boot", "after hung x", "after crashed x"
    restored: int = 0              # modules loaded again after the reboot
    restore_seconds: float = 0.0
    restore_failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunReport:
    results: tuple[RuntimeResult, ...]     # one per module, in the order they were decided
    boots: tuple[BootRecord, ...]
    release: str
    cmdline: str
    notes: tuple[str, ...] = ()
    seconds: float = 0.0                   # the whole run, host wall

    def by_name(self) -> dict[str, RuntimeResult]:
        return {r.name: r for r in self.results}


Progress = Callable[[RuntimeResult, int, int], None]    # (result, done, total)


@dataclass
class _State:
    results: dict[Key, RuntimeResult] = field(default_factory=dict)
    loaded: list[Key] = field(default_factory=list)      # loaded in the current VM, in order
    boots: list[BootRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    next_boot_reason: str = "first boot"


class Runner:
    """Drives one run: boots as needed, loads every unit of the plan once."""

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
        self.state = _State()
        self.total = len(plan.closure())
        self.seq = 0

    # -- VM lifecycle --

    def _console(self) -> Console:
        if self.vm is not None and self.vm.alive():
            assert self.vm.console is not None
            return self.vm.console
        self._drop_vm()
        label = boot_banner(len(self.state.boots) + 1, self.state.next_boot_reason)
        vm = VirtualMachine(self.ws, self.config, self.console_log, first_seq=self.seq + 1,
                            label=label)
        console = vm.start()
        self.vm = vm
        restored, seconds, failures = self._restore(console)
        assert vm.boot_seconds is not None
        self.state.boots.append(BootRecord(vm.boot_seconds, self.state.next_boot_reason,
                                           restored, seconds, failures))
        return console

    def _drop_vm(self) -> None:
        if self.vm is not None:
            self.vm.kill()
            self.seq = max(self.seq, self.vm.console.seq if self.vm.console else 0)
            self.vm = None

    def _restore(self, console: Console) -> tuple[int, float, tuple[str, ...]]:
        """Load again what the previous VM had loaded, before going on."""
        units = [self.plan.units[k] for k in self.state.loaded]
        if not units:
            return 0, 0.0, ()
        start = time.monotonic()
        failures: list[str] = []
        chunk: list[str] = []
        for i, u in enumerate(units):
            chunk += [shlex.quote(u.path), shlex.quote(u.params)]
            if sum(len(c) + 1 for c in chunk) > RESTORE_CHUNK or i == len(units) - 1:
                r = console.run("bv_restore " + " ".join(chunk),
                                COMMAND_TIMEOUT + self.module_timeout * len(chunk) // 2)
                failures += [line.removeprefix("restore failed: ") for line in r.lines
                             if line.startswith("restore failed: ")]
                chunk = []
        if failures:
            self.state.notes.append(f"after a reboot {len(failures)} module(s) did not load "
                                    f"again: {', '.join(failures)}")
        return len(units), time.monotonic() - start, tuple(failures)

    # -- the walk --

    def run(self) -> None:
        for k in self.plan.order:
            self._ensure(k, ())
        for k in self.plan.closure():          # dependencies nothing needed any more
            self._ensure(k, ())

    def _record(self, key: Key, result: RuntimeResult) -> None:
        self.state.results[key] = result
        if self.progress is not None:
            self.progress(result, len(self.state.results), self.total)

    def _ensure(self, key: Key, stack: tuple[Key, ...]) -> bool:
        done = self.state.results.get(key)
        if done is not None:
            return done.outcome is Outcome.LOADED
        u = self.plan.units[key]
        if key in stack:
            self._record(key, kmsg.skipped(name=u.name, path=u.path, origin=u.origin,
                                           reason="dependency cycle in modules.dep"))
            return False
        if u.blocklisted:
            self._record(key, kmsg.skipped(name=u.name, path=u.path, origin=u.origin,
                                           reason="blocklisted (modules.blocklist)"))
            return False
        if not u.path:
            self._record(key, kmsg.skipped(name=u.name, path=u.path, origin=u.origin,
                                           reason=u.note or "not in the image"))
            return False
        failed = [d for d in u.deps if not self._ensure(d, stack + (key,))]
        result = self._load(u)
        if failed:
            why = ", ".join(f"{d[1]} ({self.state.results[d].outcome.value})"
                            if d in self.state.results else d[1] for d in failed)
            result = dataclasses.replace(result, reason="; ".join(
                r for r in (result.reason, f"dependency did not load: {why}") if r))
        self._record(key, result)
        return result.outcome is Outcome.LOADED

    def _load(self, u: ModuleUnit) -> RuntimeResult:
        console = self._console()
        command = (lambda seq: f"bv_load {seq} {shlex.quote(u.path)} {shlex.quote(u.params)}")
        try:
            r = console.run(command, self.module_timeout)
        except CommandTimeout as e:
            self._after_failure(f"after hung {u.name}")
            return kmsg.classify(name=u.name, path=u.path, errno=None, kmsg=e.lines,
                                 seconds=e.seconds, params=u.params, origin=u.origin,
                                 timed_out=True)
        except GuestDied as e:
            self._after_failure(f"after crashed {u.name}")
            return kmsg.classify(name=u.name, path=u.path, errno=None, kmsg=e.lines,
                                 seconds=e.seconds, params=u.params, origin=u.origin,
                                 vm_died=True)
        out = parse_load_output(r.lines, r.seq)
        seconds = out.guest_seconds if out.guest_seconds is not None else r.seconds
        log = out.kmsg if out.kmsg else out.other
        if out.call == "openat":
            assert out.ret is not None
            return kmsg.skipped(name=u.name, path=u.path, origin=u.origin,
                                reason=f"could not open module: {kmsg.strerror(-out.ret)}")
        # No `finit_module N` line: the helper died (an oops kills it: status 128 + signal).
        killed = r.status - 128 if out.call is None and r.status > 128 else None
        errno = -out.ret if out.ret is not None else (None if killed else r.status)
        if out.call is None:
            log = log + out.other       # whatever the console showed while it died
        result = kmsg.classify(name=u.name, path=u.path, errno=errno, kmsg=log, seconds=seconds,
                               params=u.params, origin=u.origin, killed_by=killed)
        if result.outcome is Outcome.CRASHED:
            self._after_failure(f"after crashed {u.name}")
        elif result.outcome is Outcome.LOADED:
            self.state.loaded.append(u.key)
        return result

    def _after_failure(self, reason: str) -> None:
        self._drop_vm()
        self.state.next_boot_reason = reason

    def close(self) -> None:
        self._drop_vm()

    def report(self, seconds: float) -> RunReport:
        g = self.ws.guest
        return RunReport(tuple(self.state.results.values()), tuple(self.state.boots), g.release,
                         g.cmdline, tuple(self.plan.notes) + tuple(self.state.notes), seconds)


def run_plan(guest: boot.GuestBoot, plan: LoadPlan, *, config: VMConfig = VMConfig(),
             module_timeout: float = DEFAULT_MODULE_TIMEOUT, progress: Progress | None = None,
             console_log: TextIO | None = None) -> RunReport:
    """Boot `guest` and load every module of `plan`; qemu and temp files never outlive it."""
    start = time.monotonic()
    with signals_as_interrupt(), Workspace(guest) as ws:
        runner = Runner(ws, plan, config=config, module_timeout=module_timeout,
                        progress=progress, console_log=console_log)
        try:
            runner.run()
        finally:
            runner.close()
        return runner.report(time.monotonic() - start)


def run_images(boot_img: Path | str, vendor_boot: Path | str | None, *,
               system_dlkm: Path | None = None, vendor_dlkm: Path | None = None,
               busybox: Path | None = None, config: VMConfig = VMConfig(),
               module_timeout: float = DEFAULT_MODULE_TIMEOUT, progress: Progress | None = None,
               console_log: TextIO | None = None) -> RunReport:
    """The whole runtime half: read the images, boot, load everything, classify."""
    images = boot.read_images(boot_img, vendor_boot)
    dlkm = {k: Path(v) for k, v in (("system_dlkm", system_dlkm), ("vendor_dlkm", vendor_dlkm))
            if v is not None}
    handoff, guest = boot.prepare(images, busybox=agent.read_busybox(busybox), dlkm_dirs=dlkm)
    plan = plan_for(handoff, guest, dlkm)
    return run_plan(guest, plan, config=config, module_timeout=module_timeout,
                    progress=progress, console_log=console_log)
