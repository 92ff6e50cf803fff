"""The kernels of the sample images and the device modules built against them: Debian's
linux-source extracted once, patched copies of it, `tinyconfig` + fragments built with O= in a
hard-linked copy of that source of its own, and `make M=` for each external module. Each kernel
tree is cached by the content of its inputs; a kernel may start from a copy of another's build
directory (a seed), and kbuild then compiles only what differs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bootverify.errors import InfraError
from bootverify.readers.symbols import kernel_exports_from_symvers
from bootverify.samples.recipe import DeviceModule, Recipe, Variant
from bootverify.samples.steps import (
    T_CONFIG,
    T_EXTRACT,
    T_KERNEL,
    T_MODULE,
    T_TOOL,
    Runner,
    digest,
    staging,
)
from bootverify.static.kmilist import strict_check

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

# Both kernels build at once (steps.PARALLEL), -j2 each.
KERNEL_JOBS = 2
# The build directory (O=) is a direct subdirectory of the kernel's source tree, so kbuild names
# the source `..` (Makefile: "building in a subdirectory of the source tree", 6.1 and 6.12):
# every command line and dependency file is then the same in any kernel tree, and a copy of one
# kernel's build directory in another tree builds incrementally there (the seed, below).
BUILD_DIR = "out"
# What a kernel tree holds besides the source: the digest of its inputs but the KMI list.
FAMILY = ".bootverify-family"


@dataclass(frozen=True)
class Kernel:
    """A configured and built kernel in the cache: its own source tree (hard links of the
    patched source) with the build directory `out/` inside it."""
    variant: Variant
    tree: Path

    @property
    def build(self) -> Path:
        return self.tree / BUILD_DIR

    @property
    def release(self) -> str:
        return (self.build / "include/config/kernel.release").read_text().strip()

    def out(self, name: str) -> Path:
        return self.build / GKI_OUTS[name]


def source_version(package: str) -> str:
    try:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                              text=True, timeout=T_TOOL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InfraError(f"sample images: dpkg-query {package}: {e}") from None
    if proc.returncode or not proc.stdout:
        raise InfraError(f"sample images: {package} is not installed (apt-get install {package})")
    return proc.stdout.strip()


def source(run: Runner, cache: Path, package: str, version: str) -> Path:
    """The package's tarball extracted once: cache/PACKAGE-VERSION/."""
    final = cache / f"{package}-{version}"
    if final.is_dir():
        return final
    tarball = TARBALL_DIR / f"{package}.tar.xz"
    run.say(f"{package} {version}: extracting {tarball}")
    with staging(final) as tmp:
        run.run(f"extract {tarball.name}", ["tar", "-xf", tarball, "-C", tmp], cwd=tmp,
                log=cache / "logs" / "extract.log", timeout=T_EXTRACT)
        inner = tmp / package
        for child in inner.iterdir():
            child.rename(tmp / child.name)
        inner.rmdir()
    return final


def patched_files(patches: Sequence[Path]) -> list[str]:
    """The paths the patches change, relative to the source tree."""
    return [rel for patch in patches
            for rel in re.findall(r"^\+\+\+ b/(\S+)", patch.read_text(), re.M)]


def patched_source(run: Runner, cache: Path, pristine: Path, patches: Sequence[Path]) -> Path:
    """A hard-linked copy of the pristine tree with patches applied; the files they touch are
    real copies, so the pristine tree stays pristine."""
    final = cache / "sources" / f"{pristine.name}-{digest(*(p.read_bytes() for p in patches))}"
    if final.is_dir():
        return final
    run.say(f"kernel source: applying {', '.join(p.name for p in patches)}")
    with staging(final) as tmp:
        tmp.rmdir()
        log = final.parent / "logs" / f"{final.name}.log"
        run.run("copy source", ["cp", "-al", pristine, tmp], cwd=final.parent, log=log,
                timeout=T_EXTRACT)
        for rel in patched_files(patches):
            _own_copy(tmp / rel)
        for patch in patches:
            run.run(f"apply {patch.name}", ["patch", "-p1", "--batch", "--forward", "-i", patch],
                    cwd=tmp, log=log, timeout=T_TOOL)
    return final


