"""`bootverify check / kmi-diff / inspect / unpack` end to end on crafted inputs: table and JSON
output, exit codes 0/1/2, one-line errors without traceback, the results cache."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from craft import (RELEASE, VERMAGIC, Exp, Mod, compile_modules, fake_image, gz, kmi_list,
                   symvers_line)
from bootverify import cli
from bootverify.readers.bootimg import (BootImage, RamdiskType, VendorBootImage, VendorRamdisk,
                                        write_boot_image, write_vendor_boot_image)
from bootverify.readers.ramdisk import Compression, CpioEntry, compress, write_cpio

GPL = ("license", "GPL")
MAGIC = ("vermagic", VERMAGIC)
LAYOUT = ("module_layout", 0x4c41594f)

MODS = {
    "good": Mod(modinfo=(GPL, MAGIC), versions=(LAYOUT, ("printk", 0x1)), undefined=("printk",)),
    "provider": Mod(modinfo=(GPL, MAGIC), versions=(LAYOUT, ("kmalloc", 0x2)),
                    undefined=("kmalloc",),
                    exports=(Exp("prov_fn", crc=0x51),
                             Exp("prov_gpl_ns", gpl=True, namespace="VENDOR_NS", crc=0x52))),
    "consumer": Mod(modinfo=(GPL, MAGIC, ("import_ns", "VENDOR_NS"), ("depends", "provider")),
                    versions=(LAYOUT, ("prov_fn", 0x51), ("prov_gpl_ns", 0x52)),
                    undefined=("prov_fn", "prov_gpl_ns"), weak=("maybe_there",)),
    "latent": Mod(modinfo=(GPL, MAGIC), versions=(LAYOUT, ("outside_kmi", 0x3)),
                  undefined=("outside_kmi",)),
}
FAILING = {
    "broken": Mod(modinfo=(GPL, MAGIC), versions=(LAYOUT, ("printk", 0x1)),
                  undefined=("printk", "missing_sym"), exports=(Exp("broken_fn", crc=0x61),)),
    "dependent": Mod(modinfo=(("license", "Proprietary"), MAGIC),
                     versions=(LAYOUT, ("broken_fn", 0x61), ("printk", 0x999)),
                     undefined=("broken_fn", "printk")),
}
SYMVERS = (symvers_line(0x4c41594f, "module_layout") + symvers_line(0x1, "printk")
           + symvers_line(0x2, "kmalloc") + symvers_line(0x3, "outside_kmi")
           + symvers_line(0x7, "gpl_only_fn", kind="EXPORT_SYMBOL_GPL"))
KMI = kmi_list("module_layout", "printk", "kmalloc", comment="required by good.ko")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    return compile_modules(tmp_path_factory.mktemp("cli-kos"), {**MODS, **FAILING})


@pytest.fixture
def env(tmp_path, monkeypatch, built):
    """A modules dir of the passing set, symvers, KMI list; the cache in tmp_path."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BOOTVERIFY_CACHE", str(cache))
    mdir = tmp_path / "modules"
    (mdir / "kernel/drivers").mkdir(parents=True)
    for name in MODS:
        shutil.copy(built[name], mdir / ("kernel/drivers" if name != "good" else "") / f"{name}.ko")
    (tmp_path / "vmlinux.symvers").write_text(SYMVERS)
    (tmp_path / "abi_gki_aarch64").write_text(KMI)
    return tmp_path


class _Out(io.StringIO):
    """Captured stdout/stderr that stays readable if the CLI closes it."""
    closed_by_cli = False

    def close(self) -> None:
        self.closed_by_cli = True


def run_raw(*argv: object) -> tuple[int, _Out, _Out]:
    out, err = _Out(), _Out()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out, err


def run(*argv: object) -> tuple[int, str, str]:
    rc, out, err = run_raw(*argv)
    return rc, out.getvalue(), err.getvalue()


def check_args(t: Path, *extra) -> list[str]:
    return ["check", "--modules-dir", t / "modules", "--symvers", t / "vmlinux.symvers",
            "--kmi-symbol-list", t / "abi_gki_aarch64", *extra]


