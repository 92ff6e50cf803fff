"""Issue 15 part 2: no traceback, no hang, nothing left behind. One regression test per defect
the fuzz and fault-injection runs found, each with its minimal input (the number is the issue's
list item)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from craft import RELEASE, Exp, Mod, fake_image, module_source, need
from test_cli_static import built, env, one_line_error, run  # noqa: F401 - fixtures
from test_runtime_units import FakeConsole, FakeGuests, FakeVM, _set
from bootverify import cli
from bootverify.crosscheck import Agreement, crosscheck
from bootverify.errors import InfraError, InputError
from bootverify.plan import make_plan, plan_for
from bootverify.readers import modules as modules_reader
from bootverify.readers.bootimg import (BootImage, RamdiskType, VendorBootImage, VendorRamdisk,
                                        write_boot_image, write_vendor_boot_image)
from bootverify.readers.kernel import parse_kernel
from bootverify.readers.modulesdir import read_modules_dir
from bootverify.readers.ramdisk import Compression, CpioEntry, compress, unpack_initrd, write_cpio
from bootverify.report import junit
from bootverify.runtime import boot, console, kmsg, loader, protocol, vm
from bootverify.runtime.runner import Runner, classify_output
from bootverify.static.analysis import Prediction, Problem, ProblemKind
from bootverify.verdict import device_verdict

CPIO = write_cpio([CpioEntry("a", stat.S_IFREG | 0o644, b"a")])
PYTHON = [sys.executable, "-m", "bootverify"]


def _no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr, r.stderr


# --- 1, 19: modules.dep chains, cycles, self-deps; the module's own name ---

def test_1_a_modules_dep_chain_thousands_deep_is_planned_and_judged():
    n = 3000
    files = [f"m{i}.ko" for i in range(n)]
    dep = {f"m{i}.ko": (f"m{i + 1}.ko",) if i + 1 < n else () for i in range(n)}
    plan = make_plan([_set("vendor_ramdisk", "/lib/modules", files, ["m0.ko"], dep)])
    assert [s.key[1] for s in plan.steps] == [f"m{i}" for i in reversed(range(n))]
    outcomes = {s.key: "loaded" for s in plan.steps}
    assert device_verdict(plan, outcomes).verdict == "boots"
    outcomes[("vendor_ramdisk", f"m{n - 1}")] = "link-error"
    device = device_verdict(plan, outcomes)
    assert device.verdict == "stops" and device.reason.count(" needs ") == n - 1


def test_1_19_cycles_and_self_deps_are_cut_and_named_packaging_problems():
    files = ["a.ko", "b.ko", "c.ko", "self.ko"]
    dep = {"a.ko": ("b.ko",), "b.ko": ("c.ko",), "c.ko": ("a.ko",), "self.ko": ("self.ko",)}
    plan = make_plan([_set("vendor_ramdisk", "/lib/modules", files, ["a.ko", "self.ko"], dep)])
    assert [s.key[1] for s in plan.steps] == ["c", "b", "a", "self"]
    cycles = [n for n in plan.notes if n.startswith("packaging problem: modules.dep cycle")]
    assert len(cycles) == 2, plan.notes
    assert any("a -> " in n and "b -> " in n and "c -> " in n for n in cycles)
    assert device_verdict(plan, {s.key: "loaded" for s in plan.steps}).verdict == "boots"


def test_19_a_module_whose_modinfo_name_differs_is_named_as_the_kernel_does():
    s = _set("vendor_ramdisk", "/lib/modules", ["wifi-file.ko"], ["wifi-file.ko"],
             {"wifi-file.ko": ()})
    s = type(s)(s.origin, s.guest_dir, s.files, s.config, own_names={"wifi-file.ko": "wlan"})
    plan = make_plan([s])
    u = plan.units[("vendor_ramdisk", "wifi_file")]
    assert u.own_name == "wlan"
    out = protocol.parse_load_output(
        ("4,3,1,-;wlan: Unknown symbol cfg80211_scan (err -2)",), "finit:-2:100")
    result = classify_output(u, out, 0.1)
    assert result.outcome is kmsg.Outcome.LINK_ERROR and result.problems[0].symbol == \
        "cfg80211_scan"
    predicted = Prediction("wlan", "img:lib/modules/wifi-file.ko",
                           (Problem(ProblemKind.UNRESOLVED, "cfg80211_scan", "", True),))
    [v] = crosscheck((predicted,), [result])
    assert v.agreement is Agreement.CONFIRMED and v.name == "wlan"


# --- 2, 15, 16: the kernel's initramfs rules ---

@pytest.mark.timeout(60)
def test_2_compression_nesting_is_one_level_as_in_the_kernel():
    data = CPIO
    for _ in range(1000):
        data = gzip.compress(data, 1)
    with pytest.raises(InputError, match="junk within compressed archive"):
        unpack_initrd(data, "rd")


def test_15_lz4_frame_and_broken_padding_are_refused_as_the_kernel_does(env):  # noqa: F811
    for ramdisk, words in ((compress(CPIO, Compression.LZ4_FRAME), "invalid magic"),
                           (CPIO + b"\0" * 3 + CPIO, "broken padding")):
        img = env / "vendor_boot.img"
        write_vendor_boot_image(VendorBootImage(4, "", (VendorRamdisk(ramdisk,
                                RamdiskType.DLKM, "dlkm"),)), img)
        rc, out, err = run("check", "--vendor-kernel-boot", img, "--symvers",
                           env / "vmlinux.symvers")
        assert rc == 2 and out == ""
        one_line_error(err, f"{img}:dlkm", words)


@pytest.mark.timeout(60)     # quadratic: hours; linear: well under a second
def test_16_many_small_segments_before_a_large_rest_unpack_in_linear_time():
    segment = compress(CPIO, Compression.GZIP)
    data = (segment + b"\0" * (-len(segment) % 4)) * 3000 + b"\0" * (64 << 20)
    assert set(unpack_initrd(data, "rd")) == {"a"}


# --- 3: the cache only costs speed ---

@pytest.mark.parametrize("where", ["file", "devnull", "entry-is-dir"])
def test_3_unusable_cache_is_one_warning_line(env, monkeypatch, where):  # noqa: F811
    args = ["check", "--modules-dir", env / "modules", "--symvers", env / "vmlinux.symvers"]
    if where == "file":
        (env / "cachefile").write_text("x")
        monkeypatch.setenv("BOOTVERIFY_CACHE", str(env / "cachefile"))
    elif where == "devnull":
        monkeypatch.setenv("BOOTVERIFY_CACHE", os.devnull)
    else:
        assert run(*args)[0] == 0
        for entry in (env / "cache/check/reports").glob("*.pickle"):
            entry.unlink()
            entry.mkdir()
    rc, out, err = run(*args)
    assert rc == 0 and "4 modules" in out
    assert err.count("\n") == 1 and err.startswith("bootverify: warning: cache not used"), err


def test_3_a_cache_entry_of_the_wrong_type_is_rebuilt(env):  # noqa: F811
    args = ["check", "--modules-dir", env / "modules", "--symvers", env / "vmlinux.symvers"]
    assert run(*args)[0] == 0
    [entry] = (env / "cache/check/reports").glob("*.pickle")
    entry.write_bytes(pickle.dumps({"not": "a report"}))
    rc, out, err = run(*args)
    assert rc == 0 and "4 modules" in out and err == ""
    assert type(pickle.loads(entry.read_bytes())).__name__ == "StaticReport"


# --- 4: stdout ---

def _check_cli(root: Path) -> list[str]:
    return [*PYTHON, "check", "--modules-dir", str(root / "modules"), "--symvers",
            str(root / "vmlinux.symvers")]


@pytest.mark.timeout(60)
def test_4_stdout_on_dev_full_is_one_line(env):  # noqa: F811
    with open("/dev/full", "w") as full:
        r = subprocess.run(_check_cli(env), stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=60)
    _no_traceback(r)
    assert r.returncode == 2 and r.stderr == \
        "bootverify: (stdout): cannot write: No space left on device\n"


@pytest.mark.timeout(60)
def test_4_a_closed_pipe_keeps_the_verdict(env):  # noqa: F811
    read, write = os.pipe()
    os.close(read)                          # the reader went away (`| head -1` done)
    r = subprocess.run(_check_cli(env), stdout=write, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    os.close(write)
    _no_traceback(r)
    assert r.returncode == 0 and r.stderr == ""


def test_4_every_way_of_writing_survives_a_closed_pipe():
    """Found by benchmarks/fuzz.py: the device verdict's notes go out by writelines()."""
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as pipe:
        out = cli._Stdout(pipe)  # type: ignore[arg-type]
        out.write("x" * 100000)
        out.writelines(["a\n", "b\n"])
        out.flush()


