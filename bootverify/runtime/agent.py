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
- /bootverify/finit: bootverify's module loader, about 1.4 KiB of hand-written aarch64 code
  (FINIT_ASM below, assembled once with `aarch64-linux-gnu-as` and kept here as FINIT_CODE; a
  test re-assembles it when the cross assembler is installed).
  `finit PLAN FROM TO WATCHDOG_MS MARK [LINE...]` goes through the plan file's lines FROM..TO
  (TO 0: to the end; with LINEs, only those), one module at a time:
  1. writes `bootverify: loading PATH` into /dev/kmsg (debug level: in the log, not on the
     console) and moves its /dev/kmsg reader to the end of the log;
  2. forks; the child calls finit_module() on the opened file exactly once, as Android's
     libmodprobe does;
  3. waits for the child at most WATCHDOG_MS (pidfd_open + ppoll; 0 or without pidfd support
     it just waits);
  4. copies the kernel log records written since step 1 to stdout (/dev/kmsg format,
     `LEVEL,SEQ,USEC,FLAGS;TEXT`), then prints the module's mark
     `MARK:M<line>:<label>:<value>:<usec>`, label `finit` (value: finit_module's return, 0 or
     -errno), `open` (the file did not open: -errno), `killed` (the child died in
     finit_module, an oops: the signal) or `timeout` (init had not returned), usec the guest
     time around it;
  5. stops after `killed` or `timeout` (exit status 3 or 4), else goes on; exit 0 at the end.
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
- /bootverify/plan: the modules to load, one `PATH PARAMS` line each, in load order (written by
  loader.py); `bv_run N WATCHDOG_MS` loads them from line N on.
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
around each command, and `...:M<line>:<label>:<value>:<usec>` after each module of the plan,
printed by shell functions and by finit from "$M", joined in the guest: the text the host sends
never holds `@@bv<nonce>`, so the echo of a command cannot look like a marker.
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
from bootverify.readers.modules import ELF64_HEADER, ELF64_LE, ELF_MAGIC
from bootverify.readers.ramdisk import CpioEntry, write_cpio
from bootverify.runtime.protocol import MARKER_PREFIX, NONCE_PARAM  # noqa: F401 (as before)

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

