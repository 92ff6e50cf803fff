"""libmodprobe's rules, as AOSP system/core libmodprobe/libmodprobe.cpp has them (REFERENCE.md
§4), made static: instead of loading, each rule says which modules a load would try and in which
order. The kernel's verdict on each comes later, from the run.

One `Modprobe` covers every module set of a plan. In Android each set is its own Modprobe (first
stage's on the vendor ramdisk's directory, second stage's modprobe on system_dlkm's and
vendor_dlkm's), each with its own modules.* files; what they share is the kernel's list of
loaded modules, which is what the shared units stand for. A modules.dep path into another set
(/vendor/lib/modules/x.ko) is followed there (`locate`): whether that set is mounted yet is a
question for the static analysis of the plan, not for the order.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any, TypeVar
from pathlib import PurePosixPath

from bootverify.plan.model import Disposition, Key, Listed, ModuleSet, ModuleUnit
from bootverify.readers.modulesdir import MakeCanonical


R = TypeVar("R")
# A rule that calls another rule yields (rule, its arguments) and is sent back the result.
Rule = Generator[tuple[Callable[..., Any], tuple[Any, ...]], Any, R]


def run_rule(rule: Rule[R]) -> R:
    """Run a rule and the rules it calls on an explicit stack, not Python's: libmodprobe
    recurses along modules.dep, and a chain thousands deep must cost only its length."""
    stack: list[Rule[Any]] = [rule]
    value: Any = None
    while True:
        try:
            callee, args = stack[-1].send(value)
        except StopIteration as done:
            stack.pop()
            if not stack:
                return done.value  # type: ignore[no-any-return]
            value = done.value
            continue
        stack.append(callee(*args))
        value = None


def ParseKernelCmdlineOptions(cmdline: str) -> dict[str, str]:
    """`module.param=value` words of the kernel command line (the words outside double quotes;
    a value may be quoted), as AddOption() keeps them: module -> `param=value ...`."""
    out: dict[str, str] = {}

    def AddOption(module: str, option: str, value: str) -> None:
        out[module] = (out[module] + " " if module in out else "") + f"{option}={value}"

    module = option = ""
    in_module, in_option, in_value, in_quotes = True, False, False, False
    start = 0
    for i, ch in enumerate(cmdline):
        if ch == '"':
            in_quotes = not in_quotes
        if in_quotes:
            continue
        if ch == " ":
            if in_value and module and option:
                AddOption(module, option, cmdline[start:i])
            module = option = ""
            in_value, in_module, start = False, True, i + 1
        elif ch == ".":
            if in_module:
                module, start, in_module = cmdline[start:i], i + 1, False
            in_option = True
        elif ch == "=":
            if in_option:
                option, start, in_option = cmdline[start:i], i + 1, False
            in_value = True
    if in_value and not in_quotes and module and option:
        AddOption(module, option, cmdline[start:])
    return out


class Modprobe:
    """The units a plan's loads reach, made by libmodprobe's rules."""

    def __init__(self, sets: Sequence[ModuleSet], kernel_options: Mapping[str, str]) -> None:
        self.sets = {s.origin: s for s in sets}
        self.order = [s.origin for s in sets]
        self.kernel_options = kernel_options
        self.units: dict[Key, ModuleUnit] = {}
        # The InsmodWithDeps calls under way, outermost first: a module met again among them is
        # a modules.dep cycle (libmodprobe would recurse without end; depmod refuses it).
        self._active: list[Key] = []
        self._active_set: set[Key] = set()
        self.cycles: dict[frozenset[Key], tuple[Key, ...]] = {}
        # canonical name -> (modules.dep target path, its dependency paths), per set
        self.deps = {s.origin: {MakeCanonical(t): (t, d) for t, d in s.config.dep.items()}
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

    def _own_name(self, where: tuple[str, str] | None) -> str:
        return self.sets[where[0]].own_names.get(where[1], "") if where else ""

    def _guest_path(self, where: tuple[str, str] | None) -> str:
        return f"{self.sets[where[0]].guest_dir}/{where[1]}" if where else ""

    def ModuleExists(self, origin: str, name: str) -> bool:
        """Not blocklisted, in modules.dep, and its file is there."""
        entry = self.deps[origin].get(name)
        return (name not in self.sets[origin].config.blocklist and entry is not None
                and self.locate(origin, entry[0]) is not None)

    def _absent(self, origin: str, name: str, via: str) -> Key:
        """The unit of a module that ModuleExists() refuses, saying why."""
        key = (origin, name)
        if key in self.units:
            return key
        s = self.sets[origin]
        entry = self.deps[origin].get(name)
        where = self.locate(origin, entry[0] if entry else via)
        if name in s.config.blocklist:
            how, note = Disposition.BLOCKLISTED, "blocklisted (modules.blocklist)"
        elif entry is None:
            how = Disposition.NOT_FOUND
            note = f"not in {s.guest_dir}/modules.dep, " + (
                "though its .ko is in the image" if where else "and no such .ko")
        else:
            how, note = Disposition.NOT_FOUND, f"{entry[0]}: not in the image"
        self.units[key] = ModuleUnit(origin, name, self._guest_path(where), "", (), how, note)
        return key

    def LoadWithAliases(self, origin: str, module_name: str) -> Rule[list[Key]]:
        """The modules a load of `module_name` tries: its canonical name and every module a
        modules.alias pattern matching it (fnmatch) names, sorted (a std::set), those that exist
        (ModuleExists), each by InsmodWithDeps. Empty: nothing to load, which fails a strict
        call (a load-list entry, a hard dep) and is nothing to a soft dep; whether what it
        tried did load is the run's to say (verdict.py)."""
        names = {MakeCanonical(module_name)} | {
            MakeCanonical(module) for pattern, module in self.sets[origin].config.aliases
            if fnmatchcase(module_name, pattern)}
        out = []
        for n in sorted(names):
            if self.ModuleExists(origin, n):
                out.append((yield self.InsmodWithDeps, (origin, n)))
        return out

    def InsmodWithDeps(self, origin: str, name: str) -> Rule[Key]:
        """Hard deps in reverse modules.dep order (each by LoadWithAliases, strict), the soft
        pre-deps (non-strict), the module with its options, the soft post-deps (non-strict).
        A cycle is cut where it closes and recorded (`cycles`)."""
        key = (origin, name)
        if key in self._active_set:
            cycle = tuple(self._active[self._active.index(key):]) + (key,)
            self.cycles.setdefault(frozenset(cycle), cycle)
            return key
        if key in self.units:       # loaded already
            return key
        s = self.sets[origin]
        target, dep_paths = self.deps[origin][name]
        self._active.append(key)
        self._active_set.add(key)
        deps = []
        for d in reversed(dep_paths):
            where = self.locate(origin, d)
            dep_origin, dep = (where[0], where[1]) if where else (origin, d)
            found = yield self.LoadWithAliases, (dep_origin, dep)
            deps += found or [self._absent(dep_origin, MakeCanonical(dep), d)]
        soft: dict[str, list[Key]] = {}
        for when in ("pre", "post"):
            soft[when] = []
            for sd in s.config.softdeps:
                if sd.module == name and sd.when == when:
                    soft[when] += yield self.LoadWithAliases, (origin, sd.softdep)
        self._active.pop()
        self._active_set.discard(key)
        params = " ".join(p for p in (s.config.options.get(name, ""),
                                      self.kernel_options.get(name, "")) if p)
        where = self.locate(origin, target)
        self.units[key] = ModuleUnit(origin, name, self._guest_path(where), params, tuple(deps),
                                     Disposition.LOAD, pre=tuple(soft["pre"]),
                                     post=tuple(soft["post"]), own_name=self._own_name(where))
        return key

    def LoadListedModules(self, s: ModuleSet) -> list[Listed]:
        """Each entry of the set's load list by LoadWithAliases (strict); an entry that loads
        nothing is a failure unless it is blocklisted (IsBlocklisted)."""
        out = []
        for entry in s.load:
            name = MakeCanonical(entry)
            keys = tuple(run_rule(self.LoadWithAliases(s.origin, name))) or (
                self._absent(s.origin, name, entry),)
            out.append(Listed(s.origin, entry, name, keys, name in s.config.blocklist))
        return out

    def unlisted(self, s: ModuleSet, note: str) -> list[Key]:
        """The set's .ko files that no load reached: a unit each, not loaded."""
        reached = {u.path for u in self.units.values()}
        out = []
        for rel in sorted(s.files):
            key = (s.origin, MakeCanonical(rel))
            path = f"{s.guest_dir}/{rel}"
            if path in reached or key in self.units:
                continue
            self.units[key] = ModuleUnit(s.origin, key[1], path, "", (), Disposition.UNLISTED,
                                         note)
            out.append(key)
        return out

    def strays(self, origin: str, paths: Sequence[str], note: str) -> list[Key]:
        """Files of a set's image outside its modules directory (guest paths): a unit each, not
        loaded, unless a module of that name is already there."""
        out = []
        for path in paths:
            key = (origin, MakeCanonical(path))
            if key not in self.units:
                self.units[key] = ModuleUnit(origin, key[1], path, "", (), Disposition.UNLISTED,
                                             note)
                out.append(key)
        return out
