"""The runtime half without qemu: kernel message classification (on console logs recorded from
real runs, tests/data/), the console protocol (against a host shell on a real pty), boot
assembly as a bootloader would, the agent's files, the load plan, and the runner's recovery
logic with a scripted stand-in for the VM."""

from __future__ import annotations

import dataclasses
import lzma
import re
import shutil
import stat
import struct
import subprocess
from collections.abc import Sequence
from importlib.resources import as_file
from pathlib import Path

import pexpect
import pytest
import zstandard
from craft import fake_image
from bootverify.cache import cache_dir
from bootverify.errors import InputError
from bootverify.android import BootMode
from bootverify.plan import Disposition, LoadPlan, ModuleSet, ModuleUnit, make_plan
from bootverify.plan.firststage import BootFacts
from bootverify.plan.libmodprobe import ParseKernelCmdlineOptions
from bootverify.readers.bootimg import (
    BootImage,
    RamdiskType,
    VendorBootImage,
    VendorRamdisk,
    write_boot_image,
    write_vendor_boot_image,
)
from bootverify.readers.kernel import parse_kernel
from bootverify.readers.modules import ModuleCompression
from bootverify.readers.modulesdir import ModulesDir
from bootverify.readers.ramdisk import (
    Compression,
    CpioEntry,
    compress,
    read_cpio,
    unpack_initrd,
    write_cpio,
)
from bootverify.runtime import agent, boot, console, kmsg, protocol, vm
from bootverify.runtime.kmsg import LinkProblem, Outcome
from bootverify.runtime.kmsg import LinkProblemKind as K
from bootverify.runtime.runner import Runner, classify_output, wave_outputs

DATA = Path(__file__).parent / "data"
LINUX_SOURCE = Path("/usr/src/linux-source-6.1.tar.xz")
# The first build makes nolibc's sysroot from linux-source-6.1: about a minute alone.
FINIT_BUILD_TIMEOUT = 600


# --- kmsg: the table ---

@pytest.mark.parametrize("line, kind, symbol, detail", [
    ("[    2.131] ipip: Unknown symbol ip_tunnel_rcv (err -2)", K.UNKNOWN_SYMBOL, "ip_tunnel_rcv",
     ""),
    ("nlmon: disagrees about version of symbol module_layout", K.DISAGREES_ABOUT_VERSION,
     "module_layout", ""),
    ("md5: disagrees about version of symbol crypto_register_shash", K.DISAGREES_ABOUT_VERSION,
     "crypto_register_shash", ""),
    ("vendor_latent: no symbol version for msleep", K.NO_SYMBOL_VERSION, "msleep", ""),
    ("old: no symbol version for module_layout", K.NO_SYMBOL_VERSION, "module_layout", ""),
    ("vendor_debug: module uses symbol (vendor_core_secret) from namespace VENDOR_CORE, but does "
     "not import it.", K.NAMESPACE_NOT_IMPORTED, "vendor_core_secret", "VENDOR_CORE"),
    ("foo: Protected symbol: rfkill_alloc (err -13)", K.PROTECTED_SYMBOL, "rfkill_alloc", ""),
    ("foo: Protected symbol rfkill_alloc (err -13)", K.PROTECTED_SYMBOL, "rfkill_alloc", ""),
    ("foo: Unknown symbol rfkill_alloc (err -13)", K.PROTECTED_SYMBOL, "rfkill_alloc", ""),
    ("foo: exports protected symbol rfkill_alloc", K.PROTECTED_SYMBOL, "rfkill_alloc", ""),
    ("foo: exports duplicate symbol crc7_be (owned by crc7)", K.DUPLICATE_EXPORT, "crc7_be",
     "crc7"),
    ("foo: version magic '6.1.0-54-arm64 SMP mod_unload aarch64' should be '6.1.0-56-arm64 SMP "
     "mod_unload modversions aarch64'", K.VERSION_MAGIC, "",
     "6.1.0-54-arm64 SMP mod_unload aarch64"),
    ("Invalid ELF header magic: != \x7fELF", K.INVALID_FORMAT, "",
     "Invalid ELF header magic: != \x7fELF"),
    ("foo: module has no symbols (stripped?)", K.INVALID_FORMAT, "",
     "module has no symbols (stripped?)"),
    ("Loading of unsigned module is rejected", K.SIGNATURE_REJECTED, "", "unsigned module"),
    # 6.12's ELF checks (6.1: "No module found in object")
    ("foo: No module found in object", K.INVALID_FORMAT, "", "No module found in object"),
    ("module foo: .gnu.linkonce.this_module section size must match the kernel's built struct "
     "module size at run time", K.INVALID_FORMAT, "", ".gnu.linkonce.this_module section size "
     "must match the kernel's built struct module size at run time"),
    ("Invalid module architecture in ELF header: 62", K.INVALID_FORMAT, "",
     "Invalid module architecture in ELF header: 62"),
    ("Only one .modinfo section must exist.", K.INVALID_FORMAT, "",
     "Only one .modinfo section must exist."),
    # the in-kernel decompressor (MODULE_INIT_COMPRESSED_FILE)
    ("[    3.1] not an xz compressed module", K.INVALID_FORMAT, "", "not an xz compressed module"),
    ("decompression failed with status 6", K.INVALID_FORMAT, "",
     "decompression failed with status 6"),
    ("ZSTD-compressed data has an incomplete frame header", K.INVALID_FORMAT, "",
     "ZSTD-compressed data has an incomplete frame header"),
])
def test_link_messages(line: str, kind: K, symbol: str, detail: str) -> None:
    m = kmsg.match_line(line)
    assert m is not None and m.message.kind is kind
    assert (m.symbol, m.detail) == (symbol, detail)


def test_every_row_names_its_source_and_errnos_are_the_generic_table() -> None:
    assert all(row.source for row in kmsg.KERNEL_MESSAGES)
    assert [kmsg.errno_name(n) for n in (2, 8, 13, 17, 19, 22, 129, 517)] == [
        "ENOENT", "ENOEXEC", "EACCES", "EEXIST", "ENODEV", "EINVAL", "EKEYREJECTED", "EPROBE_DEFER"]
    assert kmsg.strerror(19) == "No such device"
    assert [o.value for o in Outcome] == ["loaded", "link-error", "init-error", "hung", "crashed",
                                          "skipped", "not-found", "unlisted"]


@pytest.mark.parametrize("line, crash", [
    ("[   12.0] Internal error: Oops: 0000000096000005 [#1] SMP", True),
    ("Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000", True),
    ("kernel BUG at drivers/foo.c:12!", True),
    # the kernel reports it and goes on: a `bug` finding, not a crash (the loader's death is)
    ("BUG: scheduling while atomic: insmod/99/0x00000002", False),
    ("Kernel panic - not syncing: vendor_panic: watchdog did not answer", True),
    ("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:99]", False),
    ("WARNING: CPU: 0 PID: 1 at lib/foo.c:1 foo+0x0/0x4", False),
    ("INFO: task finit:71 blocked for more than 10 seconds.", False),
])
def test_crash_lines(line: str, crash: bool) -> None:
    assert bool(kmsg.crash_lines([line])) is crash


