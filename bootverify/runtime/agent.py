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
- /bootverify/finit: bootverify's module loader, guest/finit.c, a static C program of about
  4 KiB against the kernel's nolibc, built by guest/Makefile with aarch64-linux-gnu-gcc and the
  nolibc of Debian's linux-source-6.1. It ships prebuilt next to its source; guest/finit.toolchain
  says what built it, and a test rebuilds it and compares the bytes.
  `finit PLAN FROM ALONE WATCHDOG_MS MARK [LINE...]` goes through the plan file's lines from
  FROM on (with LINEs, only those), one module at a time:
  1. writes `bootverify: loading PATH` into /dev/kmsg (debug level: in the log, not on the
     console) and moves its /dev/kmsg reader to the end of the log;
  2. forks; the child calls finit_module() on the opened file exactly once, as Android's
     libmodprobe does;
  3. waits for the child at most WATCHDOG_MS (pidfd_open + ppoll; 0 or without pidfd support
     it just waits);
  4. writes `bootverify: loaded` into /dev/kmsg, which finalizes a record the load left
     without a newline (readers see only finalized records; without it such a line was lost),
     copies the kernel log records written since step 1 to stdout (/dev/kmsg format,
     `LEVEL,SEQ,USEC,FLAGS;TEXT`), then prints the module's mark
     `MARK:M<line>:<label>:<value>:<usec>`, label `finit` (value: finit_module's return, 0 or
     -errno), `open` (the file did not open: -errno), `killed` (the child died in
     finit_module, an oops: the signal) or `timeout` (init had not returned), usec the guest
     time around it;
  5. stops after `killed` or `timeout` (exit status 3 or 4), else goes on; exit 0 at the end.
  A plan line `&PATH PARAMS` belongs to the wave of the line before it (parallel loading,
  plan/parallel.py): the wave's modules load at once, a child each, at most one per CPU
  (sched_getaffinity), each with its own watchdog; then come the whole wave's records and the
  marks in line order, and it stops after the wave if one was `killed` or `timeout`. Lines up
  to ALONE (0: none) load one at a time all the same: the rest of a wave whose guest died while
  it loaded, loaded again so that each module gets its own verdict (runner.Rerun).
  With MARK "" it is quiet (restoring after a reboot): no records, no marks, only
  `restore failed: <line>` for a module that did not load.
  Busybox's insmod and modprobe were not used: after a failing finit_module they retry with
  init_module, so a failing init runs twice and every kernel message appears twice, and only a
  translated message is left of the errno (kernel-internal codes such as EPROBE_DEFER 517 do
  not survive an exit status either). One process walking the plan, instead of a shell forking
  a loader per module, and reading /dev/kmsg from its own position instead of running dmesg,
  is what keeps the per-module cost near a bare in-guest loop's on TCG, where every fork+exec
  costs ~15 ms and every console byte ~0.1 ms. The watchdog lets a hanging module's messages
  reach the host before the host gives up on the guest.
- /bootverify/plan: the modules to load, one `PATH PARAMS` line each (`&PATH PARAMS`: in the
  wave of the line before), in load order (plan's LoadPlan.lines); `bv_run N ALONE WATCHDOG_MS`
  loads them from line N on.
- /bootverify/init: the shell script guest/init (`INIT_SCRIPT`), run as PID 1. The kernel is told
  `rdinit=/bootverify/busybox` and, after `--` on the command line, `sh /bootverify/init`, so
  no binfmt_script support is needed. It mounts proc, sys and dev, keeps the console quiet
  (only EMERG and ALERT reach it; an oops raises the level by itself), turns panic_on_oops off so
  an oops in finit_module kills only that process, and serves a marked prompt. It loads no
  module on its own: the host says when (`bv_run`, `bv_restore`).
- /dev/console, /dev/null, /dev/kmsg nodes, and /proc, /sys, /tmp directories, for ramdisks that
  lack them (the kernel opens /dev/console before running rdinit).

The console protocol (protocol.py; console.py drives it): a per-run nonce arrives as
`bv_nonce=` on the kernel command line, so in the init's environment; markers are
`@@bv<nonce>:<seq>:B` and `...:<seq>:E:<status>` around each command, and
`...:M<line>:<label>:<value>:<usec>` after each module of the plan, printed by shell functions and
by finit from "$M", joined in the guest: the text the host sends never holds `@@bv<nonce>`, so
the echo of a command cannot look like a marker.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

from bootverify import debpkg
from bootverify.errors import InfraError, InputError, reading, regular_file
from bootverify.readers.modules import ELF64_HEADER, ELF64_LE, ELF_MAGIC
from bootverify.readers.ramdisk import CpioEntry, entries_from_tree, write_cpio
from bootverify.runtime.protocol import NONCE_PARAM

BUSYBOX_PACKAGE = "busybox-static:arm64"
BUSYBOX_IN_PACKAGE = "bin/busybox"

AGENT_DIR = "bootverify"                       # /bootverify in the guest
BUSYBOX = f"/{AGENT_DIR}/busybox"
FINIT = f"/{AGENT_DIR}/finit"
INIT = f"/{AGENT_DIR}/init"
PLAN = f"/{AGENT_DIR}/plan"

# What the kernel command line gets so that the agent runs as PID 1. `--` must come last: the
# kernel passes what follows it to init as arguments.
INIT_ARGS = ("sh", INIT)
RDINIT = BUSYBOX

# The applets the agent uses, plus a few for a human at the console.
APPLETS = ("sh", "mount", "umount", "mkdir", "mknod", "dmesg", "cat", "ls", "stty", "sleep",
           "printf", "echo", "true", "false", "uname", "insmod", "rmmod", "lsmod", "modprobe",
           "grep", "sed", "head", "tail", "wc", "ps", "kill", "env", "date", "dd", "tr", "poweroff",
           "reboot")

# The files that go into the guest as they are: guest/init, and guest/finit built from
# guest/finit.c (see guest/Makefile).
GUEST = files("bootverify.runtime") / "guest"
INIT_SCRIPT = (GUEST / "init").read_text()
FINIT_BINARY = (GUEST / "finit").read_bytes()

EM_AARCH64 = 183
_PHDR = struct.Struct("<IIQQQQQQ")
PT_INTERP = 3


def check_static_aarch64(data: bytes, path: object) -> None:
    """An executable the guest can run as PID 1 with nothing else around: static aarch64 ELF."""
    if len(data) < ELF64_HEADER.size or not data.startswith(ELF_MAGIC):
        raise InputError(path, "not an ELF file (a static arm64 busybox is needed)")
    if (data[4], data[5]) != ELF64_LE:
        raise InputError(path, "not a 64-bit little-endian ELF (a static arm64 busybox is needed)")
    fields = ELF64_HEADER.unpack_from(data)
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
    regular_file(path)
    with reading(path):
        data = Path(path).read_bytes()
    check_static_aarch64(data, path)
    return data


def dir_entry(name: str) -> CpioEntry:
    return CpioEntry(name, stat.S_IFDIR | 0o755)


def tree_entries(directory: Path, at: str) -> list[CpioEntry]:
    """`directory`'s files as archive members under `at` (e.g. "lib/modules"), `at` and its
    parents first; links to files become the files (a module directory's links may lead out of
    it, and must still work in the guest)."""
    parts = at.split("/")
    return [*(dir_entry("/".join(parts[:i])) for i in range(1, len(parts) + 1)),
            *entries_from_tree(directory, at, follow_symlinks=True)]


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
               CpioEntry(FINIT.lstrip("/"), stat.S_IFREG | 0o755, FINIT_BINARY),
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

