"""`bootverify run` says what the device would do (issue 9's table, rows 1 to 5 and 7): the
sample GKI boot.img with vendor_kernel_boot images repacked from the sample's, each with one of
the packaging mistakes real device builds make. Only well-behaved sample modules are shipped, so
each run is one short boot."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from bootverify.runtime.console import PLAN_BANNER
from packing import (
    mkbootimg_vendor_modules,
    repack_vendor_modules,
    run_bootverify,
    sample_modules,
)

pytestmark = [pytest.mark.qemu, pytest.mark.images]

RUN_TIMEOUT = 120
SAMPLE_BOOTCONFIG = b"androidboot.hardware = bvsample\n"


@dataclass(frozen=True)
class Run:
    rc: int
    stdout: str
    stderr: str
    report: dict
    junit: ET.Element

    @property
    def android(self) -> dict:
        return self.report["android"]

    def outcomes(self) -> dict[str, str]:
        return {m["name"]: m["runtime"]["outcome"] for m in self.report["modules"]}


def run_device(images: Path, out: Path, modules: dict[str, bytes], *extra: str,
               bootconfig: bytes = SAMPLE_BOOTCONFIG, aosp: bool = False) -> Run:
    """`run` on the sample boot.img and a vendor_kernel_boot.img of `modules`, written by
    bootverify, or by AOSP's mkbootimg (the boot.img too) when `aosp`."""
    out.mkdir(parents=True, exist_ok=True)
    vendor = (mkbootimg_vendor_modules if aosp else repack_vendor_modules)(
        images / "vendor_kernel_boot.img", out / "vendor_kernel_boot.img", modules, bootconfig)
    boot = images / ("boot-v4-mkbootimg.img" if aosp else "boot.img")
    rc, stdout, stderr = run_bootverify([
        "run", "--boot", boot, "--vendor-kernel-boot", vendor,
        "--symvers", images / "vmlinux.symvers", "--kmi-symbol-list", images / "kmi_symbol_list",
        "--module-timeout", "8", "--output", out, *extra], RUN_TIMEOUT)
    assert rc in (0, 1), stderr
    return Run(rc, stdout, stderr, json.loads((out / "report.json").read_text()),
               ET.parse(out / "junit.xml").getroot())


@pytest.fixture(scope="module")
def kos(sample_images: Path) -> dict[str, bytes]:
    """The sample's vendor_core, vendor_sensor (needs vendor_core) and vendor_backlight (fails
    to link on the trimmed kernel: msleep)."""
    files = sample_modules(sample_images / "vendor_kernel_boot.img")
    return {n: files[f"{n}.ko"] for n in ("vendor_core", "vendor_sensor", "vendor_backlight")}


def ko(kos: dict[str, bytes], *names: str) -> dict[str, bytes]:
    return {f"{n}.ko": kos[n] for n in names}


DEP = b"vendor_core.ko:\nvendor_sensor.ko: vendor_core.ko\nvendor_backlight.ko:\n"


def boot_testcase(run: Run) -> ET.Element:
    case = run.junit.find("testcase[@name='android-boot']")
    assert case is not None
    return case


@pytest.mark.timeout(RUN_TIMEOUT + 300)       # a cold sample build may come first
def test_row1_ko_and_no_modules_load(sample_images, kos, tmp_path):
    run = run_device(sample_images, tmp_path, ko(kos, "vendor_core", "vendor_sensor")
                     | {"modules.dep": DEP})
    assert run.rc == 1
    assert run.android["verdict"] == "stops" and run.android["stage"] == "first-stage"
    assert run.android["stops_at"] is None and "no modules.load" in run.android["reason"]
    assert run.outcomes() == {"vendor_core": "unlisted", "vendor_sensor": "unlisted"}
    assert run.stdout.startswith("ANDROID: STOPS in first-stage: first stage loads nothing")
    assert boot_testcase(run).find("failure") is not None


@pytest.mark.timeout(RUN_TIMEOUT)
def test_row2_modules_load_names_a_missing_ko(sample_images, kos, tmp_path):
    run = run_device(sample_images, tmp_path, ko(kos, "vendor_core", "vendor_sensor") | {
        "modules.dep": DEP + b"vendor_wifi.ko:\n",
        "modules.load": b"vendor_core.ko\nvendor_wifi.ko\nvendor_sensor.ko\n"})
    assert run.rc == 1
    assert (run.android["verdict"], run.android["stage"], run.android["stops_at"]) == (
        "stops", "first-stage", "vendor_wifi")
    # bootverify goes on after where the device stops
    assert run.outcomes() == {"vendor_core": "loaded", "vendor_wifi": "not-found",
                              "vendor_sensor": "loaded"}
    case = run.junit.find("testcase[@name='vendor_wifi']")
    assert case is not None and case.find("failure") is not None


