"""`bootverify kmi-list`: the KMI symbols vendor modules need, as Kleaf's extract_symbols writes
them, on crafted module facts, the sample images and real Cuttlefish modules against their
GKI 6.1 kernel (tests/data/aosp-gki-6.1-cuttlefish, see tests/data/README.md)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from packing import run_bootverify

from bootverify import cli, samples
from bootverify.cache import cache_dir
from bootverify.readers.modules import ModuleExport, ModuleFacts, read_module
from bootverify.readers.symbols import (KERNEL_OWNER, Export, KernelExports,
                                        kernel_exports_from_symvers,
                                        kernel_exports_from_system_map, parse_kmi_symbol_list,
                                        read_kmi_symbol_lists)
from bootverify.samples.recipe import RECIPE_DIR, generations
from bootverify.static.kmilist import additions, by_modules, kmi_needs, strict_check

CUTTLEFISH = Path(__file__).parent / "data/aosp-gki-6.1-cuttlefish"


def facts(name: str, undefined: tuple[str, ...] = (), weak: tuple[str, ...] = (),
          exports: tuple[str, ...] = (), signed: bool = False, versions: bool = True
          ) -> ModuleFacts:
    return ModuleFacts(f"img:dlkm/lib/modules/{name}.ko", name, undefined, weak,
                       tuple(ModuleExport(e, False) for e in exports),
                       dict.fromkeys(undefined, 1) if versions else {}, "6.1 SMP", (), "GPL",
                       (), signed)


def kernel(*names: str) -> KernelExports:
    return KernelExports("vmlinux.symvers", {n: Export(n, KERNEL_OWNER, 1) for n in names}, True)


def kmi_list_cli(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["kmi-list", *map(str, argv)])
    return rc, out.getvalue(), err.getvalue()


def test_needs_come_from_the_kernel_and_gki_modules_only() -> None:
    k = kernel("module_layout", "printk", "msleep", "__tracepoint_x_event", "__traceiter_x_event",
               "unused")
    modules = [
        facts("gki_crypto", ("printk",), exports=("gki_hash",), signed=True),
        facts("sys_unsigned", ("printk",), exports=("sys_fn",)),
        facts("vendor_a", ("printk", "msleep", "gki_hash", "vendor_b_fn", "__tracepoint_x_event",
                           "nobody_has"), weak=("maybe",)),
        facts("vendor_b", ("printk", "sys_fn"), exports=("vendor_b_fn",), versions=False),
    ]
    needs = kmi_needs(k, modules, frozenset({"sys_unsigned"}))
    assert {n.symbol: n.required_by for n in needs.needed} == {
        "printk": ("vendor_a.ko", "vendor_b.ko"),
        "msleep": ("vendor_a.ko",),
        "gki_hash": ("vendor_a.ko",),               # a signed (GKI) module's export
        "sys_fn": ("vendor_b.ko",),                 # a --gki-modules module's export
        "__tracepoint_x_event": ("vendor_a.ko",),
        "__traceiter_x_event": ("vendor_a.ko",),    # Kleaf's add_dependent_symbols()
        "module_layout": ("vendor_a.ko",),          # vendor_b has no __versions
    }
    # another vendor module's export is no KMI question; an unresolved weak one is allowed
    assert [(n.symbol, n.required_by) for n in needs.unprovided] == [
        ("nobody_has", ("vendor_a.ko",))]
    missing = additions(needs, frozenset({"printk", "module_layout", "msleep"}))
    assert by_modules(missing) == [
        ("required by vendor_a.ko", ["__traceiter_x_event", "__tracepoint_x_event",
                                     "gki_hash"]),
        ("required by vendor_b.ko", ["sys_fn"])]
    assert by_modules(needs.needed)[0] == ("commonly used symbols", ["printk"])


def test_strict_mode_compares_both_ways() -> None:
    check = strict_check(kernel("a", "b", "extra"), frozenset({"a", "b", "gone"}))
    assert (check.unlisted_exports, check.listed_not_exported, check.equal) == (
        ("extra",), ("gone",), False)
    assert strict_check(kernel("a"), frozenset({"a"})).equal


def test_cuttlefish_full_list_is_what_the_trimmed_gki_kernel_exports(tmp_path: Path) -> None:
    """Real Cuttlefish vendor modules against the GKI 6.1 kernel they ship with (its System.map
    is trimmed to the KMI): the whole list names only symbols that kernel or its GKI module
    (can-dev.ko, signed) exports, and leaves out nothing the modules take from them."""
    system_map = CUTTLEFISH / "System.map.ksymtab"
    rc, out, err = kmi_list_cli("--modules-dir", CUTTLEFISH / "vendor", "--modules-dir",
                                CUTTLEFISH / "gki", "--system-map", system_map, "--full")
    assert (rc, err) == (0, "")
    listed = parse_kmi_symbol_list(out, "stdout")
    exported = set(kernel_exports_from_system_map(system_map).exports)
    vendor = [read_module(p) for p in sorted((CUTTLEFISH / "vendor").glob("*.ko"))]
    can_dev = read_module(CUTTLEFISH / "gki/can-dev.ko")
    assert can_dev.signed and not any(m.signed for m in vendor)
    gki_exports = {e.name for e in can_dev.exports}
    assert listed <= exported | gki_exports
    from_vendor = {e.name for m in vendor for e in m.exports}
    needed = set().union(*(m.undefined_set | m.weak_set for m in vendor))
    assert needed - from_vendor <= listed
    assert needed & gki_exports and "module_layout" in listed
    # virtio_net uses the xdp_exception tracepoint: its iterator is listed with it
    assert {"__tracepoint_xdp_exception", "__traceiter_xdp_exception"} <= listed
    assert "# required by gs_usb.ko" in out and "# commonly used symbols" in out
    # that list given back: nothing to add
    (tmp_path / "abi_gki_aarch64_cuttlefish").write_text(out)
    rc, out, _ = kmi_list_cli("--modules-dir", CUTTLEFISH / "vendor", "--modules-dir",
                              CUTTLEFISH / "gki", "--system-map", system_map,
                              "--kmi-symbol-list", tmp_path / "abi_gki_aarch64_cuttlefish")
    assert (rc, out) == (0, "[abi_symbol_list]\n")


@pytest.mark.images
@pytest.mark.timeout(900)       # a cold sample build comes first
def test_samples_additions_are_the_seeded_missing_symbols(sample_images: Path) -> None:
    """The sample device modules (the GKI build's dist directory, as `check --dist` takes it;
    its system_dlkm holds the GKI modules) against the untrimmed exports (the replacement
    kernel's): the KMI lists lack exactly msleep (vendor_backlight and vendor_latent's fault);
    vendor_modem_ipc_send (from a module not shipped) is reported, not listed."""
    untrimmed = ["--symvers", sample_images / "replacement/vmlinux.symvers"]
    rc, out, err = kmi_list_cli("--dist", sample_images, *untrimmed)
    assert rc == 0
    assert out == "[abi_symbol_list]\n\n# commonly used symbols\n  msleep\n"
    assert "vendor_modem_ipc_send (required by vendor_modem.ko)" in err
    # the same from explicit inputs, the GKI modules named by --gki-modules
    kmi = sample_images / "kmi_symbol_list"
    explicit = ["--vendor-kernel-boot", sample_images / "vendor_kernel_boot.img",
                "--gki-modules", sample_images / "system_dlkm", "--kmi-symbol-list", kmi]
    assert kmi_list_cli(*explicit, *untrimmed)[1] == out
    rc, out, _ = kmi_list_cli(*explicit, *untrimmed, "--full")
    full = parse_kmi_symbol_list(out, "stdout")
    lists = read_kmi_symbol_lists([kmi])
    # everything the device modules use, md5's own symbols (a GKI module's) aside; memset
    # stays: vendor_fw uses it too
    assert full == lists - {"crypto_register_shash", "crypto_unregister_shash",
                            "memcpy"} | {"msleep"}
    # strict mode: the trimmed GKI kernel exports exactly the lists, the replacement does not
    rc, _, err = kmi_list_cli(*explicit, *untrimmed, "--strict")
    assert rc == 1 and "strict: msleep exported by the kernel, in no KMI list" in err
    rc, _, err = kmi_list_cli("--dist", sample_images, "--strict")
    n = len(lists)
    assert rc == 0 and err.endswith(f"strict: the kernel's {n} exports equal the {n} KMI "
                                    f"symbols\n")


@pytest.mark.images
@pytest.mark.qemu
@pytest.mark.timeout(3600)      # the GKI kernel is built again with the longer list (cached)
def test_the_additions_appended_let_the_trimmed_kernel_load_the_modules(
        build_samples: Callable[[str], Path], tmp_path: Path) -> None:
    """The proof of the list, on the newest generation: kmi-list's additions appended to the
    device's KMI list (abi_gki_aarch64_vendor) and the samples built again by their own steps
    (the GKI kernel trimmed to the longer list, the device modules against it): the trimmed
    kernel now exports msleep, and the modules that failed for it load. 6.12 trims at vmlinux's
    link (modpost), so the kernel starts from a copy of the cached GKI build."""
    newest = generations()[-1]
    images = build_samples(newest)
    untrimmed = images / "replacement/vmlinux.symvers"
    rc, additions, _ = kmi_list_cli("--dist", images, "--symvers", untrimmed)
    assert rc == 0 and "msleep" in parse_kmi_symbol_list(additions, "stdout")
    recipe = tmp_path / "recipe"
    shutil.copytree(RECIPE_DIR, recipe)
    vendor_list = recipe / "abi_gki_aarch64_vendor"
    vendor_list.write_text(vendor_list.read_text() + additions)
    lines: list[str] = []

    def progress(line: str) -> None:
        print(line, file=sys.stderr)
        lines.append(line)
    rebuilt = samples.build(cache_dir() / "images", progress, recipe_dir=recipe,
                            generation=newest)
    if any(line.startswith("gki kernel: configuring") for line in lines):   # not cached
        assert any(line.startswith("gki kernel: starting from gki kernel ") for line in lines)
    assert "msleep" in kernel_exports_from_symvers(rebuilt / "vmlinux.symvers").exports
    # nothing left to add, and the kernel is still trimmed exactly to the lists
    rc, out, err = kmi_list_cli("--dist", rebuilt, "--symvers", untrimmed)
    assert out == "[abi_symbol_list]\n"
    assert kmi_list_cli("--dist", rebuilt, "--strict")[0] == 0
    rc, _, err = run_bootverify(["run", "--dist", rebuilt, "--module-timeout", "8", "--json",
                                 tmp_path / "run.json", "--console-log",
                                 tmp_path / "console.log"], 400)
    modules = {m["name"]: m for m in json.loads((tmp_path / "run.json").read_text())["modules"]}
    for name in ("vendor_backlight", "vendor_panel", "vendor_latent"):
        assert modules[name]["runtime"]["outcome"] == "loaded", (name, err)
        assert modules[name]["static"]["verdict"] == "ok", modules[name]
