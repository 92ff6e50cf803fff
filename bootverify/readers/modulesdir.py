"""A modules directory: the text files libmodprobe reads (AOSP system/core
libmodprobe/libmodprobe.cpp, Modprobe::Modprobe and its Parse*Callback functions).

Lines are split on white space, `#` lines and empty lines skipped (ParseCfg). Names are
canonicalised as MakeCanonical() does. A malformed line is bad input (libmodprobe logs it and
drops the line; a verifier says so and stops).
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


def _bad(path: Path, n: int, expected: str, words: list[str]) -> InputError:
    return InputError(path, f"line {n}: expected '{expected}', got {' '.join(words)[:80]!r}")


def ParseDepCallback(path: Path, text: str) -> dict[str, tuple[str, ...]]:
    """`MODULE: DEP...` (as written; the plan resolves relative paths against the directory)."""
    dep: dict[str, tuple[str, ...]] = {}
    for n, words in ParseCfg(text):
        target, sep, first = words[0].partition(":")
        if not sep or not target:
            raise _bad(path, n, "MODULE: DEPS", words)
        dep[target] = tuple(([first] if first else []) + words[1:])
    return dep


def ParseAliasCallback(path: Path, text: str) -> tuple[tuple[str, str], ...]:
    """`alias PATTERN MODULE` (exactly three words)."""
    out = []
    for n, words in ParseCfg(text):
        if len(words) != 3 or words[0] != "alias":
            raise _bad(path, n, "alias PATTERN MODULE", words)
        out.append((words[1], words[2]))
    return tuple(out)


def ParseSoftdepCallback(path: Path, text: str) -> tuple[Softdep, ...]:
    """`softdep MODULE pre: A B post: C` (at least four words; a name before pre:/post: is
    malformed)."""
    out = []
    for n, words in ParseCfg(text):
        if len(words) < 4 or words[0] != "softdep":
            raise _bad(path, n, "softdep MODULE pre: ... post: ...", words)
        when = ""
        for token in words[2:]:
            if token in ("pre:", "post:"):
                when = token[:-1]
            elif when:
                out.append(Softdep(words[1], when, token))
            else:
                raise _bad(path, n, "softdep MODULE pre: ... post: ...", words)
    return tuple(out)


def ParseLoadCallback(text: str) -> tuple[str, ...]:
    return tuple(words[0] for _, words in ParseCfg(text))


def ParseOptionsCallback(path: Path, text: str) -> tuple[dict[str, str], tuple[DynOptions, ...]]:
    """`options MODULE PARAMS...` (one line a module) and `dyn_options MODULE UID "CMD"`."""
    options: dict[str, str] = {}
    dyn: list[DynOptions] = []
    for n, words in ParseCfg(text):
        if words[0] == "dyn_options" and len(words) >= 4:
            dyn.append(DynOptions(MakeCanonical(words[1]), " ".join(words)))
            continue
        if words[0] != "options" or len(words) < 2:
            raise _bad(path, n, "options MODULE ...", words)
        name = MakeCanonical(words[1])
        if name in options:
            raise InputError(path, f"line {n}: a second options line for {words[1]}")
        options[name] = " ".join(words[2:])
    return options, tuple(dyn)


def ParseBlocklistCallback(path: Path, text: str) -> frozenset[str]:
    """`blocklist MODULE` (exactly two words)."""
    names = set()
    for n, words in ParseCfg(text):
        if len(words) != 2 or words[0] != "blocklist":
            raise _bad(path, n, "blocklist MODULE", words)
        names.add(MakeCanonical(words[1]))
    return frozenset(names)


def parse_modules_dir(root: Path, texts: Mapping[str, str]) -> ModulesDir:
    """A modules directory from its files' texts by name (a ramdisk's, or a directory's); a
    missing file reads as empty."""
    def text(name: str) -> str:
        return texts.get(name, "")

    options, dyn = ParseOptionsCallback(root / android.MODULES_OPTIONS,
                                        text(android.MODULES_OPTIONS))
    return ModulesDir(
        root=root,
        load=ParseLoadCallback(text(android.MODULES_LOAD)),
        dep=ParseDepCallback(root / android.MODULES_DEP, text(android.MODULES_DEP)),
        blocklist=ParseBlocklistCallback(root / android.MODULES_BLOCKLIST,
                                         text(android.MODULES_BLOCKLIST)),
        options=options,
        aliases=ParseAliasCallback(root / android.MODULES_ALIAS, text(android.MODULES_ALIAS)),
        softdeps=ParseSoftdepCallback(root / android.MODULES_SOFTDEP,
                                      text(android.MODULES_SOFTDEP)),
        dyn_options=dyn,
        mode_loads={f: ParseLoadCallback(texts[f]) for f in android.LOAD_LISTS.values()
                    if f != android.MODULES_LOAD and f in texts},
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
