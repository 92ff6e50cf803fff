"""Property-based tests (hypothesis) over every reader and the plan: whatever the input, a reader
returns or raises InputError (one line naming the file), never anything else, and the plan
gives every module one unit and one step. Derandomized and bounded (EXAMPLES each) so that CI
pays a few seconds; benchmarks/fuzz.py runs the long campaign."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from craft import fake_image, kmi_list, symvers_line
from test_cli_static import built  # noqa: F401 - fixture
from bootverify.errors import InputError
from bootverify.plan import ModuleSet, make_plan
from bootverify.readers import bootimg, kernel, modules, modulesdir, ramdisk, symbols
from bootverify.readers.bootimg import BootImage, RamdiskType, VendorBootImage, VendorRamdisk
from bootverify.readers.modulesdir import ModulesDir
from bootverify.readers.ramdisk import Compression, CpioEntry, compress, write_cpio
from bootverify.verdict import device_verdict

EXAMPLES = 150
BOUNDED = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CPIO = write_cpio([CpioEntry("lib", stat.S_IFDIR | 0o755),
                   CpioEntry("lib/modules/a.ko", stat.S_IFREG | 0o644, b"\x7fELF" + bytes(60)),
                   CpioEntry("lib/modules/modules.load", stat.S_IFREG | 0o644, b"a.ko\n")])
INITRD = (CPIO + compress(CPIO, Compression.GZIP) + b"\0" * 3
          + compress(CPIO, Compression.LZ4_LEGACY))
BOOT_V4 = bootimg.encode_boot_image(BootImage(4, compress(fake_image(), Compression.LZ4_LEGACY),
                                              CPIO, "console=x", signature=b"s" * 16))
VENDOR_V4 = bootimg.encode_vendor_boot_image(VendorBootImage(
    4, "v=1", (VendorRamdisk(compress(CPIO, Compression.GZIP), RamdiskType.PLATFORM, "p"),
               VendorRamdisk(compress(CPIO, Compression.LZ4_LEGACY), RamdiskType.DLKM, "d")),
    dtb=b"\xd0\x0d\xfe\xed" + bytes(12), bootconfig=b"a = 1\n"))
BOUNDARY = (0, 1, 2, 3, 4, 0x7f, 0x80, 0xff)


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """seed with some bytes (and 32-bit words, at the boundaries) changed, and maybe cut."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[at] = draw(st.sampled_from(BOUNDARY) | st.integers(0, 255))
        else:
            word = draw(st.sampled_from((0, 1, 0x7fffffff, 0x80000000, 0xffffffff,
                                         len(seed), len(seed) + 1)))
            data[at:at + 4] = word.to_bytes(4, "little")
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


def _reads_or_refuses(read, *args: object) -> None:
    try:
        read(*args)
    except InputError as e:
        assert "\n" not in str(e)


@BOUNDED
@given(mutated(BOOT_V4) | mutated(VENDOR_V4) | st.binary(max_size=4096))
def test_bootimg_reader(data: bytes) -> None:
    _reads_or_refuses(bootimg.parse_boot_image, data, "x.img")


@BOUNDED
@given(mutated(INITRD) | mutated(compress(CPIO * 4, Compression.LZ4_LEGACY)))
def test_ramdisk_reader(data: bytes) -> None:
    _reads_or_refuses(ramdisk.unpack_initrd, data, "initrd")


@BOUNDED
@given(mutated(compress(fake_image(), Compression.GZIP)) | mutated(fake_image(size=8192)))
def test_kernel_reader(data: bytes) -> None:
    _reads_or_refuses(kernel.parse_kernel, data, "Image")


@pytest.fixture(scope="module")
def module_seed(built) -> bytes:  # noqa: F811
    return built["consumer"].read_bytes()


@settings(BOUNDED, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_modules_reader(module_seed: bytes, data: st.DataObject) -> None:
    ko = data.draw(mutated(module_seed))
    if data.draw(st.booleans()) and len(ko) > 6:      # the other ELF flavours: pyelftools
        ko = ko[:4] + bytes([data.draw(st.sampled_from((1, 2))), 2]) + ko[6:]
    _reads_or_refuses(modules.parse_module, ko, "x.ko")


WORDS = st.sampled_from(["alias", "softdep", "pre:", "post:", "options", "dyn_options",
                         "blocklist", "a.ko:", "a.ko", "b.ko", "x*", "#", "=", "a", ":", "\t"])
TEXT = st.lists(st.lists(WORDS | st.text("ab.-*:#= \t\0\x85", max_size=4), max_size=5)
                .map(" ".join), max_size=6).map("\n".join)


@BOUNDED
@given(st.dictionaries(st.sampled_from(sorted(modulesdir.android.MODULES_FILES)), TEXT))
def test_modulesdir_reader(texts: dict[str, str]) -> None:
    _reads_or_refuses(modulesdir.parse_modules_dir, Path("/m"), texts)


SYMVERS = symvers_line(1, "printk") + symvers_line(2, "gpl_fn", kind="EXPORT_SYMBOL_GPL")


@BOUNDED
@given(st.text(max_size=200) | mutated(SYMVERS.encode()).map(
    lambda b: b.decode("utf-8", "replace")) | mutated(kmi_list("a", "b").encode()).map(
    lambda b: b.decode("utf-8", "replace")))
def test_symbol_readers(text: str) -> None:
    _reads_or_refuses(symbols.parse_symvers, text, "vmlinux.symvers")
    _reads_or_refuses(symbols.parse_kmi_symbol_list, text, "abi_gki_aarch64")


NAMES = st.sampled_from(["a", "b", "c", "d-x", "e", "gone"])


@st.composite
def module_sets(draw: st.DrawFn) -> ModuleSet:
    """A module directory with any modules.dep (chains, cycles, self-deps, missing files),
    load list, aliases, soft deps and blocklist."""
    files = draw(st.sets(NAMES.filter(lambda n: n != "gone"), max_size=5))
    dep = draw(st.dictionaries(NAMES.map(lambda n: n + ".ko"),
                               st.lists(NAMES.map(lambda n: n + ".ko"), max_size=4)
                               .map(tuple), max_size=6))
    load = tuple(draw(st.lists(NAMES.map(lambda n: n + ".ko"), max_size=5)))
    aliases = tuple(draw(st.lists(st.tuples(st.sampled_from(["a", "x*", "*"]), NAMES),
                                  max_size=3)))
    softdeps = tuple(modulesdir.Softdep(m, w, s) for m, w, s in draw(
        st.lists(st.tuples(NAMES, st.sampled_from(["pre", "post"]), NAMES), max_size=3)))
    blocklist = frozenset(draw(st.sets(NAMES, max_size=2)))
    return ModuleSet("vendor_ramdisk", "/lib/modules", frozenset(f + ".ko" for f in files),
                     ModulesDir(Path("/m"), load, dep, blocklist, {}, aliases, softdeps))


@BOUNDED
@given(module_sets(), st.data())
def test_plan(s: ModuleSet, data: st.DataObject) -> None:
    plan = make_plan([s])
    keys = [st_.key for st_ in plan.steps]
    assert len(keys) == len(set(keys)) and set(keys) == set(plan.units)
    assert {modulesdir.MakeCanonical(f) for f in s.files} <= {k[1] for k in plan.units}
    assert len(plan.lines) == sum(1 for x in plan.steps if x.line is not None)
    outcomes = {k: data.draw(st.sampled_from(["loaded", "link-error", "hung"])) for k in keys}
    assert device_verdict(plan, outcomes).verdict in ("boots", "stops")
