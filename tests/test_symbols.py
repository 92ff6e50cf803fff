"""Symbol sources (bootverify.readers.symbols): symvers, System.map, KMI symbol lists,
protected exports, malformed lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from craft import kmi_list, symvers_line
from bootverify.errors import InputError
from bootverify.readers.symbols import (Export, ExportType, format_kmi_symbol_list,
                                        kernel_exports_from_symvers,
                                        kernel_exports_from_system_map, parse_kmi_symbol_list,
                                        parse_symvers, read_kmi_symbol_lists,
                                        read_protected_exports, read_symvers)

SYMVERS = (
    symvers_line(0x12345678, "printk")
    + symvers_line(0xdeadbeef, "usb_register", kind="EXPORT_SYMBOL_GPL", ns="USB_COMMON")
    + symvers_line(0x00000000, "module_layout")
    + symvers_line(0xabcdef01, "vendor_fn", owner="drivers/vendor/vendor")
    + "0x0badcafe\tfour_columns\tvmlinux\tEXPORT_SYMBOL\n"      # pre-5.8 style, no namespace
    + "\n"
)


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def test_symvers_rows(tmp_path):
    rows = read_symvers(_write(tmp_path, "Module.symvers", SYMVERS))
    assert rows == [
        Export("printk", "vmlinux", 0x12345678, ExportType.EXPORT_SYMBOL, ""),
        Export("usb_register", "vmlinux", 0xdeadbeef, ExportType.EXPORT_SYMBOL_GPL, "USB_COMMON"),
        Export("module_layout", "vmlinux", 0, ExportType.EXPORT_SYMBOL, ""),
        Export("vendor_fn", "drivers/vendor/vendor", 0xabcdef01, ExportType.EXPORT_SYMBOL, ""),
        Export("four_columns", "vmlinux", 0x0badcafe, ExportType.EXPORT_SYMBOL, ""),
    ]
    assert rows[1].gpl_only and not rows[0].gpl_only


def test_kernel_exports_from_symvers_only_vmlinux(tmp_path):
    k = kernel_exports_from_symvers(_write(tmp_path, "Module.symvers", SYMVERS))
    assert k.has_crcs is True
    assert sorted(k.exports) == ["four_columns", "module_layout", "printk", "usb_register"]
    assert k.exports["usb_register"].namespace == "USB_COMMON"
    assert k.source == str(tmp_path / "Module.symvers")


@pytest.mark.parametrize("line,words", [
    ("0xzz\tprintk\tvmlinux\tEXPORT_SYMBOL\t", "bad CRC or export type"),
    ("\tprintk\tvmlinux\tEXPORT_SYMBOL\t", "bad CRC or export type"),
    ("0x1\tprintk\tvmlinux\tEXPORT_SYMBOL_FOO\t", "bad CRC or export type"),
    ("0x1\tprintk\tvmlinux\tunknown\t", "bad symbol line"),
    ("0x1\tprintk\tvmlinux", "expected"),
    ("0x1 printk vmlinux EXPORT_SYMBOL", "expected"),
    ("0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\tNS\textra", "expected"),
    ("0x1\tbad name\tvmlinux\tEXPORT_SYMBOL\t", "bad symbol line"),
    ("0x1\t\tvmlinux\tEXPORT_SYMBOL\t", "bad symbol line"),
    ("0x1\t9starts_with_digit\tvmlinux\tEXPORT_SYMBOL\t", "bad symbol line"),
])
def test_symvers_malformed(tmp_path, line, words):
    p = _write(tmp_path, "vmlinux.symvers", symvers_line(1, "ok") + line + "\n")
    with pytest.raises(InputError) as e:
        read_symvers(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: line 2: ") and words in msg and "\n" not in msg


def test_symvers_empty_and_binary(tmp_path):
    with pytest.raises(InputError) as e:
        kernel_exports_from_symvers(_write(tmp_path, "empty.symvers", "\n\n"))
    assert "no exports" in str(e.value)
    with pytest.raises(InputError) as e:
        read_symvers(_write(tmp_path, "bin.symvers", b"\x7fELF\xff\xfe\x00"))
    assert "not a text file" in str(e.value)
    with pytest.raises(InputError) as e:
        read_symvers(tmp_path / "missing")
    assert e.value.path == str(tmp_path / "missing")


def test_crc_wider_than_32_bits_rejected():
    """CRCs are u32 in __kcrctab; a wider value cannot match anything."""
    rows = parse_symvers(symvers_line(0xffffffff, "a"), "x")
    assert rows[0].crc == 0xffffffff
    for crc in ("0x1ffffffff", "-0x1", "-1"):
        with pytest.raises(InputError) as e:
            parse_symvers(f"{crc}\ta\tvmlinux\tEXPORT_SYMBOL\t\n", "x")
        assert "line 1: bad CRC" in str(e.value)


# --- System.map ---

SYSTEM_MAP = """\
ffff800008000000 T _text
ffff800008010000 T printk
ffff800009a00000 r __ksymtab_printk
ffff800009a0000c r __ksymtab_usb_register
ffff800009b00000 r __kstrtab_printk
0000000000000000 A __crc_printk
"""


def test_system_map(tmp_path):
    k = kernel_exports_from_system_map(_write(tmp_path, "System.map", SYSTEM_MAP))
    assert k.has_crcs is False
    assert k.exports == {"printk": Export("printk", "vmlinux"),
                         "usb_register": Export("usb_register", "vmlinux")}
    assert all(e.crc is None and e.type is ExportType.UNKNOWN for e in k.exports.values())


@pytest.mark.parametrize("text,words", [
    ("ffff800008000000 T _text\n", "no __ksymtab_"),
    ("", "no __ksymtab_"),
    ("ffff80000800000g T x\n", "line 1"),
    ("ffff800008000000 T\n", "line 1"),
    ("ffff800008000000 r __ksymtab_a\n0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n", "line 2"),
])
def test_system_map_malformed(tmp_path, text, words):
    p = _write(tmp_path, "System.map", text)
    with pytest.raises(InputError) as e:
        kernel_exports_from_system_map(p)
    assert e.value.path == str(p) and words in str(e.value)


# --- KMI symbol lists ---

def test_kmi_list_parse():
    text = ("[abi_symbol_list]\n"
            "# required by vendor.ko\n"
            "  printk\n"
            "  usb_register   # trailing comment\n"
            "\n"
            "\tkmalloc_trace\n"
            "  printk\n")
    assert parse_kmi_symbol_list(text, "l") == frozenset({"printk", "usb_register",
                                                           "kmalloc_trace"})


def test_kmi_lists_merge(tmp_path):
    a = _write(tmp_path, "abi_gki_aarch64", kmi_list("printk", "a_only", comment="core"))
    b = _write(tmp_path, "abi_gki_aarch64_vendor", kmi_list("printk", "b_only"))
    c = _write(tmp_path, "abi_gki_aarch64_empty", "[abi_symbol_list]\n")
    assert read_kmi_symbol_lists([a, b, c]) == frozenset({"printk", "a_only", "b_only"})
    assert read_kmi_symbol_lists([]) == frozenset()


def test_kmi_list_format_round_trip():
    syms = {"b", "a", "c_d"}
    text = format_kmi_symbol_list(syms)
    assert text == "[abi_symbol_list]\n  a\n  b\n  c_d\n"
    assert parse_kmi_symbol_list(text, "x") == syms


@pytest.mark.parametrize("text,words", [
    ("  printk\n", "line 1: symbol before the [abi_symbol_list] header"),
    ("# only a comment\n  printk\n[abi_symbol_list]\n", "line 2: symbol before"),
    ("", "no [abi_symbol_list] header"),
    ("# just comments\n", "no [abi_symbol_list] header"),
    ("[abi_symbol_list]\n[other_section]\n  x\n", "line 2: unknown section"),
    ("[abi_symbol_list]\n  two words\n", "line 2: not a symbol name"),
    ("[abi_symbol_list]\n  printk()\n", "line 2: not a symbol name"),
    ("[abi_symbol_list]\n  9lives\n", "line 2: not a symbol name"),
])
def test_kmi_list_malformed(tmp_path, text, words):
    p = _write(tmp_path, "abi_list", text)
    with pytest.raises(InputError) as e:
        read_kmi_symbol_lists([p])
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and words in msg and "\n" not in msg


def test_kmi_list_error_names_the_bad_file(tmp_path):
    good = _write(tmp_path, "good", kmi_list("a"))
    bad = _write(tmp_path, "bad", "a\n")
    with pytest.raises(InputError) as e:
        read_kmi_symbol_lists([good, bad])
    assert e.value.path == str(bad)


# --- protected exports ---

def test_protected_exports(tmp_path):
    p = _write(tmp_path, "abi_gki_protected_exports_aarch64",
               "# protected\nsnd_soc_register_card\n  cfg80211_scan_done\n\n"
               "snd_soc_register_card\n")
    assert read_protected_exports(p) == frozenset({"snd_soc_register_card", "cfg80211_scan_done"})


@pytest.mark.parametrize("text", ["two words\n", "[abi_symbol_list]\n", "x;\n"])
def test_protected_exports_malformed(tmp_path, text):
    p = _write(tmp_path, "protected", text)
    with pytest.raises(InputError) as e:
        read_protected_exports(p)
    assert e.value.path == str(p) and "line 1" in str(e.value)
