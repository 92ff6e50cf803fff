"""Boot images (bootverify.readers.bootimg): read what Debian's mkbootimg writes (v0, v3, vendor
v3), hand-packed v1/v2 headers, the project's own v3/v4 writer checked field by field against
bootimg.h offsets, Debian's unpack_bootimg on our output, and malformed images."""

from __future__ import annotations

import os
import struct
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from craft import need
from bootverify.errors import InputError
from bootverify.readers import bootimg
from bootverify.readers.bootimg import (BootImage, RamdiskType, VendorBootImage, VendorRamdisk,
                                        describe, encode_boot_image, encode_vendor_boot_image,
                                        layout, parse_boot_image, read_boot_image,
                                        write_boot_image, write_vendor_boot_image)

KERNEL = bytes(range(256)) * 20 + b"kernel-end"            # 5130 bytes
RAMDISK = b"\x1f\x8b" + os.urandom(3001)
SECOND = b"second" * 117
DTBO = b"dtbo" * 300
DTB = b"\xd0\x0d\xfe\xed" + b"dtb" * 40


def _pages(n: int, page: int) -> int:
    return (n + page - 1) // page


def _os_version(a: int, b: int, c: int, year: int, month: int) -> int:
    return (a << 25) | (b << 18) | (c << 11) | ((year - 2000) << 4) | month


# --- Debian's mkbootimg as the independent writer ---

def _mkbootimg(cwd: Path, *args: str) -> None:
    exe = need("mkbootimg")
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True, timeout=300)


def _inputs(tmp_path: Path) -> None:
    for name, data in (("kernel", KERNEL), ("ramdisk", RAMDISK), ("second", SECOND),
                       ("dtb", DTB)):
        (tmp_path / name).write_bytes(data)


def test_debian_mkbootimg_v0(tmp_path):
    _inputs(tmp_path)
    cmdline = "console=ttyAMA0 " + "x" * 700        # spills into extra_cmdline
    _mkbootimg(tmp_path, "--header_version", "0", "--kernel", "kernel", "--ramdisk", "ramdisk",
               "--second", "second", "--cmdline", cmdline, "--base", "0x40000000",
               "--pagesize", "2048", "--board", "myboard", "--os_version", "12.1.2",
               "--os_patch_level", "2023-05", "-o", "boot.img")
    img = read_boot_image(tmp_path / "boot.img")
    assert isinstance(img, BootImage)
    assert img == BootImage(header_version=0, kernel=KERNEL, ramdisk=RAMDISK, cmdline=cmdline,
                            os_version=_os_version(12, 1, 2, 2023, 5), page_size=2048,
                            second=SECOND, name="myboard", kernel_addr=0x40008000,
                            ramdisk_addr=0x41000000, second_addr=0x40f00000,
                            tags_addr=0x40000100)
    rows = dict(describe(img))
    assert rows["format"] == "boot v0"
    assert rows["os_version"] == "12.1.2 2023-05"
    assert rows["page_size"] == "2048"
    assert rows["section kernel"] == f"offset 0x800 size {len(KERNEL)}"
    assert rows["section ramdisk"] == f"offset {2048 * (1 + _pages(len(KERNEL), 2048)):#x} " \
                                      f"size {len(RAMDISK)}"


@pytest.mark.parametrize("page", [2048, 4096])
def test_debian_mkbootimg_v3_boot_and_vendor_boot(tmp_path, page):
    _inputs(tmp_path)
    _mkbootimg(tmp_path, "--header_version", "3", "--kernel", "kernel", "--ramdisk", "ramdisk",
               "--cmdline", "console=ttyAMA0 loglevel=8", "--os_version", "13.0.0",
               "--os_patch_level", "2024-02", "-o", "boot.img",
               "--vendor_boot", "vendor_boot.img", "--vendor_ramdisk", "second", "--dtb", "dtb",
               "--vendor_cmdline", "androidboot.hardware=virt", "--board", "vboard",
               "--pagesize", str(page), "--base", "0x40000000")
    boot = read_boot_image(tmp_path / "boot.img")
    assert boot == BootImage(header_version=3, kernel=KERNEL, ramdisk=RAMDISK,
                             cmdline="console=ttyAMA0 loglevel=8",
                             os_version=_os_version(13, 0, 0, 2024, 2))
    vendor = read_boot_image(tmp_path / "vendor_boot.img")
    assert vendor == VendorBootImage(
        header_version=3, cmdline="androidboot.hardware=virt", ramdisks=(VendorRamdisk(SECOND),),
        dtb=DTB, page_size=page, name="vboard", kernel_addr=0x40008000,
        ramdisk_addr=0x41000000, tags_addr=0x40000100, dtb_addr=0x41f00000)
    assert vendor.ramdisk == SECOND
    rows = dict(describe(vendor))
    assert rows["format"] == "vendor_boot v3"
    dtb_at = page * (_pages(2112, page) + _pages(len(SECOND), page))
    assert rows["section dtb"] == f"offset {dtb_at:#x} size {len(DTB)}"
    # boot v3 rows leave out the v0-v2 only fields
    assert "page_size" not in dict(describe(boot)) and "name" not in dict(describe(boot))