F = kmsg.FindingClass


# One real line per finding class, each from a log where a kernel printed it: the sample images'
# seeded modules (tests/data/samples-findings.console.log) and public bug reports.
@pytest.mark.parametrize("line, finding, source", [
    ("[   24.750967] BUG: KASAN: slab-out-of-bounds in __build_skb_around+0xc4/0x100", F.KASAN,
     "github.com/dentproject/dentOS/issues/11 (arm64, 5.12)"),
    ("[215551.656059] BUG: KFENCE: use-after-free write in down_write+0x15/0x40", F.KFENCE,
     "github.com/NVIDIA/gdrcopy/pull/332"),
    ("BUG: KCSAN: data-race in queued_spin_lock_slowpath / queued_spin_lock_slowpath", F.KCSAN,
     "github.com/linuxppc/issues/issues/457 (6.2)"),
    ("[    5.288676] UBSAN: array-index-out-of-bounds in /build/linux-K8MOYl/linux-6.5.4/drivers/"
     "scsi/mpt3sas/mpt3sas_scsih.c:4667:12", F.UBSAN, "github.com/pop-os/linux/issues/285"),
    ("[  120.059914] WARNING: possible circular locking dependency detected", F.LOCKDEP,
     "github.com/lkrg-org/lkrg/issues/47 (during insmod, 5.4)"),
    ("[  111.566327] [ BUG: Invalid wait context ]", F.LOCKDEP,
     "github.com/koverstreet/bcachefs/issues/899 (arm64, 6.15)"),
    ("[   89.892668] rcu: INFO: rcu_sched self-detected stall on CPU", F.RCU_STALL,
     "github.com/Evlers/linux_kernel_t113/issues/2"),
    ("[ 1761.536806] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:", F.RCU_STALL,
     "github.com/amazonlinux/amazon-linux-2023/issues/1037 (arm64, 6.12)"),
    ("[  125.052640] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [(udev-worker):371]",
     F.SOFT_LOCKUP, "github.com/lkrg-org/lkrg/issues/209 (6.6)"),
    ("[  708.606610] BUG: sleeping function called from invalid context at "
     "kernel/locking/spinlock_rt.c:48", F.BUG,
     "github.com/koverstreet/bcachefs/issues/893 (arm64, 6.15)"),
    ("BUG: scheduling while atomic: rmmod/5983/0x00000002", F.BUG,
     "github.com/openzfs/zfs/issues/771"),
    ("kernel BUG at mm/vmalloc.c:1638!", F.BUG,
     "github.com/ClangBuiltLinux/linux/issues/1868 (arm64, linux-next)"),
    ("Direct firmware load for facetimehd/1871_01XX.dat failed with error -2", F.FIRMWARE,
     "github.com/patjak/facetimehd/issues/39"),
    ("mt76x2u: probe of 2-1:1.0 failed with error -5", F.PROBE,
     "github.com/openwrt/mt76/issues/382 (the 6.1 wording)"),
    ("[   15.233885] tc956x_pci-eth 0001:05:00.0: probe with driver tc956x_pci-eth failed with "
     "error -1", F.PROBE, "github.com/qualcomm-linux/kernel/issues/1101 (the later wording)"),
    ("platform MX98357A:00: deferred probe pending", F.DEFERRED_PROBE,
     "github.com/kernelci/kernelci-project/issues/218"),
    # none of these is a finding
    ("[    0.000000] WARNING: 'bootconfig' found on the kernel command line but CONFIG_BOOT_CONFIG "
     "is not set.", None, "debian-6.1.0-56.console.log"),
    ("[    0.000000] psci: PSCIv1.1 detected in firmware.", None, "debian-6.1.0-56.console.log"),
    ("[    0.276116] node 0 deferred pages initialised in 36ms", None,
     "debian-6.1.0-56.console.log"),
    ("vendor_hang: waiting for firmware handshake", None, "samples-gki.console.log"),
    ("vendor_debug: module uses symbol (vendor_core_debug_dump) from namespace "
     "VENDOR_CORE_INTERNAL, but does not import it.", None, "samples-gki.console.log"),
])
def test_finding_lines(line: str, finding: kmsg.FindingClass | None, source: str) -> None:
    m = kmsg.match_line(line)
    assert (m.message.finding if m else None) is finding, source
    assert not kmsg.crash_lines([line]) or line.startswith("kernel BUG at")
    assert [f.kind for f in kmsg.findings([line])] == ([finding] if finding else [])


def test_every_finding_class_has_a_row_and_a_source() -> None:
    rows = [r for r in kmsg.KERNEL_MESSAGES if r.finding]
    assert {r.finding for r in rows} == set(F)
    assert kmsg.DEFAULT_FAIL_ON == {F.BUG, F.KASAN, F.KFENCE, F.UBSAN, F.KCSAN, F.LOCKDEP}


# A KASAN report as a module printed it (github.com/tempesta-tech/tempesta/issues/2201, 6.x,
# shortened), between two lines made up for the test (what the module itself might print).
KASAN_REPORT = """[ 2759.540100] tempesta_tls: handshake done
[ 2759.540327] ==================================================================
[ 2759.542176] BUG: KASAN: slab-out-of-bounds in ttls_hs_done+0x16/0x30 [tempesta_tls]
[ 2759.543552] Read of size 4 at addr ffff8881d4332414 by task swapper/22/0
[ 2759.544749]
[ 2759.546462] Allocated by task 0:
[ 2759.547681] The buggy address belongs to the object at ffff8881d4331f50
[ 2759.553570] Memory state around the buggy address:
[ 2759.557040] >ffff8881d4332400: 00 fc fc fc fc fc fc fc fc fc fc fc fc fc fc fc
[ 2759.558324]                          ^
[ 2759.561688] ==================================================================
[ 2759.562000] tempesta_tls: ready""".splitlines()


def test_a_report_is_the_findings_context() -> None:
    (f,) = kmsg.findings(KASAN_REPORT)
    assert f.kind is F.KASAN and f.line == KASAN_REPORT[2]
    assert f.context == tuple(KASAN_REPORT[1:-1])       # from rule to rule, nothing else
    firmware = "vendor_fw vendor_fw: Direct firmware load for a.bin failed with error -2"
    assert kmsg.findings([firmware, *KASAN_REPORT])[0] == kmsg.Finding(F.FIRMWARE, firmware, ())
    # A report without an end (hung task, lockdep) stops at the next finding or CONTEXT_LINES.
    hung = ["INFO: task insmod:70 blocked for more than 10 seconds.",
            *(f" frame{i}+0x0/0x4" for i in range(100))]
    (f,) = kmsg.findings(hung)
    assert len(f.context) == kmsg.CONTEXT_LINES and f.context[0] == hung[0]
    two = kmsg.findings(hung[:5] + KASAN_REPORT)      # ... or before the next report's rule
    assert [x.kind for x in two] == [F.HUNG_TASK, F.KASAN]
    assert two[0].context == (*hung[:5], KASAN_REPORT[0]) and two[1].context[0] == KASAN_REPORT[1]


