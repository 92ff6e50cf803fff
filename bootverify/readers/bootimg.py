"""Android boot images: boot.img (header v0-v4) and vendor_boot / vendor_kernel_boot (v3-v4).

The header layouts below are AOSP system/tools/mkbootimg include/bootimg/bootimg.h written down
as (field, struct code) tables; the reader and the writer both work from them and from the one
`layout()` that places sections, so what one writes the other reads by construction, and Debian's
mkbootimg (v0-v3) is the independent check.
"""

from __future__ import annotations

import enum
import mmap
import struct
from dataclasses import dataclass, fields
from pathlib import Path

from bootverify.errors import InputError, reading, regular_file

BOOT_MAGIC = b"ANDROID!"
VENDOR_BOOT_MAGIC = b"VNDRBOOT"
# v3+ boot images fix the page size (bootimg.h: BOOT_IMAGE_HEADER_V3_PAGESIZE).
BOOT_V3_PAGE_SIZE = 4096

Layout = tuple[tuple[str, str], ...]

# boot_img_hdr_v0..v2
BOOT_HEADER_V0: Layout = (
    ("magic", "8s"), ("kernel_size", "I"), ("kernel_addr", "I"), ("ramdisk_size", "I"),
    ("ramdisk_addr", "I"), ("second_size", "I"), ("second_addr", "I"), ("tags_addr", "I"),
    ("page_size", "I"), ("header_version", "I"), ("os_version", "I"), ("name", "16s"),
    ("cmdline", "512s"), ("id", "32s"), ("extra_cmdline", "1024s"),
)
BOOT_HEADER_V1: Layout = BOOT_HEADER_V0 + (
    ("recovery_dtbo_size", "I"), ("recovery_dtbo_offset", "Q"), ("header_size", "I"),
)
BOOT_HEADER_V2: Layout = BOOT_HEADER_V1 + (("dtb_size", "I"), ("dtb_addr", "Q"))
# boot_img_hdr_v3/v4: header_version stays at offset 40 in every version.
BOOT_HEADER_V3: Layout = (
    ("magic", "8s"), ("kernel_size", "I"), ("ramdisk_size", "I"), ("os_version", "I"),
    ("header_size", "I"), ("reserved", "16s"), ("header_version", "I"), ("cmdline", "1536s"),
)
BOOT_HEADER_V4: Layout = BOOT_HEADER_V3 + (("signature_size", "I"),)
BOOT_HEADERS: dict[int, Layout] = {0: BOOT_HEADER_V0, 1: BOOT_HEADER_V1, 2: BOOT_HEADER_V2,
                                   3: BOOT_HEADER_V3, 4: BOOT_HEADER_V4}

# vendor_boot_img_hdr_v3/v4
VENDOR_HEADER_V3: Layout = (
    ("magic", "8s"), ("header_version", "I"), ("page_size", "I"), ("kernel_addr", "I"),
    ("ramdisk_addr", "I"), ("vendor_ramdisk_size", "I"), ("cmdline", "2048s"),
    ("tags_addr", "I"), ("name", "16s"), ("header_size", "I"), ("dtb_size", "I"),
    ("dtb_addr", "Q"),
)
VENDOR_HEADER_V4: Layout = VENDOR_HEADER_V3 + (
    ("vendor_ramdisk_table_size", "I"), ("vendor_ramdisk_table_entry_num", "I"),
    ("vendor_ramdisk_table_entry_size", "I"), ("bootconfig_size", "I"),
)
VENDOR_HEADERS: dict[int, Layout] = {3: VENDOR_HEADER_V3, 4: VENDOR_HEADER_V4}

# vendor_ramdisk_table_entry_v4
VENDOR_RAMDISK_ENTRY: Layout = (
    ("ramdisk_size", "I"), ("ramdisk_offset", "I"), ("ramdisk_type", "I"),
    ("ramdisk_name", "32s"), ("board_id", "64s"),
)
BOARD_ID_WORDS = 16