@pytest.mark.timeout(RUN_TIMEOUT)
def test_row3_ko_in_no_list_is_reported_with_its_static_verdict(sample_images, kos, tmp_path):
    run = run_device(sample_images, tmp_path,
                     ko(kos, "vendor_core", "vendor_sensor", "vendor_backlight") | {
                         "modules.dep": DEP,
                         "modules.load": b"vendor_core.ko\nvendor_sensor.ko\n"})
    assert run.rc == 0, run.stdout + run.stderr    # never loaded: the device boots
    assert run.android["verdict"] == "boots"
    assert run.outcomes() == {"vendor_core": "loaded", "vendor_sensor": "loaded",
                              "vendor_backlight": "unlisted"}
    backlight = next(m for m in run.report["modules"] if m["name"] == "vendor_backlight")
    assert backlight["static"]["verdict"] == "fail" and "static: fail" in backlight["why"]
    assert run.stdout.startswith("ANDROID: BOOTS: first stage loads all 2 listed module(s)")


@pytest.mark.timeout(RUN_TIMEOUT)
def test_row4_no_modules_dep(sample_images, kos, tmp_path):
    run = run_device(sample_images, tmp_path, ko(kos, "vendor_core", "vendor_sensor") | {
        "modules.load": b"vendor_core.ko\nvendor_sensor.ko\n"})
    assert run.rc == 1
    assert (run.android["verdict"], run.android["stops_at"]) == ("stops", "vendor_core")
    assert "not in /lib/modules/modules.dep" in run.android["reason"]
    assert run.outcomes() == {"vendor_core": "not-found", "vendor_sensor": "not-found"}


@pytest.mark.timeout(RUN_TIMEOUT)
def test_row5_first_stage_dependency_only_in_vendor_dlkm(sample_images, kos, tmp_path):
    """vendor_sensor is first stage; vendor_core, whose symbols it needs, only vendor_dlkm has:
    the device stops, and `check` (the same command line without the runtime options) says so
    before any boot."""
    vendor_dlkm = tmp_path / "vendor_dlkm"
    vendor_dlkm.mkdir()
    (vendor_dlkm / "vendor_core.ko").write_bytes(kos["vendor_core"])
    (vendor_dlkm / "modules.dep").write_text("vendor_core.ko:\n")
    (vendor_dlkm / "modules.load").write_text("vendor_core.ko\n")
    run = run_device(sample_images, tmp_path, ko(kos, "vendor_sensor") | {
        "modules.dep": b"vendor_sensor.ko:\n", "modules.load": b"vendor_sensor.ko\n"},
        "--vendor-dlkm", vendor_dlkm)
    assert run.rc == 1
    assert (run.android["verdict"], run.android["stage"], run.android["stops_at"]) == (
        "stops", "first-stage", "vendor_sensor")
    mods = {m["name"]: m for m in run.report["modules"]}
    assert run.outcomes() == {"vendor_sensor": "link-error", "vendor_core": "loaded"}
    assert mods["vendor_sensor"]["agreement"] == "confirmed"
    problems = mods["vendor_sensor"]["static"]["problems"]
    assert {p["symbol"] for p in problems} == {p["symbol"] for p in
                                               mods["vendor_sensor"]["runtime"]["problems"]}
    for p in problems:
        assert p["kind"] == "packaging" and p["detail"].endswith(
            "move vendor_core to vendor_kernel_boot's modules.load")
    rc, stdout, stderr = run_bootverify([
        "check", "--boot", sample_images / "boot.img",
        "--vendor-kernel-boot", tmp_path / "vendor_kernel_boot.img",
        "--vendor-dlkm", vendor_dlkm, "--symvers", sample_images / "vmlinux.symvers",
        "--kmi-symbol-list", sample_images / "kmi_symbol_list", "--json", "-"], RUN_TIMEOUT)
    assert rc == 1, stderr
    check = json.loads(stdout)
    assert [check["android"][k] for k in ("verdict", "stage", "stops_at")] == \
        [run.android[k] for k in ("verdict", "stage", "stops_at")]
    assert [m["static"] for m in check["modules"]] == [m["static"] for m in run.report["modules"]]


