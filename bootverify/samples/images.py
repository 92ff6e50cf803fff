"""The sample images themselves: system_dlkm (a directory, and system_dlkm.img: ext4 by
e2fsprogs' mke2fs) and the vendor ramdisk's modules tree (with kmod's depmod), the generic
ramdisk, boot.img and vendor_kernel_boot.img (v4 by bootverify, v3 by Debian's mkbootimg) for
each kernel, and `build`, which puts the stages together.

Each variant's directory is also a Kleaf dist directory (readers/dist.py): boot.img,
vendor_kernel_boot.img, system_dlkm.img, vmlinux.symvers, abi_symbollist, Image*, the
*.modules.load / *.modules.blocklist lists; `bootverify run --dist DIR` takes it as it is.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootverify.readers.bootimg import (
    BootImage,
    RamdiskType,
    VendorBootImage,
    VendorRamdisk,
    write_boot_image,
    write_vendor_boot_image,
)
from bootverify.readers.ramdisk import (
    Compression,
    CpioEntry,
    compress,
    entries_from_tree,
    write_cpio,
)
from bootverify.readers.symbols import format_kmi_symbol_list, read_kmi_symbol_lists
from bootverify.runtime import agent
from bootverify.runtime.vm import virt_dtb
from bootverify.samples.kernels import (
    GKI_OUTS,
    Kernel,
    build_kernel,
    device_modules,
    patched_source,
    source,
    source_version,
)
from bootverify.samples.recipe import (
    RECIPE_DIR,
    Expectation,
    Partition,
    Recipe,
    Variant,
    load_recipe,
    recipe_key,
)
from bootverify.samples.steps import T_TOOL, Runner, digest, locked, remove_leftovers, staging


def _depmod(run: Runner, files: Sequence[Path], release: str, symvers: Path, work: Path) -> str:
    """kmod's modules.dep for a flat modules directory (paths relative to it, as Kleaf ships)."""
    root = Path(tempfile.mkdtemp(prefix="depmod-", dir=work))
    moddir = root / "lib/modules" / release
    moddir.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, moddir / f.name)
    run.run("depmod", ["depmod", "-b", root, "-e", "-E", symvers, release], cwd=root,
            log=work / "depmod.log", timeout=T_TOOL)
    return (moddir / "modules.dep").read_text()


def _system_dlkm(run: Runner, recipe: Recipe, gki: Kernel, kernel: Kernel, work: Path,
                 out: Path) -> None:
    """The GKI kernel's own modules, flat, with modules.load and modules.dep; depmod checks them
    against `kernel` (its log shows what will not load)."""
    out.mkdir()
    files = [gki.build / g.path for g in recipe.system_dlkm]
    for f in files:
        shutil.copy2(f, out / f.name)
    (out / "modules.load").write_text("".join(f"{f.name}\n" for f in files))
    (out / "modules.dep").write_text(_depmod(run, files, kernel.release,
                                             kernel.out("vmlinux.symvers"), work))


def _partition_image(run: Runner, files: Path, release: str, work: Path, image: Path) -> None:
    """system_dlkm.img as Kleaf's build_system_dlkm makes it: ext4, labelled with the
    partition's name, the modules under lib/modules/<release>/ (mke2fs -d, nothing mounted)."""
    root = work / f"{image.stem}-root"
    shutil.copytree(files, root / "lib/modules" / release)
    size_kib = 1024 + 2 * sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) // 1024
    run.run(f"mke2fs {image.name}", ["mke2fs", "-q", "-F", "-t", "ext4", "-L", image.stem,
                                     "-d", root, image, f"{size_kib}k"],
            cwd=work, log=work / "mke2fs.log", timeout=T_TOOL)


def _dist_names(out: Path, dlkm_root: Path) -> None:
    """The Kleaf dist names beside bootverify's own, so that `--dist` takes the directory as it
    is: the kernel Images, the merged KMI list and the partitions' load lists and blocklists."""
    for name in ("Image", "Image.lz4", "Image.gz"):
        (out / name).symlink_to(f"kernel/{name}")
    (out / "abi_symbollist").symlink_to("kmi_symbol_list")
    moddir = dlkm_root / "lib/modules"
    for name in ("modules.load", "modules.blocklist"):
        shutil.copy2(moddir / name, out / f"vendor_kernel_boot.{name}")
    shutil.copy2(out / "system_dlkm/modules.load", out / "system_dlkm.modules.load")


