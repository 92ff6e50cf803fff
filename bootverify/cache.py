"""Where bootverify keeps what it can reuse: fetched packages, built images, check reports."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
# Reports remembered per cache directory: one per distinct set of inputs, so a CI machine that
# checks a few trees nightly keeps them all, and the directory cannot grow without bound.
MEMO_KEEP = 32


def cache_dir() -> Path:
    """$BOOTVERIFY_CACHE, else the user's cache dir (XDG_CACHE_HOME or ~/.cache)/bootverify."""
    if os.environ.get("BOOTVERIFY_CACHE"):
        return Path(os.environ["BOOTVERIFY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bootverify"


def file_fingerprint(path: Path) -> tuple[str, int, int, int, int]:
    """A file's identity for caching: same path and stat, same content (git's index rule)."""
    st = path.stat()
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load_pickle(path: Path) -> object | None:
    """A cached value, or None when missing or unreadable (a damaged cache is an empty one)."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            ModuleNotFoundError):
        return None


def store_pickle(path: Path, value: object) -> None:
    """Write then rename: a concurrent or killed run never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _complete(value: object, kind: type) -> bool:
    """An instance of `kind` with every field it has now (a pickle of an older version of the
    class unpickles without the fields added since)."""
    return isinstance(value, kind) and (not dataclasses.is_dataclass(value) or all(
        f.name in vars(value) for f in dataclasses.fields(value)))


def memo(root: Path | None, key: str, compute: Callable[[], T], kind: type[T],
         warn: Callable[[str], None] | None = None, keep: int = MEMO_KEEP) -> T:
    """compute(), remembered under root by key; only the `keep` most recently used stay.

    The cache only costs or saves time: an entry that is not a complete `kind` is computed
    again, and a cache that cannot be read or written is said once through `warn`."""
    if root is None:
        return compute()
    path = root / f"{key}.pickle"
    hit = load_pickle(path)
    if hit is not None and _complete(hit, kind):
        with contextlib.suppress(OSError):
            os.utime(path)      # recently used: kept by the pruning below
        return hit  # type: ignore[return-value]
    value = compute()
    try:
        store_pickle(path, value)
        entries = sorted(root.glob("*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[keep:]:
            old.unlink(missing_ok=True)
    except OSError as e:
        if warn is not None:
            where = e.filename if e.filename is not None else path
            warn(f"cache not used ({where}: {e.strerror or e}): the next run is not faster")
    return value