@pytest.mark.timeout(RUN_TIMEOUT)
def test_row7_charger_mode_loads_the_charger_list(sample_images, kos, tmp_path):
    modules = ko(kos, "vendor_core", "vendor_sensor") | {
        "modules.dep": DEP, "modules.load": b"vendor_core.ko\nvendor_sensor.ko\n",
        "modules.load.charger": b"vendor_core.ko\n"}
    run = run_device(sample_images, tmp_path / "charger", modules,
                     bootconfig=SAMPLE_BOOTCONFIG + b'androidboot.mode = "charger"\n'
                                b"androidboot.load_modules_parallel = true\n")
    assert run.rc == 0, run.stdout + run.stderr
    assert run.report["boot_mode"] == "charger"
    assert run.outcomes() == {"vendor_core": "loaded", "vendor_sensor": "unlisted"}
    assert any("waves" in n for n in run.report["notes"])
    # --boot-mode normal overrides the bootconfig
    run = run_device(sample_images, tmp_path / "normal", modules, "--boot-mode", "normal",
                     bootconfig=SAMPLE_BOOTCONFIG + b'androidboot.mode = "charger"\n')
    assert run.report["boot_mode"] == "normal"
    assert run.outcomes() == {"vendor_core": "loaded", "vendor_sensor": "loaded"}


PARALLEL_BOOTCONFIG = SAMPLE_BOOTCONFIG + b'androidboot.load_modules_parallel = "true"\n'
# Modules whose faults a wave must keep apart: a dependency chain (vendor_panel needs the
# failing vendor_backlight), link errors of several kinds, an init error, an oops.
PARALLEL_SET = ("vendor_core", "vendor_sensor", "vendor_debug", "vendor_backlight",
                "vendor_panel", "vendor_hash", "vendor_modem", "vendor_blob", "vendor_nodev",
                "vendor_oops")


@pytest.mark.timeout(2 * RUN_TIMEOUT)
def test_parallel_waves_on_mkbootimg_images(sample_images, tmp_path):
    """bootconfig androidboot.load_modules_parallel = "true", images by AOSP's mkbootimg 34:
    the first stage loads in LoadModulesParallel's waves, load_sequential=1 alone, each module
    with its own outcome and kernel log lines, the same outcomes as one at a time."""
    files = sample_modules(sample_images / "vendor_kernel_boot.img")
    expected = json.loads((sample_images / "expected.json").read_text())["modules"]
    modules = {f"{n}.ko": files[f"{n}.ko"] for n in PARALLEL_SET} | {
        "modules.dep": files["modules.dep"],
        "modules.load": "".join(f"{n}.ko\n" for n in PARALLEL_SET).encode(),
        "modules.options": files["modules.options"] + b"options vendor_nodev load_sequential=1\n"}
    run = run_device(sample_images, tmp_path, modules, "--jobs", "1",     # one plan banner
                     bootconfig=PARALLEL_BOOTCONFIG, aosp=True)
    assert run.rc == 1
    assert run.outcomes() == {n: expected[n]["runtime"] for n in PARALLEL_SET}
    assert any("waves" in n for n in run.report["notes"])
    # the plan the console log starts with: vendor_nodev alone (load_sequential=1, the token
    # erased), then the wave of every entry's dependency leaf, then what needed them, each wave
    # in the order the device's threads take it (from the back)
    plan = [line.removeprefix(PLAN_BANNER).split(": ", 1)[1]
            for line in (tmp_path / "console.log").read_text().splitlines()
            if line.startswith(PLAN_BANNER)]
    assert plan == ["/lib/modules/vendor_nodev.ko"] + [
        ("&" if i else "") + f"/lib/modules/{n}.ko" for i, n in enumerate(
            ("vendor_oops", "vendor_modem", "vendor_hash", "vendor_core", "vendor_blob",
             "vendor_backlight"))] + [
        "/lib/modules/vendor_sensor.ko poll_ms=50", "&/lib/modules/vendor_panel.ko",
        "&/lib/modules/vendor_debug.ko"]
    by_name = {m["name"]: m["runtime"] for m in run.report["modules"]}
    # each module's records are its own, though the wave's loads ran at once
    assert any("vendor_core: ready" in line for line in by_name["vendor_core"]["kmsg"])
    assert not any("vendor_backlight" in line for line in by_name["vendor_core"]["kmsg"])
    assert {p["symbol"] for p in by_name["vendor_backlight"]["problems"]} == {"msleep"}
    assert by_name["vendor_oops"]["outcome"] == "crashed" and any(
        "Oops" in line for line in by_name["vendor_oops"]["kmsg"])
    assert run.android["verdict"] == "stops" and run.android["stage"] == "first-stage"


