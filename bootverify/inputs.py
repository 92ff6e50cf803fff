"""The inputs `check` and `run` share: one set of options for both (a `check` command line
becomes a `run` one by adding --boot), a build's dist directory merged in under them, and the
files made ready for the readers: dlkm partition images and archives extracted, boot images
written around a bare --kernel. Everything made lives as long as the `with opened(...)` block.

Precedence: an option given on the command line, else what --dist found (readers/dist.py), else
nothing. Each input's line says which (`InputLine`, printed by the CLI).

--modules-dir: in `check`, a plain set of modules checked as depmod would (no loader, no
plan); in `run`, the directory becomes the vendor_kernel_boot.img bootverify writes around it
(runtime/kernel_images.py), so both halves see the modules the guest loads.
--kernel: boot.img is written around it (header v4, no ramdisk); `check` takes its release and
vermagic from it as from --boot's kernel.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bootverify.android import BootMode
from bootverify.errors import InputError, reading
from bootverify.readers.bootimg import read_boot
from bootverify.plan import LoadPlan
from bootverify.readers.dist import Dist, Partition, read_dist
from bootverify.readers.kernel import parse_kernel, read_kernel
from bootverify.readers.modulesdir import ParseCfg
from bootverify.readers.partition import PartitionTree, open_partition
from bootverify.static.analysis import StaticReport
from bootverify.static.check import CheckInputs

# The plan's module set that each partition's dist list is for.
ORIGIN_OF = {Partition.VENDOR_KERNEL_BOOT: "vendor_ramdisk",
             Partition.SYSTEM_DLKM: "system_dlkm", Partition.VENDOR_DLKM: "vendor_dlkm"}
# The dtb of the images bootverify writes, for the help texts.
DTB_NOTE = "the dtb is qemu virt's (the board bootverify boots), not the device's"


def add_input_args(p: argparse.ArgumentParser) -> None:
    """The input options of `check` and `run`, the same for both."""
    p.add_argument("--dist", type=Path, metavar="DIR",
                   help="a build's dist directory (Kleaf): every input below is taken from it "
                        "by the name Kleaf gives it (boot.img, vendor_kernel_boot.img or "
                        "vendor_boot.img, system_dlkm.img, vendor_dlkm.img or their "
                        "*_staging_archive.tar.gz, vmlinux.symvers or Module.symvers, "
                        "abi_symbollist / abi_symbollist.raw / abi_gki_aarch64*, "
                        "abi_gki_protected_exports_aarch64); an option given explicitly wins")
    p.add_argument("--boot", type=Path, metavar="IMG",
                   help="boot.img (v0-v4): the kernel to boot; `check` takes the release and "
                        "vermagic from it")
    p.add_argument("--kernel", type=Path, metavar="IMAGE",
                   help=f"a bare kernel (Image, Image.gz or Image.lz4) instead of --boot: "
                        f"boot.img is written around it as AOSP's mkbootimg would (header v4); "
                        f"{DTB_NOTE}")
    p.add_argument("--vendor-kernel-boot", "--vendor-boot", type=Path, metavar="IMG",
                   help="vendor_kernel_boot.img or vendor_boot.img (v3/v4) whose ramdisks hold "
                        "the first stage's modules")
    p.add_argument("--modules-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="check: a directory searched recursively for .ko files, checked as one "
                        "set (repeatable); run: the directory (its .ko files and modules.load) "
                        "that bootverify packs as vendor_kernel_boot.img's DLKM ramdisk at "
                        f"lib/modules/ ({DTB_NOTE})")
    for name, when in (("system-dlkm", "second stage, after the vendor ramdisk's"),
                       ("vendor-dlkm", "second stage, last")):
        p.add_argument(f"--{name}", type=Path, metavar="DIR|IMG|ARCHIVE",
                       help=f"{name.replace('-', '_')}'s modules ({when}): a directory, the "
                            f"partition image (ext4 or erofs, read without mounting) or the "
                            f"*_staging_archive.tar.gz; inside an image or archive the modules "
                            f"are under lib/modules/ (or lib/modules/<release>/), as the device "
                            f"mounts them")
    p.add_argument("--boot-mode", choices=[m.value for m in BootMode], type=BootMode,
                   help="load the list of this mode (modules.load, modules.load.recovery, "
                        "modules.load.charger) instead of the one bootconfig/cmdline choose")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--symvers", type=Path, metavar="FILE",
                     help="vmlinux.symvers or Module.symvers of the kernel (CRCs, export types, "
                          "namespaces)")
    src.add_argument("--system-map", type=Path, metavar="FILE",
                     help="System.map of the kernel (export names only: no CRC, GPL or "
                          "namespace checks)")
    p.add_argument("--kmi-symbol-list", type=Path, action="append", default=[], metavar="FILE",
                   help="Android KMI symbol list ([abi_symbol_list], or Kleaf's flattened "
                        "abi_symbollist.raw); repeat to merge several")
    p.add_argument("--protected-exports", type=Path, metavar="FILE",
                   help="GKI protected exports list (abi_gki_protected_exports_<arch>)")


@dataclass(frozen=True)
class Given:
    """The inputs after --dist: each an explicit option's value, else the dist's."""
    boot: Path | None
    kernel: Path | None
    vendor_kernel_boot: Path | None
    modules_dirs: tuple[Path, ...]
    system_dlkm: Path | None
    vendor_dlkm: Path | None
    symvers: Path | None
    system_map: Path | None
    kmi_symbol_lists: tuple[Path, ...]
    protected_exports: Path | None
    boot_mode: BootMode | None
    dist: Dist | None


def given(args: argparse.Namespace, *, run: bool) -> Given:
    """Merge the dist directory under the explicit options."""
    d = read_dist(args.dist) if args.dist else None

    # An explicit kernel or boot image replaces the dist's boot.img (and its bare kernel);
    # run's --modules-dir replaces its vendor_kernel_boot.img.
    explicit_boot = args.boot or args.kernel
    boot = args.boot or (None if explicit_boot or not d else d.boot)
    kernel = args.kernel or (None if explicit_boot or not d or d.boot else d.kernel)
    explicit_vendor = args.vendor_kernel_boot or (run and args.modules_dir)
    symbols_given = args.symvers or args.system_map
    return Given(
        boot=boot, kernel=kernel,
        vendor_kernel_boot=args.vendor_kernel_boot or (
            None if explicit_vendor or not d else d.vendor_kernel_boot),
        modules_dirs=tuple(args.modules_dir),
        system_dlkm=args.system_dlkm or (d.system_dlkm if d else None),
        vendor_dlkm=args.vendor_dlkm or (d.vendor_dlkm if d else None),
        symvers=args.symvers or (None if symbols_given or not d else d.symvers),
        system_map=args.system_map or (
            None if symbols_given or not d or d.symvers else d.system_map),
        kmi_symbol_lists=tuple(args.kmi_symbol_list) or (d.kmi_symbol_lists if d else ()),
        protected_exports=args.protected_exports or (d.protected_exports if d else None),
        boot_mode=args.boot_mode, dist=d)


def dist_lines(args: argparse.Namespace, g: Given, *, run: bool) -> list[str]:
    """What --dist took from where (and what an option overrode, what it did not find)."""
    if g.dist is None:
        return []
    overrides = {"boot": args.boot or (args.kernel and f"written around --kernel {args.kernel}"),
                 "kernel": args.kernel,
                 "vendor-kernel-boot": args.vendor_kernel_boot or (
                     run and args.modules_dir and
                     f"written around --modules-dir {args.modules_dir[0]}"),
                 "system-dlkm": args.system_dlkm, "vendor-dlkm": args.vendor_dlkm,
                 "symvers": args.symvers, "system-map": args.system_map,
                 "kmi-symbol-list": tuple(args.kmi_symbol_list),
                 "protected-exports": args.protected_exports}
    unused = {"kernel": "boot.img has the kernel" if g.boot else "",
              "system-map": "there is a symvers" if g.symvers else ""}
    return [f"dist: {line}" for line in g.dist.describe(overrides, unused)]


def list_notes(g: Given, plan: LoadPlan | None) -> list[str]:
    """The dist's load lists against the images' own (which the device reads, and bootverify
    with it): the same, different, or a list for a partition that is not there."""
    if g.dist is None:
        return []
    lists = {s.origin: s.load for s in plan.sets} if plan else {}
    notes = []
    for partition, path in g.dist.load_lists.items():
        origin = ORIGIN_OF[partition]
        with reading(path):
            listed = tuple(w[0] for _, w in ParseCfg(path.read_text(encoding="utf-8")))
        if origin not in lists:
            notes.append(f"dist: {path.name} lists {len(listed)} module(s) and there is no "
                         f"{partition} to load them from: not checked")
        elif lists[origin] != listed:
            notes.append(f"dist: {path.name} differs from {partition}'s own load list "
                         f"({len(listed)} against {len(lists[origin])} entries): the image's "
                         f"is used, as the device reads it")
    return notes


@dataclass(frozen=True)
class Opened:
    """The inputs ready for the readers: what `check` reads, and what `run` boots."""
    check: CheckInputs
    boot: Path | None                   # boot.img (maybe written around --kernel)
    vendor_kernel_boot: Path | None     # (maybe written around --modules-dir)
    system_dlkm: Path | None            # modules directories on the host
    vendor_dlkm: Path | None
    release: str | None                 # the kernel's, when a kernel is given
    labels: tuple[tuple[str, str], ...]     # (host path prefix, what the report calls it)
    lines: tuple[str, ...]              # what was taken from where (for the CLI to print)
    given: Given

    @property
    def cacheable(self) -> bool:
        """Whether `check`'s report cache can ever hit: not for files extracted or written into
        a temporary directory (new paths and inodes every time); storing it would only waste
        the cache's room."""
        return not self.labels and self.boot == self.given.boot

    def list_notes(self, plan: LoadPlan | None) -> list[str]:
        return list_notes(self.given, plan)

    def relabel(self, report: StaticReport) -> StaticReport:
        """Module paths as the user knows them: `system_dlkm.img:lib/modules/...`, not the
        temporary directory they were read from."""
        def label(path: str) -> str:
            for prefix, name in self.labels:
                if path.startswith(prefix):
                    return name + path[len(prefix):]
            return path
        return replace(report, modules=tuple(replace(m, path=label(m.path))
                                             for m in report.modules))


