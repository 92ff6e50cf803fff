"""What a module load did, from the kernel's log and finit_module's errno.

The kernel messages that decide a verdict are ONE table, `KERNEL_MESSAGES`: each row is a regular
expression over the message text (the part after the "[    1.234567] " timestamp), what it means
(a link problem kind, a crash, or a notice), the errno finit_module returns when that line is the
cause, and where the kernel prints it. Messages and errnos are those of ../shared/REFERENCE.md §3,
checked against Debian's linux-source-6.1 (kernel/module/main.c, kernel/module/version.c,
kernel/module/signing.c, arch/arm64/kernel/traps.c, kernel/panic.c) and linux-source-6.12.

Generations: the symbol, version, namespace, vermagic and duplicate-export lines are worded the
same from 5.10 to 6.12 (5.10 and 5.15 print them from kernel/module.c, split into kernel/module/
in 5.19). A row's source names the versions when a line is not in all of them: the in-kernel
decompressor's lines (5.17 on; zstd's 6.2 on), and the stricter ELF checks of 6.6 and 6.12, where
6.1 said "No module found in object" for a missing .gnu.linkonce.this_module. 6.6 is read in
ACK android15-6.6's kernel/module/main.c (GrapheneOS's mirror kernel_common-6.6, b15343a8).

How the kernel reports one failing symbol matters for the reading: resolve_symbol() prints the
specific reason (disagrees about version, no symbol version, namespace not imported) and
returns an error pointer, and simplify_symbols() then prints the generic `Unknown symbol SYM
(err N)` with that pointer's errno. So the generic line is read by its err value (-2 unknown, -13
protected, -22 whatever the specific line said) and a specific line for the same symbol wins over
it.

Findings are what the log shows beyond linking while a module loads (a WARN, a sanitizer report,
a lockup, a missing firmware file, a failed probe): rows of the same table with a `finding`
class. They leave the outcome alone (a module that WARNs has loaded) and are attributed to the
module whose load window they appear in (finit copies exactly that load's records); which of
them fail a run is the caller's choice (`DEFAULT_FAIL_ON`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """A module's runtime verdict (the string values are the JSON contract)."""
    LOADED = "loaded"
    LINK_ERROR = "link-error"
    INIT_ERROR = "init-error"
    HUNG = "hung"
    CRASHED = "crashed"
    SKIPPED = "skipped"          # blocklisted (modules.blocklist)
    NOT_FOUND = "not-found"      # listed (or a hard dep) but not in modules.dep or the image
    UNLISTED = "unlisted"        # a .ko of the inputs that no load list reaches


class LinkProblemKind(enum.StrEnum):
    UNKNOWN_SYMBOL = "unknown-symbol"
    DISAGREES_ABOUT_VERSION = "disagrees-about-version"
    NO_SYMBOL_VERSION = "no-symbol-version"
    PROTECTED_SYMBOL = "protected-symbol"
    NAMESPACE_NOT_IMPORTED = "namespace-not-imported"
    VERSION_MAGIC = "version-magic"
    INVALID_FORMAT = "invalid-format"
    DUPLICATE_EXPORT = "duplicate-export"
    # Not in the list, but a load-time refusal of the same sort (MODULE_SIG_FORCE).
    SIGNATURE_REJECTED = "signature-rejected"


class Effect(enum.Enum):
    LINK = "link"        # the load fails at link time with `kind`
    CRASH = "crash"      # oops, BUG, panic
    NOTICE = "notice"    # recorded, decides nothing


class Crash(enum.StrEnum):
    """How a load ended whose finit_module never returned to its loader: it crashed, or it hung
    (the string values are the JSON contract: `android_entries.crashes`). In the order the
    verdict takes them when one wave of parallel loading has several: the worst first."""
    PANIC = "panic"      # kernel/panic.c panic(): the kernel stops (a device reboots)
    OOPS = "oops"        # an oops or BUG() the kernel went on from: only the loading task died
    HANG = "hang"        # outcome hung: the module's init did not return (the loader waits)