# --- 5, 6: paths and numbers on the command line ---

@pytest.mark.parametrize("option", ["--symvers", "--kmi-symbol-list", "--boot", "--modules-dir",
                                    "--system-dlkm", "--dist"])
def test_5_an_over_long_path_component_is_one_line(env, option):  # noqa: F811
    long = env / ("x" * 300)
    args = {"--symvers": ["--modules-dir", env / "modules", "--symvers", long],
            "--kmi-symbol-list": ["--modules-dir", env / "modules", "--symvers",
                                  env / "vmlinux.symvers", "--kmi-symbol-list", long],
            "--boot": ["--modules-dir", env / "modules", "--symvers", env / "vmlinux.symvers",
                       "--boot", long],
            "--modules-dir": ["--modules-dir", long, "--symvers", env / "vmlinux.symvers"],
            "--system-dlkm": ["--system-dlkm", long, "--symvers", env / "vmlinux.symvers"],
            "--dist": ["--dist", long, "--symvers", env / "vmlinux.symvers"]}
    rc, out, err = run("check", *args[option])
    assert rc == 2
    one_line_error(err, long)


def test_5_a_newline_in_a_path_is_shown_escaped(env):  # noqa: F811
    rc, _, err = run("check", "--modules-dir", env / "modules", "--symvers", env / "a\nb")
    assert rc == 2
    one_line_error(err, f"{env}/a\\nb", "No such file")


