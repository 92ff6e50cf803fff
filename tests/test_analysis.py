"""Static analysis rules (bootverify.static.analysis) on hand-built module facts and kernel
exports: each rule, fatal or latent, dependency propagation, provider order, vermagic."""

from __future__ import annotations

import dataclasses

import pytest

from bootverify.readers.modules import ModuleExport, ModuleFacts
from bootverify.readers.symbols import Export, ExportType, KernelExports
from bootverify.static.analysis import (KernelInterface, Problem, ProblemKind, Verdict, analyze,
                                        same_magic)

REL = "6.1.99-android14-11"
FLAGS = "SMP preempt mod_unload modversions aarch64"
KVERMAGIC = f"{REL} {FLAGS}"
LAYOUT_CRC = 0x0c0ffee0

U, C, K, NS, G, V, P, D, F = (ProblemKind.UNRESOLVED, ProblemKind.CRC_MISMATCH,
                              ProblemKind.NOT_IN_KMI, ProblemKind.NAMESPACE, ProblemKind.GPL_ONLY,
                              ProblemKind.VERMAGIC, ProblemKind.PROTECTED,
                              ProblemKind.DUPLICATE_EXPORT, ProblemKind.DEPENDENCY_FAILED)


def kexp(name: str, crc: int | None = 0x100, gpl: bool = False, ns: str = "") -> Export:
    return Export(name, "vmlinux", crc,
                  ExportType.EXPORT_SYMBOL_GPL if gpl else ExportType.EXPORT_SYMBOL, ns)


KERNEL_EXPORTS = [kexp("module_layout", LAYOUT_CRC), kexp("printk", 0x1),
                  kexp("kmalloc", 0x2), kexp("gpl_fn", 0x3, gpl=True),
                  kexp("ns_fn", 0x4, ns="CRYPTO_INTERNAL"), kexp("outside_kmi", 0x5),
                  kexp("protected_fn", 0x6)]
KMI = frozenset({"module_layout", "printk", "kmalloc", "gpl_fn", "ns_fn", "protected_fn"})


def kernel(exports=KERNEL_EXPORTS, *, crcs: bool = True, kmi=None, protected=frozenset(),
           vermagic: str | None = KVERMAGIC) -> KernelInterface:
    if not crcs:
        exports = [Export(e.name, e.owner) for e in exports]
    return KernelInterface(KernelExports("test", {e.name: e for e in exports}, crcs), kmi=kmi,
                           protected=protected, vermagic=vermagic, release=REL)


def mod(name: str, undefined=(), weak=(), exports=(), versions=None, vermagic=KVERMAGIC,
        license="GPL", import_ns=(), signed=False) -> ModuleFacts:
    if versions is None:       # what modpost writes: module_layout plus every kernel symbol used
        known = {e.name: e.crc for e in KERNEL_EXPORTS}
        versions = {"module_layout": LAYOUT_CRC,
                    **{s: known[s] for s in (*undefined, *weak) if s in known}}
    return ModuleFacts(path=f"/m/{name}.ko", name=name, undefined=tuple(sorted(undefined)),
                       weak_undefined=tuple(sorted(weak)), exports=tuple(exports),
                       versions=versions, vermagic=vermagic, depends=(), license=license,
                       import_ns=tuple(import_ns), signed=signed)


def problems(report, name: str) -> list[tuple[ProblemKind, str, bool]]:
    p = report.prediction(name)
    assert p is not None, name
    return [(x.kind, x.symbol, x.fatal) for x in p.problems]


def only(k: KernelInterface, m: ModuleFacts) -> list[tuple[ProblemKind, str, bool]]:
    return problems(analyze(k, [m]), m.name)


# --- each rule ---

def test_clean_module():
    r = analyze(kernel(kmi=KMI), [mod("clean", ["printk", "kmalloc", "gpl_fn"])])
    assert problems(r, "clean") == []
    assert r.prediction("clean").verdict is Verdict.OK
    assert r.kernel_release == REL
    assert r.prediction("absent") is None


def test_unresolved_and_weak():
    m = mod("u", ["printk", "no_such_symbol"], weak=["weak_missing"])
    assert only(kernel(), m) == [(U, "no_such_symbol", True)]
    r = analyze(kernel(), [m])
    assert r.prediction("u").verdict is Verdict.FAIL
    assert "exported neither" in r.prediction("u").problems[0].detail


