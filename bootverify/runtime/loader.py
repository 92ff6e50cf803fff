"""The runtime half, end to end: read the images, make the load plan and the guest, boot it in
qemu, load every module as Android would (bootverify/plan/), recover from hangs and crashes
(runner.py), classify every outcome (kmsg.py).

With several parts (plan/shards.py: `run --jobs N`, `--shard I/N`) each part gets its own
guest (its own plan file in the overlay, its own qemu) on a thread of its own; the results each
part owns are merged in plan order, the console logs one after another in part order (one
guest's as it goes)."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from bootverify.android import BootMode
from bootverify.errors import InfraError
from bootverify.plan import Key, LoadPlan, plan_for
from bootverify.plan.shards import Part, part_plan
from bootverify.readers.ramdisk import CpioEntry
from bootverify.runtime import agent, boot
from bootverify.runtime.console import plan_banner
from bootverify.runtime.kmsg import RuntimeResult
from bootverify.runtime.runner import DEFAULT_MODULE_TIMEOUT, Progress, Runner, RunReport
from bootverify.runtime.vm import Booter, VMConfig, Workspace, signals_as_interrupt

# What each guest may use when several run at once: the host's CPUs shared out (a guest's TCG
# vCPU is a host thread that keeps a core busy), memory as vm.guest_memory_mb sizes it, with
# this much left to the host.
HOST_MEMORY_RESERVE_MB = 1024


def run_plan(guest: boot.GuestBoot, plan: LoadPlan, *, config: VMConfig = VMConfig(),
             module_timeout: float = DEFAULT_MODULE_TIMEOUT, progress: Progress | None = None,
             console_log: TextIO | None = None,
             on_abort: Callable[[RunReport], None] | None = None) -> RunReport:
    """Boot `guest` (whose overlay holds plan.lines) and load every module of `plan`; qemu and
    temp files never outlive it. An infrastructure failure or an interrupt still propagates;
    `on_abort` gets what was known by then (the modules done so far), for partial reports."""
    start = time.monotonic()
    with signals_as_interrupt(), Workspace(guest) as ws:
        if console_log is not None:
            console_log.write(plan_banner(plan.lines))
        runner = Runner(plan, Booter(ws, config, console_log), module_timeout=module_timeout,
                        progress=progress)
        try:
            runner.run()
        except (InfraError, KeyboardInterrupt):
            if on_abort is not None:
                on_abort(runner.report(guest.release, guest.cmdline, time.monotonic() - start))
            raise
        finally:
            runner.close()
        return runner.report(guest.release, guest.cmdline, time.monotonic() - start)


@dataclass(frozen=True)
class Prepared:
    """The images read and planned: what every guest of a run is made from."""
    handoff: boot.Handoff
    cmdline: str
    nonce: str
    plan: LoadPlan
    dlkm: Mapping[str, Path]
    busybox: bytes | None          # None: not read yet (a plan only)
    tree: Mapping[str, CpioEntry]  # the ramdisks' files, read once

    def initrd_bytes(self) -> int:
        """The size of a guest's initrd (with an empty plan file: a plan adds little)."""
        return len(self.guest(replace(self.plan, steps=())).initrd)

    def guest(self, plan: LoadPlan) -> boot.GuestBoot:
        assert self.busybox is not None
        return boot.prepare(self.handoff, self.cmdline, self.nonce, busybox=self.busybox,
                            dlkm_dirs=self.dlkm, extra_entries=[agent.plan_entry(plan.lines)],
                            ramdisk_tree=self.tree)


