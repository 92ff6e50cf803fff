"""Ramdisks: the compressions a kernel unpacks, and cpio "newc" archives, read and written.

The kernel's initramfs unpacker (init/initramfs.c, unpack_to_rootfs) walks the initrd as a run of
segments: a cpio archive, zero padding, or a compressed stream holding archives and padding;
later files win. `unpack_initrd` walks it the same way and refuses what the kernel refuses (an
lz4 frame: the kernel knows lz4 legacy only; broken padding; nested compression), so what it
returns is what the guest sees.
"""

from __future__ import annotations

import enum
import os
import re
import stat
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import lz4.block
import lz4.frame

from bootverify.errors import InputError, reading


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    LZ4_LEGACY = "lz4-legacy"
    LZ4_FRAME = "lz4-frame"


# Magic numbers as lib/decompress.c matches them (compressed_formats[]); lz4 legacy is what
# `lz4 -l` and the kernel's own Image.lz4 / initramfs lz4 use.
MAGIC: dict[bytes, Compression] = {
    b"\x1f\x8b": Compression.GZIP,
    b"\x02\x21\x4c\x18": Compression.LZ4_LEGACY,
    b"\x04\x22\x4d\x18": Compression.LZ4_FRAME,
}

# lz4 legacy: a stream of (u32 LE compressed size, block) pairs; each block inflates to at most
# 8 MiB (lz4's LEGACY_BLOCKSIZE, lib/decompress_unlz4.c's uncomp_chunksize).
LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"
LZ4_LEGACY_BLOCK = 8 << 20
LZ4_LEGACY_BOUND = LZ4_LEGACY_BLOCK + LZ4_LEGACY_BLOCK // 255 + 16   # LZ4_COMPRESSBOUND


def detect(data: bytes) -> Compression:
    for magic, kind in MAGIC.items():
        if data.startswith(magic):
            return kind
    return Compression.NONE


def compress(data: bytes, how: Compression) -> bytes:
    if how is Compression.NONE:
        return data
    if how is Compression.GZIP:
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()
    if how is Compression.LZ4_FRAME:
        return lz4.frame.compress(data, compression_level=9)
    out = [LZ4_LEGACY_MAGIC]
    for start in range(0, len(data), LZ4_LEGACY_BLOCK):
        block = lz4.block.compress(data[start:start + LZ4_LEGACY_BLOCK], mode="high_compression",
                                   compression=9, store_size=False)
        out += [len(block).to_bytes(4, "little"), block]
    return b"".join(out)


# Input is fed to zlib this much at a time, so that a stream followed by many megabytes costs
# its own size, not the rest of the file (unused_data would copy it).
INFLATE_CHUNK = 1 << 16


def _inflate_stream(data: bytes, path: object, start: int = 0) -> tuple[bytes, int]:
    """Decompress the one stream at data[start:]; return (bytes, offset after the stream)."""
    how = detect(data[start:start + 4])
    try:
        if how is Compression.GZIP:
            d = zlib.decompressobj(31)
            out, pos = [], start
            with memoryview(data) as view:
                while not d.eof and pos < len(data):
                    out.append(d.decompress(view[pos:pos + INFLATE_CHUNK]))
                    pos = min(pos + INFLATE_CHUNK, len(data))
            if not d.eof:
                raise InputError(path, "gzip stream is truncated")
            return b"".join(out), pos - len(d.unused_data)
        if how is Compression.LZ4_FRAME:
            f = lz4.frame.LZ4FrameDecompressor()
            raw = f.decompress(data[start:])
            if not f.eof:
                raise InputError(path, "lz4 frame is truncated")
            return raw, len(data) - len(f.unused_data or b"")
        if how is Compression.LZ4_LEGACY:
            return _inflate_lz4_legacy(data, path, start)
    except (zlib.error, RuntimeError) as e:
        raise InputError(path, f"corrupt {how.value} data: {e}") from None
    return data[start:], len(data)


def _inflate_lz4_legacy(data: bytes, path: object, start: int) -> tuple[bytes, int]:
    out: list[bytes] = []
    pos = start + len(LZ4_LEGACY_MAGIC)
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "little")
        if data[pos:pos + 4] == LZ4_LEGACY_MAGIC:   # concatenated legacy streams continue
            pos += 4
            continue
        # The stream has no end marker: it ends where the next word is not a plausible block.
        if size == 0 or size > LZ4_LEGACY_BOUND:
            break
        if pos + 4 + size > len(data):
            if out:
                break
            raise InputError(path, "lz4 legacy stream is truncated")
        try:
            out.append(lz4.block.decompress(data[pos + 4:pos + 4 + size],
                                            uncompressed_size=LZ4_LEGACY_BLOCK))
        except lz4.block.LZ4BlockError:
            if out:     # not a block: the stream ended and other data follows
                break
            raise InputError(path, "corrupt lz4 legacy block") from None
        pos += 4 + size
    return b"".join(out), pos