def one_line_error(err: str, path: object, *words: str) -> None:
    assert err.count("\n") == 1 and err.startswith(f"bootverify: {path}: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


# --- check ---

def test_check_passing_set_table(env):
    rc, out, err = run(*check_args(env))
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["MODULE", "STATIC", "PROBLEMS"]
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in lines[1:] if line and
            not line.startswith("4 modules")}
    assert rows == {"consumer": ["ok", "-"], "good": ["ok", "-"], "provider": ["ok", "-"],
                    "latent": ["warn", "not-in-kmi (latent): outside_kmi"]}
    assert lines[-1] == (f"4 modules: 3 ok, 1 warn, 0 fail predicted (kernel {RELEASE}, "
                         f"KMI not enforced)")


def test_check_json_contract(env, built):
    shutil.copy(built["broken"], env / "modules/broken.ko")
    shutil.copy(built["dependent"], env / "modules/kernel/dependent.ko")
    rc, out, err = run(*check_args(env, "--json", "-"))
    assert (rc, err) == (1, "")
    doc = json.loads(out)
    assert doc["kernel_release"] == RELEASE
    assert doc["kmi_trimmed"] is False
    mods = {m["name"]: m for m in doc["modules"]}
    assert sorted(mods) == ["broken", "consumer", "dependent", "good", "latent", "provider"]
    for m in doc["modules"]:
        assert set(m) >= {"name", "path", "static"}
        assert Path(m["path"]).is_file() and Path(m["path"]).name == f"{m['name']}.ko"
        assert m["static"]["verdict"] in ("ok", "warn", "fail")
        for p in m["static"]["problems"]:
            assert set(p) >= {"kind", "symbol", "detail"}
    pairs = {name: [(p["kind"], p["symbol"]) for p in m["static"]["problems"]]
             for name, m in mods.items()}
    assert pairs == {
        "good": [], "provider": [], "consumer": [],
        "latent": [("not-in-kmi", "outside_kmi")],
        "broken": [("not-in-kmi", "missing_sym"), ("unresolved", "missing_sym")],
        "dependent": [("crc-mismatch", "printk"), ("dependency-failed", "broken_fn")],
    }
    assert [mods[n]["static"]["verdict"] for n in ("good", "latent", "broken", "dependent")] == \
        ["ok", "warn", "fail", "fail"]
    dep = mods["dependent"]["static"]["problems"][1]
    assert dep["detail"] == "needs broken_fn from broken, which fails to load"


def test_check_json_file_and_table(env, built):
    shutil.copy(built["broken"], env / "modules/broken.ko")
    rc, out, err = run(*check_args(env, "--json", env / "report.json"))
    assert rc == 1 and "broken" in out and "unresolved: missing_sym" in out
    doc = json.loads((env / "report.json").read_text())
    assert {m["name"] for m in doc["modules"]} == set(MODS) | {"broken"}


def test_check_vendor_kernel_boot_and_boot(env, built):
    """Modules from a v4 vendor_kernel_boot's DLKM fragment; release and vermagic from boot.img."""
    modules_cpio = write_cpio(
        [CpioEntry("lib", stat.S_IFDIR | 0o755), CpioEntry("lib/modules", stat.S_IFDIR | 0o755)]
        + [CpioEntry(f"lib/modules/{n}.ko", stat.S_IFREG | 0o644, built[n].read_bytes())
           for n in ("provider", "consumer", "broken")]
        + [CpioEntry("lib/modules/modules.load", stat.S_IFREG | 0o644,
                     b"provider.ko\nconsumer.ko\nbroken.ko\n"),
           CpioEntry("lib/modules/modules.dep", stat.S_IFREG | 0o644,
                     b"provider.ko:\nconsumer.ko: provider.ko\nbroken.ko:\n")])
    img = VendorBootImage(4, "", (
        VendorRamdisk(compress(write_cpio([CpioEntry("init", stat.S_IFREG | 0o755, b"#!")]),
                               Compression.GZIP), RamdiskType.PLATFORM, "platform"),
        VendorRamdisk(compress(modules_cpio, Compression.LZ4_LEGACY), RamdiskType.DLKM,
                      "dlkm")), bootconfig=b"androidboot.x=1\n")
    write_vendor_boot_image(img, env / "vendor_kernel_boot.img")
    other = "6.1.100-android14-other"
    write_boot_image(BootImage(4, compress(fake_image(release=other), Compression.LZ4_LEGACY),
                               b"", "console=ttyAMA0"), env / "boot.img")
    rc, out, err = run("check", "--vendor-kernel-boot", env / "vendor_kernel_boot.img",
                       "--boot", env / "boot.img", "--symvers", env / "vmlinux.symvers",
                       "--json", "-")
    assert (rc, err) == (1, "")
    doc = json.loads(out)
    assert doc["kernel_release"] == other
    mods = {m["name"]: m for m in doc["modules"]}
    assert sorted(mods) == ["broken", "consumer", "provider"]
    assert mods["provider"]["path"] == \
        f"{env / 'vendor_kernel_boot.img'}:dlkm/lib/modules/provider.ko"
    # the release differs, the flags match and the modules have __versions: vermagic is fine
    assert [m["static"]["verdict"] for m in doc["modules"]] == ["fail", "ok", "ok"]
    # flags differ: every module fails on vermagic
    write_boot_image(BootImage(3, fake_image(vermagic_flags="SMP mod_unload modversions aarch64"),
                               b"", ""), env / "boot.img")
    rc, out, _ = run("check", "--vendor-kernel-boot", env / "vendor_kernel_boot.img",
                     "--boot", env / "boot.img", "--symvers", env / "vmlinux.symvers",
                     "--json", "-")
    assert rc == 1
    for m in json.loads(out)["modules"]:
        assert m["static"]["problems"][0]["kind"] == "vermagic"