def test_crc_mismatch_kernel_symbol():
    m = mod("c", ["printk", "kmalloc"], versions={"module_layout": LAYOUT_CRC, "printk": 0x999,
                                                  "kmalloc": 0x2})
    r = analyze(kernel(), [m])
    assert problems(r, "c") == [(C, "printk", True)]
    detail = r.prediction("c").problems[0].detail
    assert "0x00000999" in detail and "vmlinux" in detail and "0x00000001" in detail


def test_no_symbol_version_fails_the_load():
    """A symbol with a CRC that __versions lacks: check_version() logs 'no symbol version for'
    and (Debian's 6.1, the samples' kernel) returns 0: resolve_symbol() gives -EINVAL, the load
    fails, for a weak reference too. Upstream warns once and loads: a warning there."""
    m = mod("nv", ["printk", "kmalloc"], weak=["gpl_fn"],
            versions={"module_layout": LAYOUT_CRC, "kmalloc": 0x2})
    r = analyze(kernel(), [m])
    assert problems(r, "nv") == [(ProblemKind.MISSING_VERSION, "gpl_fn", True),
                                 (ProblemKind.MISSING_VERSION, "printk", True)]
    assert r.prediction("nv").verdict is Verdict.FAIL
    assert "vmlinux exports it with CRC 0x00000001" in r.prediction("nv").problems[1].detail
    upstream = dataclasses.replace(kernel(), missing_version_fatal=False)
    assert only(upstream, m) == [(ProblemKind.MISSING_VERSION, "gpl_fn", False),
                                 (ProblemKind.MISSING_VERSION, "printk", False)]
    # no CONFIG_MODVERSIONS: check_version() is the stub that returns 1
    assert only(kernel(crcs=False), m) == []


def test_no_symbol_version_for_a_module_export():
    """The CRC find_symbol() found may be a module's (__kcrctab): the same rule; a module export
    without a CRC is not checked, nor is any on a kernel without CONFIG_MODVERSIONS."""
    provider = mod("prov", exports=[ModuleExport("with_crc", False, "", 0x77),
                                    ModuleExport("no_crc", False, "", None)])
    user = mod("user", ["printk", "with_crc", "no_crc"])
    r = analyze(kernel(), [provider, user])
    assert problems(r, "user") == [(ProblemKind.MISSING_VERSION, "with_crc", True)]
    assert "prov exports it with CRC 0x00000077" in r.prediction("user").problems[0].detail
    assert problems(analyze(kernel(crcs=False), [provider, user]), "user") == []
    versioned = mod("user2", ["printk", "with_crc"],
                    versions={"module_layout": LAYOUT_CRC, "printk": 0x1, "with_crc": 0x77})
    assert problems(analyze(kernel(), [provider, versioned]), "user2") == []


def test_crc_not_checked_without_provider_crc():
    m = mod("s", ["printk"], versions={"module_layout": 1, "printk": 0x999})
    assert only(kernel(crcs=False), m) == []


@pytest.mark.parametrize("crc,expect", [(LAYOUT_CRC, []), (LAYOUT_CRC + 1,
                                                           [(C, "module_layout", True)])])
def test_module_layout(crc, expect):
    assert only(kernel(), mod("ml", ["printk"], versions={"module_layout": crc, "printk": 1})) \
        == expect


def test_module_without_versions_on_a_modversions_kernel():
    """check_version() with no __versions section: try_to_force_load() refuses the module."""
    m = mod("nomv", ["printk"], versions={}, vermagic=f"{REL} SMP preempt mod_unload aarch64")
    kinds = only(kernel(vermagic=None), m)
    assert kinds == [(C, "module_layout", True)]
    # without symbol versions in the kernel there is nothing to disagree with
    assert only(kernel(crcs=False, vermagic=None), m) == []


def test_not_in_kmi_latent_on_full_kernel():
    k = kernel(kmi=KMI)
    assert not k.trimmed
    r = analyze(k, [mod("lat", ["printk", "outside_kmi"], weak=["also_outside"])])
    assert problems(r, "lat") == [(K, "outside_kmi", False)]
    assert r.prediction("lat").verdict is Verdict.WARN
    assert "not trimmed" in r.prediction("lat").problems[0].detail
    assert r.kmi_trimmed is False


