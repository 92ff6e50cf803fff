"""A modules directory: the text files libmodprobe reads (AOSP system/core
libmodprobe/libmodprobe.cpp, Modprobe::Modprobe and its Parse*Callback functions).

Lines are split on white space, `#` lines and empty lines skipped (ParseCfg). Names are
canonicalised as MakeCanonical() does. A malformed line is dropped as the device drops it: its
callback logs an error and returns false, and ParseCfg() ignores that and goes on with the next
line. A device boots with such a line (Debian's depmod writes `softdep cifs gcm` from cifs's
MODULE_SOFTDEP("gcm")), so it is no reason to stop; each one is kept, with the error the device
logs, for the plan's notes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bootverify import android
from bootverify.errors import InputError, reading, regular_file
from bootverify.readers.modules import strip_module_suffix


@dataclass(frozen=True)
class Softdep:
    module: str            # as modules.softdep writes it (libmodprobe does not canonicalise it)
    when: str              # "pre" or "post"
    softdep: str           # a module name or alias


@dataclass(frozen=True)
class DynOptions:
    """`dyn_options MOD UID "CMD"`: options from a program's output; bootverify cannot run it."""
    module: str
    line: str


@dataclass(frozen=True)
class Dropped:
    """A line libmodprobe drops, with the error its callback logs (LOG(ERROR) << ...)."""
    file: str
    line: int
    text: str
    error: str

    def note(self) -> str:
        return f"{self.file} line {self.line} dropped, as libmodprobe drops it ({self.error}): " \
               f"{self.text[:80]!r}"


@dataclass(frozen=True)
class ModulesDir:
    root: Path
    load: tuple[str, ...]                   # modules.load: paths, in load order
    dep: Mapping[str, tuple[str, ...]]      # modules.dep: path -> its dependencies' paths
    blocklist: frozenset[str]               # modules.blocklist: module names
    options: Mapping[str, str]              # modules.options: module name -> parameters
    aliases: tuple[tuple[str, str], ...] = ()   # modules.alias: (pattern, module), file order
    softdeps: tuple[Softdep, ...] = ()          # modules.softdep, file order
    dyn_options: tuple[DynOptions, ...] = ()
    # modules.load.recovery / modules.load.charger, when the directory has them
    mode_loads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dropped: tuple[Dropped, ...] = ()           # malformed lines, in file and line order

    def load_list(self, file: str) -> tuple[str, ...]:
        return self.load if file == android.MODULES_LOAD else self.mode_loads[file]


def MakeCanonical(module_path: str) -> str:
    """libmodprobe.cpp MakeCanonical(): basename, without `.ko`, `-` as `_`. A compressed
    module's `.ko.gz`/`.ko.xz`/`.ko.zst` goes too, as kmod's modname_normalize() drops it:
    libmodprobe strips only `.ko`, which keeps its own tables consistent ("x.ko.xz" throughout)
    but is not the name the kernel, modules.blocklist or modules.options use."""
    return strip_module_suffix(module_path.rsplit("/", 1)[-1]).replace("-", "_")


def ParseCfg(text: str) -> list[tuple[int, list[str]]]:
    """libmodprobe.cpp ParseCfg(): (line number, words) of the lines that say something."""
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]


class _Lines:
    """One file's lines through ParseCfg(), and the ones its callback drops."""

    def __init__(self, name: str, text: str, dropped: list[Dropped]) -> None:
        self.name, self.lines, self._dropped = name, ParseCfg(text), dropped

    def drop(self, n: int, words: list[str], error: str) -> None:
        self._dropped.append(Dropped(self.name, n, " ".join(words), error))


def ParseDepCallback(f: _Lines) -> dict[str, tuple[str, ...]]:
    """`MODULE: DEP...` (as written; the plan resolves relative paths against the directory)."""
    dep: dict[str, tuple[str, ...]] = {}
    for n, words in f.lines:
        target, sep, first = words[0].partition(":")
        if not sep or not target:
            f.drop(n, words, "dependency lines must start with name followed by ':'")
            continue
        dep[target] = tuple(([first] if first else []) + words[1:])
    return dep


def ParseAliasCallback(f: _Lines) -> tuple[tuple[str, str], ...]:
    """`alias PATTERN MODULE` (exactly three words)."""
    out = []
    for n, words in f.lines:
        if words[0] != "alias":
            f.drop(n, words, f"non-alias line encountered in modules.alias, found {words[0]}")
        elif len(words) != 3:
            f.drop(n, words, f"alias lines in modules.alias must have 3 entries, not "
                             f"{len(words)}")
        else:
            out.append((words[1], words[2]))
    return tuple(out)


