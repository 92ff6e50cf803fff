"""Static prediction: would each module load on this kernel, and if not, why.

The rules are the kernel's own load-time checks (6.1 kernel/module/main.c and version.c, plus
Android's GKI protected-exports check), applied to the facts the readers extracted:
- check_modinfo: vermagic, compared as same_magic() does;
- check_modstruct_version: the module_layout CRC;
- simplify_symbols / resolve_symbol for every undefined symbol: found at all, CRC
  (check_version), namespace (verify_namespace_is_imported), GPL-only (inherit_taint /
  gpl-only check), Android's GKI protection (CONFIG_MODULE_SIG_PROTECT: unsigned modules may use
  only KMI symbols of vmlinux and signed modules, and may not export protected symbols);
- verify_exported_symbols: an export the kernel already has;
and on top the KMI: a kernel symbol outside the lists is a failure on a trimmed kernel and a
latent violation otherwise. A module whose provider fails cannot load either.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from bootverify.readers.modules import ModuleFacts
from bootverify.readers.symbols import KERNEL_OWNER, KernelExports

# include/linux/license.h license_is_gpl_compatible()
GPL_COMPATIBLE_LICENSES = frozenset({"GPL", "GPL v2", "GPL and additional rights",
                                     "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"})
MODULE_LAYOUT = "module_layout"


class ProblemKind(enum.StrEnum):
    UNRESOLVED = "unresolved"
    CRC_MISMATCH = "crc-mismatch"
    NOT_IN_KMI = "not-in-kmi"
    NAMESPACE = "namespace"
    GPL_ONLY = "gpl-only"
    VERMAGIC = "vermagic"
    PROTECTED = "protected"
    DUPLICATE_EXPORT = "duplicate-export"
    DEPENDENCY_FAILED = "dependency-failed"


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


@dataclass(frozen=True)
class StaticReport:
    kernel_release: str | None
    kmi_trimmed: bool
    modules: tuple[Prediction, ...]

    def prediction(self, name: str) -> Prediction | None:
        return next((m for m in self.modules if m.name == name), None)


@dataclass(frozen=True)
class _Provider:
    owner: str                  # "vmlinux" or a module name
    crc: int | None
    gpl_only: bool
    namespace: str
    signed: bool                # vmlinux counts as signed: it is GKI


def same_magic(module: str, kernel: str, modversions: bool) -> bool:
    """kernel/module/version.c same_magic(): with CONFIG_MODVERSIONS the release is skipped."""
    if modversions:
        return module.partition(" ")[2] == kernel.partition(" ")[2]
    return module == kernel


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
    module_names: frozenset[str]

    @staticmethod
    def of(kernel: KernelInterface, providers: dict[str, _Provider],
           modules: Sequence[ModuleFacts]) -> _Index:
        ok = {name for name, p in providers.items()
              if not p.namespace and (kernel.kmi is None or name in kernel.kmi or (
                  p.owner != KERNEL_OWNER and not (kernel.sig_protect and p.signed)))}
        return _Index(frozenset(ok),
                      frozenset(name for name in ok if not providers[name].gpl_only),
                      frozenset((name, p.crc) for name, p in providers.items()
                                if p.crc is not None),
                      frozenset(m.name for m in modules))

    def suspects(self, m: ModuleFacts) -> list[str]:
        clean = self.for_gpl if m.license in GPL_COMPATIBLE_LICENSES else self.for_non_gpl
        needed = m.undefined_set | m.weak_set
        wrong_crc = {name for name, _ in set(m.versions.items()) - self.crcs}
        return sorted((needed - clean) | (needed & wrong_crc))


def _own_problems(m: ModuleFacts, kernel: KernelInterface, providers: dict[str, _Provider],
                  index: _Index) -> list[Problem]:
    problems: list[Problem] = []
    # check_modinfo(): no vermagic at all is refused (try_to_force_load(), no FORCE_LOAD), and
    # same_magic() skips the release when the module has __versions (info->index.vers).
    if not m.vermagic:
        problems.append(Problem(ProblemKind.VERMAGIC, "", "no version magic (modinfo vermagic)"))
    elif kernel.vermagic and not same_magic(m.vermagic, kernel.vermagic, bool(m.versions)):
        problems.append(Problem(ProblemKind.VERMAGIC, "",
                                f"version magic '{m.vermagic}' should be '{kernel.vermagic}'"))
    layout = kernel.exports.exports.get(MODULE_LAYOUT)
    if MODULE_LAYOUT in m.versions and layout and layout.crc is not None \
            and layout.crc != m.versions[MODULE_LAYOUT]:
        problems.append(Problem(ProblemKind.CRC_MISMATCH, MODULE_LAYOUT,
                                f"built against {m.versions[MODULE_LAYOUT]:#010x}, "
                                f"kernel has {layout.crc:#010x}"))
    elif not m.versions and layout and layout.crc is not None:
        # check_version() without a __versions section: try_to_force_load() refuses it.
        problems.append(Problem(ProblemKind.CRC_MISMATCH, MODULE_LAYOUT,
                                "no __versions: built without CONFIG_MODVERSIONS, the kernel "
                                "has symbol versions"))
    trimmed = kernel.trimmed
    # modpost writes the providing modules into modinfo depends=; when one of them is not in the
    # set, the symbols nobody provides are its symbols, not kernel symbols outside the KMI.
    absent = [d for d in m.depends if d not in index.module_names]
    for sym in index.suspects(m):
        weak = sym in m.weak_set
        p = providers.get(sym)
        from_kernel = p.owner == KERNEL_OWNER if p else not absent
        if from_kernel and kernel.kmi is not None and sym not in kernel.kmi and not weak:
            if p is None:
                why = "; the kernel does not export it" + (" (trimmed)" if trimmed else "")
            elif trimmed:
                why = "; exported although the kernel is trimmed to the KMI"
            else:
                why = "; loads only because this kernel is not trimmed"
            problems.append(Problem(ProblemKind.NOT_IN_KMI, sym,
                                    "not in the KMI symbol list" + why,
                                    fatal=trimmed or p is None))
        if p is None:
            if not weak:
                problems.append(Problem(ProblemKind.UNRESOLVED, sym, (
                    f"probably from {', '.join(absent)} (in modinfo depends), which is not in "
                    f"the set" if absent else
                    "exported neither by the kernel nor by a module of the set")))
            continue
        if sym in m.versions and p.crc is not None and p.crc != m.versions[sym]:
            problems.append(Problem(ProblemKind.CRC_MISMATCH, sym,
                                    f"built against {m.versions[sym]:#010x}, {p.owner} has "
                                    f"{p.crc:#010x}"))
        if p.namespace and p.namespace not in m.import_ns:
            problems.append(Problem(ProblemKind.NAMESPACE, sym,
                                    f"exported in namespace {p.namespace}, which the module "
                                    f"does not import"))
        if p.gpl_only and m.license not in GPL_COMPATIBLE_LICENSES:
            problems.append(Problem(ProblemKind.GPL_ONLY, sym,
                                    f"GPL-only export, module license '{m.license or 'none'}'"))
        # ACK kernel/module/main.c resolve_symbol(): an unsigned (vendor) module may take from
        # vmlinux and signed (GKI) modules only the unprotected symbols, i.e. the KMI lists.
        if kernel.sig_protect and not m.signed and p.signed and sym not in (kernel.kmi or ()):
            problems.append(Problem(ProblemKind.PROTECTED, sym,
                                    f"unsigned module uses {p.owner}'s {sym}, outside the KMI "
                                    f"(unprotected) list: refused with err -13"))
    for e in m.exports:
        owner = providers[e.name].owner
        if owner != m.name:
            problems.append(Problem(ProblemKind.DUPLICATE_EXPORT, e.name,
                                    f"exports a symbol {owner} already exports"))
        if kernel.sig_protect and not m.signed and e.name in kernel.protected:
            problems.append(Problem(ProblemKind.PROTECTED, e.name,
                                    "unsigned module exports a protected symbol"))
    return problems


def analyze(kernel: KernelInterface, modules: Sequence[ModuleFacts]) -> StaticReport:
    providers = _providers(kernel, modules)
    index = _Index.of(kernel, providers, modules)
    own = {m.name: _own_problems(m, kernel, providers, index) for m in modules}
    # Which set modules each module takes symbols from, in first-use order. Weak symbols do not
    # count: when their provider fails they stay unresolved, which a weak reference allows.
    from_modules = frozenset(n for n, p in providers.items() if p.owner != KERNEL_OWNER)
    uses: dict[str, dict[str, str]] = {}
    for m in modules:
        deps: dict[str, str] = {}
        for sym in sorted(m.undefined_set & from_modules):
            if providers[sym].owner != m.name:
                deps.setdefault(providers[sym].owner, sym)
        uses[m.name] = deps
    # A failure spreads to every module that needs the failing one, to a fixed point.
    failing = {name for name, probs in own.items() if any(p.fatal for p in probs)}
    inherited: dict[str, list[Problem]] = {m.name: [] for m in modules}
    changed = True
    while changed:
        changed = False
        for m in modules:
            for dep, sym in uses[m.name].items():
                if dep in failing and not any(p.symbol == sym for p in inherited[m.name]):
                    inherited[m.name].append(Problem(
                        ProblemKind.DEPENDENCY_FAILED, sym,
                        f"needs {sym} from {dep}, which fails to load"))
                    if m.name not in failing:
                        failing.add(m.name)
                        changed = True
    return StaticReport(
        kernel_release=kernel.release,
        kmi_trimmed=kernel.trimmed,
        modules=tuple(Prediction(m.name, m.path, tuple(own[m.name] + inherited[m.name]))
                      for m in modules),
    )