BOOT_V0_ONLY_FIELDS = ("page_size", "name", "kernel_addr", "ramdisk_addr", "second_addr",
                       "tags_addr", "dtb_addr")
# v0-v2 split the command line: the first 511 bytes in cmdline, the rest in extra_cmdline.
BOOT_V0_CMDLINE = 512


class RamdiskType(enum.IntEnum):
    """VENDOR_RAMDISK_TYPE_*; Kleaf puts the module initramfs in a DLKM fragment."""
    NONE = 0
    PLATFORM = 1
    RECOVERY = 2
    DLKM = 3


def _struct(layout: Layout) -> struct.Struct:
    return struct.Struct("<" + "".join(code for _, code in layout))


def _unpack(layout: Layout, data: bytes, path: object, what: str) -> dict[str, object]:
    s = _struct(layout)
    if len(data) < s.size:
        raise InputError(path, f"truncated {what} header ({len(data)} of {s.size} bytes)")
    return dict(zip((name for name, _ in layout), s.unpack_from(data), strict=True))


def _pack(layout: Layout, values: dict[str, object]) -> bytes:
    return _struct(layout).pack(*(values[name] for name, _ in layout))


def _cstr(raw: object) -> str:
    assert isinstance(raw, bytes)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _pad(n: int, page: int) -> int:
    return (n + page - 1) // page * page


@dataclass(frozen=True)
class Section:
    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class BootImage:
    """boot.img: the generic kernel, its ramdisk and command line."""
    header_version: int
    kernel: bytes
    ramdisk: bytes
    cmdline: str
    os_version: int = 0
    page_size: int = BOOT_V3_PAGE_SIZE
    # v0-v2 only
    second: bytes = b""
    recovery_dtbo: bytes = b""
    dtb: bytes = b""
    name: str = ""
    kernel_addr: int = 0
    ramdisk_addr: int = 0
    second_addr: int = 0
    tags_addr: int = 0
    dtb_addr: int = 0
    # v4 only: the boot signature (AVB), kept as bytes
    signature: bytes = b""


@dataclass(frozen=True)
class VendorRamdisk:
    data: bytes
    type: RamdiskType = RamdiskType.PLATFORM
    name: str = ""
    board_id: tuple[int, ...] = (0,) * BOARD_ID_WORDS


@dataclass(frozen=True)
class VendorBootImage:
    """vendor_boot.img / vendor_kernel_boot.img: the same format, only the file name differs."""
    header_version: int
    cmdline: str
    ramdisks: tuple[VendorRamdisk, ...]
    dtb: bytes = b""
    bootconfig: bytes = b""
    page_size: int = 4096
    name: str = ""
    kernel_addr: int = 0x10008000
    ramdisk_addr: int = 0x11000000
    tags_addr: int = 0x10000100
    dtb_addr: int = 0x11f00000

    @property
    def ramdisk(self) -> bytes:
        """The vendor ramdisk section: all fragments back to back, as a v3 bootloader loads it."""
        return b"".join(r.data for r in self.ramdisks)


def bootloader_cmdline(boot: BootImage | None, vendor: VendorBootImage | None) -> str:
    """The command line a bootloader hands the kernel (U-Boot boot/image-android.c
    android_image_get_kernel()): boot.img's, a space, the vendor boot image's."""
    return " ".join(c for c in (boot.cmdline.strip() if boot else "",
                                vendor.cmdline.strip() if vendor else "") if c)


def bootloader_ramdisk(boot: BootImage | None, vendor: VendorBootImage | None) -> bytes:
    """The initrd a bootloader hands the kernel, bootconfig aside (U-Boot
    android_image_get_ramdisk()): the vendor ramdisk section, then boot.img's ramdisk."""
    return (vendor.ramdisk if vendor else b"") + (boot.ramdisk if boot else b"")