def plan_images(boot_img: Path | str, vendor_boot: Path | str | None, *,
                system_dlkm: Path | None = None, vendor_dlkm: Path | None = None,
                busybox: Path | None = None, nonce: str | None = None,
                extra_params: Sequence[str] = (), boot_mode: BootMode | None = None,
                narrow: Callable[[LoadPlan], LoadPlan] | None = None,
                with_agent: bool = True) -> Prepared:
    """Read the images and make the load plan (`narrow`ed first when given: --only, --exclude,
    --rerun-failed), and read the agent's busybox (`with_agent`)."""
    images = boot.read_images(boot_img, vendor_boot)
    dlkm = {k: Path(v) for k, v in (("system_dlkm", system_dlkm), ("vendor_dlkm", vendor_dlkm))
            if v is not None}
    h = boot.handoff(images)
    nonce = nonce or boot.new_nonce()
    cmdline = boot.guest_cmdline(h, nonce, extra_params)
    tree = h.ramdisk_tree()
    plan = plan_for(tree, h.kernel.release, h.kernel.image, h.bootconfig, cmdline, dlkm,
                    boot_mode)
    if narrow is not None:
        plan = narrow(plan)
    return Prepared(h, cmdline, nonce, plan, dlkm,
                    agent.read_busybox(busybox) if with_agent else None, tree)


def prepare_run(boot_img: Path | str, vendor_boot: Path | str | None, *,
                system_dlkm: Path | None = None, vendor_dlkm: Path | None = None,
                busybox: Path | None = None, nonce: str | None = None,
                extra_params: Sequence[str] = (),
                boot_mode: BootMode | None = None,
                narrow: Callable[[LoadPlan], LoadPlan] | None = None,
                ) -> tuple[boot.GuestBoot, LoadPlan]:
    """Read the images and make what qemu gets, with the load plan in the agent's overlay."""
    p = plan_images(boot_img, vendor_boot, system_dlkm=system_dlkm, vendor_dlkm=vendor_dlkm,
                    busybox=busybox, nonce=nonce, extra_params=extra_params,
                    boot_mode=boot_mode, narrow=narrow)
    guest = p.guest(p.plan)
    return guest, replace(p.plan, notes=p.plan.notes + guest.notes)


def run_images(boot_img: Path | str, vendor_boot: Path | str | None, *,
               system_dlkm: Path | None = None, vendor_dlkm: Path | None = None,
               busybox: Path | None = None, config: VMConfig = VMConfig(),
               module_timeout: float = DEFAULT_MODULE_TIMEOUT, progress: Progress | None = None,
               console_log: TextIO | None = None,
               boot_mode: BootMode | None = None,
               narrow: Callable[[LoadPlan], LoadPlan] | None = None,
               on_abort: Callable[[RunReport], None] | None = None) -> RunReport:
    """The whole runtime half: read the images, boot, load everything, classify."""
    guest, plan = prepare_run(boot_img, vendor_boot, system_dlkm=system_dlkm,
                              vendor_dlkm=vendor_dlkm, busybox=busybox, boot_mode=boot_mode,
                              narrow=narrow)
    return run_plan(guest, plan, config=config, module_timeout=module_timeout,
                    progress=progress, console_log=console_log, on_abort=on_abort)


# --- several guests at once ---

def host_memory_mb() -> int:
    """MemAvailable of /proc/meminfo (0 if it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def default_jobs(guest_memory_mb: int) -> int:
    """The host's CPU count, capped by how many guests of this size its memory holds."""
    cpus = os.cpu_count() or 1
    fits = (host_memory_mb() - HOST_MEMORY_RESERVE_MB) // max(1, guest_memory_mb)
    return max(1, min(cpus, fits))