def test_findings_leave_the_outcome_alone() -> None:
    r = kmsg.classify(name="tempesta_tls", path="/lib/modules/tempesta_tls.ko", errno=0,
                      kmsg=KASAN_REPORT, seconds=0.1)
    assert r.outcome is Outcome.LOADED and [f.kind for f in r.findings] == [F.KASAN]
    r = kmsg.classify(name="m", path="/m.ko", errno=None, kmsg=KASAN_REPORT, seconds=1,
                      killed_by=11)
    assert r.outcome is Outcome.CRASHED and r.findings


def test_specific_reason_wins_over_the_generic_line() -> None:
    lines = ["md5: disagrees about version of symbol crypto_register_shash",
             "md5: Unknown symbol crypto_register_shash (err -22)",
             "md5: Unknown symbol other_sym (err -2)",
             "other: Unknown symbol not_mine (err -2)"]
    assert kmsg.link_problems(lines, "md5") == (
        LinkProblem(K.DISAGREES_ABOUT_VERSION, "crypto_register_shash"),
        LinkProblem(K.UNKNOWN_SYMBOL, "other_sym"))
    # Debian's 6.1 check_version(): "no symbol version for" is the specific reason of an err -22
    assert kmsg.link_problems(["vendor_latent: no symbol version for msleep",
                               "vendor_latent: Unknown symbol msleep (err -22)"],
                              "vendor_latent") == (LinkProblem(K.NO_SYMBOL_VERSION, "msleep"),)
    # the generic line first (busybox retries print it twice), then the specific one
    assert kmsg.link_problems(lines[1:2] + lines[:2], "md5") == (
        LinkProblem(K.DISAGREES_ABOUT_VERSION, "crypto_register_shash"),)


def test_classify_rules() -> None:
    def c(**kw: object) -> kmsg.RuntimeResult:
        base = dict(name="m", path="/lib/modules/m.ko", errno=0, kmsg=(), seconds=0.1)
        return kmsg.classify(**{**base, **kw})  # type: ignore[arg-type]

    assert c().outcome is Outcome.LOADED and c().modprobe_message == \
        "Loaded kernel module /lib/modules/m.ko"
    assert c(errno=17).outcome is Outcome.LOADED
    r = c(errno=2, kmsg=("m: Unknown symbol msleep (err -2)",))
    assert (r.outcome, r.errno, r.problems) == (Outcome.LINK_ERROR, 2,
                                                (LinkProblem(K.UNKNOWN_SYMBOL, "msleep"),))
    r = c(errno=2, params="a=1")       # ENOENT from init (firmware missing): no link message
    assert (r.outcome, r.errno_name) == (Outcome.INIT_ERROR, "ENOENT")
    assert r.modprobe_message == \
        "Failed to insmod '/lib/modules/m.ko' with args 'a=1': No such file or directory"
    assert c(errno=None, timed_out=True).outcome is Outcome.HUNG
    assert c(errno=None, vm_died=True).outcome is Outcome.CRASHED
    assert c(errno=None, killed_by=11).outcome is Outcome.CRASHED
    r = c(errno=0, kmsg=("Internal error: Oops: 96000005 [#1] SMP",))
    assert (r.outcome, r.reason) == (Outcome.CRASHED, "Internal error: Oops: 96000005 [#1] SMP")


# --- recorded runs (tests/data/README.md says how they were recorded) ---

def replay(log: Path) -> dict[str, kmsg.RuntimeResult]:
    """Classify every module of a recorded console log as the runner does."""
    text = log.read_text()
    nonce = protocol.nonce_of(text)
    assert nonce
    plan = {int(m.group(1)): m.group(2).split(" ", 1)
            for m in re.finditer(r"^=== bootverify: plan (\d+): (.*)$", text, re.MULTILINE)}
    out: dict[str, kmsg.RuntimeResult] = {}
    last = 0
    for x in console.transcript(text, nonce):
        if x.module is None and (x.status is not None or not x.lines):
            continue                    # a command's tail (restore, end of a batch)
        line = x.module if x.module is not None else last + 1
        last = line
        path, *params = plan[line]
        u = ModuleUnit("vendor_ramdisk", Path(path).stem.replace("-", "_"), path,
                       params[0] if params else "", ())
        o = protocol.parse_load_output(x.lines, x.result)
        if x.module is None:            # the log goes on with the next boot: hung or died
            died = bool(kmsg.crash_lines(x.lines))
            out[u.name] = kmsg.classify(name=u.name, path=path, errno=None,
                                        kmsg=o.kmsg + o.console, seconds=0,
                                        timed_out=not died, vm_died=died)
        else:
            out[u.name] = classify_output(u, o, 0.0)
    return out


def test_recorded_debian_run() -> None:
    r = replay(DATA / "debian-6.1.0-56.console.log")
    assert {n: x.outcome.value for n, x in r.items()} == {
        "dummy": "loaded", "crc7": "loaded", "ip_tunnel": "loaded", "tunnel4": "loaded",
        "ipip": "loaded", "nlmon": "link-error", "cppc_cpufreq": "init-error",
        "test_bpf": "hung", "vxlan": "link-error", "veth": "loaded", "cdrom": "loaded",
        "isofs": "loaded"}
    assert r["nlmon"].problems == (LinkProblem(K.DISAGREES_ABOUT_VERSION, "module_layout"),)
    assert r["nlmon"].errno_name == "ENOEXEC"
    assert r["cppc_cpufreq"].errno_name == "ENODEV"
    assert len(r["vxlan"].problems) == 11 and r["vxlan"].errno_name == "ENOENT"
    assert {p.kind for p in r["vxlan"].problems} == {K.UNKNOWN_SYMBOL}
    assert any("unknown parameter 'bogus' ignored" in line for line in r["crc7"].kmsg)
    assert 0 < r["dummy"].seconds < 1
    assert any("test_bpf: #" in line for line in r["test_bpf"].kmsg)   # the watchdog's drain
    assert r["test_bpf"].seconds == pytest.approx(5.0, abs=0.5)
    # its boot WARNING (bootconfig on the command line) is not a WARN block, and came before
    assert not any(x.findings for x in r.values())


SAMPLES_LOG = DATA / "samples-gki.console.log"