def test_debian_unpack_bootimg_reads_our_v3(tmp_path):
    exe = need("unpack_bootimg")
    img = BootImage(header_version=3, kernel=KERNEL, ramdisk=RAMDISK,
                    cmdline="console=ttyAMA0 androidboot.x=y",
                    os_version=_os_version(14, 0, 0, 2024, 12))
    write_boot_image(img, tmp_path / "boot.img")
    out = subprocess.run([exe, "--boot_img", "boot.img", "--out", "out"], cwd=tmp_path,
                         check=True, capture_output=True, text=True, timeout=300).stdout
    assert (tmp_path / "out/kernel").read_bytes() == KERNEL
    assert (tmp_path / "out/ramdisk").read_bytes() == RAMDISK
    assert "command line args: console=ttyAMA0 androidboot.x=y" in out
    assert "boot image header version: 3" in out
    assert "os version: 14.0.0" in out and "os patch level: 2024-12" in out


# --- v1 / v2 headers packed by hand from bootimg.h (independent of the module's tables) ---

def _pack_v0_v2(version: int, page: int, cmdline: bytes, extra: bytes) -> bytes:
    """boot_img_hdr_v0 + v1 + v2 fields, sections padded to page."""
    sizes = [len(KERNEL), len(RAMDISK), len(SECOND), len(DTBO), len(DTB)]
    head = struct.pack("<8s10I16s512s32s1024s", b"ANDROID!",
                       len(KERNEL), 0x10008000, len(RAMDISK), 0x11000000,
                       len(SECOND), 0x10f00000, 0x10000100, page, version,
                       _os_version(11, 0, 0, 2021, 1), b"board-v%d" % version, cmdline,
                       b"\x11" * 32, extra)
    assert len(head) == 1632
    header_pages = 1
    dtbo_offset = page * (header_pages + sum(_pages(s, page) for s in sizes[:3]))
    if version >= 1:
        head += struct.pack("<IQI", len(DTBO), dtbo_offset, 1648 if version == 1 else 1660)
    if version >= 2:
        head += struct.pack("<IQ", len(DTB), 0x11f00000)
    out = bytearray(head)
    for blob in [KERNEL, RAMDISK, SECOND] + ([DTBO] if version >= 1 else []) + \
            ([DTB] if version >= 2 else []):
        out += b"\0" * (_pages(len(out), page) * page - len(out))
        out += blob
    assert version < 1 or bytes(out[dtbo_offset:dtbo_offset + 4]) == DTBO[:4]
    return bytes(out)


@pytest.mark.parametrize("version", [0, 1, 2])
@pytest.mark.parametrize("page", [2048, 4096, 16384])
def test_hand_packed_v0_v2(version, page):
    extra = b"extra=" + b"e" * 500
    data = _pack_v0_v2(version, page, b"first=1 " + b"f" * 503, extra)
    img = parse_boot_image(data, "hand.img")
    assert img.header_version == version
    assert img.kernel == KERNEL and img.ramdisk == RAMDISK and img.second == SECOND
    assert img.recovery_dtbo == (DTBO if version >= 1 else b"")
    assert img.dtb == (DTB if version == 2 else b"")
    assert img.cmdline == "first=1 " + "f" * 503 + extra.decode()
    assert (img.page_size, img.name) == (page, f"board-v{version}")
    assert (img.kernel_addr, img.ramdisk_addr, img.second_addr, img.tags_addr) == \
        (0x10008000, 0x11000000, 0x10f00000, 0x10000100)
    assert img.dtb_addr == (0x11f00000 if version == 2 else 0)
    rows = dict(describe(img))
    assert rows["format"] == f"boot v{version}"
    assert rows["os_version"] == "11.0.0 2021-01"
    names = [s.name for s in layout(img)]
    assert names == ["header", "kernel", "ramdisk", "second"] + \
        (["recovery_dtbo"] if version >= 1 else []) + (["dtb"] if version == 2 else [])


