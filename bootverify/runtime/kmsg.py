"""What a module load did, from the kernel's log and finit_module's errno.

The kernel messages that decide a verdict are ONE table, `KERNEL_MESSAGES`: each row is a regular
expression over the message text (the part after the "[    1.234567] " timestamp), what it means
(a link problem kind, a crash, or a notice), the errno finit_module returns when that line is the
cause, and where Linux 6.1 (or the Android common kernel) prints it. Messages and errnos are those
of ../shared/REFERENCE.md §3, checked against Debian's linux-source-6.1 (kernel/module/main.c,
kernel/module/version.c, kernel/module/signing.c, arch/arm64/kernel/traps.c, kernel/panic.c).

How the kernel reports one failing symbol matters for the reading: resolve_symbol() prints the
specific reason (disagrees about version, no symbol version, namespace not imported) and
returns an error pointer, and simplify_symbols() then prints the generic `Unknown symbol SYM
(err N)` with that pointer's errno. So the generic line is read by its err value (-2 unknown, -13
protected, -22 whatever the specific line said) and a specific line for the same symbol wins over
it.
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


@dataclass(frozen=True)
class KernelMessage:
    """One row of the table. Named groups: module, symbol, detail, err (all optional)."""
    regex: re.Pattern[str]
    effect: Effect
    kind: LinkProblemKind | None
    errno: int | None        # finit_module's errno when this line is the cause; None: see the line
    source: str


def _row(pattern: str, effect: Effect, kind: LinkProblemKind | None, errno: int | None,
         source: str) -> KernelMessage:
    return KernelMessage(re.compile(pattern), effect, kind, errno, source)


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
    # generic line with err -13 (below); a later patch and REFERENCE.md name it "Protected symbol".
    _row(_M + r": Protected symbol:? " + _S + r" \(err (?P<err>-?\d+)\)$", Effect.LINK,
         L.PROTECTED_SYMBOL, EACCES, "Android kernel/module/main.c simplify_symbols()"),
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
         Effect.LINK, L.INVALID_FORMAT, ENOEXEC, "kernel/module/main.c setup_load_info()"),
    _row(_M + r": Symbol " + _S + r" has an invalid section index", Effect.LINK,
         L.INVALID_FORMAT, ENOEXEC, "kernel/module/main.c simplify_symbols()"),
    _row(r"Loading of (?P<detail>.+) is rejected$", Effect.LINK, L.SIGNATURE_REJECTED,
         EKEYREJECTED, "kernel/module/signing.c module_sig_check()"),
    # Crashes: arm64 die() (arch/arm64/kernel/traps.c), __do_kernel_fault (arch/arm64/mm/fault.c),
    # BUG() (lib/bug.c), panic() (kernel/panic.c). "watchdog: BUG: soft lockup" is not anchored
    # here on purpose: a spinning init is a hang, and the per-module timeout says so.
    _row(r"(?P<detail>Internal error: .*)$", Effect.CRASH, None, None,
         "arch/arm64/kernel/traps.c die()"),
    _row(r"(?P<detail>Unable to handle kernel .*)$", Effect.CRASH, None, None,
         "arch/arm64/mm/fault.c die_kernel_fault()"),
    _row(r"(?P<detail>kernel BUG at .*)$", Effect.CRASH, None, None, "lib/bug.c report_bug()"),
    _row(r"(?P<detail>BUG: .*)$", Effect.CRASH, None, None, "various BUG reports"),
    _row(r"(?P<detail>Kernel panic - not syncing.*)$", Effect.CRASH, None, None,
         "kernel/panic.c panic()"),
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

    @property
    def errno_name(self) -> str | None:
        return errno_name(self.errno)


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
    if timed_out:
        return RuntimeResult(name, path, Outcome.HUNG, None, (), lines,
                             f"no answer from finit_module in {seconds:.1f} s", seconds, origin,
                             "init did not return before the per-module timeout")
    if crashes or vm_died or killed_by is not None:
        why = crashes[0] if crashes else ("the guest died (qemu exited)" if vm_died
                                          else f"the loader was killed by signal {killed_by}")
        return RuntimeResult(name, path, Outcome.CRASHED, None, problems, lines,
                             f"Failed to insmod '{path}': {message_text(why)}", seconds, origin,
                             message_text(why))
    assert errno is not None
    message = loader_message(path, params, errno)
    if errno in (0, EEXIST):
        return RuntimeResult(name, path, Outcome.LOADED, None, (), lines, message,
                             seconds, origin)
    if problems:
        return RuntimeResult(name, path, Outcome.LINK_ERROR, errno, problems, lines, message,
                             seconds, origin)
    return RuntimeResult(name, path, Outcome.INIT_ERROR, errno, (), lines, message, seconds,
                         origin)


def not_loaded(outcome: Outcome, *, name: str, path: str, reason: str,
               origin: str = "") -> RuntimeResult:
    """A module the loader did not hand to the kernel (skipped, not-found, unlisted)."""
    return RuntimeResult(name, path, outcome, None, (), (), reason, 0.0, origin, reason)


def skipped(*, name: str, path: str, reason: str, origin: str = "") -> RuntimeResult:
    return not_loaded(Outcome.SKIPPED, name=name, path=path, reason=reason, origin=origin)
