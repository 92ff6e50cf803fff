"""--output DIR and the other report paths: where a run's files go, all checked before the
first boot so that a run is never lost to an unwritable path at its end.

The directory (default: a fresh `bootverify-YYYYmmddTHHMMSSZ[-N]` under the current
directory, so that two runs never share a console log) holds report.json, junit.xml,
console.log, summary.txt and meta.json; --json/--junit/--tap/--kcidb/--console-log PATH write
a copy elsewhere as well. It is made only once the inputs have been read: bad input leaves
nothing behind."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bootverify.errors import InputError, writing
from bootverify.nightly.meta import now_utc

REPORT, JUNIT, CONSOLE, SUMMARY, META = (
    "report.json", "junit.xml", "console.log", "summary.txt", "meta.json")


def fresh_dir(parent: Path) -> Path:
    stamp = now_utc().strftime("bootverify-%Y%m%dT%H%M%SZ")
    candidate, n = parent / stamp, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{stamp}-{n}"
    return candidate


def _writable_dir(path: Path) -> None:
    """`path` is (or, made with its parents, will be) a directory this process can write."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(existing, "cannot write: Not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(existing, "cannot write: Permission denied")


def check_file(path: Path) -> None:
    """A report file can be written at `path`: its directory exists and is writable, and it is
    not a directory itself."""
    if path.is_dir():
        raise InputError(path, "cannot write: Is a directory")
    if not path.parent.is_dir():
        raise InputError(path.parent, "cannot write: No such file or directory")
    if not os.access(path.parent, os.W_OK | os.X_OK) or (
            path.exists() and not os.access(path, os.W_OK)):
        raise InputError(path, "cannot write: Permission denied")


@dataclass(frozen=True)
class Outputs:
    dir: Path
    extra: Sequence[tuple[str, Path]]     # (which report, where): --json PATH etc.

    @staticmethod
    def plan(directory: Path | None, extra: Sequence[tuple[str, Path | None]]) -> Outputs:
        """Check every path now; nothing is made yet."""
        d = directory if directory is not None else fresh_dir(Path.cwd())
        if d.exists() and not d.is_dir():
            raise InputError(d, "cannot write: Not a directory")
        _writable_dir(d)
        given = [(what, Path(p)) for what, p in extra if p is not None and str(p) != "-"]
        for _, p in given:
            check_file(p)
        return Outputs(d, tuple(given))

    def make(self) -> bool:
        """Make the directory; True if it did not exist."""
        with writing(self.dir):
            existed = self.dir.is_dir()
            self.dir.mkdir(parents=True, exist_ok=True)
        return not existed

    def path(self, name: str) -> Path:
        return self.dir / name

    def destinations(self, what: str) -> list[Path]:
        """Where report `what` (REPORT, JUNIT, ...) goes: the directory's file and any copy."""
        base = [self.dir / what] if what in (REPORT, JUNIT, SUMMARY, META) else []
        return base + [p for w, p in self.extra if w == what]

    def write(self, what: str, text: str) -> None:
        for dest in self.destinations(what):
            with writing(dest):
                dest.write_text(text, encoding="utf-8")