class FindingClass(enum.StrEnum):
    """What a finding is (the string values are the JSON contract and `--fail-on`'s words)."""
    WARNING = "warning"              # WARN(): the `[ cut here ]` ... `---[ end trace ]---` block
    BUG = "bug"                      # BUG: ..., kernel BUG at ...
    KASAN = "kasan"
    KFENCE = "kfence"
    UBSAN = "ubsan"
    KCSAN = "kcsan"
    LOCKDEP = "lockdep"
    RCU_STALL = "rcu-stall"
    HUNG_TASK = "hung-task"
    SOFT_LOCKUP = "soft-lockup"
    FIRMWARE = "firmware"            # request_firmware() found no file
    PROBE = "probe"                  # a driver's probe failed
    DEFERRED_PROBE = "deferred-probe"


# Failing a run by default: reports that the kernel's memory or locking is already wrong. A WARN,
# a missing firmware file or a failed probe is common on devices that work.
DEFAULT_FAIL_ON = frozenset({FindingClass.BUG, FindingClass.KASAN, FindingClass.KFENCE,
                             FindingClass.UBSAN, FindingClass.KCSAN, FindingClass.LOCKDEP})
# Findings that are one line; the others head a report (registers, stack, the sanitizer's
# details) whose lines become the finding's context.
ONE_LINE_FINDINGS = frozenset({FindingClass.FIRMWARE, FindingClass.PROBE,
                               FindingClass.DEFERRED_PROBE})


@dataclass(frozen=True)
class KernelMessage:
    """One row of the table. Named groups: module, symbol, detail, err (all optional)."""
    regex: re.Pattern[str]
    effect: Effect
    kind: LinkProblemKind | None
    errno: int | None        # finit_module's errno when this line is the cause; None: see the line
    source: str
    finding: FindingClass | None = None
    crash: Crash | None = None       # Effect.CRASH rows: whether the line is the panic itself


def _row(pattern: str, effect: Effect, kind: LinkProblemKind | None, errno: int | None,
         source: str, finding: FindingClass | None = None,
         crash: Crash | None = None) -> KernelMessage:
    return KernelMessage(re.compile(pattern), effect, kind, errno, source, finding, crash)


# --- errno: arm64 uses the generic table (include/uapi/asm-generic/errno-base.h, errno.h) ---

@dataclass(frozen=True)
class Errno:
    number: int
    name: str
    message: str     # strerror() wording (glibc; bionic's is the same for these)


