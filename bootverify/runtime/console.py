"""Driving the agent's shell over the guest's serial console (pexpect).

Protocol: every command goes out as one line

    bv_begin SEQ; COMMAND; bv_end SEQ $?

and the agent's shell functions print `@@bv<nonce>:SEQ:B` before and `@@bv<nonce>:SEQ:E:STATUS`
after it, STATUS being the command's exit status as the shell computed it. The nonce reaches the
guest on the kernel command line and the marker is joined from pieces inside the shell functions,
so neither the echo of the command (the agent turns echo off anyway) nor the kernel's printing of
its command line can look like a marker; SEQ grows with every command, so a late line from an
earlier one cannot end a later one. Everything between the two markers is the command's output.
Kernel messages can still reach the console in the middle of it (the agent lets only EMERG and
ALERT through, and an oops raises the level): they become output lines, which is why module loads
read the kernel log with dmesg between their own /dev/kmsg markers instead of trusting console
order (loader.py). Lines end "\\r\\r\\n" on the host (the guest tty and the host pty both add a
CR); CRs are dropped.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import pexpect

from bootverify.errors import InfraError
from bootverify.runtime.agent import MARKER_PREFIX

TAIL_LINES = 40          # console lines kept for error messages


@dataclass(frozen=True)
class CommandResult:
    seq: int
    status: int                 # the shell's $? for the command
    lines: tuple[str, ...]      # output between the markers, CRs dropped
    seconds: float              # host wall time from sending to the end marker


class ConsoleError(Exception):
    """A command did not complete; `lines` is what it printed before."""

    def __init__(self, message: str, seq: int, lines: tuple[str, ...], seconds: float) -> None:
        super().__init__(message)
        self.seq = seq
        self.lines = lines
        self.seconds = seconds


class CommandTimeout(ConsoleError):
    """No end marker within the timeout: the guest is busy or hung."""


class GuestDied(ConsoleError):
    """The console closed (qemu exited: a panic with panic=-1 and -no-reboot, or a kill)."""


def split_lines(text: str) -> tuple[str, ...]:
    """Console text to lines: CRs dropped, a trailing partial line kept."""
    text = text.replace("\r", "")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return tuple(lines)


class _Tail:
    """The last console lines, fed with everything read (pexpect's logfile_read interface)."""

    def __init__(self, also: TextIO | None) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.partial = ""
        self.also = also

    def write(self, data: str) -> None:
        data = data.replace("\r", "")
        if self.also is not None:
            self.also.write(data)
        parts = (self.partial + data).split("\n")
        self.partial = parts.pop()
        self.lines.extend(parts)

    def flush(self) -> None:
        if self.also is not None:
            self.also.flush()

    def last(self, n: int = TAIL_LINES) -> list[str]:
        out = list(self.lines) + ([self.partial] if self.partial else [])
        return out[-n:]


class Console:
    """The agent's shell on a pexpect child (qemu with the serial console on stdio)."""

    def __init__(self, child: pexpect.spawn, nonce: str, log: TextIO | None = None,
                 first_seq: int = 1) -> None:
        self.child = child
        self.marker = MARKER_PREFIX + nonce
        self._m = re.escape(self.marker)
        self.tail = _Tail(log)
        child.logfile_read = self.tail
        child.delaybeforesend = None      # pexpect sleeps 50 ms before each send by default
        self.seq = first_seq - 1

    def last_lines(self, n: int = TAIL_LINES) -> list[str]:
        return self.tail.last(n)

    def wait_ready(self, timeout: float) -> float:
        """Wait for the agent's ready line; seconds waited. InfraError with the last console
        lines when it does not come or qemu exits."""
        start = time.monotonic()
        try:
            self.child.expect(self._m + r":ready\r*\n", timeout=timeout)
        except pexpect.TIMEOUT:
            raise InfraError(self._failure(f"no agent prompt within {timeout:.0f} s")) from None
        except pexpect.EOF:
            raise InfraError(self._failure("qemu exited before the agent was ready")) from None
        return time.monotonic() - start

    def _failure(self, what: str) -> str:
        lines = self.last_lines(20)
        shown = "\n".join(f"  | {line}" for line in lines) if lines else "  | (no output)"
        return f"{what}; last console lines:\n{shown}"

    def run(self, command: str | Callable[[int], str], timeout: float) -> CommandResult:
        """Run one command line in the agent's shell; command may be a function of the sequence
        number (loader markers use it). Raises CommandTimeout or GuestDied."""
        self.seq += 1
        seq = self.seq
        text = command(seq) if callable(command) else command
        if "\n" in text:
            raise ValueError("one command line at a time")
        start = time.monotonic()
        self.child.sendline(f"bv_begin {seq}; {text}; bv_end {seq} $?")
        end = re.compile(self._m + f":{seq}:E:(-?\\d+)\r*\n")
        try:
            self.child.expect(end, timeout=timeout)
        except pexpect.TIMEOUT:
            raise CommandTimeout(f"command {seq} gave no answer in {timeout:.1f} s", seq,
                                 self._since_begin(self._pending(), seq),
                                 time.monotonic() - start) from None
        except pexpect.EOF:
            raise GuestDied(f"console closed during command {seq}", seq,
                            self._since_begin(self._pending(), seq),
                            time.monotonic() - start) from None
        seconds = time.monotonic() - start
        assert isinstance(self.child.before, str)
        return CommandResult(seq, int(self.child.match.group(1)),
                             self._since_begin(self.child.before, seq), seconds)

    def _pending(self) -> str:
        """After a TIMEOUT or EOF pexpect leaves everything read since the last match in before."""
        return self.child.before if isinstance(self.child.before, str) else ""

    def _since_begin(self, text: str, seq: int) -> tuple[str, ...]:
        """The output after this command's begin marker (all of it if the marker is missing)."""
        begin = re.search(self._m + f":{seq}:B\r*\n", text)
        return split_lines(text[begin.end():] if begin else text)


@dataclass(frozen=True)
class Exchange:
    """One command as a console log shows it afterwards."""
    seq: int
    status: int | None          # None: no end marker (the guest hung or died)
    lines: tuple[str, ...]


def boot_banner(number: int, reason: str) -> str:
    """The line the console log gets before each boot's output."""
    return f"{BOOT_BANNER} {number} ({reason}) ===\n"


BOOT_BANNER = "=== bootverify: boot"


def transcript(text: str, nonce: str) -> list[Exchange]:
    """The commands in a recorded console log, with their output (for logs read afterwards:
    tests, reports). A command without an end marker runs to the next begin marker or boot."""
    m = re.escape(MARKER_PREFIX + nonce)
    marker = re.compile(m + r":(\d+):(B|E:(-?\d+))\r*\n|^" + re.escape(BOOT_BANNER) + ".*\n",
                        re.MULTILINE)
    out: list[Exchange] = []
    open_seq: int | None = None
    start = 0
    for x in marker.finditer(text):
        if x.group(1) is None:          # a new boot: whatever was open ends here
            if open_seq is not None:
                out.append(Exchange(open_seq, None, split_lines(text[start:x.start()])))
                open_seq = None
            continue
        seq = int(x.group(1))
        if x.group(2) == "B":
            if open_seq is not None:
                out.append(Exchange(open_seq, None, split_lines(text[start:x.start()])))
            open_seq, start = seq, x.end()
        elif open_seq == seq:
            out.append(Exchange(seq, int(x.group(3)), split_lines(text[start:x.start()])))
            open_seq = None
    if open_seq is not None:
        out.append(Exchange(open_seq, None, split_lines(text[start:])))
    return out


def nonce_of(text: str) -> str | None:
    """The protocol nonce of a recorded console log (from the kernel command line)."""
    found = re.search(r"\bbv_nonce=([0-9a-f]+)", text)
    return found.group(1) if found else None
