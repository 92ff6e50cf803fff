"""A build's dist directory found by Kleaf's names (bootverify/readers/dist.py): a crafted one
with every name and its alternatives, and the real Samsung S23 files as they come."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootverify.errors import InputError
from bootverify.readers.dist import INPUTS, Partition, read_dist
from bootverify.readers.symbols import read_kmi_symbol_lists

S23 = Path(__file__).parent / "data" / "samsung-s23-5.15"


def _touch(root: Path, *names: str) -> None:
    for n in names:
        (root / n).write_text("x\n")


def test_every_kleaf_name_is_found_and_said(tmp_path: Path) -> None:
    _touch(tmp_path, "boot.img", "boot-lz4.img", "Image.lz4", "vendor_kernel_boot.img",
           "vendor_boot.img", "system_dlkm.img", "vendor_dlkm_staging_archive.tar.gz",
           "vmlinux.symvers", "Module.symvers", "System.map", "abi_gki_aarch64",
           "abi_gki_aarch64_qcom", "abi_gki_aarch64.stg", "abi_gki_protected_exports_aarch64",
           "vendor_kernel_boot.modules.load", "system_dlkm.modules.load",
           "vendor_dlkm.modules.load", "system_dlkm.modules.blocklist")
    d = read_dist(tmp_path)
    assert d.boot == tmp_path / "boot.img"
    assert d.kernel == tmp_path / "Image.lz4"
    assert d.vendor_kernel_boot == tmp_path / "vendor_kernel_boot.img"     # before vendor_boot
    assert d.system_dlkm == tmp_path / "system_dlkm.img"
    assert d.vendor_dlkm == tmp_path / "vendor_dlkm_staging_archive.tar.gz"
    assert d.symvers == tmp_path / "vmlinux.symvers"                        # before Module.
    assert d.system_map == tmp_path / "System.map"
    # The vendor lists are merged; the ABI representation (.stg) is not a symbol list.
    assert d.kmi_symbol_lists == (tmp_path / "abi_gki_aarch64", tmp_path / "abi_gki_aarch64_qcom")
    assert d.protected_exports == tmp_path / "abi_gki_protected_exports_aarch64"
    assert d.load_lists == {p: tmp_path / f"{p}.modules.load" for p in Partition}
    assert d.blocklists == {Partition.SYSTEM_DLKM: tmp_path / "system_dlkm.modules.blocklist"}
    assert [f.input for f in d.found] == list(INPUTS)

    lines = d.describe({"symvers": Path("/elsewhere/vmlinux.symvers"),
                        "boot": "written around --kernel Image", "protected-exports": None},
                       {"system-map": "there is a symvers"})
    assert len(lines) == len(INPUTS)
    assert f"kernel: {tmp_path / 'Image.lz4'}" in lines
    assert "symvers: /elsewhere/vmlinux.symvers (--symvers; the dist has vmlinux.symvers)" in lines
    assert "boot: written around --kernel Image; the dist has boot.img" in lines
    assert "system-map: not used (there is a symvers; the dist has System.map)" in lines
    assert f"protected-exports: {tmp_path / 'abi_gki_protected_exports_aarch64'}" in lines
    assert (f"vendor_kernel_boot.modules.blocklist: not found in {tmp_path} (looked for "
            "vendor_kernel_boot.modules.blocklist, vendor_boot.modules.blocklist)") in lines


def test_the_merged_kmi_list_wins_and_the_raw_one_reads(tmp_path: Path) -> None:
    (tmp_path / "abi_gki_aarch64").write_text("[abi_symbol_list]\n  printk\n")
    (tmp_path / "abi_symbollist.raw").write_text("printk\nkmalloc\n")
    d = read_dist(tmp_path)
    assert d.kmi_symbol_lists == (tmp_path / "abi_symbollist.raw",)
    assert read_kmi_symbol_lists(d.kmi_symbol_lists) == {"printk", "kmalloc"}
    (tmp_path / "abi_symbollist").write_text("[abi_symbol_list]\n  printk\n  kmalloc\n")
    assert read_dist(tmp_path).kmi_symbol_lists == (tmp_path / "abi_symbollist",)


def test_alternatives_a_directory_and_nothing(tmp_path: Path) -> None:
    _touch(tmp_path, "vendor_boot.img", "Module.symvers", "modules.load")
    (tmp_path / "system_dlkm").mkdir()
    d = read_dist(tmp_path)
    assert d.vendor_kernel_boot == tmp_path / "vendor_boot.img"
    assert d.symvers == tmp_path / "Module.symvers"
    assert d.system_dlkm == tmp_path / "system_dlkm"
    assert d.load_lists == {Partition.VENDOR_KERNEL_BOOT: tmp_path / "modules.load"}
    assert d.boot is d.kernel is d.vendor_dlkm is d.protected_exports is None
    assert d.kmi_symbol_lists == ()
    assert d.get("boot").paths == () and d.get("boot").wanted == ("boot.img",)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        read_dist(tmp_path / "missing")
    _touch(tmp_path, "file")
    with pytest.raises(InputError, match="not a directory"):
        read_dist(tmp_path / "file")


def test_the_s23_files_as_a_dist() -> None:
    d = read_dist(S23)
    assert d.vendor_kernel_boot == S23 / "vendor_boot.img"
    assert d.system_dlkm == S23 / "system_dlkm.img"
    assert d.boot is None and d.vendor_dlkm is None
    # Its symvers is the vmlinux rows under another name: not a Kleaf name, not taken.
    assert d.symvers is None
    assert d.load_lists == {Partition.VENDOR_KERNEL_BOOT: S23 / "modules.load",
                            Partition.SYSTEM_DLKM: S23 / "system_dlkm.modules.load",
                            Partition.VENDOR_DLKM: S23 / "vendor_dlkm.modules.load"}
    assert set(d.blocklists) == {Partition.SYSTEM_DLKM, Partition.VENDOR_DLKM}
