"""A device build's outputs as they come, through the CLI (bootverify/inputs.py): the real Samsung
S23 files as a dist directory (vendor_boot v4, its ext4 system_dlkm.img), the same files as an
erofs image (Debian's erofs-utils), bad partition images, `check` and `run` taking the same
options, and a module shipped in two partitions."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from craft import compile_modules
from test_cli_static import MODS, SYMVERS, one_line_error, run
from bootverify import cli
from bootverify.readers.bootimg import RamdiskType, VendorBootImage, VendorRamdisk
from bootverify.readers.bootimg import write_vendor_boot_image
from bootverify.readers.ramdisk import Compression, CpioEntry, compress, write_cpio

S23 = Path(__file__).parent / "data" / "samsung-s23-5.15"
RELEASE = "5.15.78-android13-8-ab"
S23_SYMVERS = S23 / "vmlinux.symvers.derived"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache and temporary files in the test's directory, to see what is left behind."""
    monkeypatch.setenv("BOOTVERIFY_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def _leftovers(env: Path) -> list[str]:
    return [p.name for p in (env / "tmp").iterdir()]


@pytest.fixture
def s23_dist(env: Path) -> Path:
    """The S23 files as the build's dist directory has them (its symvers under its own name)."""
    d = env / "dist"
    shutil.copytree(S23, d)
    return d


def _json(out: str) -> dict:
    return json.loads(out)


def test_the_s23_dist_is_read_planned_and_checked(s23_dist: Path, env: Path) -> None:
    rc, out, err = run("check", "--dist", s23_dist, "--symvers", S23_SYMVERS, "--json", "-")
    assert rc == 0, err
    report = _json(out)
    assert report["kernel_release"] == RELEASE
    paths = {m["name"]: m["path"] for m in report["modules"]}
    assert len(paths) == 123 + 2
    # system_dlkm's modules come from inside its ext4 image, named by the image and their path.
    assert paths["zram"] == (f"{s23_dist / 'system_dlkm.img'}:lib/modules/{RELEASE}/"
                             f"kernel/drivers/block/zram/zram.ko")
    assert paths["zsmalloc"] == f"{s23_dist / 'system_dlkm.img'}:lib/modules/{RELEASE}/" \
                                "kernel/mm/zsmalloc.ko"
    assert all(p.startswith(f"{s23_dist / 'vendor_boot.img'}:") for n, p in paths.items()
               if n not in ("zram", "zsmalloc"))
    assert {m["static"]["verdict"] for m in report["modules"]} == {"ok"}
    lines = err.splitlines()
    assert f"dist: vendor-kernel-boot: {s23_dist / 'vendor_boot.img'}" in lines
    assert f"dist: system-dlkm: {s23_dist / 'system_dlkm.img'}" in lines
    assert f"dist: symvers: {S23_SYMVERS} (--symvers)" in lines
    assert any(line.startswith("dist: boot: not found in ") for line in lines)
    assert f"system_dlkm: {s23_dist / 'system_dlkm.img'} (ext4), modules from " \
           f"lib/modules/{RELEASE}" in lines
    assert _leftovers(env) == []
    # Files extracted afresh each time can never hit the report cache: nothing is stored.
    reports = env / "cache/check/reports"
    assert not reports.exists() or not any(reports.iterdir())
    rc, _, _ = run("check", "--vendor-kernel-boot", s23_dist / "vendor_boot.img",
                   "--symvers", S23_SYMVERS)
    assert rc == 0 and any(reports.iterdir())


def test_an_erofs_image_of_the_same_files_gives_the_same_plan(s23_dist: Path, env: Path) -> None:
    tree = env / "system_dlkm-files"
    tree.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump / {tree}", str(S23 / "system_dlkm.img")],
                   check=True, capture_output=True, timeout=120)
    erofs = env / "system_dlkm.erofs.img"
    subprocess.run(["mkfs.erofs", str(erofs), str(tree)], check=True, capture_output=True,
                   timeout=120)
    reports = []
    for image in (s23_dist / "system_dlkm.img", erofs):
        rc, out, err = run("check", "--dist", s23_dist, "--symvers", S23_SYMVERS,
                           "--system-dlkm", image, "--json", "-")
        assert rc == 0, err
        doc = _json(out)
        for m in doc["modules"]:
            m["path"] = m["path"].replace(str(image), "IMAGE")
        reports.append(doc)
    assert reports[0] == reports[1]
    assert f"dist: system-dlkm: {erofs} (--system-dlkm; the dist has system_dlkm.img)" in err
    assert _leftovers(env) == []


@pytest.mark.parametrize("case", ["truncated", "magic", "file-for-dir", "directory-for-file"])
def test_bad_partition_images_are_one_line_errors(case: str, s23_dist: Path, env: Path) -> None:
    bad = env / "bad.img"
    data = (S23 / "system_dlkm.img").read_bytes()
    if case == "truncated":
        bad.write_bytes(data[:300_000])
        words = ["truncated ext4 image"]
    elif case == "magic":
        bad.write_bytes(b"\0" * 2048 + data[2048:])
        words = ["not a directory, an ext4 or erofs partition image"]
    elif case == "file-for-dir":
        src = env / "src"
        (src / "lib").mkdir(parents=True)
        (src / "lib/modules").write_text("a file\n")
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(src), str(bad), "1M"],
                       check=True, capture_output=True, timeout=120)
        words = ["lib/modules: not a directory"]
    else:       # a directory given where the symvers file should be
        bad.mkdir()
        rc, out, err = run("check", "--dist", s23_dist, "--symvers", bad)
        assert rc == 2
        one_line_error(err.splitlines(True)[-1], bad)
        return
    rc, out, err = run("check", "--dist", s23_dist, "--symvers", S23_SYMVERS,
                       "--system-dlkm", bad)
    assert rc == 2 and out == ""
    one_line_error(err.splitlines(True)[-1], bad, *words)
    assert _leftovers(env) == []


