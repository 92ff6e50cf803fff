"""The kernel binary: Image, Image.gz or Image.lz4 to a raw arm64 Image, and its release."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bootverify.errors import InputError, reading, regular_file
from bootverify.readers.modules import ModuleCompression
from bootverify.readers.ramdisk import Compression, decompress, detect

# Documentation/arm64/booting.rst: the Image header carries "ARM\x64" at offset 56.
ARM64_IMAGE_MAGIC = b"ARM\x64"
ARM64_MAGIC_OFFSET = 56
# init/version.c linux_banner:
#   "Linux version " UTS_RELEASE " (" LINUX_COMPILE_BY "@" ... ") " UTS_VERSION
# Every part is bounded (a release is at most 64 characters, utsname's field), so a scan costs
# the Image's length, whatever repeats in it without a newline.
LINUX_BANNER = re.compile(
    rb"Linux version ([^\s%]{1,64}) \(([^\n\0]{0,512}?)\) (#[^\n\0]{0,512})")
# include/linux/vermagic.h VERMAGIC_STRING: UTS_RELEASE " " then the flags, arm64 last.
VERMAGIC_FLAGS = rb"(?:SMP )?(?:preempt |PREEMPT_RT )?(?:mod_unload )?(?:modversions )?aarch64"
# kernel/module/decompress.c, built only with CONFIG_MODULE_DECOMPRESS (5.17 and later, when
# finit_module() took MODULE_INIT_COMPRESSED_FILE), for the one algorithm of
# CONFIG_MODULE_COMPRESS_*: its pr_err() on a file of another format. gzip and xz since 5.17
# (Debian's linux-source-6.1), zstd since 6.2 (Debian's linux-source-6.12). KERN_ERR is "\0013".
MODULE_DECOMPRESS_MESSAGES = {ModuleCompression.GZIP: b"\x013not a gzip compressed module\n",
                              ModuleCompression.XZ: b"\x013not an xz compressed module\n",
                              ModuleCompression.ZSTD: b"\x013not a zstd compressed module\n"}


@dataclass(frozen=True)
class KernelImage:
    image: bytes             # raw arm64 Image, what qemu's -kernel takes
    compression: Compression
    release: str             # uname -r, e.g. 6.1.0-56-arm64
    version: str             # the whole banner, as /proc/version shows it
    vermagic: str | None     # what modules' vermagic must match; None if not found
    # The module compression finit_module(MODULE_INIT_COMPRESSED_FILE) takes; None: none
    module_decompress: ModuleCompression | None = None


def module_decompress(image: bytes) -> ModuleCompression | None:
    """Which compressed modules the kernel decompresses itself (CONFIG_MODULE_DECOMPRESS)."""
    return next((how for how, message in MODULE_DECOMPRESS_MESSAGES.items()
                 if message in image), None)


def parse_kernel(data: bytes, path: object) -> KernelImage:
    how = detect(data)
    image = decompress(data, path)
    if image[ARM64_MAGIC_OFFSET:ARM64_MAGIC_OFFSET + 4] != ARM64_IMAGE_MAGIC:
        raise InputError(path, f"not an arm64 kernel Image ({how.value}; no ARM\\x64 magic at "
                               f"offset {ARM64_MAGIC_OFFSET})")
    m = LINUX_BANNER.search(image)
    if not m:
        raise InputError(path, "no 'Linux version' banner in the kernel Image")
    release = m.group(1)
    vm = re.search(rb"\0(" + re.escape(release) + rb" " + VERMAGIC_FLAGS + rb"[^\0]{0,256})\0",
                   image)
    return KernelImage(image, how, release.decode("utf-8", "replace"),
                       m.group(0).decode("utf-8", "replace"),
                       vm.group(1).decode("utf-8", "replace") if vm else None,
                       module_decompress(image))


def read_kernel(path: Path | str) -> KernelImage:
    regular_file(path)
    with reading(path):
        data = Path(path).read_bytes()
    return parse_kernel(data, path)
