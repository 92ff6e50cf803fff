"""Debian's arm64 kernels as test and benchmark inputs: real modules nobody on this project built.

Helpers only (no pytest import), shared by tests/test_depmod_parity.py and
benchmarks/bench_check.py:

- fetch an ABI's linux-image / linux-headers packages (bootverify.debpkg: apt-get download +
  dpkg-deb -x, cached under $BOOTVERIFY_CACHE/debian/) and name the paths inside them;
- run kmod's depmod on a scratch tree of symlinks (nothing is ever written into the cache) and
  parse its warnings into (module path, symbol) pairs;
- run `bootverify check` and parse its JSON into the same pairs;
- write a System.map: Debian's linux-image package ships a placeholder System.map (one line, "The
  real System.map is in the linux-image-<version>-dbg package"; that package is ~800 MB), so the
  System.map tests use one written from Module.symvers's vmlinux rows in the kernel's own
  System.map format.

ABIs: NEWEST is the kernel the modules are checked against. OLDER is the newest ABI whose modules
differ from NEWEST's: 6.1.0-55 (6.1.192-1) and 6.1.0-56 (6.1.192-2) are the same build as far as
symbol versions go (depmod -e -E: no warning at all), while 6.1.0-54 (6.1.190-1) against 56's
Module.symvers gives, as 6.1.0-53, -50 and -44 do, a module_layout mismatch for every module,
~67,000 other CRC mismatches (out of ~165,000 versioned references) and 32 unknown symbols
(__skb_get_hash, __tty_port_tty_hangup, secure_tcp_seq, secure_tcpv6_seq). 54 is one stable update
behind 56: the case a device kernel module built one update ago meets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bootverify import debpkg
from bootverify.readers.modules import MODULE_SUFFIXES

NEWEST = "6.1.0-56"
OLDER = "6.1.0-54"
# 6.12 (bookworm's linux-image-6.12.*+deb12-arm64, from backports and then bookworm itself): the
# modules are .ko.xz (4,351 in 6.12.117). 6.12.115 is one update behind 6.12.117; against 117's
# Module.symvers its modules give depmod -e -E 70,823 CRC mismatches and no unknown symbol, and,
# unlike 6.1's ABI bumps, module_layout keeps its CRC: the kernel names each symbol.
NEWEST_612 = "6.12.117+deb12"
OLDER_612 = "6.12.115+deb12"
FLAVOUR = "arm64"
DEPMOD_TIMEOUT = 300
CHECK_TIMEOUT = 900


def release(abi: str) -> str:
    """uname -r of an ABI: "6.1.0-56" -> "6.1.0-56-arm64"."""
    return f"{abi}-{FLAVOUR}"


def image_root(abi: str) -> Path:
    """linux-image-<release> unpacked (downloaded once, cached)."""
    return debpkg.unpacked(f"linux-image-{release(abi)}:arm64")


def headers_root(abi: str) -> Path:
    """linux-headers-<release> unpacked (downloaded once, cached)."""
    return debpkg.unpacked(f"linux-headers-{release(abi)}:arm64")


def modules_dir(abi: str) -> Path:
    """lib/modules/<release> of the image package (kernel/**.ko, modules.order, ...)."""
    path = image_root(abi) / "lib" / "modules" / release(abi)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no modules directory in linux-image-{release(abi)}")
    return path


def module_symvers(abi: str) -> Path:
    """Module.symvers of the headers package (vmlinux rows and the modules' rows, with CRCs)."""
    path = headers_root(abi) / "usr" / "src" / f"linux-headers-{release(abi)}" / "Module.symvers"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no Module.symvers in linux-headers-{release(abi)}")
    return path


def packaged_system_map(abi: str) -> Path:
    """boot/System.map-<release> as packaged: a placeholder line, see is_placeholder_system_map."""
    return image_root(abi) / "boot" / f"System.map-{release(abi)}"


def is_placeholder_system_map(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"__ksymtab_" not in f.read()


def module_files(mdir: Path) -> list[Path]:
    """Every module file under mdir, compressed or not (what depmod -a and check --modules-dir
    both take)."""
    return sorted(p for p in mdir.rglob("*.ko*") if p.is_file() and p.name.endswith(
        MODULE_SUFFIXES))


def vmlinux_exports(symvers: Path) -> list[str]:
    """Names of the vmlinux rows of a Module.symvers, in file order."""
    names = []
    with open(symvers, encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 3 and cols[2] == "vmlinux":
                names.append(cols[1])
    return names


def write_system_map(symvers: Path, dest: Path, hidden: set[str] = frozenset()) -> Path:
    """A System.map with the vmlinux exports of `symvers`, as the kernel build writes one.

    Each export gets its function/data line plus the `__ksymtab_`, `__kstrtab_` and `__kstrtabns_`
    lines a 6.1 build emits. Names in `hidden` keep their function line (the code is in the
    kernel) but lose the export lines, like an export removed by trimming: a reader that takes any
    name in the map as an export resolves them; depmod and the kernel do not.
    """
    lines = []
    addr = 0xFFFF800008010000
    exports = vmlinux_exports(symvers)
    for name in exports:
        lines.append(f"{addr:016x} T {name}")
        addr += 0x40
    for name in exports:
        if name in hidden:
            continue
        for prefix, kind in (("__ksymtab_", "r"), ("__kstrtab_", "r"), ("__kstrtabns_", "r")):
            lines.append(f"{addr:016x} {kind} {prefix}{name}")
            addr += 0x10
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


# ---------------------------------------------------------------------------------------------
# depmod

_WARNING = re.compile(
    r"^depmod: WARNING: (?P<path>/\S+\.ko(?:\.gz|\.xz|\.zst)?) "
    r"(?:needs unknown symbol (?P<unknown>\S+)|disagrees about version of symbol (?P<crc>\S+))$"
)


@dataclass
class Findings:
    """(resolved module path, symbol) pairs, as depmod warns and as check reports them."""

    unresolved: set[tuple[str, str]] = field(default_factory=set)
    crc_mismatch: set[tuple[str, str]] = field(default_factory=set)
    other_warnings: list[str] = field(default_factory=list)


def parse_depmod_warnings(stderr: str) -> Findings:
    """depmod -e warnings -> Findings. Paths are resolved (symlinks followed) to compare with
    check's; any other line is kept in other_warnings so a caller can insist there is none."""
    found = Findings()
    for line in stderr.splitlines():
        m = _WARNING.match(line)
        if not m:
            if line.strip():
                found.other_warnings.append(line)
            continue
        path = os.path.realpath(m["path"])
        if m["unknown"] is not None:
            found.unresolved.add((path, m["unknown"]))
        else:
            found.crc_mismatch.add((path, m["crc"]))
    return found


def depmod_version() -> str:
    proc = subprocess.run(["depmod", "--version"], capture_output=True, text=True, check=True,
                          timeout=300)
    return proc.stdout.splitlines()[0].strip()


def scratch_root(mdir: Path, scratch: Path) -> tuple[Path, str]:
    """A tree scratch/lib/modules/<version>/ whose entries are symlinks to mdir's.

    depmod -b ROOT works in ROOT/lib/modules/<version> (it writes modules.dep etc. there unless -n);
    the symlinks give it the real files while anything it writes lands in scratch. The version is
    mdir's name when it looks like one (depmod insists on "N.N..."), else "0.0.0-bootverify".
    """
    version = mdir.name if re.match(r"^\d+\.\d+", mdir.name) else "0.0.0-bootverify"
    target = scratch / "lib" / "modules" / version
    target.mkdir(parents=True, exist_ok=True)
    for entry in mdir.iterdir():
        if entry.name.startswith("modules.") and entry.name not in (
            "modules.order", "modules.builtin", "modules.builtin.modinfo"
        ):
            continue  # depmod's own outputs from a previous run: not inputs
        link = target / entry.name
        if not link.exists():
            link.symlink_to(entry.resolve())
    return scratch, version


def run_depmod(mdir: Path, *, symvers: Path | None = None, system_map: Path | None = None,
               scratch: Path | None = None) -> Findings:
    """`depmod -n -b ROOT -C EMPTY -e (-E symvers | -F system_map) VERSION` on mdir's modules.

    -n sends modules.dep & co. to stdout (discarded), ROOT is a scratch tree of symlinks, and -C
    points at an empty configuration directory so the host's depmod.d cannot change which module
    of a duplicated name counts. Raises if depmod fails.
    """
    if (symvers is None) == (system_map is None):
        raise ValueError("exactly one of symvers and system_map")
    own = scratch is None
    tmp = Path(tempfile.mkdtemp(prefix="bv-depmod-")) if own else scratch
    try:
        root, version = scratch_root(mdir, tmp / "root")
        cfgdir = tmp / "depmod.d"
        cfgdir.mkdir(exist_ok=True)
        cmd = ["depmod", "-n", "-b", str(root), "-C", str(cfgdir), "-e"]
        cmd += ["-E", str(symvers)] if symvers is not None else ["-F", str(system_map)]
        cmd.append(version)
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=DEPMOD_TIMEOUT)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr[-2000:]}")
        return parse_depmod_warnings(proc.stderr)
    finally:
        if own:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# bootverify check

PARITY_KINDS = {"unresolved": "unresolved", "crc-mismatch": "crc_mismatch"}


@dataclass
class CheckRun:
    returncode: int
    report: dict
    findings: Findings


def check_command(mdirs: list[Path], *, symvers: Path | None = None,
                  system_map: Path | None = None, json_out: str = "-") -> list[str]:
    cmd = [sys.executable, "-m", "bootverify", "check"]
    for d in mdirs:
        cmd += ["--modules-dir", str(d)]
    cmd += ["--symvers", str(symvers)] if symvers is not None else ["--system-map", str(system_map)]
    cmd += ["--json", json_out]
    return cmd


def findings_from_report(report: dict, base: Path | None = None) -> Findings:
    """check's JSON -> Findings (problem kinds unresolved and crc-mismatch only)."""
    found = Findings()
    for mod in report["modules"]:
        path = Path(mod["path"])
        if not path.is_absolute() and base is not None:
            path = base / path
        path = os.path.realpath(path)
        for problem in mod["static"]["problems"]:
            attr = PARITY_KINDS.get(problem["kind"])
            if attr:
                getattr(found, attr).add((path, problem["symbol"]))
    return found


def run_check(mdirs: list[Path], *, symvers: Path | None = None, system_map: Path | None = None,
              cache: Path, cwd: Path | None = None) -> CheckRun:
    """`python -m bootverify check ... --json -` with BOOTVERIFY_CACHE=cache; exit 0 or 1 expected.
    """
    cmd = check_command(mdirs, symvers=symvers, system_map=system_map)
    env = dict(os.environ, BOOTVERIFY_CACHE=str(cache))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=CHECK_TIMEOUT)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    return CheckRun(proc.returncode, report, findings_from_report(report, cwd or Path.cwd()))


def describe_difference(name: str, depmod_pairs: set, check_pairs: set, limit: int = 15) -> str:
    """A readable account of two pair sets that differ (empty string when equal)."""
    only_depmod = sorted(depmod_pairs - check_pairs)
    only_check = sorted(check_pairs - depmod_pairs)
    if not only_depmod and not only_check:
        return ""
    out = [f"{name}: depmod {len(depmod_pairs)} pairs, check {len(check_pairs)}; "
           f"{len(only_depmod)} only in depmod, {len(only_check)} only in check"]
    for label, pairs in (("only depmod", only_depmod), ("only check", only_check)):
        for path, sym in pairs[:limit]:
            out.append(f"  {label}: {Path(path).name} {sym}")
        if len(pairs) > limit:
            out.append(f"  {label}: ... {len(pairs) - limit} more")
    return "\n".join(out)