@pytest.mark.parametrize("option,value", [("--module-timeout", "nan"),
                                          ("--module-timeout", "Infinity"),
                                          ("--module-timeout", "0"),
                                          ("--module-timeout", "-1"),
                                          ("--boot-timeout", "1e400"),
                                          ("--memory", "0")])
def test_6_numeric_options_out_of_range_are_bad_input(capsys, option, value):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--boot", "b.img", "--symvers", "s", option, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and option in err, err


# --- 7, 13: a guest that hangs or dies while modules are restored ---

class _RestoreFails(FakeConsole):
    def run(self, command: str, timeout: float) -> console.CommandResult:
        if self.vm.first_seq > 1 and not getattr(self.vm, "spared", False):
            self.vm.spared = True       # the boot after it restores nothing: spare it
            raise self.vm.failure("restore", self.seq, ("loading again",), 1.0)
        return super().run(command, timeout)


@pytest.mark.parametrize("failure", [console.CommandTimeout, console.GuestDied])
def test_7_13_a_guest_failing_while_modules_are_restored_is_recorded(failure):
    s = _set("vendor_ramdisk", "/lib/modules", ["a.ko", "h.ko", "b.ko"],
             ["a.ko", "h.ko", "b.ko"], {"a.ko": (), "h.ko": (), "b.ko": ("a.ko",)})
    plan = make_plan([s])

    class Guests(FakeGuests):
        def __call__(self, *, first_seq: int, label: str) -> FakeVM:
            guest = super().__call__(first_seq=first_seq, label=label)
            guest.failure = failure
            guest.console = _RestoreFails(guest, self.script, self.plan)
            return guest

    runner = Runner(plan, Guests({"h": "hang"}, plan), module_timeout=1)  # type: ignore[arg-type]
    runner.run()
    rep = runner.report("6.1", "", 1.0)
    assert {r.name: r.outcome.value for r in rep.results} == {"a": "loaded", "h": "hung",
                                                              "b": "loaded"}
    how = "hung" if failure is console.CommandTimeout else "died"
    assert [b.reason for b in rep.boots] == ["first boot", "after hung h",
                                             f"after the restore {how}"]
    assert rep.boots[1].restore_failures == (f"restore {how}",)
    assert any(f"the guest {how} while modules were loaded again" in n for n in rep.notes)