ERRNOS: tuple[Errno, ...] = (
    Errno(1, "EPERM", "Operation not permitted"),
    Errno(2, "ENOENT", "No such file or directory"),
    Errno(3, "ESRCH", "No such process"),
    Errno(4, "EINTR", "Interrupted system call"),
    Errno(5, "EIO", "Input/output error"),
    Errno(6, "ENXIO", "No such device or address"),
    Errno(7, "E2BIG", "Argument list too long"),
    Errno(8, "ENOEXEC", "Exec format error"),
    Errno(9, "EBADF", "Bad file descriptor"),
    Errno(11, "EAGAIN", "Resource temporarily unavailable"),
    Errno(12, "ENOMEM", "Cannot allocate memory"),
    Errno(13, "EACCES", "Permission denied"),
    Errno(14, "EFAULT", "Bad address"),
    Errno(16, "EBUSY", "Device or resource busy"),
    Errno(17, "EEXIST", "File exists"),
    Errno(19, "ENODEV", "No such device"),
    Errno(20, "ENOTDIR", "Not a directory"),
    Errno(21, "EISDIR", "Is a directory"),
    Errno(22, "EINVAL", "Invalid argument"),
    Errno(24, "EMFILE", "Too many open files"),
    Errno(25, "ENOTTY", "Inappropriate ioctl for device"),
    Errno(27, "EFBIG", "File too large"),
    Errno(28, "ENOSPC", "No space left on device"),
    Errno(30, "EROFS", "Read-only file system"),
    Errno(34, "ERANGE", "Numerical result out of range"),
    Errno(35, "EDEADLK", "Resource deadlock avoided"),
    Errno(36, "ENAMETOOLONG", "File name too long"),
    Errno(38, "ENOSYS", "Function not implemented"),
    Errno(40, "ELOOP", "Too many levels of symbolic links"),
    Errno(61, "ENODATA", "No data available"),
    Errno(62, "ETIME", "Timer expired"),
    Errno(65, "ENOPKG", "Package not installed"),
    Errno(71, "EPROTO", "Protocol error"),
    Errno(74, "EBADMSG", "Bad message"),
    Errno(75, "EOVERFLOW", "Value too large for defined data type"),
    Errno(95, "EOPNOTSUPP", "Operation not supported"),
    Errno(110, "ETIMEDOUT", "Connection timed out"),
    Errno(114, "EALREADY", "Operation already in progress"),
    Errno(115, "EINPROGRESS", "Operation now in progress"),
    Errno(126, "ENOKEY", "Required key not available"),
    Errno(127, "EKEYEXPIRED", "Key has expired"),
    Errno(128, "EKEYREVOKED", "Key has been revoked"),
    Errno(129, "EKEYREJECTED", "Key was rejected by service"),
    # Kernel-internal codes (include/linux/errno.h) that an init function can still return.
    Errno(512, "ERESTARTSYS", "Unknown error 512"),
    Errno(515, "ENOIOCTLCMD", "Unknown error 515"),
    Errno(517, "EPROBE_DEFER", "Unknown error 517"),
    Errno(524, "ENOTSUPP", "Unknown error 524"),
)
_BY_NUMBER = {e.number: e for e in ERRNOS}
_BY_NAME = {e.name: e.number for e in ERRNOS}

ENOEXEC = _BY_NAME["ENOEXEC"]
EACCES = _BY_NAME["EACCES"]
EEXIST = _BY_NAME["EEXIST"]
EINVAL = _BY_NAME["EINVAL"]
EKEYREJECTED = _BY_NAME["EKEYREJECTED"]


def errno_name(number: int | None) -> str | None:
    if number is None:
        return None
    e = _BY_NUMBER.get(number)
    return e.name if e else f"E{number}"


def strerror(number: int) -> str:
    e = _BY_NUMBER.get(number)
    return e.message if e else f"Unknown error {number}"


# --- the table ---