# --- the project's writer, checked against bootimg.h offsets ---

def test_writer_boot_v3_and_v4_fields(tmp_path):
    for version in (3, 4):
        img = BootImage(header_version=version, kernel=KERNEL, ramdisk=RAMDISK,
                        cmdline="console=ttyAMA0 " + "c" * 1400,
                        os_version=_os_version(15, 1, 0, 2025, 3),
                        signature=b"AVB0" * 256 if version == 4 else b"")
        data = encode_boot_image(img)
        assert data[:8] == b"ANDROID!"
        kernel_size, ramdisk_size, os_version, header_size = struct.unpack_from("<4I", data, 8)
        assert (kernel_size, ramdisk_size, os_version) == (len(KERNEL), len(RAMDISK),
                                                           img.os_version)
        assert header_size == (1580 if version == 3 else 1584)
        assert struct.unpack_from("<I", data, 40)[0] == version
        assert data[44:44 + 1536].rstrip(b"\0").decode() == img.cmdline
        kernel_at = 4096
        ramdisk_at = kernel_at + _pages(len(KERNEL), 4096) * 4096
        assert data[kernel_at:kernel_at + len(KERNEL)] == KERNEL
        assert data[ramdisk_at:ramdisk_at + len(RAMDISK)] == RAMDISK
        if version == 4:
            assert struct.unpack_from("<I", data, 1580)[0] == 1024
            sig_at = ramdisk_at + _pages(len(RAMDISK), 4096) * 4096
            assert data[sig_at:sig_at + 1024] == img.signature
        assert len(data) % 4096 == 0
        path = tmp_path / f"boot-v{version}.img"
        write_boot_image(img, path)
        assert read_boot_image(path) == img


FRAGMENTS = (
    VendorRamdisk(b"platform-cpio" * 100, RamdiskType.PLATFORM, "platform"),
    VendorRamdisk(b"dlkm-modules" * 333, RamdiskType.DLKM, "dlkm",
                  (0x1234, 0, 0xffffffff) + (0,) * 12 + (7,)),
    VendorRamdisk(b"r", RamdiskType.RECOVERY, "r" * 31),
    VendorRamdisk(b"none", RamdiskType.NONE, ""),
)


@pytest.mark.parametrize("page", [2048, 4096])
def test_writer_vendor_boot_v4_fields(tmp_path, page):
    bootconfig = b"androidboot.hardware=virt\nandroidboot.load_modules_parallel=true\n"
    img = VendorBootImage(header_version=4, cmdline="console=ttyAMA0 " + "v" * 2000,
                          ramdisks=FRAGMENTS, dtb=DTB, bootconfig=bootconfig, page_size=page,
                          name="board-name-16chr", kernel_addr=0x40080000,
                          ramdisk_addr=0x48000000, tags_addr=0x40000100, dtb_addr=0x4f000000)
    data = encode_vendor_boot_image(img)
    # vendor_boot_img_hdr_v4, offsets from REFERENCE.md section 1
    assert data[:8] == b"VNDRBOOT"
    version, page_size, kernel_addr, ramdisk_addr, ramdisk_size = \
        struct.unpack_from("<5I", data, 8)
    total = sum(len(r.data) for r in FRAGMENTS)
    assert (version, page_size, kernel_addr, ramdisk_addr, ramdisk_size) == \
        (4, page, 0x40080000, 0x48000000, total)
    assert data[28:28 + 2048].rstrip(b"\0").decode() == img.cmdline
    tags_addr, name, header_size, dtb_size, dtb_addr = struct.unpack_from("<I16sIIQ", data, 2076)
    assert (tags_addr, name, header_size, dtb_size, dtb_addr) == \
        (0x40000100, b"board-name-16chr", 2128, len(DTB), 0x4f000000)
    table_size, entry_num, entry_size, bootconfig_size = struct.unpack_from("<4I", data, 2112)
    assert (table_size, entry_num, entry_size, bootconfig_size) == \
        (108 * len(FRAGMENTS), len(FRAGMENTS), 108, len(bootconfig))
    ramdisk_at = _pages(2128, page) * page
    dtb_at = ramdisk_at + _pages(total, page) * page
    table_at = dtb_at + _pages(len(DTB), page) * page
    bootconfig_at = table_at + _pages(table_size, page) * page
    assert data[dtb_at:dtb_at + len(DTB)] == DTB
    assert data[bootconfig_at:bootconfig_at + len(bootconfig)] == bootconfig
    offset = 0
    for i, r in enumerate(FRAGMENTS):
        size, off, kind, rname = struct.unpack_from("<3I32s", data, table_at + 108 * i)
        board = struct.unpack_from("<16I", data, table_at + 108 * i + 44)
        assert (size, off, kind, rname.rstrip(b"\0").decode(), board) == \
            (len(r.data), offset, int(r.type), r.name, r.board_id)
        assert data[ramdisk_at + off:ramdisk_at + off + size] == r.data
        offset += size
    assert len(data) % page == 0
    path = tmp_path / "vendor_boot.img"
    write_vendor_boot_image(img, path)
    back = read_boot_image(path)
    assert back == img
    rows = describe(back)
    assert ("vendor_ramdisk[1]", f"name 'dlkm' type DLKM size {len(FRAGMENTS[1].data)} "
                                 f"board_id 0x1234 0xffffffff 0x7") in rows
    assert ("vendor_ramdisk[3]", "name '' type NONE size 4 board_id -") in rows
    assert ("section bootconfig", f"offset {bootconfig_at:#x} size {len(bootconfig)}") in rows


