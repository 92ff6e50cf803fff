"""The sample images: a GKI-like kernel with a trimmed KMI, device modules with seeded faults,
boot.img and vendor_kernel_boot.img, and a full-kernel-replacement variant.

The recipe is images/ (samples.toml says what is built and what each module is expected to do);
the kernel source is Debian's linux-source-6.1. Everything is built under the cache directory,
never in the checkout, and keyed by a hash of the recipe and the source package version, so a
second `build` returns at once. Each stage is built in a temp directory and renamed into place:
an interrupted build leaves only temp directories, which the next build removes.

Output directory (returned):
    boot.img, vendor_kernel_boot.img        header v4, written by bootverify.readers.bootimg
    boot-v3.img, vendor_kernel_boot-v3.img  header v3, written by Debian's mkbootimg
    vmlinux.symvers, System.map, kmi_symbol_list, expected.json
    system_dlkm/                            the GKI kernel's own modules, modules.load, modules.dep
    kernel/                                 Kleaf's DEFAULT_GKI_OUTS (Image, Image.lz4, ...)
    replacement/                            the same (v4 only) for the full-kernel replacement
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bootverify.runtime import agent
from bootverify.errors import InfraError
from bootverify.readers.bootimg import (BootImage, RamdiskType, VendorBootImage, VendorRamdisk,
                                        write_boot_image, write_vendor_boot_image)
from bootverify.readers.modules import module_name
from bootverify.readers.ramdisk import (Compression, CpioEntry, compress, entries_from_tree,
                                        write_cpio)
from bootverify.readers.symbols import format_kmi_symbol_list, read_kmi_symbol_lists

IMAGES = Path(__file__).resolve().parent.parent / "images"
RECIPE = "samples.toml"
TARBALL_DIR = Path("/usr/src")

ARCH_ENV = {"ARCH": "arm64", "CROSS_COMPILE": "aarch64-linux-gnu-"}
# Fixed build identity: the version string (and so the images) does not depend on when or where.
KBUILD_ENV = {"KBUILD_BUILD_TIMESTAMP": "Mon Jan  1 00:00:00 UTC 2024",
              "KBUILD_BUILD_USER": "bootverify", "KBUILD_BUILD_HOST": "samples"}
KERNEL_TARGETS = ("Image.lz4", "Image.gz", "modules")
# Kleaf's DEFAULT_GKI_OUTS, as paths in the kernel build tree (vmlinux.symvers is written here).
GKI_OUTS = {"Image": "arch/arm64/boot/Image", "Image.lz4": "arch/arm64/boot/Image.lz4",
            "Image.gz": "arch/arm64/boot/Image.gz", "vmlinux": "vmlinux",
            "vmlinux.symvers": "vmlinux.symvers", "System.map": "System.map",
            "modules.builtin": "modules.builtin",
            "modules.builtin.modinfo": "modules.builtin.modinfo"}

# Both kernels build at once, -j2 each: on two cores one build's serial stretches (linking,
# kallsyms, modpost) overlap the other's compiling, and neither core idles when one finishes.
KERNEL_JOBS = 2
PARALLEL = 2

# Subprocess limits in seconds; a kernel build takes about 4 minutes here.
T_EXTRACT = 900
T_CONFIG = 300
T_KERNEL = 2400
T_MODULE = 300
T_TOOL = 120
PROGRESS_EVERY = 30.0
LOG_TAIL = 25
STOPPED = "stopped (another step failed)"

T = TypeVar("T")

# Cache layout under cache_root, besides PACKAGE-VERSION/ (the extracted source).
STAGES = ("sources", "kernels", "kmi", "samples")


class Variant(enum.Enum):
    """The two image sets: the GKI base kernel, or a device's own full replacement kernel."""
    GKI = "gki"
    REPLACEMENT = "replacement"

    @property
    def other(self) -> Variant:
        return Variant.REPLACEMENT if self is Variant.GKI else Variant.GKI


