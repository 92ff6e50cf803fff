"""The load plan: which modules to load, from where, with what, in which order, as Android's
first stage would. Pure data made from the module directories; nothing here boots or loads.

The model is system/core libmodprobe (REFERENCE.md §4) as first_stage_init uses it:
- Module directory: /lib/modules/<dir> for the first directory (sorted) whose name starts with
  the kernel's major.minor and whose modules.load lists something, else /lib/modules. Then
  system_dlkm, then vendor_dlkm, each with its own modules.load / modules.dep / modules.blocklist
  / modules.options (second-stage init loads those with modprobe, which is libmodprobe too).
- Order: modules.load, each module with its modules.dep dependencies first, loaded in reverse
  modules.dep order, each of those with its own dependencies first (InsmodWithDeps). A module's
  file path is the one modules.dep gives (relative paths are relative to the directory).
- Parameters: modules.options, plus `module.param=value` words of the kernel command line
  (ParseKernelCmdlineOptions).
- modules.blocklist: a blocklisted module is not loaded (`skipped`).
- A module whose dependency did not load (failed, hung, crashed, blocklisted, missing) is still
  tried after the dependencies that do load, and gets the kernel's verdict (typically
  `link-error`, unknown symbols of the missing dependency), with the reason naming the
  dependency. Android's InsmodWithDeps would not try it; either way it does not load, and the
  kernel's own words are the better evidence.
- Loading is finit_module() on the opened file, exactly once (agent.py's finit; no busybox
  modprobe, whose retry with init_module would run a failing init twice); EEXIST counts as
  loaded.
Where bootverify parts from Android on purpose: Android's first stage stops at the first failure
(strict mode) and then fails the boot; bootverify goes on through the whole list, so that every
module gets a verdict.
A module listed in modules.load but missing from modules.dep is loaded from its modules.load path
without dependencies (libmodprobe would refuse it); the run notes it.

The plan goes into the agent's overlay as /bootverify/plan, one `PATH PARAMS` line per module
that loads (`LoadPlan.lines`); the runner (runner.py) has the guest walk it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bootverify.errors import InputError
from bootverify.readers.modules import (MODULES_FILES, ModulesDir, find_modules, module_name,
                                        parse_modules_dir, read_modules_dir)
from bootverify.readers.ramdisk import CpioEntry
from bootverify.runtime import boot

MODULE_BASE_DIR = "/lib/modules"
LOAD_FILE = "modules.load"
ORIGINS = ("vendor_ramdisk", "system_dlkm", "vendor_dlkm")

Key = tuple[str, str]         # (origin, module name)


@dataclass(frozen=True)
class ModuleSet:
    """One directory of modules as the guest sees it."""
    origin: str                    # vendor_ramdisk, system_dlkm, vendor_dlkm
    guest_dir: str                 # e.g. /lib/modules
    files: frozenset[str]          # .ko paths relative to guest_dir
    config: ModulesDir


@dataclass(frozen=True)
class ModuleUnit:
    origin: str
    name: str
    path: str                      # guest path to open ("" when the file is not there)
    params: str
    deps: tuple[Key, ...]          # in load order
    blocklisted: bool = False
    note: str = ""                 # how the path was found when not by modules.dep

    @property
    def key(self) -> Key:
        return (self.origin, self.name)


@dataclass(frozen=True)
class Step:
    """One module in load order: loaded from plan line `line`, or not loaded (`skip` says why)."""
    key: Key
    line: int | None
    skip: str = ""


@dataclass(frozen=True)
class LoadPlan:
    units: Mapping[Key, ModuleUnit]
    order: tuple[Key, ...]         # the listed modules: each set's modules.load, sets in order
    sets: tuple[ModuleSet, ...]
    notes: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()   # every module, dependencies first (InsmodWithDeps' order)

    @functools.cached_property
    def lines(self) -> tuple[str, ...]:
        """/bootverify/plan: `PATH PARAMS` for each step that loads, line N = step with line N."""
        return tuple(f"{self.units[s.key].path} {self.units[s.key].params}".rstrip()
                     for s in self.steps if s.line is not None)

    @functools.cached_property
    def _by_line(self) -> dict[int, Key]:
        return {s.line: s.key for s in self.steps if s.line is not None}

    def unit_at(self, line: int) -> ModuleUnit:
        return self.units[self._by_line[line]]

    def needed_from(self, line: int, loaded: Collection[int]) -> list[int]:
        """Of the `loaded` plan lines, those that the modules from plan line `line` on depend
        on (modules.dep, transitively): what a new guest must load again before going on."""
        needed: set[Key] = set()
        todo = [s.key for s in self.steps if s.line is not None and s.line >= line]
        while todo:
            for d in self.units[todo.pop()].deps:
                if d not in needed:
                    needed.add(d)
                    todo.append(d)
        return sorted(s.line for s in self.steps
                      if s.line is not None and s.line in loaded and s.key in needed)


def _steps(units: Mapping[Key, ModuleUnit], order: Sequence[Key]) -> tuple[Step, ...]:
    out: list[Step] = []
    seen: set[Key] = set()
    loads = 0

    def visit(k: Key) -> None:
        nonlocal loads
        if k in seen:
            return
        seen.add(k)                     # before the dependencies: a cycle ends here
        u = units[k]
        for d in u.deps:
            visit(d)
        if u.blocklisted:
            out.append(Step(k, None, "blocklisted (modules.blocklist)"))
        elif not u.path:
            out.append(Step(k, None, u.note or "not in the image"))
        else:
            loads += 1
            out.append(Step(k, loads))

    for k in order:
        visit(k)
    return tuple(out)


def tree_modules_dir(tree: Mapping[str, CpioEntry], release: str) -> str:
    """first_stage_init's choice of module directory, as a tree-relative path."""
    base = MODULE_BASE_DIR.lstrip("/")
    m = re.match(r"(\d+)\.(\d+)", release)
    candidates = sorted({name.split("/")[2] for name in tree
                         if name.startswith(base + "/") and name.count("/") >= 3})
    for d in candidates:
        dm = re.match(r"(\d+)\.(\d+)", d)
        if not (m and dm and dm.groups() == m.groups()):
            continue
        load = tree.get(f"{base}/{d}/{LOAD_FILE}")
        if load is not None and load.data.strip():
            return f"{base}/{d}"
    return base


