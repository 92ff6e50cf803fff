"""`bootverify check` as a function: input files in, StaticReport out, remembered by input.

With a vendor boot image or dlkm partitions, the analysis follows the load plan `run` follows
(bootverify/plan/: the same stages, boot mode, load lists and order), made from the same files:
the vendor ramdisk (and boot.img's) as the bootloader hands them over, its bootconfig and
command line, the dlkm directories. Without --boot the modules' vermagic gives the release
that picks the first-stage module directory. Plain --modules-dir sets have no loader: their
modules are checked as one set, as depmod does.

A report depends only on its input files, so it is cached under a key made of their
fingerprints (path, inode, size, mtime, ctime: what make and git trust); a warm re-run reads
no module at all.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bootverify import android
from bootverify.android import BootMode
from bootverify.cache import file_fingerprint, memo
from bootverify.errors import InputError, reading, regular_file
from bootverify.plan import LoadPlan, plan_for
from bootverify.readers.bootimg import (bootloader_cmdline, bootloader_ramdisk, read_boot,
                                        read_vendor_boot)
from bootverify.readers.kernel import parse_kernel
from bootverify.readers.modules import ModuleFacts, find_modules
from bootverify.readers.ramdisk import unpack_initrd
from bootverify.readers.symbols import (kernel_exports_from_symvers,
                                        kernel_exports_from_system_map, read_kmi_symbol_lists,
                                        read_protected_exports)
from bootverify.static.analysis import KernelInterface, StaticReport, analyze
from bootverify.static.moduleset import load_module_set

ANALYSIS_VERSION = 10       # bump when the rules change, so cached reports are not reused


@dataclass(frozen=True)
class CheckInputs:
    symvers: Path | None = None
    system_map: Path | None = None
    kmi_symbol_lists: tuple[Path, ...] = ()
    protected_exports: Path | None = None
    boot: Path | None = None                # its kernel gives release and vermagic
    vendor_boot: Path | None = None
    modules_dirs: tuple[Path, ...] = ()     # module sets without a loader (no plan)
    system_dlkm: Path | None = None         # module directories of the second stage
    vendor_dlkm: Path | None = None
    boot_mode: BootMode | None = None       # forced; else bootconfig / cmdline decide

    def files(self) -> list[Path]:
        return [p for p in (self.symvers, self.system_map, *self.kmi_symbol_lists,
                            self.protected_exports, self.boot, self.vendor_boot) if p]

    def dlkm_dirs(self) -> dict[str, Path]:
        return {k: v for k, v in (("system_dlkm", self.system_dlkm),
                                  ("vendor_dlkm", self.vendor_dlkm)) if v is not None}

    def planned(self) -> bool:
        """Whether the modules are loaded as a device loads them (a plan), or are a plain set
        (a boot.img v0-v2 alone carries the device's ramdisk: a plan)."""
        return bool(self.vendor_boot or self.dlkm_dirs() or _own_ramdisk(self.boot))


def kernel_interface(inputs: CheckInputs) -> KernelInterface:
    if inputs.symvers:
        exports = kernel_exports_from_symvers(inputs.symvers)
    elif inputs.system_map:
        exports = kernel_exports_from_system_map(inputs.system_map)
    else:
        raise InputError("(command line)", "give --symvers FILE or --system-map FILE")
    release = vermagic = None
    if inputs.boot:
        kernel = parse_kernel(read_boot(inputs.boot).kernel, f"{inputs.boot}:kernel")
        release, vermagic = kernel.release, kernel.vermagic
    return KernelInterface(
        exports=exports,
        kmi=read_kmi_symbol_lists(inputs.kmi_symbol_lists) if inputs.kmi_symbol_lists else None,
        protected=(read_protected_exports(inputs.protected_exports)
                   if inputs.protected_exports else frozenset()),
        vermagic=vermagic, release=release)


def _own_ramdisk(boot: Path | None) -> Path | None:
    """A boot.img v0-v2 carries the device's ramdisk: its modules are the set."""
    return boot if boot is not None and read_boot(boot).header_version < 3 else None


def load_plan(inputs: CheckInputs, release: str) -> LoadPlan:
    """The plan `run` makes of the same images and directories (runtime/loader.py)."""
    boot = read_boot(inputs.boot) if inputs.boot else None
    vendor = read_vendor_boot(inputs.vendor_boot) if inputs.vendor_boot else None
    ramdisk = bootloader_ramdisk(boot, vendor)
    image = parse_kernel(boot.kernel, f"{inputs.boot}:kernel").image if boot else b""
    return plan_for(unpack_initrd(ramdisk, "initrd") if ramdisk else {}, release, image,
                    vendor.bootconfig if vendor and vendor.header_version >= 4 else b"",
                    bootloader_cmdline(boot, vendor), inputs.dlkm_dirs(), inputs.boot_mode)


def _modules_release(modules: list[ModuleFacts]) -> str | None:
    """Without a kernel image, the modules say what they were built for."""
    releases = Counter(m.vermagic.split(" ", 1)[0] for m in modules if m.vermagic)
    return releases.most_common(1)[0][0] if releases else None


def read_module_set(inputs: CheckInputs, module_files: list[Path]) -> list[ModuleFacts]:
    modules = load_module_set(inputs.vendor_boot, module_files,
                              None if inputs.vendor_boot else _own_ramdisk(inputs.boot))
    if not modules:
        where = (inputs.vendor_boot or next(iter(inputs.dlkm_dirs().values()), None)
                 or (inputs.modules_dirs[0] if inputs.modules_dirs else inputs.boot or ""))
        raise InputError(where, "no kernel modules (.ko) found")
    return modules


def _analyze(inputs: CheckInputs, module_files: list[Path]) -> StaticReport:
    kernel = kernel_interface(inputs)
    modules = read_module_set(inputs, module_files)
    release = kernel.release or _modules_release(modules)
    plan = load_plan(inputs, release or "") if inputs.planned() else None
    return replace(analyze(kernel, modules, plan), kernel_release=release)


def input_module_files(inputs: CheckInputs) -> list[Path]:
    """The given files checked, and the .ko files of the dlkm and modules directories."""
    if not inputs.planned() and not inputs.modules_dirs:
        raise InputError("(command line)", "give a vendor boot image, a dlkm partition and/or "
                                           "a modules directory")
    for p in inputs.files():
        regular_file(p)
    return [p for d in (*inputs.dlkm_dirs().values(), *inputs.modules_dirs)
            for p in find_modules(d)]


def run_check(inputs: CheckInputs, cache_root: Path | None,
              warn: Callable[[str], None] | None = None) -> StaticReport:
    module_files = input_module_files(inputs)
    # The dlkm directories' load lists, modules.dep... make the plan as much as the .ko do.
    loader_files = [d / f for d in inputs.dlkm_dirs().values() for f in android.MODULES_FILES
                    if (d / f).is_file()]
    fingerprints = []
    for p in inputs.files() + loader_files + module_files:
        with reading(p):
            fingerprints.append(file_fingerprint(p))
    key = hashlib.sha256(repr((ANALYSIS_VERSION, inputs, fingerprints)).encode()).hexdigest()
    return memo(cache_root / "reports" if cache_root else None, key,
                lambda: _analyze(inputs, module_files), StaticReport, warn)
