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
- /bootverify/finit: bootverify's insmod, 253 bytes of hand-written aarch64 code (FINIT_ASM
  below, assembled once with `aarch64-linux-gnu-as` and kept here as FINIT_CODE; a test
  re-assembles it when the cross assembler is installed). It calls finit_module() exactly once,
  as Android's libmodprobe does, and prints `finit_module <ret>` (or `openat <ret>`) with the raw
  return value. Busybox's insmod and modprobe were not used: after a failing finit_module they
  retry with init_module, so a failing init runs twice, every kernel message appears twice, and
  only a translated message is left of the errno (kernel-internal codes such as EPROBE_DEFER
  517 do not survive an exit status either).
- /bootverify/init: the shell script `INIT_SCRIPT`, run as PID 1. The kernel is told
  `rdinit=/bootverify/busybox` and, after `--` on the command line, `sh /bootverify/init`, so
  no binfmt_script support is needed. It mounts proc, sys and dev, makes the console quiet
  while the host talks to it (only EMERG and ALERT reach the console; an oops raises the level
  by itself) and verbose while a module loads (so a hanging module's messages are on the
  console when the host gives up), turns panic_on_oops off so an oops in finit_module kills only
  that process, and serves a marked prompt. It loads no modules on its own: the host decides every load.
- /dev/console, /dev/null, /dev/kmsg nodes, and /proc, /sys, /tmp directories, for ramdisks that
  lack them (the kernel opens /dev/console before running rdinit).

The console protocol (console.py): a per-run nonce arrives as `bv_nonce=` on the kernel command
line, so in the init's environment; markers are `@@bv<nonce>:<seq>:B` and `...:E:<status>`,
printed by the `bv_begin`/`bv_end` shell functions. The command text the host sends never holds
`@@bv<nonce>` (the functions join the pieces), so the echo of a command cannot look like a marker.
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
# Console log level: 2 (EMERG, ALERT) while the host talks to the shell, 8 (all) while a module
# loads, so that what a hanging module printed is on the console when the host gives up on it.
if [ -w /proc/sys/kernel/printk ]; then
	bv_level() { echo "$1" > /proc/sys/kernel/printk; }
else
	bv_level() { dmesg -n "$1"; }