def decompress(data: bytes, path: object) -> bytes:
    """A whole compressed kernel to its raw bytes; raw input is returned as is. (A kernel is
    the bootloader's to decompress, and U-Boot also takes lz4 frames; an initrd is the
    kernel's, see unpack_initrd.)"""
    out, _ = _inflate_stream(data, path)
    return out


# --- cpio newc (the only format initramfs takes; see Documentation/driver-api/early-userspace) ---

CPIO_MAGIC = b"070701"
CPIO_MAGICS = (CPIO_MAGIC, b"070702")      # newc, and newc with checksums (the kernel takes both)
CPIO_TRAILER = "TRAILER!!!"
# newc header fields after the magic, each 8 hex digits, in order.
CPIO_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor",
               "devminor", "rdevmajor", "rdevminor", "namesize", "check")
CPIO_HEADER_SIZE = len(CPIO_MAGIC) + 8 * len(CPIO_FIELDS)
CPIO_HEX = re.compile(rb"[0-9A-Fa-f]{%d}" % (8 * len(CPIO_FIELDS)))


@dataclass(frozen=True)
class CpioEntry:
    """One archive member; a symlink's target is its data."""
    name: str
    mode: int
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def read_cpio(data: bytes, path: object, start: int = 0) -> tuple[list[CpioEntry], int]:
    """Read one newc archive from data[start:]; return its entries and the offset after the
    TRAILER!!! member."""
    entries: list[CpioEntry] = []
    pos = start
    while True:
        if pos + CPIO_HEADER_SIZE > len(data):
            raise InputError(path, f"cpio archive is truncated at offset {pos} (no TRAILER!!!)")
        if data[pos:pos + 6] not in CPIO_MAGICS:
            raise InputError(path, f"bad cpio magic {data[pos:pos + 6]!r} at offset {pos} "
                                   f"(only newc 070701/070702 is supported)")
        # int() would also take signs, spaces and underscores: a negative size walks backwards.
        if not CPIO_HEX.fullmatch(data, pos + 6, pos + CPIO_HEADER_SIZE):
            raise InputError(path, f"bad cpio header at offset {pos}")
        f = {name: int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16)
             for i, name in enumerate(CPIO_FIELDS)}
        name_end = pos + CPIO_HEADER_SIZE + f["namesize"]
        data_start = _align4(name_end)
        data_end = data_start + f["filesize"]
        if data_end > len(data):
            raise InputError(path, f"cpio archive is truncated at offset {pos}")
        name = data[pos + CPIO_HEADER_SIZE:name_end].rstrip(b"\0").decode("utf-8", "replace")
        pos = _align4(data_end)
        if name == CPIO_TRAILER:
            return entries, pos
        entries.append(CpioEntry(name=name, mode=f["mode"], data=data[data_start:data_end],
                                 uid=f["uid"], gid=f["gid"], mtime=f["mtime"],
                                 rdevmajor=f["rdevmajor"], rdevminor=f["rdevminor"]))


def write_cpio(entries: Iterable[CpioEntry]) -> bytes:
    """One newc archive with a trailer; inode numbers are assigned in order, hard links not kept."""
    out = bytearray()

    def member(ino: int, e: CpioEntry) -> None:
        name = e.name.encode() + b"\0"
        nlink = 2 if e.is_dir else 1
        values = (ino, e.mode, e.uid, e.gid, nlink, e.mtime, len(e.data), 0, 0,
                  e.rdevmajor, e.rdevminor, len(name), 0)
        out.extend(CPIO_MAGIC + b"".join(b"%08x" % v for v in values) + name)
        out.extend(b"\0" * (_align4(len(out)) - len(out)))
        out.extend(e.data)
        out.extend(b"\0" * (_align4(len(out)) - len(out)))

    ino = 0
    for ino, e in enumerate(entries, start=1):
        member(ino, e)
    member(ino + 1, CpioEntry(CPIO_TRAILER, 0))
    return bytes(out)