def layout(img: BootImage | VendorBootImage) -> list[Section]:
    """Where each section sits in the file; empty sections are left out."""
    v = img.header_version
    if isinstance(img, BootImage):
        page = BOOT_V3_PAGE_SIZE if v >= 3 else img.page_size
        header_size = _struct(BOOT_HEADERS[v]).size
        parts = [("header", header_size), ("kernel", len(img.kernel)),
                 ("ramdisk", len(img.ramdisk))]
        if v < 3:
            parts.append(("second", len(img.second)))
        if v in (1, 2):
            parts.append(("recovery_dtbo", len(img.recovery_dtbo)))
        if v == 2:
            parts.append(("dtb", len(img.dtb)))
        if v == 4:
            parts.append(("signature", len(img.signature)))
    else:
        page = img.page_size
        parts = [("header", _struct(VENDOR_HEADERS[v]).size),
                 ("vendor_ramdisk", sum(len(r.data) for r in img.ramdisks)),
                 ("dtb", len(img.dtb))]
        if v == 4:
            parts += [("vendor_ramdisk_table",
                       len(img.ramdisks) * _struct(VENDOR_RAMDISK_ENTRY).size),
                      ("bootconfig", len(img.bootconfig))]
    sections, offset = [], 0
    for name, size in parts:
        if size or name == "header":
            sections.append(Section(name, offset, size))
        offset += _pad(size, page)
    return sections


# --- reading ---

def read_boot_image(path: Path | str) -> BootImage | VendorBootImage:
    """Read a boot.img or vendor(_kernel)_boot.img, telling them apart by magic. The file is
    mapped, not read: only what the header places is copied out, so a huge file costs nothing."""
    if regular_file(path).st_size == 0:
        return parse_boot_image(b"", path)
    with reading(path), open(path, "rb") as f, \
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return parse_boot_image(data, path)  # type: ignore[arg-type]


def read_boot(path: Path | str) -> BootImage:
    """A boot.img, and nothing else."""
    img = read_boot_image(path)
    if not isinstance(img, BootImage):
        raise InputError(path, "is a vendor boot image; expected a boot.img (magic ANDROID!)")
    return img


def read_vendor_boot(path: Path | str) -> VendorBootImage:
    """A vendor_boot.img or vendor_kernel_boot.img, and nothing else."""
    img = read_boot_image(path)
    if not isinstance(img, VendorBootImage):
        raise InputError(path, "is a boot.img, not a vendor_boot / vendor_kernel_boot image "
                               "(magic VNDRBOOT)")
    return img


def parse_boot_image(data: bytes, path: object) -> BootImage | VendorBootImage:
    magic = data[:8]
    if magic == BOOT_MAGIC:
        return _parse_boot(data, path)
    if magic == VENDOR_BOOT_MAGIC:
        return _parse_vendor_boot(data, path)
    raise InputError(path, f"not an Android boot image (magic {magic!r}, expected "
                           f"{BOOT_MAGIC!r} or {VENDOR_BOOT_MAGIC!r})")


def _take(data: bytes, path: object, sections: list[Section], name: str) -> bytes:
    for s in sections:
        if s.name == name:
            if s.offset + s.size > len(data):
                raise InputError(path, f"truncated: {name} section needs bytes "
                                       f"{s.offset}..{s.offset + s.size}, file has {len(data)}")
            return data[s.offset:s.offset + s.size]
    return b""


def _check_page_size(page: object, path: object) -> int:
    assert isinstance(page, int)
    if page < 2048 or page & (page - 1):
        raise InputError(path, f"bad page_size {page}")
    return page


def _versioned_header(data: bytes, path: object, at: int, headers: dict[int, Layout],
                      what: str) -> tuple[int, dict[str, object]]:
    """Read header_version at offset `at`, then unpack that version's layout."""
    if len(data) < at + 4:
        raise InputError(path, f"truncated {what} header")
    version = int.from_bytes(data[at:at + 4], "little")
    if version not in headers:
        raise InputError(path, f"unsupported {what} header_version {version} "
                               f"({min(headers)}-{max(headers)} known)")
    return version, _unpack(headers[version], data, path, f"{what} v{version}")