def _dlkm_tree(run: Runner, recipe: Recipe, kos: dict[str, Path], kernel: Kernel, work: Path,
               root: Path) -> None:
    """The vendor ramdisk's lib/modules/ as Kleaf lays out a DLKM fragment."""
    moddir = root / "lib/modules"
    moddir.mkdir(parents=True)
    shipped = recipe.shipped()
    for m in shipped:
        shutil.copy2(kos[m.name], moddir / m.file)
    (moddir / "modules.load").write_text("".join(f"{m.file}\n" for m in shipped))
    (moddir / "modules.blocklist").write_text(
        "".join(f"blocklist {m.name}\n" for m in shipped if m.blocklisted))
    (moddir / "modules.options").write_text(
        "".join(f"options {m.name} {m.options}\n" for m in shipped if m.options))
    (moddir / "modules.dep").write_text(_depmod(run, [kos[m.name] for m in shipped],
                                                kernel.release, kernel.out("vmlinux.symvers"),
                                                work))


def _generic_ramdisk(recipe: Recipe, busybox: Path) -> bytes:
    """boot.img's ramdisk: /init and a static busybox; /dev/console so init has a console before
    it mounts devtmpfs. lz4 legacy, as a GKI boot ramdisk."""
    dirs = ("bin", "dev", "lib", "proc", "sys")
    entries = [CpioEntry(d, 0o40755) for d in dirs]
    entries += [CpioEntry("bin/busybox", 0o100755, busybox.read_bytes()),
                CpioEntry("bin/sh", 0o120777, b"busybox"),
                CpioEntry("dev/console", 0o20600, rdevmajor=5, rdevminor=1),
                CpioEntry("init", 0o100755, recipe.init.read_bytes())]
    return compress(write_cpio(sorted(entries, key=lambda e: e.name)), Compression.LZ4_LEGACY)


def _expected(recipe: Recipe, variant: Variant) -> dict:
    def one(e: Expectation, partition: Partition) -> dict:
        return {"static": list(e.static), "runtime": e.runtime, "findings": list(e.findings),
                "partition": partition.value}

    modules = {g.name: one(g.expected[variant], Partition.SYSTEM_DLKM) for g in recipe.system_dlkm}
    modules |= {m.name: one(m.expected[variant], Partition.VENDOR_KERNEL_BOOT)
                for m in recipe.shipped()}
    return {"generation": recipe.generation, "modules": modules}


def _expect_toml(recipe: Recipe, variant: Variant) -> str:
    """The variant's known failures for `bootverify run --expect` (nightly/expect.py's format;
    TOML's basic strings take JSON's escapes)."""
    d = recipe.android[variant]
    out = ["# The sample images' seeded faults: what `bootverify run --expect` expects to fail.",
           "# Made from samples.toml by `bootverify images build`.", "", "[android]",
           f"verdict = {json.dumps(d.verdict)}"]
    out += [f"stops_at = {json.dumps(d.stops_at)}"] if d.stops_at else []
    out.append(f"reason = {json.dumps(d.why)}")
    entries = [(g.name, g.expected[variant]) for g in recipe.system_dlkm] + \
        [(m.name, m.expected[variant]) for m in recipe.shipped()]
    for name, e in entries:
        if e.why:
            out += ["", f"[modules.{name}]", f"outcome = {json.dumps(e.runtime)}",
                    f"reason = {json.dumps(e.why)}"]
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Ramdisks:
    generic: bytes
    dlkm: bytes