def test_check_system_map(env):
    (env / "System.map").write_text("".join(f"ffff80000a{i:06x} r __ksymtab_{s}\n" for i, s in
                                            enumerate(["module_layout", "printk", "kmalloc"])))
    rc, out, err = run("check", "--modules-dir", env / "modules", "--system-map",
                       env / "System.map", "--json", "-")
    assert rc == 1
    pairs = {(m["name"], p["kind"], p["symbol"]) for m in json.loads(out)["modules"]
             for p in m["static"]["problems"]}
    assert pairs == {("latent", "unresolved", "outside_kmi")}


def test_module_name_seen_twice_keeps_the_first(env, built):
    """The kernel refuses the second module of a name (EEXIST): the set keeps the first,
    the image's modules before the directories', directories in sorted order."""
    (env / "modules/kernel/zz").mkdir()
    shutil.copy(built["broken"], env / "modules/kernel/zz/good.ko")
    rc, out, _ = run(*check_args(env, "--json", "-"))
    goods = [m for m in json.loads(out)["modules"] if m["name"] == "good"]
    assert rc == 0 and [g["path"] for g in goods] == [str(env / "modules/good.ko")]
    img = VendorBootImage(3, "", (VendorRamdisk(write_cpio(
        [CpioEntry("good.ko", stat.S_IFREG | 0o644, built["broken"].read_bytes())])),))
    write_vendor_boot_image(img, env / "vb.img")
    rc, out, _ = run(*check_args(env, "--vendor-kernel-boot", env / "vb.img", "--json", "-"))
    goods = [m for m in json.loads(out)["modules"] if m["name"] == "good"]
    assert [g["path"] for g in goods] == [f"{env / 'vb.img'}:ramdisk0/good.ko"]
    # outside /lib/modules: first stage never loads it, so its failure fails nothing
    problems = goods[0]["static"]["problems"]
    assert rc == 0 and goods[0]["static"]["verdict"] == "fail"
    assert {"kind": "packaging", "symbol": "", "fatal": False, "detail": "outside first "
            "stage's module directory /lib/modules: never loaded"} in problems


# --- the cache ---

def _json(argv) -> str:
    rc, out, err = run(*argv)
    assert rc in (0, 1) and err == ""
    return out