# A wave with a module that panics the guest and one that oopses, among innocent ones: a
# link error, an init error, a warning, loaded ones; vendor_sensor (needs vendor_core) after.
# In the order the device's threads take them (from the back of the entries' names).
PANIC_WAVE = ("vendor_warn", "vendor_panic", "vendor_oops", "vendor_nodev", "vendor_core",
              "vendor_backlight")


@pytest.mark.timeout(3 * RUN_TIMEOUT)
def test_a_panic_in_a_wave_is_found_and_the_rest_get_their_own_outcomes(sample_images,
                                                                           tmp_path):
    """issue 9: the panic kills the guest while the whole wave loads, before any module's
    mark; the next guest loads the wave one at a time, so vendor_panic alone is `crashed` and
    every other module gets the outcome it has when loaded one at a time, with a note that on
    the device they load at once; then the plan goes on."""
    files = sample_modules(sample_images / "vendor_kernel_boot.img")
    expected = json.loads((sample_images / "expected.json").read_text())["modules"]
    names = (*PANIC_WAVE, "vendor_sensor")
    modules = {f"{n}.ko": files[f"{n}.ko"] for n in names} | {
        "modules.dep": files["modules.dep"], "modules.options": files["modules.options"],
        "modules.load": "".join(f"{n}.ko\n" for n in names).encode()}
    run = run_device(sample_images, tmp_path, modules, "--jobs", "1",
                     bootconfig=PARALLEL_BOOTCONFIG, aosp=True)
    assert run.rc == 1
    plan = [line.removeprefix(PLAN_BANNER).split(": ", 1)[1]
            for line in (tmp_path / "console.log").read_text().splitlines()
            if line.startswith(PLAN_BANNER)]
    assert [p.split()[0] for p in plan] == [("&" if i else "") + f"/lib/modules/{n}.ko"
                                            for i, n in enumerate(PANIC_WAVE)] + [
        "/lib/modules/vendor_sensor.ko"]
    assert run.outcomes() == {n: expected[n]["runtime"] for n in names}
    by_name = {m["name"]: m["runtime"] for m in run.report["modules"]}
    assert any("Kernel panic - not syncing: vendor_panic" in line
               for line in by_name["vendor_panic"]["kmsg"])
    assert not any("vendor_panic" in line for n in names if n != "vendor_panic"
                   for line in by_name[n]["kmsg"])
    assert any("Oops" in line for line in by_name["vendor_oops"]["kmsg"])
    assert {p["symbol"] for p in by_name["vendor_backlight"]["problems"]} == {"msleep"}
    for n in PANIC_WAVE:        # the device's view: there the wave loads at once
        assert "loads at once with its wave" in by_name[n]["reason"], n
    assert "at once" not in by_name["vendor_sensor"]["reason"]
    assert any("loaded again one at a time" in n for n in run.report["notes"])
    # boots: the first (the wave), then one at a time until vendor_panic, vendor_oops
    banners = [line for line in (tmp_path / "console.log").read_text().splitlines()
               if line.startswith("=== bootverify: boot")]
    assert [b.split("(", 1)[1].rsplit(")", 1)[0] for b in banners] == [
        "first boot", "after the guest died in the wave of " + ", ".join(PANIC_WAVE),
        "after crashed vendor_panic", "after crashed vendor_oops"]
    assert run.android["verdict"] == "stops" and run.android["stage"] == "first-stage"


def run_second_stage(sample_images: Path, kos: dict[str, bytes], out: Path,
                     name: str) -> tuple[Run, Path]:
    """The sample module `name`, then vendor_backlight, in a vendor_dlkm (second stage), after
    vendor_core and vendor_sensor in first stage: the run, and the vendor_dlkm directory."""
    vendor_dlkm = out.parent / f"{out.name}-vendor_dlkm"
    vendor_dlkm.mkdir()
    files = sample_modules(sample_images / "vendor_kernel_boot.img")
    (vendor_dlkm / f"{name}.ko").write_bytes(files[f"{name}.ko"])
    (vendor_dlkm / "vendor_backlight.ko").write_bytes(kos["vendor_backlight"])
    (vendor_dlkm / "modules.dep").write_text(f"{name}.ko:\nvendor_backlight.ko:\n")
    (vendor_dlkm / "modules.load").write_text(f"{name}.ko\nvendor_backlight.ko\n")
    run = run_device(sample_images, out, ko(kos, "vendor_core", "vendor_sensor")
                     | {"modules.dep": DEP, "modules.load": b"vendor_core.ko\nvendor_sensor.ko\n"},
                     "--vendor-dlkm", vendor_dlkm)
    return run, vendor_dlkm