_M = r"(?P<module>[\w-]+)"
_S = r"(?P<symbol>[^\s()]+)"
L = LinkProblemKind
KERNEL_MESSAGES: tuple[KernelMessage, ...] = (
    # resolve_symbol(): the specific reasons come first, the generic line follows for each symbol.
    _row(_M + r": disagrees about version of symbol (?P<symbol>module_layout)$", Effect.LINK,
         L.DISAGREES_ABOUT_VERSION, ENOEXEC,
         "kernel/module/version.c check_version() via check_modstruct_version()"),
    _row(_M + r": disagrees about version of symbol " + _S + "$", Effect.LINK,
         L.DISAGREES_ABOUT_VERSION, EINVAL, "kernel/module/version.c check_version()"),
    # Debian's 6.1 (its patch "module: Disable matching missing version CRC") fails the symbol;
    # upstream warns once and loads it, and then the line decides nothing (classify(): loaded).
    _row(_M + r": no symbol version for (?P<symbol>module_layout)$", Effect.LINK,
         L.NO_SYMBOL_VERSION, ENOEXEC,
         "kernel/module/version.c check_version() via check_modstruct_version()"),
    _row(_M + r": no symbol version for " + _S + "$", Effect.LINK, L.NO_SYMBOL_VERSION, EINVAL,
         "kernel/module/version.c check_version()"),
    _row(_M + r": module uses symbol \(" + _S + r"\) from namespace (?P<detail>\S+), "
         r"but does not import it\.$", Effect.LINK, L.NAMESPACE_NOT_IMPORTED, EINVAL,
         "kernel/module/main.c verify_namespace_is_imported()"),
    # Android common kernel (CONFIG_MODULE_SIG_PROTECT). Wordings seen: ACK 6.1 prints the
    # generic line with err -13 (below); android15-6.6's simplify_symbols() (and REFERENCE.md)
    # print "Protected symbol" for -EACCES.
    _row(_M + r": Protected symbol:? " + _S + r" \(err (?P<err>-?\d+)\)$", Effect.LINK,
         L.PROTECTED_SYMBOL, EACCES, "ACK android15-6.6 kernel/module/main.c simplify_symbols()"),
    _row(_M + r": Unknown symbol " + _S + r" \(err -13\)$", Effect.LINK, L.PROTECTED_SYMBOL,
         EACCES, "Android kernel/module/main.c resolve_symbol() ERR_PTR(-EACCES), "
                 "printed by simplify_symbols()"),
    _row(_M + r": Unknown symbol " + _S + r" \(err (?P<err>-?\d+)\)$", Effect.LINK,
         L.UNKNOWN_SYMBOL, None, "kernel/module/main.c simplify_symbols()"),
    _row(_M + r": exports protected symbol " + _S + "$", Effect.LINK, L.PROTECTED_SYMBOL, EACCES,
         "Android kernel/module/main.c verify_exported_symbols()"),
    _row(_M + r": exports duplicate symbol " + _S + r" \(owned by (?P<detail>[^)]*)\)$",
         Effect.LINK, L.DUPLICATE_EXPORT, ENOEXEC,
         "kernel/module/main.c verify_exported_symbols()"),
    _row(_M + r": version magic '(?P<detail>[^']*)' should be '[^']*'$", Effect.LINK,
         L.VERSION_MAGIC, ENOEXEC, "kernel/module/main.c check_modinfo()"),
    _row(r"(?P<detail>Invalid (?:ELF|architecture in ELF|module metadata).*|"
         r"ELF Spec violation.*|empty section name table)$", Effect.LINK, L.INVALID_FORMAT,
         ENOEXEC, "kernel/module/main.c elf_validity_check()"),
    _row(_M + r": (?P<detail>module has no symbols \(stripped\?\)|No module found in object)$",
         Effect.LINK, L.INVALID_FORMAT, ENOEXEC,
         "kernel/module/main.c setup_load_info() (No module found: 5.10-6.1)"),
    _row(r"(?P<detail>Invalid module architecture in ELF header: \d+|"
         r"Only one \.modinfo section must exist\.)$", Effect.LINK, L.INVALID_FORMAT, ENOEXEC,
         "6.6 kernel/module/main.c elf_validity_cache_copy(); 6.12 elf_validity_ehdr(), "
         "elf_validity_cache_index_info()"),
    _row(r"module " + _M + r": (?P<detail>(?:Only one )?\.gnu\.linkonce\.this_module .*)$",
         Effect.LINK, L.INVALID_FORMAT, ENOEXEC,
         "6.6 kernel/module/main.c elf_validity_cache_copy(); 6.12 "
         "elf_validity_cache_index_mod()"),
    # MODULE_INIT_COMPRESSED_FILE (5.17 on): the decompressor's refusals, -EINVAL (ENOMEM when
    # memory runs out, which finit's errno then says). They name no module.
    _row(r"(?P<detail>not an? (?:gzip|xz|zstd) compressed module|"
         r"decompression failed with status -?\d+|failed to initialize decompressor: -?\d+|"
         r"ZSTD-compressed data has .*|ZSTD-decompression failed with status -?\d+|"
         r"Can't initialize ZSTD stream)$", Effect.LINK, L.INVALID_FORMAT, EINVAL,
         "kernel/module/decompress.c module_decompress() (5.17 on; its zstd lines 6.2 on)"),
    _row(_M + r": Symbol " + _S + r" has an invalid section index", Effect.LINK,
         L.INVALID_FORMAT, ENOEXEC, "kernel/module/main.c simplify_symbols()"),
    _row(r"Loading of (?P<detail>.+) is rejected$", Effect.LINK, L.SIGNATURE_REJECTED,
         EKEYREJECTED, "kernel/module/signing.c module_sig_check()"),
    # Crashes: arm64 die() (arch/arm64/kernel/traps.c), __do_kernel_fault (arch/arm64/mm/fault.c),
    # BUG() (lib/bug.c, then die()), panic() (kernel/panic.c).
    _row(r"(?P<detail>Internal error: .*)$", Effect.CRASH, None, None,
         "arch/arm64/kernel/traps.c die()", crash=Crash.OOPS),
    _row(r"(?P<detail>Unable to handle kernel .*)$", Effect.CRASH, None, None,
         "arch/arm64/mm/fault.c die_kernel_fault()", crash=Crash.OOPS),
    _row(r"(?P<detail>kernel BUG at .*)$", Effect.CRASH, None, None, "lib/bug.c report_bug()",
         FindingClass.BUG, Crash.OOPS),
    # Also what an oops ends in with panic_on_oops ("Fatal exception"), an oops in interrupt
    # ("Fatal exception in interrupt"), or an oops that killed init ("Attempted to kill init!").
    _row(r"(?P<detail>Kernel panic - not syncing.*)$", Effect.CRASH, None, None,
         "kernel/panic.c panic()", crash=Crash.PANIC),
    # Findings: the kernel reports and goes on (the loader's own death, a panic or an oops line
    # above make it a crash). Sources: Linux 6.1, and later wordings where they changed.
    _row(r"BUG: KASAN: (?P<detail>.*)$", Effect.NOTICE, None, None,
         "mm/kasan/report.c print_error_description()", FindingClass.KASAN),
    _row(r"BUG: KFENCE: (?P<detail>.*)$", Effect.NOTICE, None, None,
         "mm/kfence/report.c kfence_report_error()", FindingClass.KFENCE),
    _row(r"BUG: KCSAN: (?P<detail>.*)$", Effect.NOTICE, None, None,
         "kernel/kcsan/report.c print_report()", FindingClass.KCSAN),
    # A spinning init is also a hang: the per-module timeout decides the outcome.
    _row(r"(?:watchdog: )?BUG: soft lockup - (?P<detail>.*)$", Effect.NOTICE, None, None,
         "kernel/watchdog.c watchdog_timer_fn()", FindingClass.SOFT_LOCKUP),
    _row(r"(?P<detail>BUG: .*)$", Effect.NOTICE, None, None,
         "kernel/sched/core.c __schedule_bug(), __might_resched(), mm/page_alloc.c bad_page(), "
         "kernel/locking/spinlock_debug.c spin_dump(), ...", FindingClass.BUG),
    _row(r"UBSAN: (?P<detail>.*)$", Effect.NOTICE, None, None, "lib/ubsan.c ubsan_prologue()",
         FindingClass.UBSAN),
    _row(r"(?:WARNING: |\[ BUG: )(?P<detail>possible (?:circular locking dependency|recursive "
         r"locking|irq lock inversion dependency) detected|inconsistent lock state|\S+-safe -> "
         r"\S+-unsafe lock order detected|bad unlock balance detected!|held lock freed!|"
         r"suspicious RCU usage|lock held when returning to user space!|Nested lock was not "
         r"taken|Invalid wait context)", Effect.NOTICE, None, None,
         "kernel/locking/lockdep.c print_circular_bug_header(), print_deadlock_bug(), "
         "print_usage_bug(), print_lock_invalid_wait_context(), lockdep_rcu_suspicious(), ...",
         FindingClass.LOCKDEP),
    _row(r"(?:rcu: )?INFO: (?P<detail>\S+ (?:self-)?detected (?:expedited )?stalls? on .*)$",
         Effect.NOTICE, None, None, "kernel/rcu/tree_stall.h print_cpu_stall(), "
         "print_other_cpu_stall(), kernel/rcu/tree_exp.h", FindingClass.RCU_STALL),
    _row(r"INFO: task (?P<detail>.+) blocked for more than \d+ seconds\.$", Effect.NOTICE, None,
         None, "kernel/hung_task.c check_hung_task()", FindingClass.HUNG_TASK),
    _row(r"WARNING: CPU: \d+ PID: \d+ at (?P<detail>.*)$", Effect.NOTICE, None, None,
         "kernel/panic.c __warn()", FindingClass.WARNING),
    _row(r"(?:.*: )?Direct firmware load for (?P<detail>\S+) failed with error (?P<err>-\d+)$",
         Effect.NOTICE, None, None, "drivers/base/firmware_loader/main.c _request_firmware()",
         FindingClass.FIRMWARE),
    _row(r"(?:.*: )?firmware: failed to load (?P<detail>\S+) \((?P<err>-\d+)\)$", Effect.NOTICE,
         None, None, "drivers/base/firmware_loader/main.c fw_get_filesystem_firmware(), Debian's "
         "patch firmware_class-log-every-success-and-failure", FindingClass.FIRMWARE),
    _row(r"(?P<detail>\S+: probe of \S+|.*: probe with driver \S+) failed with error "
         r"(?P<err>-\d+)$", Effect.NOTICE, None, None,
         "drivers/base/dd.c call_driver_probe() (6.1: pr_warn \"%s: probe of %s failed\"; 6.12, "
         "Debian's linux-source-6.12 6.12.95: dev_err \"probe with driver %s failed\")",
         FindingClass.PROBE),
    _row(r"(?P<detail>.+): deferred probe pending(?:: .*)?$", Effect.NOTICE, None, None,
         "drivers/base/dd.c deferred_probe_timeout_work_func()", FindingClass.DEFERRED_PROBE),
    # Notices: kept in the record, decide nothing.
    _row(_M + r": module verification failed: (?P<detail>.*)$", Effect.NOTICE, None, None,
         "kernel/module/main.c module_sig_check()"),
    _row(_M + r": module license '(?P<detail>[^']*)' taints kernel\.$", Effect.NOTICE, None, None,
         "kernel/module/main.c set_license()"),
    _row(_M + r": unknown parameter '(?P<detail>[^']*)' ignored$", Effect.NOTICE, None, None,
         "kernel/module/main.c unknown_module_param_cb()"),
    _row(r"(?P<detail>WARNING: .*)$", Effect.NOTICE, None, None, "kernel/panic.c __warn()"),
)
del L