def _own_copy(path: Path) -> None:
    """Replace a hard link by a copy of its own (a new inode, modified now)."""
    if path.exists() and path.stat().st_nlink > 1:
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)


def _fragment_lines(fragment: Path) -> list[str]:
    return [line for line in fragment.read_text().splitlines()
            if line.startswith("CONFIG_") or re.fullmatch(r"# CONFIG_\w+ is not set", line)]


def _config_has(config: list[str], line: str) -> bool:
    """A fragment's line is in force: `CONFIG_X=v` is in .config; `# CONFIG_X is not set` is, or
    CONFIG_X is not in it at all (a symbol whose dependencies are unmet is not written: 6.12's
    SCHED_DEBUG, which needs DEBUG_FS)."""
    if not (unset := re.fullmatch(r"# (CONFIG_\w+) is not set", line)):
        return line in config
    return not any(c.startswith(f"{unset.group(1)}=") for c in config)


def build_kernel(run: Runner, cache: Path, variant: Variant, src: Path, patches: Sequence[Path],
                 fragments: Sequence[Path], kmi: Sequence[str], trim: Path | None = None,
                 seed: Kernel | None = None) -> Kernel:
    """tinyconfig + fragments (+ `trim`, the KMI list's fragment), then `make Image.lz4 Image.gz
    modules`, cached by their content.

    `seed`: a built kernel whose source is `src` with a subset of `patches` applied; its build
    directory is copied in first and kbuild rebuilds what differs (what its dependency files and
    the changed config symbols say). Without one, a cached kernel of the same source and config
    but another KMI list seeds it, if there is one."""
    family = digest(str(src), *(f.read_bytes() for f in fragments), *KERNEL_TARGETS, BUILD_DIR,
                    *(f"{k}={v}" for k, v in sorted(KBUILD_ENV.items())))
    key = digest(family, trim.read_bytes() if trim else "")
    final = cache / "kernels" / f"{variant.value}-{key}"
    if final.is_dir():
        return Kernel(variant, final)
    if seed is None and trim:
        seed = _same_family(cache, variant, family)
    label = f"{variant.value} kernel"
    env = {**ARCH_ENV, **KBUILD_ENV}
    configs = [*fragments, *([trim] if trim else [])]
    with staging(final) as tree:
        tree.rmdir()
        log = tree.parent / "logs" / f"{final.name}.log"
        run.run(f"{label}: copy source", ["cp", "-al", src, tree], cwd=tree.parent, log=log,
                timeout=T_EXTRACT)
        (tree / FAMILY).write_text(family + "\n")
        kernel = Kernel(variant, tree)
        if seed:
            run.say(f"{label}: starting from {seed.variant.value} kernel {seed.tree.name}")
            run.run(f"{label}: copy {seed.tree.name}", ["cp", "-a", seed.build, kernel.build],
                    cwd=tree, log=log, timeout=T_EXTRACT)
            # What this tree's patches changed beyond the seed's: newer than any of its objects.
            for rel in patched_files(patches):
                if (tree / rel).read_bytes() != (seed.tree / rel).read_bytes():
                    _own_copy(tree / rel)
        else:
            kernel.build.mkdir()
        build = kernel.build
        make = ["make", "-C", tree, f"O={build}"]
        run.say(f"{label}: configuring (tinyconfig + {', '.join(f.name for f in configs)})")
        run.run(f"{label}: tinyconfig", [*make, "tinyconfig"], cwd=build, log=log,
                timeout=T_CONFIG, env=env)
        run.run(f"{label}: merge config", [tree / "scripts/kconfig/merge_config.sh", "-m", "-O",
                                           build, build / ".config", *configs],
                cwd=tree, log=log, timeout=T_CONFIG, env=env)
        run.run(f"{label}: olddefconfig", [*make, "olddefconfig"], cwd=build, log=log,
                timeout=T_CONFIG, env=env)
        config = (build / ".config").read_text().splitlines()
        if lost := [line for f in configs for line in _fragment_lines(f)
                    if not _config_has(config, line)]:
            raise InfraError(f"sample images: {label}: olddefconfig dropped fragment lines "
                             f"(unmet dependencies?): {', '.join(lost)}")

        configured = len(log.read_text(errors="replace").splitlines())   # make's lines follow

        def compiled(elapsed: float) -> str:
            n = sum(1 for line in log.read_text(errors="replace").splitlines()[configured:]
                    if line.startswith("  CC "))
            return f"{label}: {n} files compiled, {elapsed:.0f} s"

        run.say(f"{label}: make -j{KERNEL_JOBS} {' '.join(KERNEL_TARGETS)}")
        start = time.monotonic()
        run.run(f"{label}: make", [*make, f"-j{KERNEL_JOBS}", *KERNEL_TARGETS], cwd=build,
                log=log, timeout=T_KERNEL, env=env, report=compiled)
        run.say(compiled(time.monotonic() - start) + " (make)")
        # With CONFIG_TRIM_UNUSED_KSYMS every build counts as a modules build, so modpost writes
        # only Module.symvers; vmlinux.symvers is its vmlinux part (what `make vmlinux` writes).
        rows = (build / "Module.symvers").read_text().splitlines(keepends=True)
        (build / "vmlinux.symvers").write_text(
            "".join(r for r in rows if r.split("\t")[2:3] == ["vmlinux"]))
        if trim:
            _check_trimmed(label, build / "vmlinux.symvers", kmi)
        run.say(f"{label}: built {kernel.release}")
    return Kernel(variant, final)