def test_not_in_kmi_fatal_on_trimmed_kernel():
    trimmed = [e for e in KERNEL_EXPORTS if e.name in KMI]
    k = kernel(trimmed, kmi=KMI | {"listed_but_gone"})
    assert k.trimmed
    r = analyze(k, [mod("t", ["printk", "outside_kmi"]),
                    mod("weak_ok", ["printk"], weak=["outside_kmi"])])
    assert (K, "outside_kmi", True) in problems(r, "t")
    assert (U, "outside_kmi", True) in problems(r, "t")
    assert r.prediction("t").verdict is Verdict.FAIL
    assert problems(r, "weak_ok") == []
    assert r.kmi_trimmed is True


def test_no_kmi_given_no_kmi_rule():
    assert only(kernel(kmi=None), mod("n", ["outside_kmi"])) == []


def test_set_module_exports_are_not_held_to_the_kmi():
    provider = mod("prov", exports=[ModuleExport("vendor_helper", False, "", 0x77)])
    user = mod("user", ["vendor_helper"], versions={"module_layout": LAYOUT_CRC,
                                                    "vendor_helper": 0x77})
    r = analyze(kernel(kmi=KMI), [provider, user])
    assert problems(r, "user") == [] and problems(r, "prov") == []


@pytest.mark.parametrize("imports,expect", [((), [(NS, "ns_fn", True)]),
                                            (("OTHER",), [(NS, "ns_fn", True)]),
                                            (("OTHER", "CRYPTO_INTERNAL"), [])])
def test_namespace(imports, expect):
    assert only(kernel(), mod("n", ["ns_fn"], import_ns=imports)) == expect


def test_namespace_of_a_set_module_export():
    provider = mod("prov", exports=[ModuleExport("ns_helper", False, "VENDOR_NS", None)])
    user = mod("user", ["ns_helper"])
    assert problems(analyze(kernel(), [provider, user]), "user") == [(NS, "ns_helper", True)]


@pytest.mark.parametrize("license,ok", [("GPL", True), ("GPL v2", True), ("Dual BSD/GPL", True),
                                        ("Dual MIT/GPL", True), ("Dual MPL/GPL", True),
                                        ("GPL and additional rights", True),
                                        ("Proprietary", False), ("", False), ("gpl", False),
                                        ("BSD", False)])
def test_gpl_only(license, ok):
    r = analyze(kernel(), [mod("g", ["gpl_fn", "printk"], license=license)])
    assert problems(r, "g") == ([] if ok else [(G, "gpl_fn", True)])
    if not ok:
        assert f"'{license or 'none'}'" in r.prediction("g").problems[0].detail


def test_gpl_only_export_of_a_set_module():
    provider = mod("prov", exports=[ModuleExport("gpl_helper", True, "", None)])
    user = mod("user", ["gpl_helper"], license="Proprietary")
    assert problems(analyze(kernel(), [provider, user]), "user") == [(G, "gpl_helper", True)]


def test_protected():
    k = kernel(kmi=KMI - {"protected_fn"}, protected=frozenset({"protected_fn", "listed_prot"}))
    assert (P, "protected_fn", True) in only(k, mod("unsigned", ["protected_fn"]))
    assert only(k, mod("signed", ["protected_fn"], signed=True)) == \
        [(K, "protected_fn", False)]
    # a protected symbol that is in the KMI lists may be used
    k2 = kernel(kmi=KMI, protected=frozenset({"protected_fn"}))
    assert only(k2, mod("unsigned", ["protected_fn"])) == []
    # exporting a protected symbol from an unsigned module
    exporter = mod("exp", exports=[ModuleExport("listed_prot", False, "", None)])
    assert only(k, exporter) == [(P, "listed_prot", True)]
    assert only(k, mod("exp", exports=[ModuleExport("listed_prot", False, "", None)],
                       signed=True)) == []


def test_protection_follows_ack_resolve_symbol():
    """ACK 6.1 resolve_symbol(): an unsigned module may use, of vmlinux and signed modules,
    only the unprotected (KMI) symbols; other unsigned modules' exports are free."""
    k = kernel(kmi=KMI - {"protected_fn"}, protected=frozenset({"gki_only"}))
    gki = mod("gki", exports=[ModuleExport("gki_fn", False, "", 0x5)], signed=True)
    vendor = mod("vendor", exports=[ModuleExport("vendor_fn", False, "", 0x6)])
    # built with the providers' Module.symvers: their CRCs are in __versions
    user = mod("user", ["protected_fn", "gki_fn", "vendor_fn"],
               versions={"module_layout": LAYOUT_CRC, "protected_fn": 0x6, "gki_fn": 0x5,
                         "vendor_fn": 0x6})
    report = analyze(k, [gki, vendor, user])
    assert [(kind, sym) for kind, sym, fatal in problems(report, "user") if fatal] == \
        [(P, "gki_fn"), (P, "protected_fn")]
    # without a protected-exports list the kernel has no such gate
    report = analyze(kernel(kmi=KMI - {"protected_fn"}), [gki, vendor, user])
    assert [(kind, sym) for kind, sym, fatal in problems(report, "user") if fatal] == []


