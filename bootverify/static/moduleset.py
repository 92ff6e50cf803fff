"""The module set under test: every .ko in a vendor boot image's ramdisks and given files.

Files are parsed on every core. Nothing is cached here: a whole report is remembered by
static/check.py under its inputs' fingerprints, which is what makes a warm run cheap; caching
per-module facts as well cost more to write (~9 MB for Debian's 3,700 modules) than it saved.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bootverify.readers.bootimg import read_vendor_boot
from bootverify.readers.modules import MODULE_SUFFIXES, ModuleFacts, parse_module, read_module
from bootverify.readers.ramdisk import unpack_initrd

# Below this many modules a process pool costs more than it saves.
PARALLEL_MIN = 64


def _from_files(paths: Sequence[Path]) -> list[ModuleFacts]:
    workers = os.cpu_count() or 1
    if len(paths) < PARALLEL_MIN or workers == 1:
        return [read_module(p) for p in paths]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(read_module, paths, chunksize=64))


def _from_vendor_boot(image: Path) -> list[ModuleFacts]:
    img = read_vendor_boot(image)
    out = []
    for i, fragment in enumerate(img.ramdisks):
        label = f"{image}:{fragment.name or f'ramdisk{i}'}"
        for name, entry in sorted(unpack_initrd(fragment.data, label).items()):
            if entry.is_file and name.endswith(MODULE_SUFFIXES):
                out.append(parse_module(entry.data, f"{label}/{name}"))
    return out


def load_module_set(vendor_boot: Path | None, files: Sequence[Path]) -> list[ModuleFacts]:
    """All modules, the image's first, then the files in order; a name seen twice keeps its
    first file, as the kernel refuses the second (EEXIST)."""
    modules = (_from_vendor_boot(vendor_boot) if vendor_boot else []) + _from_files(files)
    seen: set[str] = set()
    unique = []
    for m in modules:
        if m.name not in seen:
            seen.add(m.name)
            unique.append(m)
    return unique
