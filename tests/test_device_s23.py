"""A real device's first-stage image as it comes (tests/data/samsung-s23-5.15, see its SOURCE.txt):
read, planned as first_stage_init would, and checked against the build's vmlinux symvers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
