"""The device verdict when a load crashes (verdict.py CRASH_STOPS, panic_or_kill_init): a panic
stops the device in any stage, an oops where the loader is init itself (first stage; second
stage on the side that stops, since bootverify does not read the device's init rc). Pure."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_plan import SIMPLE, outcomes, plan

from bootverify.android import Stage
from bootverify.plan import LoadPlan
from bootverify.runtime.kmsg import Crash, Outcome, classify
from bootverify.verdict import Boots, device_verdict, entry_crashes, entry_failures

PANIC = "[    2.100000] Kernel panic - not syncing: v: watchdog did not answer"
OOPS = ("[    2.100000] Unable to handle kernel NULL pointer dereference at virtual address 0",
        "[    2.100001] Internal error: Oops: 96000005 [#1] PREEMPT SMP")


def with_vendor_dlkm(tmp_path: Path, **plan_args: str) -> LoadPlan:
    """SIMPLE's first stage (a, blk blocklisted, b needs a, c) and vendor_dlkm's v."""
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "v.ko").write_bytes(b"")
    (tmp_path / "modules.dep").write_text("v.ko:\n")
    (tmp_path / "modules.load").write_text("v.ko\n")
    return plan(SIMPLE, dlkm={"vendor_dlkm": tmp_path}, **plan_args)


def key(p: LoadPlan, name: str) -> tuple[str, str]:
    return next(k for k in p.units if k[1] == name)


@pytest.mark.parametrize("lines,killed_by,crash", [
    ((PANIC,), None, Crash.PANIC),
    (OOPS, 11, Crash.OOPS),
    # panic_on_oops (GKI's CONFIG_PANIC_ON_OOPS=y): die() ends in panic()
    ((*OOPS, "[    2.2] Kernel panic - not syncing: Fatal exception"), None, Crash.PANIC),
    ((), 9, Crash.OOPS),                                # killed, the log says nothing more
])
def test_a_crashed_load_panicked_or_oopsed_by_its_kernel_log(lines, killed_by, crash):
    r = classify(name="v", path="/v.ko", errno=None, kmsg=lines, seconds=1.0,
                 killed_by=killed_by, vm_died=killed_by is None)
    assert (r.outcome, r.crash) == (Outcome.CRASHED, crash)
    assert classify(name="v", path="/v.ko", errno=0, kmsg=(), seconds=1.0).crash is None


def test_a_panic_in_second_stage_stops_the_device(tmp_path):
    p = with_vendor_dlkm(tmp_path)
    v = device_verdict(p, outcomes(p, blk="skipped", v="crashed"), {key(p, "v"): Crash.PANIC})
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.SECOND, "v")
    assert "second stage stops at v.ko (v: crashed)" in v.reason
    assert "kernel panicked" in v.reason and "bootloader" not in v.reason
    assert v.failures == ("vendor_dlkm: v: crashed",)
    # without the crash (a link error) second stage goes on: the device boots
    v = device_verdict(p, outcomes(p, blk="skipped", v="link-error"))
    assert (v.verdict, v.stage) == (Boots.BOOTS, None) and v.failed


def test_an_oops_in_second_stage_stops_it_on_the_side_that_stops(tmp_path):
    p = with_vendor_dlkm(tmp_path)
    v = device_verdict(p, outcomes(p, blk="skipped", v="crashed"), {key(p, "v"): Crash.OOPS})
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.SECOND, "v")
    assert "do_insmod" in v.reason and "does not read the device's init rc" in v.reason


@pytest.mark.parametrize("crash,words", [(Crash.PANIC, "kernel panicked"),
                                         (Crash.OOPS, "Attempted to kill init!")])
def test_a_crash_in_first_stage_is_worded_as_what_happened(tmp_path, crash, words):
    p = with_vendor_dlkm(tmp_path)
    v = device_verdict(p, outcomes(p, blk="skipped", c="crashed"), {key(p, "c"): crash})
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.FIRST, "c")
    assert words in v.reason
    assert "Failed to load kernel modules" not in v.reason and "bootloader" not in v.reason


def test_first_stage_stops_before_a_later_crash(tmp_path):
    p = with_vendor_dlkm(tmp_path)
    got = outcomes(p, a="init-error", blk="skipped", v="crashed")
    v = device_verdict(p, got, {key(p, "v"): Crash.PANIC})
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.FIRST, "a")
    assert "Failed to load kernel modules" in v.reason       # LOG(FATAL) came first


def test_first_stage_console_and_a_crash(tmp_path):
    # 2: first stage boots on past a: the panic in second stage stops the device
    p = with_vendor_dlkm(tmp_path / "2", cmdline="androidboot.first_stage_console=2")
    got = outcomes(p, a="init-error", blk="skipped", c="crashed", v="crashed")
    v = device_verdict(p, got, {key(p, "v"): Crash.PANIC})
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.SECOND, "v")
    # 1: first stage loads all, then its shell: a first-stage crash comes before the shell,
    # a second-stage one never happens
    p = with_vendor_dlkm(tmp_path / "1", cmdline="androidboot.first_stage_console=1")
    v = device_verdict(p, got, {key(p, "c"): Crash.OOPS, key(p, "v"): Crash.PANIC})
    assert (v.stage, v.stops_at) == (Stage.FIRST, "c") and "kill init" in v.reason
    v = device_verdict(p, got, {key(p, "v"): Crash.PANIC})
    assert (v.stage, v.stops_at) == (Stage.FIRST, "a") and "starting console" in v.reason


def test_a_crash_in_a_dependency_stops_at_the_entry_that_loads_it():
    """Only b is listed; its hard dep a panics: the device stops while loading b."""
    p = plan(SIMPLE | {"lib/modules/modules.load": "b.ko\n"})
    crashes = {key(p, "a"): Crash.PANIC}
    assert entry_crashes(p, crashes) == {0: Crash.PANIC}
    assert entry_crashes(p, crashes, entries=()) == {}
    assert entry_failures(p, outcomes(p, a="crashed")) == {0: "b needs a: crashed"}
    v = device_verdict(p, outcomes(p, a="crashed"), crashes)
    assert (v.verdict, v.stops_at) == (Boots.STOPS, "b") and "kernel panicked" in v.reason