def test_writer_vendor_boot_v3_round_trip(tmp_path):
    img = VendorBootImage(header_version=3, cmdline="a=b", ramdisks=(VendorRamdisk(RAMDISK),),
                          dtb=DTB)
    data = encode_vendor_boot_image(img)
    assert struct.unpack_from("<I", data, 2096)[0] == 2112
    assert parse_boot_image(data, "v3") == img


def test_writer_empty_sections_and_rejects():
    img = VendorBootImage(header_version=4, cmdline="", ramdisks=())
    assert parse_boot_image(encode_vendor_boot_image(img), "empty") == img
    assert [s.name for s in layout(img)] == ["header"]
    with pytest.raises(ValueError):
        encode_boot_image(BootImage(2, KERNEL, RAMDISK, ""))
    with pytest.raises(ValueError):
        encode_boot_image(BootImage(3, KERNEL, RAMDISK, "x" * 1536))
    encode_boot_image(BootImage(3, KERNEL, RAMDISK, "x" * 1535))
    with pytest.raises(ValueError):
        encode_vendor_boot_image(VendorBootImage(3, "", FRAGMENTS))
    with pytest.raises(ValueError):
        encode_vendor_boot_image(VendorBootImage(5, "", ()))


# --- malformed ---

def _v4_vendor() -> bytearray:
    return bytearray(encode_vendor_boot_image(VendorBootImage(
        header_version=4, cmdline="c", ramdisks=FRAGMENTS[:2], dtb=DTB, bootconfig=b"k=v\n")))


def _table_at(data: bytes) -> int:
    page, ramdisk_size = (struct.unpack_from("<I", data, at)[0] for at in (12, 24))
    dtb_size = struct.unpack_from("<I", data, 2100)[0]
    return (_pages(2128, page) + _pages(ramdisk_size, page) + _pages(dtb_size, page)) * page


def _set(data: bytearray, offset: int, value: int) -> bytearray:
    struct.pack_into("<I", data, offset, value)
    return data


BOOT_V3 = encode_boot_image(BootImage(3, KERNEL, RAMDISK, "console=ttyAMA0"))
BOOT_V0 = _pack_v0_v2(0, 2048, b"c", b"")
VENDOR_V3 = encode_vendor_boot_image(VendorBootImage(3, "c", (VendorRamdisk(RAMDISK),), dtb=DTB))