@pytest.mark.skipif(not SAMPLES_LOG.exists(), reason="no recorded sample run")
def test_recorded_samples_run() -> None:
    r = replay(SAMPLES_LOG)
    assert r["vendor_nodev"].outcome is Outcome.INIT_ERROR
    assert r["vendor_nodev"].errno_name == "ENODEV"
    assert r["vendor_oops"].outcome is Outcome.CRASHED
    assert r["vendor_hang"].outcome is Outcome.HUNG
    assert r["vendor_panic"].outcome is Outcome.CRASHED
    assert r["vendor_backlight"].problems == (LinkProblem(K.UNKNOWN_SYMBOL, "msleep"),)
    assert r["vendor_debug"].problems[0].kind is K.NAMESPACE_NOT_IMPORTED
    assert r["vendor_hash"].problems[0].kind is K.DISAGREES_ABOUT_VERSION
    # an oops or a panic is the outcome, not a finding; the hang was cut at 12 s, before the
    # hung-task detector spoke
    assert not any(x.findings for x in r.values())


def test_recorded_findings_run() -> None:
    """The seeded findings as the kernel logged them (module timeout 25 s: the hung-task
    detector reports vendor_hang too), each attributed to the module whose load it came in."""
    r = replay(DATA / "samples-findings.console.log")
    assert {n: [f.kind.value for f in x.findings] for n, x in r.items() if x.findings} == {
        "vendor_hang": ["hung-task"], "vendor_warn": ["warning"],
        "vendor_fw": ["firmware", "firmware"], "vendor_probe": ["probe"]}
    assert [r[n].outcome for n in ("vendor_hang", "vendor_warn", "vendor_fw", "vendor_probe")] \
        == [Outcome.HUNG, Outcome.LOADED, Outcome.LOADED, Outcome.LOADED]
    (warn,) = r["vendor_warn"].findings
    assert warn.line.endswith("vendor_warn.c:18 vendor_warn_init+0x14/0x1000 [vendor_warn]")
    assert warn.context[0].endswith("] ------------[ cut here ]------------")
    assert warn.context[-1].endswith("] ---[ end trace 0000000000000000 ]---")
    assert "Call trace:" in "\n".join(warn.context)
    assert [kmsg.message_text(f.line) for f in r["vendor_fw"].findings] == [
        "vendor_fw vendor_fw: firmware: failed to load vendor/vendor_fw.bin (-2)",
        "vendor_fw vendor_fw: Direct firmware load for vendor/vendor_fw.bin failed with error -2"]
    assert kmsg.message_text(r["vendor_probe"].findings[0].line) == \
        "vendor_probe: probe of vendor_probe failed with error -110"
    (hung,) = r["vendor_hang"].findings
    assert kmsg.message_text(hung.line) == "INFO: task finit:37 blocked for more than 10 seconds."
    assert any("vendor_hang_init" in line for line in hung.context)


# --- console protocol, against a host shell on a real pty ---

def _agent_functions() -> str:
    """bv_begin / bv_end exactly as the agent defines them, and its read-eval loop."""
    script = agent.INIT_SCRIPT
    keep = [line for line in script.splitlines()
            if line.startswith(("M=", "bv_begin()", "bv_end()"))]
    loop = script[script.index("printf '%s:ready"):]
    return "\n".join(keep) + "\n" + loop


@pytest.fixture
def shell_console(tmp_path: Path):  # type: ignore[no-untyped-def]
    sh = shutil.which("busybox") or shutil.which("dash") or "/bin/sh"
    rc = tmp_path / "agent.sh"
    rc.write_text(_agent_functions())
    child = pexpect.spawn(sh, [str(rc)], env={"bv_nonce": "c0ffee", "PATH": "/usr/bin:/bin"},
                          encoding="utf-8", timeout=10)       # echo stays ON: the worst case
    con = console.Console(child, "c0ffee")
    con.wait_ready(10)
    yield con
    child.close(force=True)


def test_console_runs_commands_and_ignores_its_own_echo(shell_console: console.Console) -> None:
    r = shell_console.run("echo hello; echo 'bv_end 99 0'; false", 10)
    assert (r.status, r.lines) == (1, ("hello", "bv_end 99 0"))
    r = shell_console.run(lambda seq: f"echo seq={seq}", 10)
    assert r.lines == (f"seq={r.seq}",) and r.status == 0


def test_console_survives_interleaved_lines(shell_console: console.Console) -> None:
    noise = "(for i in 1 2 3; do echo '[    1.0] kernel noise'; done) & echo out; wait"
    r = shell_console.run(noise, 10)
    assert r.status == 0 and "out" in r.lines and r.lines.count("[    1.0] kernel noise") == 3


def test_console_module_marks(shell_console: console.Console) -> None:
    seq = shell_console.start("for i in 1 2 3; do echo out$i; printf '%s:M%s:finit:-%s:9\\n' "
                              "\"$M\" $i $i; done; true")
    marks = [shell_console.wait_mark(seq, 10) for _ in range(4)]
    assert [(m.line, m.status, m.result, m.lines) for m in marks] == [
        (1, None, "finit:-1:9", ("out1",)), (2, None, "finit:-2:9", ("out2",)),
        (3, None, "finit:-3:9", ("out3",)), (None, 0, "", ())]


def test_console_timeout_and_death(shell_console: console.Console) -> None:
    with pytest.raises(console.CommandTimeout) as e:
        shell_console.run("echo started; sleep 5", 0.5)
    assert e.value.lines == ("started",)
    shell_console.child.sendline("")          # let the sleep finish, then exit the shell
    with pytest.raises(console.GuestDied):
        shell_console.run("exit 3", 10)


def test_protocol_lines_are_what_the_agent_reads_and_prints() -> None:
    """The host's side of the wire, byte for byte (the agent's shell and finit are not Python)."""
    assert protocol.command_line(7, "uname -r") == "bv_begin 7; uname -r; bv_end 7 $?"
    assert protocol.run_command(3, 0, 5000) == "bv_run 3 0 5000"
    assert protocol.restore_command(5000, [1, 12]) == "bv_restore 5000 1 12"
    assert protocol.restore_failures(["x", "restore failed: 12"]) == [12]
    m = protocol.Markers("c0ffee")
    assert m.module_line(3, "finit:-2:41") == "@@bvc0ffee:M3:finit:-2:41"
    assert re.fullmatch(m.module(), "@@bvc0ffee:M3:finit:-2:41\r\r\n")
    assert re.fullmatch(m.end(7), "@@bvc0ffee:7:E:1\r\n")
    assert re.fullmatch(m.ready(), "@@bvc0ffee:ready\n")
    assert [protocol.RESULT.match(f"{x}:0:1")["label"] for x in protocol.Label] == \
        ["finit", "open", "killed", "timeout"]
    assert protocol.nonce_of("... rdinit=/bootverify/busybox bv_nonce=c0ffee -- sh") == "c0ffee"


