"""A full-kernel-replacement build against the GKI build it replaces, statically.

A device that builds its own kernel (no GKI base kernel, no KMI enforcement) still ships the
GKI's modules (system_dlkm) and its own device modules; both were built against some kernel's
CRCs, and both must load on the replacement. The inputs are the two builds' files (a dist
reader or the command line fills them); out come the KMI difference between the two kernels'
symvers (kmidiff.py), the static verdict of every GKI and device module on the replacement
(analysis.py, with the GKI's KMI lists: on an untrimmed replacement a use outside them is
latent), and for a module the KMI changes that explain its failure: the changed or removed
symbols among those its problems name (a GKI module built against the GKI kernel's CRC of
crypto_register_shash fails on the replacement's).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bootverify.errors import InputError
from bootverify.readers.bootimg import read_boot
from bootverify.readers.dist import Dist
from bootverify.readers.kernel import parse_kernel
from bootverify.readers.modules import find_modules, module_name
from bootverify.readers.partition import open_partition
from bootverify.readers.symbols import read_kmi_symbol_lists, read_symvers
from bootverify.static.analysis import Prediction, StaticReport
from bootverify.static.check import CheckInputs, run_check
from bootverify.static.kmidiff import KmiChange, KmiDiff, exports_by_symbol, kmi_diff


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
    protected_exports: Path | None = None   # when the replacement keeps GKI's protection


@dataclass(frozen=True)
class ReplacementInputs:
    gki: GkiBuild
    replacement: ReplacementBuild

    def check_inputs(self) -> CheckInputs:
        """Every module of both builds, checked against the replacement kernel and the GKI's
        KMI."""
        r = self.replacement
        return CheckInputs(symvers=r.symvers, kmi_symbol_lists=self.gki.kmi_symbol_lists,
                           protected_exports=r.protected_exports, boot=r.boot,
                           vendor_boot=r.vendor_kernel_boot,
                           modules_dirs=tuple(d for d in (self.gki.modules_dir, r.vendor_dlkm)
                                              if d))


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


Given = Mapping[str, object]     # an option's value (a Path, a tuple of them) or None


def replacement_inputs(gki_dist: Dist | None, dist: Dist | None,
                       given: Given) -> ReplacementInputs:
    """The two builds' files: each from `given` (the command line's options, by their
    argparse names) when there, else from its dist directory (readers/dist.py). Missing the
    GKI's symvers, the replacement's boot image or symvers is an InputError. The GKI modules
    are the GKI dist's system_dlkm, the device's modules its dist's vendor_kernel_boot and
    vendor_dlkm."""
    def pick(name: str, build: Dist | None, field: str) -> Any:
        return given.get(name) or (getattr(build, field) if build else None)

    def need(name: str, build: Dist | None, field: str, option: str, dist_option: str,
             what: str) -> Path:
        value = pick(name, build, field)
        if value is None:
            raise InputError("(command line)", f"no {what}: give {option} FILE, or "
                                               f"{dist_option} DIR that has it")
        return Path(value)

    gki = GkiBuild(
        symvers=need("gki_symvers", gki_dist, "symvers", "--gki-symvers", "--gki-dist",
                     "symvers of the GKI kernel"),
        kmi_symbol_lists=tuple(pick("kmi_symbol_list", gki_dist, "kmi_symbol_lists") or ()),
        modules_dir=pick("gki_modules", gki_dist, "system_dlkm"))
    replacement = ReplacementBuild(
        boot=need("boot", dist, "boot", "--boot", "--dist", "boot image of your kernel"),
        symvers=need("symvers", dist, "symvers", "--symvers", "--dist", "symvers of your kernel"),
        vendor_kernel_boot=pick("vendor_kernel_boot", dist, "vendor_kernel_boot"),
        vendor_dlkm=pick("vendor_dlkm", dist, "vendor_dlkm"),
        protected_exports=pick("protected_exports", dist, "protected_exports"))
    return ReplacementInputs(gki, replacement)


def failing_symbols(p: Prediction) -> list[str]:
    return [x.symbol for x in p.problems if x.fatal and x.symbol]


def analyze_replacement(inputs: ReplacementInputs, cache_root: Path | None) -> ReplacementReport:
    kmi = (read_kmi_symbol_lists(inputs.gki.kmi_symbol_lists)
           if inputs.gki.kmi_symbol_lists else None)
    diff = kmi_diff(exports_by_symbol(read_symvers(inputs.gki.symvers)),
                    exports_by_symbol(read_symvers(inputs.replacement.symvers)), kmi)
    static = run_check(inputs.check_inputs(), cache_root)
    gki = inputs.gki.modules_dir
    names = frozenset(module_name(p) for p in find_modules(gki)) if gki else frozenset()
    return ReplacementReport(diff, kmi is not None, static, names)


@contextmanager
def partitions_opened(inputs: ReplacementInputs) -> Iterator[ReplacementInputs]:
    """The inputs with each dlkm partition (a directory, image or staging archive) as the
    modules directory the device sees, extracted for as long as the `with` lasts; the release
    directory is your kernel's (its boot image's)."""
    r = inputs.replacement
    release = parse_kernel(read_boot(r.boot).kernel, f"{r.boot}:kernel").release
    with ExitStack() as stack:
        def modules_dir(path: Path | None) -> Path | None:
            return stack.enter_context(open_partition(path, release)).modules_dir \
                if path else None
        gki = replace(inputs.gki, modules_dir=modules_dir(inputs.gki.modules_dir))
        yield ReplacementInputs(gki, replace(r, vendor_dlkm=modules_dir(r.vendor_dlkm)))