def test_check_and_run_take_the_same_input_options() -> None:
    parser = cli.parser()
    check = {a.dest for a in parser._subparsers._group_actions[0].choices["check"]._actions}
    run_ = {a.dest for a in parser._subparsers._group_actions[0].choices["run"]._actions}
    inputs = {"dist", "boot", "kernel", "vendor_kernel_boot", "modules_dir", "system_dlkm",
              "vendor_dlkm", "boot_mode", "symvers", "system_map", "kmi_symbol_list",
              "protected_exports"}
    assert inputs <= check and inputs <= run_
    line = ["--dist", "d", "--vendor-kernel-boot", "v.img", "--system-dlkm", "s.img",
            "--symvers", "x", "--kmi-symbol-list", "k", "--boot-mode", "charger"]
    a, b = parser.parse_args(["check", *line]), parser.parse_args(["run", *line, "--boot", "b"])
    assert {k: getattr(a, k) for k in inputs} == \
        {k: getattr(b, k) for k in inputs} | {"boot": None}


def test_run_without_a_boot_image_says_what_to_give(env: Path) -> None:
    rc, out, err = run("run", "--vendor-kernel-boot", S23 / "vendor_boot.img",
                       "--symvers", S23_SYMVERS)
    assert rc == 2
    one_line_error(err.splitlines(True)[-1], "(command line)", "--boot", "--kernel", "--dist")


def test_a_module_in_two_partitions_is_reported_on_both_rows(env: Path) -> None:
    built = compile_modules(env / "kos", {"good": MODS["good"]})
    ko = built["good"].read_bytes()
    ramdisk = compress(write_cpio([CpioEntry("lib", 0o40755), CpioEntry("lib/modules", 0o40755),
                                   CpioEntry("lib/modules/good.ko", 0o100644, ko),
                                   CpioEntry("lib/modules/modules.load", 0o100644, b"good.ko\n"),
                                   CpioEntry("lib/modules/modules.dep", 0o100644, b"good.ko:\n")]),
                       Compression.GZIP)
    write_vendor_boot_image(VendorBootImage(4, "", (VendorRamdisk(ramdisk, RamdiskType.DLKM,
                                                                  "dlkm"),)),
                            env / "vendor_kernel_boot.img")
    sd = env / "system_dlkm"
    sd.mkdir()
    (sd / "good.ko").write_bytes(ko)
    (sd / "modules.load").write_text("good.ko\n")
    (sd / "modules.dep").write_text("good.ko:\n")
    (env / "vmlinux.symvers").write_text(SYMVERS)
    args = ["check", "--vendor-kernel-boot", env / "vendor_kernel_boot.img", "--system-dlkm", sd,
            "--symvers", env / "vmlinux.symvers"]
    rc, out, err = run(*args)
    assert rc == 0, err
    rows = out[out.index("Modules shipped in more than one partition:"):].splitlines()[1:]
    assert rows[0].split()[:3] == ["DUPLICATE", "PARTITION", "PATH"]
    assert rows[1].split()[:3] == ["good", "vendor_kernel_boot", "/lib/modules/good.ko"]
    assert rows[2].split()[:3] == ["good", "system_dlkm", "/system_dlkm/lib/modules/good.ko"]
    assert "never runs" in rows[2] and "EEXIST" in rows[2]
    rc, out, err = run(*args, "--json", "-")
    (dup,) = _json(out)["duplicates"]
    assert dup["name"] == "good"
    assert [(c["partition"], c["path"], c["loads"]) for c in dup["copies"]] == [
        ("vendor_kernel_boot", "/lib/modules/good.ko", True),
        ("system_dlkm", "/system_dlkm/lib/modules/good.ko", False)]


def test_check_takes_the_release_from_a_bare_kernel(env: Path) -> None:
    from craft import RELEASE as CRAFT_RELEASE, fake_image, gz
    built = compile_modules(env / "kos", {"good": MODS["good"]})
    # A kernel built without PREEMPT: the modules' vermagic flags do not match.
    (env / "Image.gz").write_bytes(gz(fake_image("6.1.99-other",
                                                 "SMP mod_unload modversions aarch64")))
    (env / "vmlinux.symvers").write_text(SYMVERS)
    rc, out, err = run("check", "--kernel", env / "Image.gz", "--modules-dir", env / "kos",
                       "--symvers", env / "vmlinux.symvers", "--json", "-")
    report = _json(out)
    # The kernel's release and vermagic, not the modules' (built for CRAFT_RELEASE).
    assert report["kernel_release"] == "6.1.99-other" != CRAFT_RELEASE
    (good,) = report["modules"]
    assert good["path"] == str(built["good"])
    assert [p["kind"] for p in good["static"]["problems"]] == ["vermagic"] and rc == 1
    assert _leftovers(env) == []