class Partition(enum.Enum):
    """Where a module ships; expected.json records it per module."""
    VENDOR_KERNEL_BOOT = "vendor_kernel_boot"
    SYSTEM_DLKM = "system_dlkm"


# The vocabularies of expected.json: `bootverify check` problem kinds, `bootverify run` outcomes.
PROBLEM_KINDS = frozenset({"unresolved", "crc-mismatch", "not-in-kmi", "namespace", "gpl-only",
                           "vermagic", "protected", "dependency-failed"})
RUNTIME_OUTCOMES = frozenset({"loaded", "link-error", "init-error", "hung", "crashed", "skipped"})


@dataclass(frozen=True)
class Expectation:
    static: tuple[str, ...]
    runtime: str


@dataclass(frozen=True)
class GkiModule:
    """An in-tree module of the GKI kernel, shipped in system_dlkm."""
    path: str                        # in the kernel build tree, e.g. "crypto/md5.ko"
    expected: dict[Variant, Expectation]

    @property
    def file(self) -> str:
        return Path(self.path).name

    @property
    def name(self) -> str:
        return module_name(self.file)


@dataclass(frozen=True)
class DeviceModule:
    """An external module from images/modules/NAME, see samples.toml for the knobs."""
    name: str
    expected: dict[Variant, Expectation]
    uses: tuple[str, ...] = ()
    other_kernel: bool = False
    modpost_warn: bool = False
    allow_missing_namespace_imports: bool = False
    relicense: str = ""
    shipped: bool = True
    blocklisted: bool = False
    options: str = ""

    @property
    def file(self) -> str:
        return f"{self.name}.ko"


@dataclass(frozen=True)
class Recipe:
    package: str
    config: Path
    patches: tuple[Path, ...]
    replacement_config: Path
    replacement_patch: Path
    kmi_symbol_lists: tuple[Path, ...]
    init: Path
    cmdline: str
    vendor_cmdline: str
    bootconfig: tuple[str, ...]
    system_dlkm: tuple[GkiModule, ...]
    modules: tuple[DeviceModule, ...]

    def shipped(self) -> list[DeviceModule]:
        return [m for m in self.modules if m.shipped]


@dataclass(frozen=True)
class Kernel:
    """A configured and built kernel tree (O= build directory) in the cache."""
    variant: Variant
    build: Path

    @property
    def release(self) -> str:
        return (self.build / "include/config/kernel.release").read_text().strip()

    def out(self, name: str) -> Path:
        return self.build / GKI_OUTS[name]


# --- recipe ---

def _expectations(entry: dict, where: str) -> dict[Variant, Expectation]:
    def one(raw: dict, variant: Variant) -> Expectation:
        static, runtime = tuple(sorted(raw.get("static", ()))), raw.get("runtime", "")
        unknown = set(static) - PROBLEM_KINDS
        if unknown or runtime not in RUNTIME_OUTCOMES:
            raise InfraError(f"{IMAGES / RECIPE}: {where} ({variant.value}): unknown problem kind "
                             f"{sorted(unknown)} or runtime outcome {runtime!r}")
        return Expectation(static, runtime)

    gki = one(entry.get("gki", {}), Variant.GKI) if "gki" in entry else None
    repl = one(entry["replacement"], Variant.REPLACEMENT) if "replacement" in entry else gki
    return {v: e for v, e in ((Variant.GKI, gki), (Variant.REPLACEMENT, repl)) if e}


def load_recipe(images: Path = IMAGES) -> Recipe:
    try:
        return _parse_recipe(tomllib.loads((images / RECIPE).read_text()), images)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InfraError(f"sample image recipe {images / RECIPE}: {e}") from None
    except KeyError as e:
        raise InfraError(f"sample image recipe {images / RECIPE}: no {e} entry") from None