def test_transcript_of_a_recorded_log() -> None:
    text = (DATA / "debian-6.1.0-56.console.log").read_text()
    ex = console.transcript(text, protocol.nonce_of(text) or "")
    assert [x.module for x in ex if x.module is not None] == list(range(1, 13))
    bpf = next(x for x in ex if x.module == 8)              # test_bpf: the watchdog's report
    assert bpf.result.startswith("timeout:0:") and "test_bpf: #0 " in bpf.lines[0]
    # the batch that held it never ended: the VM was killed, the log goes on with boot 2
    assert (ex[8].seq, ex[8].module, ex[8].status) == (1, None, None)
    assert [x.seq for x in ex if x.module is None] == [1, 2, 3]   # run, restore, run


# --- boot: as a bootloader would ---

def test_bootconfig_trailer() -> None:
    data = b"androidboot.hardware = x\n"
    t = boot.bootconfig_with_trailer(data)
    assert t[:len(data)] == data and t.endswith(b"#BOOTCONFIG\n")
    size, csum = struct.unpack_from("<II", t, len(data))
    assert (size, csum) == (len(data), sum(data))
    assert boot.bootconfig_with_trailer(t) == t and boot.bootconfig_with_trailer(b"") == b""


def test_modules_the_kernel_cannot_decompress_are_decompressed_on_the_host() -> None:
    """Only the formats the kernel does not decompress itself; same path, the .ko inside."""
    elf = b"\x7fELF" + bytes(60)
    entries = [CpioEntry("lib/modules/a.ko.xz", stat.S_IFREG | 0o644, lzma.compress(elf)),
               CpioEntry("lib/modules/b.ko.zst", stat.S_IFREG | 0o644,
                         zstandard.ZstdCompressor().compress(elf)),
               CpioEntry("lib/modules/c.ko", stat.S_IFREG | 0o644, elf),
               CpioEntry("lib/modules/modules.dep", stat.S_IFREG | 0o644, b"a.ko.xz:\n")]
    for takes, decompressed in ((ModuleCompression.XZ, ["lib/modules/b.ko.zst"]),
                                (None, ["lib/modules/a.ko.xz", "lib/modules/b.ko.zst"])):
        kernel = dataclasses.replace(parse_kernel(fake_image(), "Image"), module_decompress=takes)
        fixed = boot.modules_for_kernel(kernel, entries)
        assert [e.name for e in fixed.entries] == decompressed
        assert all(e.data == elf and e.mode == stat.S_IFREG | 0o644 for e in fixed.entries)
        assert len(fixed.notes) == len(decompressed)
        assert all("decompressed on the host" in n for n in fixed.notes)


def _images(tmp: Path, version: int = 4, kernel: bytes | None = None,
            bootconfig: bytes = b"a = 1\n") -> tuple[Path, Path]:
    kernel = kernel or compress(fake_image(), Compression.LZ4_LEGACY)
    generic = compress(write_cpio([CpioEntry("init", stat.S_IFREG | 0o755, b"generic"),
                                   CpioEntry("shared", stat.S_IFREG | 0o644, b"generic")]),
                       Compression.LZ4_LEGACY)
    frag1 = compress(write_cpio([CpioEntry("shared", stat.S_IFREG | 0o644, b"vendor1"),
                                 CpioEntry("one", stat.S_IFREG | 0o644, b"1")]), Compression.GZIP)
    frag2 = compress(write_cpio([CpioEntry("two", stat.S_IFREG | 0o644, b"2"),
                                 CpioEntry("one", stat.S_IFREG | 0o644, b"2")]),
                     Compression.LZ4_LEGACY)
    write_boot_image(BootImage(version, kernel, generic, "boot=1"), tmp / "boot.img")
    ramdisks = (VendorRamdisk(frag1, RamdiskType.PLATFORM, "p"), VendorRamdisk(frag2,
                RamdiskType.DLKM, "d")) if version == 4 else (VendorRamdisk(frag1 + frag2),)
    write_vendor_boot_image(VendorBootImage(version, "vendor=1", ramdisks,
                                            bootconfig=bootconfig if version == 4 else b""),
                            tmp / "vendor_boot.img")
    return tmp / "boot.img", tmp / "vendor_boot.img"


@pytest.mark.parametrize("version", [3, 4])
def test_guest_boot_is_what_a_bootloader_hands_over(tmp_path: Path, version: int) -> None:
    b, v = _images(tmp_path, version)
    images = boot.read_images(b, v)
    h = boot.handoff(images)
    g = boot.prepare(h, boot.guest_cmdline(h, "abc123"), "abc123", busybox=b"\x7fELF-busybox")
    assert g.kernel == fake_image() and g.release == h.kernel.release
    # cmdline: boot, vendor, bootverify's, and the agent's arguments last
    assert g.cmdline.startswith("boot=1 vendor=1 console=ttyAMA0 ")
    assert g.cmdline.endswith(" bv_nonce=abc123" + (" bootconfig" if version == 4 else "")
                              + " -- sh /bootverify/init")
    # initrd: vendor fragments, generic ramdisk, zeros, overlay, bootconfig + trailer
    bc = boot.bootconfig_with_trailer(b"a = 1\n") if version == 4 else b""
    assert g.initrd.endswith(bc)
    assert g.initrd.startswith(images.vendor.ramdisk + images.boot.ramdisk)  # type: ignore
    tree = unpack_initrd(g.initrd[:len(g.initrd) - len(bc)], "initrd")
    assert tree["shared"].data == b"generic"          # the generic ramdisk comes after vendor's
    assert tree["one"].data == b"2"                   # fragments in table order
    assert tree["init"].data == b"generic"            # the agent does not replace /init
    assert tree["bootverify/busybox"].data == b"\x7fELF-busybox"
    assert tree["dev/console"].rdevmajor == 5
    # The overlay's cpio starts 4-aligned after at least 4 zero bytes (init/initramfs.c
    # unpack_to_rootfs skips zeros between archives; a header must start 4-aligned).
    overlay_at = g.initrd.index(b"070701", len(h.ramdisk))
    gap = g.initrd[len(h.ramdisk):overlay_at]
    assert overlay_at % 4 == 0 and len(gap) >= 4 and gap == bytes(len(gap))


def test_read_images_rejects_mismatches(tmp_path: Path) -> None:
    b, v = _images(tmp_path)
    with pytest.raises(InputError, match="vendor boot image; expected a boot.img"):
        boot.read_images(v, b)
    with pytest.raises(InputError, match="needs a vendor boot image"):
        boot.read_images(b, None)


def test_dlkm_dirs_go_where_android_mounts_them(tmp_path: Path) -> None:
    d = tmp_path / "sd"
    d.mkdir()
    (d / "x.ko").write_bytes(b"\x7fELF")
    (d / "modules.load").write_text("x.ko\n")
    names = {e.name for e in boot.dlkm_entries({"system_dlkm": d})}
    assert {"system_dlkm", "system_dlkm/lib/modules", "system_dlkm/lib/modules/x.ko",
            "system_dlkm/lib/modules/modules.load"} <= names


# --- agent ---

def test_finit_is_a_static_aarch64_elf() -> None:
    agent.check_static_aarch64(agent.FINIT_BINARY, "finit")