# `[    1.234567] text` as dmesg and the console print it (printk.time=1).
TIMESTAMPED = re.compile(r"^\[\s*(?P<seconds>\d+\.\d+)\]\s?(?P<text>.*)$")


def message_text(line: str) -> str:
    """A kernel log line without its timestamp."""
    line = line.rstrip("\r\n")
    m = TIMESTAMPED.match(line)
    return m.group("text") if m else line


@dataclass(frozen=True)
class Match:
    message: KernelMessage
    line: str
    module: str
    symbol: str
    detail: str
    err: int | None


def match_line(line: str) -> Match | None:
    """The first table row that matches the line, with its fields."""
    text = message_text(line)
    for row in KERNEL_MESSAGES:
        m = row.regex.match(text)
        if m:
            g = m.groupdict()
            err = int(g["err"]) if g.get("err") else None
            return Match(row, line, (g.get("module") or "").replace("-", "_"),
                         g.get("symbol") or "", g.get("detail") or "", err)
    return None


# --- findings ---

# How a report is framed: the lines that open it and the line that closes what each opened: the
# WARN/BUG block (include/asm-generic/bug.h CUT_HERE, kernel/panic.c print_oops_end_marker()),
# and the rule of '=' around the sanitizers' reports (lockdep draws one above only). A report's
# headline comes at most REPORT_LEAD lines after its opening line (WARN()'s own message comes in
# between); a report that is not closed ends before the next report or finding, or at
# CONTEXT_LINES.
REPORT_FRAMES = (
    (re.compile(r"-+\[ cut here \]-+$"), re.compile(r"---\[ end trace [0-9a-f]+ \]---$")),
    (re.compile(r"={20,}$"), re.compile(r"={20,}$")),
)
REPORT_LEAD = 3
CONTEXT_LINES = 60