fi
bv_level 2
stty -echo 2>/dev/null
dmesg -c > /tmp/bootverify-boot.log
M="@@bv$bv_nonce"
bv_begin() { printf '%s:%s:B\n' "$M" "$1"; }
bv_end() { printf '%s:%s:E:%s\n' "$M" "$1" "$2"; }
# bv_load SEQ PATH [PARAMS]: one finit_module between kernel log markers, then the new log.
bv_load() {
	echo "bootverify: begin $1 $2" > /dev/kmsg
	bv_level 8
	$B/finit "$2" "$3"
	bv_r=$?
	bv_level 2
	echo "bootverify: end $1 status $bv_r" > /dev/kmsg
	dmesg -c
	return $bv_r
}
# bv_restore PATH PARAMS [PATH PARAMS...]: load again what was loaded before a reboot; prints
# what failed.
bv_restore() {
	while [ $# -ge 2 ]; do
		$B/finit "$1" "$2" > /dev/null || echo "restore failed: $1"
		shift 2
	done
	dmesg -c > /dev/null
}
printf '%s:ready\n' "$M"
while :; do
	printf '%s$ ' "$M"
	IFS= read -r bv_line || sleep 1
	eval "$bv_line"
done
"""

# bootverify's insmod. Assembled with `aarch64-linux-gnu-as` + `objcopy -O binary`; the bytes
# are FINIT_CODE. Exit status: the errno (low 8 bits) or 0; 253 without arguments.
FINIT_ASM = r"""
    .text
    .globl _start
_start:
    ldr   x19, [sp]              // argc
    ldr   x22, [sp, #16]         // argv[1]: module path (NULL when absent)
    adr   x23, empty             // parameters: "" unless argv[2] is given
    cmp   x19, #3
    b.lt  1f
    ldr   x23, [sp, #24]         // argv[2]: parameters
1:  cbz   x22, usage
    mov   x0, #-100              // AT_FDCWD
    mov   x1, x22
    movz  x2, #0x8000            // O_RDONLY | O_NOFOLLOW
    movk  x2, #0x8, lsl #16      //          | O_CLOEXEC (arm64 values)
    mov   x3, #0
    mov   x8, #56                // openat
    svc   #0
    adr   x24, s_openat
    mov   x25, #7
    tbnz  x0, #63, report        // open failed: report openat's -errno
    mov   x1, x23
    mov   x2, #0                 // flags
    mov   x8, #273               // finit_module(fd, params, 0)
    svc   #0
    adr   x24, s_finit
    mov   x25, #13
report:
    mov   x21, x0                // 0 or -errno
    sub   sp, sp, #32
    add   x1, sp, #31
    mov   w2, #10                // '\n', then the digits backwards
    strb  w2, [x1]
    neg   x3, x21
    mov   x4, #10
2:  udiv  x5, x3, x4
    msub  x6, x5, x4, x3
    add   w6, w6, #48
    sub   x1, x1, #1
    strb  w6, [x1]
    mov   x3, x5
    cbnz  x3, 2b
    cbz   x21, 3f
    mov   w6, #45                // '-'
    sub   x1, x1, #1
    strb  w6, [x1]
3:  mov   x26, x1
    mov   x0, #1
    mov   x1, x24
    mov   x2, x25
    mov   x8, #64                // write(1, label, len)
    svc   #0
    mov   x0, #1
    mov   x1, x26
    add   x2, sp, #32
    sub   x2, x2, x26
    mov   x8, #64                // write(1, number, len)
    svc   #0
    neg   x0, x21                // exit status: errno (low 8 bits), 0 on success
    b     exit
usage:
    mov   x0, #253
exit:
    mov   x8, #93                // exit
    svc   #0
s_openat:
    .ascii "openat "
s_finit:
    .ascii "finit_module "
empty:
    .byte 0
"""
FINIT_CODE = bytes.fromhex(
    "f30340f9f60b40f9b70700107f0e00f14b000054f70f40f9360600b4600c8092e10316aa020090d20201a0f2"
    "030080d2080780d2010000d498050010f90080d2e000f8b7e10317aa020080d2282280d2010000d4d8040070"
    "b90180d2f50300aaff8300d1e17f00914201805222000039e30315cb440180d26508c49aa68c049bc6c00011"
    "210400d126000039e30305aa43ffffb5950000b4a6058052210400d126000039fa0301aa200080d2e10318aa"
    "e20319aa080880d2010000d4200080d2e1031aaae283009142001acb080880d2010000d4e00315cb02000014"
    "a01f80d2a80b80d2010000d46f70656e61742066696e69745f6d6f64756c652000")

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


def _dir(name: str) -> CpioEntry:
    return CpioEntry(name, stat.S_IFDIR | 0o755)


def _chr(name: str, major: int, minor: int, mode: int) -> CpioEntry:
    return CpioEntry(name, stat.S_IFCHR | mode, rdevmajor=major, rdevminor=minor)


def agent_entries(busybox: bytes) -> list[CpioEntry]:
    """The agent's files as archive members."""
    entries = [_dir("dev"), _dir("proc"), _dir("sys"), CpioEntry("tmp", stat.S_IFDIR | 0o1777),
               _chr("dev/console", 5, 1, 0o600), _chr("dev/null", 1, 3, 0o666),
               _chr("dev/kmsg", 1, 11, 0o644),
               _dir(AGENT_DIR), _dir(f"{AGENT_DIR}/bin"),
               CpioEntry(BUSYBOX.lstrip("/"), stat.S_IFREG | 0o755, busybox),
               CpioEntry(FINIT.lstrip("/"), stat.S_IFREG | 0o755, finit_elf()),
               CpioEntry(INIT.lstrip("/"), stat.S_IFREG | 0o755, INIT_SCRIPT.encode())]
    entries += [CpioEntry(f"{AGENT_DIR}/bin/{a}", stat.S_IFLNK | 0o777, b"../busybox")
                for a in APPLETS]
    return entries


def build_overlay(busybox: bytes, extra: Iterable[CpioEntry] = ()) -> bytes:
    """The overlay cpio: the agent plus `extra` members (module directories)."""
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
