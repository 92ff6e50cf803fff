"""A full-kernel-replacement build against the GKI build it replaces, statically.

A device that builds its own kernel (no GKI base kernel, no KMI enforcement) still ships the
GKI's modules (system_dlkm) and its own device modules; both were built against some kernel's
CRCs, and both must load on the replacement. The inputs are the two builds' files (the dist
reader, inputs.py or the command line fill them); out come the KMI difference between the two
kernels' symvers (kmidiff.py), the static verdict of every GKI and device module on the
replacement (check.py, with the GKI's KMI lists: on an untrimmed replacement a use outside
them is latent; the GKI modules loaded as system_dlkm), and for a module the KMI changes that
explain its failure: the changed or removed symbols among those its problems name (a GKI module
built against the GKI kernel's CRC of crypto_register_shash fails on the replacement's).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bootverify.android import BootMode
from bootverify.errors import InputError
from bootverify.readers.dist import Dist
from bootverify.readers.modules import find_modules, module_name
from bootverify.readers.symbols import read_kmi_symbol_lists, read_symvers
from bootverify.static.analysis import Prediction, StaticReport
from bootverify.static.check import CheckInputs, run_check
from bootverify.static.kmidiff import KmiChange, KmiDiff, exports_by_symbol, kmi_diff

if TYPE_CHECKING:       # inputs.py makes the files ready; this module only reads its fields
    from bootverify.inputs import Opened


@dataclass(frozen=True)
class GkiBuild:
    """What the GKI build gives: its kernel's exports, its KMI, its modules."""
    symvers: Path
    kmi_symbol_lists: tuple[Path, ...] = ()
    modules_dir: Path | None = None     # the GKI modules (system_dlkm), as the device has them


@dataclass(frozen=True)
class ReplacementBuild:
    """What the device's own build gives: its kernel and its modules."""
    boot: Path                          # boot.img with the replacement kernel
    symvers: Path
    vendor_kernel_boot: Path | None = None
    vendor_dlkm: Path | None = None     # a modules directory, as the device has it
    modules_dirs: tuple[Path, ...] = ()     # further modules, a plain set (no load plan)
    protected_exports: Path | None = None   # when the replacement keeps GKI's protection
    boot_mode: BootMode | None = None


@dataclass(frozen=True)
class ReplacementInputs:
    gki: GkiBuild
    replacement: ReplacementBuild

    def check_inputs(self) -> CheckInputs:
        """Every module of both builds, checked against the replacement kernel and the GKI's
        KMI, loaded as the device would: the GKI modules as system_dlkm."""
        r = self.replacement
        return CheckInputs(symvers=r.symvers, kmi_symbol_lists=self.gki.kmi_symbol_lists,
                           protected_exports=r.protected_exports, boot=r.boot,
                           vendor_boot=r.vendor_kernel_boot, modules_dirs=r.modules_dirs,
                           system_dlkm=self.gki.modules_dir, vendor_dlkm=r.vendor_dlkm,
                           boot_mode=r.boot_mode)


def gki_build(dist: Dist | None, symvers: Path | None, kmi_symbol_lists: tuple[Path, ...],
              modules_dir: Path | None) -> GkiBuild:
    """The GKI side: each given value, else the GKI dist's (readers/dist.py); its symvers is
    the one input a report cannot do without."""
    symvers = symvers or (dist.symvers if dist else None)
    if symvers is None:
        raise InputError("(command line)", "no symvers of the GKI kernel: give --gki-symvers "
                                           "FILE, or --gki-dist DIR that has it")
    return GkiBuild(symvers, kmi_symbol_lists or (dist.kmi_symbol_lists if dist else ()),
                    modules_dir or (dist.system_dlkm if dist else None))


def yours(gki: GkiBuild, inputs: Opened) -> ReplacementInputs:
    """Your build's side from the inputs `run` opened (inputs.py: your --dist merged in,
    partitions extracted, --kernel wrapped), which were given the GKI's modules as system_dlkm
    and its KMI lists; what they ended up with is the GKI's side too."""
    c = inputs.check
    if inputs.boot is None or c.symvers is None:
        raise InputError("(command line)", "no boot image or symvers of your kernel: give "
                                           "--boot (or --kernel) and --symvers, or a --dist "
                                           "directory that has them")
    return ReplacementInputs(
        GkiBuild(gki.symvers, c.kmi_symbol_lists, c.system_dlkm),
        ReplacementBuild(inputs.boot, c.symvers, c.vendor_boot, c.vendor_dlkm, c.modules_dirs,
                         c.protected_exports, c.boot_mode))


class Origin(enum.StrEnum):
    GKI = "gki"             # a GKI module (system_dlkm)
    DEVICE = "device"       # the device's (vendor_kernel_boot, vendor_dlkm)


@dataclass(frozen=True)
class ReplacementReport:
    diff: KmiDiff                       # GKI kernel -> replacement kernel, the KMI's symbols
    kmi_given: bool
    static: StaticReport                # every module, on the replacement
    gki_modules: frozenset[str]         # the names of the GKI build's modules

    def origin(self, module: str) -> Origin:
        return Origin.GKI if module in self.gki_modules else Origin.DEVICE

    @property
    def changes_by_symbol(self) -> Mapping[str, tuple[KmiChange, ...]]:
        table: dict[str, list[KmiChange]] = {}
        for c in self.diff.breaking:
            table.setdefault(c.symbol, []).append(c)
        return {s: tuple(cs) for s, cs in table.items()}

    def explain(self, symbols: Iterable[str]) -> tuple[KmiChange, ...]:
        """The KMI changes (removed, CRC, type, namespace, owner) among these symbols."""
        table = self.changes_by_symbol
        return tuple(c for s in sorted(set(symbols)) for c in table.get(s, ()))


def failing_symbols(p: Prediction) -> list[str]:
    return [x.symbol for x in p.problems if x.fatal and x.symbol]


def analyze_replacement(inputs: ReplacementInputs, cache_root: Path | None,
                        relabel: Callable[[StaticReport], StaticReport] = lambda r: r
                        ) -> ReplacementReport:
    """relabel: module paths as the user knows them (inputs.Opened.relabel)."""
    kmi = (read_kmi_symbol_lists(inputs.gki.kmi_symbol_lists)
           if inputs.gki.kmi_symbol_lists else None)
    diff = kmi_diff(exports_by_symbol(read_symvers(inputs.gki.symvers)),
                    exports_by_symbol(read_symvers(inputs.replacement.symvers)), kmi)
    static = relabel(run_check(inputs.check_inputs(), cache_root))
    gki = inputs.gki.modules_dir
    names = frozenset(module_name(p) for p in find_modules(gki)) if gki else frozenset()
    return ReplacementReport(diff, kmi is not None, static, names)