def _same_family(cache: Path, variant: Variant, family: str) -> Kernel | None:
    """A cached kernel built from the same source and config as `family`'s."""
    for tree in sorted((cache / "kernels").glob(f"{variant.value}-*")):
        marker = tree / FAMILY
        if marker.is_file() and marker.read_text().strip() == family:
            return Kernel(variant, tree)
    return None


def _check_trimmed(label: str, symvers: Path, kmi: Sequence[str]) -> None:
    """Kleaf's kmi_symbol_list_strict_mode: vmlinux exports exactly the list."""
    strict = strict_check(kernel_exports_from_symvers(symvers), frozenset(kmi))
    if not strict.equal:
        raise InfraError(f"sample images: {label}: KMI trimming failed: exported but not listed "
                         f"{list(strict.unlisted_exports)}, listed but not exported "
                         f"{list(strict.listed_not_exported)}")


def _build_device_module(run: Runner, m: DeviceModule, variant: Variant,
                         kernels: dict[Variant, Kernel], work: Path) -> Path:
    """`make -C <kernel> M=<dir> modules` for one module; returns the .ko."""
    kernel = kernels[variant.other if m.other_kernel else variant]
    mdir = work / variant.value / m.name
    shutil.copytree(m.source, mdir)
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
        relicense(mdir / m.file, m.relicense)
    return mdir / m.file


def relicense(ko: Path, license: str) -> None:
    """Rewrite the modinfo license string in place, NUL-padded to the same length: modpost
    refuses to link a non-GPL module against GPL-only exports, the kernel must see one anyway."""
    data = ko.read_bytes()
    found = list(re.finditer(rb"license=([^\0]*)\0", data))
    if len(found) != 1 or len(license) > len(found[0].group(1)):
        raise InfraError(f"sample images: {ko.name}: cannot rewrite its license to {license!r}")
    old = found[0].group(1)
    ko.write_bytes(data[:found[0].start(1)] + license.encode().ljust(len(old), b"\0") +
                   data[found[0].end(1):])


def device_modules(run: Runner, recipe: Recipe, kernels: dict[Variant, Kernel],
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

