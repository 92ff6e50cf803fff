"""Kernel modules: the facts of one .ko that decide whether it links, and a modules directory.

A .ko (scripts/mod/modpost.c + include/linux/export.h) carries what the loader checks:
undefined symbols in .symtab, exports as `__ksymtab_SYM` in __ksymtab / __ksymtab_gpl with
`__kstrtabns_SYM` naming the namespace, each export's u32 CRC (see _crcs(): where it is differs
between 5.15 and 6.1), the CRCs the module was built against in __versions (struct
modversion_info: unsigned long crc, char name[56], the same from 5.10 to 6.12), and .modinfo
strings (vermagic, depends, license, import_ns). The generations' layouts, each read in the
kernel source named:

| | 5.10, 5.15 | 6.1, 6.6, 6.12 |
|---|---|---|
| `__ksymtab_SYM` | in __ksymtab(_gpl) | the same (6.5 on: written by modpost in the .mod.c) |
| `__kstrtabns_SYM` | labels the namespace ("" for none) | the same |
| export CRC | `__crc_SYM` is SHN_ABS, its value | `__crc_SYM` labels it in __kcrctab(_gpl) |

(5.10/5.15: include/linux/export.h __CRC_SYMBOL(), a weak `.long __crc_SYM` that the genksyms
linker script of scripts/Makefile.build defines as an absolute symbol, read in upstream 5.10.13's
source (the Rtoax/linux-5.10.13 mirror) and seen in ACK android14-5.15's prebuilt modules;
6.1: include/linux/export-internal.h SYMBOL_CRC(), Debian's linux-source-6.1; 6.6/6.12:
export-internal.h __KSYMTAB(), Debian's linux-source-6.12.)

A module file may be compressed, `.ko.gz`, `.ko.xz` or `.ko.zst` (scripts/Makefile.modinst,
CONFIG_MODULE_COMPRESS_*; kmod reads all three, by magic): it is decompressed whole in memory
and read as the .ko it holds.

Speed: Debian's ~3,700 arm64 modules are read in well under a second by unpacking the ELF64
tables with struct; pyelftools' ELFFile() alone costs ~0.55 ms a module there (2 s for the set,
against ~0.5 s for all of depmod), so pyelftools is the general path for every other ELF
flavour (32-bit, big-endian) and the fast path covers what Android and Debian ship.
"""

from __future__ import annotations

import enum
import functools
import gzip
import io
import lzma
import mmap
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zstandard

from bootverify.errors import InputError, reading, regular_file

MODULE_SIGNATURE_MAGIC = b"~Module signature appended~\n"   # include/linux/module_signature.h
KSYMTAB_PREFIX = "__ksymtab_"
KSTRTABNS_PREFIX = "__kstrtabns_"
KSYMTAB_GPL_SECTION = "__ksymtab_gpl"
KCRCTAB_PREFIX = "__crc_"
EXPORT_SECTIONS = ("__ksymtab", KSYMTAB_GPL_SECTION, "__ksymtab_strings", "__kcrctab",
                   "__kcrctab_gpl")
FACT_SECTIONS = (".symtab", ".modinfo", "__versions", *EXPORT_SECTIONS)


class ModuleCompression(enum.StrEnum):
    """A module file's compression, named as the kernel names it (kernel/module/decompress.c
    MODULE_COMPRESSION, shown in /sys/module/compression)."""
    GZIP = "gzip"
    XZ = "xz"
    ZSTD = "zstd"


# scripts/Makefile.modinst (6.12) suffix-$(CONFIG_MODULE_COMPRESS_*); kmod's kmod_exts.
COMPRESSED_SUFFIXES = {".ko.gz": ModuleCompression.GZIP, ".ko.xz": ModuleCompression.XZ,
                       ".ko.zst": ModuleCompression.ZSTD}
# The magic each decompressor checks first (decompress.c module_gzip_header_len(),
# module_xz_decompress(), module_zstd_decompress(); libkmod-file.c's magic table).
COMPRESSION_MAGIC = {ModuleCompression.GZIP: b"\x1f\x8b",
                     ModuleCompression.XZ: b"\xfd7zXZ\x00",
                     ModuleCompression.ZSTD: b"\x28\xb5\x2f\xfd"}
MODULE_SUFFIXES = (".ko", *COMPRESSED_SUFFIXES)

