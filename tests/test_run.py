"""`bootverify run` end to end, as a user runs it: the sample images of every kernel generation
(6.1 and 6.12; each test's id names it) booted in qemu.

Every module must get the runtime outcome and the static findings expected.json states, the
halves must agree (nothing missed, nothing unconfirmed), the reports must follow their
contract, and no qemu process or temp dir may outlive the run.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from packing import run_bootverify

from bootverify.nightly.expect import read_expectations

pytestmark = [pytest.mark.qemu, pytest.mark.images]

# The hang module waits forever; a short per-module timeout keeps the suite quick.
MODULE_TIMEOUT = "8"
RUN_TIMEOUT = 400
# vendor_probe's failed probe, as each generation's drivers/base/dd.c call_driver_probe() says it
# (6.1: pr_warn(); 6.12: dev_err(), with the device's name first).
PROBE_FAILED = {"6.1": "vendor_probe: probe of vendor_probe failed with error -110",
                "6.12": "vendor_probe vendor_probe: probe with driver vendor_probe failed with "
                        "error -110"}


@dataclass(frozen=True)
class Run:
    rc: int
    stdout: str
    stderr: str
    report: dict
    junit: ET.Element
    console: str
    expected: dict
    images: Path

    @property
    def generation(self) -> str:
        return json.loads((self.images / "expected.json").read_text())["generation"]


def _run(images: Path, out: Path, *inputs: str | Path, expected: Path | None = None) -> Run:
    """`run` with `inputs` (default: the output directory as a dist directory, as the Quick
    start runs it)."""
    rc, stdout, stderr = run_bootverify([
        "run", *(inputs or ("--dist", images)), "--module-timeout", MODULE_TIMEOUT,
        "--output", out], RUN_TIMEOUT)
    assert (out / "report.json").is_file(), stderr
    return Run(rc, stdout, stderr,
               json.loads((out / "report.json").read_text()),
               ET.parse(out / "junit.xml").getroot(),
               (out / "console.log").read_text(errors="replace"),
               json.loads((expected or images / "expected.json").read_text())["modules"], images)


@pytest.fixture(scope="module")
def gki_run(generation_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(generation_images, tmp_path_factory.mktemp("gki"))


@pytest.fixture(scope="module")
def replacement_run(generation_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(generation_images / "replacement", tmp_path_factory.mktemp("replacement"))


def _outcomes(run: Run) -> dict[str, str]:
    return {m["name"]: m["runtime"]["outcome"] for m in run.report["modules"]}


def _static_kinds(run: Run) -> dict[str, list[str]]:
    return {m["name"]: sorted({p["kind"] for p in m["static"]["problems"]})
            for m in run.report["modules"]}


@pytest.mark.timeout(RUN_TIMEOUT + 200)      # a cold sample build comes first
def test_every_module_gets_the_expected_outcome(gki_run: Run) -> None:
    assert _outcomes(gki_run) == {n: e["runtime"] for n, e in gki_run.expected.items()}
    assert _static_kinds(gki_run) == {n: sorted(e["static"]) for n, e in gki_run.expected.items()}


@pytest.mark.timeout(60)
def test_the_samples_are_a_dist_directory(gki_run: Run, generation_images: Path) -> None:
    """`run --dist` alone: every input by its Kleaf name, system_dlkm from its ext4 image."""
    lines = gki_run.stderr.splitlines()
    for option, name in (("boot", "boot.img"), ("vendor-kernel-boot", "vendor_kernel_boot.img"),
                         ("system-dlkm", "system_dlkm.img"), ("symvers", "vmlinux.symvers"),
                         ("kmi-symbol-list", "abi_symbollist")):
        assert f"dist: {option}: {generation_images / name}" in lines
    assert f"system_dlkm: {generation_images / 'system_dlkm.img'} (ext4), modules from " \
           f"lib/modules/{gki_run.report['kernel_release']}" in lines
    paths = {m["name"]: m["path"] for m in gki_run.report["modules"]}
    system_dlkm = {n for n, e in gki_run.expected.items() if e["partition"] == "system_dlkm"}
    assert system_dlkm and all(
        paths[n].startswith(f"{generation_images / 'system_dlkm.img'}:lib/modules/")
        for n in system_dlkm)
    assert gki_run.report["duplicates"] == []


@pytest.mark.timeout(60)
def test_static_and_runtime_agree(gki_run: Run) -> None:
    agreements = {m["name"]: m["agreement"] for m in gki_run.report["modules"]}
    assert not {n: a for n, a in agreements.items() if a in ("missed", "unconfirmed")}
    for m in gki_run.report["modules"]:
        if m["runtime"]["outcome"] == "link-error":
            assert m["agreement"] == "confirmed", m
            # the kernel named symbols the analysis predicted
            predicted = {p["symbol"] for p in m["static"]["problems"]}
            assert {p["symbol"] for p in m["runtime"]["problems"]} <= predicted | {""}
    # seeded faults fail the run
    assert gki_run.rc == 1, gki_run.stderr


@pytest.mark.timeout(60)
def test_reports_follow_their_contract(gki_run: Run) -> None:
    report = gki_run.report
    assert report["kernel_release"] and report["kmi_trimmed"] is True
    for m in report["modules"]:
        rt = m["runtime"]
        assert set(rt) >= {"outcome", "errno", "problems", "kmsg", "seconds"}
        assert m["agreement"] in ("confirmed", "latent", "missed", "unconfirmed",
                                  "runtime-only", "skipped", "ok")
        if rt["outcome"] in ("link-error", "init-error"):
            assert rt["errno"] and rt["errno"] > 0, m
    by_name = {m["name"]: m for m in report["modules"]}
    backlight = by_name["vendor_backlight"]["runtime"]
    assert any("Unknown symbol msleep (err -2)" in line for line in backlight["kmsg"])
    assert by_name["vendor_nodev"]["runtime"]["errno_name"] == "ENODEV"
    # JUnit: one testcase a module, failures for the non-loaded ones, skipped for the blocklisted
    cases = {c.get("name"): c for c in gki_run.junit.iter("testcase")}
    # issue 9: the device verdict comes first, as testcase android-boot
    assert set(cases) == set(by_name) | {"android-boot"}
    assert cases.pop("android-boot").find("failure") is not None
    for name, m in by_name.items():
        outcome = m["runtime"]["outcome"]
        assert (cases[name].find("failure") is not None) == (outcome not in ("loaded", "skipped"))
        assert (cases[name].find("skipped") is not None) == (outcome == "skipped")
    # the console log is the whole conversation, recovery boots included
    assert "Unable to handle kernel NULL pointer" in gki_run.console
    # the text table and the live progress
    n = len(by_name)
    assert "AGREEMENT" in gki_run.stdout and f"[{n}/{n}]" in gki_run.stderr
    # the device: first stage is strict, and vendor_backlight (listed 4th, after the
    # blocklisted vendor_blocked) is the first that fails to load
    assert list(report)[0] == "android"
    assert report["android"] | {"reason": ""} == {
        "verdict": "stops", "stage": "first-stage", "stops_at": "vendor_backlight",
        "reason": "", "failures": report["android"]["failures"]}
    assert gki_run.stdout.startswith("ANDROID: STOPS in first-stage at vendor_backlight: ")
    # the sample's bootconfig says androidboot.load_modules_parallel = false: nothing to note
    assert report["boot_mode"] == "normal" and not any("parallel" in n for n in report["notes"])


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_the_device_verdicts_are_the_recipes(gki_run: Run, replacement_run: Run) -> None:
    """Where each variant's device stops: samples.toml's [android], shipped in expect.toml."""
    for run in (gki_run, replacement_run):
        device = read_expectations(run.images / "expect.toml").device
        assert device is not None
        assert (run.report["android"]["verdict"], run.report["android"]["stops_at"]) == \
            (device.verdict, device.stops_at), run.report["android"]
        assert run.stdout.startswith(f"ANDROID: STOPS in first-stage at {device.stops_at}: ")


@pytest.mark.timeout(60)
def test_seeded_findings_are_reported_and_do_not_fail_by_default(gki_run: Run) -> None:
    """issue 15: a WARN, a missing firmware file and a failed probe: loaded, with findings in
    the JSON, the text and the JUnit system-out; none is in the default --fail-on."""
    by_name = {m["name"]: m["runtime"] for m in gki_run.report["modules"]}
    assert gki_run.report["fail_on"] == ["bug", "kasan", "kcsan", "kfence", "lockdep", "ubsan"]
    (warn,) = by_name["vendor_warn"]["findings"]
    assert warn["class"] == "warning" and "WARNING: CPU: " in warn["line"]
    assert "vendor_warn_init" in warn["line"]
    assert warn["context"][0].endswith("------------[ cut here ]------------")
    assert "vendor_warn: empty calibration table, using defaults" in warn["context"][1]
    assert re.search(r"---\[ end trace [0-9a-f]+ \]---$", warn["context"][-1])
    fw = by_name["vendor_fw"]["findings"]
    assert [f["class"] for f in fw] == ["firmware", "firmware"] and all(
        "vendor/vendor_fw.bin" in f["line"] and not f["context"] for f in fw)
    assert any(f["line"].endswith("vendor_fw vendor_fw: Direct firmware load for "
                                  "vendor/vendor_fw.bin failed with error -2") for f in fw)
    (probe,) = by_name["vendor_probe"]["findings"]
    assert probe["line"].endswith(PROBE_FAILED[gki_run.generation])
    cases = {c.get("name"): c for c in gki_run.junit.iter("testcase")}
    for name in ("vendor_warn", "vendor_fw", "vendor_probe"):
        assert by_name[name]["outcome"] == "loaded"
        assert cases[name].find("failure") is None
        # Ant's JUnit.xsd allows no system-out in a testcase: the suite's lists the findings
        assert f"finding {name}: " in (gki_run.junit.findtext("system-out") or "")
        assert f"  {name}: " in gki_run.stdout.split("FINDINGS (", 1)[1]
    assert re.search(r"\] vendor_warn +loaded \+ warning \(", gki_run.stderr)


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_replacement_breaks_gki_modules_and_keeps_device_modules(replacement_run: Run) -> None:
    """A full-kernel-replacement build: no KMI trimming, a changed struct. The GKI module built
    against the base kernel must fail its CRC check, confirmed at runtime."""
    run = replacement_run
    assert _outcomes(run) == {n: e["runtime"] for n, e in run.expected.items()}
    by_name = {m["name"]: m for m in run.report["modules"]}
    broken = [n for n, e in run.expected.items() if e.get("partition") == "system_dlkm"
              and e["runtime"] == "link-error"]
    assert broken
    for name in broken:
        assert by_name[name]["agreement"] == "confirmed"
        assert {p["kind"] for p in by_name[name]["runtime"]["problems"]} == \
            {"disagrees-about-version"}
    # the not-trimmed kernel lets a KMI violation load: latent, not a failure
    assert run.report["kmi_trimmed"] is False
    assert "latent" in {m["agreement"] for m in run.report["modules"]}
    assert not [m["name"] for m in run.report["modules"]
                if m["agreement"] in ("missed", "unconfirmed")]


@pytest.mark.timeout(RUN_TIMEOUT + 120)
def test_a_bare_replacement_kernel_with_the_gki_built_modules(
        generation_images: Path, replacement_run: Run, tmp_path: Path) -> None:
    """Scenario (c) from a kernel, not a boot image: `run --kernel` on the replacement kernel
    with the GKI build's device modules (unpacked from its vendor_kernel_boot.img, given as
    --modules-dir) and its system_dlkm.img. The images are written by bootverify; the KMI
    breakage the replacement images show is reproduced: the GKI modules' CRCs disagree."""
    rc, out, err = run_bootverify(["unpack", generation_images / "vendor_kernel_boot.img",
                                   tmp_path / "unpacked"], 60)
    assert rc == 0, err
    modules = tmp_path / "unpacked/vendor_ramdisk00_dlkm.files/lib/modules"
    kernel = generation_images / "replacement/kernel/Image.lz4"
    out = tmp_path / "run"
    out.mkdir()
    run = _run(generation_images, out, "--kernel", kernel, "--modules-dir", modules,
               "--system-dlkm", generation_images / "system_dlkm.img",
               "--symvers", generation_images / "replacement/vmlinux.symvers",
               expected=generation_images / "replacement/expected.json")
    assert run.rc == 1, run.stderr
    lines = run.stderr.splitlines()
    assert any(line.startswith(f"boot: written around {kernel} (header v4, kernel ")
               for line in lines)
    assert any(line.startswith(f"vendor-kernel-boot: written around {modules} (header v4")
               for line in lines)
    by_name = {m["name"]: m for m in run.report["modules"]}
    # The GKI modules (system_dlkm) whose CRCs the replacement kernel changed.
    broken = {m["name"] for m in replacement_run.report["modules"]
              if replacement_run.expected[m["name"]]["partition"] == "system_dlkm"
              and m["runtime"]["outcome"] == "link-error"
              and {p["kind"] for p in m["runtime"]["problems"]} == {"disagrees-about-version"}}
    assert broken
    for name in broken:
        assert by_name[name]["runtime"]["outcome"] == "link-error"
        assert by_name[name]["agreement"] == "confirmed"
        assert {p["kind"] for p in by_name[name]["runtime"]["problems"]} == \
            {"disagrees-about-version"}
    # The first-stage modules are read from the directory given, by their own paths.
    assert by_name["vendor_backlight"]["path"] == f"{modules}/vendor_backlight.ko"
    assert not [m["name"] for m in run.report["modules"]
                if m["agreement"] in ("missed", "unconfirmed")]
