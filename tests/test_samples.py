"""The sample images (bootverify/samples/): built once per session (cached), read back with the
project's readers and AOSP's unpack_bootimg (v3 and v4 written by AOSP's mkbootimg), run
through `bootverify run`, and cross-checked with kmod."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootverify import samples
from bootverify.errors import InfraError
from bootverify.nightly.expect import read_expectations
from bootverify.readers.bootimg import BootImage, RamdiskType, VendorBootImage, read_boot_image
from bootverify.readers.dist import Partition, read_dist
from bootverify.readers.modules import module_name, read_module
from bootverify.readers.partition import Format, open_partition
from bootverify.readers.ramdisk import CpioEntry, decompress, unpack_initrd
from bootverify.readers.symbols import read_kmi_symbol_lists, read_symvers
from bootverify.samples import kernels, recipe, steps

# A cold build of both kernels takes minutes; whichever test comes first pays for it.
BUILD_TIMEOUT = 1200
VARIANTS = ["", "replacement"]

RECIPE = recipe.load_recipe()


def _recipe(out: Path) -> recipe.Recipe:
    """The recipe of the kernel generation an output directory was built for."""
    return recipe.load_recipe(
        generation=json.loads((out / "expected.json").read_text())["generation"])


def _run(*argv: str | Path) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def _expected(out: Path) -> dict[str, dict]:
    return json.loads((out / "expected.json").read_text())["modules"]


def _dlkm(out: Path) -> dict[str, CpioEntry]:
    img = read_boot_image(out / "vendor_kernel_boot.img")
    assert isinstance(img, VendorBootImage)
    return unpack_initrd(img.ramdisks[0].data, out)


def _modules_dir(out: Path, tmp: Path) -> Path:
    """The vendor ramdisk's lib/modules/ written out, for kmod tools."""
    for name, e in _dlkm(out).items():
        if e.is_file and name.startswith("lib/modules/"):
            (tmp / Path(name).name).write_bytes(e.data)
    return tmp


# --- recipe (no build needed) ---

def test_recipe_expectations_use_the_contract_vocabulary() -> None:
    for m in [*RECIPE.system_dlkm, *RECIPE.shipped()]:
        for e in m.expected.values():
            assert set(e.static) <= recipe.PROBLEM_KINDS
            assert e.runtime in recipe.RUNTIME_OUTCOMES
            assert list(e.static) == sorted(e.static)
            assert set(e.findings) <= recipe.FINDING_CLASSES
            assert list(e.findings) == sorted(e.findings)


def test_recipe_seeds_every_fault() -> None:
    gki = {m.name: m.expected[recipe.Variant.GKI] for m in RECIPE.shipped()}
    kinds = {k for e in gki.values() for k in e.static}
    assert kinds >= {"unresolved", "crc-mismatch", "not-in-kmi", "namespace", "gpl-only",
                     "dependency-failed"}
    # The replacement kernel seeds what only an untrimmed kernel with the CRC can show: a module
    # built against the trimmed GKI has no __versions entry for msleep (vendor_latent).
    replacement = {k for m in RECIPE.shipped()
                   for k in m.expected[recipe.Variant.REPLACEMENT].static}
    assert "missing-version" in replacement - kinds
    outcomes = {e.runtime for e in gki.values()}
    # every outcome but the two of a packaging mistake (issue 9), which need a broken load list:
    # test_run_android.py repacks the samples' vendor_kernel_boot for those
    assert outcomes == recipe.RUNTIME_OUTCOMES - {"not-found", "unlisted"}
    assert [m.name for m in RECIPE.modules if not m.shipped] == ["vendor_modem_shared"]
    # issue 15: modules that load and show something in the kernel log while they do
    found = {f: e.runtime for e in gki.values() for f in e.findings}
    assert found == {"warning": "loaded", "firmware": "loaded", "probe": "loaded"}