def ramdisk_module_set(tree: Mapping[str, CpioEntry], release: str) -> ModuleSet:
    """The vendor ramdisk's module directory (from the unpacked device ramdisks)."""
    rel = tree_modules_dir(tree, release)
    files = frozenset(name[len(rel) + 1:] for name, e in tree.items()
                      if name.startswith(rel + "/") and name.endswith(".ko") and e.is_file)
    texts = {}
    for name in MODULES_FILES:
        e = tree.get(f"{rel}/{name}")
        if e is not None and e.is_file:
            try:
                texts[name] = e.data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"initrd:/{rel}/{name}", f"not text: {err}") from None
    config = parse_modules_dir(Path(f"initrd:/{rel}"), texts)
    return ModuleSet("vendor_ramdisk", "/" + rel, files, config)


def dir_module_set(origin: str, directory: Path) -> ModuleSet:
    """An extra module directory (--system-dlkm / --vendor-dlkm) as packed into the overlay."""
    directory = Path(directory)
    files = frozenset(str(p.relative_to(directory)) for p in find_modules(directory))
    if not (directory / LOAD_FILE).is_file():
        raise InputError(directory, f"no {LOAD_FILE}: which modules to load is not said")
    return ModuleSet(origin, boot.DLKM_GUEST_DIRS[origin], files, read_modules_dir(directory))


def cmdline_options(cmdline: str) -> dict[str, str]:
    """`module.param=value` words of the command line (libmodprobe ParseKernelCmdlineOptions)."""
    out: dict[str, str] = {}
    word, in_quotes = [], False
    words = []
    for ch in cmdline + " ":
        if ch == '"':
            in_quotes = not in_quotes
        if ch == " " and not in_quotes:
            if word:
                words.append("".join(word))
            word = []
        else:
            word.append(ch)
    for w in words:
        name, dot, rest = w.partition(".")
        opt, eq, value = rest.partition("=")
        if dot and eq and name and opt and "=" not in name:
            key = module_name(name)
            out[key] = (out[key] + " " if key in out else "") + f"{opt}={value}"
    return out