INIT_SCRIPT = r"""# bootverify agent, PID 1 (rdinit=/bootverify/busybox, then `sh /bootverify/init`)
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
M="@@bv$bv_nonce"
bv_begin() { printf '%s:%s:B\n' "$M" "$1"; }
bv_end() { printf '%s:%s:E:%s\n' "$M" "$1" "$2"; }
# bv_run FROM WATCHDOG_MS: load the plan's modules from line FROM on (see agent.py: finit).
bv_run() { $B/finit $B/plan "$1" 0 "$2" "$M"; }
# bv_restore WATCHDOG_MS LINE...: load those plan lines again, quietly, after a reboot.
bv_restore() { bv_w=$1; shift; $B/finit $B/plan 1 0 "$bv_w" "" "$@"; }
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
// finit PLAN FROM TO WATCHDOG_MS MARK [LINE...]
    .text
    .globl _start
_start:
    ldr   x0, [sp]                // argc
    cmp   x0, #6
    b.lt  usage
    sub   x16, x0, #6             // how many LINEs
    add   x15, sp, #56            // &argv[6]
    ldr   x0, [sp, #24]
    bl    atoi
    mov   x10, x0                 // FROM
    ldr   x0, [sp, #32]
    bl    atoi
    mov   x12, x0                 // TO (0: to the end)
    ldr   x0, [sp, #40]
    bl    atoi
    mov   x20, x0                 // watchdog ms (0: none)
    ldr   x14, [sp, #48]          // MARK ("": quiet, for restoring)
    ldr   x1, [sp, #16]           // PLAN
    sub   sp, sp, #0x3000         // [sp] timespec, [sp+16] pollfd, [sp+32] timeout,
                                  // [sp+48] wait status, [sp+64..511] line, [sp+512] records
    mov   x0, #-100
    movz  x2, #0x8000             // O_RDONLY | O_NOFOLLOW
    movk  x2, #0x8, lsl #16       //          | O_CLOEXEC
    mov   x3, #0
    mov   x8, #56                 // openat(PLAN)
    svc   #0
    tbnz  x0, #63, usage
    mov   x17, x0
    add   x1, sp, #512
    mov   x8, #80                 // fstat
    svc   #0
    ldr   x1, [sp, #560]          // st_size
    cbz   x1, done
    mov   x13, x1
    mov   x0, #0
    mov   x2, #3                  // PROT_READ | PROT_WRITE
    mov   x3, #2                  // MAP_PRIVATE: lines get NUL-terminated in place
    mov   x4, x17
    mov   x5, #0
    mov   x8, #222                // mmap
    svc   #0
    mov   x19, x0                 // the current line
    add   x13, x0, x13            // the plan's end
    mov   x0, #-100                
    adr   x1, s_kmsg
    mov   x2, #0x802              // O_RDWR | O_NONBLOCK
    orr   x2, x2, #0x80000        // | O_CLOEXEC
    mov   x3, #0
    mov   x8, #56                 // openat("/dev/kmsg"); < 0: carry on without it
    svc   #0
    mov   x27, x0
    mov   x0, #0                  // a page shared with each child, for its result
    mov   x1, #4096
    mov   x2, #3
    mov   x3, #0x21               // MAP_SHARED | MAP_ANONYMOUS
    mov   x4, #-1
    mov   x5, #0
    mov   x8, #222
    svc   #0
    mov   x29, x0
    mov   x9, #0                  // line number
next:
    cmp   x19, x13
    b.hs  done
    mov   x22, x19                // PATH
    adr   x23, empty              // PARAMS
1:  cmp   x19, x13
    b.hs  3f
    ldrb  w0, [x19]
    cmp   w0, #10
    b.eq  3f
    cmp   w0, #32
    b.ne  2f
    adr   x1, empty
    cmp   x23, x1
    b.ne  2f
    strb  wzr, [x19]              // the first space ends PATH
    add   x23, x19, #1
2:  add   x19, x19, #1
    b     1b
3:  cmp   x19, x13
    b.hs  4f
    strb  wzr, [x19]              // the newline ends the line
    add   x19, x19, #1
4:  add   x9, x9, #1
    ldrb  w0, [x22]
    cbz   w0, next                // an empty line
    cmp   x9, x10
    b.lo  next
    cbz   x12, 5f
    cmp   x9, x12
    b.hi  done
5:  cbz   x16, 7f                 // no LINE list: every line
    mov   x17, #0                 // else only the listed lines
6:  cmp   x17, x16
    b.hs  next
    ldr   x0, [x15, x17, lsl #3]
    bl    atoi
    cmp   x0, x9
    b.eq  7f
    add   x17, x17, #1
    b     6b
7:  tbnz  x27, #63, 9f            // record "<15>bootverify: loading PATH" (debug level)
    add   x1, sp, #64
    adr   x2, s_mark
    mov   x3, #0
8:  ldrb  w4, [x2, x3]
    cbz   w4, 81f
    strb  w4, [x1, x3]
    add   x3, x3, #1
    b     8b
81: mov   x5, #0
82: ldrb  w4, [x22, x5]
    cbz   w4, 83f
    cmp   x5, #400
    b.ge  83f
    strb  w4, [x1, x3]
    add   x3, x3, #1
    add   x5, x5, #1
    b     82b
83: mov   w4, #10                 // '\n' ends the record (else it stays open, past SEEK_END)
    strb  w4, [x1, x3]
    add   x3, x3, #1
    mov   x0, x27
    mov   x2, x3
    mov   x8, #64
    svc   #0
    mov   x0, x27
    mov   x1, #0
    mov   x2, #2                  // lseek(kmsg, 0, SEEK_END): read only what comes next
    mov   x8, #62
    svc   #0
9:  bl    now
    mov   x28, x0
    mov   x0, #17                 // clone(SIGCHLD, 0, 0, 0, 0): fork
    mov   x1, #0
    mov   x2, #0
    mov   x3, #0
    mov   x4, #0
    mov   x8, #220
    svc   #0
    cbnz  x0, parent
    bl    load                    // the child: finit_module, result in the shared page
    mov   x0, #0
    mov   x8, #93
    svc   #0
parent:
    tbnz  x0, #63, nofork
    mov   x18, x0                 // child pid
    cbz   x20, waitchild
    mov   x1, #0
    mov   x8, #434                // pidfd_open(pid, 0)
    svc   #0
    tbnz  x0, #63, waitchild      // unsupported: wait without a watchdog
    mov   x17, x0
    str   w0, [sp, #16]           // pollfd: fd, events POLLIN, revents 0
    mov   w1, #1
    str   w1, [sp, #20]
    mov   x4, #1000
    udiv  x2, x20, x4
    msub  x3, x2, x4, x20
    movz  x4, #0x4240
    movk  x4, #0xf, lsl #16       // 1000000
    mul   x3, x3, x4
    stp   x2, x3, [sp, #32]
    add   x0, sp, #16
    mov   x1, #1
    add   x2, sp, #32
    mov   x3, #0
    mov   x4, #0
    mov   x8, #73                 // ppoll
    svc   #0
    mov   x21, x0
    mov   x0, x17
    mov   x8, #57                 // close(pidfd)
    svc   #0
    cbnz  x21, waitchild          // the child ended (or ppoll failed: just wait)
    adr   x24, s_timeout          // the watchdog: init has not returned
    mov   x25, #7
    mov   x21, #0
    mov   x11, #4
    b     report
waitchild:
    mov   x0, x18
    add   x1, sp, #48
    mov   x2, #0
    mov   x3, #0
    mov   x8, #260                // wait4(pid, &status, 0, NULL)
    svc   #0
    ldr   w1, [sp, #48]
    and   w2, w1, #0x7f           // WTERMSIG
    cbz   w2, exited
    adr   x24, s_killed           // killed: an oops in finit_module
    mov   x25, #6
    mov   x21, x2
    mov   x11, #3
    b     report
nofork:
    bl    load
exited:
    ldp   x21, x1, [x29]          // the child's return value, 1 if openat failed
    adr   x24, s_finit
    mov   x25, #5
    cbz   x1, 10f
    adr   x24, s_open
    mov   x25, #4
10: cmp   x21, #0
    cset  x11, ne
report:
    bl    now
    sub   x26, x0, x28            // ns
    ldrb  w0, [x14]
    cbz   w0, quiet
    tbnz  x27, #63, 12f
11: mov   x0, x27                 // copy the new kernel log records to stdout
    add   x1, sp, #512
    mov   x2, #8192
    mov   x8, #63                 // read: one record per call
    svc   #0
    cmn   x0, #32                 // -EPIPE: older records were overwritten; read on
    b.eq  11b
    cmp   x0, #0
    b.le  12f                     // -EAGAIN: no more
    mov   x2, x0
    mov   x0, #1
    add   x1, sp, #512
    mov   x8, #64
    svc   #0
    b     11b
12: add   x1, sp, #496            // "MARK:M<line>:<label>:<value>:<usec>\n", built backwards
    mov   w2, #10
    strb  w2, [x1]
    mov   x2, #1000
    udiv  x0, x26, x2
    bl    utoa
    bl    colon
    mov   x0, x21
    tbz   x21, #63, 13f
    neg   x0, x21
13: bl    utoa
    tbz   x21, #63, 14f
    mov   w2, #45                 // '-'
    sub   x1, x1, #1
    strb  w2, [x1]
14: bl    colon
    mov   x3, x25                 // the label
15: sub   x3, x3, #1
    ldrb  w2, [x24, x3]
    sub   x1, x1, #1
    strb  w2, [x1]
    cbnz  x3, 15b
    bl    colon
    mov   x0, x9
    bl    utoa
    mov   w2, #77                 // 'M'
    sub   x1, x1, #1
    strb  w2, [x1]
    bl    colon
    mov   x3, #0                  // MARK, copied backwards
16: ldrb  w2, [x14, x3]
    cbz   w2, 17f
    add   x3, x3, #1
    b     16b
17: sub   x3, x3, #1
    ldrb  w2, [x14, x3]
    sub   x1, x1, #1
    strb  w2, [x1]
    cbnz  x3, 17b
    b     19f
quiet:
    cbz   x11, 20f                // restoring: name only what failed
    add   x1, sp, #496
    mov   w2, #10
    strb  w2, [x1]
    mov   x0, x9
    bl    utoa
    adr   x24, s_failed
    mov   x3, #16
18: sub   x3, x3, #1
    ldrb  w2, [x24, x3]
    sub   x1, x1, #1
    strb  w2, [x1]
    cbnz  x3, 18b
19: add   x2, sp, #497
    sub   x2, x2, x1
    mov   x0, #1
    mov   x8, #64                 // write(1, line)
    svc   #0
20: cmp   x11, #3                 // killed or timed out: stop here
    b.lo  next
    mov   x0, x11
    b     exit
done:
    mov   x0, #0
    b     exit
usage:
    mov   x0, #2
exit:
    mov   x8, #93
    svc   #0
load:                             // openat + finit_module; [x29] = return, [x29+8] = 1 if openat
    mov   x0, #-100
    mov   x1, x22
    movz  x2, #0x8000             // O_RDONLY | O_NOFOLLOW
    movk  x2, #0x8, lsl #16       //          | O_CLOEXEC
    mov   x3, #0
    mov   x8, #56
    svc   #0
    mov   x5, #1
    tbnz  x0, #63, 1f
    mov   x1, x23
    mov   x2, #0
    mov   x8, #273                // finit_module(fd, params, 0)
    svc   #0
    mov   x5, #0
1:  stp   x0, x5, [x29]
    ret
now:                              // x0 = CLOCK_MONOTONIC in ns (timespec at [sp])
    mov   x0, #1
    mov   x1, sp
    mov   x8, #113                // clock_gettime
    svc   #0
    ldp   x2, x3, [sp]
    movz  x4, #0xca00
    movk  x4, #0x3b9a, lsl #16    // 1000000000
    madd  x0, x2, x4, x3
    ret
utoa:                             // decimal digits of x0 before x1; x1 = first digit
    mov   x4, #10
1:  udiv  x5, x0, x4
    msub  x6, x5, x4, x0
    add   w6, w6, #48
    sub   x1, x1, #1
    strb  w6, [x1]
    mov   x0, x5
    cbnz  x0, 1b
    ret
colon:                            // ':' before x1
    mov   w2, #58
    sub   x1, x1, #1
    strb  w2, [x1]
    ret
atoi:                             // x0 = the decimal number at x0 (up to a non-digit)
    mov   x1, x0
    mov   x0, #0
    mov   x3, #10
1:  ldrb  w2, [x1], #1
    sub   w2, w2, #48
    cmp   w2, #9
    b.hi  2f
    madd  x0, x0, x3, x2
    b     1b
2:  ret
s_kmsg:
    .asciz "/dev/kmsg"
s_mark:
    .asciz "<15>bootverify: loading "
s_failed:
    .ascii "restore failed: "
s_finit:
    .ascii "finit"
s_open:
    .ascii "open"
s_killed:
    .ascii "killed"
s_timeout:
    .ascii "timeout"
empty:
    .byte 0
"""
FINIT_CODE = bytes.fromhex(
    "e00340f91f1800f14b230054101800d1efe30091e00f40f93f010094ea0300aae01340f93c010094ec0300aa"
    "e01740f939010094f40300aaee1b40f9e10b40f9ff0f40d1600c8092020090d20201a0f2030080d2080780d2"
    "010000d4a020f8b7f10300aae1030891080a80d2010000d4e11b41f9a11f00b4ed0301aa000080d2620080d2"
    "430080d2e40311aa050080d2c81b80d2010000d4f30300aa0d000d8b600c8092c1240010420081d242006db2"
    "030080d2080780d2010000d4fb0300aa000080d2010082d2620080d2230480d204008092050080d2c81b80d2"
    "010000d4fd0300aa090080d27f020debe21b0054f60313aa972400307f020deba2010054600240391f280071"
    "400100541f800071c100005481230030ff0201eb610000547f0200397706009173060091f3ffff177f020deb"
    "620000547f0200397306009129050091c002403900fdff343f010aebc3fcff546c0000b43f010ceb68180054"
    "500100b4110080d23f0210ebe2fbff54e07971f8e80000941f0009eb6000005431060091f9ffff17db03f8b7"
    "e1030191a21d0050030080d244686338840000342468233863040091fcffff17050080d2c46a6538e4000034"
    "bf4006f1aa0000542468233863040091a5040091f9ffff17440180522468233863040091e0031baae20303aa"
    "080880d2010000d4e0031baa010080d2420080d2c80780d2010000d4af000094fc0300aa200280d2010080d2"
    "020080d2030080d2040080d2881b80d2010000d4a00000b595000094000080d2a80b80d2010000d42006f8b7"
    "f20300aa340400b4010080d2483680d2010000d4a003f8b7f10300aae01300b921008052e11700b9047d80d2"
    "820ac49a43d0049b044888d2e401a0f2637c049be20f02a9e0430091210080d2e2830091030080d2040080d2"
    "280980d2010000d4f50300aae00311aa280780d2010000d4d50000b578160050f90080d2150080d28b0080d2"
    "18000014e00312aae1c30091020080d2030080d2882080d2010000d4e13340b922180012e200003498140010"
    "d90080d2f50302aa6b0080d20a00001460000094b50740a958130070b90080d2610000b438130010990080d2"
    "bf0200f1eb079f9a670000941a001ccbc0014039200700341b02f8b7e0031baae1030891020084d2e80780d2"
    "010000d41f8000b140ffff541f0000f1ed000054e20300aa200080d2e1030891080880d2010000d4f2ffff17"
    "e1c307914201805222000039027d80d2400bc29a570000945f000094e00315aa5500f8b6e00315cb52000094"
    "9500f8b6a2058052210400d12200003956000094e30319aa630400d1026b6338210400d12200003983ffffb5"
    "4f000094e00309aa44000094a2098052210400d12200003949000094030080d2c26963386200003463040091"
    "fdffff17630400d1c2696338210400d12200003983ffffb50e0000144b0200b4e1c307914201805222000039"
    "e00309aa2f000094b8090070030280d2630400d1026b6338210400d12200003983ffffb5e2c70791420001cb"
    "200080d2080880d2010000d47f0d00f163e4ff54e0030baa04000014000080d202000014400080d2a80b80d2"
    "010000d4600c8092e10316aa020090d20201a0f2030080d2080780d2010000d4250080d2c000f8b7e10317aa"
    "020080d2282280d2010000d4050080d2a01700a9c0035fd6200080d2e1030091280e80d2010000d4e20f40a9"
    "044099d24473a7f2400c049bc0035fd6440180d20508c49aa680049bc6c00011210400d126000039e00305aa"
    "40ffffb5c0035fd642078052210400d122000039c0035fd6e10300aa000080d2430180d22214403842c00051"
    "5f240071680000540008039bfbffff17c0035fd62f6465762f6b6d7367003c31353e626f6f74766572696679"
    "3a206c6f6164696e672000726573746f7265206661696c65643a2066696e69746f70656e6b696c6c65647469"
    "6d656f757400")