def test_duplicate_export():
    m = mod("dup", exports=[ModuleExport("printk", False, "", 0x1),
                            ModuleExport("fresh", False, "", 0x2)])
    assert only(kernel(), m) == [(D, "printk", True)]


def test_duplicate_export_between_set_modules():
    """The kernel refuses whichever of two exporters loads second; set order stands for it."""
    first = mod("first", exports=[ModuleExport("shared_fn", False, "", 0x1)])
    second = mod("second", exports=[ModuleExport("shared_fn", False, "", 0x1)])
    report = analyze(kernel(), [first, second])
    assert problems(report, "first") == []
    assert problems(report, "second") == [(D, "shared_fn", True)]


def test_unresolved_symbols_of_an_absent_dependency_are_not_kmi_violations():
    """modpost's depends= names the provider; when it is not in the set, its symbols are not
    kernel symbols outside the KMI, only unresolved."""
    k = kernel(kmi=frozenset(e.name for e in KERNEL_EXPORTS))
    orphan = dataclasses.replace(mod("orphan", undefined=["ipc_send"]), depends=("absent_mod",))
    assert only(k, orphan) == [(U, "ipc_send", True)]
    stray = mod("stray", undefined=["ipc_send"])
    assert only(k, stray) == [(K, "ipc_send", True), (U, "ipc_send", True)]


# --- vermagic ---

def test_same_magic():
    a = f"{REL} {FLAGS}"
    assert same_magic(a, a, False) and same_magic(a, a, True)
    other_release = f"6.1.100-android14-12 {FLAGS}"
    assert same_magic(other_release, a, True)
    assert not same_magic(other_release, a, False)
    other_flags = f"{REL} SMP mod_unload modversions aarch64"
    assert not same_magic(other_flags, a, True) and not same_magic(other_flags, a, False)


def test_vermagic_rule():
    other_release = f"6.1.100-android14-12 {FLAGS}"
    # with __versions the release does not matter (same_magic has_crcs = info->index.vers)
    assert only(kernel(), mod("rel", ["printk"], vermagic=other_release)) == []
    # ... whatever the symbol source: a System.map kernel is still a modversions kernel
    assert only(kernel(crcs=False), mod("rel", ["printk"], vermagic=other_release)) == []
    # flags differ
    bad_flags = f"{REL} SMP mod_unload modversions aarch64"
    r = analyze(kernel(), [mod("fl", ["printk"], vermagic=bad_flags)])
    assert problems(r, "fl") == [(V, "", True)]
    assert r.prediction("fl").problems[0].detail == \
        f"version magic '{bad_flags}' should be '{KVERMAGIC}'"
    # no __versions: the whole string is compared
    assert (V, "", True) in only(kernel(crcs=False), mod("nv", ["printk"], versions={},
                                                         vermagic=other_release))
    assert only(kernel(crcs=False), mod("nv", ["printk"], versions={})) == []
    # kernel vermagic unknown: nothing to compare with
    assert only(kernel(vermagic=None), mod("fl", ["printk"], vermagic=bad_flags)) == []


def test_missing_vermagic_is_refused():
    """check_modinfo(): no vermagic -> try_to_force_load() -> -ENOEXEC."""
    assert only(kernel(vermagic=None), mod("nomagic", ["printk"], vermagic="")) == \
        [(V, "", True)]


# --- provider order and dependencies ---

