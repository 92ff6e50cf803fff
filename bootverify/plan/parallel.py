"""First stage's parallel loading (REFERENCE.md §4): libmodprobe's LoadModulesParallel, which
first_stage_init calls instead of LoadListedModules when bootconfig says
`androidboot.load_modules_parallel = "true"`, with std::thread::hardware_concurrency() threads.
Made static, as the rest of the plan: the waves are worked out assuming each load succeeds
(the kernel's verdicts come later, from the run), as data the guest's loader follows.

LoadModulesParallel (AOSP system/core libmodprobe/libmodprobe.cpp):
- each load-list entry that is not blocklisted gets its modules.dep line (the module, then its
  dependencies); an entry without one fails the whole call before anything loads;
- a wave: for each pending entry, in the order of a std::map (by canonical name), the last
  path of its line not loaded yet (a dependency leaf); a blocklisted one fails the whole call;
  one whose options hold `load_sequential=1` loads alone, there and then (the token removed
  from its options); the others load together, LoadWithAliases each (InsmodWithDeps: its soft
  pre-deps and hard deps, itself, its soft post-deps) on all CPUs: hardware_concurrency()
  worker threads, each taking the next from the back of the list (`mods_path_to_load.back()`),
  so the last entry's leaf starts first. The start order decides which of two modules of a wave
  gets there first when one's init asks for the other by request_module (nls_euc_jp's
  load_nls("cp932"), jitterentropy_rng's sha3-256): the plan lists a wave's modules in it, and
  finit starts its children in line order;
- a load that fails fails the call after its wave; the loaded modules leave the lines; repeat
  until every entry is loaded.

Where bootverify parts from it: as everywhere in the plan, it goes on past a failure (the
device verdict says where first stage stops; with parallel loading a failure stops it after
the failing module's wave). A module that a wave member's InsmodWithDeps loads before it (a
soft pre-dep, a dependency not loaded yet) is loaded alone just before the wave, and a soft
post-dep alone just after it, rather than in the member's thread while the rest of the wave
loads: a wave is a set of single modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bootverify.plan.model import Disposition, Key, Listed, ModuleUnit

LOAD_SEQUENTIAL = "load_sequential=1"


@dataclass(frozen=True)
class Wave:
    """Modules loaded at the same time; a sequential wave is one module loaded alone."""
    keys: tuple[Key, ...]
    sequential: bool = False


def load_sequential(u: ModuleUnit) -> bool:
    return LOAD_SEQUENTIAL in u.params


def without_load_sequential(params: str) -> str:
    """The options as the module gets them: LoadModulesParallel erases the token."""
    return " ".join(params.replace(LOAD_SEQUENTIAL, "", 1).split())


def _InsmodWithDeps(units: Mapping[Key, ModuleUnit], k: Key, loaded: set[Key]) -> list[Key]:
    """What a LoadWithAliases of loadable `k` loads, in order, of what has not loaded yet."""
    out: list[Key] = []

    def visit(x: Key) -> None:
        if x in loaded or x in out or units[x].disposition is not Disposition.LOAD:
            return
        u = units[x]
        for d in u.deps + u.pre:
            visit(d)
        if x not in out:                # a cycle through x has put it there
            out.append(x)
        for d in u.post:
            visit(d)

    visit(k)
    return out


def LoadModulesParallel(units: Mapping[Key, ModuleUnit],
                        listed: Sequence[Listed]) -> tuple[Wave, ...]:
    """The first stage's waves (see the module docstring), from its listed entries."""
    # The modules.dep line of each loadable entry: the module, then its deps as the file
    # lists them (ModuleUnit.deps is in load order, the file's reversed).
    lines: dict[str, list[Key]] = {}
    for x in listed:
        if x.blocklisted:
            continue
        for k in x.keys:
            u = units[k]
            if u.disposition is Disposition.LOAD:
                lines.setdefault(u.name, [k, *reversed(u.deps)])
    waves: list[Wave] = []
    loaded: set[Key] = set()
    while lines:
        together: list[Key] = []
        for name in sorted(lines):
            leaf = lines[name][-1]
            if units[leaf].disposition is not Disposition.LOAD:
                loaded.add(leaf)        # fails the call on the device; bootverify goes on
            elif load_sequential(units[leaf]):
                for k in _InsmodWithDeps(units, leaf, loaded):
                    waves.append(Wave((k,), True))
                    loaded.add(k)
            elif leaf not in together and leaf not in loaded:
                together.append(leaf)
        # in the order the worker threads take them: from the back
        seqs = {m: _InsmodWithDeps(units, m, loaded) for m in reversed(together)}
        before = dict.fromkeys(k for m, seq in seqs.items() for k in seq[:seq.index(m)])
        after = dict.fromkeys(k for m, seq in seqs.items() for k in seq[seq.index(m) + 1:]
                              if k not in before)
        wave = tuple(m for m in seqs if m not in before)
        waves += [Wave((k,), True) for k in before]
        if wave:
            waves.append(Wave(wave, len(wave) == 1))
        waves += [Wave((k,), True) for k in after if k not in wave]
        loaded.update(before, wave, after)
        lines = {n: left for n, line in lines.items()
                 if (left := [k for k in line if k not in loaded])}
    return tuple(waves)
