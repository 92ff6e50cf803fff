"""`run --kernel`: the boot images a build would have made around a bare kernel, written as
AOSP's mkbootimg (34) writes them with the arguments Kleaf's kernel_images passes, so that a
replacement kernel and a directory of modules are tried in one command.

- boot.img: header v4, the kernel file as given (Image, Image.gz or Image.lz4: a bootloader
  takes all three; Kleaf ships Image.lz4), no ramdisk (a device with init_boot has none in
  boot.img; bootverify's agent brings its own init), an empty command line.
- vendor_kernel_boot.img (only with --modules-dir): header v4, page size 4096, mkbootimg's
  default load addresses (bootimg.py's defaults), one DLKM ramdisk fragment named "dlkm"
  holding lib/modules/ = the directory's files, lz4 legacy compressed (Kleaf's default for the
  vendor_kernel_boot ramdisk), no command line, no bootconfig. The dtb is qemu virt's
  (`-machine virt,dumpdtb=`): the board bootverify boots on, not the device's.
The images go into a directory the caller owns (the CLI: a temporary one, always removed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bootverify import android
from bootverify.errors import InputError, reading
from bootverify.readers.bootimg import (BootImage, RamdiskType, VendorBootImage, VendorRamdisk,
                                        write_boot_image, write_vendor_boot_image)
from bootverify.readers.kernel import parse_kernel
from bootverify.readers.ramdisk import Compression, compress, write_cpio
from bootverify.runtime import agent

HEADER_VERSION = 4
VENDOR_PAGE_SIZE = 4096
DLKM_FRAGMENT = "dlkm"
RAMDISK_COMPRESSION = Compression.LZ4_LEGACY


@dataclass(frozen=True)
class KernelImages:
    boot: Path | None                    # None: no kernel given (the caller has a boot.img)
    vendor_kernel_boot: Path | None      # None: no modules directory (the caller has its own)
    release: str | None                  # the kernel's uname -r


def boot_image(kernel: Path) -> tuple[BootImage, str]:
    """boot.img around `kernel` (InputError unless it is an arm64 Image, raw, gzip or lz4)."""
    with reading(kernel):
        data = kernel.read_bytes()
    release = parse_kernel(data, kernel).release
    return BootImage(header_version=HEADER_VERSION, kernel=data, ramdisk=b"", cmdline=""), release


def dlkm_ramdisk(modules_dir: Path) -> bytes:
    """The DLKM fragment: the directory's files at lib/modules/, as Kleaf's initramfs has them."""
    if not modules_dir.is_dir():
        raise InputError(modules_dir, "not a directory (--modules-dir takes the directory of "
                                      "the .ko files and their modules.load)")
    entries = agent.tree_entries(modules_dir, android.MODULE_BASE_DIR.lstrip("/"))
    return compress(write_cpio(entries), RAMDISK_COMPRESSION)


def vendor_kernel_boot_image(modules_dir: Path, dtb: bytes) -> VendorBootImage:
    return VendorBootImage(header_version=HEADER_VERSION, cmdline="", dtb=dtb,
                           page_size=VENDOR_PAGE_SIZE,
                           ramdisks=(VendorRamdisk(dlkm_ramdisk(modules_dir), RamdiskType.DLKM,
                                                   DLKM_FRAGMENT),))


def write_kernel_images(kernel: Path | None, modules_dir: Path | None, dtb: bytes,
                        out: Path) -> KernelImages:
    """boot.img around `kernel`, vendor_kernel_boot.img around `modules_dir`, each when given,
    written into `out`."""
    boot = release = vendor = None
    if kernel is not None:
        image, release = boot_image(kernel)
        boot = out / "boot.img"
        write_boot_image(image, boot)
    if modules_dir is not None:
        vendor = out / "vendor_kernel_boot.img"
        write_vendor_boot_image(vendor_kernel_boot_image(modules_dir, dtb), vendor)
    return KernelImages(boot, vendor, release)
