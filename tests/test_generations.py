"""The GKI generations on real module sets nobody here built (tests/data, see each SOURCE.txt).

- android14-5.15: seven GKI modules against the GKI kernel's own vmlinux.symvers (the symbols of
  the two providers left out are unknown), and against another 5.15 build's vmlinux rows, the
  Samsung S23's (android13-5.15): hundreds of real CRC mismatches. check names exactly depmod
  -e -E's (module, symbol) pairs, but for one rule where depmod and the kernel part ways (below).
- android14-6.1: GKI and Cuttlefish vendor modules against the GKI kernel's System.map (names
  only, depmod -e -F).
- 5.15's module export CRCs (SHN_ABS `__crc_SYM`, readers/modules.py): the S23's 123 vendor
  modules export 798 symbols, each with its CRC, and the modules that use each other's exports
  agree with them, as the device's own build says (it boots).

Where depmod and the kernel part ways: a symbol that the kernel's symvers has and a module of the
set exports too. find_symbol() searches vmlinux first, so the kernel checks the module's
__versions against vmlinux's CRC (and refuses the second export as a duplicate); depmod lets the
module's export stand for the symbol and checks nothing. The S23 builds usbnet into vmlinux,
with other CRCs than GKI's usbnet.ko: check names those pairs, depmod does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import debian_kernels
from bootverify.readers.modules import read_module
from bootverify.static.moduleset import load_module_set

DATA = Path(__file__).parent / "data"
GKI_515 = DATA / "aosp-gki-5.15"
GKI_61 = DATA / "aosp-gki-6.1"
S23 = DATA / "samsung-s23-5.15"
TIMEOUT = 300


def module_tree(tmp_path: Path, version: str, files: list[Path]) -> Path:
    """lib/modules/VERSION-like directory of links to `files` (depmod takes no subdirectory
    links, and wants a modules.order)."""
    mdir = tmp_path / version
    mdir.mkdir()
    for f in files:
        (mdir / f.name).symlink_to(f.resolve())
    (mdir / "modules.order").write_text("".join(f"{f.name}\n" for f in files))
    return mdir


def parity(tmp_path: Path, mdir: Path, **reference: Path) -> tuple:
    depmod = debian_kernels.run_depmod(mdir, scratch=tmp_path / "depmod", **reference)
    assert not depmod.other_warnings
    check = debian_kernels.run_check([mdir], cache=tmp_path / "cache", **reference)
    return depmod, check


def assert_same(name: str, depmod_pairs: set, check_pairs: set) -> None:
    assert not debian_kernels.describe_difference(name, depmod_pairs, check_pairs), \
        debian_kernels.describe_difference(name, depmod_pairs, check_pairs)


@pytest.mark.timeout(TIMEOUT)
def test_gki_515_against_its_own_kernel(tmp_path):
    mdir = module_tree(tmp_path, "5.15.0-gki", sorted(GKI_515.glob("*.ko")))
    depmod, check = parity(tmp_path, mdir, symvers=GKI_515 / "vmlinux.symvers")
    # the premise: the two providers left out (mii, r8152) leave their users' symbols unknown
    users = {Path(p).name for p, _ in depmod.unresolved}
    assert users == {"asix.ko", "r8153_ecm.ko", "usbnet.ko"} and not depmod.crc_mismatch
    assert_same("unresolved", depmod.unresolved, check.findings.unresolved)
    assert_same("crc-mismatch", depmod.crc_mismatch, check.findings.crc_mismatch)
    # usbnet fails, and with it every module that needs it
    kinds = {m["name"]: {p["kind"] for p in m["static"]["problems"]}
             for m in check.report["modules"]}
    assert kinds == {"asix": {"unresolved", "dependency-failed"},
                     "r8153_ecm": {"unresolved", "dependency-failed"}, "usbnet": {"unresolved"},
                     "aqc111": {"dependency-failed"}, "cdc_eem": {"dependency-failed"},
                     "cdc_ether": {"dependency-failed"}, "rtl8150": set()}     # no usbnet


@pytest.mark.timeout(TIMEOUT)
def test_gki_515_against_another_515_build(tmp_path):
    files = sorted(GKI_515.glob("*.ko"))
    mdir = module_tree(tmp_path, "5.15.0-gki", files)
    symvers = S23 / "vmlinux.symvers.derived"
    depmod, check = parity(tmp_path, mdir, symvers=symvers)
    assert len(depmod.crc_mismatch) > 100        # the premise: two builds, other CRCs
    assert_same("unresolved", depmod.unresolved, check.findings.unresolved)
    in_both = {line.split("\t")[1] for line in symvers.read_text().splitlines()} & {
        e.name for f in files for e in read_module(f).exports}
    assert in_both                               # the premise of the parting of the ways
    parted = {(p, s) for p, s in check.findings.crc_mismatch if s in in_both}
    assert not {(p, s) for p, s in depmod.crc_mismatch if s in in_both}
    assert_same("crc-mismatch", depmod.crc_mismatch, check.findings.crc_mismatch - parted)
    # the kernel's view of those: vmlinux has them first, a module exporting them again fails
    usbnet = next(m for m in check.report["modules"] if m["name"] == "usbnet")
    assert any(p["kind"] == "duplicate-export" for p in usbnet["static"]["problems"])


@pytest.mark.timeout(TIMEOUT)
def test_gki_61_gki_and_vendor_modules_against_system_map(tmp_path):
    files = sorted([*GKI_61.glob("*.ko"), *(GKI_61 / "virtual-device").glob("*.ko")])
    mdir = module_tree(tmp_path, "6.1.0-gki", files)
    # the `__ksymtab_` lines of the GKI kernel's System.map (aosp-gki-6.1-cuttlefish/SOURCE.txt)
    depmod, check = parity(tmp_path, mdir,
                           system_map=DATA / "aosp-gki-6.1-cuttlefish" / "System.map.ksymtab")
    users = {Path(p).name for p, _ in depmod.unresolved}
    assert users == {"net_failover.ko", "r8153_ecm.ko"}     # failover.ko, r8152.ko left out
    assert_same("unresolved", depmod.unresolved, check.findings.unresolved)
    assert not check.findings.crc_mismatch                   # a System.map has no CRCs


def test_515_module_exports_carry_their_crcs():
    """5.15 keeps a module export's CRC in an SHN_ABS `__crc_SYM` (6.1 and later: in
    __kcrctab). The S23's modules, built together, agree on every CRC they share."""
    modules = load_module_set(S23 / "vendor_boot.img", [])
    exports = {e.name: e for m in modules for e in m.exports}
    assert len(exports) == 798 and all(e.crc is not None for e in exports.values())
    shared = [(m.name, sym) for m in modules for sym in m.versions if sym in exports]
    assert len(shared) == 478
    assert all(m.versions[sym] == exports[sym].crc for m in modules for sym in m.versions
               if sym in exports)
    # the same rule on a GKI module: usbnet's exports against a user's __versions
    usbnet, cdc = (read_module(GKI_515 / f) for f in ("usbnet.ko", "cdc_ether.ko"))
    crcs = {e.name: e.crc for e in usbnet.exports}
    used = [s for s in cdc.versions if s in crcs]
    assert used and all(cdc.versions[s] == crcs[s] for s in used)
