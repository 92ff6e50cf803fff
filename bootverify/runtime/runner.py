"""Run a load plan: boot guests as needed and have the agent load the plan, module by module.

The load order is fixed before the boot (every module is tried whatever happened to its
dependencies), so the guest walks /bootverify/plan by itself (`bv_run`), one finit_module at a
time (or a wave of them at once, with parallel loading: `wave_outputs` takes its records
apart), printing for each module the kernel log records its load wrote (read from /dev/kmsg by
finit from a position taken just before the load: exactly that load's lines) and its mark (the
result: return value, guest microseconds). The host reads the marks as they come and times each
module from the previous mark; no host round trip sits between modules.

Recovery: a module whose init has not returned after `module_timeout` is `hung` (finit's
watchdog prints what the module logged so far; the host gives up a little later if even that
does not come); one whose load oopses, BUGs or panics is `crashed`. Either way the guest is
killed, a new one boots, loads again (quietly, in as few commands as fit a console line) the
loaded modules that the modules still to come depend on, and goes on from the next line. The
run always gets through the list.

A wave of parallel loading whose guest dies as a whole (a panic, or a hang that even finit's
watchdog cannot report) leaves its modules without marks, and which of them did it is not
known: the next guest loads them again one at a time (`Rerun`, in the position), so that the
one that kills the guest is found and every other gets its own outcome, then goes on with the
plan's waves. Their results say so (on the device the wave loads at once). If none of them
kills the guest alone, the crash needs them together (a race the device can hit as well): those
that loaded alone get the wave's crash as their outcome.

Each `bv_run` is one boot of a guest. Guests come from a `BootGuest` callable given to the
`Runner` (vm.Booter for qemu; tests give a scripted stand-in), and where the run stands between
two modules is one `Position`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from bootverify.errors import InfraError
from bootverify.plan.model import Disposition, Key, LoadPlan, ModuleUnit
from bootverify.runtime import kmsg, protocol
from bootverify.runtime.console import CommandTimeout, Console, GuestDied, Mark, boot_banner
from bootverify.runtime.kmsg import Outcome, RuntimeResult
from bootverify.runtime.protocol import Label, LoadOutput

DEFAULT_MODULE_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0        # ordinary agent commands (restore is given more)
RESTORE_CHUNK = 3000          # characters per restore command line (the tty takes 4095)
RESTORE_PER_MODULE = 1.0      # seconds allowed per module loaded again after a reboot
HOST_MARGIN = 5.0             # the host waits this much longer than the guest's watchdog
# The outcome of a module the plan does not load.
DMESG_TEXT = re.compile(r"^\[\s*\d+\.\d+\] ")        # protocol.dmesg_line's time stamp
NOT_LOADED = {Disposition.BLOCKLISTED: Outcome.SKIPPED, Disposition.NOT_FOUND: Outcome.NOT_FOUND,
              Disposition.UNLISTED: Outcome.UNLISTED}


class Guest(Protocol):
    """A booted guest whose agent is ready (vm.VirtualMachine)."""
    console: Console | None
    boot_seconds: float | None     # qemu start to the agent's ready line (host wall)

    def kill(self) -> None: ...


class BootGuest(Protocol):
    """Boots a new guest: its console numbers commands from `first_seq` on, and `label` goes
    into the console log before the boot's output."""

    def __call__(self, *, first_seq: int, label: str) -> Guest: ...


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
    plan: LoadPlan | None = None           # what was run
    # With parts (loader.run_parts): the results of modules this run loaded only as another
    # shard's dependencies (context for the cross-check, not reported), and per guest the
    # load-list entries it owned with every outcome it saw (for the device verdict).
    context: tuple[RuntimeResult, ...] = ()
    guests: tuple[tuple[frozenset[int], Mapping[Key, str]], ...] = ()

    def by_name(self) -> dict[str, RuntimeResult]:
        return {r.name: r for r in self.results}


@dataclass(frozen=True)
class Rerun:
    """The modules of a wave that were loading at once when the whole guest died (no mark
    came for them), loaded again one at a time."""
    wave: tuple[int, ...]          # the wave's plan lines
    lines: tuple[int, ...]         # those loaded again, one at a time (a tail of `wave`)
    death: Outcome                 # what the guest did during the wave: CRASHED or HUNG
    evidence: tuple[str, ...]      # the console then: the wave's crash
    seconds: float                 # host wall time from the wave's start to its end

    def reason(self, plan: LoadPlan) -> str:
        names = ", ".join(plan.unit_at(x).name for x in self.wave)
        how = "crashed" if self.death is Outcome.CRASHED else "hung"
        return (f"on the device it loads at once with its wave ({names}); the guest {how} "
                f"during that wave, so it was loaded again one at a time")


