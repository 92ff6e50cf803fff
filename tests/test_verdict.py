"""The device verdict when a load's finit_module never returns (verdict.py CRASH_STOPS,
finit_never_returns): a panic stops the device in any stage, an oops where the loader is init
itself (first stage; second stage on the side that stops, since bootverify does not read the
device's init rc), a hang in any stage (init waits in finit_module, or for its `exec`). Pure."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_plan import PARALLEL, SIMPLE, WAVES, outcomes, plan
from test_shards import report

from bootverify.android import Stage
from bootverify.merge import merge
from bootverify.plan import LoadPlan
from bootverify.runtime.kmsg import Crash, Outcome, RuntimeResult, classify
from bootverify.verdict import (
    Boots,
    device_verdict,
    entry_crashes,
    entry_failures,
    runtime_crashes,
)

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


def hung(name: str, origin: str) -> RuntimeResult:
    """What the runtime records for a module whose init did not return within the timeout."""
    return classify(name=name, path=f"/{name}.ko", errno=None, seconds=8.0, origin=origin,
                    kmsg=(f"[    2.100000] {name}: waiting for firmware handshake",),
                    timed_out=True)


def test_a_hung_load_is_one_that_never_returned():
    r = hung("v", "vendor_dlkm")
    assert (r.outcome, r.crash) == (Outcome.HUNG, Crash.HANG)
    assert runtime_crashes([r]) == {("vendor_dlkm", "v"): Crash.HANG}


def test_a_hang_in_first_stage_blocks_first_stage_init_for_good(tmp_path):
    """No LOG(FATAL) and no reboot: first_stage_init never gets past the finit_module."""
    p = with_vendor_dlkm(tmp_path)
    v = device_verdict(p, outcomes(p, blk="skipped", c="hung"),
                       runtime_crashes([hung("c", "vendor_ramdisk")]))
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.FIRST, "c")
    assert v.reason.startswith("first stage stops at c.ko (c: hung): its init did not return")
    assert "first_stage_init waits in finit_module for good" in v.reason
    assert "LoadModulesParallel" in v.reason and "the device hangs in first stage" in v.reason
    assert "Failed to load kernel modules" not in v.reason and "bootloader" not in v.reason
    assert v.failures == ("vendor_ramdisk: c: hung",)


def test_a_hang_in_second_stage_stops_the_device_on_the_side_that_stops(tmp_path):
    """init's builtin insmod and an `exec` of modprobe both block init: the device hangs,
    although a failing second-stage load would not stop it."""
    p = with_vendor_dlkm(tmp_path)
    v = device_verdict(p, outcomes(p, blk="skipped", v="hung"),
                       runtime_crashes([hung("v", "vendor_dlkm")]))
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.SECOND, "v")
    assert v.reason.startswith("second stage stops at v.ko (v: hung): its init did not return")
    for words in ("init/builtins.cpp do_insmod()", "is_exec_service_running()",
                  "`service` or `exec_background`", "does not read the device's init rc",
                  "the device hangs in second stage"):
        assert words in v.reason, words
    assert v.failed and v.failures == ("vendor_dlkm: v: hung",)


def test_first_stage_console_and_a_hang(tmp_path):
    # 2: first stage boots on past a's failure, and hangs in second stage at v
    p = with_vendor_dlkm(tmp_path / "2", cmdline="androidboot.first_stage_console=2")
    got = outcomes(p, a="init-error", blk="skipped", c="hung", v="hung")
    both = runtime_crashes([hung("c", "vendor_ramdisk"), hung("v", "vendor_dlkm")])
    assert (device_verdict(p, got, both).stage, device_verdict(p, got, both).stops_at) == (
        Stage.FIRST, "c")
    v = device_verdict(p, got, runtime_crashes([hung("v", "vendor_dlkm")]))
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.SECOND, "v")
    # 1: the console shell comes after the whole list: a first-stage hang is reached first
    p = with_vendor_dlkm(tmp_path / "1", cmdline="androidboot.first_stage_console=1")
    v = device_verdict(p, got, both)
    assert (v.stage, v.stops_at) == (Stage.FIRST, "c") and "hangs in first stage" in v.reason
    # strict (no console): a's LOG(FATAL) comes before the hang
    p = with_vendor_dlkm(tmp_path / "0")
    v = device_verdict(p, got, both)
    assert v.stops_at == "a" and "Failed to load kernel modules" in v.reason


@pytest.mark.parametrize("files,bootconfig,hangs,panics", [
    # b needs a: a hangs before b (which panics alone) is loaded
    (SIMPLE | {"lib/modules/modules.load": "b.ko\n"}, "", "a", "b"),
    # parallel waves [s] [p] [e b a] [c] [d], entry 0 d: the wave with b hangs, d's never comes
    (WAVES, PARALLEL, "b", "d"),
])
def test_the_first_load_that_never_returns_decides(files, bootconfig, hangs, panics):
    p = plan(files, bootconfig=bootconfig)
    crashes = {key(p, hangs): Crash.HANG, key(p, panics): Crash.PANIC}
    assert entry_crashes(p, crashes) == {0: Crash.HANG}
    assert entry_crashes(p, {key(p, panics): Crash.PANIC}) == {0: Crash.PANIC}


def test_merge_stops_where_a_shard_saw_a_hang():
    """A shard's android_entries.crashes says "hang" for vendor_dlkm's d: the merged verdict
    stops in second stage there; the other shard, older, has no `crashes`."""
    one = report(1, 2, [("c", "loaded"), ("a", "loaded")], vendor_dlkm="d")
    two = report(2, 2, [("b", "loaded"), ("d", "hung")], failing={"3": "d: hung"},
                 crashes={"3": "hang"}, vendor_dlkm="d")
    m = merge([("1.json", one), ("2.json", two)])
    android = m.doc["android"]
    assert (android["verdict"], android["stage"], android["stops_at"]) == (
        "stops", "second-stage", "d")
    assert "the device hangs in second stage" in android["reason"]
    assert m.doc["android_entries"]["crashes"] == {"3": "hang"} and m.failed
    # without the shard's crashes (a report from before hangs stopped the device) it boots
    two["android_entries"].pop("crashes")
    android = merge([("1.json", one), ("2.json", two)]).doc["android"]
    assert (android["verdict"], android["stops_at"]) == ("boots", None)
