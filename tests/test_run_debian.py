"""`bootverify run` on real modules nobody here wrote: Debian's arm64 kernel, packed into a
boot.img v3 + vendor_boot.img v3 by Debian's own mkbootimg, with a set of its modules.

- Its own ABI's modules: everything loads or fails for runtime-only reasons; nothing missed.
- An older ABI's modules on the newest kernel: every predicted failure is confirmed.
- The same on Debian's 6.12 (v4 images): its modules are .ko.xz, and its kernel decompresses
  xz itself (CONFIG_MODULE_DECOMPRESS), so they go to finit_module() as they are, with
  MODULE_INIT_COMPRESSED_FILE; 6.1's kernel decompresses nothing, so compressed 6.1 modules are
  decompressed on the host first, and the run says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import debian_kernels
from bootverify.readers.modules import module_name
from packing import assert_clean, closure, module_index, pack_debian_images

pytestmark = [pytest.mark.qemu, pytest.mark.debian]

# Drivers and protocols a virt guest can load without hardware, with their dependencies
# (btrfs pulls in libcrc32c, whose init asks for crc32c through request_module: there is no
# /sbin/modprobe in the guest, so it fails at runtime, as on an Android first stage).
LOAD = ("dummy", "crc7", "ipip", "veth", "isofs", "vxlan", "tun", "macvlan", "ipvlan", "bridge",
        "8021q", "bonding", "nbd", "zram", "squashfs", "fuse", "overlay", "btrfs", "sctp",
        "wireguard", "nlmon", "geneve", "vrf", "af_key", "l2tp_eth", "nfnetlink", "cuse",
        "hfsplus", "dm_mod", "raid0")
RUN_TIMEOUT = 300
# fuse is built into Debian's 6.12 kernel
LOAD_612 = tuple(n for n in LOAD if n != "fuse")
# what bootverify notes when it decompressed modules on the host (runtime/boot.py)
HOST_DECOMPRESSED = "decompressed on the host"


def _bootverify_run(images: tuple[Path, Path], symvers: Path, out: Path) -> tuple[int, dict]:
    boot_img, vendor_img = images
    proc = subprocess.run(
        [sys.executable, "-m", "bootverify", "run", "--boot", str(boot_img),
         "--vendor-boot", str(vendor_img), "--symvers", str(symvers), "--module-timeout", "20",
         "--output", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def v3_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("mkbootimg"):
        pytest.skip("Debian's mkbootimg is not installed")
    return tmp_path_factory.mktemp("debian-v3")


@pytest.mark.timeout(RUN_TIMEOUT + 120)
def test_own_abi_modules_load_or_fail_for_runtime_reasons_only(v3_images: Path) -> None:
    root = debian_kernels.image_root(debian_kernels.NEWEST)
    images = pack_debian_images(v3_images / "img", kernel_root=root,
                                release=debian_kernels.release(debian_kernels.NEWEST), load=LOAD,
                                header_version=3)
    symvers = debian_kernels.module_symvers(debian_kernels.NEWEST)
    rc, report = _bootverify_run(images, symvers, v3_images)
    assert_clean()
    modules = {m["name"]: m for m in report["modules"]}
    assert set(LOAD) <= set(modules)
    assert report["kernel_release"] == debian_kernels.release(debian_kernels.NEWEST)
    disagreeing = {n: (m["agreement"], m["why"]) for n, m in modules.items()
                   if m["agreement"] in ("missed", "unconfirmed")}
    assert disagreeing == {}
    for name, m in modules.items():
        assert m["static"]["verdict"] == "ok", name
        assert m["agreement"] in ("ok", "runtime-only"), (name, m["agreement"], m["why"])
    loaded = [n for n, m in modules.items() if m["runtime"]["outcome"] == "loaded"]
    assert len(loaded) >= len(modules) - 5, modules
    assert rc == (0 if len(loaded) == len(modules) else 1)


@pytest.mark.timeout(RUN_TIMEOUT + 120)
def test_older_abi_modules_every_predicted_failure_confirmed(v3_images: Path) -> None:
    root = debian_kernels.image_root(debian_kernels.NEWEST)
    release = debian_kernels.release(debian_kernels.NEWEST)
    load = ("dummy", "veth", "ipip", "isofs", "nlmon")
    # the same modules and dependencies, every file from the older ABI
    newest = {module_name(p): p for p in (root / "lib/modules" / release).rglob("*.ko")}
    older = {p.name: p for p in debian_kernels.modules_dir(debian_kernels.OLDER).rglob("*.ko")}
    foreign = {name: older[path.name] for name, path in closure(newest, load).items()}
    images = pack_debian_images(v3_images / "old", kernel_root=root, release=release, load=load,
                                foreign=foreign, header_version=3)
    symvers = debian_kernels.module_symvers(debian_kernels.NEWEST)
    rc, report = _bootverify_run(images, symvers, v3_images)
    assert_clean()
    assert rc == 1 and {m["name"] for m in report["modules"]} == set(foreign)
    for m in report["modules"]:
        assert m["static"]["verdict"] == "fail", m["name"]
        assert m["runtime"]["outcome"] == "link-error", m["name"]
        assert m["agreement"] == "confirmed", (m["name"], m["why"])
        # the kernel stops at module_layout, the first CRC it checks: a crc-mismatch
        assert m["runtime"]["problems"] == [{"kind": "disagrees-about-version",
                                             "symbol": "module_layout", "detail": "",
                                             "static_kind": "crc-mismatch"}]


@pytest.mark.timeout(2 * RUN_TIMEOUT)
def test_softdep_pre_loads_crc32c_before_libcrc32c(tmp_path: Path) -> None:
    """Debian's libcrc32c says `softdep libcrc32c pre: crc32c` (modules.softdep) and crc32c is
    an alias of crc32c_generic (modules.alias): libmodprobe loads crc32c_generic first, and
    libcrc32c's init finds its hash. Without the softdep it fails (no modprobe in the guest to
    answer its request_module), and the first stage stops there."""
    root = debian_kernels.image_root(debian_kernels.NEWEST)
    release = debian_kernels.release(debian_kernels.NEWEST)
    generic = {"crc32c_generic": next((root / "lib/modules" / release).rglob(
        "crc32c_generic.ko"))}
    symvers = debian_kernels.module_symvers(debian_kernels.NEWEST)
    runs = {}
    for softdeps in (True, False):
        out = tmp_path / str(softdeps)
        images = pack_debian_images(out, kernel_root=root, release=release, load=("libcrc32c",),
                                    foreign=generic, softdeps=softdeps)
        runs[softdeps] = _bootverify_run(images, symvers, out)
        assert_clean()
    rc, report = runs[True]
    assert [(m["name"], m["runtime"]["outcome"]) for m in report["modules"]] == [
        ("crc32c_generic", "loaded"), ("libcrc32c", "loaded")]
    assert rc == 0 and report["android"]["verdict"] == "boots"
    rc, report = runs[False]
    outcomes = {m["name"]: m["runtime"]["outcome"] for m in report["modules"]}
    assert outcomes == {"libcrc32c": "init-error", "crc32c_generic": "unlisted"}
    assert rc == 1 and report["android"]["stops_at"] == "libcrc32c"


@pytest.mark.timeout(RUN_TIMEOUT + 120)
def test_a_line_printed_without_a_newline_is_the_modules(tmp_path: Path) -> None:
    """ubifs's init fails without crypto/zstd.ko (its compressor, asked for by request_module)
    and says so in a pr_err() with no newline: a record the kernel finalizes only when the
    next one is made, which finit's end of the load's window does (it used to be lost)."""
    root = debian_kernels.image_root(debian_kernels.NEWEST)
    images = pack_debian_images(tmp_path / "img", kernel_root=root,
                                release=debian_kernels.release(debian_kernels.NEWEST),
                                load=("ubifs",))
    _, report = _bootverify_run(images, debian_kernels.module_symvers(debian_kernels.NEWEST),
                                tmp_path)
    assert_clean()
    ubifs = next(m["runtime"] for m in report["modules"] if m["name"] == "ubifs")
    assert (ubifs["outcome"], ubifs["errno_name"]) == ("init-error", "ENOENT")
    assert any("cannot initialize compressor zstd, error -2" in line for line in ubifs["kmsg"])
    assert not any("bootverify:" in line for m in report["modules"]
                   for line in m["runtime"]["kmsg"])


def _disagreeing(report: dict) -> dict:
    return {m["name"]: (m["agreement"], m["why"]) for m in report["modules"]
            if m["agreement"] in ("missed", "unconfirmed")}


@pytest.mark.timeout(RUN_TIMEOUT + 180)
def test_612_own_compressed_modules_nothing_missed(tmp_path: Path) -> None:
    abi = debian_kernels.NEWEST_612
    release = debian_kernels.release(abi)
    images = pack_debian_images(tmp_path / "img", kernel_root=debian_kernels.image_root(abi),
                                release=release, load=LOAD_612, header_version=4)
    rc, report = _bootverify_run(images, debian_kernels.module_symvers(abi), tmp_path)
    assert_clean()
    modules = {m["name"]: m for m in report["modules"]}
    assert set(LOAD_612) <= set(modules) and report["kernel_release"] == release
    assert all(m["path"].endswith(".ko.xz") for m in modules.values())
    assert _disagreeing(report) == {}
    for name, m in modules.items():
        assert m["static"]["verdict"] == "ok", name
        assert m["agreement"] in ("ok", "runtime-only"), (name, m["agreement"], m["why"])
    loaded = [n for n, m in modules.items() if m["runtime"]["outcome"] == "loaded"]
    assert len(loaded) >= len(modules) - 5, modules
    # the kernel took them compressed; a device's libmodprobe would not (finit_module() with
    # no flags): the device stops at the first listed module
    assert not [n for n in report["notes"] if HOST_DECOMPRESSED in n]
    assert [n for n in report["notes"] if "compressed module file(s)" in n]
    android = report["android"]
    assert rc == 1 and (android["verdict"], android["stops_at"]) == ("stops", LOAD_612[0])
    assert "compressed module file: libmodprobe's Insmod()" in android["reason"]


@pytest.mark.timeout(RUN_TIMEOUT + 180)
def test_612_older_abi_every_predicted_failure_confirmed(tmp_path: Path) -> None:
    """6.12.115's modules on 6.12.117: module_layout is the same, so the kernel goes on to the
    symbols and names each one whose CRC differs; crc7 uses none that changed."""
    newest, older = debian_kernels.NEWEST_612, debian_kernels.OLDER_612
    root = debian_kernels.image_root(newest)
    release = debian_kernels.release(newest)
    load = ("dummy", "crc7", "veth", "ipip", "isofs", "nlmon")
    older_files = module_index(debian_kernels.modules_dir(older))
    foreign = {name: older_files[name] for name in
               closure(module_index(root / "lib/modules" / release), load)}
    images = pack_debian_images(tmp_path / "img", kernel_root=root, release=release, load=load,
                                foreign=foreign, header_version=4)
    rc, report = _bootverify_run(images, debian_kernels.module_symvers(newest), tmp_path)
    assert_clean()
    assert rc == 1 and {m["name"] for m in report["modules"]} == set(foreign)
    assert _disagreeing(report) == {}
    failing = set()
    for m in report["modules"]:
        if m["static"]["verdict"] == "ok":
            assert m["runtime"]["outcome"] == "loaded", m["name"]
            continue
        failing.add(m["name"])
        assert m["runtime"]["outcome"] == "link-error", m["name"]
        assert m["agreement"] == "confirmed", (m["name"], m["why"])
        # simplify_symbols() names every symbol it cannot take, as the analysis does: a CRC
        # that changed, or a symbol of a dependency that failed (nothing else here)
        kinds = {"crc-mismatch": "disagrees-about-version", "dependency-failed": "unknown-symbol"}
        predicted = {(kinds[p["kind"]], p["symbol"]) for p in m["static"]["problems"]}
        assert {(p["kind"], p["symbol"]) for p in m["runtime"]["problems"]} == predicted
        assert ("disagrees-about-version", "module_layout") not in predicted
    assert "crc7" not in failing and {"dummy", "veth", "isofs", "nlmon"} <= failing


@pytest.mark.timeout(RUN_TIMEOUT + 120)
def test_61_kernel_gets_compressed_modules_decompressed_on_the_host(tmp_path: Path) -> None:
    """Debian's 6.1 kernel has no CONFIG_MODULE_DECOMPRESS: a .ko.xz and a .ko.zst of its own
    modules (compressed with kbuild's tools) load as the .ko they hold, next to a plain .ko, and
    the run says they were decompressed on the host. (No .ko.gz here: bookworm's kmod 30 is
    built without zlib, and its depmod leaves .ko.gz files out of modules.dep.)"""
    abi = debian_kernels.NEWEST
    root = debian_kernels.image_root(abi)
    release = debian_kernels.release(abi)
    plain = module_index(root / "lib/modules" / release)
    foreign = {}
    for name, suffix, tool in (("dummy", ".ko.xz", ["xz", "--check=crc32", "--lzma2=dict=1MiB"]),
                               ("isofs", ".ko.zst", ["zstd", "-q"])):
        out = tmp_path / (name + suffix)
        out.write_bytes(subprocess.run([*tool, "-c", str(plain[name])], check=True,
                                       capture_output=True, timeout=120).stdout)
        foreign[name] = out
    images = pack_debian_images(tmp_path / "img", kernel_root=root, release=release,
                                load=(*foreign, "veth"), foreign=foreign, header_version=4)
    rc, report = _bootverify_run(images, debian_kernels.module_symvers(abi), tmp_path)
    assert_clean()
    outcomes = {m["name"]: (m["runtime"]["outcome"], m["agreement"]) for m in report["modules"]}
    assert outcomes == {"dummy": ("loaded", "ok"), "veth": ("loaded", "ok"),
                        "cdrom": ("loaded", "ok"), "isofs": ("loaded", "ok")}
    # the kernel's verdict is about the contents; a device's libmodprobe refuses the file
    assert rc == 1 and report["android"]["stops_at"] == "dummy"
    assert [n for n in report["notes"] if HOST_DECOMPRESSED in n] == [
        f"1 {how} compressed module(s) decompressed on the host: kernel {release} decompresses "
        f"none (no CONFIG_MODULE_DECOMPRESS) itself" for how in ("xz", "zstd")]