def _parse_recipe(raw: dict, images: Path) -> Recipe:
    k, b = raw["kernel"], raw["boot"]
    modules = tuple(DeviceModule(
        name=m["name"], expected=_expectations(m, m["name"]), uses=tuple(m.get("uses", ())),
        other_kernel=m.get("kernel", "own") == "other", modpost_warn=m.get("modpost_warn", False),
        allow_missing_namespace_imports=m.get("allow_missing_namespace_imports", False),
        relicense=m.get("relicense", ""), shipped=m.get("shipped", True),
        blocklisted=m.get("blocklisted", False), options=m.get("options", ""))
        for m in raw["module"])
    seen: set[str] = set()
    for m in modules:
        # Listed order is build order and modules.load order: providers first.
        if missing := set(m.uses) - seen:
            raise InfraError(f"{images / RECIPE}: {m.name} uses {sorted(missing)}, "
                             f"which must come before it")
        if m.shipped and len(m.expected) != len(Variant):
            raise InfraError(f"{images / RECIPE}: {m.name} ships but has no expectations")
        seen.add(m.name)
    return Recipe(
        package=k["package"], config=images / k["config"],
        patches=tuple(images / p for p in k["patches"]),
        replacement_config=images / k["replacement_config"],
        replacement_patch=images / k["replacement_patch"],
        kmi_symbol_lists=tuple(images / p for p in k["kmi_symbol_lists"]),
        init=images / b["init"], cmdline=b["cmdline"], vendor_cmdline=b["vendor_cmdline"],
        bootconfig=tuple(b["bootconfig"]),
        system_dlkm=tuple(GkiModule(g["path"], _expectations(g, g["path"]))
                          for g in raw["system_dlkm"]),
        modules=modules)


def recipe_key(images: Path, version: str) -> str:
    """Content hash of the recipe files in images/ (not its docs), the source package version and
    this builder."""
    h = hashlib.sha256(f"{version}\n".encode())
    for path in sorted(p for p in images.rglob("*") if p.is_file() and p.suffix != ".md"):
        h.update(f"{path.relative_to(images)}\n".encode() + path.read_bytes() + b"\n")
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


# --- running steps ---

class Runner:
    """Runs build steps: logged, time-limited, killed with their whole process tree on failure,
    timeout, Ctrl-C or when a parallel step failed."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self.progress = progress
        self.abort = threading.Event()
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._lock:
            self.progress(line)

    def run(self, step: str, argv: Sequence[str | Path], *, cwd: Path, log: Path, timeout: float,
            env: dict[str, str] | None = None,
            report: Callable[[float], str] | None = None) -> None:
        """Run argv, output appended to log; `report(elapsed)` gives a progress line now and then."""
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [str(a) for a in argv]
        with open(log, "ab") as out:
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            try:
                # Own session: Ctrl-C reaches only us, and we kill the whole tree below. If we
                # die without cleaning up (SIGKILL), the kernel sends the step SIGTERM, which make
                # passes on to its jobs.
                proc = subprocess.Popen(["setpriv", "--pdeathsig", "TERM", "--", *cmd], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, **(env or {})})
            except OSError as e:
                raise InfraError(f"sample images: {step}: cannot run {cmd[0]}: {e}") from None
            start = time.monotonic()
            next_report = start + PROGRESS_EVERY
            try:
                while True:
                    try:
                        rc = proc.wait(timeout=1.0)
                        break
                    except subprocess.TimeoutExpired:
                        now = time.monotonic()
                        if self.abort.is_set():
                            raise InfraError(f"sample images: {step}: {STOPPED}") from None
                        if now - start > timeout:
                            raise InfraError(self._failure(
                                step, log, f"no result in {timeout:.0f} s")) from None
                        if report and now >= next_report:
                            self.say(report(now - start))
                            next_report = now + PROGRESS_EVERY
            finally:
                if proc.returncode is None:     # timeout, Ctrl-C, a parallel step failed
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if rc:
            raise InfraError(self._failure(step, log, f"exit status {rc}"))

    @staticmethod
    def _failure(step: str, log: Path, why: str) -> str:
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        return f"sample images: step '{step}' failed ({why}); last lines of {log}:\n" + \
            "\n".join(lines)

    def parallel(self, jobs: Sequence[Callable[[], T]]) -> list[T]:
        """Run jobs on PARALLEL threads; the first failure stops the others and is raised."""
        with ThreadPoolExecutor(PARALLEL) as pool:
            futures = [pool.submit(job) for job in jobs]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:
                self.abort.set()
                raise
            if failed := [f.exception() for f in futures if f.done() and f.exception()]:
                self.abort.set()
                wait(futures)
                raise failed[0]  # type: ignore[misc]
            return [f.result() for f in futures]


@contextmanager
def _staging(final: Path) -> Iterator[Path]:
    """A temp directory next to `final`, renamed to it on success, removed otherwise."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o755)            # mkdtemp's 0700 would keep other users out of the cache
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _remove_leftovers(cache: Path) -> None:
    """Temp directories of builds that were killed (we hold the lock: nobody else is building)."""
    for d in (cache, *(cache / s for s in STAGES)):
        for tmp in [*d.glob(".tmp-*"), *d.glob("work-*")]:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- kernel source and kernels ---