def _parse_boot(data: bytes, path: object) -> BootImage:
    version, h = _versioned_header(data, path, 40, BOOT_HEADERS, "boot")
    if version >= 3:
        sizes = dict(kernel=h["kernel_size"], ramdisk=h["ramdisk_size"],
                     signature=h.get("signature_size", 0))
        img = BootImage(version, b"", b"", _cstr(h["cmdline"]), os_version=h["os_version"])
    else:
        sizes = dict(kernel=h["kernel_size"], ramdisk=h["ramdisk_size"], second=h["second_size"],
                     recovery_dtbo=h.get("recovery_dtbo_size", 0), dtb=h.get("dtb_size", 0))
        img = BootImage(version, b"", b"", _cstr(h["cmdline"]) + _cstr(h["extra_cmdline"]),
                        os_version=h["os_version"],
                        page_size=_check_page_size(h["page_size"], path), name=_cstr(h["name"]),
                        kernel_addr=h["kernel_addr"], ramdisk_addr=h["ramdisk_addr"],
                        second_addr=h["second_addr"], tags_addr=h["tags_addr"],
                        dtb_addr=h.get("dtb_addr", 0))
    # Place the sections by the sizes the header states, then cut them out.
    sized = _with_sizes(img, sizes)
    sections = layout(sized)
    return _with_bytes(sized, {name: _take(data, path, sections, name) for name in sizes})


def _parse_vendor_boot(data: bytes, path: object) -> VendorBootImage:
    version, h = _versioned_header(data, path, 8, VENDOR_HEADERS, "vendor boot")
    page = _check_page_size(h["page_size"], path)
    common = dict(header_version=version, cmdline=_cstr(h["cmdline"]), page_size=page,
                  name=_cstr(h["name"]), kernel_addr=h["kernel_addr"],
                  ramdisk_addr=h["ramdisk_addr"], tags_addr=h["tags_addr"],
                  dtb_addr=h["dtb_addr"])
    ramdisk_size, dtb_size = h["vendor_ramdisk_size"], h["dtb_size"]
    assert isinstance(ramdisk_size, int) and isinstance(dtb_size, int)
    entries: list[dict[str, object]] = []
    if version == 4:
        entry_size = _struct(VENDOR_RAMDISK_ENTRY).size
        if h["vendor_ramdisk_table_entry_size"] != entry_size:
            raise InputError(path, f"vendor ramdisk table entry size "
                                   f"{h['vendor_ramdisk_table_entry_size']}, expected {entry_size}")
        count = h["vendor_ramdisk_table_entry_num"]
        assert isinstance(count, int)
        table_offset = _pad(_struct(VENDOR_HEADER_V4).size, page) + _pad(ramdisk_size, page) \
            + _pad(dtb_size, page)
        table = data[table_offset:table_offset + count * entry_size]
        if len(table) < count * entry_size:
            raise InputError(path, "truncated: vendor ramdisk table runs past the end of the file")
        entries = [_unpack(VENDOR_RAMDISK_ENTRY, table[i * entry_size:], path, "ramdisk table")
                   for i in range(count)]
    # A placeholder with the right section sizes lets layout() say where everything is; range()
    # has a length and no storage, so a header claiming gigabytes costs nothing before _take().
    placeholder = VendorBootImage(
        ramdisks=(VendorRamdisk(range(ramdisk_size)),) if version == 3 else tuple(  # type: ignore
            VendorRamdisk(range(int(e["ramdisk_size"]))) for e in entries),  # type: ignore
        dtb=range(dtb_size), bootconfig=range(int(h.get("bootconfig_size", 0))),  # type: ignore
        **common)  # type: ignore[arg-type]
    if version == 4 and sum(len(r.data) for r in placeholder.ramdisks) != ramdisk_size:
        raise InputError(path, f"vendor ramdisk table sizes add up to "
                               f"{sum(len(r.data) for r in placeholder.ramdisks)}, header says "
                               f"vendor_ramdisk_size {ramdisk_size}")
    sections = layout(placeholder)
    section = _take(data, path, sections, "vendor_ramdisk")
    if version == 3:
        ramdisks: tuple[VendorRamdisk, ...] = (VendorRamdisk(section),)
    else:
        ramdisks = tuple(_table_entry(e, section, path) for e in entries)
    return VendorBootImage(ramdisks=ramdisks, dtb=_take(data, path, sections, "dtb"),
                           bootconfig=_take(data, path, sections, "bootconfig"),
                           **common)  # type: ignore[arg-type]