@pytest.mark.timeout(4 * RUN_TIMEOUT)
def test_a_panic_in_second_stage_stops_the_device_in_one_run_and_merged(sample_images, kos,
                                                                         tmp_path):
    """vendor_panic in vendor_dlkm: a device reboots there (kernel/panic.c panic()), whatever
    init rc does with a failing insmod. `run` says so; so does `merge` of a split run, from
    the shard that saw the panic (android_entries.crashes). vendor_backlight after it still
    gets its outcome."""
    run, vendor_dlkm = run_second_stage(sample_images, kos, tmp_path / "one", "vendor_panic")
    assert run.rc == 1
    assert (run.android["verdict"], run.android["stage"], run.android["stops_at"]) == (
        "stops", "second-stage", "vendor_panic")
    assert "kernel panicked" in run.android["reason"]
    assert "bootloader" not in run.android["reason"]
    assert run.outcomes() == {"vendor_core": "loaded", "vendor_sensor": "loaded",
                              "vendor_panic": "crashed", "vendor_backlight": "link-error"}
    assert run.stdout.startswith("ANDROID: STOPS in second-stage at vendor_panic: ")
    assert boot_testcase(run).find("failure") is not None

    inputs = ["--boot", sample_images / "boot.img",
              "--vendor-kernel-boot", tmp_path / "one" / "vendor_kernel_boot.img",
              "--vendor-dlkm", vendor_dlkm, "--symvers", sample_images / "vmlinux.symvers",
              "--kmi-symbol-list", sample_images / "kmi_symbol_list"]
    reports = []
    for i in (1, 2):
        out = tmp_path / f"shard{i}.json"
        rc, _, stderr = run_bootverify(["run", *inputs, "--module-timeout", "8", "--jobs", "1",
                                        "--shard", f"{i}/2", "--output", tmp_path / f"shard{i}",
                                        "--json", out], RUN_TIMEOUT)
        assert rc in (0, 1), stderr
        reports.append(json.loads(out.read_text()))
    panicked = [r for r in reports if any(m["name"] == "vendor_panic" for m in r["modules"])]
    assert len(panicked) == 1 and panicked[0]["android_entries"]["crashes"] == {"2": "panic"}
    # the other shard's guests saw no panic (the split may leave it nothing to load)
    assert [r["android"]["verdict"] for r in reports if r is not panicked[0]] == ["boots"]
    rc, stdout, stderr = run_bootverify(["merge", tmp_path / "shard2.json",
                                         tmp_path / "shard1.json", "--json", "-"], 60)
    assert rc == 1, stderr
    merged = json.loads(stdout)
    assert merged["android"] == run.android


@pytest.mark.timeout(2 * RUN_TIMEOUT)
def test_a_hang_in_second_stage_stops_the_device(sample_images, kos, tmp_path):
    """vendor_hang in vendor_dlkm: its init never returns, and init, which loads it with its
    builtin insmod or waits for an `exec` of modprobe, waits with it (init/builtins.cpp
    do_insmod(), do_exec()): the device hangs in second stage, with no reboot. The run goes
    on after it: vendor_backlight still gets its outcome."""
    run, vendor_dlkm = run_second_stage(sample_images, kos, tmp_path / "run", "vendor_hang")
    assert run.rc == 1
    assert run.outcomes() == {"vendor_core": "loaded", "vendor_sensor": "loaded",
                              "vendor_hang": "hung", "vendor_backlight": "link-error"}
    assert (run.android["verdict"], run.android["stage"], run.android["stops_at"]) == (
        "stops", "second-stage", "vendor_hang")
    assert "the device hangs in second stage" in run.android["reason"]
    assert "reboot" not in run.android["reason"]
    assert run.report["android_entries"]["crashes"] == {"2": "hang"}
    assert run.stdout.startswith("ANDROID: STOPS in second-stage at vendor_hang: ")
    assert boot_testcase(run).find("failure") is not None
