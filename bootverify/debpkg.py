"""Debian packages as inputs: fetch with `apt-get download`, unpack with `dpkg-deb -x`, cache.

Used for the agent's busybox (busybox-static:arm64) and, by the tests and benchmarks, for Debian's
arm64 kernels: real binaries nobody on this project built. Nothing is installed on the host.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from bootverify.cache import cache_dir
from bootverify.errors import InfraError

APT_TIMEOUT = 600
DPKG_TIMEOUT = 300


def _run(cmd: list[str], cwd: Path, timeout: int) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise InfraError(f"{cmd[0]} not found (Debian's apt and dpkg are needed)") from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"{' '.join(cmd)}: no answer in {timeout} s") from None
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise InfraError(f"{' '.join(cmd)} failed: {' / '.join(tail)}")


def unpacked(package: str, cache: Path | None = None) -> Path:
    """The root of `package` (e.g. "busybox-static:arm64") unpacked, downloaded once.

    The arm64 architecture must be known to dpkg (`dpkg --add-architecture arm64 && apt-get
    update`); the README's set-up does that.
    """
    root = (cache or cache_dir()) / "debian" / package.replace(":", "_")
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".fetch-") as tmp:
        work = Path(tmp)
        _run(["apt-get", "download", package], work, APT_TIMEOUT)
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise InfraError(f"apt-get download {package}: expected one .deb, got {len(debs)}")
        tree = work / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(tree)], work, DPKG_TIMEOUT)
        # The rename is the commit point: a killed fetch leaves only the temp dir, removed here.
        try:
            tree.rename(root)
        except OSError:
            if not root.is_dir():
                raise
            shutil.rmtree(tree)
    return root