@dataclass(frozen=True)
class Finding:
    """Something wrong the kernel log showed while a module loaded (its outcome aside)."""
    kind: FindingClass
    line: str                    # the headline, as the log has it
    context: tuple[str, ...]     # the whole report, headline included; () for one-line findings


def _finding_class(line: str) -> FindingClass | None:
    m = match_line(line)
    return m.message.finding if m else None


def findings(lines: Sequence[str]) -> tuple[Finding, ...]:
    """The findings in one load's kernel log, in log order, each with its report."""
    text = [message_text(line) for line in lines]
    found: list[Finding] = []
    i = 0
    while i < len(lines):
        kind = _finding_class(lines[i])
        if kind is None:
            i += 1
            continue
        if kind in ONE_LINE_FINDINGS:
            found.append(Finding(kind, lines[i], ()))
            i += 1
            continue
        start, closes = i, None
        for j in range(i - 1, max(-1, i - 1 - REPORT_LEAD), -1):
            if frame := next((f for f in REPORT_FRAMES if f[0].match(text[j])), None):
                start, closes = j, frame[1]
                break
        end = i + 1
        while end < len(lines) and end - start < CONTEXT_LINES:
            if closes and closes.match(text[end]):
                end += 1
                break
            if any(f[0].match(text[end]) for f in REPORT_FRAMES) or _finding_class(lines[end]):
                break
            end += 1
        found.append(Finding(kind, lines[i], tuple(lines[start:end])))
        i = end
    return tuple(found)


