"""A real device's first-stage image as it comes (tests/data/samsung-s23-5.15, see its SOURCE.txt):
read, planned as first_stage_init would, and checked against the build's vmlinux symvers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bootverify.plan import Disposition, plan_for
from bootverify.readers.bootimg import RamdiskType, VendorBootImage, read_boot_image
from bootverify.readers.ramdisk import unpack_initrd

DATA = Path(__file__).parent / "data" / "samsung-s23-5.15"
IMAGE = DATA / "vendor_boot.img"
RELEASE = "5.15.78-android13-8-ab"
MODULES_DIR = f"lib/modules/{RELEASE}"


def _listed() -> list[str]:
    return DATA.joinpath("modules.load").read_text().split()


def test_the_image_reads_as_the_build_made_it() -> None:
    img = read_boot_image(IMAGE)
    assert isinstance(img, VendorBootImage) and img.header_version == 4
    (fragment,) = img.ramdisks
    assert fragment.type is RamdiskType.PLATFORM
    tree = unpack_initrd(fragment.data, IMAGE)
    kos = {Path(n).name for n, e in tree.items() if e.is_file and n.endswith(".ko")}
    assert len(kos) == 123 and set(_listed()) == kos
    # The ramdisk's own modules.load is the build's dist list.
    assert tree[f"{MODULES_DIR}/modules.load"].data.decode().split() == _listed()
    assert "bootconfig" in img.cmdline.split()


def test_check_reads_every_module_and_predicts_they_load() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bootverify", "check", "--vendor-kernel-boot", str(IMAGE),
         "--symvers", str(DATA / "vmlinux.symvers.derived"), "--json", "-"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kernel_release"] == RELEASE
    assert sorted(m["name"] + ".ko" for m in report["modules"]) == \
        sorted(n.replace("-", "_") for n in _listed())
    assert {m["static"]["verdict"] for m in report["modules"]} == {"ok"}
    # in the plan's order every provider has loaded before its user: the device boots
    assert report["android"]["verdict"] == "boots"


def test_first_stage_plans_every_listed_module_as_the_device_would() -> None:
    img = read_boot_image(IMAGE)
    assert isinstance(img, VendorBootImage)
    tree = {n: e for r in img.ramdisks for n, e in unpack_initrd(r.data, IMAGE).items()}
    # No kernel Image ships with it: a 4 KiB-page kernel of the build's release.
    plan = plan_for(tree, RELEASE, b"", img.bootconfig, img.cmdline)
    # The exact `uname -r` directory wins outright (first_stage_init's LoadKernelModules).
    assert [s.guest_dir for s in plan.sets] == [f"/{MODULES_DIR}"]
    assert {plan.units[s.key].disposition for s in plan.steps} == {Disposition.LOAD}
    assert len(plan.lines) == 123
    for line in plan.lines:
        assert line.split()[0].lstrip("/") in tree
    # modules.dep's hard deps and modules.softdep's pre-deps load first.
    position = {s.key[1]: i for i, s in enumerate(plan.steps)}
    for s in plan.steps:
        unit = plan.units[s.key]
        assert all(position[d[1]] < position[s.key[1]] for d in unit.deps + unit.pre)
    assert position["sec_arm64_ap_context"] < position["sec_qc_summary"]
    assert position["sec_qc_logger"] < position["sec_qc_summary"]
