"""The agent: what bootverify adds to the guest's initramfs so that the host can drive it.

The overlay is one uncompressed cpio archive, unpacked after the device's ramdisks, holding:

- /bootverify/busybox: a static arm64 busybox. Either the file given with `--busybox PATH`, or
  a cached copy from Debian's `busybox-static:arm64` package: `bootverify.debpkg.unpacked()` runs
  `apt-get download busybox-static:arm64` (dpkg must know the arm64 architecture:
  `dpkg --add-architecture arm64 && apt-get update`) and `dpkg-deb -x` once, into
  $BOOTVERIFY_CACHE (default ~/.cache/bootverify)/debian/busybox-static_arm64/, and the agent
  takes bin/busybox from there. Nothing is installed on the host; the Dockerfile bakes the
  cache in. A busybox given by path is checked to be a static aarch64 ELF executable.
- /bootverify/bin/*: symlinks to busybox for the applets the agent (and a human) uses.
- /bootverify/finit: bootverify's insmod, under 1 KiB of hand-written aarch64 code (FINIT_ASM
  below, assembled once with `aarch64-linux-gnu-as` and kept here as FINIT_CODE; a test
  re-assembles it when the cross assembler is installed). `finit PATH PARAMS WATCHDOG_MS`:
  1. writes `bootverify: loading PATH` into /dev/kmsg (debug level: in the log, not on the
     console) and moves its /dev/kmsg reader to the end of the log;
  2. forks; the child calls finit_module() on the opened file exactly once, as Android's
     libmodprobe does;
  3. waits for the child at most WATCHDOG_MS (pidfd_open + ppoll; without pidfd support it
     just waits);
  4. copies the kernel log records written since step 1 to stdout (/dev/kmsg format,
     `LEVEL,SEQ,USEC,FLAGS;TEXT`), then prints one line `LABEL VALUE NANOSECONDS`:
     `finit_module RET` (0 or -errno), `openat RET` (the file did not open), `killed SIGNAL`
     (the child died in finit_module: an oops) or `timeout 0` (init still had not returned);
  5. exits 0 loaded, 1 not loaded, 3 killed, 4 timed out (2: no arguments).
  Busybox's insmod and modprobe were not used: after a failing finit_module they retry with
  init_module, so a failing init runs twice and every kernel message appears twice, and only a
  translated message is left of the errno (kernel-internal codes such as EPROBE_DEFER 517 do
  not survive an exit status either). Reading /dev/kmsg from the helper's own position gives
  exactly the records of that load, with no second process (dmesg) per module; the watchdog
  lets a hanging module's messages (and the hung-task report) reach the host before the host
  gives up on the guest.
- /bootverify/plan: the modules to load, one `PATH PARAMS` line each, in load order (written by
  loader.py); `bv_run N` loads them from line N on.
- /bootverify/init: the shell script `INIT_SCRIPT`, run as PID 1. The kernel is told
  `rdinit=/bootverify/busybox` and, after `--` on the command line, `sh /bootverify/init`, so
  no binfmt_script support is needed. It mounts proc, sys and dev, keeps the console quiet
  (only EMERG and ALERT reach it; an oops raises the level by itself), turns panic_on_oops off so
  an oops in finit_module kills only that process, and serves a marked prompt. It loads no
  module on its own: the host says when (`bv_run`, `bv_restore`).
- /dev/console, /dev/null, /dev/kmsg nodes, and /proc, /sys, /tmp directories, for ramdisks that
  lack them (the kernel opens /dev/console before running rdinit).

The console protocol (console.py): a per-run nonce arrives as `bv_nonce=` on the kernel command
line, so in the init's environment; markers are `@@bv<nonce>:<seq>:B` and `...:<seq>:E:<status>`
around each command, and `...:M<line>:<status>` after each module of the plan, all printed by
shell functions that join the pieces, so the text the host sends never holds `@@bv<nonce>` and
the echo of a command cannot look like a marker.
"""

from __future__ import annotations

import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bootverify import debpkg
from bootverify.errors import InfraError, InputError
from bootverify.readers.ramdisk import CpioEntry, write_cpio

BUSYBOX_PACKAGE = "busybox-static:arm64"
BUSYBOX_IN_PACKAGE = "bin/busybox"

