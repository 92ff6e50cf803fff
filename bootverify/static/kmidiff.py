"""What a new kernel changes for modules built against an old one: the KMI symbols its symvers
no longer exports, exports with another CRC (a full-kernel-replacement build changing a struct a
GKI module sees), another export type (EXPORT_SYMBOL <-> EXPORT_SYMBOL_GPL), in another
namespace or from another owner (vmlinux <-> a module), and the ones it adds.

Every symvers row counts, the kernel's and the modules' (a Module.symvers has both, and GKI
modules' exports are KMI too); a symbol exported twice is the one find_symbol() finds: the
kernel's first, then the first module row.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bootverify.readers.symbols import KERNEL_OWNER, Export


class Change(enum.Enum):
    REMOVED = "removed"
    CRC_CHANGED = "crc-changed"
    TYPE_CHANGED = "type-changed"
    NAMESPACE_CHANGED = "namespace-changed"
    OWNER_CHANGED = "owner-changed"
    ADDED = "added"


# Changes that break a module built against the old kernel (an added symbol breaks none).
BREAKING = frozenset(Change) - {Change.ADDED}


@dataclass(frozen=True)
class KmiChange:
    symbol: str
    change: Change
    old: Export | None          # None: added
    new: Export | None          # None: removed

    @property
    def owner(self) -> str:
        return (self.new or self.old).owner     # type: ignore[union-attr]

    def values(self) -> tuple[str, str]:
        """The changed attribute before and after, as the kernel's files spell it."""
        def crc(e: Export | None) -> str:
            return "-" if e is None or e.crc is None else f"{e.crc:#010x}"
        old, new = self.old, self.new
        if self.change is Change.TYPE_CHANGED and old and new:
            return old.type.value, new.type.value
        if self.change is Change.NAMESPACE_CHANGED and old and new:
            return old.namespace or "-", new.namespace or "-"
        if self.change is Change.OWNER_CHANGED and old and new:
            return old.owner, new.owner
        return crc(old), crc(new)


@dataclass(frozen=True)
class KmiDiff:
    compared: int                   # old symbols looked at: the KMI ones, or all
    changes: tuple[KmiChange, ...]  # by symbol, then in Change's order

    @property
    def breaking(self) -> tuple[KmiChange, ...]:
        return tuple(c for c in self.changes if c.change in BREAKING)

    def counts(self) -> dict[Change, int]:
        return {kind: sum(c.change is kind for c in self.changes) for kind in Change}


def exports_by_symbol(rows: Iterable[Export]) -> dict[str, Export]:
    """One row a symbol, the one find_symbol() would find: vmlinux first, then the first
    module's."""
    table: dict[str, Export] = {}
    for e in rows:
        if e.name not in table or (e.owner == KERNEL_OWNER and table[e.name].owner != KERNEL_OWNER):
            table[e.name] = e
    return table


def _changed(old: Export, new: Export) -> list[Change]:
    """What a module built against `old` sees differently; a CRC only where both have one
    (System.map-style rows have none)."""
    out = []
    if old.crc is not None and new.crc is not None and old.crc != new.crc:
        out.append(Change.CRC_CHANGED)
    if old.type is not new.type:
        out.append(Change.TYPE_CHANGED)
    if old.namespace != new.namespace:
        out.append(Change.NAMESPACE_CHANGED)
    if old.owner != new.owner:
        out.append(Change.OWNER_CHANGED)
    return out


def kmi_diff(old: Mapping[str, Export], new: Mapping[str, Export],
             kmi: frozenset[str] | None) -> KmiDiff:
    """With a KMI, only its symbols: removed and changed ones the old kernel exported, added
    ones it did not; without, every export."""
    scope = kmi & old.keys() if kmi is not None else old.keys()
    added = (kmi if kmi is not None else new.keys()) & (new.keys() - old.keys())
    changes = []
    for sym in sorted(scope | added):
        before, after = old.get(sym), new.get(sym)
        if after is None:
            changes.append(KmiChange(sym, Change.REMOVED, before, None))
        elif before is None:
            changes.append(KmiChange(sym, Change.ADDED, None, after))
        else:
            changes += [KmiChange(sym, kind, before, after) for kind in _changed(before, after)]
    return KmiDiff(len(scope), tuple(changes))
