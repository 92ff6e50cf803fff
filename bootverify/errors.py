"""The exceptions that end a run with exit 2; the CLI turns them into one-line messages."""

from __future__ import annotations

import signal
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
        return f"{self.path}: {self.problem}"


class InfraError(Exception):
    """The machinery failed (qemu missing, no agent prompt, a build step failed)."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised as a KeyboardInterrupt so that every cleanup a Ctrl-C runs runs
    (vm.signals_as_interrupt); the CLI exits 128 + signum, as a shell reports a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def interrupt_status(e: KeyboardInterrupt) -> int:
    """128 + the signal: 130 for Ctrl-C (SIGINT), 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (e.signum if isinstance(e, Interrupted) else signal.SIGINT)


def signal_name(e: KeyboardInterrupt) -> str:
    return signal.Signals(e.signum if isinstance(e, Interrupted) else signal.SIGINT).name


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