AGENT_DIR = "bootverify"                       # /bootverify in the guest
BUSYBOX = f"/{AGENT_DIR}/busybox"
FINIT = f"/{AGENT_DIR}/finit"
INIT = f"/{AGENT_DIR}/init"
PLAN = f"/{AGENT_DIR}/plan"
BOOT_LOG = "/tmp/bootverify-boot.log"          # the kernel log up to the agent, saved by init
MARKER_PREFIX = "@@bv"
NONCE_PARAM = "bv_nonce"

# What the kernel command line gets so that the agent runs as PID 1. `--` must come last: the
# kernel passes what follows it to init as arguments.
INIT_ARGS = ("sh", INIT)
RDINIT = BUSYBOX

# The applets the agent uses, plus a few for a human at the console.
APPLETS = ("sh", "mount", "umount", "mkdir", "mknod", "dmesg", "cat", "ls", "stty", "sleep",
           "printf", "echo", "true", "false", "uname", "insmod", "rmmod", "lsmod", "modprobe",
           "grep", "sed", "head", "tail", "wc", "ps", "kill", "env", "date", "dd", "tr", "poweroff",
           "reboot")

INIT_SCRIPT = r"""# bootverify agent, PID 1 (rdinit=/bootverify/busybox, then `sh /bootverify/init`).
B=/bootverify
export PATH=$B/bin
cd /
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo 0 > /proc/sys/kernel/panic_on_oops 2>/dev/null
echo on > /proc/sys/kernel/printk_devkmsg 2>/dev/null
dmesg -n 2
stty -echo 2>/dev/null
dmesg > /tmp/bootverify-boot.log
M="@@bv$bv_nonce"
bv_begin() { printf '%s:%s:B\n' "$M" "$1"; }
bv_end() { printf '%s:%s:E:%s\n' "$M" "$1" "$2"; }
# bv_run FROM WATCHDOG_MS: load the plan's modules from line FROM on, one at a time. For each:
# the helper's output (kernel log records, result line), then `@@bv<nonce>:M<line>:<status>`.
# Stops after a module whose load was killed (3) or did not return (4).
bv_run() {
	bv_i=0
	while read -r bv_path bv_args; do
		bv_i=$((bv_i + 1))
		[ "$bv_i" -lt "$1" ] && continue
		$B/finit "$bv_path" "$bv_args" "$2"
		bv_r=$?
		printf '%s:M%s:%s\n' "$M" "$bv_i" "$bv_r"
		[ "$bv_r" -ge 3 ] && return "$bv_r"
	done < $B/plan
	return 0
}
# bv_restore LINE...: load those plan lines again, quietly (after a reboot); names failures.
bv_restore() {
	bv_i=0
	while read -r bv_path bv_args; do
		bv_i=$((bv_i + 1))
		case " $* " in
		*" $bv_i "*) $B/finit "$bv_path" "$bv_args" > /dev/null || echo "restore failed: $bv_i";;
		esac
	done < $B/plan
}
printf '%s:ready\n' "$M"
while :; do
	printf '%s$ ' "$M"
	IFS= read -r bv_line || sleep 1
	eval "$bv_line"
done
"""