def source_version(package: str) -> str:
    try:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                              text=True, timeout=T_TOOL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InfraError(f"sample images: dpkg-query {package}: {e}") from None
    if proc.returncode or not proc.stdout:
        raise InfraError(f"sample images: {package} is not installed (apt-get install {package})")
    return proc.stdout.strip()


def _source(run: Runner, cache: Path, package: str, version: str) -> Path:
    """The package's tarball extracted once: cache/PACKAGE-VERSION/."""
    final = cache / f"{package}-{version}"
    if final.is_dir():
        return final
    tarball = TARBALL_DIR / f"{package}.tar.xz"
    run.say(f"{package} {version}: extracting {tarball}")
    with _staging(final) as tmp:
        run.run(f"extract {tarball.name}", ["tar", "-xf", tarball, "-C", tmp], cwd=tmp,
                log=cache / "logs" / "extract.log", timeout=T_EXTRACT)
        inner = tmp / package
        for child in inner.iterdir():
            child.rename(tmp / child.name)
        inner.rmdir()
    return final


def _patched_source(run: Runner, cache: Path, pristine: Path, patches: Sequence[Path]) -> Path:
    """A hard-linked copy of the pristine tree with patches applied; the files they touch are
    real copies, so the pristine tree stays pristine."""
    final = cache / "sources" / f"{pristine.name}-{_digest(*(p.read_bytes() for p in patches))}"
    if final.is_dir():
        return final
    run.say(f"kernel source: applying {', '.join(p.name for p in patches)}")
    with _staging(final) as tmp:
        tmp.rmdir()
        log = final.parent / "logs" / f"{final.name}.log"
        run.run("copy source", ["cp", "-al", pristine, tmp], cwd=final.parent, log=log,
                timeout=T_EXTRACT)
        for patch in patches:
            for rel in re.findall(r"^\+\+\+ b/(\S+)", patch.read_text(), re.M):
                target = tmp / rel
                if target.stat().st_nlink > 1:
                    data = target.read_bytes()
                    target.unlink()
                    target.write_bytes(data)
            run.run(f"apply {patch.name}", ["patch", "-p1", "--batch", "--forward", "-i", patch],
                    cwd=tmp, log=log, timeout=T_TOOL)
    return final


def _fragment_lines(fragment: Path) -> list[str]:
    return [line for line in fragment.read_text().splitlines()
            if line.startswith("CONFIG_") or re.fullmatch(r"# CONFIG_\w+ is not set", line)]


