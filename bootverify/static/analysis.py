"""Static prediction: would each module load on this kernel, and if not, why.

The rules are the kernel's own load-time checks, one function each, named after the kernel code
it mirrors: Linux 6.1 kernel/module/main.c and version.c (read in Debian's linux-source-6.1,
6.1.192) and the Android Common Kernel's (android14-6.1) GKI protection in the same
resolve_symbol() and verify_exported_symbols(), with its lists in kernel/module/gki_module.c.
They run in load_module()'s order:
- check_modstruct_version(): the module_layout CRC (before layout_and_allocate());
- check_modinfo(): vermagic, compared as same_magic() does;
- simplify_symbols(): resolve_symbol() for every undefined symbol: find_symbol() (found at all;
  GPL-only sections skipped for a proprietary module), check_version() (CRC, or none at all),
  verify_namespace_is_imported(), and Android's gki_is_module_unprotected_symbol()
  (CONFIG_MODULE_SIG_PROTECT: unsigned modules may use only KMI symbols of vmlinux and signed
  modules);
- verify_exported_symbols() (from complete_formation()): Android's
  gki_is_module_protected_export(), then an export the kernel already has;
and on top the KMI: a kernel symbol outside the lists is a failure on a trimmed kernel and a
latent violation otherwise. The kernel stops at the first refusal; the report lists them all.
A module whose provider fails cannot load either.

Generations (GKI android12-5.10 ... android16-6.12): these rules read the same in 5.10 and 5.15
(kernel/module.c, ACK and the AOSP prebuilts' modules), 6.1 (Debian's linux-source-6.1) and 6.12
(Debian's linux-source-6.12: kernel/module/main.c, version.c): check_modstruct_version() and
module_layout, struct modversion_info (64 bytes on 64-bit), same_magic() and VERMAGIC_STRING
(include/linux/vermagic.h, identical in 6.1 and 6.12), resolve_symbol()'s order and
verify_exported_symbols(). What differs is where a module keeps its export CRCs
(readers/modules.py _crcs(): SHN_ABS in 5.10/5.15), how compressed modules are loaded
(runtime/boot.py: MODULE_INIT_COMPRESSED_FILE from 5.17), some kernel messages (runtime/kmsg.py)
and, by distributor rather than generation, check_version() on a missing __versions entry:
Debian's 6.1 and 6.12 refuse it, upstream and ACK 5.10 to 6.12 warn once and load it. The GKI
protection rule is android14-6.1's, and android15-6.6's reads the same (resolve_symbol(): after
check_version() and the namespace, an unsigned module may take from vmlinux or a signed module
only what gki_is_module_unprotected_symbol() allows, else -EACCES, "Protected symbol";
verify_exported_symbols(): a protected export, then a duplicate; kernel/module/main.c read in
GrapheneOS's mirror of ACK android15-6.6, kernel_common-6.6 at b15343a8). An earlier
kernel/gki_module.c (ACK, 2021, read in a mirror of ACK common of the 5.x era) looks symbols up
in a list of protected ones instead of the KMI's unprotected ones: that variant is not modelled
apart.

Given the load plan (`load_slots`: what Android's loaders do, bootverify/plan/), the rules also
follow its order, since find_symbol() finds only the modules already loaded: a provider that
loads later (a first-stage module whose provider only vendor_dlkm has), one that never loads
(blocklisted, not found, in no load list), a hard dependency libmodprobe cannot load, a module
it cannot load itself, a modules.dep cycle, are problems of kind `packaging`, each naming the
fix.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bootverify.android import DEVICE_IMAGE_OF, ORIGINS, STAGE_OF, Stage
from bootverify.plan.model import Disposition, Key, LoadPlan
from bootverify.readers.modules import ModuleFacts
from bootverify.readers.symbols import KERNEL_OWNER, KernelExports

# include/linux/license.h license_is_gpl_compatible()
GPL_COMPATIBLE_LICENSES = frozenset({"GPL", "GPL v2", "GPL and additional rights",
                                     "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"})
MODULE_LAYOUT = "module_layout"


class ProblemKind(enum.StrEnum):
    UNRESOLVED = "unresolved"
    CRC_MISMATCH = "crc-mismatch"
    MISSING_VERSION = "missing-version"
    NOT_IN_KMI = "not-in-kmi"
    NAMESPACE = "namespace"
    GPL_ONLY = "gpl-only"
    VERMAGIC = "vermagic"
    PROTECTED = "protected"
    DUPLICATE_EXPORT = "duplicate-export"
    DEPENDENCY_FAILED = "dependency-failed"
    PACKAGING = "packaging"


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"       # loads, but breaks a rule that a stricter kernel would enforce
    FAIL = "fail"


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    symbol: str
    detail: str
    fatal: bool = True


class Reason(enum.Enum):
    """Every problem the rules report: its kind and its detail, a %-format template filled
    with the problem() arguments after the symbol (the kernel's own wording where it logs one).
    One table, so the wording lives in one place."""
    NO_VERMAGIC = (ProblemKind.VERMAGIC, "no version magic (modinfo vermagic)")
    BAD_VERMAGIC = (ProblemKind.VERMAGIC, "version magic '%s' should be '%s'")
    NO_VERSIONS = (ProblemKind.CRC_MISMATCH, "no __versions: built without CONFIG_MODVERSIONS, "
                                             "the kernel has symbol versions")
    BAD_VERSION = (ProblemKind.CRC_MISMATCH, "built against %#010x, %s has %#010x")
    NO_SYMBOL_VERSION = (ProblemKind.MISSING_VERSION, "no symbol version for it in __versions, "
                                                      "%s exports it with CRC %#010x")
    NOT_IN_KMI = (ProblemKind.NOT_IN_KMI, "not in the KMI symbol list; %s")
    UNKNOWN_SYMBOL = (ProblemKind.UNRESOLVED,
                      "exported neither by the kernel nor by a module of the set")
    UNKNOWN_FROM_ABSENT = (ProblemKind.UNRESOLVED, "probably from %s (in modinfo depends), "
                                                   "which is not in the set")
    GPL_ONLY = (ProblemKind.GPL_ONLY, "GPL-only export, module license '%s'")
    NAMESPACE = (ProblemKind.NAMESPACE, "exported in namespace %s, which the module does not "
                                        "import")
    PROTECTED_USE = (ProblemKind.PROTECTED, "unsigned module uses %s's %s, outside the KMI "
                                            "(unprotected) list: refused with err -13")
    PROTECTED_EXPORT = (ProblemKind.PROTECTED, "unsigned module exports a protected symbol")
    DUPLICATE_EXPORT = (ProblemKind.DUPLICATE_EXPORT, "exports a symbol %s already exports")
    DEPENDENCY_FAILED = (ProblemKind.DEPENDENCY_FAILED, "needs %s from %s, which fails to load")
    NOT_LOADABLE = (ProblemKind.PACKAGING, "%s: libmodprobe does not load it")
    DEP_NOT_LOADABLE = (ProblemKind.PACKAGING, "its modules.dep dependency %s is %s: "
                                               "InsmodWithDeps stops there")
    PROVIDER_NEVER_LOADS = (ProblemKind.PACKAGING, "needs it from %s, which never loads (%s)")
    PROVIDER_LATER_STAGE = (ProblemKind.PACKAGING, "%s (%s) needs it from %s, which only %s has "
                                                   "(%s): move %s to %s's modules.load")
    PROVIDER_LATER = (ProblemKind.PACKAGING, "needs it from %s, which loads after it: "
                                             "modules.dep does not give %s as a dependency of "
                                             "%s (run depmod over the whole partition)")
    UNLISTED = (ProblemKind.PACKAGING, "%s: never loaded")
    DEP_CYCLE = (ProblemKind.PACKAGING, "modules.dep cycle %s: libmodprobe's InsmodWithDeps "
                                        "recurses without end (depmod refuses the set)")

    def __init__(self, kind: ProblemKind, template: str) -> None:
        self.kind = kind
        self.template = template

    def problem(self, symbol: str = "", *args: object, fatal: bool = True) -> Problem:
        # %-format with positional arguments: str.format with keywords made the analysis of a
        # mismatched module set (70,000 problems) a quarter slower.
        return Problem(self.kind, symbol, self.template % args, fatal)


# Why a symbol outside the KMI matters, by (the kernel exports it, the kernel is trimmed).
NOT_IN_KMI_WHY: Mapping[tuple[bool, bool], str] = {
    (False, False): "the kernel does not export it",
    (False, True): "the kernel does not export it (trimmed)",
    (True, False): "loads only because this kernel is not trimmed",
    (True, True): "exported although the kernel is trimmed to the KMI",
}


@dataclass(frozen=True)
class Prediction:
    name: str
    path: str
    problems: tuple[Problem, ...]

    @property
    def verdict(self) -> Verdict:
        if any(p.fatal for p in self.problems):
            return Verdict.FAIL
        return Verdict.WARN if self.problems else Verdict.OK


@dataclass(frozen=True)
class KernelInterface:
    """What the kernel offers modules, and the rules it is held to."""
    exports: KernelExports
    kmi: frozenset[str] | None = None       # merged KMI symbol lists; None: no KMI given
    protected: frozenset[str] = frozenset()
    vermagic: str | None = None             # the kernel's VERMAGIC_STRING, when known
    release: str | None = None
    # check_version() on a symbol the module's __versions lacks: Debian's 6.1 fails it (EINVAL),
    # upstream 5.10, 5.15 and 6.1 warn once and let it go (see check_version() below).
    missing_version_fatal: bool = True

    @property
    def sig_protect(self) -> bool:
        """Android's CONFIG_MODULE_SIG_PROTECT: in force when the kernel has a protected-exports
        list and a KMI list (its "unprotected" symbols; empty, the kernel lets everything by)."""
        return bool(self.protected) and bool(self.kmi)

    @functools.cached_property
    def trimmed(self) -> bool:
        """TRIM_UNUSED_KSYMS against the KMI: the kernel exports nothing outside the lists.
        Cached: the rules ask once per module, and the test walks every export."""
        return self.kmi is not None and self.exports.exports.keys() <= self.kmi

    @functools.cached_property
    def modversions(self) -> bool:
        """CONFIG_MODVERSIONS: the kernel's exports have CRCs. Without it check_version() is the
        stub that returns 1 (include/linux/module.h's #else), whoever the provider is."""
        return any(e.crc is not None for e in self.exports.exports.values())


@dataclass(frozen=True)
class Slot:
    """Where the load plan puts a module: its partition, and when it loads."""
    origin: str
    line: int | None                       # its place in the load order; None: never loaded
    why_not: str = ""                      # when it is never loaded: blocklisted, not found...
    disposition: Disposition = Disposition.LOAD
    unloadable_deps: tuple[tuple[str, str], ...] = ()   # (hard dep, why it cannot load)
    cycle: tuple[str, ...] = ()            # the modules.dep cycle it is in, closed (a, b, a)

    @property
    def stage(self) -> Stage:
        return STAGE_OF[self.origin]


def load_slots(plan: LoadPlan) -> dict[str, Slot]:
    """Each module of the plan by the name the kernel knows it by (modinfo name=, else the
    file's), the first of a name (the kernel refuses a second)."""
    lines = {s.key: s.line for s in plan.steps}

    def kernel_name(k: Key) -> str:
        return plan.units[k].own_name or plan.units[k].name

    slots: dict[str, Slot] = {}
    for s in plan.steps:
        u = plan.units[s.key]
        bad = tuple((kernel_name(d), plan.units[d].disposition.value + (
            f" ({plan.units[d].note})" if plan.units[d].note else "")) for d in u.deps
                    if plan.units[d].disposition is not Disposition.LOAD)
        cycle = next((tuple(kernel_name(k) for k in c) for c in plan.cycles if s.key in c), ())
        slots.setdefault(kernel_name(s.key), Slot(u.origin, lines[s.key], u.note, u.disposition,
                                                  bad, cycle))
    return slots


@dataclass(frozen=True)
class StaticReport:
    kernel_release: str | None
    kmi_trimmed: bool
    modules: tuple[Prediction, ...]
    plan: LoadPlan | None = None           # the load plan the rules followed, if any

    def prediction(self, name: str) -> Prediction | None:
        return next((m for m in self.modules if m.name == name), None)


@dataclass(frozen=True)
class _Provider:
    owner: str                  # "vmlinux" or a module name
    crc: int | None
    gpl_only: bool
    namespace: str
    signed: bool                # vmlinux counts as signed: it is GKI


def _providers(kernel: KernelInterface, modules: Sequence[ModuleFacts]) -> dict[str, _Provider]:
    """Who resolves each symbol: the kernel first (find_symbol searches it first), then modules."""
    table = {name: _Provider(KERNEL_OWNER, e.crc, e.gpl_only, e.namespace, True)
             for name, e in kernel.exports.exports.items()}
    for m in modules:
        for e in m.exports:
            table.setdefault(e.name, _Provider(m.name, e.crc, e.gpl_only, e.namespace, m.signed))
    return table


@dataclass(frozen=True)
class _Index:
    """What the per-module rules look up, computed once for the set: the symbols no rule can
    object to, so the per-symbol rules run only on the rest (a few hundred of Debian's 160,000
    references instead of all of them), and the set's module names."""
    for_gpl: frozenset[str]         # provided, no namespace, KMI-clean, not GKI-protected
    for_non_gpl: frozenset[str]     # the same, and not GPL-only
    crcs: frozenset[tuple[str, int]]
    versioned: frozenset[str]       # provided with a CRC that check_version() compares
    module_names: frozenset[str]

    @staticmethod
    def of(kernel: KernelInterface, providers: dict[str, _Provider],
           modules: Sequence[ModuleFacts]) -> _Index:
        ok = {name for name, p in providers.items()
              if not p.namespace and (kernel.kmi is None or name in kernel.kmi or (
                  p.owner != KERNEL_OWNER and not (kernel.sig_protect and p.signed)))}
        versioned = frozenset(name for name, p in providers.items()
                              if p.crc is not None) if kernel.modversions else frozenset()
        return _Index(frozenset(ok),
                      frozenset(name for name in ok if not providers[name].gpl_only),
                      frozenset((name, p.crc) for name, p in providers.items()
                                if p.crc is not None),
                      versioned,
                      frozenset(m.name for m in modules))

    def suspects(self, m: ModuleFacts) -> list[str]:
        clean = self.for_gpl if m.license in GPL_COMPATIBLE_LICENSES else self.for_non_gpl
        needed = m.undefined_set | m.weak_set
        wrong_crc = {name for name, _ in set(m.versions.items()) - self.crcs}
        # Without any __versions, check_modstruct_version() has refused it once already.
        unversioned = (needed & self.versioned) - m.versions.keys() if m.versions else set()
        return sorted((needed - clean) | (needed & wrong_crc) | unversioned)


# --- the rules, in load_module()'s order; each returns its problem, if any ---

def check_modstruct_version(m: ModuleFacts, kernel: KernelInterface) -> Problem | None:
    """6.1 kernel/module/version.c check_modstruct_version(): check_version() of module_layout,
    whose CRC stands for struct module itself. Without any __versions, check_version() goes to
    try_to_force_load(), which refuses (no CONFIG_MODULE_FORCE_LOAD on GKI): reported once,
    here, rather than for every symbol."""
    layout = kernel.exports.exports.get(MODULE_LAYOUT)
    if layout is None or layout.crc is None:
        return None
    if not m.versions:
        return Reason.NO_VERSIONS.problem(MODULE_LAYOUT)
    return check_version(m, MODULE_LAYOUT, layout.crc, "kernel", kernel)


def same_magic(module: str, kernel: str, modversions: bool) -> bool:
    """6.1 kernel/module/version.c same_magic(): with CONFIG_MODVERSIONS the release is skipped."""
    if modversions:
        return module.partition(" ")[2] == kernel.partition(" ")[2]
    return module == kernel


def check_modinfo(m: ModuleFacts, kernel: KernelInterface) -> Problem | None:
    """6.1 kernel/module/main.c check_modinfo(), its vermagic part: no vermagic at all goes to
    try_to_force_load() and is refused; same_magic() skips the release when the module has
    __versions (info->index.vers)."""
    if not m.vermagic:
        return Reason.NO_VERMAGIC.problem()
    if kernel.vermagic and not same_magic(m.vermagic, kernel.vermagic, bool(m.versions)):
        return Reason.BAD_VERMAGIC.problem("", m.vermagic, kernel.vermagic)
    return None


def check_kmi_symbol_list(m: ModuleFacts, sym: str, p: _Provider | None,
                          kernel: KernelInterface, absent: Sequence[str]) -> Problem | None:
    """Not a load-time check but what decides find_symbol()'s answer on a GKI kernel: Kleaf's
    trim_nonlisted_kmi builds it with CONFIG_TRIM_UNUSED_KSYMS and the KMI lists as
    CONFIG_UNUSED_KSYMS_WHITELIST, so a vmlinux export outside them is gone. On a kernel that
    still has it, the use is a latent violation. Weak references may stay unresolved."""
    # modpost writes the providing modules into modinfo depends=; when one of them is not in the
    # set, the symbols nobody provides are its symbols, not kernel symbols outside the KMI.
    from_kernel = p.owner == KERNEL_OWNER if p else not absent
    if not from_kernel or kernel.kmi is None or sym in kernel.kmi or sym in m.weak_set:
        return None
    trimmed = kernel.trimmed
    return Reason.NOT_IN_KMI.problem(sym, NOT_IN_KMI_WHY[p is not None, trimmed],
                                     fatal=trimmed or p is None)


def find_symbol(m: ModuleFacts, sym: str, p: _Provider | None,
                absent: Sequence[str]) -> Problem | None:
    """6.1 kernel/module/main.c find_symbol() as resolve_symbol() calls it: not found is
    "Unknown symbol" unless the reference is weak (simplify_symbols()); a module whose license
    set_license() found not license_is_gpl_compatible() is tainted TAINT_PROPRIETARY_MODULE and
    searches without .gplok, so find_exported_symbol_in_section() skips GPL-only exports. (The
    kernel lets a weak reference to such a symbol stay NULL; it is reported all the same.)"""
    if p is None:
        if sym in m.weak_set:
            return None
        if absent:
            return Reason.UNKNOWN_FROM_ABSENT.problem(sym, ", ".join(absent))
        return Reason.UNKNOWN_SYMBOL.problem(sym)
    if p.gpl_only and m.license not in GPL_COMPATIBLE_LICENSES:
        return Reason.GPL_ONLY.problem(sym, m.license or "none")
    return None


def check_version(m: ModuleFacts, sym: str, crc: int | None, owner: str,
                  kernel: KernelInterface) -> Problem | None:
    """6.1 kernel/module/version.c check_version(), called by resolve_symbol() with the CRC
    find_symbol() found, the kernel's or a module's (a stub returning 1 without
    CONFIG_MODVERSIONS): a provider without CRCs is not checked; a __versions entry with
    another CRC is "disagrees about version of symbol" (return 0: EINVAL); no entry at all is
    "no symbol version for SYM". What that does depends on the kernel's source:
    - Debian's linux-source-6.1 (6.1.192) and linux-source-6.12 (6.12.95: kernel/module/
      version.c the same), the samples' kernels (vendor_latent on the replacement: fatal on
      both, images/README.md), with Debian's patch
      "module: Disable matching missing version CRC" (Ben Hutchings, 2016, "fail closed"):
      pr_warn() and return 0, so resolve_symbol() gives ERR_PTR(-EINVAL) and
      simplify_symbols() logs "Unknown symbol SYM (err -22)", even for a weak reference;
    - upstream 5.10 and 5.15 (kernel/module.c) and 6.1 to 6.12 (kernel/module/version.c):
      "Broken toolchain. Warn once, then let it go..": pr_warn_once() and return 1, the module
      loads (KernelInterface.missing_version_fatal=False: a warning). The kernel's Image does
      not tell the two apart (the same format string), nor does its release (the samples'
      "6.1.192" carries Debian's patch): the stricter reading is the default.
    No __versions at all was refused once, by check_modstruct_version()."""
    if crc is None or not kernel.modversions:
        return None
    built_against = m.versions.get(sym)
    if built_against is None:
        return Reason.NO_SYMBOL_VERSION.problem(sym, owner, crc,
                                                fatal=kernel.missing_version_fatal)
    if built_against == crc:
        return None
    return Reason.BAD_VERSION.problem(sym, built_against, owner, crc)


def verify_namespace_is_imported(m: ModuleFacts, sym: str, namespace: str) -> Problem | None:
    """6.1 kernel/module/main.c verify_namespace_is_imported(): a namespaced export needs the
    namespace among the module's modinfo import_ns= entries (no
    CONFIG_MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS on GKI)."""
    if not namespace or namespace in m.import_ns:
        return None
    return Reason.NAMESPACE.problem(sym, namespace)


def gki_is_module_unprotected_symbol(m: ModuleFacts, sym: str, p: _Provider,
                                     kernel: KernelInterface) -> Problem | None:
    """ACK android14-6.1 kernel/module/main.c resolve_symbol(), after the namespace check: an
    unsigned (vendor) module may take from vmlinux and signed (GKI) modules only the symbols
    gki_is_module_unprotected_symbol() (kernel/module/gki_module.c) finds in the KMI lists;
    otherwise -EACCES, "Protected symbol". Other unsigned modules' exports are free."""
    if kernel.sig_protect and not m.signed and p.signed and sym not in (kernel.kmi or ()):
        return Reason.PROTECTED_USE.problem(sym, p.owner, sym)
    return None


def resolve_symbol(m: ModuleFacts, sym: str, p: _Provider | None, kernel: KernelInterface,
                   absent: Sequence[str]) -> list[Problem]:
    """6.1 kernel/module/main.c resolve_symbol() for one undefined symbol, its checks in its
    order: find_symbol() (with the KMI rule that decides its answer on a GKI kernel),
    check_version(), verify_namespace_is_imported(), then ACK's GKI gate. inherit_taint()'s
    rule on proprietary owners is not modelled."""
    checks = (check_kmi_symbol_list(m, sym, p, kernel, absent), find_symbol(m, sym, p, absent))
    if p is not None:
        checks += (check_version(m, sym, p.crc, p.owner, kernel),
                   verify_namespace_is_imported(m, sym, p.namespace),
                   gki_is_module_unprotected_symbol(m, sym, p, kernel))
    return list(filter(None, checks))


def simplify_symbols(m: ModuleFacts, kernel: KernelInterface, providers: Mapping[str, _Provider],
                     index: _Index) -> list[Problem]:
    """6.1 kernel/module/main.c simplify_symbols(): resolve_symbol() for each SHN_UNDEF symbol;
    only the suspects, since no rule can object to the rest."""
    absent = [d for d in m.depends if d not in index.module_names]
    return [problem for sym in index.suspects(m)
            for problem in resolve_symbol(m, sym, providers.get(sym), kernel, absent)]


def verify_exported_symbols(m: ModuleFacts, kernel: KernelInterface,
                            providers: Mapping[str, _Provider]) -> list[Problem]:
    """6.1 kernel/module/main.c verify_exported_symbols(), with ACK android14-6.1's check before
    it for each export: an unsigned module may not export what
    gki_is_module_protected_export() (kernel/module/gki_module.c) lists (-EACCES); then an
    export that find_symbol() already finds is a duplicate (-ENOEXEC)."""
    problems: list[Problem] = []
    for e in m.exports:
        if kernel.sig_protect and not m.signed and e.name in kernel.protected:
            problems.append(Reason.PROTECTED_EXPORT.problem(e.name))
        owner = providers[e.name].owner
        if owner != m.name:
            problems.append(Reason.DUPLICATE_EXPORT.problem(e.name, owner))
    return problems


# --- the load plan's rules: libmodprobe's order meets find_symbol() ---

def ModuleExists(slot: Slot) -> Problem | None:
    """libmodprobe.cpp ModuleExists() / LoadWithAliases(): a listed module that is not in
    modules.dep, or whose file is not there, is not loaded at all (a blocklisted one is
    skipped on purpose: no problem); a .ko that no load list reaches is never loaded."""
    if slot.disposition is Disposition.NOT_FOUND:
        return Reason.NOT_LOADABLE.problem("", slot.why_not)
    if slot.disposition is Disposition.UNLISTED:
        return Reason.UNLISTED.problem("", slot.why_not, fatal=False)
    return None


def InsmodWithDeps(slot: Slot, uses: Mapping[str, Sequence[str]]) -> list[Problem]:
    """libmodprobe.cpp InsmodWithDeps(): the hard deps (modules.dep) load first, each must
    exist; the first that cannot load ends the load. Named with each symbol the module takes
    from it: what the kernel refuses when the module is tried anyway."""
    return [Reason.DEP_NOT_LOADABLE.problem(sym, dep, why)
            for dep, why in slot.unloadable_deps for sym in uses.get(dep, ("",))]


def find_symbol_live(m: ModuleFacts, slot: Slot, slots: Mapping[str, Slot],
                     uses: Mapping[str, Sequence[str]]) -> list[Problem]:
    """6.1 kernel/module/main.c find_symbol() searches vmlinux and the `modules` list: only
    modules loaded before this one. A provider of the set that loads later (in a later stage or
    partition, or later in the same list because modules.dep does not name it), or never, is
    "Unknown symbol" at load time however complete the set is (simplify_symbols() names every
    such symbol)."""
    out: list[Problem] = []
    listed_deps = {dep for dep, _ in slot.unloadable_deps}
    assert slot.line is not None
    for dep, syms in uses.items():
        p = slots.get(dep)
        if p is None or dep in listed_deps or (p.line is not None and p.line < slot.line):
            continue
        if p.line is None:
            reason, args = Reason.PROVIDER_NEVER_LOADS, (dep, p.why_not)
        elif ORIGINS.index(p.origin) > ORIGINS.index(slot.origin):
            reason, args = Reason.PROVIDER_LATER_STAGE, (m.name, slot.stage, dep, p.origin,
                                                         p.stage, dep,
                                                         DEVICE_IMAGE_OF[slot.origin])
        else:
            reason, args = Reason.PROVIDER_LATER, (dep, dep, m.name)
        out += [reason.problem(sym, *args) for sym in syms]
    return out


def depmod_report_cycles(slot: Slot) -> Problem | None:
    """kmod tools/depmod.c depmod_report_cycles(): a module whose modules.dep dependencies lead
    back to itself. depmod stops with "Cycle detected" and writes no modules.dep; a hand-made
    one with a cycle sends libmodprobe's InsmodWithDeps round it until init's stack runs out."""
    if not slot.cycle:
        return None
    return Reason.DEP_CYCLE.problem("", " -> ".join(slot.cycle))


def _plan_problems(m: ModuleFacts, slots: Mapping[str, Slot],
                   uses: Mapping[str, Sequence[str]]) -> list[Problem]:
    slot = slots.get(m.name)
    if slot is None:            # not a module of the plan (a --modules-dir set)
        return []
    if slot.line is None:
        return list(filter(None, [ModuleExists(slot)]))
    return [*filter(None, [depmod_report_cycles(slot)]), *InsmodWithDeps(slot, uses),
            *find_symbol_live(m, slot, slots, uses)]


def _own_problems(m: ModuleFacts, kernel: KernelInterface, providers: Mapping[str, _Provider],
                  index: _Index) -> list[Problem]:
    """load_module()'s checks of one module, in its order."""
    return [*filter(None, (check_modstruct_version(m, kernel), check_modinfo(m, kernel))),
            *simplify_symbols(m, kernel, providers, index),
            *verify_exported_symbols(m, kernel, providers)]


def analyze(kernel: KernelInterface, modules: Sequence[ModuleFacts],
            plan: LoadPlan | None = None) -> StaticReport:
    providers = _providers(kernel, modules)
    index = _Index.of(kernel, providers, modules)
    # Which set modules each module takes symbols from, and which symbols. Weak symbols do not
    # count: when their provider fails they stay unresolved, which a weak reference allows.
    from_modules = frozenset(n for n, p in providers.items() if p.owner != KERNEL_OWNER)
    uses: dict[str, dict[str, list[str]]] = {}
    for m in modules:
        deps: dict[str, list[str]] = {}
        for sym in sorted(m.undefined_set & from_modules):
            if providers[sym].owner != m.name:
                deps.setdefault(providers[sym].owner, []).append(sym)
        uses[m.name] = deps
    slots = load_slots(plan) if plan else {}
    own = {m.name: _own_problems(m, kernel, providers, index) + _plan_problems(m, slots,
                                                                               uses[m.name])
           for m in modules}
    # A failure spreads to every module that needs the failing one, to a fixed point, with each
    # symbol the module takes from it: simplify_symbols() names every one it cannot resolve.
    failing = {name for name, probs in own.items() if any(p.fatal for p in probs)}
    inherited: dict[str, list[Problem]] = {m.name: [] for m in modules}
    spread: dict[str, set[str]] = {m.name: set() for m in modules}
    changed = True
    while changed:
        changed = False
        for m in modules:
            for dep, syms in uses[m.name].items():
                if dep in failing and dep not in spread[m.name]:
                    spread[m.name].add(dep)
                    inherited[m.name] += [Reason.DEPENDENCY_FAILED.problem(sym, sym, dep)
                                          for sym in syms]
                    if m.name not in failing:
                        failing.add(m.name)
                        changed = True
    return StaticReport(
        kernel_release=kernel.release,
        kmi_trimmed=kernel.trimmed,
        modules=tuple(Prediction(m.name, m.path, tuple(own[m.name] + inherited[m.name]))
                      for m in modules),
        plan=plan,
    )