def _table_entry(e: dict[str, object], section: bytes, path: object) -> VendorRamdisk:
    offset, size, kind = e["ramdisk_offset"], e["ramdisk_size"], e["ramdisk_type"]
    assert isinstance(offset, int) and isinstance(size, int) and isinstance(kind, int)
    if offset + size > len(section):
        raise InputError(path, f"vendor ramdisk '{_cstr(e['ramdisk_name'])}' at {offset}+{size} "
                               f"lies outside the vendor ramdisk section ({len(section)} bytes)")
    try:
        rtype = RamdiskType(kind)
    except ValueError:
        raise InputError(path, f"unknown vendor ramdisk type {kind}") from None
    board = e["board_id"]
    assert isinstance(board, bytes)
    return VendorRamdisk(section[offset:offset + size], rtype, _cstr(e["ramdisk_name"]),
                         struct.unpack(f"<{BOARD_ID_WORDS}I", board))


def _with_sizes(img: BootImage, sizes: dict[str, object]) -> BootImage:
    # Sized placeholders for layout(): range() has a length and no storage.
    return _with_bytes(img, {name: range(int(size))  # type: ignore[misc]
                             for name, size in sizes.items()})


def _with_bytes(img: BootImage, sections: dict[str, bytes]) -> BootImage:
    names = {f.name for f in fields(BootImage)}
    return BootImage(**{**{f.name: getattr(img, f.name) for f in fields(BootImage)},
                        **{k: v for k, v in sections.items() if k in names}})


# --- writing (v3/v4: what Debian's mkbootimg cannot do is v4) ---

def _assemble(img: BootImage | VendorBootImage, header: bytes, blobs: dict[str, bytes]) -> bytes:
    out = bytearray()
    for s in layout(img):
        out.extend(b"\0" * (s.offset - len(out)))
        out.extend(header if s.name == "header" else blobs[s.name])
    page = img.page_size if isinstance(img, VendorBootImage) else BOOT_V3_PAGE_SIZE
    out.extend(b"\0" * (_pad(len(out), page) - len(out)))
    return bytes(out)


def _cmdline_field(cmdline: str, size: int) -> bytes:
    raw = cmdline.encode()
    if len(raw) >= size:
        raise ValueError(f"cmdline is {len(raw)} bytes, the header holds {size - 1}")
    return raw


def encode_boot_image(img: BootImage) -> bytes:
    if img.header_version not in (3, 4):
        raise ValueError("the writer makes boot.img v3/v4; use mkbootimg for older versions")
    h = _struct(BOOT_HEADERS[img.header_version])
    header = _pack(BOOT_HEADERS[img.header_version], dict(
        magic=BOOT_MAGIC, kernel_size=len(img.kernel), ramdisk_size=len(img.ramdisk),
        os_version=img.os_version, header_size=h.size, reserved=b"",
        header_version=img.header_version, cmdline=_cmdline_field(img.cmdline, 1536),
        signature_size=len(img.signature)))
    return _assemble(img, header, dict(kernel=img.kernel, ramdisk=img.ramdisk,
                                       signature=img.signature))