def _kernel(run: Runner, cache: Path, variant: Variant, src: Path, fragments: Sequence[Path],
            kmi: Sequence[str]) -> Kernel:
    """tinyconfig + fragments, then `make Image.lz4 Image.gz modules`, cached by their content."""
    key = _digest(str(src), *(f.read_bytes() for f in fragments), *KERNEL_TARGETS,
                  *(f"{k}={v}" for k, v in sorted(KBUILD_ENV.items())))
    final = cache / "kernels" / f"{variant.value}-{key}"
    if final.is_dir():
        return Kernel(variant, final)
    label = f"{variant.value} kernel"
    env = {**ARCH_ENV, **KBUILD_ENV}
    with _staging(final) as build:
        log = build / "build.log"
        make = ["make", "-C", src, f"O={build}"]
        run.say(f"{label}: configuring (tinyconfig + {', '.join(f.name for f in fragments)})")
        run.run(f"{label}: tinyconfig", [*make, "tinyconfig"], cwd=build, log=log,
                timeout=T_CONFIG, env=env)
        run.run(f"{label}: merge config", [src / "scripts/kconfig/merge_config.sh", "-m", "-O",
                                           build, build / ".config", *fragments],
                cwd=src, log=log, timeout=T_CONFIG, env=env)
        run.run(f"{label}: olddefconfig", [*make, "olddefconfig"], cwd=build, log=log,
                timeout=T_CONFIG, env=env)
        config = set((build / ".config").read_text().splitlines())
        if lost := [line for f in fragments for line in _fragment_lines(f) if line not in config]:
            raise InfraError(f"sample images: {label}: olddefconfig dropped fragment lines "
                             f"(unmet dependencies?): {', '.join(lost)}")

        def compiled(elapsed: float) -> str:
            n = sum(1 for line in log.read_text(errors="replace").splitlines()
                    if line.startswith("  CC "))
            return f"{label}: {n} files compiled, {elapsed:.0f} s"

        run.say(f"{label}: make -j{KERNEL_JOBS} {' '.join(KERNEL_TARGETS)}")
        run.run(f"{label}: make", [*make, f"-j{KERNEL_JOBS}", *KERNEL_TARGETS], cwd=build,
                log=log, timeout=T_KERNEL, env=env, report=compiled)
        # With CONFIG_TRIM_UNUSED_KSYMS every build counts as a modules build, so modpost writes
        # only Module.symvers; vmlinux.symvers is its vmlinux part (what `make vmlinux` writes).
        rows = (build / "Module.symvers").read_text().splitlines(keepends=True)
        (build / "vmlinux.symvers").write_text(
            "".join(r for r in rows if r.split("\t")[2:3] == ["vmlinux"]))
        if kmi:
            _check_trimmed(label, build / "vmlinux.symvers", kmi)
        run.say(f"{label}: built {Kernel(variant, build).release}")
    return Kernel(variant, final)


def _check_trimmed(label: str, symvers: Path, kmi: Sequence[str]) -> None:
    """Kleaf's kmi_symbol_list_strict_mode: vmlinux exports exactly the list."""
    exported = {row.split("\t")[1] for row in symvers.read_text().splitlines() if row}
    listed = set(kmi)
    if exported != listed:
        raise InfraError(f"sample images: {label}: KMI trimming failed: exported but not listed "
                         f"{sorted(exported - listed)}, listed but not exported "
                         f"{sorted(listed - exported)}")


# --- device modules ---

def _build_device_module(run: Runner, m: DeviceModule, variant: Variant,
                         kernels: dict[Variant, Kernel], work: Path) -> Path:
    """`make -C <kernel> M=<dir> modules` for one module; returns the .ko."""
    kernel = kernels[variant.other if m.other_kernel else variant]
    mdir = work / variant.value / m.name
    shutil.copytree(IMAGES / "modules" / m.name, mdir)
    args = [f"M={mdir}"]
    if m.uses:
        args.append("KBUILD_EXTRA_SYMBOLS=" + " ".join(
            str(work / variant.value / u / "Module.symvers") for u in m.uses))
    if m.modpost_warn:
        args.append("KBUILD_MODPOST_WARN=1")
    if m.allow_missing_namespace_imports:
        args.append("CONFIG_MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS=y")
    run.run(f"{variant.value}: build {m.name}", ["make", "-C", kernel.build, *args, "modules"],
            cwd=mdir, log=mdir / "build.log", timeout=T_MODULE, env={**ARCH_ENV, **KBUILD_ENV})
    if m.relicense:
        _relicense(mdir / m.file, m.relicense)
    return mdir / m.file


