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
class KernelGeneration:
    """One kernel generation's table of samples.toml: the Debian source package both kernels are
    built from and the recipe files each kernel takes."""
    generation: str                  # "6.1", "6.12": GKI's kernel version
    package: str                     # Debian's linux-source-X
    config: tuple[Path, ...]         # fragments on top of tinyconfig, both kernels
    patches: tuple[Path, ...]        # the Android Common Kernel behaviour, both kernels
    replacement_config: Path
    replacement_patch: Path
    kmi_symbol_lists: tuple[Path, ...]
    # The replacement kernel starts from a copy of the GKI kernel's build tree (kbuild then
    # compiles only what replacement.patch and replacement.config change): only where the GKI
    # kernel's trimming does not reach the objects (see samples.toml).
    replacement_from_gki: bool

    @property
    def version(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.generation.split("."))

    def files(self) -> frozenset[Path]:
        return frozenset({*self.config, *self.patches, self.replacement_config,
                          self.replacement_patch, *self.kmi_symbol_lists})


@dataclass(frozen=True)
class Recipe:
    """The recipe for one kernel generation: its kernels, and every module's expectations on
    them (samples.toml's, with that generation's overrides)."""
    kernel: KernelGeneration
    generations: tuple[KernelGeneration, ...]    # all of samples.toml's, oldest first
    init: Path
    cmdline: str
    vendor_cmdline: str
    bootconfig: tuple[str, ...]
    system_dlkm: tuple[GkiModule, ...]
    modules: tuple[DeviceModule, ...]
    android: dict[Variant, DeviceExpectation]

    @property
    def generation(self) -> str:
        return self.kernel.generation

    def shipped(self) -> list[DeviceModule]:
        return [m for m in self.modules if m.shipped]


def _expectations(entry: dict, generation: str, where: str,
                  recipe: Path) -> dict[Variant, Expectation]:
    """A module's expectations on one generation's kernels: its `gki` and `replacement` tables,
    those its `generation."X"` table names replacing them, `replacement` defaulting to `gki`."""
    def one(raw: dict, variant: Variant) -> Expectation:
        static, runtime = tuple(sorted(raw.get("static", ()))), raw.get("runtime", "")
        findings = tuple(sorted(raw.get("findings", ())))
        unknown = (set(static) - PROBLEM_KINDS) | (set(findings) - FINDING_CLASSES)
        if unknown or runtime not in RUNTIME_OUTCOMES:
            raise InfraError(f"{recipe}: {where} ({generation} {variant.value}): unknown problem "
                             f"kind or finding class {sorted(unknown)} or runtime outcome "
                             f"{runtime!r}")
        why = raw.get("why", "")
        if runtime not in (Outcome.LOADED, Outcome.SKIPPED) and not why:
            raise InfraError(f"{recipe}: {where} ({generation} {variant.value}): a {runtime} "
                             f"needs a why (its reason in expect.toml)")
        return Expectation(static, runtime, findings, why)

    tables = {v.value: entry[v.value] for v in Variant if v.value in entry}
    tables |= entry.get("generation", {}).get(generation, {})
    if "gki" in tables:
        tables.setdefault("replacement", tables["gki"])
    return {v: one(tables[v.value], v) for v in Variant if v.value in tables}


def load_recipe(root: Path = RECIPE_DIR, generation: str | None = None) -> Recipe:
    """The recipe for `generation` (default: the newest samples.toml names)."""
    path = root / RECIPE
    try:
        return _parse_recipe(tomllib.loads(path.read_text()), root, generation)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InfraError(f"sample image recipe {path}: {e}") from None
    except KeyError as e:
        raise InfraError(f"sample image recipe {path}: no {e} entry") from None


def generations(root: Path = RECIPE_DIR) -> tuple[str, ...]:
    """The kernel generations samples.toml builds, oldest first."""
    return tuple(k.generation for k in load_recipe(root).generations)


def _generation(k: dict, root: Path) -> KernelGeneration:
    return KernelGeneration(
        generation=k["generation"], package=k["package"],
        config=tuple(root / p for p in k["config"]),
        patches=tuple(root / p for p in k["patches"]),
        replacement_config=root / k["replacement_config"],
        replacement_patch=root / k["replacement_patch"],
        kmi_symbol_lists=tuple(root / p for p in k["kmi_symbol_lists"]),
        replacement_from_gki=k.get("replacement_from_gki", False))


def _parse_recipe(raw: dict, root: Path, generation: str | None) -> Recipe:
    path = root / RECIPE
    kernels = tuple(sorted((_generation(k, root) for k in raw["kernel"]),
                           key=lambda k: k.version))
    by_name = {k.generation: k for k in kernels}
    if len(by_name) != len(kernels):
        raise InfraError(f"{path}: a kernel generation is named twice")
    if generation is None:
        generation = kernels[-1].generation
    if generation not in by_name:
        raise InfraError(f"{path}: no kernel generation {generation} (it has "
                         f"{', '.join(by_name)})")
    for entry in (*raw["module"], *raw["system_dlkm"]):
        if unknown := set(entry.get("generation", {})) - set(by_name):
            raise InfraError(f"{path}: {entry.get('name') or entry['path']}: expectations for "
                             f"unknown kernel generations {sorted(unknown)}")
    b = raw["boot"]
    modules = tuple(DeviceModule(
        name=m["name"], source=root / "modules" / m["name"],
        expected=_expectations(m, generation, m["name"], path), uses=tuple(m.get("uses", ())),
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
        kernel=by_name[generation], generations=kernels,
        init=root / b["init"], cmdline=b["cmdline"], vendor_cmdline=b["vendor_cmdline"],
        bootconfig=tuple(b["bootconfig"]),
        system_dlkm=tuple(GkiModule(g["path"], _expectations(g, generation, g["path"], path))
                          for g in raw["system_dlkm"]),
        modules=modules,
        android={v: DeviceExpectation(e["verdict"], e.get("stops_at"), e["why"])
                 for v, e in ((v, raw["android"][v.value]) for v in Variant)})


def recipe_key(recipe: Recipe, root: Path, version: str, builder: Path = PACKAGE_DIR) -> str:
    """Content hash of the recipe files one generation's images are made of (not their docs,
    not the files only other generations name), its source package and version, and the
    builder's own sources. Paths enter relative, so a checkout and an installed package agree."""
    others = frozenset().union(*(k.files() for k in recipe.generations)) - recipe.kernel.files()
    h = hashlib.sha256(f"{recipe.kernel.package}\n{version}\n".encode())
    for path in sorted(p for p in root.rglob("*")
                       if p.is_file() and p.suffix != ".md" and p not in others):
        h.update(f"{path.relative_to(root)}\n".encode() + path.read_bytes() + b"\n")
    for path in sorted(builder.glob("*.py")):
        h.update(f"{path.name}\n".encode() + path.read_bytes() + b"\n")
    return h.hexdigest()[:16]