def _variant_outputs(run: Runner, recipe: Recipe, variant: Variant, kernel: Kernel,
                     gki: Kernel, kos: dict[str, Path], kmi: Sequence[str], generic: bytes,
                     dtb: bytes, work: Path, out: Path) -> Ramdisks:
    """One variant's images and side files in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernel").mkdir()
    for name in GKI_OUTS:
        shutil.copy2(kernel.out(name), out / "kernel" / name)
    for name in ("vmlinux.symvers", "System.map"):
        shutil.copy2(kernel.out(name), out / name)
    (out / "kmi_symbol_list").write_text(format_kmi_symbol_list(kmi))
    (out / "expected.json").write_text(json.dumps(_expected(recipe, variant), indent=2) + "\n")
    (out / "expect.toml").write_text(_expect_toml(recipe, variant))
    vwork = work / variant.value
    vwork.mkdir()
    _system_dlkm(run, recipe, gki, kernel, vwork, out / "system_dlkm")
    _partition_image(run, out / "system_dlkm", kernel.release, vwork, out / "system_dlkm.img")
    _dlkm_tree(run, recipe, kos, kernel, vwork, vwork / "dlkm")
    _dist_names(out, vwork / "dlkm")
    # gzip here, lz4 for the generic ramdisk: the boot exercises both decompressors.
    dlkm = compress(write_cpio(entries_from_tree(vwork / "dlkm")), Compression.GZIP)
    write_boot_image(BootImage(header_version=4, kernel=kernel.out("Image.lz4").read_bytes(),
                               ramdisk=generic, cmdline=recipe.cmdline), out / "boot.img")
    bootconfig = "".join(f"{line}\n" for line in recipe.bootconfig).encode()
    write_vendor_boot_image(VendorBootImage(
        header_version=4, cmdline=recipe.vendor_cmdline, name="bvsample", dtb=dtb,
        ramdisks=(VendorRamdisk(dlkm, RamdiskType.DLKM, "dlkm"),), bootconfig=bootconfig),
        out / "vendor_kernel_boot.img")
    return Ramdisks(generic, dlkm)


# AOSP's own writer (mkbootimg 34) for a second opinion on every header field: the same
# payloads as v3 (no bootconfig, one vendor ramdisk, which v3 has no table for) and as v4, where
# the vendor ramdisk table gets two fragments, as on a device: a platform one (a stand-in for
# the first-stage files a device ships there) and the DLKM one with a board id.
MKBOOTIMG_BOARD_ID = "0x0000b007"
PLATFORM_FILE = CpioEntry("system/etc/ramdisk/build.prop", 0o100644,
                          b"ro.bootverify.sample=platform fragment\n")


def _mkbootimg_images(run: Runner, recipe: Recipe, kernel: Kernel, ramdisks: Ramdisks,
                      dtb: bytes, work: Path, out: Path) -> None:
    """boot-v3.img / vendor_kernel_boot-v3.img and boot-v4-mkbootimg.img /
    vendor_kernel_boot-v4-mkbootimg.img, written by AOSP's mkbootimg."""
    platform = compress(write_cpio([CpioEntry("system", 0o40755),
                                    CpioEntry("system/etc", 0o40755),
                                    CpioEntry("system/etc/ramdisk", 0o40755), PLATFORM_FILE]),
                        Compression.GZIP)
    bootconfig = "".join(f"{line}\n" for line in recipe.bootconfig)
    files = {"generic.cpio.lz4": ramdisks.generic, "dlkm.cpio.gz": ramdisks.dlkm,
             "platform.cpio.gz": platform, "virt.dtb": dtb, "bootconfig": bootconfig.encode()}
    for name, data in files.items():
        (work / name).write_bytes(data)
    log = work / "mkbootimg.log"
    for version, suffix in (("3", "-v3"), ("4", "-v4-mkbootimg")):
        run.run(f"mkbootimg boot v{version}", [
            "mkbootimg", "--header_version", version, "--kernel", kernel.out("Image.lz4"),
            "--ramdisk", work / "generic.cpio.lz4", "--cmdline", recipe.cmdline,
            "-o", out / f"boot{suffix}.img"], cwd=work, log=log, timeout=T_TOOL)
    common = ["mkbootimg", "--pagesize", "4096", "--board", "bvsample",
              "--vendor_cmdline", recipe.vendor_cmdline, "--dtb", work / "virt.dtb"]
    run.run("mkbootimg vendor_boot v3", [
        *common, "--header_version", "3", "--vendor_ramdisk", work / "dlkm.cpio.gz",
        "--vendor_boot", out / "vendor_kernel_boot-v3.img"], cwd=work, log=log, timeout=T_TOOL)
    run.run("mkbootimg vendor_boot v4", [
        *common, "--header_version", "4", "--vendor_bootconfig", work / "bootconfig",
        "--ramdisk_type", "platform", "--ramdisk_name", "",
        "--vendor_ramdisk_fragment", work / "platform.cpio.gz",
        "--ramdisk_type", "dlkm", "--ramdisk_name", "dlkm", "--board_id0", MKBOOTIMG_BOARD_ID,
        "--vendor_ramdisk_fragment", work / "dlkm.cpio.gz",
        "--vendor_boot", out / "vendor_kernel_boot-v4-mkbootimg.img"],
        cwd=work, log=log, timeout=T_TOOL)