@dataclass(frozen=True)
class Position:
    """Where a run stands between two modules."""
    line: int = 1                          # the next plan line to load
    step: int = 0                          # the next of plan.steps to get its verdict
    loaded: frozenset[int] = frozenset()   # the plan lines that loaded, in any boot
    seq: int = 0                           # the last command number used: they grow across
                                           # boots, so a late line cannot end a later command
    boot_reason: str = "first boot"        # why the next guest boots
    rerun: Rerun | None = None             # a wave being loaded again one at a time


Progress = Callable[[RuntimeResult, int, int], None]    # (result, done, total)


def classify_output(u: ModuleUnit, out: LoadOutput, host_seconds: float) -> RuntimeResult:
    """One module's verdict from what the agent printed for it."""
    seconds = out.seconds if out.seconds is not None else host_seconds
    common = dict(name=u.name, path=u.path, seconds=seconds, params=u.params, origin=u.origin,
                  own_name=u.own_name)
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
                         seconds=seconds, params=u.params, origin=u.origin, own_name=u.own_name,
                         timed_out=timed_out, vm_died=vm_died)


def wave_outputs(units: Sequence[ModuleUnit], outputs: Sequence[LoadOutput]) -> list[LoadOutput]:
    """A wave's output taken apart per module. finit prints the records of the whole wave
    before its first mark; without the kernel's caller ids (CONFIG_PRINTK_CALLER is off in
    Debian's and the samples' kernels) a record belongs to the module it names first
    (`NAME: ...`, as the kernel's loader and pr_fmt write them). The records naming no module
    of the wave, and the console lines, are evidence that cannot be told apart: they go to the
    modules whose loader was killed or timed out (an oops, a hang), else to each module that
    did not load."""
    names = {u.name: i for i, u in enumerate(units)}
    own: list[list[str]] = [[] for _ in units]
    shared = []
    for r in (r for out in outputs for r in out.kmsg):
        text = DMESG_TEXT.sub("", r, count=1)
        i = names.get(text.split(":", 1)[0]) if ":" in text else None
        (own[i] if i is not None else shared).append(r)
    console = tuple(line for out in outputs for line in out.console)
    stopped = [out.label in (Label.KILLED, Label.TIMEOUT) for out in outputs]
    gets = stopped if any(stopped) else [not loaded(out) for out in outputs]
    return [replace(out, kmsg=tuple(mine) + (tuple(shared) if g else ()),
                    console=console if g else ())
            for out, mine, g in zip(outputs, own, gets, strict=True)]


def loaded(out: LoadOutput) -> bool:
    return out.label is Label.FINIT and out.value in (0, -kmsg.EEXIST)