def test_a_generations_table_overrides_only_that_generation(tmp_path: Path) -> None:
    """A module's `generation."X"` table replaces the variants it names on X alone; the
    replacement follows the gki table in force unless it has its own."""
    root = tmp_path / "recipe"
    shutil.copytree(recipe.RECIPE_DIR, root)
    old, new = recipe.generations(root)[0], recipe.generations(root)[-1]
    with (root / recipe.RECIPE).open("a") as f:      # the last [[module]]: vendor_probe
        f.write(f'generation."{new}".gki = {{ static = [], runtime = "init-error", '
                f'why = "seeded: differs on {new}" }}\n')
    probe = {g: next(m for m in recipe.load_recipe(root, g).modules if m.name == "vendor_probe")
             for g in (old, new)}
    assert probe[old].expected == next(
        m for m in RECIPE.modules if m.name == "vendor_probe").expected
    assert {v: e.runtime for v, e in probe[new].expected.items()} == {
        recipe.Variant.GKI: "init-error", recipe.Variant.REPLACEMENT: "init-error"}
    with (root / recipe.RECIPE).open("a") as f:
        f.write('generation."5.4".gki = { static = [], runtime = "loaded" }\n')
    with pytest.raises(InfraError, match=r"unknown kernel generations \['5.4'\]"):
        recipe.load_recipe(root)


