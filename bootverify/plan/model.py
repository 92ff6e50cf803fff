"""The load plan's facts: module sets, units, steps, the plan itself (pure data)."""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from bootverify.android import ORIGINS, STAGE_OF, Stage
from bootverify.plan.firststage import BootFacts
from bootverify.readers.modulesdir import ModulesDir

Key = tuple[str, str]         # (origin, module name)


@dataclass(frozen=True)
class ModuleSet:
    """One directory of modules as the guest sees it."""
    origin: str                    # vendor_ramdisk, system_dlkm, vendor_dlkm
    guest_dir: str                 # e.g. /lib/modules
    files: frozenset[str]          # .ko paths relative to guest_dir
    config: ModulesDir
    load_file: str = "modules.load"    # the load list of the boot mode (GetModuleLoadList)
    # .ko path -> the module's own name (modinfo name=), where it is not the file's: the name
    # the kernel uses in its log and for EEXIST
    own_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def load(self) -> tuple[str, ...]:
        return self.config.load_list(self.load_file)


class Disposition(enum.StrEnum):
    """What the loader does with a module before the kernel has a say."""
    LOAD = "load"
    BLOCKLISTED = "blocklisted"    # ModuleExists(): in modules.blocklist
    NOT_FOUND = "not-found"        # not in modules.dep, or its file is not there
    UNLISTED = "unlisted"          # a .ko of the set that no load list reaches


@dataclass(frozen=True)
class ModuleUnit:
    origin: str
    name: str
    path: str                      # guest path to open ("" when the file is not there)
    params: str
    deps: tuple[Key, ...]          # hard deps, in load order (modules.dep reversed)
    disposition: Disposition = Disposition.LOAD
    note: str = ""                 # why it is not loaded
    pre: tuple[Key, ...] = ()      # modules.softdep pre: that exist, loaded before it
    post: tuple[Key, ...] = ()     # modules.softdep post:, loaded after it
    own_name: str = ""             # modinfo name= where it differs from `name` (the file's)

    @property
    def key(self) -> Key:
        return (self.origin, self.name)

    @property
    def blocklisted(self) -> bool:
        return self.disposition is Disposition.BLOCKLISTED


@dataclass(frozen=True)
class Listed:
    """One load-list entry and what LoadWithAliases made of it."""
    origin: str
    entry: str                     # as the load list writes it
    name: str                      # canonical
    keys: tuple[Key, ...]          # the modules it loads (itself, or what its aliases name)
    blocklisted: bool              # IsBlocklisted(entry): its failure is not a failure

    @property
    def stage(self) -> Stage:
        return STAGE_OF[self.origin]


@dataclass(frozen=True)
class Step:
    """One module in load order: loaded from plan line `line`, or not loaded (`skip` says why).
    `joins`: loaded at the same time as the step before it (one wave of parallel loading)."""
    key: Key
    line: int | None
    skip: str = ""
    joins: bool = False


@dataclass(frozen=True)
class LoadPlan:
    units: Mapping[Key, ModuleUnit]
    order: tuple[Key, ...]         # the listed modules: each set's load list, sets in order
    sets: tuple[ModuleSet, ...]
    notes: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()   # every module, dependencies first (InsmodWithDeps' order),
                                   # then the unlisted ones
    listed: tuple[Listed, ...] = ()
    boot: BootFacts | None = None
    cycles: tuple[tuple[Key, ...], ...] = ()   # modules.dep cycles, each closed (a, b, a)

    @functools.cached_property
    def lines(self) -> tuple[str, ...]:
        """/bootverify/plan: `PATH PARAMS` for each step that loads, line N = step with line N;
        `&PATH PARAMS` for one loaded at the same time as the line before it (finit.c)."""
        return tuple(("&" if s.joins else "")
                     + f"{self.units[s.key].path} {self.units[s.key].params}".rstrip()
                     for s in self.steps if s.line is not None)

    @functools.cached_property
    def waves(self) -> tuple[tuple[int, ...], ...]:
        """The plan lines loaded together, in order (a line loaded alone is a wave of one)."""
        out: list[list[int]] = []
        for s in self.steps:
            if s.line is not None:
                if s.joins and out:
                    out[-1].append(s.line)
                else:
                    out.append([s.line])
        return tuple(tuple(w) for w in out)

    @functools.cached_property
    def wave_of(self) -> dict[int, tuple[int, ...]]:
        return {line: w for w in self.waves for line in w}

    @functools.cached_property
    def _by_line(self) -> dict[int, Key]:
        return {s.line: s.key for s in self.steps if s.line is not None}

    def reach(self, keys: Iterable[Key], *, post: bool) -> frozenset[Key]:
        """`keys` and what loading them loads as well: hard deps and soft pre-deps, and with
        `post` soft post-deps (InsmodWithDeps' order, unit by unit)."""
        seen: set[Key] = set()
        todo = list(keys)
        while todo:
            k = todo.pop()
            if k not in seen:
                seen.add(k)
                u = self.units[k]
                todo += [*u.deps, *u.pre, *(u.post if post else ())]
        return frozenset(seen)

    def unit_at(self, line: int) -> ModuleUnit:
        return self.units[self._by_line[line]]

    def unlisted_sets(self) -> tuple[ModuleSet, ...]:
        """Sets with .ko files and an empty load list: nothing of them loads (a failure)."""
        return tuple(s for s in self.sets if s.files and not s.load)

    def duplicates(self) -> tuple[tuple[ModuleUnit, ...], ...]:
        """Modules shipped in more than one set (the same name in vendor_kernel_boot and
        system_dlkm), each with its copies in load order. The kernel keeps the first copy that
        loads and answers EEXIST to the others, which libmodprobe counts as loaded: a later
        copy never runs, whatever it is."""
        copies: dict[str, list[ModuleUnit]] = {}
        for u in self.units.values():
            if u.path:                          # a file that is there, not a name only
                copies.setdefault(u.name, []).append(u)
        return tuple(tuple(sorted(us, key=lambda u: ORIGINS.index(u.origin)))
                     for _, us in sorted(copies.items()) if len(us) > 1)

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
