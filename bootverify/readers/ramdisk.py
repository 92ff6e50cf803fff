"""Ramdisks: the compressions a kernel unpacks, and cpio "newc" archives, read and written.

The kernel's initramfs unpacker (init/initramfs.c, unpack_to_rootfs) walks the initrd as a run of
segments: a cpio archive, zero padding, or a compressed stream holding more of the same; later
files win. `unpack_initrd` walks it the same way, so what it returns is what the guest sees.
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


def _inflate_stream(data: bytes, path: object) -> tuple[bytes, int]:
    """Decompress the one stream at the start of data; return (bytes, input bytes consumed)."""
    how = detect(data)
    try:
        if how is Compression.GZIP:
            d = zlib.decompressobj(31)
            out = d.decompress(data)
            if not d.eof:
                raise InputError(path, "gzip stream is truncated")
            return out, len(data) - len(d.unused_data)
        if how is Compression.LZ4_FRAME:
            d = lz4.frame.LZ4FrameDecompressor()
            out = d.decompress(data)
            if not d.eof:
                raise InputError(path, "lz4 frame is truncated")
            return out, len(data) - len(d.unused_data or b"")
        if how is Compression.LZ4_LEGACY:
            return _inflate_lz4_legacy(data, path)
    except (zlib.error, RuntimeError) as e:
        raise InputError(path, f"corrupt {how.value} data: {e}") from None
    return data, len(data)


def _inflate_lz4_legacy(data: bytes, path: object) -> tuple[bytes, int]:
    out: list[bytes] = []
    pos = len(LZ4_LEGACY_MAGIC)
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
    """A whole compressed file (kernel or ramdisk) to its raw bytes; raw input is returned as is."""
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


def unpack_initrd(data: bytes, path: object) -> dict[str, CpioEntry]:
    """The file tree an initrd unpacks to: segments in order, later names win."""
    tree: dict[str, CpioEntry] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:      # padding between segments (the kernel skips it 4 bytes at a time)
            pos += 1
            continue
        if data[pos:pos + 6] in CPIO_MAGICS:
            entries, pos = read_cpio(data, path, pos)
        elif detect(data[pos:]) is not Compression.NONE:
            raw, used = _inflate_stream(data[pos:], path)
            pos += used
            entries = list(unpack_initrd(raw, path).values())
        else:
            raise InputError(path, f"initrd: neither cpio nor a known compression at offset {pos}")
        for e in entries:
            tree[_normalise(e.name)] = e
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