# --- the verdict ---

@dataclass(frozen=True)
class LinkProblem:
    kind: LinkProblemKind
    symbol: str              # "" where the message names none (version magic, invalid format)
    detail: str = ""         # namespace, owner module, vermagic, ...


@dataclass(frozen=True)
class RuntimeResult:
    """One module's runtime outcome."""
    name: str                # as the kernel names it (basename, '-' as '_')
    path: str                # path in the guest, as the loader opened it
    outcome: Outcome
    errno: int | None        # finit_module's errno (init-error, link-error); None otherwise
    problems: tuple[LinkProblem, ...]
    kmsg: tuple[str, ...]    # kernel log lines produced while it loaded (dmesg format)
    modprobe_message: str    # what Android's first stage logs for it (libmodprobe wording)
    seconds: float           # guest time around finit_module (the watchdog's for hung;
                             # host wall time when the guest could not say)
    origin: str = ""         # which module set: vendor_ramdisk, system_dlkm, vendor_dlkm
    reason: str = ""         # why: skipped, hung, crashed; a dependency that did not load
    # modules.dep dependencies that did not load before it (it was tried anyway): a link-error
    # naming their symbols is their consequence, not this module's own problem
    failed_dependencies: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()     # what else its load window of the log showed

    @property
    def errno_name(self) -> str | None:
        return errno_name(self.errno)

    @property
    def crash(self) -> Crash | None:
        """How a load that never returned ended (None: finit_module returned): hung, or crashed
        with a panic, else an oops the kernel went on from (also the loader killed, or the guest
        gone, with no panic line)."""
        if self.outcome is Outcome.HUNG:
            return Crash.HANG
        if self.outcome is not Outcome.CRASHED:
            return None
        return Crash.PANIC if panicked(self.kmsg) else Crash.OOPS


def link_problems(lines: Iterable[str], module: str,
                  own_name: str = "") -> tuple[LinkProblem, ...]:
    """The link problems the log names for `module`, one per (kind, symbol), in log order.

    A line naming another module is not this module's problem (asynchronous messages can land
    between the markers); lines that name no module (Invalid ELF ...) are taken as this one's.
    The kernel names a module by its own name (modinfo name=), `own_name` when it is not the
    file's.
    """
    specific: dict[str, LinkProblem] = {}
    found: list[LinkProblem] = []
    for line in lines:
        m = match_line(line)
        if m is None or m.message.effect is not Effect.LINK:
            continue
        if m.module and m.module not in (module, own_name or module):
            continue
        kind = m.message.kind
        assert kind is not None
        problem = LinkProblem(kind, m.symbol, m.detail)
        if kind is LinkProblemKind.UNKNOWN_SYMBOL and m.symbol in specific:
            continue    # the generic line that follows a specific reason for the same symbol
        if kind is not LinkProblemKind.UNKNOWN_SYMBOL and m.symbol:
            specific[m.symbol] = problem
            # a specific line printed after a generic one for the same symbol replaces it
            found = [p for p in found if not (p.symbol == m.symbol and
                                              p.kind is LinkProblemKind.UNKNOWN_SYMBOL)]
        if problem not in found:
            found.append(problem)
    return tuple(found)


