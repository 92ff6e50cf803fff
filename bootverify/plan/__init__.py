"""The load plan: which modules Android would load, from where, with what, in which order, and
which it would not. Pure data made from the module directories (the readers at the edge:
`plan_for`, `ramdisk_module_set`, `dir_module_set`); nothing here boots or loads. `check` and
`run` both start from it (readers -> plan -> static analysis -> boot).

The model is AOSP system/core (REFERENCE.md §4): first_stage_init.cpp decides (firststage.py)
the boot mode, its load list (modules.load, .recovery, .charger; a missing one falls back to
modules.load), the module directory, whether failures are fatal; libmodprobe.cpp decides
(libmodprobe.py) what each load-list entry loads: modules.alias, modules.dep (hard deps in
reverse order), modules.softdep (pre and post, non-strict), modules.options plus the kernel
command line's `mod.param=`, modules.blocklist. Stages: first stage = the vendor ramdisk's
modules; second stage = system_dlkm, then vendor_dlkm (init rc's modprobe, libmodprobe too).

Every .ko of the inputs is in the plan: loaded, blocklisted (`skipped`), not found (listed, or a
hard dep, but missing from modules.dep or from the image), or unlisted (no load reaches it).

Where bootverify parts from Android on purpose, so that one run shows everything:
- It goes on after a failure; where the device would have stopped is verdict.py's to say.
- A module whose hard dep did not load (failed, blocklisted, not found) is still tried after the
  deps that load, and gets the kernel's verdict (typically `link-error`, the dep's symbols);
  InsmodWithDeps would not try it. Either way it does not load; the kernel's words are the
  better evidence, and the device verdict counts it as failed all the same.
- With `androidboot.load_modules_parallel`, first stage loads in LoadModulesParallel's waves
  (parallel.py: the plan file marks the lines of a wave, finit loads them at once on all the
  guest's CPUs); second stage stays sequential, as init rc's modprobe is.
- modules.options' `dyn_options` lines (options from a program's output) are noted, not run.

Loading is finit_module() on the opened file, exactly once (agent.py's finit); EEXIST counts as
loaded. The plan goes into the agent's overlay as /bootverify/plan, one `PATH PARAMS` line per
module that loads (`LoadPlan.lines`; `&PATH PARAMS` for one in the wave of the line before);
the runner (runtime/runner.py) has the guest walk it. shards.py cuts a plan into
dependency-closed parts, one per guest (`run --jobs`, `--shard`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from bootverify import android
from bootverify.android import BootMode, Stage
from bootverify.errors import InputError
from bootverify.plan.firststage import (
    BootFacts,
    GetModuleLoadList,
    GetPageSizeSuffix,
    boot_facts,
    module_dir_choice,
    proc_bootconfig,
)
from bootverify.plan.libmodprobe import Modprobe, ParseKernelCmdlineOptions
from bootverify.plan.model import Disposition, Key, Listed, LoadPlan, ModuleSet, ModuleUnit, Step
from bootverify.plan.parallel import LoadModulesParallel, Wave, without_load_sequential
from bootverify.readers.modules import (COMPRESSED_SUFFIXES, MODULE_SUFFIXES, find_modules,
                                        parse_module, read_module)
from bootverify.readers.modulesdir import MakeCanonical, parse_modules_dir, read_modules_dir
from bootverify.readers.ramdisk import CpioEntry

__all__ = ["Disposition", "Key", "Listed", "LoadPlan", "ModuleSet", "ModuleUnit", "Step",
           "make_plan", "plan_for", "ramdisk_module_set", "dir_module_set"]

def _steps(units: Mapping[Key, ModuleUnit], order: Sequence[Key],
           unlisted: Sequence[Key]) -> tuple[Step, ...]:
    """InsmodWithDeps' order: hard deps, soft pre-deps, the module, soft post-deps; then the
    unlisted modules."""
    out: list[Step] = []
    seen: set[Key] = set()
    loads = 0
    # Depth first on an explicit stack (a modules.dep chain can be thousands deep): "visit"
    # a module, or "place" it once its deps and pre-deps are placed.
    todo: list[tuple[bool, Key]] = [(False, k) for k in reversed([*order, *unlisted])]
    while todo:
        place, k = todo.pop()
        u = units[k]
        if place:
            if u.disposition is Disposition.LOAD:
                loads += 1
                out.append(Step(k, loads))
            else:
                out.append(Step(k, None, u.note))
            continue
        if k in seen:
            continue
        seen.add(k)                     # before the dependencies: a cycle ends here
        todo += [(False, d) for d in reversed(u.post)]
        todo.append((True, k))
        todo += [(False, d) for d in reversed(u.deps + u.pre)]
    return tuple(out)


def _parallel_steps(units: Mapping[Key, ModuleUnit], steps: Sequence[Step],
                    waves: Sequence[Wave]) -> tuple[Step, ...]:
    """First stage's steps in wave order: its listed modules that do not load first (that is
    decided before any load), then the waves; the later stages' and the unlisted steps as they
    were; lines renumbered."""
    first = [s for s in steps if s.key[0] == android.ORIGINS[0]
             and units[s.key].disposition is not Disposition.UNLISTED]
    in_waves = {k for w in waves for k in w.keys}
    out = [s for s in first if s.line is None]
    out += [Step(k, 0, joins=i > 0) for w in waves for i, k in enumerate(w.keys)]
    out += [s for s in first if s.line is not None and s.key not in in_waves]
    placed = {s.key for s in out}
    out += [s for s in steps if s.key not in placed]
    line = 0
    renumbered = []
    for s in out:
        if s.line is not None:
            line += 1
            s = replace(s, line=line)
        renumbered.append(s)
    return tuple(renumbered)


def _notes(sets: Sequence[ModuleSet], boot: BootFacts | None,
           cycles: Sequence[tuple[Key, ...]] = ()) -> list[str]:
    notes = []
    if boot is not None:
        notes.append(f"boot mode {boot.mode} ({boot.mode_why})")
        if boot.parallel:
            notes.append("bootconfig asks for parallel loading (androidboot.load_modules_"
                         "parallel): first stage loads in waves of dependency leaves on all the "
                         "guest's CPUs (LoadModulesParallel); a failure stops it after its wave")
    notes += [f"packaging problem: modules.dep cycle {' -> '.join(f'{o}:{n}' for o, n in c)} "
              f"(libmodprobe's InsmodWithDeps would recurse without end, depmod refuses it; "
              f"bootverify cut it there)" for c in cycles]
    for s in sets:
        notes += [f"{s.origin}: {d.note()}" for d in s.config.dropped]
        notes += [f"{s.origin}: not evaluated (options from a program's output): {d.line}"
                  for d in s.config.dyn_options]
        if s.files and not s.load:
            notes.append(f"{s.origin}: {len(s.files)} .ko file(s) and no {s.load_file} "
                         f"entries in {s.guest_dir}: nothing of it loads")
        compressed = sum(1 for f in s.files if f.endswith(tuple(COMPRESSED_SUFFIXES)))
        if compressed:
            notes.append(f"{s.origin}: {compressed} compressed module file(s), loaded as kmod "
                         f"loads them; Android's libmodprobe (Insmod()) passes finit_module() "
                         f"no flags, so on a device the kernel refuses them (ENOEXEC, Invalid ELF "
                         f"header magic): the device verdict counts them as failing")
    return notes


def make_plan(sets: Sequence[ModuleSet], cmdline: str = "",
              boot: BootFacts | None = None, strays: Sequence[str] = ()) -> LoadPlan:
    """`strays`: the vendor ramdisk's .ko files outside first stage's module directory, which
    nothing loads."""
    m = Modprobe(sets, ParseKernelCmdlineOptions(cmdline))
    listed = [x for s in sets for x in m.LoadListedModules(s)]
    order = tuple(dict.fromkeys(k for x in listed for k in x.keys))
    unlisted = [k for s in sets
                for k in m.unlisted(s, f"in no load list ({s.guest_dir}/{s.load_file})")]
    if sets:
        unlisted += m.strays(sets[0].origin, strays,
                             f"outside first stage's module directory {sets[0].guest_dir}")
    for u in m.units.values():
        if u.path and any(c.isspace() for c in u.path):
            raise InputError(u.path, "module path with white space: the guest's plan file "
                                     "cannot hold it")
    steps = _steps(m.units, order, unlisted)
    units = dict(m.units)
    if boot is not None and boot.parallel:
        waves = LoadModulesParallel(units, [x for x in listed if x.stage is Stage.FIRST])
        steps = _parallel_steps(units, steps, waves)
        units.update({k: replace(units[k], params=without_load_sequential(units[k].params))
                      for w in waves for k in w.keys})
    cycles = tuple(m.cycles.values())
    return LoadPlan(units, order, tuple(sets), tuple(_notes(sets, boot, cycles)), steps,
                    tuple(listed), boot, cycles)


def _tree_set(tree: Mapping[str, CpioEntry], rel: str, mode: BootMode) -> ModuleSet:
    """The modules directory `rel` of the unpacked device ramdisks."""
    files = frozenset(name[len(rel) + 1:] for name, e in tree.items()
                      if name.startswith(rel + "/") and name.endswith(MODULE_SUFFIXES)
                      and e.is_file)
    texts = {}
    for name in android.MODULES_FILES:
        e = tree.get(f"{rel}/{name}")
        if e is not None and e.is_file:
            try:
                texts[name] = e.data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"initrd:/{rel}/{name}", f"not text: {err}") from None
    return ModuleSet("vendor_ramdisk", "/" + rel, files,
                     parse_modules_dir(Path(f"initrd:/{rel}"), texts),
                     GetModuleLoadList(mode, texts),
                     _own_names({f: tree[f"{rel}/{f}"].data for f in files}, f"initrd:/{rel}"))


def _own_names(modules: Mapping[str, bytes | Path], where: str) -> dict[str, str]:
    """The modules whose own name (modinfo name=, the kernel's) is not their file's; a module
    that cannot be read keeps its file's name (the kernel's verdict on it comes at load)."""
    out = {}
    for rel, source in modules.items():
        try:
            facts = read_module(source) if isinstance(source, Path) else \
                parse_module(source, f"{where}/{rel}")
        except InputError:
            continue
        if facts.name != MakeCanonical(rel):
            out[rel] = facts.name
    return out


def ramdisk_module_set(tree: Mapping[str, CpioEntry], release: str, mode: BootMode,
                       page_suffix: str = "") -> ModuleSet:
    """First stage's module directory (LoadKernelModules' choice) of the device ramdisks."""
    base = android.MODULE_BASE_DIR.lstrip("/")
    dirs = sorted({name.split("/")[2] for name in tree
                   if name.startswith(base + "/") and name.count("/") >= 2
                   and (name.count("/") >= 3 or tree[name].is_dir)})

    def loads_any(d: str) -> bool:
        s = _tree_set(tree, f"{base}/{d}", mode)
        m = Modprobe([s], {})
        return any(m.units[k].disposition is Disposition.LOAD
                   for x in m.LoadListedModules(s) for k in x.keys)

    chosen = module_dir_choice(dirs, release, page_suffix, loads_any)
    return _tree_set(tree, f"{base}/{chosen}" if chosen else base, mode)


def dir_module_set(origin: str, directory: Path, mode: BootMode = BootMode.NORMAL) -> ModuleSet:
    """A dlkm partition's module directory (--system-dlkm / --vendor-dlkm) as packed into the
    overlay. Its load list is the mode's, as for the first stage."""
    directory = Path(directory)
    found = {str(p.relative_to(directory)): p for p in find_modules(directory)}
    present = [f for f in android.LOAD_LISTS.values() if (directory / f).is_file()]
    return ModuleSet(origin, android.DLKM_GUEST_DIRS[origin], frozenset(found),
                     read_modules_dir(directory), GetModuleLoadList(mode, present),
                     _own_names(found, str(directory)))


def plan_for(tree: Mapping[str, CpioEntry], release: str, kernel_image: bytes,
             bootconfig: bytes, cmdline: str, dlkm_dirs: Mapping[str, Path] | None = None,
             boot_mode: BootMode | None = None) -> LoadPlan:
    """The plan for a device: the device ramdisks' tree, the kernel's release and Image, the
    bootconfig (as in the image) and the kernel command line; the dlkm directories; the boot
    mode when forced."""
    facts = boot_facts(cmdline, proc_bootconfig(bootconfig), android.RECOVERY_BINARY in tree,
                       boot_mode)
    first = ramdisk_module_set(tree, release, facts.mode, GetPageSizeSuffix(kernel_image))
    sets = [first]
    for origin in android.ORIGINS[1:]:
        if dlkm_dirs and origin in dlkm_dirs:
            sets.append(dir_module_set(origin, dlkm_dirs[origin], facts.mode))
    inside = first.guest_dir.lstrip("/") + "/"
    strays = sorted("/" + name for name, e in tree.items()
                    if e.is_file and name.endswith(MODULE_SUFFIXES)
                    and not (name.startswith(inside) and name[len(inside):] in first.files))
    return make_plan(sets, cmdline, facts, strays)