def guest_config(config: VMConfig, jobs: int) -> VMConfig:
    """Each of `jobs` guests gets an equal share of the host's CPUs (at least one vCPU): more
    vCPUs than cores in all makes TCG's threads take turns (measured in benchmarks/)."""
    if jobs <= 1:
        return config
    return replace(config, smp=max(1, (os.cpu_count() or 1) // jobs))


def run_parts(prepared: Prepared, parts: Sequence[Part], *, config: VMConfig = VMConfig(),
              module_timeout: float = DEFAULT_MODULE_TIMEOUT, progress: Progress | None = None,
              console_log: TextIO | None = None,
              on_abort: Callable[[RunReport], None] | None = None) -> RunReport:
    """Each non-empty part on its own guest, at once; the results of what each part owns in
    plan order. A part's failure (InfraError, Ctrl-C) stops the others; `on_abort` then gets
    what every guest knew by then (as run_plan's), for partial reports."""
    start = time.monotonic()
    plan = prepared.plan
    parts = [p for p in parts if p.groups] or list(parts[:1])     # nothing to load: boot still
    total = sum(len(p.owned) for p in parts)
    lock = threading.Lock()
    done = [0]
    runners: dict[int, Runner] = {}
    stopping = threading.Event()
    # One guest writes the console log as it goes; several write theirs aside, then one after
    # another.
    logs: list[TextIO | None] = ([console_log] if len(parts) == 1 else
                                 [io.StringIO() for _ in parts])

    def counted(owned: frozenset[Key]) -> Progress:
        def report(result: RuntimeResult, _done: int, _total: int) -> None:
            if progress is not None and (result.origin, result.name) in owned:
                with lock:
                    done[0] += 1
                    progress(result, done[0], total)
        return report

    def one(i: int, part: Part, sub: LoadPlan, guest: boot.GuestBoot) -> RunReport:
        with Workspace(guest) as ws:
            runner = Runner(sub, Booter(ws, config, logs[i]), module_timeout=module_timeout,
                            progress=counted(part.owned))
            with lock:
                runners[i] = runner
            if stopping.is_set():
                runner.stop()
            try:
                runner.run()
            finally:
                runner.close()
            return runner.report(guest.release, guest.cmdline, 0.0)

    def stop() -> None:
        stopping.set()
        with lock:
            for r in runners.values():
                r.stop()

    def write_logs() -> None:
        if console_log is not None and len(parts) > 1:
            for log in logs:
                assert isinstance(log, io.StringIO)
                console_log.write(log.getvalue())

    jobs = []
    for i, part in enumerate(parts):
        sub = part_plan(plan, part)
        guest = prepared.guest(sub)
        sub = replace(sub, notes=sub.notes + guest.notes)
        log = logs[i]
        if log is not None:
            log.write(f"=== bootverify: part {part.index + 1} ({len(part.owned)} modules) ===\n"
                      + plan_banner(sub.lines))
        jobs.append((i, part, sub, guest))
    with signals_as_interrupt(), ThreadPoolExecutor(max(1, len(jobs))) as pool:
        futures = [pool.submit(one, *job) for job in jobs]
        try:
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() for f in finished):
                stop()
            reports = [f.result() for f in futures]
        except (InfraError, KeyboardInterrupt):
            stop()
            wait(futures)
            write_logs()
            if on_abort is not None:
                with lock:
                    known = {i: r.report(prepared.handoff.kernel.release, prepared.cmdline, 0.0)
                             for i, r in runners.items()}
                on_abort(_joined(prepared, [(known[i], parts[i]) for i in sorted(known)],
                                 time.monotonic() - start))
            raise
        except BaseException:
            stop()
            raise
    write_logs()
    return _joined(prepared, list(zip(reports, parts, strict=True)), time.monotonic() - start)


def _joined(prepared: Prepared, reports: Sequence[tuple[RunReport, Part]],
            seconds: float) -> RunReport:
    """The guests' reports as one: what each part owns in plan order, the modules loaded only
    as another part's dependencies as context, each guest's outcomes with its entries."""
    plan = prepared.plan
    owned = frozenset().union(*(p.owned for _, p in reports))
    got: dict[Key, RuntimeResult] = {}
    context: dict[Key, RuntimeResult] = {}
    for rep, part in reports:
        for r in rep.results:
            key = (r.origin, r.name)
            if key in part.owned:
                got[key] = r
            elif key not in owned:
                context.setdefault(key, r)
    notes = tuple(dict.fromkeys(n for rep, _ in reports for n in rep.notes))
    return RunReport(tuple(got[s.key] for s in plan.steps if s.key in got),
                     tuple(b for rep, _ in reports for b in rep.boots),
                     prepared.handoff.kernel.release, prepared.cmdline, notes, seconds, plan,
                     tuple(context[s.key] for s in plan.steps if s.key in context),
                     tuple((part.entries, {(r.origin, r.name): r.outcome.value
                                           for r in rep.results})
                           for rep, part in reports))