@pytest.mark.timeout(FINIT_BUILD_TIMEOUT + 60)
def test_finit_is_built_from_its_source(tmp_path: Path) -> None:
    """guest/Makefile makes the shipped bytes of guest/finit.c with the toolchain it records."""
    for tool in ("aarch64-linux-gnu-gcc", "make"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed: finit cannot be rebuilt")
    if not LINUX_SOURCE.exists():
        pytest.skip(f"{LINUX_SOURCE} (linux-source-6.1, for nolibc) not installed")
    with as_file(agent.GUEST) as guest:
        make = ["make", "-C", str(guest), f"OUT={tmp_path}", f"CACHE={cache_dir()}"]
        subprocess.run([*make, "toolchain"], check=True, capture_output=True, timeout=60)
        shipped, installed = ((d / "finit.toolchain").read_text() for d in (guest, tmp_path))
        if installed != shipped:
            pytest.skip("finit was built with another toolchain, the bytes may differ: "
                        + "; ".join(f"{a} (installed: {b})" for a, b in
                                    zip(shipped.splitlines(), installed.splitlines(),
                                        strict=False) if a != b))
        r = subprocess.run(make, capture_output=True, text=True, timeout=FINIT_BUILD_TIMEOUT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (tmp_path / "finit").read_bytes() == agent.FINIT_BINARY


def test_busybox_must_be_static_aarch64(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not aarch64|not an ELF|PT_INTERP"):
        agent.read_busybox(Path("/bin/sh"))
    (tmp_path / "bb").write_bytes(b"#!/bin/sh\n")
    with pytest.raises(InputError, match="not an ELF"):
        agent.read_busybox(tmp_path / "bb")


def test_overlay_members() -> None:
    entries, _ = read_cpio(agent.build_overlay(b"BB"), "overlay")
    by = {e.name: e for e in entries}
    assert by["bootverify/init"].data.decode() == agent.INIT_SCRIPT
    assert by["bootverify/bin/dmesg"].is_symlink and by["bootverify/bin/sh"].data == b"../busybox"
    assert stat.S_ISCHR(by["dev/kmsg"].mode)
    # the marker prefix appears in the script only split from the nonce
    assert "@@bv$bv_nonce" in agent.INIT_SCRIPT and "@@bv:" not in agent.INIT_SCRIPT


# --- the load plan ---

def _set(origin: str, guest_dir: str, files: Sequence[str], load: Sequence[str],
         dep: dict[str, tuple[str, ...]], blocklist: Sequence[str] = (),
         options: dict[str, str] | None = None) -> ModuleSet:
    return ModuleSet(origin, guest_dir, frozenset(files), ModulesDir(
        Path("/nonexistent"), tuple(load), dep, frozenset(blocklist), options or {}))


def test_plan_follows_libmodprobe() -> None:
    vr = _set("vendor_ramdisk", "/lib/modules",
              ["a.ko", "b.ko", "c.ko", "d-x.ko", "unlisted.ko", "nodep.ko"],
              ["a.ko", "blocked.ko", "nodep.ko", "gone.ko", "c.ko"],
              {"a.ko": ("b.ko", "c.ko"), "b.ko": ("c.ko",), "c.ko": (), "d-x.ko": (),
               "blocked.ko": (), "x.ko": ("/vendor/lib/modules/d-x.ko", "missing.ko")},
              blocklist=["blocked"], options={"a": "p=1"})
    vd = _set("vendor_dlkm", "/vendor_dlkm/lib/modules", ["v.ko"], ["v.ko"],
              {"/vendor/lib/modules/v.ko": ("/lib/modules/b.ko",)})
    plan = make_plan([vr, vd], cmdline="a.q=2 console=ttyAMA0 x.y=\"1 2\"")
    assert plan.order == (("vendor_ramdisk", "a"), ("vendor_ramdisk", "blocked"),
                          ("vendor_ramdisk", "nodep"), ("vendor_ramdisk", "gone"),
                          ("vendor_ramdisk", "c"), ("vendor_dlkm", "v"))
    a = plan.units[("vendor_ramdisk", "a")]
    assert a.path == "/lib/modules/a.ko" and a.params == "p=1 q=2"
    assert a.deps == (("vendor_ramdisk", "c"), ("vendor_ramdisk", "b"))   # reverse dep order
    assert plan.units[("vendor_ramdisk", "blocked")].blocklisted
    # issue 9: a listed module missing from modules.dep is not loadable (libmodprobe), even
    # with its .ko there; it used to be loaded without dependencies
    nodep = plan.units[("vendor_ramdisk", "nodep")]
    assert (nodep.disposition, nodep.path) == (Disposition.NOT_FOUND, "/lib/modules/nodep.ko")
    assert "not in /lib/modules/modules.dep" in nodep.note
    gone = plan.units[("vendor_ramdisk", "gone")]
    assert (gone.disposition, gone.path) == (Disposition.NOT_FOUND, "")
    assert {k[1] for k, u in plan.units.items() if u.disposition is Disposition.UNLISTED} \
        == {"d_x", "unlisted"}
    v = plan.units[("vendor_dlkm", "v")]
    assert v.path == "/vendor_dlkm/lib/modules/v.ko"
    assert v.deps == (("vendor_ramdisk", "b"),)     # an absolute path into another set
    assert ParseKernelCmdlineOptions('a.q=2 b.c="x y" noval.k junk') == {"a": "q=2",
                                                                          "b": 'c="x y"'}


def test_parse_load_output() -> None:
    lines = ["[    2.141238] nlmon: disagrees about version of symbol module_layout",
             "4,242,3474532,-;nlmon: disagrees about version of symbol module_layout",
             " SUBSYSTEM=module",
             "6,243,3474600,c;second",
             "15,244,3474700,-;bootverify: loaded"]     # finit's, ending the window: dropped
    o = protocol.parse_load_output(lines, "finit:-8:4255")
    assert (o.label, o.value, o.seconds) == ("finit", -8, 0.004255)
    assert o.kmsg == ("[    3.474532] nlmon: disagrees about version of symbol module_layout",
                      "[    3.474600] second")
    assert o.console == (lines[0],)
    u = ModuleUnit("vendor_ramdisk", "nlmon", "/lib/modules/nlmon.ko", "", ())
    r = classify_output(u, o, 0.1)
    assert (r.outcome, r.errno_name, r.seconds) == (Outcome.LINK_ERROR, "ENOEXEC", 0.004255)
    killed = protocol.parse_load_output(["6,1,1,-;Internal error: Oops: 96000005 [#1] SMP"],
                                      "killed:11:2000")
    assert classify_output(u, killed, 0.1).outcome is Outcome.CRASHED
    hung = protocol.parse_load_output(["6,1,1,-;nlmon: waiting"], "timeout:0:5000000")
    r = classify_output(u, hung, 5.1)
    assert (r.outcome, r.seconds, r.kmsg) == (Outcome.HUNG, 5.0, ("[    0.000001] nlmon: waiting",))
    r = classify_output(u, protocol.parse_load_output([], "open:-2:100"), 0.1)
    assert r.outcome is Outcome.SKIPPED and "No such file" in r.reason


# --- the runner's recovery, with a scripted stand-in for qemu ---

class FakeConsole:
    """Answers like the agent would, from a script: module name -> behaviour. A wave's marks
    come after all its loads: a module that hangs or panics there (or races, which panics only
    in a wave) leaves the whole wave without marks."""

    def __init__(self, vm: "FakeVM", script: dict[str, str], plan: LoadPlan) -> None:
        self.vm, self.script, self.plan, self.seq = vm, script, plan, vm.first_seq - 1
        self.line = self.alone = 0

    def run(self, command: str, timeout: float) -> console.CommandResult:
        self.seq += 1
        words = command.split()
        assert words[0] == "bv_restore"
        self.vm.restored.append([int(w) for w in words[2:]])
        return console.CommandResult(self.seq, 0, (), 0.01)

    def start(self, command: str) -> int:
        self.seq += 1
        words = command.split()
        assert words[0] == "bv_run"
        self.vm.runs.append(command)
        self.line, self.alone = int(words[1]), int(words[2])
        return self.seq

    def wait_mark(self, seq: int, timeout: float, grace: float = 0.0) -> console.Mark:
        if self.line > len(self.plan.lines):
            return console.Mark(None, 0, "", (), 0.01)
        line, self.line = self.line, self.line + 1
        wave = self.plan.wave_of[line] if line > self.alone else (line,)
        names = [self.plan.unit_at(x).name for x in wave]
        hows = [self.script.get(n, "ok") for n in names]
        name, how = names[wave.index(line)], hows[wave.index(line)]
        if len(wave) > 1 and line == wave[0]:
            stop = [(n, h) for n, h in zip(names, hows, strict=True)
                    if h in ("hang", "panic", "race")]
            if stop:
                name, how = stop[0][0], "hang" if stop[0][1] == "hang" else "panic"
        if how == "hang":
            raise console.CommandTimeout("hang", seq, (f"6,1,1000000,-;{name}: waiting",),
                                         timeout)
        if how == "panic":
            raise console.GuestDied("died", seq, (f"[    1.1] Kernel panic - not syncing: {name}",),
                                    0.2)
        if how == "oops":
            return console.Mark(line, None, "killed:11:2000",
                                ("6,2,1100000,-;Internal error: Oops: 96000005 [#1] SMP",), 0.2)
        ret = {"ok": 0, "race": 0, "enoent": -2, "enodev": -19}[how]
        lines = (f"4,3,1010000,-;{name}: Unknown symbol missing_sym (err -2)",) \
            if how == "enoent" else ()
        return console.Mark(line, None, f"finit:{ret}:5000", lines, 0.05)


class FakeVM:
    def __init__(self, first_seq: int, label: str, script: dict[str, str],
                 plan: LoadPlan) -> None:
        self.first_seq, self.label = first_seq, label
        self.restored: list[list[int]] = []
        self.runs: list[str] = []
        self.console = FakeConsole(self, script, plan)
        self.boot_seconds = 1.0

    def kill(self) -> None:
        pass


class FakeGuests:
    """The runner's guest factory: a FakeVM per boot, all kept."""

    def __init__(self, script: dict[str, str], plan: LoadPlan) -> None:
        self.script, self.plan = script, plan
        self.boots: list[FakeVM] = []

    def __call__(self, *, first_seq: int, label: str) -> FakeVM:
        self.boots.append(FakeVM(first_seq, label, self.script, self.plan))
        return self.boots[-1]


def test_runner_recovers_from_hang_oops_and_panic() -> None:
    files = [f"{n}.ko" for n in "abhcoldpnez"]
    s = _set("vendor_ramdisk", "/lib/modules", files, ["a.ko", "h.ko", "c.ko", "o.ko", "l.ko",
                                                        "d.ko", "p.ko", "n.ko", "e.ko", "z.ko"],
             {f: () for f in files} | {"d.ko": ("l.ko",), "e.ko": ("b.ko", "a.ko")},
             blocklist=["z"])
    plan = make_plan([s])
    assert [plan.units[st.key].name for st in plan.steps] == list("ahcoldpnabez"[:8]) + \
        ["b", "e", "z"]
    assert plan.lines[0] == "/lib/modules/a.ko" and len(plan.lines) == 10

    guests = FakeGuests({"h": "hang", "o": "oops", "p": "panic", "l": "enoent", "n": "enodev"},
                        plan)
    seen: list[tuple[str, int, int]] = []
    runner = Runner(plan, guests, module_timeout=1,  # type: ignore[arg-type]
                    progress=lambda r, d, t: seen.append((r.name, d, t)))
    runner.run()
    rep = runner.report("6.1", "", 1.0)
    got = {r.name: r.outcome.value for r in rep.results}
    assert got == {"a": "loaded", "h": "hung", "c": "loaded", "o": "crashed", "l": "link-error",
                   "d": "loaded", "p": "crashed", "n": "init-error", "b": "loaded",
                   "e": "loaded", "z": "skipped"}
    assert [r.name for r in rep.results] == list("ahcoldpnbez")
    r = rep.by_name()
    assert "dependency did not load: l (link-error)" in r["d"].reason
    assert r["d"].failed_dependencies == ("l",) and r["a"].failed_dependencies == ()
    assert r["o"].reason.startswith("Internal error: Oops")
    assert any("waiting" in line for line in r["h"].kmsg)
    assert [b.reason for b in rep.boots] == ["first boot", "after hung h", "after crashed o",
                                             "after crashed p"]
    # each new VM first loads again what the modules still to come depend on: a, for e
    assert [b.restored for b in guests.boots] == [[], [[1]], [[1]], [[1]]]
    assert [b.restored for b in rep.boots] == [0, 1, 1, 1]
    # sequence numbers keep growing across boots
    assert guests.boots[1].first_seq > 1
    assert [x[1] for x in seen] == list(range(1, 12)) and {x[2] for x in seen} == {11}


def test_guest_memory_follows_the_initrd_unless_given():
    small, large = 3 << 20, 94 << 20       # the samples; all of Debian's modules, lz4'd
    assert vm.guest_memory_mb(vm.VMConfig(), small) == 1024 + 16 * 3
    assert vm.guest_memory_mb(vm.VMConfig(), large) == 1024 + 16 * 94
    assert vm.guest_memory_mb(vm.VMConfig(memory_mb=512), large) == 512


def test_runner_records_not_found_and_unlisted_modules() -> None:
    s = _set("vendor_ramdisk", "/lib/modules", ["a.ko", "b.ko", "stray.ko"],
             ["a.ko", "wifi.ko", "b.ko"], {"a.ko": ("gone.ko",), "b.ko": ()})
    plan = make_plan([s])
    runner = Runner(plan, FakeGuests({}, plan), module_timeout=1)  # type: ignore[arg-type]
    runner.run()
    rep = runner.report("6.1", "", 1.0)
    got = {r.name: r.outcome for r in rep.results}
    assert got == {"gone": Outcome.NOT_FOUND, "a": Outcome.LOADED, "wifi": Outcome.NOT_FOUND,
                   "b": Outcome.LOADED, "stray": Outcome.UNLISTED}
    assert [r.name for r in rep.results] == ["gone", "a", "wifi", "b", "stray"]
    r = rep.by_name()
    assert "dependency did not load: gone (not-found)" in r["a"].reason
    assert r["stray"].reason == "in no load list (/lib/modules/modules.load)"


PARALLEL_BOOT = BootFacts(BootMode.NORMAL, "", 0, True)


def wave_plan(names: str, later: dict[str, tuple[str, ...]]) -> LoadPlan:
    """A first stage of `names`, loaded in parallel: one wave of them, then `later` (each
    needing some of them)."""
    files = [f"{n}.ko" for n in names + "".join(later)]
    s = _set("vendor_ramdisk", "/lib/modules", files, files,
             {f: () for f in files} | {f"{n}.ko": tuple(f"{d}.ko" for d in ds)
                                       for n, ds in later.items()})
    return make_plan([s], boot=PARALLEL_BOOT)


def test_a_wave_the_guest_dies_in_is_loaded_again_one_at_a_time() -> None:
    """issue 9: a panic during a wave leaves every module of it without a mark; the next guest
    loads them one at a time, so that the panic is vendor_panic's alone and every other module
    of the wave gets its own outcome (an oops, a link error, loaded), then the plan goes on in
    waves."""
    plan = wave_plan("lopqr", {"s": ("q",), "t": ("r",)})
    # a wave in the order the device's threads take it: from the back
    assert [[plan.unit_at(x).name for x in w] for w in plan.waves] == [list("rqpol"), ["t", "s"]]
    guests = FakeGuests({"p": "panic", "o": "oops", "l": "enoent"}, plan)
    seen: list[tuple[str, str, int]] = []
    runner = Runner(plan, guests, module_timeout=1,  # type: ignore[arg-type]
                    progress=lambda r, d, t: seen.append((r.name, r.outcome.value, d)))
    runner.run()
    rep = runner.report("6.1", "", 1.0)
    r = rep.by_name()
    assert {n: x.outcome.value for n, x in r.items()} == {
        "r": "loaded", "q": "loaded", "p": "crashed", "o": "crashed", "l": "link-error",
        "t": "loaded", "s": "loaded"}
    assert any("Kernel panic - not syncing: p" in line for line in r["p"].kmsg)
    assert r["o"].reason.startswith("Internal error: Oops")
    for n in "rqpol":           # the device's view: the wave loads at once there
        assert "on the device it loads at once with its wave (r, q, p, o, l)" in r[n].reason
        assert "loaded again one at a time" in r[n].reason
    assert "at once" not in r["s"].reason + r["t"].reason
    assert [b.reason for b in rep.boots] == [
        "first boot", "after the guest died in the wave of r, q, p, o, l", "after crashed p",
        "after crashed o"]
    # one at a time from the wave's first line to its last, then the waves again
    assert [g.runs for g in guests.boots] == [["bv_run 1 0 1000"], ["bv_run 1 5 1000"],
                                              ["bv_run 4 5 1000"], ["bv_run 5 5 1000"]]
    assert [g.restored for g in guests.boots] == [[], [], [[1, 2]], [[1, 2]]]   # r, q: t, s
    assert any("r, q, p, o, l were loaded again one at a time" in n for n in rep.notes)
    assert [x[2] for x in seen] == list(range(1, 8))


def test_a_wave_that_dies_only_at_once_fails_every_module_that_loaded_alone() -> None:
    """If no module of the wave kills the guest alone, the crash takes them together (a race,
    which the device, loading them at once, can hit too): never a green verdict for them."""
    plan = wave_plan("alrs", {"d": ("a",)})
    guests = FakeGuests({"r": "race", "l": "enoent"}, plan)
    runner = Runner(plan, guests, module_timeout=1)  # type: ignore[arg-type]
    runner.run()
    rep = runner.report("6.1", "", 1.0)
    r = rep.by_name()
    assert {n: x.outcome.value for n, x in r.items()} == {
        "a": "crashed", "l": "link-error", "r": "crashed", "s": "crashed", "d": "loaded"}
    assert "it loaded alone, but the guest crashed while its wave loaded at once" in \
        r["s"].reason
    assert any("Kernel panic - not syncing: r" in line for line in r["a"].kmsg)
    assert [len(g.runs) for g in guests.boots] == [1, 1]    # the rerun guest goes on
    assert any("no module of the wave of 4" in n for n in rep.notes)


def test_a_wave_the_whole_guest_hangs_in_is_loaded_again_one_at_a_time() -> None:
    plan = wave_plan("ahz", {})
    guests = FakeGuests({"h": "hang"}, plan)
    runner = Runner(plan, guests, module_timeout=1)  # type: ignore[arg-type]
    runner.run()
    rep = runner.report("6.1", "", 1.0)
    assert {r.name: r.outcome.value for r in rep.results} == {"a": "loaded", "h": "hung",
                                                             "z": "loaded"}
    assert "the guest hung during that wave" in rep.by_name()["a"].reason
    assert [b.reason for b in rep.boots] == ["first boot", "after the guest hung in the wave "
                                             "of z, h, a", "after hung h"]


def test_a_waves_records_go_to_the_modules_they_name():
    """finit prints a wave's records before its first mark: each module gets those naming it;
    the unnamed ones (an oops) go to the module whose loader was killed."""
    units = [ModuleUnit("vendor_ramdisk", n, f"/lib/modules/{n}.ko", "", ())
             for n in ("vendor_core", "vendor_backlight", "vendor_oops")]
    records = ["6,1,100,-;vendor_core: ready",
               "3,2,200,-;vendor_backlight: Unknown symbol msleep (err -2)",
               "1,3,300,-;Unable to handle kernel NULL pointer dereference at virtual address 0",
               "4,4,310,-;pc : vendor_oops_init+0x1c/0x1000 [vendor_oops]"]
    outs = [protocol.parse_load_output(records, "finit:0:90"),
            protocol.parse_load_output([], "finit:-2:80"),
            protocol.parse_load_output([], "killed:11:70")]
    core, backlight, oops = [classify_output(u, out, 0.0)
                             for u, out in zip(units, wave_outputs(units, outs), strict=True)]
    assert core.outcome is Outcome.LOADED and [line[15:] for line in core.kmsg] == [
        "vendor_core: ready"]
    assert backlight.outcome is Outcome.LINK_ERROR and len(backlight.kmsg) == 1
    assert oops.outcome is Outcome.CRASHED and len(oops.kmsg) == 2