def crash_lines(lines: Iterable[str]) -> tuple[str, ...]:
    """The lines that report an oops, BUG or panic."""
    return tuple(line for line in lines
                 if (m := match_line(line)) is not None and m.message.effect is Effect.CRASH)


def panicked(lines: Iterable[str]) -> bool:
    """Whether the kernel panicked: kernel/panic.c panic() prints "Kernel panic - not syncing"
    and stops. arch/arm64/kernel/traps.c die() makes an oops a panic when in interrupt or with
    panic_on_oops, which GKI sets (gki_defconfig CONFIG_PANIC_ON_OOPS=y, read in ACK
    android12-5.10 and android14-6.1): the guest runs the image's own kernel, so its log shows
    the panic line then too. Without, die() ends in make_task_dead() (6.1): the loader dies."""
    return any((m := match_line(line)) is not None and m.message.crash is Crash.PANIC
               for line in lines)


def loader_message(path: str, params: str, errno: int | None) -> str:
    """Android's first stage log line for one load (libmodprobe_ext.cpp Insmod())."""
    if errno is None or errno == 0:
        return f"Loaded kernel module {path}"
    if errno == EEXIST:
        return f"Module {path} already loaded"
    return f"Failed to insmod '{path}' with args '{params}': {strerror(errno)}"


def classify(*, name: str, path: str, errno: int | None, kmsg: Sequence[str], seconds: float,
             params: str = "", origin: str = "", timed_out: bool = False,
             vm_died: bool = False, killed_by: int | None = None,
             own_name: str = "") -> RuntimeResult:
    """The verdict for one finit_module: errno is what it returned (0 loaded), None if it did not
    return (timed out, VM died, killed by signal `killed_by`)."""
    lines = tuple(kmsg)
    crashes = crash_lines(lines)
    problems = link_problems(lines, name, own_name)
    seen = findings(lines)
    if timed_out:
        return RuntimeResult(name, path, Outcome.HUNG, None, (), lines,
                             f"no answer from finit_module in {seconds:.1f} s", seconds, origin,
                             "init did not return before the per-module timeout", findings=seen)
    if crashes or vm_died or killed_by is not None:
        why = crashes[0] if crashes else ("the guest died (qemu exited)" if vm_died
                                          else f"the loader was killed by signal {killed_by}")
        return RuntimeResult(name, path, Outcome.CRASHED, None, problems, lines,
                             f"Failed to insmod '{path}': {message_text(why)}", seconds, origin,
                             message_text(why), findings=seen)
    assert errno is not None
    message = loader_message(path, params, errno)
    if errno in (0, EEXIST):
        return RuntimeResult(name, path, Outcome.LOADED, None, (), lines, message,
                             seconds, origin, findings=seen)
    if problems:
        return RuntimeResult(name, path, Outcome.LINK_ERROR, errno, problems, lines, message,
                             seconds, origin, findings=seen)
    return RuntimeResult(name, path, Outcome.INIT_ERROR, errno, (), lines, message, seconds,
                         origin, findings=seen)


def not_loaded(outcome: Outcome, *, name: str, path: str, reason: str,
               origin: str = "") -> RuntimeResult:
    """A module the loader did not hand to the kernel (skipped, not-found, unlisted)."""
    return RuntimeResult(name, path, outcome, None, (), (), reason, 0.0, origin, reason)


def skipped(*, name: str, path: str, reason: str, origin: str = "") -> RuntimeResult:
    return not_loaded(Outcome.SKIPPED, name=name, path=path, reason=reason, origin=origin)