ELF_MAGIC = b"\x7fELF"
EI_CLASS, EI_DATA = 4, 5                 # e_ident[] indexes
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
ELF64_LE = (ELFCLASS64, ELFDATA2LSB)
ET_REL = 1
ELF64_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
ELF64_SHDR = struct.Struct("<IIQQQQIIQQ")
ELF64_SYM = struct.Struct("<IBBHQQ")
SHN_UNDEF = 0
SHN_ABS = 0xFFF1        # 5.10/5.15 `__crc_SYM`: the CRC is the symbol's value
SHT_NOBITS = 8          # .bss and the like take no space in the file
STB_WEAK = 2
# include/linux/module.h struct modversion_info { unsigned long crc; char name[MODULE_NAME_LEN]; }
# (MODULE_NAME_LEN = 64 - sizeof(unsigned long)), by (EI_CLASS, EI_DATA)
MODVERSION_INFO = {(ELFCLASS64, ELFDATA2LSB): struct.Struct("<Q56s"),
                   (ELFCLASS64, ELFDATA2MSB): struct.Struct(">Q56s"),
                   (ELFCLASS32, ELFDATA2LSB): struct.Struct("<I60s"),
                   (ELFCLASS32, ELFDATA2MSB): struct.Struct(">I60s")}


@dataclass(frozen=True)
class ModuleExport:
    name: str
    gpl_only: bool
    namespace: str = ""
    crc: int | None = None      # from __kcrctab (CONFIG_MODVERSIONS); None without it


@dataclass(frozen=True)
class ModuleFacts:
    """What one .ko needs and offers, as the kernel's module loader sees it."""
    path: str
    name: str
    undefined: tuple[str, ...]          # non-weak: each must resolve or the load fails
    weak_undefined: tuple[str, ...]     # may stay unresolved
    exports: tuple[ModuleExport, ...]
    versions: Mapping[str, int]         # __versions: symbol -> CRC the module was built against
    vermagic: str
    depends: tuple[str, ...]
    license: str
    import_ns: tuple[str, ...]
    signed: bool

    @functools.cached_property
    def undefined_set(self) -> frozenset[str]:
        return frozenset(self.undefined)

    @functools.cached_property
    def weak_set(self) -> frozenset[str]:
        return frozenset(self.weak_undefined)


def strip_module_suffix(base: str) -> str:
    """A module file name without .ko, .ko.gz, .ko.xz or .ko.zst."""
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            return base[:-len(suffix)]
    return base


def module_name(path: str | Path) -> str:
    """The name the kernel gives a module file: basename without its module suffix (compressed
    or not), '-' as '_' (kmod's rule)."""
    return strip_module_suffix(Path(path).name).replace("-", "_")


def module_compression(data: bytes | mmap.mmap) -> ModuleCompression | None:
    """How the file is compressed, by its magic as kmod decides it; None for anything else."""
    return next((c for c, magic in COMPRESSION_MAGIC.items()
                 if data[:len(magic)] == magic), None)


def decompress_module(data: bytes | mmap.mmap, how: ModuleCompression, path: object) -> bytes:
    """The .ko inside a compressed module file (the whole file: a module is read whole)."""
    try:
        if how is ModuleCompression.GZIP:
            return gzip.decompress(data)
        if how is ModuleCompression.XZ:
            return lzma.decompress(data, format=lzma.FORMAT_XZ)
        # A stream, as a frame need not record its size (zstd --no-content-size); it says
        # nothing of a truncated frame, but leaves eof unset.
        stream = zstandard.ZstdDecompressor().decompressobj()
        out = stream.decompress(data)
        if not stream.eof:
            raise EOFError("the zstd frame ends early")
        return out
    except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as e:
        raise InputError(path, f"corrupt {how} compressed module: {e}") from None


# --- ELF access: (sections by name, symbol iterator) from either backend ---

@dataclass(frozen=True)
class _Section:
    index: int
    offset: int
    size: int
    link: int


Symbol = tuple[str, int, int, int]      # name, st_shndx, binding, st_value


