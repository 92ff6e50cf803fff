"""The sha256 of each input of a run, by role: what `merge` compares to know that shards ran
the same thing. A file hashes its bytes; a directory (--system-dlkm, --vendor-dlkm) its files'
relative paths and bytes, sorted. (Issue 12 adds a top-level `meta` with input hashes to run's
JSON; until both are in, this is the one place they are computed.)"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from bootverify.errors import reading

CHUNK = 1 << 20


def _file(h: hashlib._Hash, path: Path) -> None:
    with reading(path), open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            _file(h, p)
            h.update(b"\0")
    else:
        _file(h, path)
    return h.hexdigest()


def input_hashes(inputs: Mapping[str, Path | Sequence[Path] | None]) -> dict[str, str]:
    """role -> sha256 (a list of files, such as the KMI symbol lists: hashed in order as one)."""
    out = {}
    for role, value in inputs.items():
        if value is None or value == ():
            continue
        paths = [value] if isinstance(value, Path) else list(value)
        out[role] = (sha256(paths[0]) if len(paths) == 1 else
                     hashlib.sha256("".join(sha256(p) for p in paths).encode()).hexdigest())
    return out