def _relicense(ko: Path, license: str) -> None:
    """Rewrite the modinfo license string in place, NUL-padded to the same length: modpost
    refuses to link a non-GPL module against GPL-only exports, the kernel must see one anyway."""
    data = ko.read_bytes()
    found = list(re.finditer(rb"license=([^\0]*)\0", data))
    if len(found) != 1 or len(license) > len(found[0].group(1)):
        raise InfraError(f"sample images: {ko.name}: cannot rewrite its license to {license!r}")
    old = found[0].group(1)
    ko.write_bytes(data[:found[0].start(1)] + license.encode().ljust(len(old), b"\0") +
                   data[found[0].end(1):])


def _device_modules(run: Runner, recipe: Recipe, kernels: dict[Variant, Kernel],
                    work: Path) -> dict[Variant, dict[str, Path]]:
    """All device modules for both kernels: variant -> name -> .ko. Built in rounds: a module
    whose providers (`uses`) are built, with the Module.symvers they wrote."""
    kos: dict[Variant, dict[str, Path]] = {v: {} for v in Variant}
    pending = list(recipe.modules)
    run.say(f"device modules: building {len(pending)} modules against each kernel")
    while pending:
        ready = [m for m in pending if all(u in kos[Variant.GKI] for u in m.uses)]
        if not ready:
            raise InfraError(f"sample images: modules using unknown providers: {pending}")
        built = run.parallel([
            (lambda m=m, v=v: (v, m.name, _build_device_module(run, m, v, kernels, work)))
            for m in ready for v in Variant])
        for v, name, ko in built:
            kos[v][name] = ko
        pending = [m for m in pending if m not in ready]
    return kos


# --- modules directories and images ---

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


def _dtb(run: Runner, work: Path) -> bytes:
    """The device tree of the board the samples boot on (qemu's virt), for the vendor images."""
    path = work / "virt.dtb"
    run.run("qemu dumpdtb", ["qemu-system-aarch64", "-machine", f"virt,dumpdtb={path}",
                             "-cpu", "cortex-a57", "-m", "512", "-nographic"],
            cwd=work, log=work / "dtb.log", timeout=T_TOOL)
    return path.read_bytes()


def _expected(recipe: Recipe, variant: Variant) -> dict:
    modules: dict[str, dict] = {}
    for g in recipe.system_dlkm:
        e = g.expected[variant]
        modules[g.name] = {"static": list(e.static), "runtime": e.runtime,
                           "partition": Partition.SYSTEM_DLKM.value}
    for m in recipe.shipped():
        e = m.expected[variant]
        modules[m.name] = {"static": list(e.static), "runtime": e.runtime,
                           "partition": Partition.VENDOR_KERNEL_BOOT.value}
    return {"modules": modules}


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
    vwork = work / variant.value
    vwork.mkdir()
    _system_dlkm(run, recipe, gki, kernel, vwork, out / "system_dlkm")
    _dlkm_tree(run, recipe, kos, kernel, vwork, vwork / "dlkm")
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


def _v3_images(run: Runner, recipe: Recipe, kernel: Kernel, ramdisks: Ramdisks, dtb: bytes,
               work: Path, out: Path) -> None:
    """The same boot and vendor images as header v3, by Debian's mkbootimg (no bootconfig, one
    vendor ramdisk: v3 has neither a bootconfig section nor a ramdisk table)."""
    files = {"generic.cpio.lz4": ramdisks.generic, "dlkm.cpio.gz": ramdisks.dlkm, "virt.dtb": dtb}
    for name, data in files.items():
        (work / name).write_bytes(data)
    log = work / "mkbootimg.log"
    run.run("mkbootimg boot v3", [
        "mkbootimg", "--header_version", "3", "--kernel", kernel.out("Image.lz4"),
        "--ramdisk", work / "generic.cpio.lz4", "--cmdline", recipe.cmdline,
        "-o", out / "boot-v3.img"], cwd=work, log=log, timeout=T_TOOL)
    run.run("mkbootimg vendor_boot v3", [
        "mkbootimg", "--header_version", "3", "--pagesize", "4096", "--board", "bvsample",
        "--vendor_ramdisk", work / "dlkm.cpio.gz", "--vendor_cmdline", recipe.vendor_cmdline,
        "--dtb", work / "virt.dtb", "--vendor_boot", out / "vendor_kernel_boot-v3.img"],
        cwd=work, log=log, timeout=T_TOOL)


