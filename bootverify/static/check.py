"""`bootverify check` as a function: input files in, StaticReport out, remembered by input.

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

from bootverify.cache import file_fingerprint, memo
from bootverify.errors import InputError, reading, regular_file
from bootverify.readers.bootimg import read_boot
from bootverify.readers.kernel import parse_kernel
from bootverify.readers.modules import find_modules
from bootverify.readers.symbols import (kernel_exports_from_symvers,
                                        kernel_exports_from_system_map, read_kmi_symbol_lists,
                                        read_protected_exports)
from bootverify.static.analysis import KernelInterface, StaticReport, analyze
from bootverify.static.moduleset import load_module_set

ANALYSIS_VERSION = 7        # bump when the rules change, so cached reports are not reused


@dataclass(frozen=True)
class CheckInputs:
    symvers: Path | None = None
    system_map: Path | None = None
    kmi_symbol_lists: tuple[Path, ...] = ()
    protected_exports: Path | None = None
    boot: Path | None = None                # its kernel gives release and vermagic
    vendor_boot: Path | None = None
    modules_dirs: tuple[Path, ...] = ()

    def files(self) -> list[Path]:
        return [p for p in (self.symvers, self.system_map, *self.kmi_symbol_lists,
                            self.protected_exports, self.boot, self.vendor_boot) if p]


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


def _analyze(inputs: CheckInputs, module_files: list[Path]) -> StaticReport:
    kernel = kernel_interface(inputs)
    modules = load_module_set(inputs.vendor_boot, module_files,
                              None if inputs.vendor_boot else _own_ramdisk(inputs.boot))
    if not modules:
        where = inputs.vendor_boot or (inputs.modules_dirs[0] if inputs.modules_dirs
                                       else inputs.boot or "")
        raise InputError(where, "no kernel modules (.ko) found")
    report = analyze(kernel, modules)
    if report.kernel_release is None:
        # Without a kernel image, the modules say what they were built for.
        releases = Counter(m.vermagic.split(" ", 1)[0] for m in modules if m.vermagic)
        report = replace(report, kernel_release=releases.most_common(1)[0][0]
                         if releases else None)
    return report


def run_check(inputs: CheckInputs, cache_root: Path | None,
              warn: Callable[[str], None] | None = None) -> StaticReport:
    if not inputs.vendor_boot and not inputs.modules_dirs and not inputs.boot:
        raise InputError("(command line)", "give a vendor boot image and/or a modules directory")
    for p in inputs.files():
        regular_file(p)
    module_files = [p for d in inputs.modules_dirs for p in find_modules(d)]
    fingerprints = []
    for p in inputs.files() + module_files:
        with reading(p):
            fingerprints.append(file_fingerprint(p))
    key = hashlib.sha256(repr((ANALYSIS_VERSION, inputs, fingerprints)).encode()).hexdigest()
    return memo(cache_root / "reports" if cache_root else None, key,
                lambda: _analyze(inputs, module_files), StaticReport, warn)
