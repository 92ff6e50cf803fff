"""Driving the agent's shell over the guest's serial console (pexpect).

The protocol's words and markers are protocol.py's. Every command goes out as one line between
a begin and an end marker; a command that loads modules (`bv_run`) also prints a mark after each
module: `wait_mark` returns at each of those, so the host can time every module while the guest
goes through the list without waiting for the host in between. Everything between two marks is
output. Kernel messages can still reach the console in the middle of it (the agent lets only
EMERG and ALERT through, and an oops raises the level): they become output lines, which is why a
module's kernel log is taken from the /dev/kmsg records finit copies, not from console order.
CRs are dropped.

The console log (the file a run's console output goes to) also gets a line per plan line before
the first boot and a banner before each boot, so that a log read afterwards (`transcript`)
tells the boots and modules apart.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import pexpect

from bootverify.errors import InfraError
from bootverify.runtime import protocol
from bootverify.runtime.kmsg import crash_lines

TAIL_LINES = 40          # console lines kept for error messages
QUIET = 2.0              # past the timeout, output must keep coming at least this often


@dataclass(frozen=True)
class CommandResult:
    seq: int
    status: int                 # the shell's $? for the command
    lines: tuple[str, ...]      # output between the markers, CRs dropped
    seconds: float              # host wall time from sending to the end marker


@dataclass(frozen=True)
class Mark:
    """A module's mark (line = its plan line, result = what follows `M<line>:`) or the end of
    the command (line None, status = its exit status)."""
    line: int | None
    status: int | None
    result: str
    lines: tuple[str, ...]      # output since the previous mark (CRs dropped)
    seconds: float              # host wall time since the previous mark (or the send)


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
        self.markers = protocol.Markers(nonce)
        self.tail = _Tail(log)
        child.logfile_read = self.tail
        child.delaybeforesend = None      # pexpect sleeps 50 ms before each send by default
        self.seq = first_seq - 1
        self._started = self._last = time.monotonic()
        self._fresh = False

    def last_lines(self, n: int = TAIL_LINES) -> list[str]:
        return self.tail.last(n)

    def wait_ready(self, timeout: float) -> float:
        """Wait for the agent's ready line; seconds waited. InfraError with the last console
        lines when it does not come or qemu exits."""
        start = time.monotonic()
        try:
            self.child.expect(self.markers.ready(), timeout=timeout)
        except pexpect.TIMEOUT:
            raise InfraError(self._failure(f"no agent prompt within {timeout:.0f} s")) from None
        except pexpect.EOF:
            raise InfraError(self._failure("qemu exited before the agent was ready")) from None
        return time.monotonic() - start

    def _failure(self, what: str) -> str:
        """One line: the panic or oops line, if the console shows one, else its last line
        says where it stopped; the rest of the console is in the console log."""
        lines = [line.strip() for line in self.last_lines(TAIL_LINES) if line.strip()]
        shown = (crash_lines(lines) or lines or ("(no output)",))[-1][:200]
        return f"{what}; last console lines: {shown!r} (the console log has them all)"

    def start(self, command: str | Callable[[int], str]) -> int:
        """Send one command line, wrapped in markers, without waiting; its sequence number.
        `command` may be a function of the sequence number."""
        self.seq += 1
        seq = self.seq
        text = command(seq) if callable(command) else command
        if "\n" in text:
            raise ValueError("one command line at a time")
        self._started = self._last = time.monotonic()
        self._fresh = True
        self.child.sendline(protocol.command_line(seq, text))
        return seq

    def wait_mark(self, seq: int, timeout: float, grace: float = 0.0) -> Mark:
        """The next module mark (`...:M<line>:<result>`) or the end of command `seq`, whichever
        comes first, with the output before it. If output is still arriving when `timeout` runs
        out (a long kernel log being printed), wait on while it keeps coming, `grace` seconds at
        most. Raises CommandTimeout or GuestDied."""
        patterns = [re.compile(self.markers.module()), re.compile(self.markers.end(seq))]
        deadline = self._last + timeout
        hard = deadline + grace
        seen = 0
        while True:
            try:
                which = self.child.expect(patterns,
                                          timeout=max(0.0, deadline - time.monotonic()))
                break
            except pexpect.TIMEOUT:
                pending = self._pending()
                now = time.monotonic()
                if len(pending) > seen and now < hard:
                    seen = len(pending)
                    deadline = min(hard, now + QUIET)
                    continue
                raise CommandTimeout(f"command {seq}: no answer in {now - self._last:.1f} s",
                                     seq, self._output(pending, seq), now - self._last) from None
            except pexpect.EOF:
                raise GuestDied(f"console closed during command {seq}", seq,
                                self._output(self._pending(), seq),
                                time.monotonic() - self._last) from None
        now = time.monotonic()
        seconds, self._last = now - self._last, now
        assert isinstance(self.child.before, str)
        lines = self._output(self.child.before, seq)
        m = self.child.match
        if which == 0:
            return Mark(int(m.group(1)), None, m.group(2), lines, seconds)
        return Mark(None, int(m.group(1)), "", lines, seconds)

    def run(self, command: str | Callable[[int], str], timeout: float) -> CommandResult:
        """Run one command line in the agent's shell and wait for it (module marks it prints
        stay in the output). Raises CommandTimeout or GuestDied."""
        seq = self.start(command)
        lines: list[str] = []
        while True:
            try:
                mark = self.wait_mark(seq, timeout)
            except (CommandTimeout, GuestDied) as e:
                e.lines = tuple(lines) + e.lines
                e.seconds = time.monotonic() - self._started
                raise
            lines += mark.lines
            if mark.line is None:
                assert mark.status is not None
                return CommandResult(seq, mark.status, tuple(lines),
                                     time.monotonic() - self._started)
            lines.append(self.markers.module_line(mark.line, mark.result))

    def _pending(self) -> str:
        """After a TIMEOUT or EOF pexpect leaves everything read since the last match in before."""
        return self.child.before if isinstance(self.child.before, str) else ""

    def _output(self, text: str, seq: int) -> tuple[str, ...]:
        """Output lines; before the first mark of a command, only what follows its begin
        marker (the prompt and anything older go)."""
        if self._fresh:
            self._fresh = False
            begin = re.search(self.markers.begin(seq), text)
            if begin:
                text = text[begin.end():]
        return split_lines(text)


@dataclass(frozen=True)
class Exchange:
    """A piece of a recorded console log: one module of a `bv_run` (module = its plan line,
    result = its mark's fields), or the rest of a command (module None, status = its exit
    status; None when the log ends there or the next boot starts: the guest hung or died)."""
    seq: int
    module: int | None
    status: int | None
    lines: tuple[str, ...]
    result: str = ""


PLAN_BANNER = "=== bootverify: plan"
BOOT_BANNER = "=== bootverify: boot"


def plan_banner(lines: Sequence[str]) -> str:
    """The lines the console log starts with: the plan, one line each."""
    return "".join(f"{PLAN_BANNER} {i}: {line}\n" for i, line in enumerate(lines, 1))


def boot_banner(number: int, reason: str) -> str:
    """The line the console log gets before each boot's output."""
    return f"{BOOT_BANNER} {number} ({reason}) ===\n"