class Runner:
    """Drives one run of `plan` through guests from `boot_guest`; `run()` once, then `close()`
    (kills the last guest) and `report()`."""

    def __init__(self, plan: LoadPlan, boot_guest: BootGuest, *,
                 module_timeout: float = DEFAULT_MODULE_TIMEOUT,
                 progress: Progress | None = None) -> None:
        self.plan = plan
        self.boot_guest = boot_guest
        self.module_timeout = module_timeout
        self.progress = progress
        self.position = Position()
        self.guest: Guest | None = None
        self.results: dict[Key, RuntimeResult] = {}
        self.boots: list[BootRecord] = []
        self.notes: list[str] = []
        self.stopped = False

    @property
    def _watchdog_ms(self) -> int:
        return int(self.module_timeout * 1000)

    def run(self) -> None:
        if not self.plan.lines:
            self.boot_and_restore()         # nothing to load: still boot, to the agent
        while self.position.line <= len(self.plan.lines):
            self._batch()
        self._record_skips()

    def close(self) -> None:
        self._kill_guest()

    def stop(self) -> None:
        """From another thread (another guest of the run failed, Ctrl-C): kill the guest and
        boot no other; run() then ends with InfraError."""
        self.stopped = True
        guest = self.guest
        if guest is not None:
            guest.kill()

    def report(self, release: str, cmdline: str, seconds: float) -> RunReport:
        return RunReport(tuple(self.results.values()), tuple(self.boots), release, cmdline,
                         tuple(self.plan.notes) + tuple(self.notes), seconds, self.plan)

    # -- guests --

    def boot_and_restore(self) -> Console:
        """Boot a new guest and load again what the modules still to come depend on. A guest
        that hangs or dies while doing so is recorded, and the next one boots without
        restoring (the modules after it then miss those dependencies, which their verdicts
        show): a module that hangs every time cannot stop the run."""
        guest = self._boot()
        assert guest.console is not None and guest.boot_seconds is not None
        try:
            restored, seconds, failures = self._restore(guest.console)
        except (CommandTimeout, GuestDied) as e:
            how = "hung" if isinstance(e, CommandTimeout) else "died"
            self.notes.append(f"the guest {how} while modules were loaded again after a reboot "
                              f"({e}); the next guest boots without them")
            self.boots.append(BootRecord(guest.boot_seconds, self.position.boot_reason, 0,
                                         e.seconds, (f"restore {how}",)))
            self.position = replace(self.position, boot_reason=f"after the restore {how}")
            guest = self._boot()
            assert guest.console is not None and guest.boot_seconds is not None
            restored, seconds, failures = 0, 0.0, ()
        self.boots.append(BootRecord(guest.boot_seconds, self.position.boot_reason, restored,
                                     seconds, failures))
        return guest.console

    def _boot(self) -> Guest:
        self._kill_guest()
        if self.stopped:
            raise InfraError("stopped: another guest of the run failed")
        pos = self.position
        self.guest = self.boot_guest(first_seq=pos.seq + 1,
                                     label=boot_banner(len(self.boots) + 1, pos.boot_reason))
        return self.guest

    def _kill_guest(self) -> None:
        if self.guest is not None:
            self.guest.kill()
            if self.guest.console is not None:
                self.position = replace(self.position,
                                        seq=max(self.position.seq, self.guest.console.seq))
            self.guest = None

    def _restore(self, console: Console) -> tuple[int, float, tuple[str, ...]]:
        """Load again (quietly) what the modules still to come depend on.

        Not everything loaded before: that would make a run with many hangs or crashes
        quadratic (Debian's ~3,700 modules took ~20 ms each to load again after every hang);
        for the kernel's linking, which is what a later module's verdict depends on, its
        modules.dep dependencies are what matters."""
        lines = self.plan.needed_from(self.position.line, self.position.loaded)
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
            r = console.run(protocol.restore_command(self._watchdog_ms, chunk),
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

    def _batch(self) -> None:
        """Boot, then load from the position's line on until the end or a hang or crash."""
        console = self.boot_and_restore()
        rerun = self.position.rerun
        seq = console.start(protocol.run_command(self.position.line,
                                                 rerun.lines[-1] if rerun else 0,
                                                 self._watchdog_ms))
        total = len(self.plan.lines)
        while self.position.line <= total:
            if not self._wave(console, seq):
                return
        try:
            mark = console.wait_mark(seq, self.module_timeout + HOST_MARGIN,
                                     grace=2 * self.module_timeout + HOST_MARGIN)
        except CommandTimeout as e:
            raise InfraError(f"the agent did not finish the plan: {e}") from None
        except GuestDied as e:
            raise InfraError(f"the guest died after the plan: {e}") from None
        if mark.line is not None:
            raise InfraError(f"the agent reported plan line {mark.line} after the last")

    def _wave(self, console: Console, seq: int) -> bool:
        """The marks of the wave at the position's line (a line loaded alone is a wave of one),
        recorded; False after a hang or crash (the guest is killed)."""
        wave = self._wave_at(self.position.line)
        marks: list[Mark] = []
        for line in wave:
            try:
                mark = console.wait_mark(seq, self.module_timeout + HOST_MARGIN,
                                         grace=2 * self.module_timeout + HOST_MARGIN)
            except (CommandTimeout, GuestDied) as e:
                self._guest_stopped(wave, marks, e)
                return False
            if mark.line is None:
                raise InfraError(f"the agent stopped at plan line {line} of "
                                 f"{len(self.plan.lines)} (status {mark.status}): "
                                 f"{' / '.join(mark.lines[-3:])}")
            if mark.line != line:
                raise InfraError(f"the agent reported plan line {mark.line}, expected {line}")
            marks.append(mark)
        return self._record_wave(wave, marks, [])

    def _wave_at(self, line: int) -> tuple[int, ...]:
        """The plan lines that load together with `line`: its wave, or itself alone while a
        wave is loaded again one at a time."""
        rerun = self.position.rerun
        return (line,) if rerun is not None and line in rerun.lines else self.plan.wave_of[line]

    def _guest_stopped(self, wave: Sequence[int], marks: Sequence[Mark],
                       e: CommandTimeout | GuestDied) -> None:
        """The whole guest hung or died during `wave`, before the marks of its modules from
        len(marks) on. A module loading alone gets the host's verdict; the modules of a wave
        loading at once are loaded again one at a time by the next guest (`Rerun`)."""
        hung = isinstance(e, CommandTimeout)
        if len(wave) == 1:
            self._record_wave(wave, marks, [host_verdict(self.plan.unit_at(wave[0]), e.lines,
                                                         e.seconds, timed_out=hung,
                                                         vm_died=not hung)])
            return
        self._record_wave(wave, marks, [])
        left = tuple(wave[len(marks):])
        rerun = Rerun(tuple(wave), left, Outcome.HUNG if hung else Outcome.CRASHED, e.lines,
                      e.seconds)
        names = ", ".join(self.plan.unit_at(x).name for x in left)
        how = "hung" if hung else "died"
        self._kill_guest()
        self.notes.append(f"the guest {how} while a wave of {len(wave)} modules loaded at once; "
                          f"{names} were loaded again one at a time, each for its own outcome "
                          f"(on the device they load at once)")
        self.position = replace(self.position, rerun=rerun,
                                boot_reason=f"after the guest {how} in the wave of {names}")

    def _record_wave(self, wave: Sequence[int], marks: Sequence[Mark],
                     host: Sequence[RuntimeResult]) -> bool:
        """Record a wave's results: from its marks, then the host's verdicts for the modules
        that got none. False (the guest killed, the next batch boots anew) after a hang or
        crash."""
        units = [self.plan.unit_at(x) for x in wave[:len(marks)]]
        outputs = [protocol.parse_load_output(m.lines, m.result) for m in marks]
        if len(wave) > 1:
            outputs = wave_outputs(units, outputs)
        results = [classify_output(u, out, m.seconds)
                   for u, out, m in zip(units, outputs, marks, strict=True)] + list(host)
        stopped = [r for r in results if r.outcome in (Outcome.HUNG, Outcome.CRASHED)]
        if stopped:
            self._kill_guest()
            self.position = replace(self.position, boot_reason=f"after {stopped[0].outcome.value} "
                                                               f"{stopped[0].name}")
        for r in results:
            self._record_load(r)
        return not stopped

    def _record(self, key: Key, result: RuntimeResult) -> None:
        self.results[key] = result
        self.position = replace(self.position, step=self.position.step + 1)
        if self.progress is not None:
            self.progress(result, len(self.results), len(self.plan.steps))

    def _record_skips(self) -> None:
        """Record the not-loaded steps up to the next step that loads."""
        steps = self.plan.steps
        while self.position.step < len(steps) and steps[self.position.step].line is None:
            st = steps[self.position.step]
            u = self.plan.units[st.key]
            self._record(st.key, kmsg.not_loaded(NOT_LOADED[u.disposition], name=u.name,
                                                 path=u.path, origin=u.origin, reason=st.skip))

    def _record_load(self, result: RuntimeResult) -> None:
        """Record the verdict of the position's plan line and move to the next line."""
        self._record_skips()
        line = self.position.line
        st = self.plan.steps[self.position.step]
        assert st.line == line, (st, line)
        failed = [d for d in self.plan.units[st.key].deps
                  if d in self.results and self.results[d].outcome is not Outcome.LOADED]
        if failed:
            why = ", ".join(f"{d[1]} ({self.results[d].outcome.value})" for d in failed)
            result = replace(result, reason="; ".join(
                r for r in (result.reason, f"dependency did not load: {why}") if r),
                failed_dependencies=tuple(d[1] for d in failed))
        rerun = self.position.rerun
        if rerun is not None and line in rerun.lines:
            result = replace(result, reason="; ".join(
                r for r in (result.reason, rerun.reason(self.plan)) if r))
        loaded = {line} if result.outcome is Outcome.LOADED else set()
        self.position = replace(self.position, line=line + 1,
                                loaded=self.position.loaded | loaded)
        self._record(st.key, result)
        if rerun is not None and line == rerun.lines[-1]:
            self._end_rerun(rerun)

    def _end_rerun(self, rerun: Rerun) -> None:
        """The wave's modules have been loaded again one at a time. If none of them hung or
        crashed the guest alone, the wave's death needs them at once (on the device too): the
        ones that loaded alone get it as their outcome, its console lines as their log."""
        self.position = replace(self.position, rerun=None)
        keys = [self.plan.unit_at(x).key for x in rerun.lines]
        if any(self.results[k].outcome in (Outcome.HUNG, Outcome.CRASHED) for k in keys):
            return
        alone = [k for k in keys if self.results[k].outcome is Outcome.LOADED]
        how = "crashed" if rerun.death is Outcome.CRASHED else "hung"
        self.notes.append(f"no module of the wave of {len(rerun.wave)} whose guest {how} did so "
                          f"alone: it takes them at once; {', '.join(k[1] for k in alone)} "
                          f"loaded alone and get the wave's outcome")
        for k in alone:
            wave = host_verdict(self.plan.units[k], rerun.evidence, rerun.seconds,
                                timed_out=rerun.death is Outcome.HUNG,
                                vm_died=rerun.death is Outcome.CRASHED)
            self.results[k] = replace(wave, reason="; ".join(
                r for r in (wave.reason, f"it loaded alone, but the guest {how} while its wave "
                            f"loaded at once and no module of the wave did so alone: the "
                            f"crash takes them together") if r),
                failed_dependencies=self.results[k].failed_dependencies)
            if self.progress is not None:
                self.progress(self.results[k], len(self.results), len(self.plan.steps))