class _Resolver:
    """Module paths from modules.dep / modules.load to units of the plan."""

    def __init__(self, sets: Sequence[ModuleSet], cmd_options: Mapping[str, str]) -> None:
        self.sets = {s.origin: s for s in sets}
        self.order = [s.origin for s in sets]
        self.cmd_options = cmd_options
        self.units: dict[Key, ModuleUnit] = {}
        self.notes: list[str] = []
        # name -> (modules.dep target path, its dependency paths), per set
        self.deps = {s.origin: {module_name(t): (t, d) for t, d in s.config.dep.items()}
                     for s in sets}

    def locate(self, origin: str, path: str) -> tuple[str, str] | None:
        """(origin, relative path) of a module file named by `path` in `origin`'s config."""
        s = self.sets[origin]
        p = str(PurePosixPath(path))
        if not p.startswith("/"):
            rel = p.removeprefix("./")
            return (origin, rel) if rel in s.files else None
        if p.startswith(s.guest_dir + "/") and p[len(s.guest_dir) + 1:] in s.files:
            return (origin, p[len(s.guest_dir) + 1:])
        # An absolute path from the device's layout (/vendor/lib/modules/x.ko,
        # /system/lib/modules/x.ko): the longest tail of it that is a file of a set,
        # this set first.
        parts = PurePosixPath(p).parts[1:]
        for o in [origin] + [x for x in self.order if x != origin]:
            for i in range(len(parts)):
                tail = "/".join(parts[i:])
                if tail in self.sets[o].files:
                    return (o, tail)
        return None

    def unit(self, origin: str, name: str, via: str = "", stack: tuple[Key, ...] = ()) -> Key:
        key = (origin, name)
        if key in self.units or key in stack:
            return key
        s = self.sets[origin]
        params = " ".join(p for p in (s.config.options.get(name, ""),
                                      self.cmd_options.get(name, "")) if p)
        blocked = name in s.config.blocklist
        entry = self.deps[origin].get(name)
        note = ""
        deps: list[Key] = []
        if entry is not None:
            target, dep_paths = entry
            where = self.locate(origin, target)
            for d in reversed(dep_paths):
                loc = self.locate(origin, d)
                if loc is None:
                    dk = (origin, module_name(d))
                    if dk not in self.units:
                        self.units[dk] = ModuleUnit(origin, dk[1], "", "", (),
                                                    note=f"{d}: not in the image")
                    deps.append(dk)
                else:
                    deps.append(self.unit(loc[0], module_name(loc[1]), d, stack + (key,)))
        else:
            where = self.locate(origin, via) if via else None
            if where:
                note = f"not in {s.guest_dir}/modules.dep: loaded from {via} without dependencies"
                self.notes.append(f"{origin}: {name}: {note}")
        path = f"{self.sets[where[0]].guest_dir}/{where[1]}" if where else ""
        if not where:
            note = f"{via or name}: not in the image"
        self.units[key] = ModuleUnit(origin, name, path, params, tuple(deps), blocked, note)
        return key


def make_plan(sets: Sequence[ModuleSet], cmdline: str = "") -> LoadPlan:
    r = _Resolver(sets, cmdline_options(cmdline))
    order: dict[Key, None] = {}
    for s in sets:
        for listed in s.config.load:
            order.setdefault(r.unit(s.origin, module_name(listed), listed))
    for u in r.units.values():
        if u.path and any(c.isspace() for c in u.path):
            raise InputError(u.path, "module path with white space: the guest's plan file "
                                     "cannot hold it")
    return LoadPlan(dict(r.units), tuple(order), tuple(sets), tuple(r.notes),
                    _steps(r.units, order))


def plan_for(handoff: boot.Handoff, cmdline: str,
             dlkm_dirs: Mapping[str, Path] | None = None) -> LoadPlan:
    """The plan for a run: vendor ramdisk modules, then system_dlkm, then vendor_dlkm."""
    sets = [ramdisk_module_set(handoff.ramdisk_tree(), handoff.kernel.release)]
    for origin in ORIGINS[1:]:
        if dlkm_dirs and origin in dlkm_dirs:
            sets.append(dir_module_set(origin, dlkm_dirs[origin]))
    return make_plan(sets, cmdline)
