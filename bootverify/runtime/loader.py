"""Load the plan (plan.py) one module at a time, through the agent's console.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bootverify.errors import InfraError
from bootverify.runtime import agent, boot, kmsg, protocol
from bootverify.runtime.console import CommandTimeout, Console, GuestDied, boot_banner
from bootverify.runtime.kmsg import Outcome, RuntimeResult
from bootverify.runtime.plan import Key, LoadPlan, ModuleUnit, plan_for
from bootverify.runtime.protocol import Label, LoadOutput
from bootverify.runtime.vm import VirtualMachine, VMConfig, Workspace, signals_as_interrupt

DEFAULT_MODULE_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0        # ordinary agent commands (restore is given more)
RESTORE_CHUNK = 3000          # characters per restore command line (the tty takes 4095)
RESTORE_PER_MODULE = 1.0      # seconds allowed per module loaded again after a reboot


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

    def _restore(self, console: Console) -> tuple[int, float, tuple[str, ...]]:
        """After a reboot, load again (quietly) what the modules still to come depend on.

        Not everything loaded before: that would make a run with many hangs or crashes
        quadratic (Debian's ~3,700 modules took ~20 ms each to load again after every hang);
        for the kernel's linking, which is what a later module's verdict depends on, its
        modules.dep dependencies are what matters."""
        lines = self.plan.needed_from(self.attempted + 1, self._loaded_set)
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