MALFORMED = {
    "empty": (b"", "not an Android boot image"),
    "wrong magic": (b"ANDROID?" + BOOT_V3[8:], "not an Android boot image"),
    "text": (b"hello world\n" * 100, "not an Android boot image"),
    "shorter than header_version": (BOOT_V3[:40], "truncated"),
    "truncated v3 header": (BOOT_V3[:1000], "truncated boot v3 header"),
    "truncated v0 header": (BOOT_V0[:1600], "truncated boot v0 header"),
    "truncated v1 header": (_pack_v0_v2(1, 2048, b"", b"")[:1640], "truncated boot v1 header"),
    "truncated kernel": (BOOT_V3[:4096 + 100], "kernel section"),
    "truncated ramdisk": (BOOT_V3[:4096 * 3 + 10], "ramdisk section"),
    "header only": (BOOT_V3[:4096], "kernel section"),
    "boot version 5": (bytes(_set(bytearray(BOOT_V3), 40, 5)), "header_version 5"),
    "boot version 0xffffffff": (bytes(_set(bytearray(BOOT_V3), 40, 0xffffffff)),
                                "header_version 4294967295"),
    "v0 page size 1000": (bytes(_set(bytearray(BOOT_V0), 36, 1000)), "page_size 1000"),
    "v0 page size 0": (bytes(_set(bytearray(BOOT_V0), 36, 0)), "page_size 0"),
    "vendor too short": (b"VNDRBOOT\x04", "truncated"),
    "vendor version 2": (bytes(_set(_v4_vendor(), 8, 2)), "vendor boot header_version 2"),
    "vendor version 5": (bytes(_set(_v4_vendor(), 8, 5)), "vendor boot header_version 5"),
    "vendor truncated header": (bytes(_v4_vendor()[:2120]), "truncated vendor boot v4 header"),
    "vendor page size": (bytes(_set(_v4_vendor(), 12, 3000)), "page_size 3000"),
    "vendor truncated table": (bytes(_v4_vendor()[:_table_at(_v4_vendor()) + 100]),
                               "vendor ramdisk table"),
    "vendor v4 truncated in ramdisk": (bytes(_v4_vendor()[:4096 + 50]), "truncated"),
    "vendor v3 truncated ramdisk": (VENDOR_V3[:4096 + 50], "vendor_ramdisk section"),
    "vendor v3 truncated dtb": (VENDOR_V3[:-4096 + 10], "dtb section"),
    "vendor bad entry size": (bytes(_set(_v4_vendor(), 2120, 100)), "entry size 100"),
    "vendor entry out of range": (
        bytes(_set(_v4_vendor(), _table_at(_v4_vendor()) + 108 + 4, 5000)),
        "lies outside the vendor ramdisk section"),
    "vendor entry sizes do not add up": (
        bytes(_set(_v4_vendor(), _table_at(_v4_vendor()), 1)), "add up to"),
    "vendor unknown ramdisk type": (
        bytes(_set(_v4_vendor(), _table_at(_v4_vendor()) + 8, 9)), "ramdisk type 9"),
    "vendor too many entries": (bytes(_set(_v4_vendor(), 2116, 1000)), "table"),
    "vendor truncated bootconfig": (bytes(_set(_v4_vendor(), 2124, 8192)), "bootconfig section"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed(case, tmp_path):
    data, words = MALFORMED[case]
    path = tmp_path / "bad.img"
    path.write_bytes(data)
    with pytest.raises(InputError) as e:
        read_boot_image(path)
    msg = str(e.value)
    assert e.value.path == str(path) and msg.startswith(f"{path}: ")
    assert "\n" not in msg
    assert words in msg, msg


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as e:
        read_boot_image(tmp_path / "nope.img")
    assert e.value.path == str(tmp_path / "nope.img")


@pytest.mark.parametrize("what", ["boot kernel", "boot ramdisk", "vendor ramdisk", "vendor dtb",
                                  "vendor bootconfig", "vendor entry"])
def test_huge_sizes_fail_fast(what):
    """A header claiming gigabytes must be refused from its sizes, not by first allocating them."""
    huge = 0xfff00000
    if what.startswith("boot"):
        data = _set(bytearray(BOOT_V3[:4096 * 2]), 8 if what == "boot kernel" else 12, huge)
    elif what == "vendor entry":
        data = _v4_vendor()
        _set(data, _table_at(data), huge)
    elif what == "vendor bootconfig":
        data = _set(_v4_vendor(), 2124, huge)
    else:
        data = _set(bytearray(VENDOR_V3), 24 if what == "vendor ramdisk" else 2100, huge)
    tracemalloc.start()
    try:
        with pytest.raises(InputError):
            parse_boot_image(bytes(data), "huge.img")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak >> 20} MiB allocated for a {len(data)}-byte file"


def test_module_tables_match_bootimg_h_sizes():
    """The header sizes bootimg.h states (sizeof of each struct)."""
    sizes = {v: struct.calcsize("<" + "".join(c for _, c in bootimg.BOOT_HEADERS[v]))
             for v in range(5)}
    assert sizes == {0: 1632, 1: 1648, 2: 1660, 3: 1580, 4: 1584}
    assert struct.calcsize("<" + "".join(c for _, c in bootimg.VENDOR_HEADERS[3])) == 2112
    assert struct.calcsize("<" + "".join(c for _, c in bootimg.VENDOR_HEADERS[4])) == 2128
    assert struct.calcsize("<" + "".join(c for _, c in bootimg.VENDOR_RAMDISK_ENTRY)) == 108
