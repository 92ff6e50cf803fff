"""The recipe of the sample images: recipe/samples.toml and the files it names, shipped as
package data so that a checkout and an installed wheel build the same images under the same key.
"""

from __future__ import annotations

import enum
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from bootverify.errors import InfraError
from bootverify.readers.modules import module_name
from bootverify.runtime.kmsg import FindingClass, Outcome
from bootverify.static.analysis import ProblemKind

PACKAGE_DIR = Path(__file__).resolve().parent
RECIPE_DIR = PACKAGE_DIR / "recipe"      # `images/` in a checkout is a link to it
RECIPE = "samples.toml"

# The vocabularies of expected.json: `bootverify check` problem kinds, `bootverify run` outcomes
# and finding classes.
PROBLEM_KINDS = frozenset(k.value for k in ProblemKind)
RUNTIME_OUTCOMES = frozenset(o.value for o in Outcome)
FINDING_CLASSES = frozenset(c.value for c in FindingClass)


class Variant(enum.Enum):
    """The two image sets: the GKI base kernel, or a device's own full replacement kernel."""
    GKI = "gki"
    REPLACEMENT = "replacement"

    @property
    def other(self) -> Variant:
        return Variant.REPLACEMENT if self is Variant.GKI else Variant.GKI


class Partition(enum.Enum):
    """Where a module ships; expected.json records it per module."""
    VENDOR_KERNEL_BOOT = "vendor_kernel_boot"
    SYSTEM_DLKM = "system_dlkm"


@dataclass(frozen=True)
class Expectation:
    static: tuple[str, ...]
    runtime: str
    findings: tuple[str, ...] = ()     # finding classes, sorted
    why: str = ""                    # why it fails: its reason in expect.toml


@dataclass(frozen=True)
class DeviceExpectation:
    """The device verdict a variant's expect.toml expects ([android] of samples.toml)."""
    verdict: str
    stops_at: str | None
    why: str


@dataclass(frozen=True)
class GkiModule:
    """An in-tree module of the GKI kernel, shipped in system_dlkm."""
    path: str                        # in the kernel build tree, e.g. "crypto/md5.ko"
    expected: dict[Variant, Expectation]

    @property
    def file(self) -> str:
        return Path(self.path).name

    @property
    def name(self) -> str:
        return module_name(self.file)


@dataclass(frozen=True)
class DeviceModule:
    """An external module from recipe/modules/NAME, see samples.toml for the knobs."""
    name: str
    source: Path                     # its directory: the .c files and the Kbuild
    expected: dict[Variant, Expectation]
    uses: tuple[str, ...] = ()
    other_kernel: bool = False
    modpost_warn: bool = False
    allow_missing_namespace_imports: bool = False
    relicense: str = ""
    shipped: bool = True
    blocklisted: bool = False
    options: str = ""

    @property
    def file(self) -> str:
        return f"{self.name}.ko"


@dataclass(frozen=True)
class Recipe:
    package: str
    config: Path
    patches: tuple[Path, ...]
    replacement_config: Path
    replacement_patch: Path
    kmi_symbol_lists: tuple[Path, ...]
    init: Path
    cmdline: str
    vendor_cmdline: str
    bootconfig: tuple[str, ...]
    system_dlkm: tuple[GkiModule, ...]
    modules: tuple[DeviceModule, ...]
    android: dict[Variant, DeviceExpectation]

    def shipped(self) -> list[DeviceModule]:
        return [m for m in self.modules if m.shipped]


def _expectations(entry: dict, where: str, recipe: Path) -> dict[Variant, Expectation]:
    def one(raw: dict, variant: Variant) -> Expectation:
        static, runtime = tuple(sorted(raw.get("static", ()))), raw.get("runtime", "")
        findings = tuple(sorted(raw.get("findings", ())))
        unknown = (set(static) - PROBLEM_KINDS) | (set(findings) - FINDING_CLASSES)
        if unknown or runtime not in RUNTIME_OUTCOMES:
            raise InfraError(f"{recipe}: {where} ({variant.value}): unknown problem kind or "
                             f"finding class {sorted(unknown)} or runtime outcome {runtime!r}")
        why = raw.get("why", "")
        if runtime not in (Outcome.LOADED, Outcome.SKIPPED) and not why:
            raise InfraError(f"{recipe}: {where} ({variant.value}): a {runtime} needs a why "
                             f"(its reason in expect.toml)")
        return Expectation(static, runtime, findings, why)

    gki = one(entry.get("gki", {}), Variant.GKI) if "gki" in entry else None
    repl = one(entry["replacement"], Variant.REPLACEMENT) if "replacement" in entry else gki
    return {v: e for v, e in ((Variant.GKI, gki), (Variant.REPLACEMENT, repl)) if e}


def load_recipe(root: Path = RECIPE_DIR) -> Recipe:
    path = root / RECIPE
    try:
        return _parse_recipe(tomllib.loads(path.read_text()), root)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InfraError(f"sample image recipe {path}: {e}") from None
    except KeyError as e:
        raise InfraError(f"sample image recipe {path}: no {e} entry") from None


def _parse_recipe(raw: dict, root: Path) -> Recipe:
    path = root / RECIPE
    k, b = raw["kernel"], raw["boot"]
    modules = tuple(DeviceModule(
        name=m["name"], source=root / "modules" / m["name"],
        expected=_expectations(m, m["name"], path), uses=tuple(m.get("uses", ())),
        other_kernel=m.get("kernel", "own") == "other", modpost_warn=m.get("modpost_warn", False),
        allow_missing_namespace_imports=m.get("allow_missing_namespace_imports", False),
        relicense=m.get("relicense", ""), shipped=m.get("shipped", True),
        blocklisted=m.get("blocklisted", False), options=m.get("options", ""))
        for m in raw["module"])
    seen: set[str] = set()
    for m in modules:
        # Listed order is build order and modules.load order: providers first.
        if missing := set(m.uses) - seen:
            raise InfraError(f"{path}: {m.name} uses {sorted(missing)}, which must come before it")
        if m.shipped and len(m.expected) != len(Variant):
            raise InfraError(f"{path}: {m.name} ships but has no expectations")
        seen.add(m.name)
    return Recipe(
        package=k["package"], config=root / k["config"],
        patches=tuple(root / p for p in k["patches"]),
        replacement_config=root / k["replacement_config"],
        replacement_patch=root / k["replacement_patch"],
        kmi_symbol_lists=tuple(root / p for p in k["kmi_symbol_lists"]),
        init=root / b["init"], cmdline=b["cmdline"], vendor_cmdline=b["vendor_cmdline"],
        bootconfig=tuple(b["bootconfig"]),
        system_dlkm=tuple(GkiModule(g["path"], _expectations(g, g["path"], path))
                          for g in raw["system_dlkm"]),
        modules=modules,
        android={v: DeviceExpectation(e["verdict"], e.get("stops_at"), e["why"])
                 for v, e in ((v, raw["android"][v.value]) for v in Variant)})


def recipe_key(root: Path, version: str, builder: Path = PACKAGE_DIR) -> str:
    """Content hash of the recipe files (not their docs), the source package version and the
    builder's own sources. Paths enter relative, so a checkout and an installed package agree."""
    h = hashlib.sha256(f"{version}\n".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".md"):
        h.update(f"{path.relative_to(root)}\n".encode() + path.read_bytes() + b"\n")
    for path in sorted(builder.glob("*.py")):
        h.update(f"{path.name}\n".encode() + path.read_bytes() + b"\n")
    return h.hexdigest()[:16]
