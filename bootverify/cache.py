"""Where bootverify keeps what it can reuse: fetched packages, built images, module facts."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$BOOTVERIFY_CACHE, else the user's cache dir (XDG_CACHE_HOME or ~/.cache)/bootverify."""
    if os.environ.get("BOOTVERIFY_CACHE"):
        return Path(os.environ["BOOTVERIFY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bootverify"
