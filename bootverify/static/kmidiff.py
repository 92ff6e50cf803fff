"""What a new kernel breaks for modules built against an old one: the KMI symbols its vmlinux
no longer exports, or exports with another CRC (a full-kernel-replacement build changing a
struct a GKI module sees). Compares vmlinux rows only, as modules check their CRCs against them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bootverify.readers.symbols import KernelExports


class Change(enum.Enum):
    REMOVED = "removed"
    CRC_CHANGED = "crc-changed"


@dataclass(frozen=True)
class KmiChange:
    symbol: str
    change: Change
    old_crc: int | None
    new_crc: int | None


@dataclass(frozen=True)
class KmiDiff:
    compared: int                   # symbols looked at: the KMI ones of the old kernel, or all
    changes: tuple[KmiChange, ...]


def kmi_diff(old: KernelExports, new: KernelExports, kmi: frozenset[str] | None) -> KmiDiff:
    before, after = old.exports, new.exports
    scope = sorted(kmi & before.keys() if kmi is not None else before)
    changes = []
    for sym in scope:
        if sym not in after:
            changes.append(KmiChange(sym, Change.REMOVED, before[sym].crc, None))
        elif after[sym].crc != before[sym].crc:
            changes.append(KmiChange(sym, Change.CRC_CHANGED, before[sym].crc, after[sym].crc))
    return KmiDiff(len(scope), tuple(changes))
