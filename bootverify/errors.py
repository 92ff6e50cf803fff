"""The exceptions that end a run with exit 2; the CLI turns them into one-line messages."""

from __future__ import annotations

import os
import signal
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_ERROR = 2      # bad input or broken infrastructure


class InputError(Exception):
    """A file that is missing, truncated or not what it claims to be."""

    def __init__(self, path: object, problem: str) -> None:
        # Both in args so the error survives pickling across worker processes.
        super().__init__(str(path), problem)
        self.path = str(path)
        self.problem = problem

    def __str__(self) -> str:
        return one_line(f"{self.path}: {self.problem}")


class InfraError(Exception):
    """The machinery failed (qemu missing, no agent prompt, a build step failed)."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: the run stops as on Ctrl-C (every finally and cleanup runs); the exit
    status is 128 + the signal, the shell's convention (143 for SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise Terminated and SIGINT KeyboardInterrupt, even
    when started as a background job of a script (which inherits SIGINT ignored), so cleanup
    runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def one_line(text: str) -> str:
    """A message as one printable line: a newline or other control character in a path or in
    a guest's output is shown escaped (as repr shows it), never acted on by the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def regular_file(path: object) -> os.stat_result:
    """stat() of a file about to be read; a FIFO, device, socket or directory is refused before
    open() (a FIFO would block it for ever, /dev/zero never ends)."""
    with reading(path):
        st = os.stat(path)  # type: ignore[arg-type]
    if not stat.S_ISREG(st.st_mode):
        raise InputError(path, "is a directory" if stat.S_ISDIR(st.st_mode)
                         else "not a regular file")
    return st

def interrupt_status(e: KeyboardInterrupt) -> int:
    """128 + the signal: 130 for Ctrl-C (SIGINT), 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (e.signum if isinstance(e, Terminated) else signal.SIGINT)


def signal_name(e: KeyboardInterrupt) -> str:
    return signal.Signals(e.signum if isinstance(e, Terminated) else signal.SIGINT).name


# The one wording of a missing, unreadable or unwritable file, for every reader and writer:
# reading says what the system said ("No such file or directory"); writing says "cannot write:"
# first, so that a report or cache path is not mistaken for an input.

@contextmanager
def reading(path: object) -> Iterator[None]:
    """An OSError while reading `path` (or a file under it) becomes the InputError naming it."""
    with _naming(path, ""):
        yield


@contextmanager
def writing(path: object) -> Iterator[None]:
    """An OSError while writing `path` (or a file under it) becomes the InputError naming it."""
    with _naming(path, "cannot write: "):
        yield


@contextmanager
def _naming(path: object, prefix: str) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        where = e.filename if e.filename is not None else path
        raise InputError(where, prefix + (e.strerror or str(e))) from None