def _normalise(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[1:] if name[0] == "/" else name[2:]
    return name or "."


# lib/decompress.c compressed_formats[]: the kernel tells an initrd's compression by two bytes;
# bootverify reads the two that Android's ramdisks use.
INITRD_FORMATS: dict[bytes, str] = {
    b"\x1f\x8b": "gzip", b"\x1f\x9e": "gzip", b"\x42\x5a": "bzip2", b"\x5d\x00": "lzma",
    b"\xfd\x37": "xz", b"\x89\x4c": "lzo", b"\x02\x21": "lz4", b"\x28\xb5": "zstd",
}
INITRD_READABLE = {"gzip": Compression.GZIP, "lz4": Compression.LZ4_LEGACY}


NOT_PADDING = re.compile(rb"[^\0]")


def _past_padding(data: bytes, pos: int) -> int:
    """The offset of the first byte from pos on that is not zero padding (or the end)."""
    m = NOT_PADDING.search(data, pos)
    return m.start() if m else len(data)


def _archives(data: bytes, path: object, compressed: bool,
              tree: dict[str, CpioEntry]) -> None:
    """init/initramfs.c unpack_to_rootfs(): cpio archives and zero padding; at the top level
    also compressed streams, each holding archives and padding only (flush_buffer() calls
    anything else "junk within compressed archive": the nesting is one level deep). A cpio
    starts 4-aligned, and after one the padding must end 4-aligned (do_reset(): "broken
    padding"). Later names win."""
    pos = 0
    where = "compressed archive" if compressed else "initrd"
    while pos < len(data):
        if data[pos] == 0:                  # padding (the kernel skips it a byte at a time)
            pos = _past_padding(data, pos)
            continue
        if data[pos:pos + 1] == b"0" and not pos & 3:
            entries, pos = read_cpio(data, path, pos)
            for e in entries:
                tree[_normalise(e.name)] = e
            pos = _past_padding(data, pos)
            if pos < len(data) and pos & 3:
                raise InputError(path, f"{where}: broken padding at offset {pos} (the next "
                                       f"archive is not 4-aligned; the kernel stops there)")
            continue
        if compressed:
            raise InputError(path, f"junk within compressed archive at offset {pos} (the kernel "
                                   f"unpacks cpio archives there, nothing nested)")
        name = INITRD_FORMATS.get(data[pos:pos + 2])
        how = INITRD_READABLE.get(name or "")
        if how is None or detect(data[pos:pos + 4]) is not how:
            raise InputError(path, f"initrd: {name or 'invalid magic'} at offset {pos}: "
                             + ("bootverify reads gzip and lz4 (legacy) initrds only"
                                if name else "neither cpio nor a compression the kernel knows "
                                             "(invalid magic at start of compressed archive)"))
        raw, pos = _inflate_stream(data, path, pos)
        _archives(raw, path, True, tree)


def unpack_initrd(data: bytes, path: object) -> dict[str, CpioEntry]:
    """The file tree an initrd unpacks to, by the kernel's rules: segments in order, later
    names win; what the kernel refuses is bad input."""
    tree: dict[str, CpioEntry] = {}
    _archives(data, path, False, tree)
    return tree


def entries_from_tree(root: Path, prefix: str = "",
                      follow_symlinks: bool = False) -> list[CpioEntry]:
    """A directory tree as archive members (parents first, sorted, owner root, mtime 0).

    Symlinks stay links; with follow_symlinks a link to a file becomes that file, as a module
    directory whose links lead outside it must still work in the guest. Sockets, FIFOs and
    device nodes are left out (reading a FIFO would block).
    """
    out: list[CpioEntry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        for name in [*dirnames, *sorted(filenames)]:
            p = Path(dirpath) / name
            arc = str(Path(prefix) / rel / name).lstrip("/").removeprefix("./")
            with reading(p):
                st = p.lstat()
                if stat.S_ISLNK(st.st_mode) and follow_symlinks and p.is_file():
                    st = p.stat()
                if stat.S_ISLNK(st.st_mode):
                    out.append(CpioEntry(arc, st.st_mode, os.readlink(p).encode()))
                elif stat.S_ISDIR(st.st_mode):
                    out.append(CpioEntry(arc, st.st_mode))
                elif stat.S_ISREG(st.st_mode):
                    out.append(CpioEntry(arc, st.st_mode, p.read_bytes()))
    return out


def write_tree(tree: dict[str, CpioEntry], dest: Path, path: object) -> list[Path]:
    """An unpacked initrd written out under `dest` (entries_from_tree's inverse): directories,
    files (permission bits kept, owner not), symlinks as they are; device nodes and FIFOs left
    out. A member that would land outside `dest` (a `..` in its name, or through one of the
    archive's own symlinks) is bad input. Returns the files written."""
    top = Path(os.path.realpath(dest))
    written = []
    for name, e in sorted(tree.items()):
        if name == ".":
            continue
        target = dest / name
        if ".." in Path(name).parts or \
                not Path(os.path.realpath(target.parent)).is_relative_to(top):
            raise InputError(path, f"cpio member {name!r} leads out of the archive")
        if e.is_dir:
            target.mkdir(parents=True, exist_ok=True)
        elif e.is_file:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(e.data)
            target.chmod(stat.S_IMODE(e.mode) | stat.S_IRUSR | stat.S_IWUSR)
            written.append(target)
        elif e.is_symlink:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(e.data.decode("utf-8", "replace"))
    return written