def test_warm_run_same_report_and_invalidation(env, built):
    argv = check_args(env, "--json", "-")
    cold = _json(argv)
    reports = env / "cache/check/reports"
    assert len(list(reports.glob("*.pickle"))) == 1
    warm = _json(argv)
    assert warm == cold
    assert len(list(reports.glob("*.pickle"))) == 1
    # a changed symvers: printk's CRC moves, good.ko now disagrees
    (env / "vmlinux.symvers").write_text(SYMVERS.replace(symvers_line(0x1, "printk"),
                                                         symvers_line(0x1234, "printk")))
    changed = json.loads(_json(argv))
    good = next(m for m in changed["modules"] if m["name"] == "good")
    assert [(p["kind"], p["symbol"]) for p in good["static"]["problems"]] == \
        [("crc-mismatch", "printk")]
    # a changed module file (same path): the new content is read, not the cached facts
    (env / "vmlinux.symvers").write_text(SYMVERS)
    assert _json(argv) == cold
    target = env / "modules/good.ko"
    target.write_bytes(built["broken"].read_bytes())
    rebuilt = json.loads(_json(argv))
    good = next(m for m in rebuilt["modules"] if m["path"] == str(target))
    assert good["name"] == "good" and good["static"]["verdict"] == "fail"
    # a KMI list edited in place
    (env / "abi_gki_aarch64").write_text(KMI + "  outside_kmi\n")
    target.write_bytes(built["good"].read_bytes())
    assert _json(argv) != cold
    assert all(m["static"]["verdict"] == "ok"
               for m in json.loads(_json(argv))["modules"])
    # a new module in the directory
    shutil.copy(built["broken"], env / "modules/kernel/new.ko")
    assert "new" in {m["name"] for m in json.loads(_json(argv))["modules"]}
    assert not [p for p in (env / "cache").rglob(".*")], "temporary files left in the cache"


def test_no_cache_flag(env):
    _json(check_args(env, "--no-cache", "--json", "-"))
    assert not (env / "cache").exists()


def test_damaged_cache_is_an_empty_one(env):
    argv = check_args(env, "--json", "-")
    cold = _json(argv)
    for p in (env / "cache").rglob("*.pickle"):
        p.write_bytes(b"\x80\x05garbage")
    assert _json(argv) == cold


# --- errors: exit 2, one line, no traceback ---

def test_missing_symvers(env):
    rc, out, err = run("check", "--modules-dir", env / "modules", "--symvers",
                       env / "absent.symvers")
    assert rc == 2 and out == ""
    one_line_error(err, env / "absent.symvers", "No such file")


def test_malformed_inputs(env):
    (env / "bad.symvers").write_text("0x1\tprintk\tvmlinux\n")
    rc, _, err = run("check", "--modules-dir", env / "modules", "--symvers",
                     env / "bad.symvers")
    assert rc == 2
    one_line_error(err, env / "bad.symvers", "line 1")
    (env / "bad_kmi").write_text("  printk\n")
    rc, _, err = run(*check_args(env)[:-1], env / "bad_kmi")
    assert rc == 2
    one_line_error(err, env / "bad_kmi", "before the [abi_symbol_list] header")


def test_corrupt_module_in_dir(env):
    bad = env / "modules/kernel/corrupt.ko"
    bad.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 30)
    rc, out, err = run(*check_args(env))
    assert rc == 2 and out == ""
    one_line_error(err, bad)


