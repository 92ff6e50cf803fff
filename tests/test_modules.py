"""Module facts from crafted .ko-like ELF objects (bootverify.readers.modules), both ELF backends,
malformed files, and a modules directory's modules.load / dep / blocklist / options."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest
from craft import VERMAGIC, Exp, Mod, compile_modules, need, sign

from bootverify.errors import InputError
from bootverify.readers import modules as M
from bootverify.readers.modules import (
    ModuleExport,
    ModuleFacts,
    find_modules,
    module_name,
    read_module,
)

FULL = Mod(
    modinfo=(("license", "GPL v2"), ("vermagic", VERMAGIC), ("name", "full-mod"),
             ("depends", "dep-one,dep_two"), ("import_ns", "CRYPTO_INTERNAL"),
             ("import_ns", "USB_STORAGE"), ("description", "a = b"),
             # get_modinfo() returns the first entry of a key
             ("license", "Proprietary")),
    versions=(("module_layout", 0x1a2b3c4d), ("_printk", 0xdeadbeef), ("kmalloc_trace", 0x0)),
    undefined=("_printk", "kmalloc_trace", "zz_last"),
    weak=("optional_hook", "another_weak"),
    exports=(Exp("full_plain", crc=0x11111111),
             Exp("full_gpl", gpl=True, crc=0xfffffffe),
             Exp("full_ns", namespace="FULL_NS", crc=0x00000001),
             Exp("full_gpl_ns", gpl=True, namespace="FULL_GPL_NS", crc=0x80000000)),
)
FULL_FACTS = dict(
    name="full_mod",
    undefined=("_printk", "kmalloc_trace", "zz_last"),
    weak_undefined=("another_weak", "optional_hook"),
    exports=(ModuleExport("full_plain", False, "", 0x11111111),
             ModuleExport("full_gpl", True, "", 0xfffffffe),
             ModuleExport("full_ns", False, "FULL_NS", 0x00000001),
             ModuleExport("full_gpl_ns", True, "FULL_GPL_NS", 0x80000000)),
    versions={"module_layout": 0x1a2b3c4d, "_printk": 0xdeadbeef, "kmalloc_trace": 0},
    vermagic=VERMAGIC,
    depends=("dep_one", "dep_two"),
    license="GPL v2",
    import_ns=("CRYPTO_INTERNAL", "USB_STORAGE"),
    signed=False,
)
BARE = Mod(undefined=("only_strong",))             # no modinfo, no __versions, no exports
NOCRC = Mod(modinfo=(("license", "GPL"),), exports=(Exp("nocrc_fn"), Exp("nocrc_gpl", gpl=True)))
BAD_VERSIONS = Mod(extra_c='static const char bad_versions[60] __attribute__((section('
                           '"__versions"), used)) = "x";')

MODS = {"full": FULL, "bare-mod": BARE, "nocrc": NOCRC, "bad_versions": BAD_VERSIONS}
# (flavour, extra gcc flags): ELF64 LE takes the struct fast path, the others pyelftools
FLAVOURS = {"le64": (), "be64": ("-mbig-endian",), "ilp32": ("-mabi=ilp32",)}


@pytest.fixture(scope="module")
def kos(tmp_path_factory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("kos")
    return {flavour: compile_modules(root / flavour, MODS, flags)
            for flavour, flags in FLAVOURS.items()}


def _facts(path: Path) -> ModuleFacts:
    return read_module(path)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_full_module_facts_exact(kos, flavour):
    path = kos[flavour]["full"]
    facts = _facts(path)
    assert facts == ModuleFacts(path=str(path), **FULL_FACTS)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_bare_module(kos, flavour):
    path = kos[flavour]["bare-mod"]
    facts = _facts(path)
    # no name= in .modinfo: kmod's rule on the file name, '-' as '_'
    assert facts == ModuleFacts(path=str(path), name="bare_mod", undefined=("only_strong",),
                                weak_undefined=(), exports=(), versions={}, vermagic="",
                                depends=(), license="", import_ns=(), signed=False)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_exports_without_crcs(kos, flavour):
    facts = _facts(kos[flavour]["nocrc"])
    assert facts.exports == (ModuleExport("nocrc_fn", False, "", None),
                             ModuleExport("nocrc_gpl", True, "", None))
    assert facts.license == "GPL"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_signature_trailer(kos, flavour, tmp_path):
    signed = tmp_path / "signed.ko"
    signed.write_bytes(kos[flavour]["full"].read_bytes())
    sign(signed)
    facts = _facts(signed)
    assert facts.signed is True
    assert facts == ModuleFacts(path=str(signed), **{**FULL_FACTS, "signed": True})
    # the magic must be at the very end
    signed.write_bytes(signed.read_bytes() + b"\n")
    assert _facts(signed).signed is False


def test_backends_agree_on_tables(kos):
    """pyelftools (general path) and struct (fast path) see the same sections and the same
    symbols the facts are made of, on the same ELF64 LE file."""
    for name in ("full", "nocrc", "bare-mod"):
        data = kos["le64"][name].read_bytes()
        fast_sections, fast_symbols = M.elf_tables(data, name, M.ElfReader.STRUCT)
        slow_sections, slow_symbols = M.elf_tables(data, name, M.ElfReader.PYELFTOOLS)
        assert fast_sections == slow_sections
        wanted = {M.SHN_UNDEF, M.SHN_ABS} | {fast_sections[n].index for n in M.EXPORT_SECTIONS
                                  if n in fast_sections}
        # the fast path keeps the raw binding, pyelftools only says weak or not
        assert sorted((n, i, b == M.STB_WEAK, v) for n, i, b, v in fast_symbols) == \
            sorted((n, i, b == M.STB_WEAK, v) for n, i, b, v in slow_symbols
                   if i in wanted and n)
        assert any(s[0] == "__ksymtab_full_plain" for s in fast_symbols) or name != "full"


def test_fast_path_only_for_elf64le(kos):
    """parse_module must not send ELF64 LE to pyelftools, nor others to the struct path."""
    readers = [M.elf_reader(kos[flavour]["full"].read_bytes(), flavour) for flavour in FLAVOURS]
    assert readers == [M.ElfReader.STRUCT, M.ElfReader.PYELFTOOLS, M.ElfReader.PYELFTOOLS]


def test_module_name_rule():
    assert module_name("/lib/modules/x/snd-soc-core.ko") == "snd_soc_core"
    assert module_name("plain.ko") == "plain"
    assert module_name("dir.ko/odd") == "odd"
    assert module_name("kernel/net/nf-tables.ko.xz") == "nf_tables"
    assert module_name("a.ko.zst") == "a" and module_name("b-c.ko.gz") == "b_c"


# --- compressed modules, made by the tools and options kbuild uses (6.12
# scripts/Makefile.modinst cmd_gzip, cmd_xz, cmd_zstd) ---

COMPRESSORS = {".ko.gz": ("gzip", "-n", "-f"),
               ".ko.xz": ("xz", "--check=crc32", "--lzma2=dict=1MiB", "-f"),
               ".ko.zst": ("zstd", "-T0", "--rm", "-f", "-q")}


def _compressed(src: Path, suffix: str, tmp_path: Path) -> Path:
    plain = tmp_path / (src.name.removesuffix(".ko") + "-c.ko")
    plain.write_bytes(src.read_bytes())
    tool, *args = COMPRESSORS[suffix]
    subprocess.run([need(tool), *args, str(plain)], check=True, timeout=60)
    out = plain.with_name(plain.name.removesuffix(".ko") + suffix)
    assert out.is_file() and not plain.exists()
    return out


@pytest.mark.parametrize("suffix", COMPRESSORS)
@pytest.mark.parametrize("flavour", ["le64", "be64"])
def test_compressed_module_same_facts(kos, flavour, suffix, tmp_path):
    """A .ko.gz/.ko.xz/.ko.zst is read as the .ko inside it, signature included (kbuild signs,
    then compresses)."""
    signed = tmp_path / "full.ko"
    signed.write_bytes(kos[flavour]["full"].read_bytes())
    sign(signed)
    path = _compressed(signed, suffix, tmp_path)
    assert M.module_compression(path.read_bytes()) is M.COMPRESSED_SUFFIXES[suffix]
    assert _facts(path) == ModuleFacts(path=str(path), **{**FULL_FACTS, "signed": True})


@pytest.mark.parametrize("suffix", COMPRESSORS)
def test_corrupt_compressed_module(kos, suffix, tmp_path):
    path = _compressed(kos["le64"]["full"], suffix, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    _expect_error(path, f"corrupt {M.COMPRESSED_SUFFIXES[suffix]} compressed module")
    # well-formed compressed data that is not a module
    tool, *args = COMPRESSORS[suffix]
    text = tmp_path / "text.ko"
    text.write_text("not a module\n")
    subprocess.run([need(tool), *args, str(text)], check=True, timeout=60)
    _expect_error(text.with_name("text" + suffix), "not an ELF file")


# --- malformed ---

def _patched(tmp_path: Path, src: Path, patch) -> Path:
    data = bytearray(src.read_bytes())
    patch(data)
    out = tmp_path / "bad.ko"
    out.write_bytes(bytes(data))
    return out


def _elf_header(data: bytes) -> tuple[str, int, int, int]:
    """(struct prefix, e_shoff, e_shnum, offset of e_shoff) for ELF32/64 LE/BE."""
    end = ">" if data[5] == 2 else "<"
    if data[4] == 2:
        shoff = struct.unpack_from(end + "Q", data, 0x28)[0]
        shnum = struct.unpack_from(end + "H", data, 0x3c)[0]
        return end, shoff, shnum, 0x28
    shoff = struct.unpack_from(end + "I", data, 0x20)[0]
    shnum = struct.unpack_from(end + "H", data, 0x30)[0]
    return end, shoff, shnum, 0x20


def _expect_error(path: Path, *words: str) -> InputError:
    with pytest.raises(InputError) as e:
        read_module(path)
    assert e.value.path == str(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    for w in words:
        assert w in msg, msg
    return e.value


def test_not_elf(tmp_path):
    p = tmp_path / "text.ko"
    p.write_text("this is not a module\n")
    _expect_error(p, "not an ELF file")
    p.write_bytes(b"")
    _expect_error(p, "not an ELF file")


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "absent.ko", "No such file")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("keep", [4, 20, 63, 0.5, -1])
def test_truncated(kos, flavour, keep, tmp_path):
    data = kos[flavour]["full"].read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0
                                                               else keep)
    p = tmp_path / "cut.ko"
    p.write_bytes(data[:n])
    _expect_error(p)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_section_table_past_eof(kos, flavour, tmp_path):
    def patch(d):
        end, shoff, _, at = _elf_header(d)
        struct.pack_into(end + ("Q" if d[4] == 2 else "I"), d, at, len(d) - 16)
    _expect_error(_patched(tmp_path, kos[flavour]["full"], patch))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_section_past_eof(kos, flavour, tmp_path):
    """One section header (the .modinfo one) says its data lies beyond the end of the file."""
    data = kos[flavour]["full"].read_bytes()

    def patch(d):
        end, shoff, shnum, _ = _elf_header(d)
        is64 = d[4] == 2
        entsize = 64 if is64 else 40
        for i in range(1, shnum):
            h = shoff + i * entsize
            if struct.unpack_from(end + "I", d, h + 4)[0] == 1:       # SHT_PROGBITS
                if is64:
                    struct.pack_into(end + "Q", d, h + 24, len(data) + 4096)
                else:
                    struct.pack_into(end + "I", d, h + 16, len(data) + 4096)
                return
        raise AssertionError("no PROGBITS section")
    _expect_error(_patched(tmp_path, kos[flavour]["full"], patch))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_versions_bad_size(kos, flavour):
    _expect_error(kos[flavour]["bad_versions"], "__versions is 60 bytes")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_no_symtab(kos, flavour, tmp_path):
    def patch(d):
        i = bytes(d).index(b".symtab\0")
        d[i:i + 8] = b".notsym\0"
    _expect_error(_patched(tmp_path, kos[flavour]["full"], patch), "no .symtab")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_not_relocatable(kos, flavour, tmp_path):
    def patch(d):
        struct.pack_into((">" if d[5] == 2 else "<") + "H", d, 16, 3)    # ET_DYN
    _expect_error(_patched(tmp_path, kos[flavour]["full"], patch), "ET_REL")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_bad_elf_class_or_data(kos, flavour, tmp_path):
    def patch(d):
        d[5] = 7        # EI_DATA neither LSB nor MSB
    _expect_error(_patched(tmp_path, kos[flavour]["full"], patch))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_non_utf8_symbol_name(kos, flavour, tmp_path):
    """Symbol names are bytes to the kernel; an odd one must not crash the reader."""
    def patch(d):
        i = bytes(d).index(b"zz_last\0")
        d[i:i + 7] = b"zz\xff\xfelst"
    facts = read_module(_patched(tmp_path, kos[flavour]["full"], patch))
    assert len(facts.undefined) == 3 and "zz_last" not in facts.undefined
    assert facts.undefined[:2] == ("_printk", "kmalloc_trace")


# --- finding modules ---

def test_find_modules_recursive_and_symlinks(kos, tmp_path):
    src = kos["le64"]["full"]
    root = tmp_path / "root"
    (root / "kernel/drivers/a").mkdir(parents=True)
    (root / "vendor").mkdir()
    (root / "kernel/drivers/a/one.ko").write_bytes(src.read_bytes())
    (root / "kernel/two.ko").write_bytes(src.read_bytes())
    (root / "kernel/notes.txt").write_text("x")
    (root / "kernel/three.ko.xz").write_bytes(b"x")
    (root / "kernel/five.ko.zst").write_bytes(b"x")
    (root / "kernel/six.ko.gz").write_bytes(b"x")
    (root / "kernel/seven.ko.bz2").write_bytes(b"x")      # not a suffix kbuild or kmod knows
    # a symlinked file counts once, a symlinked directory is followed, a loop terminates
    (root / "vendor/one-link.ko").symlink_to(root / "kernel/drivers/a/one.ko")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "four.ko").write_bytes(src.read_bytes())
    (root / "vendor/outside").symlink_to(outside)
    (root / "vendor/loop").symlink_to(root)
    (root / "vendor/dangling.ko").symlink_to(tmp_path / "nowhere.ko")
    found = find_modules(root)
    names = sorted(p.name for p in found)
    assert names == ["five.ko.zst", "four.ko", "one.ko", "six.ko.gz", "three.ko.xz", "two.ko"]
    assert found == sorted(found)


def test_find_modules_not_a_directory(tmp_path):
    with pytest.raises(InputError) as e:
        find_modules(tmp_path / "missing")
    assert "not a directory" in str(e.value)


# --- modules directory files ---

def test_unreadable_module_file(tmp_path):
    if os.geteuid() == 0:
        d = tmp_path / "dir.ko"
        d.mkdir()
        _expect_error(d)        # a directory named .ko: read fails (IsADirectoryError)
    else:
        p = tmp_path / "locked.ko"
        p.write_bytes(b"\x7fELF")
        p.chmod(0)
        _expect_error(p)