def ParseSoftdepCallback(f: _Lines) -> tuple[Softdep, ...]:
    """`softdep MODULE pre: A B post: C` (at least four words; a name before pre:/post: is
    malformed, and what the line had before it stays, as in libmodprobe)."""
    out = []
    for n, words in f.lines:
        if words[0] != "softdep":
            f.drop(n, words, f"non-softdep line encountered in modules.softdep, found "
                             f"{words[0]}")
            continue
        if len(words) < 4:
            f.drop(n, words, "softdep lines in modules.softdep must have at least 4 entries")
            continue
        when = ""
        for token in words[2:]:
            if token in ("pre:", "post:"):
                when = token[:-1]
            elif when:
                out.append(Softdep(words[1], when, token))
            else:
                f.drop(n, words, f"malformed modules.softdep at token {token}")
                break
    return tuple(out)


def ParseLoadCallback(text: str) -> tuple[str, ...]:
    return tuple(words[0] for _, words in ParseCfg(text))


def ParseOptionsCallback(f: _Lines) -> tuple[dict[str, str], tuple[DynOptions, ...]]:
    """`options MODULE PARAMS...` (one line a module: the first stays) and
    `dyn_options MODULE UID "CMD"`."""
    options: dict[str, str] = {}
    dyn: list[DynOptions] = []
    for n, words in f.lines:
        if words[0] == "dyn_options" and len(words) >= 4:
            dyn.append(DynOptions(MakeCanonical(words[1]), " ".join(words)))
        elif words[0] != "options":
            f.drop(n, words, "non-options line encountered in modules.options")
        elif len(words) < 2:
            f.drop(n, words, f"lines in modules.options must have at least 2 entries, not "
                             f"{len(words)}")
        elif (name := MakeCanonical(words[1])) in options:
            f.drop(n, words, f"multiple options lines present for module {words[1]}")
        else:
            options[name] = " ".join(words[2:])
    return options, tuple(dyn)


def ParseBlocklistCallback(f: _Lines) -> frozenset[str]:
    """`blocklist MODULE` (exactly two words)."""
    names = set()
    for n, words in f.lines:
        if words[0] != "blocklist":
            f.drop(n, words, "non-blocklist line encountered in modules.blocklist")
        elif len(words) != 2:
            f.drop(n, words, f"lines in modules.blocklist must have exactly 2 entries, not "
                             f"{len(words)}")
        else:
            names.add(MakeCanonical(words[1]))
    return frozenset(names)


def parse_modules_dir(root: Path, texts: Mapping[str, str]) -> ModulesDir:
    """A modules directory from its files' texts by name (a ramdisk's, or a directory's); a
    missing file reads as empty."""
    dropped: list[Dropped] = []

    def lines(name: str) -> _Lines:
        return _Lines(name, texts.get(name, ""), dropped)

    # the order of Modprobe::Modprobe(), which is the order of `dropped`
    aliases = ParseAliasCallback(lines(android.MODULES_ALIAS))
    dep = ParseDepCallback(lines(android.MODULES_DEP))
    softdeps = ParseSoftdepCallback(lines(android.MODULES_SOFTDEP))
    options, dyn = ParseOptionsCallback(lines(android.MODULES_OPTIONS))
    blocklist = ParseBlocklistCallback(lines(android.MODULES_BLOCKLIST))
    return ModulesDir(
        root=root, load=ParseLoadCallback(texts.get(android.MODULES_LOAD, "")), dep=dep,
        blocklist=blocklist, options=options, aliases=aliases, softdeps=softdeps,
        dyn_options=dyn,
        mode_loads={f: ParseLoadCallback(texts[f]) for f in android.LOAD_LISTS.values()
                    if f != android.MODULES_LOAD and f in texts},
        dropped=tuple(dropped),
    )


def read_modules_dir(root: Path) -> ModulesDir:
    texts = {}
    for name in android.MODULES_FILES:
        path = root / name
        with reading(path):
            present = os.path.lexists(path)
        if present:
            regular_file(path)
            try:
                with reading(path):
                    texts[name] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise InputError(path, "not a text file") from None
    return parse_modules_dir(root, texts)