EM_AARCH64 = 183
ELF_BASE = 0x400000
_PHDR = struct.Struct("<IIQQQQQQ")
PT_LOAD, PT_INTERP = 1, 3
ASSEMBLE_TIMEOUT = 60


def finit_elf() -> bytes:
    """FINIT_CODE as a static ELF64 aarch64 executable: one R+X PT_LOAD of the whole file."""
    code_offset = ELF64_HEADER.size + _PHDR.size
    size = code_offset + len(FINIT_CODE)
    ident = ELF_MAGIC + bytes([*ELF64_LE, 1, 0]) + bytes(8)     # ELFCLASS64, LSB, v1, SYSV
    ehdr = ELF64_HEADER.pack(ident, 2, EM_AARCH64, 1, ELF_BASE + code_offset, ELF64_HEADER.size,
                             0, 0, ELF64_HEADER.size, _PHDR.size, 1, 0, 0, 0)
    phdr = _PHDR.pack(PT_LOAD, 5, 0, ELF_BASE, ELF_BASE, size, size, 0x10000)
    return ehdr + phdr + FINIT_CODE


def assemble_finit(workdir: Path) -> bytes | None:
    """FINIT_ASM assembled with the cross binutils, or None when they are not installed."""
    if not (shutil.which("aarch64-linux-gnu-as") and shutil.which("aarch64-linux-gnu-objcopy")):
        return None
    src, obj, raw = workdir / "finit.S", workdir / "finit.o", workdir / "finit.bin"
    src.write_text(FINIT_ASM)
    for cmd in (["aarch64-linux-gnu-as", "-o", str(obj), str(src)],
                ["aarch64-linux-gnu-objcopy", "-O", "binary", str(obj), str(raw)]):
        subprocess.run(cmd, check=True, capture_output=True, timeout=ASSEMBLE_TIMEOUT)
    return raw.read_bytes()


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