# bootverify's insmod (see the module docstring). Assembled with `aarch64-linux-gnu-as` and
# `objcopy -O binary`; the bytes are FINIT_CODE.
FINIT_ASM = r"""
    .text
    .globl _start
_start:
    ldr   x19, [sp]              // argc
    ldr   x22, [sp, #16]         // argv[1]: module path (NULL when absent)
    adr   x23, empty             // argv[2]: parameters, "" when absent
    mov   x20, #0                // argv[3]: watchdog in ms, 0 (none) when absent
    cmp   x19, #3
    b.lt  1f
    ldr   x23, [sp, #24]
    cmp   x19, #4
    b.lt  1f
    ldr   x1, [sp, #32]
    mov   x4, #10
0:  ldrb  w2, [x1], #1           // decimal digits up to the first non-digit
    sub   w2, w2, #48
    cmp   w2, #9
    b.hi  1f
    madd  x20, x20, x4, x2
    b     0b
1:  cbz   x22, usage
    sub   sp, sp, #0x3000        // [sp] timespec, [sp+16] pollfd, [sp+32] timeout,
                                 // [sp+48] wait status, [sp+64..511] line, [sp+512] records
    mov   x0, #-100              // AT_FDCWD
    adr   x1, s_kmsg
    mov   x2, #0x802             // O_RDWR | O_NONBLOCK
    orr   x2, x2, #0x80000       // | O_CLOEXEC
    mov   x3, #0
    mov   x8, #56                // openat("/dev/kmsg")
    svc   #0
    mov   x27, x0                // < 0: no kernel log, carry on without it
    tbnz  x27, #63, 3f
    add   x1, sp, #64            // record "<15>bootverify: loading PATH" (debug: not on console)
    adr   x2, s_mark
    mov   x3, #0
2:  ldrb  w4, [x2, x3]
    cbz   w4, 21f
    strb  w4, [x1, x3]
    add   x3, x3, #1
    b     2b
21: mov   x5, #0
22: ldrb  w4, [x22, x5]
    cbz   w4, 23f
    cmp   x5, #400
    b.ge  23f
    strb  w4, [x1, x3]
    add   x3, x3, #1
    add   x5, x5, #1
    b     22b
23: mov   w4, #10                // '\n' ends the record (else it stays open, past SEEK_END)
    strb  w4, [x1, x3]
    add   x3, x3, #1
    mov   x0, x27
    mov   x2, x3
    mov   x8, #64                // write(kmsg, marker)
    svc   #0
    mov   x0, x27
    mov   x1, #0
    mov   x2, #2                 // lseek(kmsg, 0, SEEK_END): read only what comes next
    mov   x8, #62
    svc   #0
3:  mov   x0, #0                 // a page shared with the child, for its result
    mov   x1, #4096
    mov   x2, #3                 // PROT_READ | PROT_WRITE
    mov   x3, #0x21              // MAP_SHARED | MAP_ANONYMOUS
    mov   x4, #-1
    mov   x5, #0
    mov   x8, #222               // mmap
    svc   #0
    mov   x29, x0
    bl    now
    mov   x28, x0                // t0
    mov   x0, #17                // clone(SIGCHLD, 0, 0, 0, 0): fork
    mov   x1, #0
    mov   x2, #0
    mov   x3, #0
    mov   x4, #0
    mov   x8, #220
    svc   #0
    cbnz  x0, parent
    bl    load                   // the child: finit_module, result in the shared page
    mov   x0, #0
    mov   x8, #93
    svc   #0
parent:
    tbnz  x0, #63, nofork
    mov   x9, x0                 // child pid
    cbz   x20, waitchild         // no watchdog
    mov   x1, #0
    mov   x8, #434               // pidfd_open(pid, 0)
    svc   #0
    tbnz  x0, #63, waitchild     // unsupported: wait without a watchdog
    str   w0, [sp, #16]          // pollfd: fd, events POLLIN, revents 0
    mov   w1, #1
    str   w1, [sp, #20]
    mov   x4, #1000
    udiv  x2, x20, x4
    msub  x3, x2, x4, x20
    movz  x4, #0x4240
    movk  x4, #0xf, lsl #16      // 1000000
    mul   x3, x3, x4
    stp   x2, x3, [sp, #32]      // timeout: s, ns
    add   x0, sp, #16
    mov   x1, #1
    add   x2, sp, #32
    mov   x3, #0
    mov   x4, #0
    mov   x8, #73                // ppoll
    svc   #0
    cbnz  x0, waitchild          // the child ended (or ppoll failed: just wait)
    adr   x24, s_timeout         // the watchdog fired: init has not returned
    mov   x25, #8
    mov   x21, #0
    mov   x11, #4
    b     report
waitchild:
    mov   x0, x9
    add   x1, sp, #48
    mov   x2, #0
    mov   x3, #0
    mov   x8, #260               // wait4(pid, &status, 0, NULL)
    svc   #0
    ldr   w1, [sp, #48]
    and   w2, w1, #0x7f          // WTERMSIG
    cbz   w2, exited
    adr   x24, s_killed          // killed: an oops in finit_module
    mov   x25, #7
    mov   x21, x2
    mov   x11, #3
    b     report
nofork:
    bl    load
exited:
    ldp   x21, x1, [x29]         // the child's return value, 1 if openat failed
    adr   x24, s_finit
    mov   x25, #13
    cbz   x1, 5f
    adr   x24, s_openat
    mov   x25, #7
5:  cmp   x21, #0
    cset  x11, ne                // exit status 1: not loaded
report:
    bl    now
    sub   x26, x0, x28           // nanoseconds since before the fork
    tbnz  x27, #63, 6f
50: mov   x0, x27                // copy the new kernel log records to stdout
    add   x1, sp, #512
    mov   x2, #8192
    mov   x8, #63                // read: one record per call
    svc   #0
    cmn   x0, #32                // -EPIPE: older records were overwritten; read on
    b.eq  50b
    cmp   x0, #0
    b.le  6f                     // -EAGAIN: no more
    mov   x2, x0
    mov   x0, #1
    add   x1, sp, #512
    mov   x8, #64
    svc   #0
    b     50b
6:  add   x1, sp, #496           // "LABEL VALUE NS\n", built backwards
    mov   w2, #10
    strb  w2, [x1]
    mov   x0, x26
    bl    utoa
    mov   w2, #32
    sub   x1, x1, #1
    strb  w2, [x1]
    mov   x0, x21
    tbz   x21, #63, 61f
    neg   x0, x21
61: bl    utoa
    tbz   x21, #63, 7f
    mov   w2, #45                // '-'
    sub   x1, x1, #1
    strb  w2, [x1]
7:  mov   x3, x25
8:  sub   x3, x3, #1
    ldrb  w2, [x24, x3]
    sub   x1, x1, #1
    strb  w2, [x1]
    cbnz  x3, 8b
    add   x2, sp, #497
    sub   x2, x2, x1
    mov   x0, #1
    mov   x8, #64                // write(1, line)
    svc   #0
    mov   x0, x11                // 0 loaded, 1 not loaded, 3 killed, 4 watchdog
    b     exit
usage:
    mov   x0, #2
exit:
    mov   x8, #93                // exit
    svc   #0
load:                            // openat + finit_module; [x29] = return, [x29+8] = 1 if openat
    mov   x0, #-100
    mov   x1, x22
    movz  x2, #0x8000            // O_RDONLY | O_NOFOLLOW
    movk  x2, #0x8, lsl #16      //          | O_CLOEXEC
    mov   x3, #0
    mov   x8, #56
    svc   #0
    mov   x5, #1
    tbnz  x0, #63, 9f
    mov   x1, x23
    mov   x2, #0
    mov   x8, #273               // finit_module(fd, params, 0)
    svc   #0
    mov   x5, #0
9:  stp   x0, x5, [x29]
    ret
now:                             // x0 = CLOCK_MONOTONIC in ns (timespec at [sp])
    mov   x0, #1
    mov   x1, sp
    mov   x8, #113               // clock_gettime
    svc   #0
    ldp   x2, x3, [sp]
    movz  x4, #0xca00
    movk  x4, #0x3b9a, lsl #16   // 1000000000
    madd  x0, x2, x4, x3
    ret
utoa:                            // decimal digits of x0 before x1; x1 = first digit
    mov   x4, #10
10: udiv  x5, x0, x4
    msub  x6, x5, x4, x0
    add   w6, w6, #48
    sub   x1, x1, #1
    strb  w6, [x1]
    mov   x0, x5
    cbnz  x0, 10b
    ret
s_kmsg:
    .asciz "/dev/kmsg"
s_mark:
    .asciz "<15>bootverify: loading "
s_openat:
    .ascii "openat "
s_finit:
    .ascii "finit_module "
s_killed:
    .ascii "killed "
s_timeout:
    .ascii "timeout "
empty:
    .byte 0
"""
FINIT_CODE = bytes.fromhex(
    "f30340f9f60b40f9171d0050140080d27f0e00f18b010054f70f40f97f1200f12b010054e11340f9440180d2"
    "2214403842c000515f24007168000054940a049bfbffff17761400b4ff0f40d1600c8092a1180010420081d2"
    "42006db2030080d2080780d2010000d4fb0300aadb03f8b7e1030191c2170050030080d24468633884000034"
    "2468233863040091fcffff17050080d2c46a6538e4000034bf4006f1aa0000542468233863040091a5040091"
    "f9ffff17440180522468233863040091e0031baae20303aa080880d2010000d4e0031baa010080d2420080d2"
    "c80780d2010000d4000080d2010082d2620080d2230480d204008092050080d2c81b80d2010000d4fd0300aa"
    "85000094fc0300aa200280d2010080d2020080d2030080d2040080d2881b80d2010000d4a00000b56b000094"
    "000080d2a80b80d2010000d48005f8b7e90300aa940300b4010080d2483680d2010000d40003f8b7e01300b9"
    "21008052e11700b9047d80d2820ac49a43d0049b044888d2e401a0f2637c049be20f02a9e0430091210080d2"
    "e2830091030080d2040080d2280980d2010000d4c00000b5f80f0050190180d2150080d28b0080d218000014"
    "e00309aae1c30091020080d2030080d2882080d2010000d4e13340b922180012e2000034f80d0070f90080d2"
    "f50302aa6b0080d20a0000143b000094b50740a9b80c0050b90180d2610000b4180c0070f90080d2bf0200f1"
    "eb079f9a420000941a001ccb1b02f8b7e0031baae1030891020084d2e80780d2010000d41f8000b140ffff54"
    "1f0000f1ed000054e20300aa200080d2e1030891080880d2010000d4f2ffff17e1c307914201805222000039"
    "e0031aaa3500009402048052210400d122000039e00315aa5500f8b6e00315cb2e0000949500f8b6a2058052"
    "210400d122000039e30319aa630400d1026b6338210400d12200003983ffffb5e2c70791420001cb200080d2"
    "080880d2010000d4e0030baa02000014400080d2a80b80d2010000d4600c8092e10316aa020090d20201a0f2"
    "030080d2080780d2010000d4250080d2c000f8b7e10317aa020080d2282280d2010000d4050080d2a01700a9"
    "c0035fd6200080d2e1030091280e80d2010000d4e20f40a9044099d24473a7f2400c049bc0035fd6440180d2"
    "0508c49aa680049bc6c00011210400d126000039e00305aa40ffffb5c0035fd62f6465762f6b6d7367003c31"
    "353e626f6f747665726966793a206c6f6164696e6720006f70656e61742066696e69745f6d6f64756c65206b"
    "696c6c65642074696d656f75742000")

