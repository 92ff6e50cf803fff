"""A device build's dist directory, as Kleaf (`kernel_images`, `copy_to_dist_dir`) leaves it:
each input found by the name Kleaf gives it.

Interface (stable: `check`, `run` and `replacement` build on it):

    dist = read_dist(Path("out/dist"))     # InputError if it is not a directory
    dist.boot, dist.vendor_kernel_boot, dist.system_dlkm, ...   # Path | None
    dist.kmi_symbol_lists                  # tuple[Path, ...] (may be empty)
    dist.load_lists, dist.blocklists       # {Partition: Path}: the dist's own list files
    dist.found                             # one DistInput per input, in INPUTS order:
                                           #   .input (the CLI option's name), .paths, .wanted
    dist.describe(overrides, unused)       # one line per input: what it took from where,
                                           # what it did not find, what an option overrode,
                                           # what it found and did not use

Every field is a path inside the directory, or None / empty when the build did not leave it.
Nothing is opened here: the other readers read the files (and say what is wrong with them).

The names, each input's in order of preference (the first that exists wins; for the symbol
lists, the first rule that matches anything), from Kleaf build/kernel/kleaf (kernel_images,
kernel_build's outs, abi) and build/kernel/build_utils.sh (build_system_dlkm, build_vendor_dlkm,
build_vendor_kernel_boot), as their dist directories carry them:

- boot: boot.img (GKI builds add boot-gz.img, boot-lz4.img: the same kernel, other packings)
- kernel: Image, Image.lz4, Image.gz
- vendor-kernel-boot: vendor_kernel_boot.img, else vendor_boot.img
- system-dlkm, vendor-dlkm: the partition image (system_dlkm.img, vendor_dlkm.img; ext4 or
  erofs), else its staging archive (system_dlkm_staging_archive.tar.gz, vendor_dlkm_...), else
  a directory of the partition's name
- symvers: vmlinux.symvers (the kernel's own exports), else Module.symvers
- system-map: System.map (what check uses when there is no symvers)
- kmi-symbol-list: abi_symbollist (Kleaf's merged list), else abi_symbollist.raw (flattened,
  one symbol a line), else every abi_gki_aarch64 and abi_gki_aarch64_VENDOR list (a name with
  a dot, abi_gki_aarch64.stg / .xml, is the ABI itself, not a list)
- protected-exports: abi_gki_protected_exports_aarch64
- PARTITION.modules.load: vendor_kernel_boot.modules.load (else vendor_boot.modules.load, else
  a bare modules.load), system_dlkm.modules.load, vendor_dlkm.modules.load
- PARTITION.modules.blocklist: vendor_kernel_boot.modules.blocklist (else
  vendor_boot.modules.blocklist), system_dlkm.modules.blocklist, vendor_dlkm.modules.blocklist

The dist's load lists and blocklists are copies of what the build put inside the images; the
device reads the images' own, so bootverify does too and only compares the two.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootverify.errors import InputError


class Partition(enum.StrEnum):
    """Where a build's modules go; the dist's list files are named after it."""
    VENDOR_KERNEL_BOOT = "vendor_kernel_boot"       # first stage (or vendor_boot)
    SYSTEM_DLKM = "system_dlkm"
    VENDOR_DLKM = "vendor_dlkm"


# Each input's Kleaf names, in order of preference.
BOOT_NAMES = ("boot.img",)
KERNEL_NAMES = ("Image", "Image.lz4", "Image.gz")
VENDOR_BOOT_NAMES = ("vendor_kernel_boot.img", "vendor_boot.img")
SYMVERS_NAMES = ("vmlinux.symvers", "Module.symvers")
SYSTEM_MAP_NAMES = ("System.map",)
KMI_MERGED = "abi_symbollist"
KMI_RAW = "abi_symbollist.raw"
KMI_LIST_GLOB = "abi_gki_aarch64*"                 # abi_gki_aarch64, abi_gki_aarch64_<vendor>
PROTECTED_EXPORTS_NAMES = ("abi_gki_protected_exports_aarch64",)


def dlkm_names(partition: Partition) -> tuple[str, ...]:
    """A dlkm partition as the build leaves it: image, staging archive, or a directory."""
    return (f"{partition}.img", f"{partition}_staging_archive.tar.gz", partition)


LOAD_LIST_NAMES: Mapping[Partition, tuple[str, ...]] = {
    Partition.VENDOR_KERNEL_BOOT: ("vendor_kernel_boot.modules.load", "vendor_boot.modules.load",
                                   "modules.load"),
    Partition.SYSTEM_DLKM: ("system_dlkm.modules.load",),
    Partition.VENDOR_DLKM: ("vendor_dlkm.modules.load",),
}
BLOCKLIST_NAMES: Mapping[Partition, tuple[str, ...]] = {
    Partition.VENDOR_KERNEL_BOOT: ("vendor_kernel_boot.modules.blocklist",
                                   "vendor_boot.modules.blocklist"),
    Partition.SYSTEM_DLKM: ("system_dlkm.modules.blocklist",),
    Partition.VENDOR_DLKM: ("vendor_dlkm.modules.blocklist",),
}

# The inputs, named after the CLI options they stand for, in the order they are described.
INPUTS = ("boot", "kernel", "vendor-kernel-boot", "system-dlkm", "vendor-dlkm", "symvers",
          "system-map", "kmi-symbol-list", "protected-exports",
          *(f"{p}.modules.load" for p in Partition),
          *(f"{p}.modules.blocklist" for p in Partition))


@dataclass(frozen=True)
class DistInput:
    """One input: what was looked for and what was taken (nothing: `paths` is empty)."""
    input: str                      # an INPUTS name
    paths: tuple[Path, ...]
    wanted: tuple[str, ...]         # the names looked for, in order of preference


@dataclass(frozen=True)
class Dist:
    root: Path
    boot: Path | None
    kernel: Path | None
    vendor_kernel_boot: Path | None
    system_dlkm: Path | None        # an image, a staging archive or a directory
    vendor_dlkm: Path | None
    symvers: Path | None
    system_map: Path | None
    kmi_symbol_lists: tuple[Path, ...]
    protected_exports: Path | None
    load_lists: Mapping[Partition, Path]
    blocklists: Mapping[Partition, Path]
    found: tuple[DistInput, ...]    # one per INPUTS entry, in that order

    def get(self, name: str) -> DistInput:
        return next(f for f in self.found if f.input == name)

    def describe(self, overrides: Mapping[str, object] | None = None,
                 unused: Mapping[str, str] | None = None) -> list[str]:
        """One line per input: `INPUT: PATH`, `INPUT: not found in DIR (looked for ...)`; for
        an input in `overrides`, the option's value (a Path or a sequence of them: `INPUT:
        VALUE (--INPUT; the dist has NAME)`) or what replaced it (a str: `INPUT: TEXT; the
        dist has NAME`); for one in `unused`, `INPUT: not used (WHY; the dist has NAME)`."""
        lines = []
        for f in self.found:
            given = (overrides or {}).get(f.input)
            why = (unused or {}).get(f.input)
            has = ", ".join(p.name for p in f.paths)
            if isinstance(given, str) and given:
                lines.append(f"{f.input}: {given}" + (f"; the dist has {has}" if has else ""))
            elif given:
                value = ", ".join(map(str, given)) if isinstance(given, (list, tuple)) \
                    else str(given)
                lines.append(f"{f.input}: {value} (--{f.input}"
                             + (f"; the dist has {has})" if has else ")"))
            elif why and f.paths:
                lines.append(f"{f.input}: not used ({why}; the dist has {has})")
            elif f.paths:
                lines.append(f"{f.input}: {', '.join(str(p) for p in f.paths)}")
            else:
                lines.append(f"{f.input}: not found in {self.root} (looked for "
                             f"{', '.join(f.wanted)})")
        return lines


def _first(root: Path, names: Sequence[str], *, dirs: bool = False) -> Path | None:
    for n in names:
        p = root / n
        if p.is_file() or (dirs and p.is_dir()):
            return p
    return None


def _kmi_lists(root: Path) -> tuple[Path, ...]:
    for name in (KMI_MERGED, KMI_RAW):
        if (root / name).is_file():
            return (root / name,)
    # Symbol lists have no dot in their name; abi_gki_aarch64.stg / .xml are the ABI itself.
    return tuple(sorted(p for p in root.glob(KMI_LIST_GLOB)
                        if p.is_file() and "." not in p.name
                        and p.name not in PROTECTED_EXPORTS_NAMES))


def read_dist(root: Path | str) -> Dist:
    """Find each input of a dist directory by its Kleaf name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a directory (--dist takes a build's dist directory)")
    found: list[DistInput] = []

    def take(name: str, wanted: Sequence[str], paths: Sequence[Path | None]) -> tuple[Path, ...]:
        got = tuple(p for p in paths if p is not None)
        found.append(DistInput(name, got, tuple(wanted)))
        return got

    def one(name: str, wanted: Sequence[str], *, dirs: bool = False) -> Path | None:
        got = take(name, wanted, [_first(root, wanted, dirs=dirs)])
        return got[0] if got else None

    boot = one("boot", BOOT_NAMES)
    kernel = one("kernel", KERNEL_NAMES)
    vendor = one("vendor-kernel-boot", VENDOR_BOOT_NAMES)
    system_dlkm = one("system-dlkm", dlkm_names(Partition.SYSTEM_DLKM), dirs=True)
    vendor_dlkm = one("vendor-dlkm", dlkm_names(Partition.VENDOR_DLKM), dirs=True)
    symvers = one("symvers", SYMVERS_NAMES)
    system_map = one("system-map", SYSTEM_MAP_NAMES)
    kmi = take("kmi-symbol-list", (KMI_MERGED, KMI_RAW, KMI_LIST_GLOB), _kmi_lists(root))
    protected = one("protected-exports", PROTECTED_EXPORTS_NAMES)
    loads = {p: one(f"{p}.modules.load", LOAD_LIST_NAMES[p]) for p in Partition}
    blocks = {p: one(f"{p}.modules.blocklist", BLOCKLIST_NAMES[p]) for p in Partition}
    return Dist(root, boot, kernel, vendor, system_dlkm, vendor_dlkm, symvers, system_map, kmi,
                protected, {p: v for p, v in loads.items() if v},
                {p: v for p, v in blocks.items() if v}, tuple(found))