def test_images_build_names_the_generations_it_has() -> None:
    proc = subprocess.run([sys.executable, "-m", "bootverify", "images", "build", "--kernel",
                           "5.4"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "bootverify: --kernel: no sample kernel generation '5.4' (the recipe " \
        f"has {', '.join(recipe.generations())}, or all)\n"


def test_relicense_keeps_the_file_length(tmp_path: Path) -> None:
    ko = tmp_path / "m.ko"
    ko.write_bytes(b"\x7fELF....description=x\0license=Dual MIT/GPL\0vermagic=6.1\0")
    kernels.relicense(ko, "Proprietary")
    assert ko.read_bytes() == b"\x7fELF....description=x\0license=Proprietary\0\0vermagic=6.1\0"
    with pytest.raises(InfraError):
        kernels.relicense(ko, "A license longer than the old one")


def test_recipe_key_follows_the_recipe(tmp_path: Path) -> None:
    """Each generation's key: its source package version and the recipe files it uses, not
    another generation's own files, not the docs."""
    root = tmp_path / "recipe"
    shutil.copytree(recipe.RECIPE_DIR, root)

    def keys(version: str = "1") -> dict[str, str]:
        return {g: recipe.recipe_key(recipe.load_recipe(root, g), root, version)
                for g in recipe.generations(root)}

    before = keys()
    assert len(set(before.values())) == len(before) and keys() == before
    assert keys("2") != before
    (root / "README.md").write_text("docs do not change the images\n")
    assert keys() == before
    newest, *older = reversed(recipe.generations(root))
    (own,) = recipe.load_recipe(root, newest).kernel.patches
    own.write_text(own.read_text() + "\n")
    changed = keys()
    assert changed[newest] != before[newest]
    assert all(changed[g] == before[g] for g in older)
    with (root / "gki.config").open("a") as f:
        f.write("CONFIG_CRC32=y\n")
    assert all(keys()[g] != changed[g] for g in changed)


def test_a_failing_step_names_itself_and_shows_its_log(tmp_path: Path) -> None:
    run = steps.Runner(lambda line: None)
    with pytest.raises(InfraError) as e:
        run.run("gki kernel: make", ["sh", "-c", "echo compiling; echo 'error: boom' >&2; exit 3"],
                cwd=tmp_path, log=tmp_path / "build.log", timeout=30)
    assert "step 'gki kernel: make' failed (exit status 3)" in str(e.value)
    assert "error: boom" in str(e.value)


def test_a_step_past_its_time_is_killed_with_its_children(tmp_path: Path) -> None:
    run = steps.Runner(lambda line: None)
    pidfile = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(InfraError, match="no result in 1 s"):
        run.run("slow", ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], cwd=tmp_path,
                log=tmp_path / "slow.log", timeout=1)
    assert time.monotonic() - start < 10
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or \
        Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"


def test_parallel_steps_stop_when_one_fails(tmp_path: Path) -> None:
    run = steps.Runner(lambda line: None)

    def slow() -> None:
        run.run("slow", ["sleep", "60"], cwd=tmp_path, log=tmp_path / "slow.log", timeout=120)

    def failing() -> None:
        run.run("failing", ["false"], cwd=tmp_path, log=tmp_path / "f.log", timeout=30)

    start = time.monotonic()
    with pytest.raises(InfraError, match="step 'failing' failed"):
        run.parallel([slow, failing])
    assert time.monotonic() - start < 10


# --- the built images ---

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_expect_toml_names_every_seeded_failure(generation_images: Path, variant: str) -> None:
    """The samples ship their known failures for `run --expect`: exactly the modules
    expected.json says fail, with their outcome and a reason, and where the device stops."""
    out = generation_images / variant
    expect = read_expectations(out / "expect.toml")
    failing = {n: e["runtime"] for n, e in _expected(out).items()
               if e["runtime"] not in ("loaded", "skipped")}
    assert {n: e.outcome for n, e in expect.modules.items()} == failing
    assert all(e.reason.startswith("seeded: ") for e in expect.modules.values())
    assert expect.device is not None and expect.device.verdict == "stops"
    assert expect.device.stops_at in failing


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_outputs_are_complete(generation_images: Path, variant: str) -> None:
    out = generation_images / variant
    for name in ("boot.img", "vendor_kernel_boot.img", "vmlinux.symvers", "System.map",
                 "kmi_symbol_list", "expected.json", "expect.toml", "system_dlkm/modules.load",
                 "system_dlkm/modules.dep", *(f"kernel/{k}" for k in kernels.GKI_OUTS)):
        assert (out / name).is_file(), name
    assert (out / "kernel/Image.lz4").read_bytes()[:4] == b"\x02\x21\x4c\x18"   # lz4 -l
    assert decompress((out / "kernel/Image.lz4").read_bytes(), "Image.lz4") == \
        (out / "kernel/Image").read_bytes()
    if not variant:
        assert (out / "boot-v3.img").is_file() and (out / "vendor_kernel_boot-v3.img").is_file()
    # A Kleaf dist directory as well: every input by its Kleaf name.
    dist = read_dist(out)
    assert (dist.boot, dist.vendor_kernel_boot, dist.system_dlkm, dist.symvers) == (
        out / "boot.img", out / "vendor_kernel_boot.img", out / "system_dlkm.img",
        out / "vmlinux.symvers")
    assert dist.kmi_symbol_lists == (out / "abi_symbollist",) and dist.kernel == out / "Image"
    assert set(dist.load_lists) == {Partition.VENDOR_KERNEL_BOOT, Partition.SYSTEM_DLKM}
    with open_partition(out / "system_dlkm.img") as tree:
        assert tree.format is Format.EXT4
        assert {p.name: p.read_bytes() for p in tree.modules_dir.iterdir()} == \
            {p.name: p.read_bytes() for p in (out / "system_dlkm").iterdir()}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_boot_image_v4(generation_images: Path, variant: str) -> None:
    out = generation_images / variant
    img = read_boot_image(out / "boot.img")
    assert isinstance(img, BootImage) and img.header_version == 4
    assert img.kernel == (out / "kernel/Image.lz4").read_bytes()
    assert img.cmdline == RECIPE.cmdline
    tree = unpack_initrd(img.ramdisk, "boot.img ramdisk")
    assert tree["init"].data == RECIPE.init.read_bytes() and tree["init"].mode & 0o111
    assert tree["bin/busybox"].data[:4] == b"\x7fELF"
    assert (tree["dev/console"].rdevmajor, tree["dev/console"].rdevminor) == (5, 1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_vendor_kernel_boot_v4(generation_images: Path, variant: str) -> None:
    out = generation_images / variant
    img = read_boot_image(out / "vendor_kernel_boot.img")
    assert isinstance(img, VendorBootImage) and img.header_version == 4
    assert img.cmdline == RECIPE.vendor_cmdline
    assert [(r.type, r.name) for r in img.ramdisks] == [(RamdiskType.DLKM, "dlkm")]
    assert img.bootconfig.decode().splitlines() == list(RECIPE.bootconfig)
    assert img.dtb[:4] == b"\xd0\x0d\xfe\xed"
    tree = _dlkm(out)
    shipped = RECIPE.shipped()
    kos = sorted(n for n in tree if n.endswith(".ko"))
    assert kos == sorted(f"lib/modules/{m.file}" for m in shipped)
    text = {n.removeprefix("lib/modules/"): e.data.decode() for n, e in tree.items()
            if n.startswith("lib/modules/modules.")}
    assert text["modules.load"].split() == [m.file for m in shipped]
    assert text["modules.blocklist"] == "blocklist vendor_blocked\n"
    assert text["modules.options"] == "options vendor_sensor poll_ms=50\n"
    deps = dict(line.split(":", 1) for line in text["modules.dep"].splitlines())
    assert deps["vendor_sensor.ko"].split() == ["vendor_core.ko"]
    assert deps["vendor_panel.ko"].split() == ["vendor_backlight.ko"]
    assert deps["vendor_modem.ko"].split() == []      # its provider is not in the image


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_check_predicts_every_modules_problems_and_the_device_verdict(
        generation_images: Path, variant: str) -> None:
    """`bootverify check --dist` on each output directory: every module's problem kinds are
    expected.json's, and the device is predicted to stop at the first listed module expected
    to fail to link (what a static check can see: not a hang, a crash or an init error)."""
    out = generation_images / variant
    proc = subprocess.run([sys.executable, "-m", "bootverify", "check", "--dist", out,
                           "--json", "-"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr        # the samples' seeded faults
    report = json.loads(proc.stdout)
    assert {m["name"]: sorted({p["kind"] for p in m["static"]["problems"]})
            for m in report["modules"]} == {n: e["static"] for n, e in _expected(out).items()}
    expected = _expected(out)
    listed = [module_name(n) for n in (out / "vendor_kernel_boot.modules.load").read_text().split()]
    stops_at = next(n for n in listed if expected[n]["runtime"] == "link-error")
    assert (report["android"]["verdict"], report["android"]["stops_at"]) == ("stops", stops_at)


@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_v3_images_match_v4_through_aosps_unpack_bootimg(sample_images: Path,
                                                           tmp_path: Path) -> None:
    boot = read_boot_image(sample_images / "boot.img")
    vendor = read_boot_image(sample_images / "vendor_kernel_boot.img")
    assert isinstance(boot, BootImage) and isinstance(vendor, VendorBootImage)

    info = _run("unpack_bootimg", "--boot_img", sample_images / "boot-v3.img",
                "--out", tmp_path / "boot")
    assert re.search(r"boot image header version: 3", info)
    assert f"command line args: {RECIPE.cmdline}" in info
    assert (tmp_path / "boot/kernel").read_bytes() == boot.kernel
    assert (tmp_path / "boot/ramdisk").read_bytes() == boot.ramdisk

    info = _run("unpack_bootimg", "--boot_img", sample_images / "vendor_kernel_boot-v3.img",
                "--out", tmp_path / "vendor")
    assert re.search(r"boot image header version: 3", info)
    assert f"vendor command line args: {RECIPE.vendor_cmdline}" in info
    assert (tmp_path / "vendor/vendor_ramdisk").read_bytes() == vendor.ramdisks[0].data
    assert (tmp_path / "vendor/dtb").read_bytes() == vendor.dtb

    v3 = read_boot_image(sample_images / "vendor_kernel_boot-v3.img")
    assert isinstance(v3, VendorBootImage) and v3.header_version == 3
    assert v3.ramdisks[0].data == vendor.ramdisks[0].data


@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_mkbootimg_v4_images_read_as_bootverifys_own(sample_images: Path) -> None:
    """AOSP's mkbootimg 34 and bootverify's writer agree on every v4 field bootverify reads;
    the vendor ramdisk table's second fragment keeps its type, name and board id."""
    own_boot = read_boot_image(sample_images / "boot.img")
    aosp_boot = read_boot_image(sample_images / "boot-v4-mkbootimg.img")
    assert isinstance(own_boot, BootImage) and isinstance(aosp_boot, BootImage)
    assert (aosp_boot.header_version, aosp_boot.kernel, aosp_boot.ramdisk, aosp_boot.cmdline) == \
        (4, own_boot.kernel, own_boot.ramdisk, own_boot.cmdline)

    own = read_boot_image(sample_images / "vendor_kernel_boot.img")
    aosp = read_boot_image(sample_images / "vendor_kernel_boot-v4-mkbootimg.img")
    assert isinstance(own, VendorBootImage) and isinstance(aosp, VendorBootImage)
    assert (aosp.header_version, aosp.cmdline, aosp.dtb, aosp.bootconfig) == \
        (4, own.cmdline, own.dtb, own.bootconfig)
    platform, dlkm = aosp.ramdisks
    assert (platform.type, platform.name) == (RamdiskType.PLATFORM, "")
    assert "system/etc/ramdisk/build.prop" in unpack_initrd(platform.data, "platform")
    assert (dlkm.type, dlkm.name, dlkm.data) == (RamdiskType.DLKM, "dlkm", own.ramdisks[0].data)
    assert dlkm.board_id[0] == 0xb007 and not any(dlkm.board_id[1:])


@pytest.mark.qemu
@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_run_on_mkbootimg_v4_images_gives_the_expected_outcomes(sample_images: Path,
                                                                tmp_path: Path) -> None:
    """The device's vendor ramdisk is every fragment, concatenated, as the bootloader loads
    it: the platform fragment does not get in the way of the DLKM one."""
    proc = subprocess.run(
        [sys.executable, "-m", "bootverify", "run",
         "--boot", sample_images / "boot-v4-mkbootimg.img",
         "--vendor-kernel-boot", sample_images / "vendor_kernel_boot-v4-mkbootimg.img",
         "--system-dlkm", sample_images / "system_dlkm",
         "--symvers", sample_images / "vmlinux.symvers",
         "--kmi-symbol-list", sample_images / "kmi_symbol_list", "--module-timeout", "8",
         "--output", tmp_path],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT - 60)
    assert proc.returncode == 1, proc.stderr        # the samples' seeded faults
    modules = json.loads((tmp_path / "report.json").read_text())["modules"]
    expected = _expected(sample_images)
    assert {m["name"]: m["runtime"]["outcome"] for m in modules} == \
        {name: e["runtime"] for name, e in expected.items()}
    # the seeded findings, and nothing else (the hang is cut before the hung-task detector)
    assert {m["name"]: sorted({f["class"] for f in m["runtime"]["findings"]}) for m in modules} \
        == {name: e["findings"] for name, e in expected.items()}


@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_gki_kernel_exports_exactly_the_kmi(generation_images: Path) -> None:
    kmi = read_kmi_symbol_lists([generation_images / "kmi_symbol_list"])
    assert kmi == read_kmi_symbol_lists(_recipe(generation_images).kernel.kmi_symbol_lists)
    vmlinux = {e.name for e in read_symvers(generation_images / "vmlinux.symvers")}
    assert vmlinux == kmi
    # Module exports are not trimmed (the Android Common Kernel's rule, see images/).
    assert "crc16" in {e.name for e in
                       read_module(generation_images / "system_dlkm/crc16.ko").exports}
    assert "msleep" not in vmlinux
    # No trimming in the replacement: msleep is there, and much more than the list.
    replacement = {e.name for e in
                   read_symvers(generation_images / "replacement/vmlinux.symvers")}
    assert "msleep" in replacement and len(replacement) > 10 * len(kmi)


@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_replacement_patch_changes_the_crc_md5_was_built_against(generation_images: Path) -> None:
    def crcs(path: Path) -> dict[str, int]:
        return {e.name: e.crc for e in read_symvers(path)}

    gki, replacement = crcs(generation_images / "vmlinux.symvers"), \
        crcs(generation_images / "replacement/vmlinux.symvers")
    md5 = read_module(generation_images / "replacement/system_dlkm/md5.ko")
    assert md5.versions["crypto_register_shash"] == gki["crypto_register_shash"]
    assert md5.versions["crypto_register_shash"] != replacement["crypto_register_shash"]
    crc16 = read_module(generation_images / "replacement/system_dlkm/crc16.ko")
    assert all(replacement[s] == crc for s, crc in crc16.versions.items())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_expected_json_names_every_module_in_the_images(generation_images: Path,
                                                        variant: str) -> None:
    out = generation_images / variant
    expected = _expected(out)
    in_images = {module_name(n) for n in _dlkm(out) if n.endswith(".ko")} | \
        {module_name(p) for p in (out / "system_dlkm").glob("*.ko")}
    assert set(expected) == in_images
    assert {n for n, e in expected.items() if e["partition"] == "system_dlkm"} == \
        {module_name(p) for p in (out / "system_dlkm").glob("*.ko")}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_kmod_depmod_agrees_with_expected_json(generation_images: Path, variant: str,
                                               tmp_path: Path) -> None:
    """kmod's depmod, an independent reader: the modules it says need an unknown symbol or
    disagree about a CRC are those expected.json marks unresolved / crc-mismatch. depmod takes a
    __versions entry that is not there for CRC 0, so a missing-version module (the kernel: "no
    symbol version for") is one it says "disagrees about version" of too."""
    out = generation_images / variant
    root = tmp_path / "root"
    moddir = root / "lib/modules/0.0"
    moddir.mkdir(parents=True)
    _modules_dir(out, moddir)
    for ko in (out / "system_dlkm").glob("*.ko"):
        (moddir / ko.name).write_bytes(ko.read_bytes())
    log = _run("depmod", "-b", root, "-e", "-E", out / "vmlinux.symvers", "0.0")
    unknown = set(re.findall(r"/([\w-]+)\.ko needs unknown symbol", log))
    disagree = set(re.findall(r"/([\w-]+)\.ko disagrees about version of symbol", log))
    expected = _expected(out)
    assert {module_name(n) for n in unknown} == \
        {n for n, e in expected.items() if "unresolved" in e["static"]}
    assert {module_name(n) for n in disagree} == \
        {n for n, e in expected.items() if {"crc-mismatch", "missing-version"} & set(e["static"])}


@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_seeded_module_facts(generation_images: Path, tmp_path: Path) -> None:
    d = _modules_dir(generation_images, tmp_path)
    blob = read_module(d / "vendor_blob.ko")
    assert blob.license == "Proprietary" and "ktime_get" in blob.undefined
    assert read_module(d / "vendor_sensor.ko").import_ns == ("VENDOR_CORE_INTERNAL",)
    assert read_module(d / "vendor_debug.ko").import_ns == ()
    core = {e.name: e for e in read_module(d / "vendor_core.ko").exports}
    assert core["vendor_core_debug_dump"].namespace == "VENDOR_CORE_INTERNAL"
    assert read_module(d / "vendor_modem.ko").depends == ("vendor_modem_shared",)
    assert "msleep" in read_module(d / "vendor_backlight.ko").undefined
    # vendor_hash was built against the replacement kernel, whose release string differs; with
    # CONFIG_MODVERSIONS only the flags after it count.
    flags = {read_module(ko).vermagic.split(" ", 1)[1] for ko in d.glob("*.ko")}
    assert len(flags) == 1
    gki = read_module(generation_images / "system_dlkm/crc16.ko").vermagic.split(" ", 1)[0]
    assert gki.startswith(f"{_recipe(generation_images).generation}.")
    assert read_module(d / "vendor_hash.ko").vermagic.startswith(f"{gki}-vendor ")


@pytest.mark.images
@pytest.mark.timeout(BUILD_TIMEOUT)
def test_warm_build_is_fast_and_stable(generation_images: Path) -> None:
    from bootverify.cache import cache_dir
    lines: list[str] = []
    again = samples.build(cache_dir() / "images", lines.append,
                          generation=_recipe(generation_images).generation)
    assert again == generation_images
    assert lines == []          # found in the cache: no step ran