EM_AARCH64 = 183
ELF_BASE = 0x400000
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_INTERP = 1, 3


def finit_elf() -> bytes:
    """FINIT_CODE as a static ELF64 aarch64 executable: one R+X PT_LOAD of the whole file."""
    code_offset = _EHDR.size + _PHDR.size
    size = code_offset + len(FINIT_CODE)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)       # ELFCLASS64, LSB, v1, SYSV
    ehdr = _EHDR.pack(ident, 2, EM_AARCH64, 1, ELF_BASE + code_offset, _EHDR.size, 0, 0,
                      _EHDR.size, _PHDR.size, 1, 0, 0, 0)
    phdr = _PHDR.pack(PT_LOAD, 5, 0, ELF_BASE, ELF_BASE, size, size, 0x10000)
    return ehdr + phdr + FINIT_CODE


def assemble_finit(workdir: Path) -> bytes | None:
    """FINIT_ASM assembled with the cross binutils, or None when they are not installed."""
    if not (shutil.which("aarch64-linux-gnu-as") and shutil.which("aarch64-linux-gnu-objcopy")):
        return None
    src, obj, raw = workdir / "finit.S", workdir / "finit.o", workdir / "finit.bin"
    src.write_text(FINIT_ASM)
    subprocess.run(["aarch64-linux-gnu-as", "-o", str(obj), str(src)], check=True)
    subprocess.run(["aarch64-linux-gnu-objcopy", "-O", "binary", str(obj), str(raw)], check=True)
    return raw.read_bytes()


