"""Debian's arm64 kernel packed as Android boot images, and the checks that a run left nothing
behind: helpers (no pytest import) for the qemu tests and benchmarks/bench_run.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bootverify.readers.bootimg import (
    BootImage,
    RamdiskType,
    VendorBootImage,
    VendorRamdisk,
    read_vendor_boot,
    write_boot_image,
    write_vendor_boot_image,
)
from bootverify.readers.modules import MODULE_SUFFIXES, module_name, read_module
from bootverify.readers.ramdisk import Compression, CpioEntry, compress, unpack_initrd, write_cpio
from bootverify.runtime import vm

DEPMOD_TIMEOUT = 300
MKBOOTIMG_TIMEOUT = 300
PGREP_TIMEOUT = 60


def module_index(moddir: Path) -> dict[str, Path]:
    """name -> file of every module under moddir, compressed (Debian's 6.12) or not (6.1)."""
    return {module_name(p): p for p in moddir.rglob("*.ko*") if p.name.endswith(MODULE_SUFFIXES)}


def closure(index: Mapping[str, Path], names: Sequence[str]) -> dict[str, Path]:
    want: dict[str, Path] = {}
    todo = [module_name(n) for n in names]
    while todo:
        n = todo.pop()
        if n not in want:
            want[n] = index[n]
            todo += read_module(index[n]).depends
    return want


def depmod(files: Mapping[str, Path], release: str) -> dict[str, str]:
    """kmod's modules.dep, modules.softdep and modules.alias for these files, as a flat module
    directory (symlinked, not copied: the whole Debian set is ~300 MB)."""
    with tempfile.TemporaryDirectory(prefix="bv-depmod-") as tmp:
        mdir = Path(tmp) / "lib" / "modules" / release
        mdir.mkdir(parents=True)
        for p in files.values():
            (mdir / p.name).symlink_to(p.resolve())
        subprocess.run(["depmod", "-b", tmp, release], check=True, capture_output=True,
                       timeout=DEPMOD_TIMEOUT)
        return {name: (mdir / name).read_text()
                for name in ("modules.dep", "modules.softdep", "modules.alias")}


def pack_debian_images(out: Path, *, kernel_root: Path, release: str, load: Sequence[str],
                       foreign: Mapping[str, Path] = {}, no_deps: Sequence[str] = (),
                       blocklist: Sequence[str] = (), options: Mapping[str, str] = {},
                       header_version: int = 4, cmdline: str = "",
                       vendor_cmdline: str = "", softdeps: bool = False,
                       bootconfig: bytes = b"androidboot.hardware = bvdebian\n"
                       ) -> tuple[Path, Path]:
    """boot.img (Debian's kernel, a placeholder generic ramdisk) and vendor_kernel_boot.img with
    the modules of `load` (names; foreign ones from other files) and their dependencies in a DLKM
    fragment: lib/modules/{*.ko, modules.load, modules.dep, modules.blocklist, modules.options}.
    Names in `load` that are neither in the kernel nor in `foreign` are listed but not shipped.
    `softdeps`: depmod's modules.softdep and modules.alias too; `bootconfig`: v4's."""
    index = module_index(kernel_root / "lib" / "modules" / release)
    shipped = [n for n in load if module_name(n) in index]
    files = {**closure(index, shipped), **{module_name(k): v for k, v in foreign.items()}}
    dep_lines = []
    generated = depmod(files, release)
    for line in generated["modules.dep"].splitlines():
        target = line.split(":")[0]
        dep_lines.append(f"{target}:" if module_name(target) in no_deps else line)
    tree = [CpioEntry("lib", stat.S_IFDIR | 0o755), CpioEntry("lib/modules", stat.S_IFDIR | 0o755)]
    tree += [CpioEntry(f"lib/modules/{p.name}", stat.S_IFREG | 0o644, p.read_bytes())
             for p in files.values()]
    text = {
        "modules.load": "".join((files[module_name(n)].name if module_name(n) in files
                                 else n + ".ko") + "\n" for n in load),
        "modules.dep": "".join(f"{line}\n" for line in dep_lines),
        "modules.blocklist": "".join(f"blocklist {n}\n" for n in blocklist),
        "modules.options": "".join(f"options {k} {v}\n" for k, v in options.items()),
    }
    if softdeps:
        text |= {k: generated[k] for k in ("modules.softdep", "modules.alias")}
    tree += [CpioEntry(f"lib/modules/{k}", stat.S_IFREG | 0o644, v.encode())
             for k, v in text.items()]
    dlkm = compress(write_cpio(tree), Compression.LZ4_LEGACY)
    generic = compress(write_cpio([CpioEntry("init", stat.S_IFREG | 0o755,
                                             b"#!/bin/sh\necho placeholder first stage\n")]),
                       Compression.LZ4_LEGACY)
    kernel = (kernel_root / "boot" / f"vmlinuz-{release}").read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    boot_img, vendor_img = out / "boot.img", out / "vendor_kernel_boot.img"
    if header_version not in (3, 4):
        raise ValueError(f"header v{header_version}: v3 (Debian's mkbootimg) or v4 (ours)")
    if header_version == 3:
        # Debian's mkbootimg: an independent writer (v3 only; vendor_boot needs a --dtb, which
        # qemu -M virt does not use: it makes its own device tree). v4: the project's writer.
        for name, data in (("kernel", kernel), ("generic.cpio.lz4", generic),
                           ("dlkm.cpio.lz4", dlkm), ("fake.dtb", b"\xd0\x0d\xfe\xed" + bytes(60))):
            (out / name).write_bytes(data)
        subprocess.run(["mkbootimg", "--header_version", "3", "--kernel", str(out / "kernel"),
                        "--ramdisk", str(out / "generic.cpio.lz4"), "--cmdline", cmdline,
                        "-o", str(boot_img), "--vendor_boot", str(vendor_img),
                        "--vendor_ramdisk", str(out / "dlkm.cpio.lz4"),
                        "--vendor_cmdline", vendor_cmdline, "--dtb", str(out / "fake.dtb")],
                       check=True, capture_output=True, timeout=MKBOOTIMG_TIMEOUT)
        return boot_img, vendor_img
    write_boot_image(BootImage(4, kernel, generic, cmdline), boot_img)
    platform = compress(write_cpio([CpioEntry("vendor.prop", stat.S_IFREG | 0o644, b"x=1\n")]),
                        Compression.LZ4_LEGACY)
    ramdisks = (VendorRamdisk(platform, RamdiskType.PLATFORM, "platform"),
                VendorRamdisk(dlkm, RamdiskType.DLKM, "dlkm"))
    write_vendor_boot_image(VendorBootImage(4, vendor_cmdline, ramdisks, bootconfig=bootconfig),
                            vendor_img)
    return boot_img, vendor_img


def sample_modules(vendor_img: Path) -> dict[str, bytes]:
    """A vendor boot image's lib/modules/ files: name (relative to it) -> content."""
    tree = unpack_initrd(read_vendor_boot(vendor_img).ramdisk, vendor_img)
    return {name.removeprefix("lib/modules/"): e.data for name, e in tree.items()
            if name.startswith("lib/modules/") and e.is_file}


def repack_vendor_modules(vendor_img: Path, out: Path, modules: Mapping[str, bytes],
                          bootconfig: bytes | None = None) -> Path:
    """`vendor_img` (v4) with one DLKM fragment holding exactly `modules` as lib/modules/ (name
    -> content, the module directory's text files included), and `bootconfig` if given."""
    v = read_vendor_boot(vendor_img)
    tree = [CpioEntry("lib", stat.S_IFDIR | 0o755), CpioEntry("lib/modules", stat.S_IFDIR | 0o755)]
    tree += [CpioEntry(f"lib/modules/{name}", stat.S_IFREG | 0o644, data)
             for name, data in modules.items()]
    dlkm = VendorRamdisk(compress(write_cpio(tree), Compression.LZ4_LEGACY), RamdiskType.DLKM,
                         "dlkm")
    write_vendor_boot_image(VendorBootImage(
        4, v.cmdline, (dlkm,), v.dtb, v.bootconfig if bootconfig is None else bootconfig), out)
    return out


def mkbootimg_vendor_modules(vendor_img: Path, out: Path, modules: Mapping[str, bytes],
                             bootconfig: bytes) -> Path:
    """As repack_vendor_modules, but written by AOSP's mkbootimg 34 (v4: a platform fragment
    and the DLKM fragment with a board id, `bootconfig`, `vendor_img`'s cmdline and dtb)."""
    v = read_vendor_boot(vendor_img)
    work = out.parent / (out.name + ".d")
    work.mkdir(parents=True, exist_ok=True)
    tree = [CpioEntry("lib", stat.S_IFDIR | 0o755), CpioEntry("lib/modules", stat.S_IFDIR | 0o755)]
    tree += [CpioEntry(f"lib/modules/{name}", stat.S_IFREG | 0o644, data)
             for name, data in modules.items()]
    files = {"dlkm.cpio.lz4": compress(write_cpio(tree), Compression.LZ4_LEGACY),
             "platform.cpio.lz4": compress(write_cpio([CpioEntry(
                 "vendor.prop", stat.S_IFREG | 0o644, b"x=1\n")]), Compression.LZ4_LEGACY),
             "dtb": v.dtb, "bootconfig": bootconfig}
    for name, data in files.items():
        (work / name).write_bytes(data)
    subprocess.run(["mkbootimg", "--header_version", "4", "--pagesize", "4096",
                    "--vendor_cmdline", v.cmdline, "--dtb", str(work / "dtb"),
                    "--vendor_bootconfig", str(work / "bootconfig"),
                    "--ramdisk_type", "platform", "--ramdisk_name", "",
                    "--vendor_ramdisk_fragment", str(work / "platform.cpio.lz4"),
                    "--ramdisk_type", "dlkm", "--ramdisk_name", "dlkm", "--board_id0", "0xb007",
                    "--vendor_ramdisk_fragment", str(work / "dlkm.cpio.lz4"),
                    "--vendor_boot", str(out)],
                   check=True, capture_output=True, timeout=MKBOOTIMG_TIMEOUT)
    return out


def qemu_pids(owner_pid: int) -> list[int]:
    """qemu processes started by process owner_pid (their -kernel lies in its temp dir)."""
    r = subprocess.run(["pgrep", "-f", f"{vm.TEMP_PREFIX}{owner_pid}-"], capture_output=True,
                       text=True, timeout=PGREP_TIMEOUT)
    return [int(p) for p in r.stdout.split()]


def temp_dirs(owner_pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"{vm.TEMP_PREFIX}{owner_pid}-*"))


def assert_clean(owner_pid: int = os.getpid()) -> None:
    assert qemu_pids(owner_pid) == [], "a qemu process survived"
    assert temp_dirs(owner_pid) == [], "a temp dir survived"


def run_bootverify(argv: Sequence[str | Path], timeout: float) -> tuple[int, str, str]:
    """`python -m bootverify ARGV` as a user runs it: (exit status, stdout, stderr). Reaping is
    part of the contract: no qemu process or temp dir of the run may outlive it (checked)."""
    with subprocess.Popen([sys.executable, "-m", "bootverify", *map(str, argv)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        finally:
            proc.kill()
    assert_clean(proc.pid)
    return proc.returncode, stdout, stderr