def encode_vendor_boot_image(img: VendorBootImage) -> bytes:
    v = img.header_version
    if v not in (3, 4):
        raise ValueError("vendor boot images exist as v3 and v4 only")
    if v == 3 and len(img.ramdisks) != 1:
        raise ValueError("vendor boot v3 holds exactly one vendor ramdisk")
    table, offset = bytearray(), 0
    for r in img.ramdisks:
        table += _pack(VENDOR_RAMDISK_ENTRY, dict(
            ramdisk_size=len(r.data), ramdisk_offset=offset, ramdisk_type=int(r.type),
            ramdisk_name=r.name.encode(), board_id=struct.pack(f"<{BOARD_ID_WORDS}I", *r.board_id)))
        offset += len(r.data)
    header = _pack(VENDOR_HEADERS[v], dict(
        magic=VENDOR_BOOT_MAGIC, header_version=v, page_size=img.page_size,
        kernel_addr=img.kernel_addr, ramdisk_addr=img.ramdisk_addr,
        vendor_ramdisk_size=len(img.ramdisk), cmdline=_cmdline_field(img.cmdline, 2048),
        tags_addr=img.tags_addr, name=img.name.encode(),
        header_size=_struct(VENDOR_HEADERS[v]).size, dtb_size=len(img.dtb), dtb_addr=img.dtb_addr,
        vendor_ramdisk_table_size=len(table), vendor_ramdisk_table_entry_num=len(img.ramdisks),
        vendor_ramdisk_table_entry_size=_struct(VENDOR_RAMDISK_ENTRY).size,
        bootconfig_size=len(img.bootconfig)))
    return _assemble(img, header, dict(vendor_ramdisk=img.ramdisk, dtb=img.dtb,
                                       vendor_ramdisk_table=bytes(table),
                                       bootconfig=img.bootconfig))


def write_boot_image(img: BootImage, path: Path | str) -> None:
    Path(path).write_bytes(encode_boot_image(img))


def write_vendor_boot_image(img: VendorBootImage, path: Path | str) -> None:
    Path(path).write_bytes(encode_vendor_boot_image(img))


# --- os_version (bootimg.h: A.B.C in bits 31-11, year-2000 and month in bits 10-0) ---

def format_os_version(value: int) -> str:
    if not value:
        return "0"
    a, b, c = value >> 25, (value >> 18) & 0x7f, (value >> 11) & 0x7f
    year, month = ((value >> 4) & 0x7f) + 2000, value & 0xf
    return f"{a}.{b}.{c} {year}-{month:02d}"


def describe(img: BootImage | VendorBootImage) -> list[tuple[str, str]]:
    """Header fields and sections as (name, value) lines for `bootverify inspect`."""
    kind = "boot" if isinstance(img, BootImage) else "vendor_boot"
    rows = [("format", f"{kind} v{img.header_version}")]
    v0_only = isinstance(img, BootImage) and img.header_version >= 3
    for f in fields(img):
        value = getattr(img, f.name)
        if isinstance(value, bytes) or f.name in ("header_version", "ramdisks") or \
                (v0_only and f.name in BOOT_V0_ONLY_FIELDS):
            continue
        if f.name == "os_version":
            value = format_os_version(value)
        elif f.name.endswith("_addr"):
            value = f"{value:#x}"
        rows.append((f.name, str(value)))
    for s in layout(img):
        rows.append((f"section {s.name}", f"offset {s.offset:#x} size {s.size}"))
    if isinstance(img, VendorBootImage):
        for i, r in enumerate(img.ramdisks):
            board = " ".join(f"{w:#x}" for w in r.board_id if w) or "-"
            rows.append((f"vendor_ramdisk[{i}]", f"name '{r.name}' type {r.type.name} "
                                                 f"size {len(r.data)} board_id {board}"))
    return rows