def _cstring(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    return data[offset:end if end >= 0 else len(data)].decode("utf-8", "replace")


def _section_name_offsets(shstrtab: bytes) -> dict[int, str]:
    """Where each fact section's name can start in .shstrtab; a name may also be the tail of a
    longer one (".rela__ksymtab" holds "__ksymtab"), so every occurrence counts."""
    offsets = {}
    for name in FACT_SECTIONS:
        needle = name.encode() + b"\0"
        pos = shstrtab.find(needle)
        while pos >= 0:
            offsets[pos] = name
            pos = shstrtab.find(needle, pos + 1)
    return offsets


def _elf64le_tables(data: bytes, path: object) -> tuple[dict[str, _Section], list[Symbol]]:
    try:
        (_, e_type, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx) = \
            ELF64_HEADER.unpack_from(data)
        if e_type != ET_REL:
            raise InputError(path, f"ELF type {e_type} is not a relocatable object (ET_REL)")
        if shentsize != ELF64_SHDR.size or shoff + shnum * shentsize > len(data) or \
                shstrndx >= shnum:
            raise InputError(path, "truncated or corrupt ELF section header table")
        headers = list(ELF64_SHDR.iter_unpack(data[shoff:shoff + shnum * shentsize]))
        for i, (_, sh_type, _, _, offset, size, *_) in enumerate(headers):
            if sh_type != SHT_NOBITS and offset + size > len(data):
                raise InputError(path, f"truncated: ELF section {i} runs past the end of the file")
        shstr = headers[shstrndx]
        names = _section_name_offsets(data[shstr[4]:shstr[4] + shstr[5]])
        # Only the sections facts come from are named: naming all ~40 cost a fifth of the time.
        sections = {names[h[0]]: _Section(i, h[4], h[5], h[6])
                    for i, h in enumerate(headers) if h[0] in names}
        symtab = sections.get(".symtab")
        if symtab is None:
            raise InputError(path, "no .symtab: not a kernel module (stripped?)")
        str_off = headers[symtab.link][4]
        # Only undefined symbols, the export tables and (5.10/5.15 CRCs) absolute symbols
        # matter; naming just those halves the time.
        wanted = {SHN_UNDEF, SHN_ABS} | {sections[n].index for n in EXPORT_SECTIONS
                                         if n in sections}
        find = data.find
        with memoryview(data) as view:      # released before an mmap'd file is closed
            symbols = [(data[o:find(b"\0", o)].decode("utf-8", "replace"), shndx, info >> 4,
                        value)
                       for st_name, info, _, shndx, value, _ in
                       ELF64_SYM.iter_unpack(view[symtab.offset:symtab.offset + symtab.size])
                       if shndx in wanted and st_name for o in (str_off + st_name,)]
    except (struct.error, IndexError, OverflowError):
        raise InputError(path, "truncated or corrupt ELF file") from None
    return sections, symbols


def _shndx(value: int | str) -> int:
    """pyelftools names the special section indexes; only SHN_UNDEF and SHN_ABS matter here."""
    if isinstance(value, int):
        return value
    return {"SHN_UNDEF": SHN_UNDEF, "SHN_ABS": SHN_ABS}.get(value, -1)


def _pyelftools_tables(data: bytes, path: object) -> tuple[dict[str, _Section], list[Symbol]]:
    # Imported here: the import alone costs more than a warm `check` of a large set.
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        elf = ELFFile(io.BytesIO(bytes(data)))
        if elf["e_type"] != "ET_REL":
            raise InputError(path, f"ELF type {elf['e_type']} is not a relocatable object "
                                   f"(ET_REL)")
        sections = {s.name: _Section(i, s["sh_offset"], s["sh_size"], s["sh_link"])
                    for i, s in enumerate(elf.iter_sections()) if s.name in FACT_SECTIONS}
        for i, s in enumerate(elf.iter_sections()):
            if s["sh_type"] != "SHT_NOBITS" and s["sh_offset"] + s["sh_size"] > len(data):
                raise InputError(path, f"truncated: ELF section {i} runs past the end of the file")
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            raise InputError(path, "no .symtab: not a kernel module (stripped?)")
        symbols = [(s.name, _shndx(s["st_shndx"]),
                    STB_WEAK if s["st_info"]["bind"] == "STB_WEAK" else 0, s["st_value"])
                   for s in symtab.iter_symbols()]
    except ELFError as e:
        raise InputError(path, f"corrupt ELF file: {e}") from None
    # pyelftools trusts the file's numbers: out-of-range ones surface as whatever the code
    # they reach raises (seen: AttributeError, struct.error, ValueError, OverflowError).
    except (AttributeError, struct.error, ValueError, OverflowError, IndexError, KeyError,
            TypeError, UnicodeDecodeError, AssertionError):
        raise InputError(path, "corrupt ELF file (values out of range)") from None
    return sections, symbols


# --- the facts, one function each, from the tables either backend gave ---

@dataclass(frozen=True)
class _Elf:
    """One module's bytes (maybe an mmap) and the tables its facts are read from."""
    data: bytes | mmap.mmap
    path: str
    sections: Mapping[str, _Section]
    symbols: list[Symbol]

    def section(self, name: str) -> bytes:
        s = self.sections.get(name)
        return self.data[s.offset:s.offset + s.size] if s else b""

    @property
    def byteorder(self) -> Literal["little", "big"]:
        return "big" if self.data[EI_DATA] == ELFDATA2MSB else "little"

    @functools.cached_property
    def defined(self) -> list[Symbol]:
        """The symbols that are not SHN_UNDEF: the export tables' labels are among these, and
        the three facts made of them walk this short list, not every symbol again."""
        return [s for s in self.symbols if s[1] != SHN_UNDEF]

    @functools.cached_property
    def _by_index(self) -> dict[int, _Section]:
        return {s.index: s for s in self.sections.values()}

    def labels(self, prefix: str) -> list[tuple[str, int]]:
        """(name without prefix, file offset) of each symbol named prefix+NAME that labels data
        in one of the fact sections; a label outside its section is a corrupt module."""
        by_index = self._by_index
        out = []
        for name, shndx, _, value in self.defined:
            if name.startswith(prefix) and shndx in by_index:
                section = by_index[shndx]
                if not 0 <= value < section.size:
                    raise InputError(self.path, f"symbol {name[:80]!r} lies outside its section "
                                                f"(value {value:#x}, section size "
                                                f"{section.size:#x})")
                out.append((name[len(prefix):], section.offset + value))
        return out


class ElfReader(enum.Enum):
    """Who reads the section and symbol tables: struct for ELF64 little-endian (every arm64
    module: the fast path), pyelftools for any other class or byte order."""
    STRUCT = "struct"
    PYELFTOOLS = "pyelftools"


def elf_reader(data: bytes | mmap.mmap, path: object) -> ElfReader:
    if data[:len(ELF_MAGIC)] != ELF_MAGIC:
        raise InputError(path, "not an ELF file (bad magic): not a kernel module")
    if len(data) < 16:
        raise InputError(path, "truncated ELF header")
    return ElfReader.STRUCT if (data[EI_CLASS], data[EI_DATA]) == ELF64_LE else \
        ElfReader.PYELFTOOLS


def elf_tables(data: bytes | mmap.mmap, path: object,
               reader: ElfReader) -> tuple[dict[str, _Section], list[Symbol]]:
    """The fact sections by name and the symbols; both readers give the same for one file."""
    if reader is ElfReader.STRUCT:
        return _elf64le_tables(data, path)
    return _pyelftools_tables(data, path)


def _read_tables(data: bytes | mmap.mmap, path: str) -> _Elf:
    sections, symbols = elf_tables(data, path, elf_reader(data, path))
    return _Elf(data, path, sections, symbols)


@dataclass(frozen=True)
class _Modinfo:
    """.modinfo: NUL-separated tag=value strings (modpost, MODULE_INFO())."""
    tags: Mapping[str, Sequence[str]]

    def get(self, tag: str) -> str:
        """kernel/module/main.c get_modinfo(): the first entry wins."""
        return self.tags.get(tag, ("",))[0]

    def every(self, tag: str) -> tuple[str, ...]:
        """get_next_modinfo(): all entries, in order (import_ns= repeats)."""
        return tuple(self.tags.get(tag, ()))


def _modinfo(elf: _Elf) -> _Modinfo:
    tags: dict[str, list[str]] = {}
    for item in elf.section(".modinfo").split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            tags.setdefault(key, []).append(value)
    return _Modinfo(tags)


def _name(modinfo: _Modinfo, path: str) -> str:
    """modinfo name= (modpost writes it), else kmod's rule on the file name."""
    return (modinfo.get("name") or module_name(path)).replace("-", "_")


def _depends(modinfo: _Modinfo) -> tuple[str, ...]:
    """modinfo depends=: the modules modpost found providing its symbols, comma-separated."""
    return tuple(d.replace("-", "_") for d in modinfo.get("depends").split(",") if d)


def _undefined(elf: _Elf) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """SHN_UNDEF symbols, (strong, weak): simplify_symbols() lets only STB_WEAK stay unresolved."""
    undefined = [(name, bind) for name, shndx, bind, _ in elf.symbols
                 if shndx == SHN_UNDEF and name]
    return (tuple(sorted(n for n, bind in undefined if bind != STB_WEAK)),
            tuple(sorted(n for n, bind in undefined if bind == STB_WEAK)))


def _namespaces(elf: _Elf) -> dict[str, str]:
    """include/linux/export.h: `__kstrtabns_SYM` labels SYM's namespace in __ksymtab_strings."""
    return {sym: _cstring(elf.data, offset)
            for sym, offset in elf.labels(KSTRTABNS_PREFIX)}


def _crcs(elf: _Elf) -> dict[str, int]:
    """Each export's CRC, as the generation stores it:
    - 5.19 and later (6.1, 6.6, 6.12; include/linux/export-internal.h SYMBOL_CRC(), which modpost
      writes into the .mod.c): `__crc_SYM` labels SYM's u32 in __kcrctab(_gpl), in the target's
      byte order;
    - 5.10 and 5.15 (include/linux/export.h __CRC_SYMBOL(): __kcrctab holds `.long __crc_SYM`,
      filled by an R_*_ABS32 relocation at load; genksyms' linker script defines the symbol):
      `__crc_SYM` is an SHN_ABS symbol whose value is the CRC, and __kcrctab is zeros in the
      file."""
    order = elf.byteorder
    crcs = {name[len(KCRCTAB_PREFIX):]: value & 0xFFFFFFFF
            for name, shndx, _, value in elf.defined
            if shndx == SHN_ABS and name.startswith(KCRCTAB_PREFIX)}
    crcs.update((sym, int.from_bytes(elf.data[offset:offset + 4], order))
                for sym, offset in elf.labels(KCRCTAB_PREFIX))
    return crcs


def _exports(elf: _Elf) -> tuple[ModuleExport, ...]:
    """`__ksymtab_SYM` in __ksymtab or __ksymtab_gpl (GPL-only), with its namespace and CRC."""
    gpl = elf.sections.get(KSYMTAB_GPL_SECTION)
    gpl_index = gpl.index if gpl else -1
    namespaces, crcs = _namespaces(elf), _crcs(elf)
    return tuple(
        ModuleExport(sym, shndx == gpl_index, namespaces.get(sym, ""), crcs.get(sym))
        for name, shndx, _, _ in elf.defined if name.startswith(KSYMTAB_PREFIX)
        for sym in (name[len(KSYMTAB_PREFIX):],))


def _versions(elf: _Elf) -> dict[str, int]:
    """__versions: the CRCs the module was built against, an array of struct modversion_info
    in the target's word size and byte order."""
    entry = MODVERSION_INFO[elf.data[EI_CLASS], elf.data[EI_DATA]]
    raw = elf.section("__versions")
    if len(raw) % entry.size:
        raise InputError(elf.path, f"__versions is {len(raw)} bytes, not a multiple of "
                                   f"{entry.size}")
    return {name.split(b"\0", 1)[0].decode("utf-8", "replace"): crc
            for crc, name in entry.iter_unpack(raw)}


def _signed(data: bytes | mmap.mmap) -> bool:
    """kernel/module/signing.c module_sig_check(): the signature ends in MODULE_SIG_STRING."""
    return data[-len(MODULE_SIGNATURE_MAGIC):] == MODULE_SIGNATURE_MAGIC


def parse_module(data: bytes | mmap.mmap, path: str) -> ModuleFacts:
    """The facts of one module file, compressed or not; data may be an mmap, of which only the
    tables are touched (a compressed file is decompressed whole)."""
    how = module_compression(data)
    if how is not None:
        data = decompress_module(data, how, path)
    elf = _read_tables(data, path)
    modinfo = _modinfo(elf)
    undefined, weak_undefined = _undefined(elf)
    return ModuleFacts(
        path=path,
        name=_name(modinfo, path),
        undefined=undefined,
        weak_undefined=weak_undefined,
        exports=_exports(elf),
        versions=_versions(elf),
        vermagic=modinfo.get("vermagic"),
        depends=_depends(modinfo),
        license=modinfo.get("license"),
        import_ns=modinfo.every("import_ns"),
        signed=_signed(data),
    )


def read_module(path: str | Path) -> ModuleFacts:
    # mmap, not read(): the tables are a small part of a .ko, and the pages of the rest are never
    # touched (depmod does the same).
    regular_file(path)
    with reading(path), open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise InputError(path, "not an ELF file (empty): not a kernel module")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return parse_module(data, str(path))


def find_modules(root: Path) -> list[Path]:
    """Every module file (.ko, .ko.gz, .ko.xz, .ko.zst) below root, sorted, symlinks followed as
    depmod follows them; a file or directory reached twice counts once."""
    if not os.path.isdir(root):     # not Path.is_dir(): that raises ENAMETOOLONG
        raise InputError(root, "not a directory")
    found: dict[str, str] = {}
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:     # a symlink loop or a second way in
            dirnames.clear()
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        for name in filenames:
            if name.endswith(MODULE_SUFFIXES):
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    found.setdefault(p, p)
                elif os.path.isfile(p):
                    found.setdefault(os.path.realpath(p), p)
    return [Path(p) for p in sorted(found.values())]
