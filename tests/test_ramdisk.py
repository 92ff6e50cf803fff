"""Ramdisks (bootverify.readers.ramdisk): every compression, cpio newc read/write, concatenated
initrds as the kernel unpacks them, GNU cpio and the lz4 CLI both ways, malformed input."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import zlib
from pathlib import Path

import pytest

from craft import gz, need
from bootverify.errors import InputError
from bootverify.readers.ramdisk import (LZ4_LEGACY_BLOCK, Compression, CpioEntry, compress,
                                        decompress, detect, entries_from_tree, read_cpio,
                                        unpack_initrd, write_cpio)

ENTRIES = [
    CpioEntry("lib", stat.S_IFDIR | 0o755),
    CpioEntry("lib/modules", stat.S_IFDIR | 0o755, mtime=1700000000),
    CpioEntry("lib/modules/a.ko", stat.S_IFREG | 0o644, b"\x7fELF" + bytes(range(256)) * 3),
    CpioEntry("lib/modules/empty", stat.S_IFREG | 0o600),
    CpioEntry("lib/modules/odd-size.txt", stat.S_IFREG | 0o644, b"12345", uid=1000, gid=1001),
    CpioEntry("init", stat.S_IFLNK | 0o777, b"/bin/busybox"),
    CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdevmajor=5, rdevminor=1),
    CpioEntry("name with spaces and ünïcode", stat.S_IFREG | 0o644, b"x" * 7),
]


def _file(name: str, data: bytes) -> CpioEntry:
    return CpioEntry(name, stat.S_IFREG | 0o644, data)


# --- compression ---

@pytest.mark.parametrize("how", list(Compression))
def test_compress_round_trip(how):
    data = write_cpio(ENTRIES) * 3 + os.urandom(1000)
    packed = compress(data, how)
    assert detect(packed) is how
    assert decompress(packed, "x") == data
    if how is not Compression.NONE:
        assert packed != data


def test_lz4_legacy_several_blocks():
    """Over 8 MiB the legacy format splits into blocks of at most LZ4_LEGACY_BLOCK."""
    data = (os.urandom(4096) * 9) * ((LZ4_LEGACY_BLOCK * 2) // (4096 * 9) + 3)
    packed = compress(data, Compression.LZ4_LEGACY)
    assert decompress(packed, "big") == data


def test_detect_magics():
    assert detect(b"\x1f\x8b\x08") is Compression.GZIP
    assert detect(b"\x02\x21\x4c\x18") is Compression.LZ4_LEGACY
    assert detect(b"\x04\x22\x4d\x18") is Compression.LZ4_FRAME
    assert detect(b"070701") is Compression.NONE
    assert detect(b"") is Compression.NONE


# --- cpio ---

def test_cpio_round_trip():
    archive = write_cpio(ENTRIES)
    assert len(archive) % 4 == 0
    entries, end = read_cpio(archive, "x")
    assert entries == ENTRIES
    assert end == len(archive)
    assert [e.is_dir for e in entries[:2]] == [True, True]
    assert entries[2].is_file and entries[5].is_symlink and not entries[5].is_file


def test_cpio_header_layout():
    """newc: 070701 then 13 fields of 8 hex digits, name NUL-terminated, padded to 4."""
    archive = write_cpio([_file("ab", b"xyz")])
    fields = [int(archive[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
    assert archive[:6] == b"070701"
    assert fields[1] == stat.S_IFREG | 0o644 and fields[6] == 3 and fields[11] == 3
    assert archive[110:113] == b"ab\0" and archive[113:116] == b"\0\0\0"
    assert archive[116:120] == b"xyz\0"
    assert archive[120:126] == b"070701"
    assert b"TRAILER!!!\0" in archive


def test_empty_cpio():
    entries, end = read_cpio(write_cpio([]), "x")
    assert entries == [] and end > 0


@pytest.mark.parametrize("inner", [Compression.NONE, Compression.GZIP, Compression.LZ4_LEGACY])
def test_unpack_initrd_each_compression(inner):
    tree = unpack_initrd(compress(write_cpio(ENTRIES), inner), "x")
    assert sorted(tree) == sorted(e.name for e in ENTRIES)
    assert tree["lib/modules/a.ko"] == ENTRIES[2]


def test_concatenated_initrd_later_files_win():
    first = write_cpio([CpioEntry("lib", stat.S_IFDIR | 0o755), _file("lib/a.ko", b"first"),
                        _file("only-first", b"1"), _file("./dot/slash", b"d")])
    second = compress(write_cpio([_file("lib/a.ko", b"second"), _file("/lib/b.ko", b"b")]),
                      Compression.GZIP)
    third = compress(write_cpio([_file("./lib/b.ko", b"third"), _file("c", b"c")]),
                     Compression.LZ4_LEGACY)
    fourth = compress(write_cpio([_file("c", b"fourth")]), Compression.GZIP)
    # zero padding between segments, as bootloaders and the kernel's 4-byte alignment make
    initrd = first + b"\0" * 512 + second + b"\0" * 3 + third + fourth + b"\0" * 4096
    tree = unpack_initrd(initrd, "initrd")
    assert {k: v.data for k, v in tree.items() if v.is_file} == {
        "lib/a.ko": b"second", "only-first": b"1", "dot/slash": b"d", "lib/b.ko": b"third",
        "c": b"fourth"}
    assert tree["lib"].is_dir


def test_concatenated_lz4_legacy_streams():
    """`cat a.lz4 b.lz4`: the legacy magic inside the stream starts a new one."""
    a = compress(write_cpio([_file("a", b"A")]), Compression.LZ4_LEGACY)
    b = compress(write_cpio([_file("a", b"B"), _file("b", b"b")]), Compression.LZ4_LEGACY)
    tree = unpack_initrd(a + b, "x")
    assert {k: v.data for k, v in tree.items()} == {"a": b"B", "b": b"b"}


def test_unpack_initrd_not_an_initrd():
    with pytest.raises(InputError) as e:
        unpack_initrd(write_cpio([_file("a", b"a")]) + b"garbage!" * 10, "rd.img")
    assert str(e.value).startswith("rd.img: ") and "offset" in str(e.value)


# --- the cpio and lz4 command-line tools, both ways ---

def _tree(root: Path) -> None:
    (root / "lib/modules/6.1").mkdir(parents=True)
    (root / "lib/modules/6.1/m.ko").write_bytes(b"\x7fELF" + os.urandom(3000))
    (root / "lib/modules/6.1/modules.load").write_text("m.ko\n")
    (root / "empty-dir").mkdir()
    (root / "init").symlink_to("lib/modules/6.1/m.ko")
    (root / "odd").write_bytes(b"123")
    os.chmod(root / "odd", 0o751)


def test_gnu_cpio_output_read_by_us(tmp_path):
    exe = need("cpio")
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    names = subprocess.run(["find", ".", "-mindepth", "1"], cwd=root, check=True,
                           capture_output=True, timeout=300).stdout
    archive = subprocess.run([exe, "-o", "-H", "newc", "--quiet"], cwd=root, input=names,
                             check=True, capture_output=True, timeout=300).stdout
    tree = unpack_initrd(archive, "gnu.cpio")
    ours = {e.name: e for e in entries_from_tree(root)}
    assert sorted(tree) == sorted(ours)
    for name, e in tree.items():
        assert (e.mode, e.data) == (ours[name].mode, ours[name].data), name
    assert tree["init"].is_symlink and tree["init"].data == b"lib/modules/6.1/m.ko"
    assert stat.S_IMODE(tree["odd"].mode) == 0o751
    # gzip'd and lz4 -l'd by the tools, too
    assert unpack_initrd(gz(archive), "gz") == tree
    lz4 = need("lz4")
    legacy = subprocess.run([lz4, "-l", "-c"], input=archive, check=True,
                            capture_output=True, timeout=300).stdout
    assert detect(legacy) is Compression.LZ4_LEGACY
    assert unpack_initrd(legacy, "lz4") == tree


def test_our_cpio_read_by_gnu_cpio(tmp_path):
    exe = need("cpio")
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    archive = write_cpio(entries_from_tree(root, prefix="/"))
    listing = subprocess.run([exe, "-t", "--quiet"], input=archive, check=True,
                             capture_output=True, timeout=300).stdout.decode().split()
    assert sorted(listing) == sorted(e.name for e in entries_from_tree(root))
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([exe, "-i", "-d", "--quiet", "--no-absolute-filenames"], cwd=out,
                   input=archive, check=True, capture_output=True, timeout=300)
    assert (out / "lib/modules/6.1/m.ko").read_bytes() == \
        (root / "lib/modules/6.1/m.ko").read_bytes()
    assert os.readlink(out / "init") == "lib/modules/6.1/m.ko"
    assert (out / "empty-dir").is_dir()
    assert stat.S_IMODE((out / "odd").stat().st_mode) == 0o751
    # a device node: listed with its numbers (not extracted: that needs root)
    verbose = subprocess.run([exe, "-tv", "--quiet"], input=write_cpio([ENTRIES[6]]),
                             check=True, capture_output=True, timeout=300).stdout.decode()
    assert verbose.startswith("crw-------") and re.search(r" 5,\s+1 ", verbose), verbose


def test_lz4_cli_reads_our_legacy(tmp_path):
    lz4 = need("lz4")
    data = write_cpio(ENTRIES) * 50 + os.urandom(5000)
    (tmp_path / "in.lz4").write_bytes(compress(data, Compression.LZ4_LEGACY))
    out = subprocess.run([lz4, "-d", "-c", "in.lz4"], cwd=tmp_path, check=True,
                         capture_output=True, timeout=300).stdout
    assert out == data
    (tmp_path / "in2.lz4").write_bytes(compress(data, Compression.LZ4_FRAME))
    out = subprocess.run([lz4, "-d", "-c", "in2.lz4"], cwd=tmp_path, check=True,
                         capture_output=True, timeout=300).stdout
    assert out == data


def test_lz4_cli_legacy_several_blocks_read_by_us():
    lz4 = need("lz4")
    data = os.urandom(1 << 20) * 9 + b"tail"        # > 8 MiB: two legacy blocks
    packed = subprocess.run([lz4, "-l", "-1", "-c"], input=data, check=True,
                            capture_output=True, timeout=300).stdout
    assert decompress(packed, "lz4") == data


# --- malformed ---

def _err(data: bytes, *words: str, fn=unpack_initrd) -> None:
    with pytest.raises(InputError) as e:
        fn(data, "rd.img")
    msg = str(e.value)
    assert msg.startswith("rd.img: ") and "\n" not in msg
    for w in words:
        assert w in msg, msg


GOOD = write_cpio(ENTRIES)


def _corrupt(data: bytes, at: int, length: int = 16) -> bytes:
    return data[:at] + bytes(b ^ 0x5a for b in data[at:at + length]) + data[at + length:]


def test_newc_with_checksums_is_read():
    """070702 ("crc" newc) is newc with a checksum field; the kernel unpacks both."""
    tree = unpack_initrd(b"070702" + GOOD[6:], "rd.img")
    assert tree == unpack_initrd(GOOD, "rd.img")


def test_malformed_cpio():
    _err(b"070707" + GOOD[6:], "bad cpio magic", fn=read_cpio)      # odc magic
    _err(GOOD[:50], "truncated", fn=read_cpio)
    _err(GOOD[:200], "truncated", fn=read_cpio)
    _err(GOOD[:-200], "truncated")
    _err(GOOD[:6] + b"zzzzzzzz" + GOOD[14:], "bad cpio header")


@pytest.mark.parametrize("field,value", [(6, b"-0000070"), (6, b"+0000001"), (11, b" 000000a"),
                                         (6, b"0000_001"), (11, b"-0000001")])
@pytest.mark.timeout(20)    # the bug this guards against is an endless loop
def test_cpio_signed_or_odd_numbers_rejected(field, value):
    """int(x, 16) takes signs, spaces, underscores; a negative filesize must not walk back."""
    one = write_cpio([_file("a", b"")])
    at = 6 + 8 * field
    bad = one[:at] + value + one[at + 8:]
    _err(bad * 2, "bad cpio header", fn=read_cpio)


@pytest.mark.parametrize("how", [Compression.GZIP, Compression.LZ4_LEGACY,
                                 Compression.LZ4_FRAME])
def test_truncated_compressed(how):
    packed = compress(GOOD + os.urandom(20000), how)
    _err(packed[:len(packed) // 2], "truncated", fn=decompress)


@pytest.mark.parametrize("how", [Compression.GZIP, Compression.LZ4_LEGACY,
                                 Compression.LZ4_FRAME])
def test_corrupt_compressed(how):
    packed = compress(GOOD * 20, how)
    _err(_corrupt(packed, 11, 40), fn=decompress)


def test_gzip_bad_crc():
    packed = bytearray(gz(GOOD))
    packed[-8] ^= 0xff
    _err(bytes(packed), "corrupt gzip", fn=decompress)


def test_corrupt_stream_inside_initrd():
    _err(GOOD + _corrupt(compress(GOOD * 5, Compression.GZIP), 20, 30))
    # a compressed stream holding garbage instead of cpio
    _err(compress(b"not a cpio archive at all", Compression.GZIP), "junk within compressed")


def test_decompress_raw_passthrough():
    assert decompress(GOOD, "x") == GOOD
    assert zlib.crc32(decompress(compress(GOOD, Compression.GZIP), "x")) == zlib.crc32(GOOD)


def test_tree_follows_file_links_on_request_and_skips_fifos(tmp_path):
    root, outside = tmp_path / "dlkm", tmp_path / "outside.ko"
    root.mkdir()
    (root / "a.ko").write_bytes(b"a")
    outside.write_bytes(b"real")
    os.symlink(outside, root / "link.ko")
    os.mkfifo(root / "fifo")
    followed = {e.name: e for e in entries_from_tree(root, follow_symlinks=True)}
    assert set(followed) == {"a.ko", "link.ko"}
    assert followed["link.ko"].is_file and followed["link.ko"].data == b"real"
    kept = {e.name: e for e in entries_from_tree(root)}
    assert kept["link.ko"].is_symlink and kept["link.ko"].data == str(outside).encode()