def _release(boot: Path | None, kernel: Path | None) -> str | None:
    if kernel is not None:
        return read_kernel(kernel).release
    if boot is not None:
        return parse_kernel(read_boot(boot).kernel, f"{boot}:kernel").release
    return None


@contextmanager
def opened(args: argparse.Namespace, *, run: bool) -> Iterator[Opened]:
    """The inputs of `check` (run=False) or `run`, made ready; temp files removed after."""
    g = given(args, run=run)
    lines = dist_lines(args, g, run=run)
    if g.symvers is None and g.system_map is None:
        raise InputError("(command line)", "no kernel symbols: give --symvers or --system-map, "
                                           "or a --dist directory that has vmlinux.symvers, "
                                           "Module.symvers or System.map")
    if args.boot and args.kernel:
        raise InputError("(command line)", "give --boot or --kernel, not both")
    if run and len(g.modules_dirs) > 1:
        raise InputError("(command line)", "run takes one --modules-dir (it becomes the "
                                           "vendor_kernel_boot.img's ramdisk)")
    if run and g.modules_dirs and args.vendor_kernel_boot:
        raise InputError("(command line)", "give --vendor-kernel-boot or --modules-dir, "
                                           "not both")
    with ExitStack() as stack:
        release = _release(g.boot, g.kernel)
        labels: list[tuple[str, str]] = []
        trees: dict[str, PartitionTree] = {}
        for origin, path in (("system_dlkm", g.system_dlkm), ("vendor_dlkm", g.vendor_dlkm)):
            if path is not None:
                tree = stack.enter_context(open_partition(path, release))
                trees[origin] = tree
                if tree.root != tree.source:
                    labels.append((f"{tree.root}/", f"{tree.source}:"))
                    lines.append(f"{origin}: {tree.source} ({tree.format}), modules from "
                                 f"{tree.device_dir or '/'}")
        boot, vendor = g.boot, g.vendor_kernel_boot
        modules = g.modules_dirs[0] if run and g.modules_dirs else None
        if g.kernel is not None or modules is not None:
            from bootverify.runtime.kernel_images import write_kernel_images
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="bootverify-images-")))
            images = write_kernel_images(g.kernel, modules, _dtb() if modules else b"", out)
            if images.boot is not None:
                boot = images.boot
                lines.append(f"boot: written around {g.kernel} (header v4, kernel "
                             f"{images.release})")
            if images.vendor_kernel_boot is not None:
                vendor = images.vendor_kernel_boot
                labels.append((f"{vendor}:dlkm/lib/modules/", f"{modules}/"))
                lines.append(f"vendor-kernel-boot: written around {modules} (header v4, "
                             f"DLKM ramdisk; {DTB_NOTE})")
        check = CheckInputs(
            symvers=g.symvers, system_map=g.system_map, kmi_symbol_lists=g.kmi_symbol_lists,
            protected_exports=g.protected_exports, boot=boot, vendor_boot=vendor,
            modules_dirs=() if run else g.modules_dirs,
            system_dlkm=trees["system_dlkm"].modules_dir if "system_dlkm" in trees else None,
            vendor_dlkm=trees["vendor_dlkm"].modules_dir if "vendor_dlkm" in trees else None,
            boot_mode=g.boot_mode)
        yield Opened(check, boot, vendor, check.system_dlkm, check.vendor_dlkm, release,
                     tuple(labels), tuple(lines), g)


def _dtb() -> bytes:
    from bootverify.runtime.vm import virt_dtb
    return virt_dtb()


def required(value: Path | None, what: str, options: Sequence[str]) -> Path:
    """An input `run` cannot do without (from an option or the dist)."""
    if value is None:
        raise InputError("(command line)", f"no {what}: give {' or '.join(options)}, or a "
                                           f"--dist directory that has one")
    return value