def check_static_aarch64(data: bytes, path: object) -> None:
    """An executable the guest can run as PID 1 with nothing else around: static aarch64 ELF."""
    if len(data) < _EHDR.size or not data.startswith(b"\x7fELF"):
        raise InputError(path, "not an ELF file (a static arm64 busybox is needed)")
    if data[4] != 2 or data[5] != 1:
        raise InputError(path, "not a 64-bit little-endian ELF (a static arm64 busybox is needed)")
    fields = _EHDR.unpack_from(data)
    e_type, e_machine, phoff, phentsize, phnum = fields[1], fields[2], fields[5], fields[9], \
        fields[10]
    if e_machine != EM_AARCH64:
        raise InputError(path, f"ELF machine {e_machine} is not aarch64 ({EM_AARCH64})")
    if e_type not in (2, 3):
        raise InputError(path, f"ELF type {e_type} is not an executable")
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + _PHDR.size > len(data):
            raise InputError(path, "truncated ELF program headers")
        if _PHDR.unpack_from(data, off)[0] == PT_INTERP:
            raise InputError(path, "dynamically linked (has PT_INTERP); a static busybox is needed")


def default_busybox(cache: Path | None = None) -> Path:
    """bin/busybox of Debian's busybox-static:arm64, downloaded and unpacked once (debpkg)."""
    path = debpkg.unpacked(BUSYBOX_PACKAGE, cache) / BUSYBOX_IN_PACKAGE
    if not path.is_file():
        raise InfraError(f"{BUSYBOX_PACKAGE} unpacked without {BUSYBOX_IN_PACKAGE} ({path})")
    return path


