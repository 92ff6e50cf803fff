"""The module set under test: every .ko in a vendor boot image's ramdisks and given files.

Files are parsed on every core. Nothing is cached here: a whole report is remembered by
static/check.py under its inputs' fingerprints, which is what makes a warm run cheap; caching
per-module facts as well cost more to write (~9 MB for Debian's 3,700 modules) than it saved.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bootverify.readers.bootimg import read_boot, read_vendor_boot
from bootverify.readers.modules import MODULE_SUFFIXES, ModuleFacts, parse_module, read_module
from bootverify.readers.ramdisk import unpack_initrd

# Below this many modules a process pool costs more than it saves.
PARALLEL_MIN = 64


def _from_files(paths: Sequence[Path]) -> list[ModuleFacts]:
    workers = os.cpu_count() or 1
    if len(paths) < PARALLEL_MIN or workers == 1:
        return [read_module(p) for p in paths]
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_signals)
    try:
        return list(pool.map(read_module, paths, chunksize=64))
    finally:
        # On SIGTERM or Ctrl-C too: what has not started is dropped, the workers are joined.
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_signals() -> None:
    """A worker leaves signals to its parent, which stops the pool: Ctrl-C (sent to the whole
    process group) is ignored, SIGTERM and SIGHUP end it quietly (no traceback of its own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def _from_image(image: Path, own_ramdisk: bool) -> list[ModuleFacts]:
    """The modules in a vendor boot image's ramdisks, or (own_ramdisk) in a boot.img's own
    ramdisk: v0-v2 carry the device's modules there."""
    fragments = [("ramdisk", read_boot(image).ramdisk)] if own_ramdisk else [
        (r.name or f"ramdisk{i}", r.data) for i, r in enumerate(read_vendor_boot(image).ramdisks)]
    out = []
    for fragment, data in fragments:
        label = f"{image}:{fragment}"
        for name, entry in sorted(unpack_initrd(data, label).items()):
            if entry.is_file and name.endswith(MODULE_SUFFIXES):
                out.append(parse_module(entry.data, f"{label}/{name}"))
    return out


def load_module_set(vendor_boot: Path | None, files: Sequence[Path],
                    boot_ramdisk: Path | None = None) -> list[ModuleFacts]:
    """All modules, the image's first (the vendor boot image's, else the boot.img's own
    ramdisk's), then the files in order; a name seen twice keeps its first file, as the kernel
    refuses the second (EEXIST)."""
    from_image = _from_image(vendor_boot, False) if vendor_boot else \
        _from_image(boot_ramdisk, True) if boot_ramdisk else []
    modules = from_image + _from_files(files)
    seen: set[str] = set()
    unique = []
    for m in modules:
        if m.name not in seen:
            seen.add(m.name)
            unique.append(m)
    return unique