# --- the build ---

def build(cache_root: Path, progress: Callable[[str], None]) -> Path:
    """Build (or find in the cache) the sample images; return the output directory."""
    recipe = load_recipe()
    version = source_version(recipe.package)
    final = cache_root / "samples" / recipe_key(IMAGES, version)
    if final.is_dir():
        return final
    with _locked(cache_root):
        if final.is_dir():          # built by whoever held the lock before us
            return final
        _remove_leftovers(cache_root)
        start = time.monotonic()
        run = Runner(progress)
        _build(run, recipe, version, cache_root, final)
        progress(f"sample images built in {time.monotonic() - start:.0f} s")
    return final


def _build(run: Runner, recipe: Recipe, version: str, cache: Path, final: Path) -> None:
    # Kleaf's abi_symbollist.raw: all lists merged, one symbol a line.
    kmi = sorted(read_kmi_symbol_lists(recipe.kmi_symbol_lists))
    # The whitelist is named in .config by absolute path: give it a home that never moves.
    whitelist = cache / "kmi" / f"abi_symbollist-{_digest(*kmi)}.raw"
    if not whitelist.exists():
        whitelist.parent.mkdir(parents=True, exist_ok=True)
        tmp = whitelist.with_name(f".tmp-{whitelist.name}")
        tmp.write_text("".join(f"{s}\n" for s in kmi))
        tmp.rename(whitelist)
    pristine = _source(run, cache, recipe.package, version)
    src = _patched_source(run, cache, pristine, recipe.patches)
    replacement_src = _patched_source(run, cache, pristine,
                                      [*recipe.patches, recipe.replacement_patch])
    busybox = agent.default_busybox()       # the same cached copy the runtime's agent uses

    with tempfile.TemporaryDirectory(prefix="work-", dir=cache) as tmp:
        work = Path(tmp)
        trim = work / "trim_nonlisted_kmi.config"
        trim.write_text("# Kleaf trim_nonlisted_kmi\nCONFIG_TRIM_UNUSED_KSYMS=y\n"
                        f'CONFIG_UNUSED_KSYMS_WHITELIST="{whitelist}"\n')
        gki, replacement = run.parallel([
            lambda: _kernel(run, cache, Variant.GKI, src, [recipe.config, trim], kmi),
            lambda: _kernel(run, cache, Variant.REPLACEMENT, replacement_src,
                            [recipe.config, recipe.replacement_config], []),
        ])
        assert isinstance(gki, Kernel) and isinstance(replacement, Kernel)
        kernels = {Variant.GKI: gki, Variant.REPLACEMENT: replacement}
        kos = _device_modules(run, recipe, kernels, work / "modules")

        run.say("assembling boot.img, vendor_kernel_boot.img (v4 and v3) for both kernels")
        generic = _generic_ramdisk(recipe, busybox)
        dtb = _dtb(run, work)
        with _staging(final) as out:
            ramdisks = _variant_outputs(run, recipe, Variant.GKI, gki, gki, kos[Variant.GKI], kmi,
                                        generic, dtb, work, out)
            _v3_images(run, recipe, gki, ramdisks, dtb, work, out)
            _variant_outputs(run, recipe, Variant.REPLACEMENT, replacement, gki,
                             kos[Variant.REPLACEMENT], kmi, generic, dtb, work,
                             out / "replacement")