def test_no_modules_and_bad_dirs(env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = run("check", "--modules-dir", empty, "--symvers", env / "vmlinux.symvers")
    assert rc == 2
    one_line_error(err, empty, "no kernel modules")
    rc, _, err = run("check", "--modules-dir", tmp_path / "nodir", "--symvers",
                     env / "vmlinux.symvers")
    assert rc == 2
    one_line_error(err, tmp_path / "nodir", "not a directory")
    rc, _, err = run("check", "--symvers", env / "vmlinux.symvers")
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1


def test_vendor_boot_option_given_a_boot_img(env):
    write_boot_image(BootImage(3, fake_image(), b"", ""), env / "boot.img")
    rc, _, err = run("check", "--vendor-kernel-boot", env / "boot.img", "--symvers",
                     env / "vmlinux.symvers")
    assert rc == 2
    one_line_error(err, env / "boot.img", "not a vendor_boot")


def test_usage_errors_exit_2(env):
    with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(io.StringIO()):
        cli.main(["check", "--modules-dir", str(env / "modules"), "--symvers", "a",
                  "--system-map", "b"])
    assert e.value.code == 2
    # The symbols may come from --dist: without either, a one-line error after parsing.
    rc, out, err = run("check", "--modules-dir", env / "modules")
    assert rc == 2 and out == ""
    one_line_error(err, "(command line)", "--symvers", "--system-map", "--dist")


def test_json_to_stdout_leaves_stdout_open(env):
    rc, out, _ = run_raw(*check_args(env, "--json", "-"))
    assert rc == 0 and json.loads(out.getvalue())
    assert not out.closed_by_cli
    rc, out, _ = run_raw("kmi-diff", env / "vmlinux.symvers", env / "vmlinux.symvers",
                         "--json", "-")
    assert rc == 0 and not out.closed_by_cli


def test_unwritable_json_path(env):
    rc, _, err = run(*check_args(env, "--json", env / "no/such/dir/report.json"))
    assert rc == 2
    one_line_error(err, env / "no/such/dir/report.json")


# --- kmi-diff ---

def test_kmi_diff(env):
    old = env / "old.symvers"
    new = env / "new.symvers"
    old.write_text(symvers_line(1, "stays") + symvers_line(2, "changes") + symvers_line(3, "goes")
                   + symvers_line(4, "unlisted_goes") + symvers_line(5, "modsym", owner="m/x")
                   + symvers_line(7, "goes_gpl") + symvers_line(8, "moves_ns")
                   + symvers_line(9, "to_module"))
    new.write_text(symvers_line(1, "stays") + symvers_line(0x22, "changes")
                   + symvers_line(6, "added") + symvers_line(0x55, "modsym", owner="m/x")
                   + symvers_line(7, "goes_gpl", kind="EXPORT_SYMBOL_GPL")
                   + symvers_line(8, "moves_ns", ns="VENDOR_NS")
                   + symvers_line(9, "to_module", owner="m/y"))
    rc, out, err = run("kmi-diff", old, new)
    assert (rc, err) == (1, "")
    # module rows count (a GKI module's exports are KMI too), and added symbols are listed
    assert out.splitlines() == [
        "added             added  vmlinux  - -> 0x00000006",
        "crc-changed       changes  vmlinux  0x00000002 -> 0x00000022",
        "removed           goes  vmlinux  0x00000003 -> -",
        "type-changed      goes_gpl  vmlinux  EXPORT_SYMBOL -> EXPORT_SYMBOL_GPL",
        "crc-changed       modsym  m/x  0x00000005 -> 0x00000055",
        "namespace-changed moves_ns  vmlinux  - -> VENDOR_NS",
        "owner-changed     to_module  m/y  vmlinux -> m/y",
        "removed           unlisted_goes  vmlinux  0x00000004 -> -",
        "7 of 8 symbols removed or changed, 1 added"]
    (env / "kmi").write_text(kmi_list("stays", "changes", "goes", "not_in_old", "added"))
    rc, out, _ = run("kmi-diff", old, new, "--kmi-symbol-list", env / "kmi",
                     "--json", "-")
    assert rc == 1
    doc = json.loads(out)
    assert doc["symbols_compared"] == 3
    assert doc["counts"] == {"removed": 1, "crc-changed": 1, "type-changed": 0,
                             "namespace-changed": 0, "owner-changed": 0, "added": 1}
    assert doc["changes"] == [
        {"symbol": "added", "change": "added", "owner": "vmlinux", "old": None,
         "new": {"crc": "0x00000006", "type": "EXPORT_SYMBOL", "namespace": "",
                 "owner": "vmlinux"}},
        {"symbol": "changes", "change": "crc-changed", "owner": "vmlinux",
         "old": {"crc": "0x00000002", "type": "EXPORT_SYMBOL", "namespace": "",
                 "owner": "vmlinux"},
         "new": {"crc": "0x00000022", "type": "EXPORT_SYMBOL", "namespace": "",
                 "owner": "vmlinux"}},
        {"symbol": "goes", "change": "removed", "owner": "vmlinux",
         "old": {"crc": "0x00000003", "type": "EXPORT_SYMBOL", "namespace": "",
                 "owner": "vmlinux"}, "new": None}]
    # only additions: nothing a module built against the old kernel needs is broken
    rc, out, _ = run("kmi-diff", old, old)
    assert rc == 0 and out.strip() == "0 of 8 symbols removed or changed, 0 added"
    rc, out, _ = run("kmi-diff", old, new, "--kmi-symbol-list", env / "kmi")
    assert out.splitlines()[-1] == "2 of 3 KMI symbols removed or changed, 1 added"
    rc, _, err = run("kmi-diff", old, env / "missing.symvers")
    assert rc == 2
    one_line_error(err, env / "missing.symvers")


# --- inspect / unpack ---

PLATFORM_CPIO = write_cpio([CpioEntry("etc", 0o40755), CpioEntry("etc/x", 0o100644, b"x\n")])
DLKM_CPIO_GZ = compress(write_cpio([CpioEntry("lib", 0o40755), CpioEntry("lib/modules", 0o40755),
                                    CpioEntry("lib/modules/a.ko", 0o100600, b"\x7fELF"),
                                    CpioEntry("lib/modules/link", 0o120777, b"a.ko")]),
                        Compression.GZIP)


def _vendor_v4(path: Path, platform: bytes = PLATFORM_CPIO) -> VendorBootImage:
    img = VendorBootImage(4, "androidboot.console=ttyAMA0", (
        VendorRamdisk(platform, RamdiskType.PLATFORM, "platform"),
        VendorRamdisk(DLKM_CPIO_GZ, RamdiskType.DLKM, "dlkm", (0xab,) + (0,) * 15)),
        dtb=b"\xd0\x0d\xfe\xed dtb", bootconfig=b"androidboot.x=1\n", name="crafted")
    write_vendor_boot_image(img, path)
    return img


def test_inspect(env):
    _vendor_v4(env / "vb.img")
    rc, out, err = run("inspect", env / "vb.img")
    assert (rc, err) == (0, "")
    rows = {line[:28].strip(): line[28:].strip() for line in out.splitlines()}
    assert rows["format"] == "vendor_boot v4"
    assert rows["name"] == "crafted"
    assert rows["cmdline"] == "androidboot.console=ttyAMA0"
    assert rows["vendor_ramdisk[1]"] == \
        f"name 'dlkm' type DLKM size {len(DLKM_CPIO_GZ)} board_id 0xab"
    assert rows["section bootconfig"].endswith("size 16")
    assert "kernel release" not in rows


def test_inspect_shows_the_kernel_release(env):
    write_boot_image(BootImage(4, gz(fake_image()), b"", ""), env / "boot.img")
    rc, out, err = run("inspect", env / "boot.img")
    assert (rc, err) == (0, "")
    rows = {line[:28].strip(): line[28:].strip() for line in out.splitlines()}
    assert rows["kernel release"] == RELEASE
    assert rows["kernel compression"] == "gzip"
    assert rows["kernel vermagic"] == VERMAGIC
    write_boot_image(BootImage(4, b"not a kernel" * 10, b"", ""), env / "junk.img")
    rc, out, err = run("inspect", env / "junk.img")
    assert (rc, err) == (0, "")
    assert "not an arm64 kernel Image" in out


def test_unpack(env):
    img = _vendor_v4(env / "vb.img")
    out_dir = env / "out"
    rc, out, err = run("unpack", env / "vb.img", out_dir)
    assert (rc, err) == (0, "")
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "bootconfig", "cmdline", "dtb", "vendor_ramdisk00_platform",
        "vendor_ramdisk00_platform.files", "vendor_ramdisk01_dlkm", "vendor_ramdisk01_dlkm.cpio",
        "vendor_ramdisk01_dlkm.files"]
    assert (out_dir / "vendor_ramdisk01_dlkm").read_bytes() == DLKM_CPIO_GZ
    # Decompressed, and unpacked: files with their permission bits, links as links.
    assert (out_dir / "vendor_ramdisk01_dlkm.cpio").read_bytes() == \
        gzip.decompress(DLKM_CPIO_GZ)
    files = out_dir / "vendor_ramdisk01_dlkm.files/lib/modules"
    assert (files / "a.ko").read_bytes() == b"\x7fELF"
    assert stat.S_IMODE((files / "a.ko").stat().st_mode) == 0o600
    assert os.readlink(files / "link") == "a.ko"
    assert (out_dir / "vendor_ramdisk00_platform.files/etc/x").read_text() == "x\n"
    assert (out_dir / "cmdline").read_text() == img.cmdline + "\n"
    assert f"{out_dir / 'vendor_ramdisk01_dlkm.files'}/ (1 files)" in out.splitlines()
    kernel = fake_image()
    write_boot_image(BootImage(4, kernel, PLATFORM_CPIO, "c", signature=b"sig"),
                     env / "boot.img")
    rc, _, _ = run("unpack", env / "boot.img", env / "out2")
    assert rc == 0
    assert sorted(p.name for p in (env / "out2").iterdir()) == ["cmdline", "kernel", "ramdisk",
                                                                "ramdisk.files", "signature"]
    assert (env / "out2/kernel").read_bytes() == kernel
    # Again into the same directory: the same result, not an error.
    rc, _, err = run("unpack", env / "boot.img", env / "out2")
    assert (rc, err) == (0, "")


