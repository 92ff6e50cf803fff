"""The console protocol between the host and the agent: its words, markers and labels, as data.

The agent's side is written in shell and in finit (agent.py), which cannot import this module;
they print exactly what is described here, and everything on the host that writes or reads the
protocol takes it from here.

A run has a nonce (eight hex digits) that reaches the guest as `bv_nonce=<nonce>` on the kernel
command line. The agent joins `@@bv` and the nonce in the guest, so the text the host sends
never holds a marker, and neither the echo of a command nor the kernel's printing of its command
line can look like one. Lines the agent prints, MARKER being `@@bv<nonce>`:

    MARKER:ready                          once, when the agent's shell is up
    MARKER$                               its prompt (no newline), before each command
    MARKER:SEQ:B                          before command SEQ
    MARKER:SEQ:E:STATUS                   after it, STATUS its exit status as the shell had it
    MARKER:M<line>:<label>:<value>:<usec> after each module of a `bv_run`, <line> its plan
                                          line, <usec> the guest time around finit_module

The host sends one line per command, `bv_begin SEQ; COMMAND; bv_end SEQ $?`; SEQ grows with
every command, across boots too, so that a late line from an earlier command cannot end a later
one. The commands that load are

    bv_run FROM ALONE WATCHDOG_MS         the plan's modules from line FROM on, each followed by
                                          its mark (a wave's: the wave's records, then its
                                          marks), those up to line ALONE one at a time (the
                                          rest of a wave the guest died in; 0: none); it stops
                                          after `killed` or `timeout`
    bv_restore WATCHDOG_MS LINE...        those lines again after a reboot, quietly: no records,
                                          no marks, only `restore failed: <line>` for a module
                                          that did not load

A module mark's label says what happened to it (`Label`); before the mark come the kernel log
records its load wrote, as /dev/kmsg gives them (`LEVEL,SEQ,USEC,FLAGS;TEXT`, dictionary lines
indented below; the last is the agent's own `bootverify: loaded`, which ends the window), and
whatever else reached the console meanwhile (EMERG and ALERT messages, an oops as it happened).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MARKER_PREFIX = "@@bv"
NONCE_PARAM = "bv_nonce"            # the kernel command line parameter carrying the nonce
READY = "ready"
BEGIN = "bv_begin"
END = "bv_end"
RUN = "bv_run"
RESTORE = "bv_restore"
RESTORE_FAILED = "restore failed: "
# Lines end "\r\r\n" on the host: the guest tty and the host pty both add a CR.
EOL = r"\r*\n"


class Label(enum.StrEnum):
    """What a module mark says happened to the module."""
    FINIT = "finit"         # finit_module returned: value 0 or -errno
    OPEN = "open"           # the file did not open: value -errno
    KILLED = "killed"       # the loading process died in finit_module (an oops): value the signal
    TIMEOUT = "timeout"     # init had not returned within the watchdog: value 0


# The agent's own kernel log records (finit.c's announce() and end_window()): not the module's.
AGENT_RECORD = "bootverify: "
KMSG_RECORD = re.compile(r"^(?P<level>\d+),(?P<seq>\d+),(?P<usec>\d+),[^;]*;(?P<text>.*)$")
RESULT = re.compile(rf"^(?P<label>{'|'.join(Label)}):(?P<value>-?\d+):(?P<usec>\d+)$")


@dataclass(frozen=True)
class Markers:
    """One run's markers: the lines the agent prints, as regular expressions for the console
    (with its line ends) and, for module marks, as text."""
    nonce: str

    @property
    def marker(self) -> str:
        return MARKER_PREFIX + self.nonce

    def _m(self) -> str:
        return re.escape(self.marker)

    def ready(self) -> str:
        return f"{self._m()}:{READY}{EOL}"

    def begin(self, seq: int) -> str:
        return f"{self._m()}:{seq}:B{EOL}"

    def end(self, seq: int) -> str:
        """Group 1: the command's exit status."""
        return f"{self._m()}:{seq}:E:(-?\\d+){EOL}"

    def module(self) -> str:
        """Group 1: the plan line; group 2: the result fields (`RESULT`)."""
        return f"{self._m()}:M(\\d+):(\\S*){EOL}"

    def any(self) -> str:
        """Any marker of a command or module: groups seq and status (status None: a begin
        marker), or line and result."""
        return (f"{self._m()}:(?:(?P<seq>\\d+):(?:B|E:(?P<status>-?\\d+))"
                f"|M(?P<line>\\d+):(?P<result>\\S*)){EOL}")

    def module_line(self, line: int, result: str) -> str:
        return f"{self.marker}:M{line}:{result}"


def nonce_of(text: str) -> str | None:
    """The nonce of a recorded console log (from the kernel command line it shows)."""
    found = re.search(rf"\b{NONCE_PARAM}=([0-9a-f]+)", text)
    return found.group(1) if found else None


def command_line(seq: int, command: str) -> str:
    return f"{BEGIN} {seq}; {command}; {END} {seq} $?"


def run_command(start: int, alone_to: int, watchdog_ms: int) -> str:
    return f"{RUN} {start} {alone_to} {watchdog_ms}"


def restore_command(watchdog_ms: int, lines: Iterable[int]) -> str:
    return " ".join([RESTORE, str(watchdog_ms), *map(str, lines)])


def restore_failures(lines: Iterable[str]) -> list[int]:
    """The plan lines a `bv_restore` could not load again."""
    return [int(x.removeprefix(RESTORE_FAILED)) for x in lines if x.startswith(RESTORE_FAILED)]


@dataclass(frozen=True)
class LoadOutput:
    """What the agent printed for one module, taken apart."""
    label: Label | None            # None: no mark (hung, died)
    value: int | None              # finit_module's / openat's return (0 or -errno); a signal
    seconds: float | None          # guest time around finit_module
    kmsg: tuple[str, ...]          # the kernel log records of the load, as dmesg prints them
    console: tuple[str, ...]       # other console lines (EMERG/ALERT, an oops as it happened)


def dmesg_line(usec: int, text: str) -> str:
    return f"[{usec // 1000000:5d}.{usec % 1000000:06d}] {text}"


def parse_load_output(lines: Sequence[str], result: str = "") -> LoadOutput:
    """A module's output (kernel log records, console lines) and its mark's result fields."""
    records: list[str] = []
    other: list[str] = []
    for line in lines:
        if m := KMSG_RECORD.match(line):
            if not m.group("text").startswith(AGENT_RECORD):
                records.append(dmesg_line(int(m.group("usec")), m.group("text")))
        elif line.startswith(" ") and records:
            continue                     # a record's dictionary line (SUBSYSTEM=..., DEVICE=...)
        elif line.strip():
            other.append(line)
    r = RESULT.match(result)
    if r is None:
        return LoadOutput(None, None, None, tuple(records), tuple(other))
    return LoadOutput(Label(r.group("label")), int(r.group("value")), int(r.group("usec")) / 1e6,
                      tuple(records), tuple(other))
