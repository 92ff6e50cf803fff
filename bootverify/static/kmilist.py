"""The KMI symbol list a module set needs, and what the given lists lack of it.

What Kleaf does at build time (build/kernel/abi/extract_symbols, run by `kernel_abi`'s
`extract_symbols` with --additions-only, and kmi_symbol_list_strict_mode's
compare_to_symbol_list), done here on the built artifacts instead of a build tree:
- the vendor modules are the unsigned ones (Kleaf: those not in --gki-modules); signed modules,
  system_dlkm's (the GKI's partition) and the given GKI module directories are GKI modules;
- a vendor module needs from the GKI what it references (undefined, weak included: both go
  through find_symbol()) and vmlinux or a GKI module exports, vmlinux first as find_symbol()
  searches; what another vendor module provides is no KMI question, what nobody provides is
  reported, not listed;
- module_layout, whose CRC check_modstruct_version() compares for every module with
  __versions (Kleaf lists it always), and for a `__tracepoint_X` its `__traceiter_X`
  (extract_symbols' add_dependent_symbols(): the iterator carries the tracepoint's full type,
  so the ABI monitoring sees changes to it);
- strict mode: vmlinux's exports must be exactly the lists (compare_to_symbol_list with its
  default KMI_STRICT_MODE_OBJECTS=vmlinux).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from bootverify.readers.modules import ModuleFacts, find_modules, module_name
from bootverify.readers.symbols import KernelExports
from bootverify.static.analysis import MODULE_LAYOUT, KernelInterface
from bootverify.static.check import (CheckInputs, input_module_files, kernel_interface,
                                     read_module_set)

TRACEPOINT_PREFIX, TRACEITER_PREFIX = "__tracepoint_", "__traceiter_"


@dataclass(frozen=True)
class SymbolNeed:
    symbol: str
    required_by: tuple[str, ...]        # module files (X.ko), sorted


@dataclass(frozen=True)
class KmiNeeds:
    needed: tuple[SymbolNeed, ...]      # from vmlinux or a GKI module, by symbol
    unprovided: tuple[SymbolNeed, ...]  # non-weak references nothing given exports


@dataclass(frozen=True)
class StrictCheck:
    """kmi_symbol_list_strict_mode: vmlinux exports exactly the KMI lists."""
    unlisted_exports: tuple[str, ...]   # exported, in no list (trimming did not remove them)
    listed_not_exported: tuple[str, ...]  # Kleaf's "Symbols missing from ksymtab"

    @property
    def equal(self) -> bool:
        return not self.unlisted_exports and not self.listed_not_exported


def module_file(m: ModuleFacts) -> str:
    """X.ko, as Kleaf's `# required by` comments name a module."""
    return PurePosixPath(m.path.rsplit(":", 1)[-1]).name


def references(m: ModuleFacts, kernel_exports: frozenset[str]) -> frozenset[str]:
    """What one module asks the kernel's find_symbol() for, and what a KMI list needs for it."""
    refs = set(m.undefined_set | m.weak_set)
    if m.versions and MODULE_LAYOUT in kernel_exports:
        refs.add(MODULE_LAYOUT)
    refs |= {TRACEITER_PREFIX + s.removeprefix(TRACEPOINT_PREFIX) for s in refs
             if s.startswith(TRACEPOINT_PREFIX)
             and TRACEITER_PREFIX + s.removeprefix(TRACEPOINT_PREFIX) in kernel_exports}
    return frozenset(refs)


def kmi_needs(kernel: KernelExports, modules: Sequence[ModuleFacts],
              gki_names: frozenset[str]) -> KmiNeeds:
    """gki_names: the modules that are GKI's (besides the signed ones)."""
    vendor = [m for m in modules if not m.signed and m.name not in gki_names]
    vendor_names = {m.name for m in vendor}
    generic = frozenset(kernel.exports) | {e.name for m in modules if m.name not in vendor_names
                                           for e in m.exports}
    from_vendor = {e.name for m in vendor for e in m.exports}
    needed: dict[str, set[str]] = {}
    unprovided: dict[str, set[str]] = {}
    for m in vendor:
        for sym in references(m, frozenset(kernel.exports)):
            if sym in generic:
                needed.setdefault(sym, set()).add(module_file(m))
            elif sym not in from_vendor and sym not in m.weak_set:
                unprovided.setdefault(sym, set()).add(module_file(m))

    def needs(table: dict[str, set[str]]) -> tuple[SymbolNeed, ...]:
        return tuple(SymbolNeed(s, tuple(sorted(by))) for s, by in sorted(table.items()))
    return KmiNeeds(needs(needed), needs(unprovided))


def additions(needs: KmiNeeds, kmi: frozenset[str]) -> tuple[SymbolNeed, ...]:
    """What Kleaf's --additions-only would append: needed and in none of the lists."""
    return tuple(n for n in needs.needed if n.symbol not in kmi)


COMMON_SECTION = "commonly used symbols"


def by_modules(needs: Iterable[SymbolNeed]) -> list[tuple[str, list[str]]]:
    """The list's sections as Kleaf's create_symbol_list() writes them: what more than one
    module needs under `commonly used symbols` first, then `required by X.ko` a module."""
    groups: dict[str, list[str]] = {}
    for n in needs:
        key = COMMON_SECTION if len(n.required_by) > 1 else f"required by {n.required_by[0]}"
        groups.setdefault(key, []).append(n.symbol)
    return sorted(((k, sorted(v)) for k, v in groups.items()),
                  key=lambda group: (group[0] != COMMON_SECTION, group[0]))


def strict_check(kernel: KernelExports, kmi: frozenset[str]) -> StrictCheck:
    exported = frozenset(kernel.exports)
    return StrictCheck(tuple(sorted(exported - kmi)), tuple(sorted(kmi - exported)))


def read_kmi_inputs(inputs: CheckInputs, gki_dirs: tuple[Path, ...]
                    ) -> tuple[KernelInterface, list[ModuleFacts], frozenset[str]]:
    """`check`'s inputs read for the list: the kernel, every module (the GKI directories'
    too), and the names of the GKI modules among them besides the signed ones: system_dlkm's
    (GKI's partition) and the given directories'."""
    inputs = replace(inputs, modules_dirs=inputs.modules_dirs + gki_dirs)
    modules = read_module_set(inputs, input_module_files(inputs))
    dirs = (*gki_dirs, *([inputs.system_dlkm] if inputs.system_dlkm else []))
    gki = frozenset(module_name(p) for d in dirs for p in find_modules(d))
    return kernel_interface(inputs), modules, gki