def test_unpack_refuses_members_out_of_the_archive(env):
    evil = write_cpio([CpioEntry("up", 0o120777, b".."),
                       CpioEntry("up/escaped", 0o100644, b"x")])
    _vendor_v4(env / "vb.img", platform=evil)
    rc, _, err = run("unpack", env / "vb.img", env / "out")
    assert rc == 2
    one_line_error(err, f"{env / 'vb.img'}:vendor_ramdisk00_platform", "leads out of the archive")
    assert not (env / "escaped").exists()
    dotdot = write_cpio([CpioEntry("../escaped", 0o100644, b"x")])
    _vendor_v4(env / "vb.img", platform=dotdot)
    rc, _, err = run("unpack", env / "vb.img", env / "out3")
    assert rc == 2 and "leads out of the archive" in err
    assert not (env / "escaped").exists()


def test_inspect_and_unpack_malformed(env):
    bad = env / "bad.img"
    bad.write_bytes(b"ANDROID!" + b"\0" * 32 + b"\x09\0\0\0" + b"\0" * 2000)
    rc, out, err = run("inspect", bad)
    assert rc == 2 and out == ""
    one_line_error(err, bad, "header_version 9")
    rc, out, err = run("unpack", bad, env / "never")
    assert rc == 2 and out == ""
    one_line_error(err, bad)
    assert not (env / "never").exists()