def test_13_a_corrupt_vendor_ramdisk_stops_run_before_qemu_naming_the_image(tmp_path):
    kernel = compress(fake_image(), Compression.LZ4_LEGACY)
    write_boot_image(BootImage(4, kernel, b"", ""), tmp_path / "boot.img")
    bad = compress(CPIO, Compression.LZ4_LEGACY)[:-9] + b"\x04\x22\x4d\x18junk"
    write_vendor_boot_image(VendorBootImage(4, "", (VendorRamdisk(CPIO + bad),)),
                            tmp_path / "vendor.img")
    with pytest.raises(InputError) as e:
        loader.prepare_run(tmp_path / "boot.img", tmp_path / "vendor.img",
                           busybox=Path("/nonexistent"))
    assert str(e.value).startswith(f"{tmp_path}/vendor.img + {tmp_path}/boot.img (initrd): ")


# --- 8, 11: files that are not regular ---

@pytest.mark.timeout(30)     # the bug: open() of a FIFO blocks for ever
@pytest.mark.parametrize("what", ["ko", "modules.dep", "symvers"])
def test_8_a_fifo_is_refused_never_opened(env, what):  # noqa: F811
    fifo = {"ko": env / "modules/fifo.ko", "modules.dep": env / "modules/modules.dep",
            "symvers": env / "fifo.symvers"}[what]
    os.mkfifo(fifo)
    if what == "modules.dep":
        with pytest.raises(InputError, match="not a regular file"):
            read_modules_dir(env / "modules")
        return
    symvers = fifo if what == "symvers" else env / "vmlinux.symvers"
    rc, _, err = run("check", "--modules-dir", env / "modules", "--symvers", symvers)
    assert rc == 2
    one_line_error(err, fifo, "not a regular file")


@pytest.mark.timeout(30)
def test_11_inspect_reads_what_the_header_says_never_the_whole_file(tmp_path, capsys):
    assert cli.main(["inspect", "/dev/zero"]) == 2
    assert capsys.readouterr().err == "bootverify: /dev/zero: not a regular file\n"
    huge = tmp_path / "huge.img"
    write_boot_image(BootImage(3, b"k" * 10, b"", "x"), huge)
    with open(huge, "r+b") as f:
        f.truncate(1 << 40)                  # sparse: 1 TiB that costs no disk
    assert cli.main(["inspect", str(huge)]) == 0
    assert "boot v3" in capsys.readouterr().out


# --- 9: the kernel banner ---

@pytest.mark.timeout(30)
def test_9_a_banner_repeated_without_newline_is_read_in_linear_time():
    image = fake_image()[:56 + 4] + b"Linux version 6.1 (" * 30000
    with pytest.raises(InputError, match="no 'Linux version' banner"):
        parse_kernel(image, "Image")


def test_9_a_release_that_is_not_utf8_is_read():
    """Found by benchmarks/fuzz.py: a banner byte flipped to 0xfe."""
    image = fake_image().replace(f"Linux version {RELEASE} ".encode(),
                                 f"Linux version \xfe{RELEASE[1:]} ".encode("latin-1"))
    assert parse_kernel(image, "Image").release.startswith("\ufffd")


# --- 10: qemu exits before the agent is ready ---

@pytest.mark.timeout(60)
def test_10_qemu_exiting_early_is_one_line():
    need(vm.QEMU)
    guest = boot.GuestBoot(fake_image(), CPIO, "console=ttyAMA0", RELEASE, "0")
    with vm.Workspace(guest) as ws, pytest.raises(InfraError) as e:
        vm.VirtualMachine(ws, vm.VMConfig(extra_args=("-no-such-option",))).start()
    assert "\n" not in str(e.value) and "qemu exited before the agent was ready" in str(e.value)


