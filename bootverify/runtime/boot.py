"""Boot as a bootloader would: what qemu gets from a boot.img and a vendor boot image.

The reference is U-Boot's boot/image-android.c (android_image_get_kernel / _get_ramdisk):
- kernel: the boot.img kernel, decompressed here because QEMU's arm64 loader takes only a raw or
  gzip Image (Kleaf ships Image.lz4 in lz4 legacy format).
- initrd: the vendor ramdisk section (all fragments back to back, so in table order), then the
  generic ramdisk, then, for header v4 with a bootconfig section, the bootconfig followed by its
  trailer (size u32 LE, checksum u32 LE = byte sum, "#BOOTCONFIG\\n"; add_trailer() skips a
  bootconfig that already ends with the magic). bootverify puts its agent overlay between the
  generic ramdisk and the bootconfig: the kernel finds bootconfig by the magic at the very end of
  the initrd, so nothing may follow it. The overlay starts 4-aligned after at least four zero
  bytes, which the initramfs unpacker skips and which end an lz4 legacy stream before it.
- cmdline: boot cmdline + " " + vendor cmdline (U-Boot), then bootverify's own parameters, then
  `-- sh /bootverify/init` (the agent's arguments; nothing may follow `--`). With a bootconfig,
  `bootconfig` is added so that kernels without CONFIG_BOOT_CONFIG_FORCE read it.
- vendor_kernel_boot.img has the vendor boot format; boot.img v0-v2 carry their own ramdisk and
  need no vendor image.

Module directories given besides the images (`--system-dlkm`, `--vendor-dlkm`) go into the overlay
at the paths Android mounts them on: /system_dlkm/lib/modules and /vendor_dlkm/lib/modules.

Compressed modules (.ko.gz, .ko.xz, .ko.zst) reach the kernel as that kernel takes them: a file
whose format the kernel decompresses itself (CONFIG_MODULE_DECOMPRESS, one format, 5.17 and
later; readers/kernel.py reads which from the Image) stays compressed and the agent's finit
passes MODULE_INIT_COMPRESSED_FILE, as kmod does when /sys/module/compression names the format;
any other is decompressed here and put in the overlay at its own path (the initramfs unpacker
opens an existing file with O_TRUNC, init/initramfs.c do_name()), and the run's notes say so.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bootverify.android import BOOTCONFIG_MAGIC, DLKM_GUEST_DIRS
from bootverify.errors import InputError, reading
from bootverify.readers.bootimg import (
    BootImage,
    VendorBootImage,
    bootloader_cmdline,
    bootloader_ramdisk,
    read_boot,
    read_vendor_boot,
)
from bootverify.readers.kernel import KernelImage, parse_kernel
from bootverify.readers.modules import MODULE_SUFFIXES, decompress_module, module_compression
from bootverify.readers.ramdisk import CpioEntry, unpack_initrd
from bootverify.runtime import agent

# bootverify's own parameters, after the images' command lines:
# console on the virt machine's PL011; /dev/kmsg writes not rate-limited (markers); timestamps in
# the log (durations); a panic ends the guest at once (and qemu, with -no-reboot).
AGENT_PARAMS = ("console=ttyAMA0", "printk.devkmsg=on", "printk.time=1", "panic=-1")


@dataclass(frozen=True)
class BootImages:
    boot: BootImage
    vendor: VendorBootImage | None
    boot_path: str
    vendor_path: str = ""


def read_images(boot: Path | str, vendor_boot: Path | str | None) -> BootImages:
    """Read and pair a boot.img with its vendor(_kernel)_boot.img (InputError if they don't fit)."""
    b = read_boot(boot)
    if not b.kernel:
        raise InputError(boot, "boot image has no kernel")
    v: VendorBootImage | None = None
    if vendor_boot is not None:
        v = read_vendor_boot(vendor_boot)
        if b.header_version < 3:
            raise InputError(vendor_boot, f"boot image header v{b.header_version} takes no vendor "
                                          f"boot image (v3+ does)")
    elif b.header_version >= 3:
        raise InputError(boot, f"boot image header v{b.header_version} needs a vendor boot image "
                               f"(its ramdisk and command line are there)")
    return BootImages(b, v, str(boot), str(vendor_boot or ""))


def bootconfig_with_trailer(bootconfig: bytes) -> bytes:
    """The bootconfig as U-Boot's add_trailer() leaves it; empty stays empty."""
    if not bootconfig or bootconfig.endswith(BOOTCONFIG_MAGIC):
        return bootconfig
    size = len(bootconfig).to_bytes(4, "little")
    checksum = (sum(bootconfig) & 0xFFFFFFFF).to_bytes(4, "little")
    return bootconfig + size + checksum + BOOTCONFIG_MAGIC


@dataclass(frozen=True)
class Handoff:
    """What the bootloader hands the kernel, before bootverify adds anything."""
    kernel: KernelImage
    ramdisk: bytes          # the device's initrd without bootconfig: vendor fragments in table
                            # order, then the generic ramdisk (joined once: it can be 100 MB)
    bootconfig: bytes       # with its trailer; b"" when there is none
    cmdline: str            # boot + " " + vendor
    source: str = "initrd"  # the image(s) the ramdisks come from, for error messages

    def ramdisk_tree(self) -> dict[str, CpioEntry]:
        """The file tree the device's ramdisks unpack to (later archives win)."""
        return unpack_initrd(self.ramdisk, self.source)


def handoff(images: BootImages) -> Handoff:
    kernel = parse_kernel(images.boot.kernel, f"{images.boot_path} (kernel)")
    v = images.vendor
    bootconfig = bootconfig_with_trailer(v.bootconfig) if v and v.header_version >= 4 else b""
    source = f"{images.vendor_path} + {images.boot_path} (initrd)" if v else \
        f"{images.boot_path} (ramdisk)"
    return Handoff(kernel, bootloader_ramdisk(images.boot, v), bootconfig,
                   bootloader_cmdline(images.boot, v), source)


def new_nonce() -> str:
    """Eight hex digits: enough to never meet by chance, short on a slow serial line."""
    return secrets.token_hex(4)


@dataclass(frozen=True)
class GuestBoot:
    """What qemu gets: -kernel, -initrd, -append."""
    kernel: bytes          # raw arm64 Image
    initrd: bytes
    cmdline: str
    release: str           # uname -r of the kernel
    nonce: str             # the console protocol's marker nonce (also on the cmdline)
    notes: tuple[str, ...] = ()     # what was done to the inputs on the way (decompression)


def _overlay_start(n: int) -> int:
    """Zero bytes to put after n bytes of initrd: at least 4, ending 4-aligned."""
    return 4 + (-(n + 4)) % 4


def guest_cmdline(h: Handoff, nonce: str, extra_params: Sequence[str] = (),
                  init_args: Sequence[str] | None = None) -> str:
    """The images' command line, then bootverify's parameters, then the agent's arguments
    (`init_args`: what PID 1 runs instead of the agent's init, e.g. a baseline shell)."""
    params, agent_init = agent.agent_cmdline(nonce)
    ours = [*AGENT_PARAMS, *extra_params, params]
    if h.bootconfig:
        ours.append("bootconfig")
    init = agent_init if init_args is None else " ".join(("--", *init_args))
    return " ".join(c for c in (h.cmdline, " ".join(ours), init) if c)


def guest_boot(h: Handoff, overlay: bytes, cmdline: str, nonce: str) -> GuestBoot:
    """The handoff plus bootverify's overlay and command line (guest_cmdline's, with `nonce`)."""
    ramdisk = h.ramdisk
    initrd = ramdisk + bytes(_overlay_start(len(ramdisk))) + overlay + h.bootconfig
    return GuestBoot(h.kernel.image, initrd, cmdline, h.kernel.release, nonce)


def dlkm_entries(dirs: Mapping[str, Path]) -> list[CpioEntry]:
    """Overlay members for extra module directories: {"system_dlkm": Path, ...}."""
    out: list[CpioEntry] = []
    for origin, directory in dirs.items():
        if origin not in DLKM_GUEST_DIRS:
            raise ValueError(f"unknown module directory kind {origin!r}")
        with reading(directory):
            if not Path(directory).is_dir():
                raise InputError(directory, "not a directory")
        out += agent.tree_entries(Path(directory), DLKM_GUEST_DIRS[origin].lstrip("/"))
    return out


@dataclass(frozen=True)
class ModulesForKernel:
    """Module files as this kernel can take them."""
    entries: tuple[CpioEntry, ...]      # decompressed here: to put in the overlay
    notes: tuple[str, ...]


def modules_for_kernel(kernel: KernelImage, entries: Iterable[CpioEntry]) -> ModulesForKernel:
    """The compressed module files among `entries` that the kernel cannot decompress itself,
    decompressed (same path, same mode); the rest stay as they are."""
    out: list[CpioEntry] = []
    formats: Counter[str] = Counter()
    for e in entries:
        if not e.is_file or not e.name.endswith(MODULE_SUFFIXES):
            continue
        how = module_compression(e.data)
        if how is not None and how != kernel.module_decompress:
            out.append(replace(e, data=decompress_module(e.data, how, f"initrd:/{e.name}")))
            formats[how] += 1
    takes = (f"only {kernel.module_decompress} (CONFIG_MODULE_DECOMPRESS)"
             if kernel.module_decompress else "none (no CONFIG_MODULE_DECOMPRESS)")
    notes = [f"{n} {how} compressed module(s) decompressed on the host: kernel "
             f"{kernel.release} decompresses {takes} itself" for how, n in sorted(formats.items())]
    return ModulesForKernel(tuple(out), tuple(notes))


def prepare(h: Handoff, cmdline: str, nonce: str, *, busybox: bytes,
            dlkm_dirs: Mapping[str, Path] | None = None,
            extra_entries: Sequence[CpioEntry] = (),
            ramdisk_tree: Mapping[str, CpioEntry] | None = None) -> GuestBoot:
    """Everything qemu needs for one run: `cmdline` is guest_cmdline's with `nonce` (made first:
    the load plan reads module parameters from it); `extra_entries` are more overlay members,
    the plan; `ramdisk_tree` is h.ramdisk_tree() when the caller has it already."""
    dlkm = dlkm_entries(dlkm_dirs or {})
    tree = ramdisk_tree if ramdisk_tree is not None else h.ramdisk_tree()
    fixed = modules_for_kernel(h.kernel, [*tree.values(), *dlkm])
    overlay = agent.build_overlay(busybox, [*dlkm, *fixed.entries, *extra_entries])
    return replace(guest_boot(h, overlay, cmdline, nonce), notes=fixed.notes)