def test_unpack_into_a_file(env):
    _vendor_v4(env / "vb.img")
    (env / "afile").write_text("x")
    rc, _, err = run("unpack", env / "vb.img", env / "afile")
    assert rc == 2
    one_line_error(err, env / "afile")


# --- the real entry point, in a subprocess ---

def _subprocess(args: list[str], tmp: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmp), "BOOTVERIFY_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "bootverify", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_python_m_end_to_end(env, built):
    tmp = env / "tmp"
    tmp.mkdir()
    shutil.copy(built["broken"], env / "modules/broken.ko")
    for args in (["--help"], ["check", "--help"], ["kmi-diff", "--help"], ["inspect", "--help"],
                 ["unpack", "--help"], ["replacement", "--help"], ["kmi-list", "--help"]):
        r = _subprocess(args, tmp, env / "cache")
        assert r.returncode == 0 and r.stdout.startswith("usage: bootverify"), r.stderr
    r = _subprocess(check_args(env, "--json", "-"), tmp, env / "cache")
    assert r.returncode == 1 and r.stderr == ""
    assert {m["name"] for m in json.loads(r.stdout)["modules"]} == set(MODS) | {"broken"}
    (env / "modules/kernel/zz-corrupt.ko").write_bytes(b"\x7fELF")
    r = _subprocess(check_args(env), tmp, env / "cache")
    assert r.returncode == 2 and r.stdout == ""
    one_line_error(r.stderr, env / "modules/kernel/zz-corrupt.ko")
    r = _subprocess(["inspect", env / "modules/good.ko"], tmp, env / "cache")
    assert r.returncode == 2
    one_line_error(r.stderr, env / "modules/good.ko", "not an Android boot image")
    r = _subprocess(["frobnicate"], tmp, env / "cache")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert list(tmp.iterdir()) == [], "temporary files left behind"
    assert not [p for p in (env / "cache").rglob(".*")], "temporary files left in the cache"


def test_report_cache_keeps_only_the_most_recent(tmp_path):
    from bootverify.cache import memo
    for i in range(5):
        assert memo(tmp_path, f"k{i}", lambda i=i: i, int, keep=3) == i
    assert sorted(p.stem for p in tmp_path.glob("*.pickle")) == ["k2", "k3", "k4"]
    # a hit counts as a use: k2 survives the next store, k3 goes
    os.utime(tmp_path / "k3.pickle", (1, 1))
    os.utime(tmp_path / "k4.pickle", (2, 2))
    assert memo(tmp_path, "k2", lambda: -1, int, keep=3) == 2
    memo(tmp_path, "k5", lambda: 5, int, keep=3)
    assert sorted(p.stem for p in tmp_path.glob("*.pickle")) == ["k2", "k4", "k5"]
