"""The module set under test: every .ko in a vendor boot image's ramdisks and given files.

Facts are cached by file content under $BOOTVERIFY_CACHE/check/: `facts.pickle` maps a
content digest to its ModuleFacts, `index.pickle` maps a path and its stat to the digest (as
git's index does) so a warm run reads no .ko at all. Cold runs parse on every core.
"""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bootverify.cache import file_fingerprint, load_pickle, store_pickle
from bootverify.errors import InputError
from bootverify.readers.bootimg import VendorBootImage, read_boot_image
from bootverify.readers.modules import MODULE_SUFFIXES, ModuleFacts, parse_module
from bootverify.readers.ramdisk import unpack_initrd

# Below this many modules a process pool costs more than it saves.
PARALLEL_MIN = 64
CACHE_FORMAT = 2        # bump when ModuleFacts changes shape or what the reader puts in it


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parse_file(path: str) -> tuple[str, ModuleFacts]:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(path, e.strerror or str(e)) from None
    return digest(data), parse_module(data, path)


class FactsCache:
    """Content-addressed ModuleFacts, with a stat index in front."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.index: dict[str, tuple[tuple[object, ...], str]] = self._load("index")
        self.facts: dict[str, ModuleFacts] = self._load("facts")
        self.dirty = False

    def _load(self, name: str) -> dict:  # type: ignore[type-arg]
        if self.root is None:
            return {}
        stored = load_pickle(self.root / f"{name}.pickle")
        if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == CACHE_FORMAT:
            return stored[1]
        return {}

    def lookup_file(self, path: Path) -> ModuleFacts | None:
        hit = self.index.get(str(path))
        if hit and hit[0] == file_fingerprint(path) and hit[1] in self.facts:
            return dataclasses.replace(self.facts[hit[1]], path=str(path))
        return None

    def store_file(self, path: Path, key: str, facts: ModuleFacts) -> None:
        self.index[str(path)] = (file_fingerprint(path), key)
        self.store(key, facts)

    def lookup(self, key: str, path: str) -> ModuleFacts | None:
        f = self.facts.get(key)
        return dataclasses.replace(f, path=path) if f else None

    def store(self, key: str, facts: ModuleFacts) -> None:
        self.facts[key] = facts
        self.dirty = True

    def save(self) -> None:
        if self.root is not None and self.dirty:
            store_pickle(self.root / "index.pickle", (CACHE_FORMAT, self.index))
            store_pickle(self.root / "facts.pickle", (CACHE_FORMAT, self.facts))


def _from_files(paths: Sequence[Path], cache: FactsCache) -> list[ModuleFacts]:
    found: dict[Path, ModuleFacts] = {}
    missing = []
    for p in paths:
        hit = cache.lookup_file(p)
        if hit:
            found[p] = hit
        else:
            missing.append(p)
    if len(missing) >= PARALLEL_MIN and (os.cpu_count() or 1) > 1:
        with ProcessPoolExecutor(os.cpu_count(),
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            parsed = list(pool.map(_parse_file, map(str, missing), chunksize=64))
    else:
        parsed = [_parse_file(str(p)) for p in missing]
    for p, (key, facts) in zip(missing, parsed):
        cache.store_file(p, key, facts)
        found[p] = facts
    return [found[p] for p in paths]


def _from_vendor_boot(image: Path, cache: FactsCache) -> list[ModuleFacts]:
    img = read_boot_image(image)
    if not isinstance(img, VendorBootImage):
        raise InputError(image, "a boot.img, not a vendor_boot / vendor_kernel_boot image")
    out = []
    for i, fragment in enumerate(img.ramdisks):
        label = f"{image}:{fragment.name or f'ramdisk{i}'}"
        for name, entry in sorted(unpack_initrd(fragment.data, label).items()):
            if entry.is_file and name.endswith(MODULE_SUFFIXES):
                path, key = f"{label}:{name}", digest(entry.data)
                facts = cache.lookup(key, path)
                if facts is None:
                    facts = parse_module(entry.data, path)
                    cache.store(key, facts)
                out.append(facts)
    return out


def load_module_set(vendor_boot: Path | None, files: Sequence[Path],
                    cache_root: Path | None) -> list[ModuleFacts]:
    """All modules, the image's first, then the files in order; a name seen twice keeps its
    first file, as the kernel refuses the second (EEXIST)."""
    cache = FactsCache(cache_root)
    modules = (_from_vendor_boot(vendor_boot, cache) if vendor_boot else []) \
        + _from_files(files, cache)
    cache.save()
    seen: set[str] = set()
    unique = []
    for m in modules:
        if m.name not in seen:
            seen.add(m.name)
            unique.append(m)
    return unique