def transcript(text: str, nonce: str) -> list[Exchange]:
    """The commands and modules of a recorded console log, with their output (for logs read
    afterwards: tests, reports)."""
    marker = re.compile(protocol.Markers(nonce).any() + "|^" + re.escape(BOOT_BANNER) + ".*\n",
                        re.MULTILINE)
    out: list[Exchange] = []
    open_seq: int | None = None
    start = 0
    for x in marker.finditer(text):
        piece = split_lines(text[start:x.start()])
        if x["line"] is not None:                       # a module mark
            if open_seq is not None:
                out.append(Exchange(open_seq, int(x["line"]), None, piece, x["result"]))
                start = x.end()
            continue
        if x["seq"] is None:                            # a new boot: what was open ends here
            if open_seq is not None:
                out.append(Exchange(open_seq, None, None, piece))
                open_seq = None
            continue
        seq = int(x["seq"])
        if x["status"] is None:                         # a begin marker
            if open_seq is not None:
                out.append(Exchange(open_seq, None, None, piece))
            open_seq, start = seq, x.end()
        elif open_seq == seq:
            out.append(Exchange(seq, None, int(x["status"]), piece))
            open_seq = None
    if open_seq is not None:
        out.append(Exchange(open_seq, None, None, split_lines(text[start:])))
    return out