def read_busybox(path: Path | None = None) -> bytes:
    """The busybox to put in the guest: `path` (checked) or Debian's cached one."""
    path = path if path is not None else default_busybox()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InputError(path, e.strerror or str(e)) from None
    check_static_aarch64(data, path)
    return data


def dir_entry(name: str) -> CpioEntry:
    return CpioEntry(name, stat.S_IFDIR | 0o755)


def _chr(name: str, major: int, minor: int, mode: int) -> CpioEntry:
    return CpioEntry(name, stat.S_IFCHR | mode, rdevmajor=major, rdevminor=minor)


def agent_entries(busybox: bytes) -> list[CpioEntry]:
    """The agent's files as archive members."""
    entries = [dir_entry("dev"), dir_entry("proc"), dir_entry("sys"),
               CpioEntry("tmp", stat.S_IFDIR | 0o1777),
               _chr("dev/console", 5, 1, 0o600), _chr("dev/null", 1, 3, 0o666),
               _chr("dev/kmsg", 1, 11, 0o644),
               dir_entry(AGENT_DIR), dir_entry(f"{AGENT_DIR}/bin"),
               CpioEntry(BUSYBOX.lstrip("/"), stat.S_IFREG | 0o755, busybox),
               CpioEntry(FINIT.lstrip("/"), stat.S_IFREG | 0o755, finit_elf()),
               CpioEntry(INIT.lstrip("/"), stat.S_IFREG | 0o755, INIT_SCRIPT.encode())]
    entries += [CpioEntry(f"{AGENT_DIR}/bin/{a}", stat.S_IFLNK | 0o777, b"../busybox")
                for a in APPLETS]
    return entries


def plan_entry(lines: Iterable[str]) -> CpioEntry:
    """/bootverify/plan: `PATH PARAMS` per line, in load order."""
    text = "".join(line + "\n" for line in lines)
    return CpioEntry(PLAN.lstrip("/"), stat.S_IFREG | 0o644, text.encode())


def build_overlay(busybox: bytes, extra: Iterable[CpioEntry] = ()) -> bytes:
    """The overlay cpio: the agent plus `extra` members (module directories, the plan)."""
    return write_cpio([*agent_entries(busybox), *extra])


def agent_cmdline(nonce: str) -> tuple[str, str]:
    """(parameters, init arguments): the parameters go anywhere before `--`, the init arguments
    after it, at the very end of the command line."""
    return f"rdinit={RDINIT} {NONCE_PARAM}={nonce}", "-- " + " ".join(INIT_ARGS)


def scratch_assemble_check() -> bool | None:
    """True if FINIT_ASM assembles to FINIT_CODE, None if the cross binutils are missing."""
    with tempfile.TemporaryDirectory(prefix="bootverify-as-") as tmp:
        code = assemble_finit(Path(tmp))
    return None if code is None else code == FINIT_CODE
