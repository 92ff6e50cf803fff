"""Symbol sources: what the kernel exports (symvers or System.map) and what the KMI allows.

Formats:
- vmlinux.symvers / Module.symvers (scripts/mod/modpost.c write_dump, 5.8+): one export a line,
  `0xCRC<TAB>SYMBOL<TAB>OWNER<TAB>EXPORT_TYPE<TAB>NAMESPACE`; OWNER is `vmlinux` for the kernel.
- System.map: `ADDRESS TYPE NAME`; every export has a `__ksymtab_NAME` entry. No CRCs, no
  export type, no namespace: what `depmod -F` works from.
- Android KMI symbol lists (abi_gki_aarch64*, Kleaf's kmi_symbol_list): `[abi_symbol_list]`,
  then one symbol a line indented by two spaces; `#` starts a comment. Several are merged.
  Kleaf's flattened abi_symbollist.raw (a name ending in `.raw`) is the same without the header.
- Protected exports (abi_gki_protected_exports_<arch>): one symbol a line.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bootverify.errors import InputError, reading, regular_file

KERNEL_OWNER = "vmlinux"
KSYMTAB_PREFIX = "__ksymtab_"
KMI_LIST_HEADER = "[abi_symbol_list]"
RAW_SUFFIX = ".raw"         # Kleaf's abi_symbollist.raw
# C identifiers, plus the '.' and '$' compilers put into local clones.
SYMBOL_NAME = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*\Z")


class ExportType(enum.Enum):
    """The export macros as symvers names them."""
    EXPORT_SYMBOL = "EXPORT_SYMBOL"
    EXPORT_SYMBOL_GPL = "EXPORT_SYMBOL_GPL"
    UNKNOWN = "unknown"         # System.map does not say


@dataclass(frozen=True)
class Export:
    name: str
    owner: str                  # "vmlinux" or the providing module's path without .ko
    crc: int | None = None      # None where the source has no CRCs (System.map)
    type: ExportType = ExportType.UNKNOWN
    namespace: str = ""

    @property
    def gpl_only(self) -> bool:
        return self.type is ExportType.EXPORT_SYMBOL_GPL


@dataclass(frozen=True)
class KernelExports:
    """The kernel's own exports (owner vmlinux), from one source."""
    source: str
    exports: Mapping[str, Export]
    has_crcs: bool


def _read_text(path: Path | str) -> str:
    regular_file(path)
    try:
        with reading(path):
            return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(path, "not a text file") from None


def parse_symvers(text: str, path: object) -> list[Export]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) not in (4, 5):
            raise InputError(path, f"line {lineno}: expected 'CRC<TAB>SYMBOL<TAB>OWNER<TAB>"
                                   f"EXPORT_TYPE<TAB>NAMESPACE', got {line[:80]!r}")
        crc_text, name, owner, kind = cols[:4]
        try:
            crc = int(crc_text, 16)
            etype = ExportType(kind)
            if not 0 <= crc <= 0xffffffff:      # a u32 in __kcrctab; int() also takes a sign
                raise ValueError(crc_text)
        except ValueError:
            raise InputError(path, f"line {lineno}: bad CRC or export type in {line[:80]!r}") \
                from None
        if etype is ExportType.UNKNOWN or not SYMBOL_NAME.match(name):
            raise InputError(path, f"line {lineno}: bad symbol line {line[:80]!r}")
        out.append(Export(name, owner, crc, etype, cols[4] if len(cols) == 5 else ""))
    return out


def read_symvers(path: Path | str) -> list[Export]:
    """Every row of a Module.symvers / vmlinux.symvers, modules' exports included."""
    return parse_symvers(_read_text(path), path)


def kernel_exports_from_symvers(path: Path | str) -> KernelExports:
    rows = read_symvers(path)
    if not rows:
        raise InputError(path, "no exports in symvers file")
    return KernelExports(str(path), {e.name: e for e in rows if e.owner == KERNEL_OWNER}, True)


def kernel_exports_from_system_map(path: Path | str) -> KernelExports:
    exports: dict[str, Export] = {}
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        cols = line.split()
        if len(cols) != 3 or not re.fullmatch(r"[0-9a-fA-F]+", cols[0]):
            raise InputError(path, f"line {lineno}: expected 'ADDRESS TYPE NAME' "
                                   f"(System.map), got {line[:80]!r}")
        if cols[2].startswith(KSYMTAB_PREFIX):
            name = cols[2][len(KSYMTAB_PREFIX):]
            exports[name] = Export(name, KERNEL_OWNER)
    if not exports:
        raise InputError(path, "no __ksymtab_ entries: not a System.map of a kernel with exports")
    return KernelExports(str(path), exports, False)


def parse_kmi_symbol_list(text: str, path: object, *, raw: bool = False) -> frozenset[str]:
    """A KMI symbol list; `raw`: the flattened form (abi_symbollist.raw), no header."""
    symbols: set[str] = set()
    seen_header = raw
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if line != KMI_LIST_HEADER:
                raise InputError(path, f"line {lineno}: unknown section {line!r} "
                                       f"(a KMI symbol list has only {KMI_LIST_HEADER})")
            seen_header = True
            continue
        if not seen_header:
            raise InputError(path, f"line {lineno}: symbol before the {KMI_LIST_HEADER} header")
        if not SYMBOL_NAME.match(line):
            raise InputError(path, f"line {lineno}: not a symbol name: {line[:80]!r}")
        symbols.add(line)
    if not seen_header:
        raise InputError(path, f"no {KMI_LIST_HEADER} header: not an Android KMI symbol list")
    return frozenset(symbols)


def read_kmi_symbol_lists(paths: Iterable[Path | str]) -> frozenset[str]:
    """Several lists merged into one, as Kleaf flattens kmi_symbol_list + additional lists."""
    merged: set[str] = set()
    for p in paths:
        merged |= parse_kmi_symbol_list(_read_text(p), p, raw=str(p).endswith(RAW_SUFFIX))
    return frozenset(merged)


def format_kmi_symbol_list(symbols: Iterable[str]) -> str:
    return KMI_LIST_HEADER + "\n" + "".join(f"  {s}\n" for s in sorted(symbols))


def format_kmi_symbol_list_sections(sections: Iterable[tuple[str, Iterable[str]]]) -> str:
    """A list in sections, each after a blank line and its `# comment` (Kleaf writes
    `# required by X.ko`), ready to append to abi_gki_aarch64_<vendor>."""
    return KMI_LIST_HEADER + "\n" + "".join(
        f"\n# {comment}\n" + "".join(f"  {s}\n" for s in symbols) for comment, symbols in sections)


def read_protected_exports(path: Path | str) -> frozenset[str]:
    out: set[str] = set()
    for lineno, raw in enumerate(_read_text(path).splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if line and not SYMBOL_NAME.match(line):
            raise InputError(path, f"line {lineno}: not a symbol name: {line[:80]!r}")
        if line:
            out.add(line)
    return frozenset(out)
