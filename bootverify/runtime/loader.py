"""The runtime half, end to end: read the images, make the load plan and the guest, boot it in
qemu, load every module as Android would (bootverify/plan/), recover from hangs and crashes
(runner.py), classify every outcome (kmsg.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from bootverify.android import BootMode
from bootverify.errors import InfraError
from bootverify.plan import LoadPlan, plan_for
from bootverify.runtime import agent, boot
from bootverify.runtime.console import plan_banner
from bootverify.runtime.runner import DEFAULT_MODULE_TIMEOUT, Progress, Runner, RunReport
from bootverify.runtime.vm import Booter, VMConfig, Workspace, signals_as_interrupt


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


def prepare_run(boot_img: Path | str, vendor_boot: Path | str | None, *,
                system_dlkm: Path | None = None, vendor_dlkm: Path | None = None,
                busybox: Path | None = None, nonce: str | None = None,
                extra_params: Sequence[str] = (),
                boot_mode: BootMode | None = None,
                narrow: Callable[[LoadPlan], LoadPlan] | None = None,
                ) -> tuple[boot.GuestBoot, LoadPlan]:
    """Read the images and make what qemu gets, with the load plan in the agent's overlay
    (`narrow`ed first when given: --only, --exclude, --rerun-failed)."""
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
    guest = boot.prepare(h, cmdline, nonce, busybox=agent.read_busybox(busybox), dlkm_dirs=dlkm,
                         extra_entries=[agent.plan_entry(plan.lines)], ramdisk_tree=tree)
    return guest, replace(plan, notes=plan.notes + guest.notes)


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