def test_kernel_first_provider_order():
    """find_symbol searches vmlinux first, then modules in load order."""
    dupe = mod("dupe", exports=[ModuleExport("printk", False, "", 0xaaaa)])
    a = mod("a", exports=[ModuleExport("shared", False, "", 0x1111)])
    b = mod("b", exports=[ModuleExport("shared", False, "", 0x2222)])
    user_kernel_crc = mod("uk", ["printk"], versions={"module_layout": LAYOUT_CRC, "printk": 0x1})
    user_module_crc = mod("um", ["printk"], versions={"module_layout": LAYOUT_CRC,
                                                      "printk": 0xaaaa})
    user_a = mod("ua", ["shared"], versions={"module_layout": LAYOUT_CRC, "shared": 0x1111})
    user_b = mod("ub", ["shared"], versions={"module_layout": LAYOUT_CRC, "shared": 0x2222})
    r = analyze(kernel(), [dupe, a, b, user_kernel_crc, user_module_crc, user_a, user_b])
    assert problems(r, "uk") == []
    assert problems(r, "um") == [(C, "printk", True)]
    assert "vmlinux has" in r.prediction("um").problems[0].detail
    assert problems(r, "dupe") == [(D, "printk", True)]
    assert problems(r, "ua") == []
    ub = r.prediction("ub").problems
    assert [(x.kind, x.symbol) for x in ub] == [(C, "shared")] and " a has " in ub[0].detail
    # load order decides among modules: b first, b provides
    r = analyze(kernel(), [b, a, user_a, user_b])
    assert problems(r, "ub") == [] and problems(r, "ua") == [(C, "shared", True)]
    # a failing provider makes its users fail too, except where the kernel provides the symbol
    a_fails = mod("a", ["no_such_symbol"], exports=[ModuleExport("shared", False, "", 0x1111),
                                                   ModuleExport("printk", False, "", 0x1)])
    r = analyze(kernel(), [a_fails, user_a, user_kernel_crc])
    assert problems(r, "ua") == [(F, "shared", True)]
    assert problems(r, "uk") == []


def test_dependency_chain_any_order():
    base = mod("base", ["no_such_symbol"], exports=[ModuleExport("base_fn", False, "", None)])
    mid = mod("mid", ["base_fn"], exports=[ModuleExport("mid_fn", False, "", None)])
    top = mod("top", ["mid_fn", "printk"])
    unrelated = mod("unrelated", ["printk"])
    for order in ([base, mid, top, unrelated], [top, mid, unrelated, base],
                  [unrelated, top, base, mid]):
        r = analyze(kernel(), order)
        assert problems(r, "base") == [(U, "no_such_symbol", True)]
        assert problems(r, "mid") == [(F, "base_fn", True)]
        assert problems(r, "top") == [(F, "mid_fn", True)]
        assert problems(r, "unrelated") == []
        assert r.prediction("mid").problems[0].detail == \
            "needs base_fn from base, which fails to load"
        assert [p.name for p in r.modules] == [m.name for m in order]


def test_dependency_cycle_terminates():
    a = mod("a", ["b_fn", "no_such_symbol"], exports=[ModuleExport("a_fn", False, "", None)])
    b = mod("b", ["a_fn"], exports=[ModuleExport("b_fn", False, "", None)])
    r = analyze(kernel(), [a, b])
    assert problems(r, "b") == [(F, "a_fn", True)]
    assert problems(r, "a") == [(U, "no_such_symbol", True), (F, "b_fn", True)]
    # a cycle with no failure in it loads (from the static point of view)
    a_ok = mod("a", ["b_fn"], exports=[ModuleExport("a_fn", False, "", None)])
    r = analyze(kernel(), [a_ok, b])
    assert problems(r, "a") == [] and problems(r, "b") == []


def test_weak_reference_to_a_failing_module():
    """The provider never loads, the weak symbol stays NULL, the user loads."""
    failing = mod("failing", ["no_such_symbol"],
                  exports=[ModuleExport("opt_fn", False, "", None)])
    weak_user = mod("wu", weak=["opt_fn"])
    strong_user = mod("su", ["opt_fn"])
    r = analyze(kernel(), [failing, weak_user, strong_user])
    assert problems(r, "wu") == []
    assert problems(r, "su") == [(F, "opt_fn", True)]


def test_latent_problem_does_not_propagate():
    prov = mod("prov", ["outside_kmi"], exports=[ModuleExport("p_fn", False, "", None)])
    user = mod("user", ["p_fn"])
    r = analyze(kernel(kmi=KMI), [prov, user])
    assert r.prediction("prov").verdict is Verdict.WARN
    assert problems(r, "user") == []


def test_dependency_failed_once_per_symbol():
    base = mod("base", ["no_such_symbol"], exports=[ModuleExport("f1", False, "", None),
                                                    ModuleExport("f2", False, "", None)])
    user = mod("user", ["f1", "f2"])
    # one problem per symbol taken from the failing module: the kernel's simplify_symbols()
    # goes on after an unknown symbol and names each one
    assert problems(analyze(kernel(), [base, user]), "user") == [(F, "f1", True),
                                                                 (F, "f2", True)]


def test_problem_defaults_fatal():
    assert Problem(U, "x", "d").fatal is True