# --- 12: corrupt modules on pyelftools' path ---

def test_12_a_32_bit_module_whose_symtab_is_not_a_symbol_table_is_bad_input(tmp_path):
    """pyelftools' path (any ELF but 64-bit little-endian): .symtab with sh_type SHT_STRTAB."""
    gcc = need("gcc")
    (tmp_path / "m.c").write_text(module_source(Mod(modinfo=(("license", "GPL"),),
                                                    exports=(Exp("f", crc=1),))))
    subprocess.run([gcc, "-m32", "-c", "-o", "m.ko", "m.c"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    data = bytearray((tmp_path / "m.ko").read_bytes())
    shoff = int.from_bytes(data[0x20:0x24], "little")
    shentsize, shnum = (int.from_bytes(data[o:o + 2], "little") for o in (0x2e, 0x30))
    for i in range(shnum):
        at = shoff + i * shentsize + 4
        if int.from_bytes(data[at:at + 4], "little") == 2:          # SHT_SYMTAB
            data[at:at + 4] = (3).to_bytes(4, "little")             # SHT_STRTAB
    (tmp_path / "m.ko").write_bytes(data)
    with pytest.raises(InputError, match="corrupt ELF file"):
        modules_reader.read_module(tmp_path / "m.ko")


def test_12_a_label_past_its_section_is_bad_input(built, tmp_path):  # noqa: F811
    """A namespace label at 2**63: mmap.find() overflowed."""
    data = bytearray(built["provider"].read_bytes())
    elf = modules_reader._read_tables(bytes(data), "p.ko")
    symtab = elf.sections[".symtab"]
    strtab = elf.sections.get("__ksymtab_strings")
    assert strtab is not None
    for off in range(symtab.offset, symtab.offset + symtab.size, 24):
        if int.from_bytes(data[off + 6:off + 8], "little") == strtab.index:
            data[off + 8:off + 16] = (1 << 63).to_bytes(8, "little")
    (tmp_path / "p.ko").write_bytes(data)
    with pytest.raises(InputError, match="lies outside its section"):
        modules_reader.read_module(tmp_path / "p.ko")


# --- 14: reports stay valid ---

def test_14_junit_stays_well_formed_whatever_the_guest_prints():
    noise = "\x1b[31mOops\x00\x07\x1f: \udcff end"
    r = kmsg.classify(name="m", path="/lib/modules/m.ko", errno=-22, seconds=0.1,
                      kmsg=(f"3,1,1,-;m: {noise}",))
    [v] = crosscheck((), [r])
    out = io.StringIO()
    junit([v], out)
    root = ET.fromstring(out.getvalue().split("\n", 1)[1])
    assert "\\x1b[31mOops\\x00" in root.find("testcase/failure").text


# --- 17: boot.img v0-v2 alone ---

def test_17_a_v2_boot_img_runs_without_a_vendor_image(tmp_path, built):  # noqa: F811
    mkbootimg = need("mkbootimg")
    (tmp_path / "kernel").write_bytes(compress(fake_image(), Compression.GZIP))
    ramdisk = write_cpio([CpioEntry("lib", stat.S_IFDIR | 0o755),
                          CpioEntry("lib/modules", stat.S_IFDIR | 0o755),
                          CpioEntry("lib/modules/good.ko", stat.S_IFREG | 0o644,
                                    built["good"].read_bytes()),
                          CpioEntry("lib/modules/modules.load", stat.S_IFREG | 0o644,
                                    b"good.ko\n"),
                          CpioEntry("lib/modules/modules.dep", stat.S_IFREG | 0o644,
                                    b"good.ko:\n")])
    (tmp_path / "ramdisk").write_bytes(ramdisk)
    (tmp_path / "dtb").write_bytes(b"\xd0\x0d\xfe\xed" + bytes(60))
    subprocess.run([mkbootimg, "--header_version", "2", "--kernel", "kernel", "--ramdisk",
                    "ramdisk", "--dtb", "dtb", "--output", "boot.img"], cwd=tmp_path,
                   check=True, capture_output=True, timeout=120)
    h = boot.handoff(boot.read_images(tmp_path / "boot.img", None))
    plan = plan_for(h.ramdisk_tree(), h.kernel.release, h.kernel.image, h.bootconfig,
                    h.cmdline)
    assert plan.lines == ("/lib/modules/good.ko",)
    args = cli.parser().parse_args(["run", "--boot", str(tmp_path / "boot.img"),
                                    "--symvers", "s"])
    assert args.vendor_kernel_boot is None
    (tmp_path / "vmlinux.symvers").write_text(
        "0x4c41594f\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n"
        "0x00000001\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n")
    rc, out, err = run("check", "--boot", tmp_path / "boot.img", "--symvers",
                       tmp_path / "vmlinux.symvers", "--no-cache")
    assert rc == 0 and out.startswith("ANDROID: BOOTS") and "\ngood " in out, err


# --- 18, 20: signals ---

def _children(pid: int) -> list[int]:
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, timeout=30)
    return [int(x) for x in r.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


@pytest.mark.timeout(120)
def test_18_sigterm_during_the_parallel_parse_leaves_no_worker_and_no_temp_file(env):  # noqa: F811
    need("pgrep")
    many = env / "many"
    many.mkdir()
    for i in range(3000):
        os.link(env / "modules/good.ko", many / f"m{i}.ko")
    cmd = [*PYTHON, "check", "--modules-dir", str(many), "--symvers",
           str(env / "vmlinux.symvers")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "BOOTVERIFY_CACHE": str(env / "cache")})
    deadline = time.monotonic() + 60
    while len(workers := _children(p.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers, "no pool workers seen"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err == "bootverify: interrupted by SIGTERM\n", err
    time.sleep(0.5)
    assert not [w for w in workers if _alive(w)]
    assert not [x for x in (env / "cache").rglob(".*")]


@pytest.mark.timeout(60)
def test_18_sigterm_during_the_busybox_fetch_leaves_no_fetch_dir(env, built):  # noqa: F811
    """`run` with an empty cache fetches busybox-static (here an apt-get that hangs)."""
    write_boot_image(BootImage(4, compress(fake_image(), Compression.LZ4_LEGACY), b"", ""),
                     env / "boot.img")
    ramdisk = write_cpio([CpioEntry("lib/modules/good.ko", stat.S_IFREG | 0o644,
                                    built["good"].read_bytes()),
                          CpioEntry("lib/modules/modules.load", stat.S_IFREG | 0o644,
                                    b"good.ko\n")])
    write_vendor_boot_image(VendorBootImage(4, "", (VendorRamdisk(ramdisk),)),
                            env / "vendor.img")
    shim = env / "bin"
    shim.mkdir()
    (shim / "apt-get").write_text("#!/bin/sh\ntouch partial.deb\nexec sleep 30\n")
    (shim / "apt-get").chmod(0o755)
    p = subprocess.Popen([*PYTHON, "run", "--boot", str(env / "boot.img"),
                          "--vendor-kernel-boot", str(env / "vendor.img"), "--symvers",
                          str(env / "vmlinux.symvers"), "--console-log",
                          str(env / "console.log")],
                         env={**os.environ, "PATH": f"{shim}:{os.environ['PATH']}",
                              "BOOTVERIFY_CACHE": str(env / "cache")},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 40
    while not list((env / "cache").rglob("partial.deb")) and time.monotonic() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 143 and err == "bootverify: interrupted by SIGTERM\n", err
    assert list((env / "cache/debian").iterdir()) == []


def _catches(pid: int, sig: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return bool(int(caught, 16) >> (sig - 1) & 1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_20_a_signal_at_once_stops_even_a_background_job(env, sig, status):  # noqa: F811
    """A script's background job starts with SIGINT ignored; the signal comes as soon as
    bootverify can take it, during the imports."""
    p = subprocess.Popen(_check_cli(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                     signal.SIG_IGN))
    while not _catches(p.pid, sig):          # as soon as it can: before the imports
        time.sleep(0.001)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == status and "Traceback" not in err and err.count("\n") == 1, err