def build(cache_root: Path, progress: Callable[[str], None],
          recipe_dir: Path = RECIPE_DIR, generation: str | None = None) -> Path:
    """Build (or find in the cache) the sample images of one kernel generation (default: the
    newest); return the output directory. Another recipe_dir (a changed copy of the recipe:
    another KMI list, say) gets its own images, cached by its content as the recipe's are."""
    recipe = load_recipe(recipe_dir, generation)
    version = source_version(recipe.kernel.package)
    final = cache_root / "samples" / \
        f"{recipe.generation}-{recipe_key(recipe, recipe_dir, version)}"
    if final.is_dir():
        return final
    with locked(cache_root):
        if final.is_dir():          # built by whoever held the lock before us
            return final
        remove_leftovers(cache_root)
        start = time.monotonic()
        run = Runner(progress)
        _build(run, recipe, version, cache_root, final)
        progress(f"sample images ({recipe.generation}) built in "
                 f"{time.monotonic() - start:.0f} s")
    return final


def _kernels(run: Runner, recipe: Recipe, version: str, cache: Path, kmi: Sequence[str],
             trim: Path) -> dict[Variant, Kernel]:
    """Both kernels: at once, or the replacement after the GKI kernel, from a copy of its build
    (KernelGeneration.replacement_from_gki)."""
    k = recipe.kernel
    pristine = source(run, cache, k.package, version)
    src = patched_source(run, cache, pristine, k.patches)
    replacement_patches = [*k.patches, k.replacement_patch]
    replacement_src = patched_source(run, cache, pristine, replacement_patches)
    replacement_config = [*k.config, k.replacement_config]

    def gki() -> Kernel:
        return build_kernel(run, cache, Variant.GKI, src, k.patches, k.config, kmi, trim)

    def replacement(seed: Kernel | None = None) -> Kernel:
        return build_kernel(run, cache, Variant.REPLACEMENT, replacement_src,
                            replacement_patches, replacement_config, kmi, seed=seed)

    if k.replacement_from_gki:
        base = gki()
        return {Variant.GKI: base, Variant.REPLACEMENT: replacement(base)}
    built = run.parallel([gki, replacement])
    return dict(zip((Variant.GKI, Variant.REPLACEMENT), built, strict=True))


def _build(run: Runner, recipe: Recipe, version: str, cache: Path, final: Path) -> None:
    # Kleaf's abi_symbollist.raw: all lists merged, one symbol a line.
    kmi = sorted(read_kmi_symbol_lists(recipe.kernel.kmi_symbol_lists))
    # The whitelist is named in .config by absolute path: give it a home that never moves.
    whitelist = cache / "kmi" / f"abi_symbollist-{digest(*kmi)}.raw"
    if not whitelist.exists():
        whitelist.parent.mkdir(parents=True, exist_ok=True)
        tmp = whitelist.with_name(f".tmp-{whitelist.name}")
        tmp.write_text("".join(f"{s}\n" for s in kmi))
        tmp.rename(whitelist)
    busybox = agent.default_busybox()       # the same cached copy the runtime's agent uses

    with tempfile.TemporaryDirectory(prefix="work-", dir=cache) as tmp:
        work = Path(tmp)
        trim = work / "trim_nonlisted_kmi.config"
        trim.write_text("# Kleaf trim_nonlisted_kmi\nCONFIG_TRIM_UNUSED_KSYMS=y\n"
                        f'CONFIG_UNUSED_KSYMS_WHITELIST="{whitelist}"\n')
        kernels = _kernels(run, recipe, version, cache, kmi, trim)
        gki, replacement = kernels[Variant.GKI], kernels[Variant.REPLACEMENT]
        kos = device_modules(run, recipe, kernels, work / "modules")

        run.say("assembling boot.img, vendor_kernel_boot.img (v4 and v3) for both kernels")
        generic = _generic_ramdisk(recipe, busybox)
        run.say("the virt machine's dtb (qemu dumpdtb)")
        dtb = virt_dtb()
        with staging(final) as out:
            ramdisks = _variant_outputs(run, recipe, Variant.GKI, gki, gki, kos[Variant.GKI], kmi,
                                        generic, dtb, work, out)
            _mkbootimg_images(run, recipe, gki, ramdisks, dtb, work, out)
            _variant_outputs(run, recipe, Variant.REPLACEMENT, replacement, gki,
                             kos[Variant.REPLACEMENT], kmi, generic, dtb, work,
                             out / "replacement")
