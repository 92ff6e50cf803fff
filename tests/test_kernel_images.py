"""`run --kernel`'s images (bootverify/runtime/kernel_images.py) against AOSP's mkbootimg 34
given the same payloads: the same bytes, header v4, boot and vendor_kernel_boot."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from craft import RELEASE, fake_image, gz
from bootverify.errors import InputError
from bootverify.readers.bootimg import RamdiskType, read_boot, read_vendor_boot
from bootverify.readers.ramdisk import unpack_initrd
from bootverify.runtime.kernel_images import (DLKM_FRAGMENT, dlkm_ramdisk, write_kernel_images)
from bootverify.runtime.vm import virt_dtb

FDT_MAGIC = b"\xd0\x0d\xfe\xed"


@pytest.fixture(scope="module")
def dtb() -> bytes:
    return virt_dtb()


def _modules(tmp: Path) -> Path:
    d = tmp / "modules"
    d.mkdir()
    (d / "a.ko").write_bytes(b"\x7fELF a")
    (d / "modules.load").write_text("a.ko\n")
    (d / "modules.dep").write_text("a.ko:\n")
    return d


def _mkbootimg(*args: str | Path) -> None:
    subprocess.run(["mkbootimg", *map(str, args)], check=True, capture_output=True, timeout=120)


def test_the_images_are_what_mkbootimg_writes(tmp_path: Path, dtb: bytes) -> None:
    assert dtb[:4] == FDT_MAGIC
    kernel = tmp_path / "Image.gz"
    kernel.write_bytes(gz(fake_image()))
    modules = _modules(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    images = write_kernel_images(kernel, modules, dtb, out)
    assert images.release == RELEASE
    boot = read_boot(images.boot)
    assert boot.header_version == 4 and boot.kernel == kernel.read_bytes() and not boot.ramdisk
    assert images.vendor_kernel_boot is not None
    vendor = read_vendor_boot(images.vendor_kernel_boot)
    (fragment,) = vendor.ramdisks
    assert (fragment.type, fragment.name, vendor.dtb) == (RamdiskType.DLKM, DLKM_FRAGMENT, dtb)
    tree = unpack_initrd(fragment.data, "dlkm")
    assert tree["lib/modules/a.ko"].data == b"\x7fELF a"
    assert tree["lib/modules/modules.load"].data == b"a.ko\n"

    # AOSP's writer, same payloads, Kleaf's arguments.
    (tmp_path / "dlkm.cpio.lz4").write_bytes(dlkm_ramdisk(modules))
    (tmp_path / "virt.dtb").write_bytes(dtb)
    _mkbootimg("--header_version", "4", "--kernel", kernel, "-o", tmp_path / "ref-boot.img")
    _mkbootimg("--header_version", "4", "--pagesize", "4096", "--dtb", tmp_path / "virt.dtb",
               "--ramdisk_type", "dlkm", "--ramdisk_name", DLKM_FRAGMENT,
               "--vendor_ramdisk_fragment", tmp_path / "dlkm.cpio.lz4",
               "--vendor_boot", tmp_path / "ref-vendor.img")
    assert images.boot.read_bytes() == (tmp_path / "ref-boot.img").read_bytes()
    assert images.vendor_kernel_boot.read_bytes() == (tmp_path / "ref-vendor.img").read_bytes()


def test_without_modules_only_boot_img(tmp_path: Path, dtb: bytes) -> None:
    kernel = tmp_path / "Image"
    kernel.write_bytes(fake_image())
    images = write_kernel_images(kernel, None, dtb, tmp_path)
    assert images.vendor_kernel_boot is None and images.boot.is_file()


def test_bad_kernel_and_modules_dir(tmp_path: Path, dtb: bytes) -> None:
    bad = tmp_path / "Image"
    bad.write_bytes(b"\0" * 4096)
    with pytest.raises(InputError, match="not an arm64 kernel Image"):
        write_kernel_images(bad, None, dtb, tmp_path)
    with pytest.raises(InputError, match="No such file"):
        write_kernel_images(tmp_path / "none", None, dtb, tmp_path)
    good = tmp_path / "Image.ok"
    good.write_bytes(fake_image())
    with pytest.raises(InputError, match="not a directory"):
        write_kernel_images(good, bad, dtb, tmp_path)
